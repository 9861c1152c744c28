"""The chart's contracts (global.contracts: topics, tables, ports) equal the code's: the settings'
defaults (signalstack.config), the tables sql/ creates, the JSON schemas' topics; and what the
chart renders (KafkaTopics, env, container and Service ports) comes from that one place."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from signalstack.config import (
    GROUPS,
    IngestSettings,
    KafkaSettings,
    SinkSettings,
    StreamSettings,
    TimescaleSettings,
)
from signalstack.store.edition import ROLLUPS

from .conftest import CHART, ROOT, env_of, find, one, pod_spec, rendered

pytestmark = pytest.mark.integration


def contracts() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    c: dict[str, Any] = values["global"]["contracts"]
    return c


def test_topics_equal_the_code() -> None:
    kafka, ingest = KafkaSettings(), IngestSettings()
    topics = contracts()["topics"]
    assert {k: t["name"] for k, t in topics.items()} == {
        "trades": kafka.trades_topic,
        "features": kafka.features_topic,
        "predictions": kafka.predictions_topic,
        "dlq": kafka.dlq_topic,
    }
    for key in ("trades", "features", "predictions"):
        assert topics[key]["partitions"] == kafka.partitions
        assert topics[key]["replicas"] == kafka.replication_factor
    assert topics["dlq"]["partitions"] == ingest.dlq_partitions
    assert topics["trades"]["config"]["retention.ms"] == ingest.trades_retention_ms
    assert topics["dlq"]["config"]["retention.ms"] == ingest.dlq_retention_ms
    assert topics["trades"]["config"]["compression.type"] == "lz4"  # DESIGN: 6 partitions, lz4


def test_the_schemas_name_the_topics() -> None:
    """Each topic's JSON schema (signalstack/schemas/json) says which topic it describes."""
    schemas = ROOT / "services" / "signalstack" / "schemas" / "json"
    titles = {p.name: json.loads(p.read_text())["title"] for p in schemas.glob("*.json")}
    topics = contracts()["topics"]
    assert topics["trades"]["name"] in titles["trade_event.v1.json"]
    assert topics["dlq"]["name"] in titles["dlq_record.v1.json"]


def sql_tables() -> set[str]:
    created = set()
    for f in sorted((ROOT / "sql").glob("*.sql")):
        created |= set(re.findall(r"CREATE TABLE IF NOT EXISTS\s+(\w+)", f.read_text(), re.I))
    return created | set(ROLLUPS)


def test_tables_equal_what_sql_creates() -> None:
    tables = contracts()["tables"]
    assert len(tables) == len(set(tables))
    assert set(tables) == sql_tables()


def test_ports_equal_the_code() -> None:
    ports = contracts()["ports"]
    assert ports["ingest"] == IngestSettings().http_port
    assert ports["sink"] == SinkSettings().http_port
    assert ports["stream"] == StreamSettings().http_port
    assert ports["timescaledb"] == TimescaleSettings().port
    assert ports["kafka"] == int(KafkaSettings().bootstrap_servers.rpartition(":")[2])
    assert ports["serving"] == 8080  # the images' contract (OIP v2 on 8080), set as SERVING_PORT


@pytest.mark.parametrize("profile", ["kind", "production"])
def test_rendered_topics_are_the_contract(profile: str) -> None:
    docs = rendered(profile)
    values = yaml.safe_load((CHART / f"values-{profile}.yaml").read_text())
    topics = contracts()["topics"]
    kafka = find(docs, "Kafka")
    assert len(kafka) == 1
    rendered_topics = {t["spec"]["topicName"]: t for t in find(docs, "KafkaTopic")}
    assert set(rendered_topics) == {t["name"] for t in topics.values()}
    for key, t in topics.items():
        r = rendered_topics[t["name"]]
        assert r["metadata"]["labels"]["strimzi.io/cluster"] == kafka[0]["metadata"]["name"]
        assert r["spec"]["partitions"] == t["partitions"]
        want = values["global"]["contracts"]["topics"][key]["replicas"]
        assert r["spec"]["replicas"] == want
        assert r["spec"]["config"] == t["config"]


def containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for d in docs:
        spec = pod_spec(d)
        for c in (spec or {}).get("containers", []):
            out.append((d, c))
        if d["kind"] == "SparkApplication":
            out += [(d, {"name": r, **d["spec"][r]}) for r in ("driver", "executor")]
    return out


def test_rendered_ports_are_the_contract() -> None:
    ports = contracts()["ports"]
    docs = rendered("kind")
    by_name = {
        "serving": ("signalstack-serving", "SERVING_PORT", "http"),
        "ingest": ("signalstack-ingest", "INGEST_HTTP_PORT", "metrics"),
        "sink": ("signalstack-sink", "SINK_HTTP_PORT", "metrics"),
    }
    for key, (service, env, port_name) in by_name.items():
        svc = one(docs, "Service", service)
        assert [p["port"] for p in svc["spec"]["ports"]] == [ports[key]]
        cs = [c for d, c in containers(docs) if env in env_of(c)]
        assert cs, f"no container sets {env}"
        for c in cs:
            assert env_of(c)[env] == str(ports[key])
            assert {"name": port_name, "containerPort": ports[key]}.items() <= next(
                p for p in c["ports"] if p["name"] == port_name
            ).items()
    spark = one(docs, "SparkApplication", "signalstack-stream")
    assert env_of(spark["spec"]["driver"])["STREAM_HTTP_PORT"] == str(ports["stream"])
    assert (
        one(docs, "Service", "signalstack-timescaledb")["spec"]["ports"][0]["port"]
        == (ports["timescaledb"])
    )
    assert one(docs, "Service", "signalstack-mlflow")["spec"]["ports"][0]["port"] == ports["mlflow"]
    for _, c in containers(docs):
        env = env_of(c)
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"signalstack-kafka-bootstrap:{ports['kafka']}"
        if "MLFLOW_TRACKING_URI" in env:
            assert env["MLFLOW_TRACKING_URI"] == f"http://signalstack-mlflow:{ports['mlflow']}"


def test_every_env_var_the_chart_sets_is_a_setting() -> None:
    """The names the chart gives SignalStack processes exist in signalstack.config (a misspelt
    variable would be ignored silently: extra="ignore")."""
    known: dict[str, set[str]] = {}
    for group in GROUPS.values():
        prefix = str(group.model_config.get("env_prefix", ""))
        known[prefix] = {prefix + f.upper() for f in group.model_fields}
    process_env = {"TMPDIR", "HOME"}
    checked = 0
    for _, c in containers(rendered("kind")):
        if c["name"] in ("mlflow", "timescaledb", "tables"):  # not SignalStack processes
            continue
        for name in env_of(c):
            prefix = next((p for p in known if name.startswith(p)), None)
            if prefix is None:
                assert name in process_env, f"{c['name']}: {name} is no setting"
            else:
                assert name in known[prefix], f"{c['name']}: {name} is not a {prefix}* setting"
            checked += 1
    assert checked > 50
