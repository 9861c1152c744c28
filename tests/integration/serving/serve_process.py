"""`signalstack serve` as its own process, from a given Python environment."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    python: str, model_dir: Path, store: Path, port: int, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``signalstack serve`` from ``python``'s environment; its output goes to ``log``."""
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SERVING_", "STORE_"))},
        "SERVING_MODEL_DIR": str(model_dir),
        "SERVING_PORT": str(port),
        "STORE_TYPE": "duckdb",
        "STORE_DUCKDB_PATH": str(store),
        "LOG_FORMAT": "console",
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [python, "-m", "signalstack.cli", "serve"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve not ready within {timeout_s} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
