"""charts/signalstack validates: helm lint --strict, helm template of each profile and with each
subchart off, kubeconform -strict of every object (custom resources against charts/crd-schemas),
values.schema.json refusing bad values by name, and a chart broken on purpose failing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .conftest import (
    CHART,
    HELM,
    PROFILES,
    SUBCHARTS,
    HelmError,
    helm_template,
    kubeconform,
    kubeconform_files,
    render,
    rendered,
    run,
)

pytestmark = pytest.mark.integration

REQUIRED_KINDS = {
    "Kafka", "KafkaNodePool", "KafkaTopic", "SparkApplication", "StatefulSet", "Deployment",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "CronJob", "ServiceMonitor",
    "PrometheusRule", "NetworkPolicy", "Role", "RoleBinding",
}  # fmt: skip


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_lint_strict(profile: str) -> None:
    args: list[str | Path] = [HELM, "lint", "--strict", CHART]
    for v in PROFILES[profile]:
        args += ["-f", v]
    res = run(*args)
    assert res.returncode == 0, res.stdout + res.stderr


OPTIONAL = ("serving.kserve.enabled=true", "serving.modelDir.enabled=true")


@pytest.fixture(scope="module")
def validated(
    builtin_schemas: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, str]]]:
    """kubeconform of every rendering the tests check, in one run: each profile, the objects the
    profiles leave off (KServe, a model volume), and the kind profile with each subchart off."""
    manifests = {f"profile-{p}": render(p) for p in PROFILES}
    manifests["optional"] = render("default", OPTIONAL)
    for sub in SUBCHARTS:
        manifests[f"off-{sub}"] = render("kind", (f"{sub}.enabled=false",))
    return kubeconform_files(manifests, builtin_schemas, tmp_path_factory.mktemp("rendered"))


def assert_valid(results: list[dict[str, str]]) -> None:
    assert results, "nothing was validated"
    bad = [f"{r['kind']} {r['name']}: {r['status']} {r['msg']}" for r in results
           if r["status"] != "statusValid"]  # fmt: skip
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_object_is_valid(profile: str, validated: dict[str, list[dict[str, str]]]) -> None:
    assert_valid(validated[f"profile-{profile}"])
    assert len(validated[f"profile-{profile}"]) == len(rendered(profile))


@pytest.mark.parametrize("profile", ["kind", "production"])
def test_profile_renders_every_kind(profile: str) -> None:
    kinds = {d["kind"] for d in rendered(profile)}
    assert kinds >= REQUIRED_KINDS, f"missing: {sorted(REQUIRED_KINDS - kinds)}"


def test_optional_objects_are_valid(validated: dict[str, list[dict[str, str]]]) -> None:
    """What the profiles leave off (KServe, a model volume) validates too."""
    assert any(d["kind"] == "InferenceService" for d in rendered("default", OPTIONAL))
    assert_valid(validated["optional"])


@pytest.mark.parametrize("subchart", SUBCHARTS)
def test_each_subchart_switches_off(
    subchart: str, validated: dict[str, list[dict[str, str]]]
) -> None:
    assert (CHART / "charts" / subchart / "Chart.yaml").is_file()
    docs = rendered("kind", (f"{subchart}.enabled=false",))
    components = {d["metadata"].get("labels", {}).get("app.kubernetes.io/component") for d in docs}
    assert subchart not in components
    assert len(docs) > 10, "the rest still renders"
    assert_valid(validated[f"off-{subchart}"])


def test_kubeconform_catches_an_invalid_object(builtin_schemas: Path) -> None:
    """The validation can fail: a misspelt field in a Deployment and a bad CR field."""
    manifest = render("default")
    broken = manifest.replace("readinessProbe:", "readinesProbe:", 1)
    assert broken != manifest
    res = kubeconform(broken, builtin_schemas)
    assert res.returncode != 0 and "readinesProbe" in res.stdout, res.stdout


def test_a_broken_chart_fails_validation(chart_copy: Path, builtin_schemas: Path) -> None:
    """A template error fails helm; a wrong field that still renders fails kubeconform."""
    hpa = chart_copy / "charts" / "serving" / "templates" / "hpa.yaml"
    text = hpa.read_text()
    hpa.write_text(
        text.replace(
            "{{- if .Values.autoscaling.enabled }}", "{{- if .Values.autoscaling.enabled }", 1
        )
    )
    with pytest.raises(HelmError, match=r"hpa\.yaml"):
        helm_template(chart_copy)
    lint = run(HELM, "lint", "--strict", chart_copy)
    assert lint.returncode != 0
    hpa.write_text(text.replace("averageUtilization:", "averageUtilisation:"))
    res = kubeconform(helm_template(chart_copy), builtin_schemas)
    assert res.returncode != 0 and "averageUtilisation" in res.stdout, res.stdout


BAD_VALUES = [
    ("serving:\n  replicaCount: two\n", "replicaCount"),
    ("serving:\n  image:\n    tag: latest\n", "tag"),
    ("serving:\n  resources:\n    limits: null\n", "limits"),
    ("serving:\n  serviceMonitor:\n    interval: often\n", "interval"),
    ("serving:\n  autoscalng:\n    enabled: false\n", "autoscalng"),
    ("global:\n  contracts:\n    ports:\n      serving: 80800\n", "serving"),
    ("global:\n  image:\n    tag: latest\n", "tag"),
    ("kafka:\n  enabled: yes please\n", "enabled"),
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_rejects_bad_values(values: str, field: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(values)
    with pytest.raises(HelmError) as err:
        helm_template(CHART, (bad,))
    assert "schema" in str(err.value) and field in str(err.value), str(err.value)


def test_checked_in_schemas_are_the_generated_ones() -> None:
    """Every chart carries a values.schema.json, and each is what hack/schemas.py writes (a
    schema edited by hand, or a values change without regenerating, fails here)."""
    spec = importlib.util.spec_from_file_location("chart_schemas", CHART / "hack" / "schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs = module.documents()
    charts = {str(p.parent.relative_to(CHART)) for p in CHART.glob("**/Chart.yaml")}
    assert {str(Path(rel).parent) for rel in docs} == charts
    for rel, doc in docs.items():
        assert (CHART / rel).read_text() == module.render(doc), f"{rel}: run hack/schemas.py"
