"""The users' CI (.github/workflows): actionlint (make setup builds it) passes it and fails a
broken copy; it runs `make test` and the kind path with the pinned versions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from signalstack.devstack import cache_dir

from .conftest import ROOT

pytestmark = pytest.mark.integration

ACTIONLINT = cache_dir() / "bin" / "actionlint"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yaml"
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)


def actionlint(cwd: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", *(str(f) for f in files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_actionlint_passes_the_workflows() -> None:
    assert sorted(p.name for p in (ROOT / ".github" / "workflows").iterdir()) == ["ci.yaml"]
    res = actionlint(ROOT)  # no arguments: every workflow of the repository
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("runs-on: ubuntu-24.04", "run-on: ubuntu-24.04", "run-on"),
        ("${{ env.GO_VERSION }}", "${{ env.GO_VERSION }", "GO_VERSION"),
        ("cache: false", "cache: false\n          go-versions: '1.26'", "go-versions"),
        ("if: failure()", "if: failure(1)", "failure"),
    ],
)
def test_actionlint_fails_a_broken_workflow(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "ci.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1))
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    res = actionlint(tmp_path, broken)
    assert res.returncode == 1, res.stdout + res.stderr
    assert complaint in res.stdout, res.stdout


def test_the_test_job_runs_make_test() -> None:
    job = workflow()["jobs"]["test"]
    assert "make test" in runs(job).splitlines()
    assert job["container"]["image"].startswith("debian:")  # our machines: Debian, as root


def test_the_kind_job_deploys_and_smoke_tests_the_release() -> None:
    script = runs(workflow()["jobs"]["kind"])
    order = [
        "bash scripts/setup.sh k8s-tools",  # the pinned helm (4)
        'go install "sigs.k8s.io/kind@${KIND_VERSION}"',
        "skaffold/releases/${SKAFFOLD_VERSION}/",
        "make kind-up",
        "make operators",
        "make deploy",  # skaffold run -p kind (test_cluster_kind checks the target)
        "rollout status",
        "/v2/health/ready",
        'helm test "$RELEASE"',
    ]
    positions = [script.find(s) for s in order]
    assert all(p >= 0 for p in positions), dict(zip(order, positions, strict=True))
    assert positions == sorted(positions), "steps out of order"


def test_versions_come_from_versions_env() -> None:
    text = WORKFLOW.read_text()
    assert 'scripts/versions.env >> "$GITHUB_ENV"' in text
    used = set(re.findall(r"\$\{\{\s*env\.(\w+)\s*\}\}|\$\{(\w+_VERSION)\}", text))
    names = {n for pair in used for n in pair if n}
    assert names, "the workflow reads no pinned version"
    assert names <= set(VERSIONS), names - set(VERSIONS)
