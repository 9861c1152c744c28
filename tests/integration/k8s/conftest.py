"""Helpers of the chart tests: render charts/signalstack with helm, validate with kubeconform.

Every rendering is cached for the session (`render`), so each profile is templated once however
many tests read it. Built-in kinds are validated offline against the Kubernetes JSON schemas
the kubernetes-validate package ships (its `-local-strict` set, made loadable by kubeconform
once per session), custom resources against charts/crd-schemas.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from signalstack.devstack import cache_dir

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "signalstack"
CRD_SCHEMAS = ROOT / "charts" / "crd-schemas"
HELM = cache_dir() / "bin" / "helm"
KUBECONFORM = cache_dir() / "bin" / "kubeconform"
KUBERNETES_VERSION = "1.35.0"  # the kind node (docs/ARCHITECTURE.md, versions that go together)
CRD_TEMPLATE = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
RELEASE = "signalstack"
NAMESPACE = "signalstack"
PROFILES = {
    "default": (),
    "kind": (CHART / "values-kind.yaml",),
    "production": (CHART / "values-production.yaml",),
    # the live single-node cluster's (scripts/cluster.sh, tests/integration/cluster)
    "ci": (CHART / "values-ci.yaml",),
    # the chart-testing cases (ci/*-values.yaml, as prometheus-community's charts keep them)
    **{
        f"ci-{p.name.removesuffix('-values.yaml')}": (p,)
        for p in sorted(CHART.glob("ci/*-values.yaml"))
    },
}
SUBCHARTS = ("kafka", "timescaledb", "mlflow", "ingest", "stream", "sink", "serving",
             "training", "backfill", "drift", "monitoring")  # fmt: skip


class HelmError(AssertionError):
    """helm exited non-zero; the message is its stderr."""


def run(
    *args: str | Path, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, check=False,
        timeout=timeout,
    )  # fmt: skip


def helm_template(
    chart: Path = CHART, values: Sequence[Path] = (), sets: Sequence[str] = ()
) -> str:
    """`helm template` of the chart; HelmError (stderr) when helm refuses."""
    args: list[str | Path] = [HELM, "template", RELEASE, chart, "--namespace", NAMESPACE]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    res = run(*args)
    if res.returncode != 0:
        raise HelmError(res.stderr)
    return res.stdout


def docs_of(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


@functools.cache
def render(profile: str = "default", sets: tuple[str, ...] = ()) -> str:
    """The rendered manifest of a profile (PROFILES) with extra --set values (cached)."""
    return helm_template(CHART, PROFILES[profile], sets)


def rendered(profile: str = "default", sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return docs_of(render(profile, sets))


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, (
        f"expected one {kind} {name}, got {[d['metadata']['name'] for d in find(docs, kind)]}"
    )
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload (Pod, Deployment, StatefulSet, Job, CronJob), else None."""
    kind, spec = doc["kind"], doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec = spec["template"]["spec"]
    elif kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind != "Pod":
        return None
    return cast("dict[str, Any]", spec)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="session")
def builtin_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubernetes-validate's strict schemas of KUBERNETES_VERSION, loadable by kubeconform:
    their `$id`s (https://kubernetes.io/api/...) dropped and `/api/_definitions.json` refs made
    relative, so every reference resolves to the local `_definitions.json`."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:  # pragma: no cover - a missing dev dependency
        pytest.fail("the chart tests need the kubernetes-validate package (a dev dependency)")
    src = (
        Path(spec.origin).parent / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"
    )
    assert src.is_dir(), f"kubernetes-validate has no schemas for {KUBERNETES_VERSION}: {src}"
    dst = tmp_path_factory.mktemp("k8s-schemas")
    for f in src.glob("*.json"):
        doc = json.loads(f.read_text())
        doc.pop("$id", None)
        text = json.dumps(doc).replace('"/api/_definitions.json#', '"_definitions.json#')
        (dst / f.name).write_text(text)
    return dst


def kubeconform(manifest: str, builtin: Path) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict of a manifest: built-in kinds against `builtin`, custom resources
    against charts/crd-schemas; a kind without a schema is an error (never skipped)."""
    return run(
        KUBECONFORM, "-strict", "-summary", "-output", "text",
        "-kubernetes-version", KUBERNETES_VERSION,
        "-schema-location", str(builtin) + "/{{.ResourceKind}}{{.KindSuffix}}.json",
        "-schema-location", f"{CRD_SCHEMAS}/{CRD_TEMPLATE}",
        "-", stdin=manifest,
    )  # fmt: skip


def kubeconform_files(
    manifests: dict[str, str], builtin: Path, workdir: Path
) -> dict[str, list[dict[str, str]]]:
    """One kubeconform -strict run over several manifests (one file each, so each is compiled
    against the schemas once): name -> its resources' results (kind, name, status, msg)."""
    for name, text in manifests.items():
        (workdir / f"{name}.yaml").write_text(text)
    res = run(
        KUBECONFORM, "-strict", "-verbose", "-output", "json",
        "-kubernetes-version", KUBERNETES_VERSION,
        "-schema-location", str(builtin) + "/{{.ResourceKind}}{{.KindSuffix}}.json",
        "-schema-location", f"{CRD_SCHEMAS}/{CRD_TEMPLATE}",
        *[workdir / f"{name}.yaml" for name in manifests],
    )  # fmt: skip
    out: dict[str, list[dict[str, str]]] = {name: [] for name in manifests}
    for r in json.loads(res.stdout)["resources"]:
        out[Path(r["filename"]).stem].append(r)
    return out


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A scratch copy of the chart, to break on purpose."""
    dst = tmp_path / "signalstack"
    shutil.copytree(CHART, dst)
    return dst
