"""manifests/: the namespace and the operator installs `make operators` applies. Nothing here can
reach the operators' charts; what is checked offline: the manifests validate, every values file
is used, and each pinned version is written once (scripts/versions.env) and agrees with the CRD
schemas the chart is validated against."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import CRD_SCHEMAS, NAMESPACE, ROOT, docs_of, kubeconform

pytestmark = pytest.mark.integration

MANIFESTS = ROOT / "manifests"
OPERATORS = MANIFESTS / "operators.sh"
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
OPERATOR_PINS = (
    "STRIMZI_VERSION",
    "SPARK_OPERATOR_VERSION",
    "KUBE_PROMETHEUS_STACK_VERSION",
    "KSERVE_VERSION",
    "METRICS_SERVER_CHART_VERSION",
    "PUSHGATEWAY_CHART_VERSION",
)
CLUSTER_PINS = (
    *OPERATOR_PINS,
    "KIND_VERSION",
    "KIND_NODE_IMAGE",
    "KIND_REGISTRY_IMAGE",
    "SKAFFOLD_VERSION",
    "GO_VERSION",
    "HELM_VERSION",
    "ACTIONLINT_VERSION",
)


def cluster_files() -> list[Path]:
    """Every file of the cluster path that could write a version down."""
    files = [p for p in MANIFESTS.rglob("*") if p.is_file()]
    files += list((ROOT / ".github").rglob("*.y*ml"))
    files += [ROOT / "Makefile", ROOT / "skaffold.yaml", ROOT / "kind-config.yaml"]
    return files


def test_manifests_validate(builtin_schemas: Path) -> None:
    files = sorted(MANIFESTS.glob("*.yaml"))
    assert {f.name for f in files} == {"namespace.yaml", "local-registry-hosting.yaml"}
    manifest = "\n---\n".join(f.read_text() for f in files)
    res = kubeconform(manifest, builtin_schemas)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Valid: {len(docs_of(manifest))}" in res.stdout


def test_kubeconform_rejects_a_broken_manifest(builtin_schemas: Path) -> None:
    broken = (MANIFESTS / "namespace.yaml").read_text().replace("  labels:", "  label:")
    res = kubeconform(broken, builtin_schemas)
    assert res.returncode != 0 and "label" in res.stdout, res.stdout


def test_namespace_is_restricted() -> None:
    [ns] = docs_of((MANIFESTS / "namespace.yaml").read_text())
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == NAMESPACE
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert f'kubectl apply -f "$ROOT/manifests/{"namespace.yaml"}"' in OPERATORS.read_text()


def test_every_operator_has_its_values_file_and_pin() -> None:
    script = OPERATORS.read_text()
    used = set(re.findall(r'"\$VALUES/([\w.-]+\.yaml)"', script))
    present = {p.name for p in (MANIFESTS / "values").glob("*.yaml")}
    assert used == present, f"unused: {present - used}, missing: {used - present}"
    for name in present:
        assert isinstance(yaml.safe_load((MANIFESTS / "values" / name).read_text()), dict)
    for pin in OPERATOR_PINS:
        assert f'"${pin}"' in script, f"operators.sh does not install at {pin}"
    assert "upgrade --install" in script  # idempotent: `make operators` twice is fine


def test_pinned_versions_are_written_once() -> None:
    """Scripts, values, workflow, Makefile and skaffold/kind configs read the pins from
    versions.env; none writes a version itself (where it would drift)."""
    for pin in CLUSTER_PINS:
        value = VERSIONS[pin]
        bare = value.split(":")[-1].removeprefix("v")
        for f in cluster_files():
            text = f.read_text()
            assert not re.search(rf"(?<![\w.])v?{re.escape(bare)}(?![\w.])", text), (
                f"{f.relative_to(ROOT)} writes {pin}'s version {value}: read ${pin} instead"
            )


def test_operator_pins_match_the_crd_schemas_the_chart_is_validated_against() -> None:
    sources = (CRD_SCHEMAS / "SOURCES.md").read_text()
    rows = {
        m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+\.json)` \|.*$", sources, re.M)
    }
    assert f"`{VERSIONS['STRIMZI_VERSION']}`" in rows["kafka.strimzi.io/kafka_v1.json"]
    spark = rows["sparkoperator.k8s.io/sparkapplication_v1beta2.json"]
    assert f"`v{VERSIONS['SPARK_OPERATOR_VERSION']}`" in spark
    assert (
        f"`{VERSIONS['KSERVE_VERSION']}`" in rows["serving.kserve.io/inferenceservice_v1beta1.json"]
    )
    assert f"kube-prometheus-stack {VERSIONS['KUBE_PROMETHEUS_STACK_VERSION']}" in sources


def test_docs_name_the_pinned_versions() -> None:
    doc = (ROOT / "docs" / "components" / "cluster.md").read_text()
    for label, pin in (
        ("Strimzi", "STRIMZI_VERSION"),
        ("spark-operator", "SPARK_OPERATOR_VERSION"),
        ("kube-prometheus-stack", "KUBE_PROMETHEUS_STACK_VERSION"),
        ("KServe", "KSERVE_VERSION"),
        ("kind", "KIND_VERSION"),
        ("skaffold", "SKAFFOLD_VERSION"),
        ("Helm", "HELM_VERSION"),
    ):
        mentioned = set(re.findall(rf"{re.escape(label)} v?(\d+\.\d+\.\d+)", doc))
        assert mentioned == {VERSIONS[pin].removeprefix("v")}, (label, mentioned)
