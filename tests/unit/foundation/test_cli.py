"""The CLI: real help for every subcommand, clear "not implemented yet", one-line config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = [
    "ingest",
    "stream",
    "sink",
    "backfill",
    "train",
    "serve",
    "drift",
    "demo",
    "simulate",
]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("KAFKA_", "STORE_", "TIMESCALE_", "POLYGON_", "MARKET_", "SERVING_", "LOG_", "MLFLOW_")
        )
    }
    return subprocess.run(
        [sys.executable, "-m", "signalstack", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_root_help_lists_every_subcommand() -> None:
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    for cmd in SUBCOMMANDS:
        assert cmd in res.stdout


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help(cmd: str) -> None:
    res = run_cli(cmd, "--help")
    assert res.returncode == 0, res.stderr
    assert f"signalstack {cmd}" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "not-a-host-port"),
        ("STORE_TYPE", "oracle"),
        ("TIMESCALE_PORT", "seventy"),
        ("LOG_LEVEL", "LOUD"),
        ("MARKET_SYMBOLS", " , "),
        ("KAFKA_PARTITIONS", "0"),
    ],
)
def test_bad_env_value_is_one_line_naming_the_variable(var: str, value: str) -> None:
    res = run_cli("config", env={var: value})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert var in lines[0]
    assert "Traceback" not in res.stderr


def test_config_never_prints_secrets() -> None:
    secret = "pk_live_4f1b2c3d4e5f60718293"
    res = run_cli("config", env={"POLYGON_API_KEY": secret, "TIMESCALE_PASSWORD": "hunter2-long"})
    assert res.returncode == 0, res.stderr
    assert secret not in res.stdout + res.stderr
    assert "hunter2-long" not in res.stdout + res.stderr
    assert "**********" in res.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "forest"], "--model 'forest'"),
        (["--data-source", "store"], "needs --start and --end"),
        (["--data-source", "store", "--start", "2025-11-20", "--end", "2025-11-19"], "not after"),
        (["--data-source", "store", "--start", "yesterday-ish", "--end", "2025-11-19"], "--start"),
        (["--data-source", "store", "--start", "2025-11-17", "--end", "2025-11-18"], "no feature"),
    ],
)
def test_train_refuses_bad_arguments_in_one_line(
    args: list[str], says: str, tmp_path: Path
) -> None:
    env = {"STORE_DUCKDB_PATH": str(tmp_path / "s.duckdb")}
    res = run_cli("train", *args, env=env)
    assert res.returncode == 2, res.stderr
    assert says in res.stderr
    assert "Traceback" not in res.stderr
