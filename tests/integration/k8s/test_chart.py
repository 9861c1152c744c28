"""charts/signalstack validates: helm lint --strict, helm template of each profile and with each
subchart off, kubeconform -strict of every object (custom resources against charts/crd-schemas),
values.schema.json refusing bad values by name, and a chart broken on purpose failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import (
    CHART,
    HELM,
    PROFILES,
    SUBCHARTS,
    HelmError,
    docs_of,
    helm_template,
    kubeconform,
    render,
    rendered,
    run,
)

pytestmark = pytest.mark.integration

REQUIRED_KINDS = {
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "NetworkPolicy",
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_lint_strict(profile: str) -> None:
    args: list[str | Path] = [HELM, "lint", "--strict", CHART]
    for v in PROFILES[profile]:
        args += ["-f", v]
    res = run(*args)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_object_is_valid(profile: str, builtin_schemas: Path) -> None:
    res = kubeconform(render(profile), builtin_schemas)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in res.stdout, res.stdout


@pytest.mark.parametrize("profile", ["kind", "production"])
def test_profile_renders_every_kind(profile: str) -> None:
    kinds = {d["kind"] for d in rendered(profile)}
    assert kinds >= REQUIRED_KINDS, f"missing: {sorted(REQUIRED_KINDS - kinds)}"


def test_optional_objects_are_valid(builtin_schemas: Path) -> None:
    """What the profiles leave off (KServe, a model volume, NodePorts) validates too."""
    manifest = render("default", ("serving.kserve.enabled=true", "serving.modelDir.enabled=true"))
    assert any(d["kind"] == "InferenceService" for d in docs_of(manifest))
    res = kubeconform(manifest, builtin_schemas)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("subchart", ["serving"])
def test_each_subchart_switches_off(subchart: str, builtin_schemas: Path) -> None:
    if not (CHART / "charts" / subchart).is_dir():
        pytest.fail(f"charts/signalstack/charts/{subchart} is missing")
    manifest = render("kind", (f"{subchart}.enabled=false",))
    docs = docs_of(manifest)
    components = {d["metadata"].get("labels", {}).get("app.kubernetes.io/component") for d in docs}
    assert subchart not in components
    assert docs, "the rest still renders"
    res = kubeconform(manifest, builtin_schemas)
    assert res.returncode == 0, res.stdout + res.stderr


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
]


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_schema_rejects_bad_values(values: str, field: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(values)
    with pytest.raises(HelmError) as err:
        helm_template(CHART, (bad,))
    assert "schema" in str(err.value) and field in str(err.value), str(err.value)
