"""A real server process on loopback: start, wait until ready, stop, restart."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from signalstack.errors import SignalStackError


class ServerError(SignalStackError):
    """A devstack server failed to start or stop."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, alive: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        alive()
        with contextlib.suppress(Exception):  # any failure means "not ready yet"
            if check():
                return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise ServerError(f"{what} was not ready within {timeout:.0f} s")


def devstack_root() -> Path:
    """Parent of every server's work dir; SIGNALSTACK_DEVSTACK_ROOT pins it (the leak test does)."""
    env = os.environ.get("SIGNALSTACK_DEVSTACK_ROOT")
    root = Path(env) if env else Path(tempfile.gettempdir()) / "signalstack-devstack"
    root.mkdir(parents=True, exist_ok=True)
    return root


class Server(ABC):
    """One server process. Subclasses give the command and the readiness check."""

    name: str = "server"
    start_timeout: float = 60.0
    stop_signal: int = signal.SIGTERM

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(
            tempfile.mkdtemp(prefix=f"{self.name}-", dir=devstack_root())
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.started_in: float | None = None
        self._prepared = False

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def prepare(self) -> None:  # noqa: B027 - optional hook, empty by default
        """One-time work before the first start (format storage, initdb...)."""

    @abstractmethod
    def command(self) -> Sequence[str]: ...

    @abstractmethod
    def ready(self) -> bool: ...

    def env(self) -> dict[str, str] | None:
        return None

    def cwd(self) -> Path:
        return self.workdir

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_tail()
            raise ServerError(
                f"{self.name} exited with status {self.proc.returncode} while starting; "
                f"log {self.log_path}:\n{tail}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            return self
        t0 = time.monotonic()
        if not self._prepared:
            self.prepare()
            self._prepared = True
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(self.command()),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd(),
            env=self.env(),
            start_new_session=True,  # own process group: stop() reaches every child
        )
        try:
            wait_until(self.ready, self.start_timeout, self.name, self._alive)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc is not None:
            # Reap anything left in the group (e.g. worker processes).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop and delete the work dir."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()
