"""helm 4, kubeconform and actionlint from `make setup`: the pinned releases, working offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from signalstack.devstack import cache_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
HELM = cache_dir() / "bin" / "helm"
KUBECONFORM = cache_dir() / "bin" / "kubeconform"
ACTIONLINT = cache_dir() / "bin" / "actionlint"
SCHEMAS = ROOT / "charts" / "crd-schemas"


def run(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_pinned_versions() -> None:
    # Helm 4: 3.x is not an approved release on the module proxy (issue 15, item 7).
    assert VERSIONS["HELM_VERSION"].startswith("v4.")
    helm = run(HELM, "version", "--template", "{{.Version}}")
    assert helm.stdout.strip() == VERSIONS["HELM_VERSION"], helm.stdout + helm.stderr
    assert run(KUBECONFORM, "-v").stdout.strip() == VERSIONS["KUBECONFORM_VERSION"]
    lint = run(ACTIONLINT, "-version")
    assert lint.stdout.splitlines()[0] == VERSIONS["ACTIONLINT_VERSION"], lint.stdout + lint.stderr


def test_helm_lints_and_renders_a_chart(tmp_path: Path) -> None:
    res = run(HELM, "create", tmp_path / "demo")
    assert res.returncode == 0, res.stderr
    assert run(HELM, "lint", tmp_path / "demo").returncode == 0
    out = run(HELM, "template", "rel", tmp_path / "demo", "--set", "replicaCount=3")
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == 3
    assert deploy["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"


SERVICE_MONITOR = """\
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {{name: ingest, namespace: signalstack}}
spec:
  selector: {{matchLabels: {{app.kubernetes.io/name: ingest}}}}
  endpoints: [{{port: metrics, interval: {interval}}}]
"""


def test_kubeconform_validates_crds_offline() -> None:
    location = str(SCHEMAS) + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    good = run(
        KUBECONFORM,
        "-strict",
        "-summary",
        "-schema-location",
        location,
        "-",
        stdin=SERVICE_MONITOR.format(interval="15s"),
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Valid: 1" in good.stdout
    bad = run(
        KUBECONFORM,
        "-strict",
        "-schema-location",
        location,
        "-",
        stdin=SERVICE_MONITOR.format(interval="[not, a, duration]"),
    )
    assert bad.returncode != 0
    assert "interval" in bad.stdout
