"""MLflow tracking server with a SQL (SQLite) backend store and a local artifact root."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from signalstack.devstack.base import Server, ServerError, free_port
from signalstack.devstack.paths import cache_dir


def template_db() -> Path:
    """An MLflow SQLite store already migrated to this MLflow's schema (built once, then copied:
    running MLflow's ~60 alembic migrations at every start costs tens of seconds on 2 cores).

    Several processes may want it at once (a test session and the child session its lifecycle
    test starts), so the build holds an exclusive lock on a sibling file, re-checks under it, and
    writes to a private temporary name that is atomically renamed into place."""
    import mlflow

    path = cache_dir() / "mlflow" / f"template-{mlflow.__version__}.db"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # built by another process while this one waited
            return path
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        code = (
            "import sys\n"
            "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
            "SqlAlchemyStore('sqlite:///' + sys.argv[1], sys.argv[2])\n"
        )
        res = subprocess.run(
            [sys.executable, "-c", code, str(tmp), str(path.parent / "unused-artifacts")],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if res.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise ServerError(f"creating the MLflow store failed: {res.stderr[-2000:]}")
        os.replace(tmp, path)
    return path


class MlflowServer(Server):
    name = "mlflow"
    start_timeout = 90.0

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.port = free_port()

    def prepare(self) -> None:
        shutil.copyfile(template_db(), self.workdir / "mlflow.db")

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> Sequence[str]:
        mlflow = Path(sys.executable).with_name("mlflow")
        return [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def env(self) -> dict[str, str]:
        # No background job runner (a third process importing all of MLflow): tracking and the
        # model registry, which is what SignalStack uses, do not need it.
        return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def ready(self) -> bool:
        r = httpx.get(f"{self.tracking_uri}/health", timeout=1.0)
        return r.status_code == 200
