"""The session fixtures start all four real servers quickly and leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from signalstack.devstack.base import port_open

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).parent


def _processes_mentioning(marker: str) -> list[str]:
    """PIDs whose command line or working directory mentions ``marker``."""
    hits = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if marker in cmd or marker in cwd:
            hits.append(f"{pid}: {cmd[:200]} (cwd {cwd})")
    return hits


def test_servers_start_together_and_leave_no_process(tmp_path: Path) -> None:
    root = tmp_path / "devstack"
    record = tmp_path / "record.jsonl"
    env = {
        **os.environ,
        "SIGNALSTACK_DEVSTACK_ROOT": str(root),
        "SIGNALSTACK_DEVSTACK_RECORD": str(record),
    }
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "probe_all_servers.py"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    servers = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(s["name"] for s in servers) == ["kafka", "mlflow", "prometheus", "timescaledb"]

    # Together, from the first start to the last server ready, well inside the 60 s budget.
    first_start = min(s["t"] - s["started_in"] for s in servers)
    all_ready = max(s["t"] for s in servers)
    assert all_ready - first_start < 60, servers

    # Nothing survives the session: no pid, no port, no process in any server's work dir
    # (PostgreSQL's children rename themselves, but their cwd is the data dir).
    for s in servers:
        assert not Path(f"/proc/{s['pid']}").exists(), f"{s['name']} (pid {s['pid']}) still running"
        assert not port_open(s["port"]), f"{s['name']} port {s['port']} still open"
        # The PostgreSQL data dir lives in the chroot, named after the server's work dir.
        assert _processes_mentioning(f"/var/lib/signalstack/{Path(s['workdir']).name}-") == []
    assert _processes_mentioning(str(root)) == []
