"""skaffold.yaml: valid for skaffold's own schema, one artifact per Dockerfile target, and a helm
release whose chart, values files, image values and port-forwards exist in the chart."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import CHART, ROOT, find, pod_spec, rendered

pytestmark = pytest.mark.integration

SKAFFOLD = ROOT / "skaffold.yaml"
SCHEMAS = Path(__file__).parent / "skaffold-schema"
# The Dockerfile targets skaffold builds (timescaledb is not one: on kind the chart runs the public
# TimescaleDB image; the project's own is for the live cluster's `ci` profile).
TARGETS = ("ingest", "stream", "sink", "training", "serving", "backfill", "drift")
# Chart component -> the Dockerfile target whose image it runs.
COMPONENTS = {t: t for t in TARGETS}
DEFAULT_REPO = "localhost:5001"
TEMPLATE_VAR = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def config() -> dict[str, Any]:
    doc = yaml.safe_load(SKAFFOLD.read_text())
    assert isinstance(doc, dict)
    return doc


def schema_for(api_version: str) -> dict[str, Any]:
    path = SCHEMAS / (api_version.removeprefix("skaffold/") + ".json")
    assert path.is_file(), f"no vendored skaffold schema for {api_version} ({path})"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def apply_patches(doc: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """A profile's JSON patches (RFC 6902 add/replace/remove), as skaffold applies them."""
    out = copy.deepcopy(doc)
    for p in patches:
        *parents, last = [s.replace("~1", "/").replace("~0", "~") for s in p["path"].split("/")[1:]]
        node: Any = out
        for s in parents:
            node = node[int(s)] if isinstance(node, list) else node[s]
        op = p.get("op", "replace")
        if isinstance(node, list):
            idx = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(idx, p["value"])
            elif op == "replace":
                node[idx] = p["value"]
            else:
                assert op == "remove", op
                del node[idx]
        elif op == "remove":
            del node[last]
        else:
            assert op in ("add", "replace"), op
            assert op == "add" or last in node, f"replace of a missing {p['path']}"
            node[last] = p["value"]
    return out


def profile(name: str) -> dict[str, Any]:
    """The config with profile `name` applied (its patches, then its sections replacing ours)."""
    doc = config()
    prof = next(p for p in doc.get("profiles", []) if p["name"] == name)
    out = apply_patches(doc, prof.get("patches", []))
    for key in ("build", "deploy", "portForward", "manifests", "test"):
        if key in prof:
            out[key] = prof[key]
    return out


def release(doc: dict[str, Any]) -> dict[str, Any]:
    releases = doc["deploy"]["helm"]["releases"]
    assert len(releases) == 1, releases
    rel: dict[str, Any] = releases[0]
    return rel


def var(image: str) -> str:
    """skaffold's template-variable suffix of an artifact ('-', '.', '/', ':' become '_')."""
    return re.sub(r"[-./:]", "_", image)


def test_skaffold_yaml_is_valid_for_its_published_schema() -> None:
    doc = config()
    assert re.fullmatch(r"skaffold/v4beta\d+", doc["apiVersion"]), doc["apiVersion"]
    validator = jsonschema.Draft7Validator(schema_for(doc["apiVersion"]))
    errors = [e.message for e in validator.iter_errors(doc)]
    assert not errors, errors
    assert [p["name"] for p in doc["profiles"]] == ["kind"]
    kind = profile("kind")
    assert not [e.message for e in validator.iter_errors(kind)]
    assert kind["build"]["local"]["push"] is True  # to the kind registry (--default-repo)


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("a misspelt field", lambda d: d["deploy"]["helm"]["releases"][0].update(chartpath="x")),
        (
            "an unknown builder field",
            lambda d: d["build"]["artifacts"][0]["docker"].update(targt="x"),
        ),
        ("a wrong type", lambda d: d["portForward"][0].update(localPort="3000")),
        ("a bad enum", lambda d: d["build"].update(tagPolicy={"gitCommit": {"variant": "Nope"}})),
        ("an unknown top-level key", lambda d: d.update(deploys={})),
    ],
)
def test_the_schema_rejects_a_broken_config(where: str, mutate: Any) -> None:
    doc = config()
    validator = jsonschema.Draft7Validator(schema_for(doc["apiVersion"]))
    mutate(doc)
    assert not validator.is_valid(doc), f"{where} passed validation"


def test_one_artifact_per_dockerfile_target() -> None:
    artifacts = config()["build"]["artifacts"]
    dockerfile = ROOT / "Dockerfile"
    assert dockerfile.is_file(), "the Dockerfile (issue 15, item 1) is missing"
    stages = {
        m.group(1).lower()
        for m in re.finditer(
            r"^\s*FROM\s+\S+(?:\s+--\S+)*\s+AS\s+(\S+)", dockerfile.read_text(), re.I | re.M
        )
    }
    assert sorted(a["docker"]["target"] for a in artifacts) == sorted(TARGETS)
    for a in artifacts:
        target = a["docker"]["target"]
        assert a["image"] == f"signalstack/{target}"
        assert (ROOT / a.get("context", ".") / a["docker"]["dockerfile"]) == dockerfile
        assert target in stages, f"Dockerfile has no stage {target!r} (stages: {sorted(stages)})"


@pytest.mark.parametrize("profile_name", [None, "kind"])
def test_release_chart_and_values_files_exist(profile_name: str | None) -> None:
    doc = profile(profile_name) if profile_name else config()
    rel = release(doc)
    assert rel["chartPath"] == "charts/signalstack"
    assert (ROOT / rel["chartPath"] / "Chart.yaml").is_file()
    assert rel["namespace"] == "signalstack"
    for f in rel.get("valuesFiles", []):
        assert (ROOT / f).is_file(), f
    if profile_name == "kind":
        assert rel["valuesFiles"] == ["charts/signalstack/values-kind.yaml"]


def skaffold_sets(doc: dict[str, Any]) -> list[str]:
    """The release's --set arguments as skaffold passes them after building the artifacts into
    DEFAULT_REPO with tag `t-<target>`."""
    images = {var(a["image"]): a for a in doc["build"]["artifacts"]}
    env = {}
    for v, a in images.items():
        env[f"IMAGE_REPO_{v}"] = f"{DEFAULT_REPO}/{a['image']}"
        env[f"IMAGE_TAG_{v}"] = f"t-{a['docker']['target']}"
    rel = release(doc)
    sets = [f"{k}={v}" for k, v in rel.get("setValues", {}).items()]
    for key, template in rel["setValueTemplates"].items():
        names = TEMPLATE_VAR.findall(template)
        assert names and all(n in env for n in names), f"{key}: {template} names no built artifact"
        value = TEMPLATE_VAR.sub(lambda m: env[m.group(1)], template)
        sets.append(f"{key}={value}")
    return sets


def our_image_values() -> dict[str, str]:
    """Every image value of the chart that names one of our images: its key path (as --set
    writes it, e.g. `timescaledb.migrations.image`) -> the Dockerfile target."""
    found: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            repo = node.get("repository")
            if isinstance(repo, str) and repo.startswith("signalstack/"):
                found[path] = repo.removeprefix("signalstack/")
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))

    for values in sorted((CHART / "charts").glob("*/values.yaml")):
        walk(yaml.safe_load(values.read_text()), values.parent.name)
    return found


def test_set_value_templates_give_every_component_its_image() -> None:
    images = our_image_values()
    assert {k.split(".")[0] for k in images} >= set(COMPONENTS), images
    for component, target in COMPONENTS.items():
        assert images[f"{component}.image"] == target
    templates = release(config())["setValueTemplates"]
    for path, target in images.items():
        v = var(f"signalstack/{target}")
        assert templates.get(f"{path}.repository") == f"{{{{.IMAGE_REPO_{v}}}}}", path
        assert templates.get(f"{path}.tag") == f"{{{{.IMAGE_TAG_{v}}}}}", path
    assert len(templates) == 2 * len(images), sorted(templates)


def images_of(docs: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for d in docs:
        spec = pod_spec(d)
        if spec is not None:
            out |= {c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])}
        if d["kind"] == "SparkApplication":
            s = d["spec"]
            out |= {
                i
                for i in (s.get("image"), s["driver"].get("image"), s["executor"].get("image"))
                if i
            }
    return out


def test_the_chart_runs_the_images_skaffold_builds() -> None:
    """Rendered with skaffold's values, every signalstack workload runs exactly the image built
    for its component, from the kind registry (no second registry prefix, no chart default)."""
    doc = profile("kind")
    docs = rendered("kind", tuple(skaffold_sets(doc)))
    ours = {i for i in images_of(docs) if "signalstack/" in i}
    expected = {f"{DEFAULT_REPO}/signalstack/{t}:t-{t}" for t in TARGETS}
    assert ours <= expected, f"images not from skaffold's build: {sorted(ours - expected)}"
    assert ours == expected, f"artifacts no workload runs: {sorted(expected - ours)}"


def test_port_forwards_name_what_the_cluster_runs() -> None:
    doc = config()
    services = {(s["metadata"]["name"]): s for s in find(rendered("kind"), "Service")}
    kps_values = yaml.safe_load(
        (ROOT / "manifests" / "values" / "kube-prometheus-stack.yaml").read_text()
    )
    operators = (ROOT / "manifests" / "operators.sh").read_text()
    forwards = {f["resourceName"]: f for f in doc["portForward"]}
    assert set(forwards) == {
        f"{kps_values['fullnameOverride']}-grafana",
        "signalstack-serving",
        "signalstack-mlflow",
    }
    for name, f in forwards.items():
        assert f["resourceType"] == "service"
        if name.endswith("-grafana"):  # kube-prometheus-stack's Grafana (make operators)
            assert re.search(rf"install kps {f['namespace']} kube-prometheus-stack", operators)
            assert f["port"] == 80
            continue
        assert f["namespace"] == "signalstack"
        assert name in services, f"the chart renders no Service {name} (has {sorted(services)})"
        assert f["port"] in [p["port"] for p in services[name]["spec"]["ports"]]
    assert forwards["signalstack-serving"]["port"] == 8080


def test_chart_path_is_the_umbrella_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["name"] == "signalstack"
    assert (ROOT / release(config())["chartPath"]).resolve() == CHART.resolve()


def test_the_docs_commands_name_what_the_release_renders() -> None:
    """docs/components/cluster.md's kubectl commands (a backfill by hand, port-forwards) name
    CronJobs and Services the release has."""
    doc = (ROOT / "docs" / "components" / "cluster.md").read_text()
    docs = rendered("kind")
    cronjobs = {d["metadata"]["name"] for d in find(docs, "CronJob")}
    services = {d["metadata"]["name"]: d for d in find(docs, "Service")}
    named = re.findall(r"--from=cronjob/([\w-]+)", doc)
    assert "signalstack-backfill" in named
    assert set(named) <= cronjobs, set(named) - cronjobs
    forwards = re.findall(r"-n signalstack port-forward svc/([\w-]+) \d+:(\d+)", doc)
    assert forwards
    for name, port in forwards:
        assert name in services, name
        assert int(port) in [p["port"] for p in services[name]["spec"]["ports"]], (name, port)


def test_the_chart_expects_the_operators_where_make_operators_puts_them() -> None:
    """The chart's view of kube-prometheus-stack (release label, Prometheus' namespace for the
    NetworkPolicies, Grafana's Service) is what manifests/operators.sh installs."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    operators = (ROOT / "manifests" / "operators.sh").read_text()
    m = re.search(r"^install (\S+) (\S+) kube-prometheus-stack ", operators, re.M)
    assert m, "operators.sh installs no kube-prometheus-stack"
    release_name, namespace = m.groups()
    assert values["global"]["serviceMonitor"]["labels"]["release"] == release_name
    assert values["global"]["networkPolicy"]["prometheusNamespace"] == namespace
    grafana = yaml.safe_load((CHART / "charts" / "monitoring" / "values.yaml").read_text())[
        "grafana"
    ]
    [forward] = [f for f in config()["portForward"] if f["resourceName"].endswith("-grafana")]
    assert (grafana["namespace"], grafana["service"], grafana["port"]) == (
        forward["namespace"],
        forward["resourceName"],
        forward["port"],
    )
    spark = yaml.safe_load((ROOT / "manifests" / "values" / "spark-operator.yaml").read_text())
    assert "signalstack" in spark["spark"]["jobNamespaces"]
