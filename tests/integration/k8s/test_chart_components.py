"""What each subchart promises (issue 15, item 3), read from its rendering: ingest's one replica
per Polygon key, serving's autoscaling and disruption budget, TimescaleDB's volume, Secret and
migrations hook, the CronJobs' schedules, drift's Role and the retraining Job it creates, the
stream job's checkpoints, the network policies' flows, the monitoring files, NOTES."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import yaml

from signalstack.devstack.mlflow import template_db
from signalstack.drift.retrain import JOB_LABELS, build_job, load_template

from .conftest import (
    CHART,
    HELM,
    NAMESPACE,
    RELEASE,
    HelmError,
    docs_of,
    env_of,
    find,
    helm_template,
    kubeconform,
    one,
    pod_spec,
    rendered,
    run,
)

pytestmark = pytest.mark.integration


def values_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "values.yaml"
    p.write_text(text)
    return p


# ---- ingest --------------------------------------------------------------------------------


def test_kind_ingests_from_a_simulated_polygon() -> None:
    """kind has no Polygon key: ingest and the backfill talk to `signalstack fake-polygon --live`
    with a generated key, and the network policies open exactly those flows."""
    docs = rendered("kind")
    fake = one(docs, "Deployment", "signalstack-ingest-fake-polygon")["spec"]["template"]
    c = fake["spec"]["containers"][0]
    assert (
        c["args"][:2] == ["fake-polygon", "--live"] and "--api-key=$(POLYGON_API_KEY)" in c["args"]
    )
    key = {"secretKeyRef": {"name": "signalstack-ingest-fake-polygon", "key": "POLYGON_API_KEY"}}
    assert env_of(c)["POLYGON_API_KEY"] == key
    ingest = one(docs, "Deployment", "signalstack-ingest-default")["spec"]["template"]["spec"]
    env = env_of(ingest["containers"][0])
    assert env["POLYGON_API_KEY"] == key
    assert env["POLYGON_WS_URL"] == "ws://signalstack-ingest-fake-polygon:8765/stocks"
    backfill = one(docs, "CronJob", "signalstack-backfill")["spec"]["jobTemplate"]["spec"]
    benv = env_of(backfill["template"]["spec"]["containers"][0])
    assert benv["POLYGON_API_KEY"] == key
    assert benv["POLYGON_REST_URL"] == "http://signalstack-ingest-fake-polygon:8765"
    fake_pods = {"app.kubernetes.io/name": "fake-polygon"}
    for name in ("signalstack-ingest", "signalstack-backfill"):
        egress = one(docs, "NetworkPolicy", name)["spec"]["egress"]
        assert any(
            t.get("podSelector", {}).get("matchLabels", {}).items() >= fake_pods.items()
            for r in egress for t in r.get("to", [])
        ), name  # fmt: skip
    # production has no simulator
    assert not find(rendered("production"), "Deployment", "signalstack-ingest-fake-polygon")


def test_ingest_runs_one_replica_per_polygon_key(tmp_path: Path) -> None:
    feeds = values_file(
        tmp_path,
        "ingest:\n  feeds:\n"
        "    - {name: a, symbols: 'AAPL,MSFT', existingSecret: key-a}\n"
        "    - {name: b, symbols: NVDA, existingSecret: key-b, existingSecretKey: k}\n",
    )
    docs = docs_of(helm_template(values=(feeds,)))
    deploys = [
        d
        for d in find(docs, "Deployment")
        if d["metadata"]["name"].startswith("signalstack-ingest")
    ]
    assert sorted(d["metadata"]["name"] for d in deploys) == [
        "signalstack-ingest-a",
        "signalstack-ingest-b",
    ]
    selectors = set()
    for d, (secret, key, symbols) in zip(
        deploys, [("key-a", "POLYGON_API_KEY", "AAPL,MSFT"), ("key-b", "k", "NVDA")], strict=True
    ):
        assert d["spec"]["replicas"] == 1
        assert d["spec"]["strategy"] == {"type": "Recreate"}  # never two connections at once
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"] == ["ingest", "--symbols", symbols]
        assert env_of(c)["POLYGON_API_KEY"] == {"secretKeyRef": {"name": secret, "key": key}}
        selectors.add(tuple(sorted(d["spec"]["selector"]["matchLabels"].items())))
    assert len(selectors) == 2  # each Deployment owns only its own pod


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ("ingest:\n  replicaCount: 2\n", "replicaCount"),
        ("ingest:\n  feeds:\n    - {name: a, existingSecret: ''}\n", "existingSecret"),
        ("ingest:\n  feeds: []\n", "feeds"),
    ],
)
def test_ingest_refuses_a_second_connection(values: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(HelmError, match=says):
        helm_template(values=(values_file(tmp_path, values),))


def test_ingest_replica_guard_holds_without_the_schema(chart_copy: Path) -> None:
    """The template's own check (for charts rendered with --skip-schema-validation)."""
    (chart_copy / "charts" / "ingest" / "values.schema.json").unlink()
    with pytest.raises(HelmError, match="one WebSocket connection per API key"):
        helm_template(chart_copy, sets=("ingest.replicaCount=2",))


# ---- serving -------------------------------------------------------------------------------


def test_serving_autoscales_on_cpu_and_request_rate() -> None:
    docs = rendered("kind")
    hpa = one(docs, "HorizontalPodAutoscaler", "signalstack-serving")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "signalstack-serving"}  # fmt: skip
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "signalstack_serving_requests_per_second"
    deploy = one(docs, "Deployment", "signalstack-serving")
    assert "replicas" not in deploy["spec"]  # the HPA owns the count
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve"]
    # live predictions from market.features: one consumer group shared by the replicas (each row
    # predicted and published once); each replica's WebSocket fan-out reads market.predictions
    assert env_of(container)["SERVING_FEED"] == "kafka"
    assert env_of(container)["SERVING_FEED_GROUP_ID"] == "signalstack-serving"
    assert env_of(container).get("SERVING_WS_FANOUT", "auto") in ("auto", "kafka")
    assert deploy["spec"]["template"]["metadata"]["labels"]["signalstack.io/kafka-client"] == "true"
    assert container["resources"]["requests"]["cpu"]  # CPU utilisation needs a request
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    pdb = one(docs, "PodDisruptionBudget", "signalstack-serving")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    sm = one(docs, "ServiceMonitor", "signalstack-serving")
    svc = one(docs, "Service", "signalstack-serving")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in [p["name"] for p in svc["spec"]["ports"]]
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080


def test_serving_without_autoscaling_and_with_a_token() -> None:
    docs = rendered(
        "default",
        (
            "serving.autoscaling.enabled=false",
            "serving.replicaCount=3",
            "serving.auth.existingSecret=api-token",
        ),
    )
    assert not find(docs, "HorizontalPodAutoscaler")
    deploy = one(docs, "Deployment", "signalstack-serving")
    assert deploy["spec"]["replicas"] == 3
    env = env_of(deploy["spec"]["template"]["spec"]["containers"][0])
    assert env["SERVING_API_TOKEN"] == {
        "secretKeyRef": {"name": "api-token", "key": "SERVING_API_TOKEN"}
    }
    # /metrics requires the token too: without it every scrape is a 401 (ServiceDown forever)
    sm = one(docs, "ServiceMonitor", "signalstack-serving")
    assert sm["spec"]["endpoints"][0]["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "api-token", "key": "SERVING_API_TOKEN"},
    }
    assert sm["metadata"]["namespace"] == deploy["metadata"]["namespace"]  # the Secret's


@pytest.mark.parametrize("profile", ["production", "kind"])
def test_prometheus_scrapes_serving_with_the_token_it_requires(profile: str) -> None:
    """Whatever Secret the pods read SERVING_API_TOKEN from, Prometheus sends as a bearer token;
    without auth (kind) it sends none."""
    docs = rendered(profile)
    deploy = one(docs, "Deployment", "signalstack-serving")
    token = env_of(deploy["spec"]["template"]["spec"]["containers"][0]).get("SERVING_API_TOKEN")
    endpoint = one(docs, "ServiceMonitor", "signalstack-serving")["spec"]["endpoints"][0]
    if profile == "production":
        assert token is not None
        assert endpoint["authorization"] == {
            "type": "Bearer",
            "credentials": token["secretKeyRef"],
        }
    else:
        assert token is None and "authorization" not in endpoint


def test_kserve_inference_service_runs_the_serving_container() -> None:
    docs = rendered("default", ("serving.kserve.enabled=true",))
    isvc = one(docs, "InferenceService", "signalstack-serving")
    deploy = one(docs, "Deployment", "signalstack-serving")
    assert (
        isvc["spec"]["predictor"]["containers"] == deploy["spec"]["template"]["spec"]["containers"]
    )


# ---- timescaledb ---------------------------------------------------------------------------


def test_timescaledb_statefulset_secret_and_migrations() -> None:
    docs = rendered("kind")
    sts = one(docs, "StatefulSet", "signalstack-timescaledb")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].split("/", 1)[1].startswith("timescale/timescaledb:")  # Community image
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in c["volumeMounts"]
    assert c["startupProbe"] and c["livenessProbe"] and c["readinessProbe"]
    secret = one(docs, "Secret", "signalstack-timescaledb")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # every client reads the password from that Secret
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in docs if (spec := pod_spec(d))
        for ct in spec["containers"] for e in ct.get("env", [])
        if e["name"] in ("TIMESCALE_PASSWORD", "POSTGRES_PASSWORD", "PGPASSWORD")
    ]  # fmt: skip
    assert len(refs) >= 8 and set(refs) == {"signalstack-timescaledb"}
    job = one(docs, "Job", "signalstack-timescaledb-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    mig = job["spec"]["template"]["spec"]["containers"][0]
    assert "signalstack.store.migrations" in mig["args"][0]
    # the helm test checks every table of the contract
    test_pod = one(docs, "Pod", "signalstack-timescaledb-test")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = test_pod["spec"]["containers"][0]["args"][0]
    tables = yaml.safe_load((CHART / "values.yaml").read_text())["global"]["contracts"]["tables"]
    assert f"for t in {' '.join(tables)};" in script


def test_an_existing_secret_is_used_and_none_generated() -> None:
    docs = rendered("default", ("global.timescaledb.existingSecret=db-creds",))
    assert not find(docs, "Secret")
    sts = one(docs, "StatefulSet", "signalstack-timescaledb")
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    assert env["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "db-creds", "key": "password"}}


# ---- CronJobs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["backfill", "training", "drift"])
def test_cronjobs_are_scheduled_in_new_york_one_at_a_time(name: str) -> None:
    cj = one(rendered("kind"), "CronJob", f"signalstack-{name}")["spec"]
    assert cj["timeZone"] == "America/New_York"
    assert "TZ" not in cj["schedule"]
    assert cj["concurrencyPolicy"] == "Forbid"
    assert cj["startingDeadlineSeconds"] >= 10
    assert 0 < cj["successfulJobsHistoryLimit"] <= 5 and 0 < cj["failedJobsHistoryLimit"] <= 5
    job = cj["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] and job["ttlSecondsAfterFinished"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_backfill_runs_daily_after_the_close() -> None:
    cj = one(rendered("kind"), "CronJob", "signalstack-backfill")["spec"]
    _minute, hour, dom, month, dow = cj["schedule"].split()
    assert int(hour) >= 16 and dom == month == "*" and dow == "1-5"
    c = cj["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:2] == ["backfill", "--scheduled"]


@pytest.mark.parametrize(
    ("job", "code", "expected"),
    [("training", 0, 0), ("training", 6, 0), ("training", 1, 1), ("training", 7, 7),
     ("drift", 7, 0), ("drift", 6, 6), ("drift", 2, 2)],
)  # fmt: skip
def test_outcome_exit_codes_are_a_success_and_arguments_pass_through(
    job: str, code: int, expected: int, tmp_path: Path
) -> None:
    """The wrapper the CronJobs and the retraining Job run: `train`'s 6 (no champion moved) and
    `drift`'s 7 (a model drifted) are no failure to retry, other codes are kept, and the
    arguments drift appends reach signalstack."""
    cj = one(rendered("kind"), "CronJob", f"signalstack-{job}")["spec"]
    c = cj["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    fake = tmp_path / "signalstack"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\nexit {code}\n')
    fake.chmod(0o755)
    argv = [*c["command"], *c["args"], "--model", "regime"]
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    res = subprocess.run(argv, env=env, check=False, timeout=30)
    assert res.returncode == expected
    assert (tmp_path / "argv").read_text().split() == [*c["args"], "--model", "regime"]


# ---- drift and the retraining Job ----------------------------------------------------------


def test_drift_may_only_create_and_read_jobs() -> None:
    docs = rendered("kind")
    role = one(docs, "Role", "signalstack-drift")
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch"]}
    ]
    binding = one(docs, "RoleBinding", "signalstack-drift")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "signalstack-drift"}  # fmt: skip
    pod = one(docs, "CronJob", "signalstack-drift")["spec"]["jobTemplate"]["spec"]["template"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": NAMESPACE,
                                    "name": pod["spec"]["serviceAccountName"]}]  # fmt: skip
    assert pod["spec"]["automountServiceAccountToken"] is True
    # no other Role or ClusterRole grants anything on jobs, and nothing is cluster-wide
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")


def test_drift_creates_the_training_job_from_the_rendered_template(
    tmp_path: Path, builtin_schemas: Path
) -> None:
    docs = rendered("kind")
    drift = one(docs, "CronJob", "signalstack-drift")["spec"]["jobTemplate"]["spec"]["template"]
    c = drift["spec"]["containers"][0]
    env = env_of(c)
    assert env["DRIFT_RETRAIN"] == "kubernetes"
    mount = next(
        m for m in c["volumeMounts"] if env["DRIFT_JOB_TEMPLATE"].startswith(m["mountPath"])
    )
    volume = next(v for v in drift["spec"]["volumes"] if v["name"] == mount["name"])
    cm = one(docs, "ConfigMap", volume["configMap"]["name"])
    key = env["DRIFT_JOB_TEMPLATE"].removeprefix(mount["mountPath"]).lstrip("/")
    path = tmp_path / key
    path.write_text(cm["data"][key])
    # what signalstack drift does with it: load, fill in, create
    template = load_template(path)
    now = pd.Timestamp("2026-03-02T21:30:00Z")
    job = build_job(template, ["regime"], 0.4, now, lookback_days=20)
    assert job["metadata"]["name"] == "signalstack-retrain-20260302-213000"
    res = kubeconform(yaml.safe_dump(job), builtin_schemas)
    assert res.returncode == 0, res.stdout + res.stderr
    # it is the scheduled training's pod, with drift's arguments appended
    training = one(docs, "CronJob", "signalstack-training")["spec"]["jobTemplate"]["spec"]
    pod, want = job["spec"]["template"]["spec"], training["template"]["spec"]
    assert pod["containers"][0]["image"] == want["containers"][0]["image"]
    assert pod["containers"][0]["env"] == want["containers"][0]["env"]
    assert pod["containers"][0]["args"][:3] == ["train", "--data-source", "store"]
    assert pod["containers"][0]["args"][3:5] == ["--model", "regime"]
    # and its pods are admitted by a NetworkPolicy that opens the store and MLflow
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert JOB_LABELS.items() <= labels.items()
    policies = [p for p in find(docs, "NetworkPolicy")
                if p["spec"]["podSelector"].get("matchLabels")
                and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]  # fmt: skip
    assert policies, "no NetworkPolicy selects the retraining pods"
    assert egress_targets(policies) >= {"timescaledb", "mlflow"}


def test_drift_with_retraining_off_has_no_role() -> None:
    docs = rendered("default", ("drift.retrain.mode=off",))
    assert not find(docs, "Role", "signalstack-drift")
    pod = one(docs, "CronJob", "signalstack-drift")["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["automountServiceAccountToken"] is False


def model_volume(docs: list[dict[str, Any]], kind: str, name: str, var: str) -> dict[str, Any]:
    """Where a workload's bundles come from: the directory its env var names, the mount there
    and the volume mounted (each None when absent); all its mounts' and volumes' names."""
    spec = pod_spec(one(docs, kind, name))
    assert spec is not None
    c = spec["containers"][0]
    path = env_of(c).get(var)
    mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == path), None)
    volume = next((v for v in spec.get("volumes", []) if mount and v["name"] == mount["name"]),
                  None)  # fmt: skip
    names = {m["name"] for m in c.get("volumeMounts", [])}
    names |= {v["name"] for v in spec.get("volumes", [])}
    return {"path": path, "mount": mount, "volume": volume, "names": names, "env": env_of(c)}


def test_drift_reads_its_references_from_a_volume_when_asked() -> None:
    """drift.modelDir as serving's: the claim mounted read-only at the path DRIFT_MODEL_DIR
    names (the MLflow env stays, unused); by default neither, the MLflow alias."""
    sets = ("drift.modelDir.enabled=true", "drift.modelDir.existingClaim=bundles",
            "serving.modelDir.enabled=true", "serving.modelDir.existingClaim=bundles")  # fmt: skip
    docs = rendered("default", sets)
    drift = model_volume(docs, "CronJob", "signalstack-drift", "DRIFT_MODEL_DIR")
    assert drift["path"] == "/var/lib/signalstack/models"
    assert drift["mount"] == {"name": "models", "mountPath": drift["path"], "readOnly": True}
    assert drift["volume"] == {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "bundles", "readOnly": True},
    }
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_MODEL_ALIAS"} <= drift["env"].keys()
    # one helper (common.modelDir.*): serving's mount and volume are the same
    serving = model_volume(docs, "Deployment", "signalstack-serving", "SERVING_MODEL_DIR")
    assert (serving["mount"], serving["volume"]) == (drift["mount"], drift["volume"])

    default = model_volume(rendered("default"), "CronJob", "signalstack-drift", "DRIFT_MODEL_DIR")
    assert default["path"] is None and "models" not in default["names"]


def test_ci_profile_drift_and_serving_read_the_same_bundles() -> None:
    """The ci profile has no MLflow: drift judges the models serving serves, from one claim."""
    docs = rendered("ci")
    drift = model_volume(docs, "CronJob", "signalstack-drift", "DRIFT_MODEL_DIR")
    serving = model_volume(docs, "Deployment", "signalstack-serving", "SERVING_MODEL_DIR")
    for got in (drift, serving):
        assert got["mount"] is not None and got["mount"]["readOnly"] is True
        assert got["volume"]["persistentVolumeClaim"]["claimName"] == "signalstack-models"
    assert drift["path"] == serving["path"]


# ---- stream --------------------------------------------------------------------------------


def test_stream_checkpoints_on_a_pvc_shared_by_driver_and_executors() -> None:
    docs = rendered("kind")
    app = one(docs, "SparkApplication", "signalstack-stream")["spec"]
    pvc = one(docs, "PersistentVolumeClaim", "signalstack-stream-checkpoints")
    volume = next(v for v in app["volumes"] if v.get("persistentVolumeClaim"))
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    for role in ("driver", "executor"):
        mount = next(m for m in app[role]["volumeMounts"] if m["name"] == volume["name"])
        assert env_of(app[role])["STREAM_CHECKPOINT_DIR"] == mount["mountPath"]
    assert app["sparkVersion"].startswith("4.0.")
    sa = app["driver"]["serviceAccount"]
    binding = one(docs, "RoleBinding", "signalstack-stream")
    assert binding["subjects"][0]["name"] == sa
    rules = one(docs, "Role", "signalstack-stream")["rules"]
    assert any("pods" in r["resources"] and "create" in r["verbs"] for r in rules)


def test_stream_checkpoints_pvc_is_shared_across_nodes_by_default() -> None:
    """The driver and every executor mount the checkpoints: by default the PVC is
    ReadWriteMany (pods on several nodes); kind's one node shares a ReadWriteOnce volume."""
    for profile, modes in (("default", ["ReadWriteMany"]), ("production", ["ReadWriteMany"]),
                           ("kind", ["ReadWriteOnce"])):  # fmt: skip
        pvc = one(rendered(profile), "PersistentVolumeClaim", "signalstack-stream-checkpoints")
        assert pvc["spec"]["accessModes"] == modes, profile


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (("stream.checkpoints.persistence.accessModes={ReadWriteOnce}",), "singleNode=true"),
        (
            (
                "stream.checkpoints.persistence.accessModes={ReadWriteOncePod}",
                "stream.checkpoints.persistence.singleNode=true",
            ),
            "ReadWriteOncePod admits one pod",
        ),
        (("stream.checkpoints.persistence.singelNode=true",), "singelNode"),  # the schema
    ],
)
def test_stream_refuses_checkpoints_one_node_cannot_share(sets: tuple[str, ...], says: str) -> None:
    """A ReadWriteOnce PVC mounted by pods on several nodes is a Multi-Attach error at run
    time: the render fails first, saying what to do."""
    with pytest.raises(HelmError, match=says):
        rendered("default", sets)
    # single-node on purpose (kind): allowed
    docs = rendered(
        "default",
        (
            "stream.checkpoints.persistence.accessModes={ReadWriteOnce}",
            "stream.checkpoints.persistence.singleNode=true",
        ),
    )
    pvc = one(docs, "PersistentVolumeClaim", "signalstack-stream-checkpoints")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_stream_checkpoints_in_an_object_store() -> None:
    docs = rendered("default", ("stream.checkpoints.uri=s3a://bucket/checkpoints",))
    assert not find(docs, "PersistentVolumeClaim", "signalstack-stream-checkpoints")
    app = one(docs, "SparkApplication", "signalstack-stream")["spec"]
    assert env_of(app["driver"])["STREAM_CHECKPOINT_DIR"] == "s3a://bucket/checkpoints"


def test_ci_stream_job_submits_as_the_operator_would(tmp_path: Path, builtin_schemas: Path) -> None:
    """The ci profile's SparkApplication through signalstack.devstack.spark_submit (what the
    live cluster runs in place of spark-operator): its image, config and service accounts as
    --conf, and pod templates the API server would take, carrying the pods' secrets, volumes,
    ports and the labels the network policies select."""
    from signalstack.devstack.spark_submit import submission

    app = one(rendered("ci"), "SparkApplication", "signalstack-stream")
    spec = app["spec"]
    sub = submission(app, "k8s://https://10.216.0.1:6443", tmp_path)
    conf = dict(v.partition("=")[::2] for f, v in itertools.pairwise(sub.argv) if f == "--conf")
    assert conf["spark.kubernetes.container.image"] == spec["image"] == "signalstack/stream:dev"
    assert conf["spark.kubernetes.container.image.pullPolicy"] == "Never"
    assert conf["spark.kubernetes.namespace"] == NAMESPACE
    # no field of the chart's roles silently overrides its sparkConf
    assert {k: conf[k] for k in spec["sparkConf"]} == spec["sparkConf"]
    for role in ("driver", "executor"):
        assert conf[f"spark.{role}.memory"] == spec[role]["memory"]
        account = conf[f"spark.kubernetes.authenticate.{role}.serviceAccountName"]
        assert account == spec[role]["serviceAccount"]
    assert conf["spark.executor.instances"] == str(spec["executor"]["instances"])
    assert sub.argv[-1] == spec["mainApplicationFile"]
    for role in ("driver", "executor"):
        pod = sub.templates[Path(conf[f"spark.kubernetes.{role}.podTemplateFile"])]
        res = kubeconform(yaml.safe_dump(pod), builtin_schemas)
        assert res.returncode == 0, res.stdout + res.stderr
        (c,) = pod["spec"]["containers"]
        assert env_of(c)["TIMESCALE_PASSWORD"] == {
            "secretKeyRef": {"name": "signalstack-timescaledb", "key": "password"}
        }
        mounted = {m["name"] for m in c["volumeMounts"]}
        assert {v["name"] for v in pod["spec"]["volumes"]} == mounted >= {"checkpoints", "tmp"}
        labels = pod["metadata"]["labels"]
        assert labels["sparkoperator.k8s.io/app-name"] == "signalstack-stream"
        assert labels["signalstack.io/kafka-client"] == "true"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    driver = sub.templates[Path(conf["spark.kubernetes.driver.podTemplateFile"])]
    assert [p["containerPort"] for p in driver["spec"]["containers"][0]["ports"]] == [9110]


# ---- network policies ----------------------------------------------------------------------

SERVER_SELECTORS = {
    "kafka": {"strimzi.io/cluster": RELEASE, "strimzi.io/kind": "Kafka"},
    "timescaledb": {"app.kubernetes.io/name": "timescaledb", "app.kubernetes.io/instance": RELEASE},
    "mlflow": {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": RELEASE},
}


def egress_targets(policies: list[dict[str, Any]]) -> set[str]:
    found = set()
    for p in policies:
        for rule in p["spec"].get("egress", []):
            for to in rule.get("to", []):
                sel = (to.get("podSelector") or {}).get("matchLabels") or {}
                found |= {s for s, want in SERVER_SELECTORS.items() if sel == want}
    return found


def selecting(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for p in policies:
        if (p["spec"]["podSelector"].get("matchLabels") or {}).items() <= labels.items():
            out.append(p)
    return out


def test_default_deny_then_each_pod_reaches_only_its_servers() -> None:
    docs = rendered("kind")
    policies = find(docs, "NetworkPolicy")
    deny = one(docs, "NetworkPolicy", "signalstack-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    others = [p for p in policies if p["spec"]["podSelector"]]
    checked = 0
    for d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        tmpl = d if d["kind"] == "Pod" else None
        labels = (tmpl or {}).get("metadata", {}).get("labels") or _template_labels(d)
        mine = selecting(others, labels)
        assert mine, f"{d['kind']} {d['metadata']['name']}: no NetworkPolicy opens its flows"
        wanted = {k.split("/")[1].removesuffix("-client") for k in labels
                  if k.startswith("signalstack.io/") and k.endswith("-client")}  # fmt: skip
        if labels.get("signalstack.io/helm-test") == "true":
            continue  # the tests' policy opens the release's pods
        assert egress_targets(mine) == wanted, f"{d['metadata']['name']}: {wanted}"
        checked += 1
    assert checked >= 9
    # and each server admits exactly its clients
    for server in ("timescaledb", "mlflow"):
        pol = one(docs, "NetworkPolicy", f"signalstack-{server}")["spec"]
        assert pol["ingress"][0]["from"] == [
            {"podSelector": {"matchLabels": {f"signalstack.io/{server}-client": "true"}}}
        ]
    # and Grafana (kube-prometheus-stack's, namespace monitoring) reads the dashboards' tables
    grafana = one(docs, "NetworkPolicy", "signalstack-timescaledb")["spec"]["ingress"][1]["from"]
    assert grafana == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}},
        }
    ]
    listener = one(docs, "Kafka", RELEASE)["spec"]["kafka"]["listeners"][0]
    assert listener["networkPolicyPeers"] == [
        {"podSelector": {"matchLabels": {"signalstack.io/kafka-client": "true"}}}
    ]


def _template_labels(doc: dict[str, Any]) -> dict[str, str]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


def test_network_policies_can_be_switched_off() -> None:
    assert not find(rendered("default", ("global.networkPolicy.enabled=false",)), "NetworkPolicy")


# ---- the Pushgateway of the CronJobs' metrics -----------------------------------------------

PUSHERS = {"drift": "DRIFT_PUSHGATEWAY_URL", "backfill": "BACKFILL_PUSHGATEWAY_URL"}


def _pushgateway_egress(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r for r in policy["spec"]["egress"]
        if any("prometheus-pushgateway" in str(t.get("podSelector")) for t in r.get("to", []))
    ]  # fmt: skip


@pytest.mark.parametrize("profile", ["kind", "production"])
def test_drift_and_backfill_push_to_the_pushgateway_make_operators_runs(profile: str) -> None:
    """The SignalstackDrift* / SignalstackBackfillFailed alerts read what these Jobs push: both
    profiles point them at the Pushgateway manifests/operators.sh installs (release, Service
    name and namespace from its values file) and their NetworkPolicies let them reach its pods
    (and nothing else there)."""
    from urllib.parse import urlsplit

    root = CHART.parents[1]
    operators = (root / "manifests" / "operators.sh").read_text()
    install = re.search(r"^install (\S+) (\S+) prometheus-pushgateway ", operators, re.M)
    assert install, "manifests/operators.sh installs no Pushgateway"
    namespace = install.group(2)
    pg_values = yaml.safe_load((root / "manifests/values/prometheus-pushgateway.yaml").read_text())
    service = pg_values["fullnameOverride"]
    port = pg_values.get("service", {}).get("port", 9091)  # the chart's default Service port

    docs = rendered(profile)
    for name, var in PUSHERS.items():
        cron = one(docs, "CronJob", f"signalstack-{name}")
        c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        url = urlsplit(env_of(c)[var])
        assert url.scheme == "http" and url.port == port, url
        assert url.hostname in (f"{service}.{namespace}.svc", f"{service}.{namespace}"), url
        [rule] = _pushgateway_egress(one(docs, "NetworkPolicy", f"signalstack-{name}"))
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        assert rule["to"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                # the prometheus-pushgateway chart's pod label (its name: nameOverride unset)
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "prometheus-pushgateway"}
                },
            }
        ]
    assert "nameOverride" not in pg_values
    assert pg_values["serviceMonitor"]["enabled"] and pg_values["serviceMonitor"]["honorLabels"]


def test_without_a_pushgateway_nothing_is_pushed_nor_opened() -> None:
    docs = rendered("default")
    for name, var in PUSHERS.items():
        cron = one(docs, "CronJob", f"signalstack-{name}")
        c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert var not in env_of(c)
        assert not _pushgateway_egress(one(docs, "NetworkPolicy", f"signalstack-{name}"))
    # one in the release's namespace: a pod selector only
    docs = rendered(
        "default",
        (
            "global.pushgateway.url=http://pgw:9091",
            "global.pushgateway.namespace=",
            "global.pushgateway.port=9191",
        ),
    )
    for name in PUSHERS:
        [rule] = _pushgateway_egress(one(docs, "NetworkPolicy", f"signalstack-{name}"))
        assert rule == {
            "to": [
                {
                    "podSelector": {
                        "matchLabels": {"app.kubernetes.io/name": "prometheus-pushgateway"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 9191}],
        }


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (("global.pushgateway.url=prometheus-pushgateway:9091",), "url"),  # no scheme
        (("global.pushgateway.port=0",), "port"),
        (("drift.pushgatewayUrl=http://pgw:9091",), "pushgatewayUrl"),  # one place: global
    ],
)
def test_pushgateway_values_are_checked(sets: tuple[str, ...], says: str) -> None:
    with pytest.raises(HelmError, match=says):
        rendered("default", sets)


# ---- alert windows against the schedules ----------------------------------------------------


def _weekly_runs(schedule: str, tz: str) -> list[datetime]:
    """The runs of a `M H * * DOW` CronJob schedule (the form the chart's CronJobs use) over
    three weeks around a DST change, in UTC (wall-clock subtraction would hide the DST hour)."""
    minute, hour, dom, month, dow = schedule.split()
    assert dom == month == "*" and minute.isdigit() and hour.isdigit(), schedule
    days: set[int] = set()
    for part in dow.replace("*", "0-6").split(","):
        lo, _, hi = part.partition("-")
        days |= set(range(int(lo), int(hi or lo) + 1))
    cron_days = {d % 7 for d in days}  # cron: 0 and 7 are Sunday
    start = datetime(2026, 10, 26, tzinfo=ZoneInfo(tz))  # the week of the US DST end
    out = []
    for n in range(21):
        day = start + timedelta(days=n)
        if (day.isoweekday() % 7) in cron_days:
            out.append(day.replace(hour=int(hour), minute=int(minute)).astimezone(UTC))
    return out


def test_drift_stale_window_fits_the_drift_schedule() -> None:
    """SignalstackDriftStale's window (seconds since the last success) is longer than the longest
    gap between two scheduled drift passes plus a pass's deadline (quiet every night and
    weekend), and short enough to fire within a day of a missed pass after the longest gap."""
    rules = yaml.safe_load(
        (CHART / "charts/monitoring/files/rules/signalstack.rules.yaml").read_text()
    )
    expr = next(
        r["expr"]
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "SignalstackDriftStale"
    )
    match = re.search(r"signalstack_drift_last_success_timestamp_seconds\)\s*>\s*([0-9]+)", expr)
    assert match, expr
    window = int(match.group(1))
    cron = one(rendered("production"), "CronJob", "signalstack-drift")["spec"]
    runs = _weekly_runs(cron["schedule"], cron["timeZone"])
    longest = max((b - a).total_seconds() for a, b in itertools.pairwise(runs))
    deadline = cron["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    assert longest + deadline < window < longest + 86400, (window, longest)


# ---- monitoring files ----------------------------------------------------------------------


def test_monitoring_ships_whatever_files_there_are(chart_copy: Path) -> None:
    files = chart_copy / "charts" / "monitoring" / "files"
    shutil.rmtree(files)
    docs = docs_of(helm_template(chart_copy))
    assert not find(docs, "PrometheusRule")
    assert not [
        d for d in find(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    (files / "dashboards").mkdir(parents=True)
    (files / "rules").mkdir()
    for name in ("pipeline", "market_view"):
        (files / "dashboards" / f"{name}.json").write_text(f'{{"title": "{name}", "panels": []}}\n')
    groups = [{"name": "a", "rules": [{"alert": "A", "expr": "up == 0",
                                       "annotations": {"summary": "{{ $labels.job }} down"}}]},
              {"name": "b", "rules": [{"record": "r:x", "expr": "sum(up)"}]}]  # fmt: skip
    (files / "rules" / "one.yaml").write_text(yaml.safe_dump({"groups": groups[:1]}))
    (files / "rules" / "two.yaml").write_text(yaml.safe_dump({"groups": groups[1:]}))
    docs = docs_of(helm_template(chart_copy))
    dashboards = [
        d
        for d in find(docs, "ConfigMap")
        if d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert {k: v for d in dashboards for k, v in d["data"].items()} == {
        f"{n}.json": (files / "dashboards" / f"{n}.json").read_text()
        for n in ("pipeline", "market_view")
    }
    rule = find(docs, "PrometheusRule")
    assert len(rule) == 1 and rule[0]["spec"]["groups"] == groups  # alert templating kept as is


def test_the_repository_dashboards_and_rules_are_shipped() -> None:
    files = CHART / "charts" / "monitoring" / "files"
    docs = rendered("kind")
    names = sorted(p.name for p in files.glob("dashboards/*.json"))
    shipped = sorted(
        k for d in find(docs, "ConfigMap") for k in d.get("data", {}) if k.endswith(".json")
    )
    assert shipped == names
    groups = [
        g
        for p in sorted(files.glob("rules/*.yaml"))
        for g in yaml.safe_load(p.read_text())["groups"]
    ]
    assert groups
    assert one(docs, "PrometheusRule", "signalstack-monitoring")["spec"]["groups"] == groups


# ---- images and NOTES ----------------------------------------------------------------------


def test_image_references() -> None:
    docs = rendered(
        "kind",
        ("serving.image.repository=localhost:5001/signalstack/serving", "serving.image.tag=abc"),
    )
    c = one(docs, "Deployment", "signalstack-serving")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "localhost:5001/signalstack/serving:abc"  # no second registry
    c = one(docs, "Deployment", "signalstack-sink")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "localhost:5001/signalstack/sink:dev"
    default = one(rendered("default"), "Deployment", "signalstack-sink")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = default["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"signalstack/sink:{chart['appVersion']}"


def test_all_charts_share_one_version() -> None:
    charts = [yaml.safe_load(p.read_text()) for p in CHART.glob("**/Chart.yaml")]
    assert len(charts) == 13
    assert {(c["version"], c["appVersion"]) for c in charts} == {("0.1.0", "0.1.0")}
    umbrella = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d.get("condition") for d in umbrella["dependencies"]}
    assert deps.pop("common") is None
    assert deps == {n: f"{n}.enabled" for n in deps} and len(deps) == 11


def test_notes_say_what_to_port_forward() -> None:
    res = run(HELM, "install", RELEASE, CHART, "-n", NAMESPACE, "--dry-run=client",
              "-f", CHART / "values-kind.yaml")  # fmt: skip
    assert res.returncode == 0, res.stderr
    notes = res.stdout.split("NOTES:", 1)[1]
    for line in (
        f"kubectl -n {NAMESPACE} port-forward svc/signalstack-serving 8080:8080",
        f"kubectl -n {NAMESPACE} port-forward svc/signalstack-mlflow 5000:5000",
        "kubectl -n monitoring port-forward svc/kps-grafana 3000:80",
        f"kubectl -n {NAMESPACE} create job --from=cronjob/signalstack-backfill",
    ):
        assert line in notes, notes


def test_external_servers_replace_the_in_release_ones() -> None:
    """ci/external-services: Kafka, the database and MLflow elsewhere; the workloads point at
    them, no policy opens a flow to pods that do not exist, the extra egress is there."""
    docs = rendered("ci-external-services")
    assert not find(docs, "Kafka") and not find(docs, "StatefulSet") and not find(docs, "Secret")
    sink = one(docs, "Deployment", "signalstack-sink")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(sink)
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka-0.kafka.example.internal:9092")
    assert env["TIMESCALE_HOST"] == "timescale.example.internal"
    assert env["TIMESCALE_PASSWORD"] == {"secretKeyRef": {"name": "managed-db", "key": "password"}}
    assert egress_targets(find(docs, "NetworkPolicy")) == set()
    policy = one(docs, "NetworkPolicy", "signalstack-sink")["spec"]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in [
        t for r in policy["egress"] for t in r.get("to", [])
    ]


@pytest.mark.slow
def test_mlflow_server_runs_with_the_rendered_arguments(tmp_path: Path) -> None:
    """The Deployment's `mlflow server` arguments, run here (the same mlflow as the training
    image): it serves the in-cluster names the clients use and refuses other Host headers."""
    import socket
    import time
    import urllib.error
    import urllib.request

    deploy = one(rendered("kind"), "Deployment", "signalstack-mlflow")
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "mlflow.db"  # already migrated (the devstack's template): starts in seconds
    shutil.copyfile(template_db(), db)
    local = {
        "--host": "127.0.0.1",
        "--port": str(port),
        "--workers": "1",
        "--backend-store-uri": f"sqlite:///{db}",
        "--artifacts-destination": str(tmp_path / "artifacts"),
    }
    args = [f"{k}={local[k]}" if (k := a.partition("=")[0]) in local else a for a in c["args"]]
    exe = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [exe, *c["command"][1:], *args],
        env={**os.environ, "HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def get(path: str, host: str, body: bytes | None = None) -> int:
        headers = {"Host": host, "Content-Type": "application/json"}
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return err.code

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get("/health", "localhost") == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        search, body = "/api/2.0/mlflow/experiments/search", b'{"max_results": 1}'
        assert get(search, f"signalstack-mlflow:{c['ports'][0]['containerPort']}", body) == 200
        assert get(search, "signalstack-mlflow.signalstack.svc.cluster.local:5000", body) == 200
        assert get(search, "elsewhere.example.com", body) == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_mlflow_backend_uri_carries_no_password(timescale_db: Any, monkeypatch: Any) -> None:
    """MLflow's backend store URI names no password (it would be on the command line, and an
    @ : / % # in it breaks the URL): the password is PGPASSWORD from the Secret, which libpq
    (under psycopg, under SQLAlchemy: what `mlflow server` uses) reads. Shown with a real
    TimescaleDB and a role whose password holds every one of those characters."""
    from urllib.parse import urlsplit

    import sqlalchemy

    def mlflow_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
        deploy = one(docs, "Deployment", "signalstack-mlflow")
        c = deploy["spec"]["template"]["spec"]["containers"][0]
        assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in c["args"]
        return env_of(c)

    env = mlflow_env(rendered("production"))
    assert env["PGPASSWORD"] == {
        "secretKeyRef": {"name": "signalstack-timescaledb", "key": "password"}
    }
    assert urlsplit(env["MLFLOW_BACKEND_STORE_URI"]).password is None
    assert "PASSWORD" not in env["MLFLOW_BACKEND_STORE_URI"]

    where = urlsplit(timescale_db.dsn)
    password = "p@ss:w/rd%2F#?x"
    with psycopg_connect(timescale_db.dsn) as conn:
        conn.execute("DROP ROLE IF EXISTS mlflow_uri_test")
        conn.execute(f"CREATE ROLE mlflow_uri_test LOGIN PASSWORD '{password}'")
    try:
        sets = (
            f"global.timescaledb.host={where.hostname}",
            "global.timescaledb.user=mlflow_uri_test",
            f"global.contracts.ports.timescaledb={where.port}",
            f"mlflow.backendStore.database={timescale_db.database}",
        )
        uri = mlflow_env(rendered("kind", sets))["MLFLOW_BACKEND_STORE_URI"]
        monkeypatch.setenv("PGPASSWORD", password)
        engine = sqlalchemy.create_engine(uri)
        try:
            with engine.connect() as conn:
                who = conn.execute(sqlalchemy.text("SELECT current_user")).scalar()
            assert who == "mlflow_uri_test"
        finally:
            engine.dispose()
        monkeypatch.setenv("PGPASSWORD", "wrong")
        engine = sqlalchemy.create_engine(uri)
        try:
            with pytest.raises(sqlalchemy.exc.OperationalError), engine.connect():
                pass
        finally:
            engine.dispose()
    finally:
        with psycopg_connect(timescale_db.dsn) as conn:
            conn.execute("DROP ROLE mlflow_uri_test")


def test_migrations_hook_and_table_test_run_on_timescaledb(timescale_db: Any) -> None:
    """The migrations Job's command applies sql/ to a real TimescaleDB (once: a second run has
    nothing pending), and the helm test's script then finds every table of the contract."""
    from urllib.parse import urlsplit

    docs = rendered("kind")
    where = urlsplit(timescale_db.dsn)
    server = {
        "TIMESCALE_HOST": str(where.hostname),
        "TIMESCALE_PORT": str(where.port),
        "TIMESCALE_USER": str(where.username),
        "TIMESCALE_PASSWORD": where.password or "",
        "TIMESCALE_DATABASE": where.path.lstrip("/"),
    }
    job = one(docs, "Job", "signalstack-timescaledb-migrations")["spec"]["template"]["spec"]
    c = job["containers"][0]
    assert c["command"] == ["python", "-c"]
    rendered_env = env_of(c)
    assert set(server) <= set(rendered_env)
    env = {k: v for k, v in rendered_env.items() if isinstance(v, str)}
    env |= server | {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    for expected in ("applied: [", "applied: nothing pending"):
        res = subprocess.run([sys.executable, "-c", *c["args"]], env=env, capture_output=True,
                             text=True, check=False, timeout=300)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert expected in res.stdout, res.stdout

    pod = one(docs, "Pod", "signalstack-timescaledb-test")["spec"]["containers"][0]
    pg = {"PGHOST": server["TIMESCALE_HOST"], "PGPORT": server["TIMESCALE_PORT"],
          "PGUSER": server["TIMESCALE_USER"], "PGDATABASE": server["TIMESCALE_DATABASE"],
          "PGPASSWORD": server["TIMESCALE_PASSWORD"]}  # fmt: skip
    assert set(pg) == set(env_of(pod))
    res = subprocess.run([*pod["command"], *pod["args"]], env={**os.environ, **pg},
                         capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    tables = yaml.safe_load((CHART / "values.yaml").read_text())["global"]["contracts"]["tables"]
    assert [line.split(":")[0] for line in res.stdout.splitlines()] == tables
    # and the script fails when a table is missing
    with psycopg_connect(timescale_db.dsn) as conn:
        conn.execute("DROP TABLE drift")
    res = subprocess.run([*pod["command"], *pod["args"]], env={**os.environ, **pg},
                         capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert res.returncode != 0 and "drift: 0" in res.stdout


def psycopg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)
