"""`make demo` on a fresh copy of the repository needs Python 3.11 alone.

The copy has no .venv and no .cache. Every tool the full set-up uses (a JDK, Maven, Go, apt,
debootstrap, chroot, sudo, docker) is shadowed on PATH by a shim that records its call and fails,
and ``id -u`` answers as an unprivileged user: the run must never reach any of them, and the demo's
venv must hold the runtime and the demo extra only (no dev tools, no Spark).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FORBIDDEN = (
    "java", "javac", "mvn", "go", "apt-get", "apt-cache", "apt", "dpkg", "dpkg-query",
    "debootstrap", "chroot", "sudo", "su", "docker",
)  # fmt: skip


def _copy_tracked(src: Path, dst: Path) -> None:
    """The repository as a clone would hold it: its tracked files, as they are in the tree."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=src, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        rel = Path(os.fsdecode(name))
        if not (src / rel).exists():  # deleted in the tree, not yet committed
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)


def _shims(bin_dir: Path, calls: Path) -> None:
    bin_dir.mkdir()
    for tool in FORBIDDEN:
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 97\n')
        shim.chmod(0o755)
    real_id = shutil.which("id")
    ident = bin_dir / "id"  # the set-up's own root checks must see an ordinary user
    ident.write_text(
        f'#!/bin/sh\n[ "$1" = "-u" ] && {{ echo 1000; exit 0; }}\nexec {real_id} "$@"\n'
    )
    ident.chmod(0o755)


def test_make_demo_needs_python_alone(tmp_path: Path, repo_root: Path) -> None:
    repo = tmp_path / "repo"
    _copy_tracked(repo_root, repo)
    calls = tmp_path / "forbidden-calls.log"
    _shims(tmp_path / "shims", calls)
    skip = ("STORE_", "MARKET_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["PATH"] = f"{tmp_path / 'shims'}:{env['PATH']}"
    res = subprocess.run(
        ["make", "demo"], cwd=repo, env=env, capture_output=True, text=True, timeout=900,
        check=False,
    )  # fmt: skip
    log = res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 0, log
    assert not calls.exists(), f"make demo invoked {calls.read_text()!r}\n{log}"

    report = json.loads((repo / "demo-output" / "report.json").read_text())
    assert report["engine"]["bars_out"] > 0
    assert report["store_rows"]["features"] == report["engine"]["features_out"] > 0
    assert (repo / "demo-output" / "features.png").stat().st_size > 10_000

    # Only what the demo runs was installed: no dev tools, no Spark.
    site = next((repo / ".venv" / "lib").glob("python3.*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"signalstack", "duckdb", "matplotlib"} <= installed
    assert not installed & {"pytest", "mypy", "ruff", "pyspark", "massive"}, installed
    assert {"torch", "xgboost_cpu", "mlflow", "onnxruntime"} <= installed  # the demo trains
    # .cache holds uv and MLflow's pre-migrated template store (the demo's tracking store)
    assert {p.name for p in (repo / ".cache").iterdir()} <= {"uv", "mlflow"}
