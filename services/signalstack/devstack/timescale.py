"""TimescaleDB on PostgreSQL, run from the debootstrap chroot that `make setup` builds.

The chroot is shared (read-mostly); each server gets its own data directory inside it, under
/var/lib/signalstack/<id>, which is removed by :meth:`cleanup`. Nothing is mounted into the chroot.
Host clients connect over TCP on 127.0.0.1 with password (scram) authentication.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from signalstack.devstack.base import Server, ServerError, free_port
from signalstack.devstack.paths import cache_dir, require

PG_MAJOR = 17
_ENV = ["env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"]


def _ids(rootfs: Path, user: str = "postgres") -> tuple[int, int]:
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ServerError(f"no {user} user in {rootfs}/etc/passwd")


class TimescaleServer(Server):
    name = "timescaledb"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # PostgreSQL "fast" shutdown

    def __init__(
        self, workdir: Path | None = None, extra_conf: dict[str, str] | None = None
    ) -> None:
        super().__init__(workdir)
        self.rootfs = require(cache_dir() / "timescaledb" / "rootfs", "TimescaleDB")
        require(self.rootfs / "usr/lib/postgresql" / str(PG_MAJOR) / "bin/postgres", "PostgreSQL")
        self.uid, self.gid = _ids(self.rootfs)
        self.port = free_port()
        self.user = "postgres"
        self.password = secrets.token_urlsafe(16)
        self.database = "postgres"
        self.host = "127.0.0.1"
        self.extra_conf = extra_conf or {}
        # Inside the chroot; the cwd of the postmaster and all its children (the leak test uses it).
        self.data_in_root = f"/var/lib/signalstack/{self.workdir.name}-{uuid.uuid4().hex[:8]}"
        self.data_dir = self.rootfs / self.data_in_root.lstrip("/")

    @property
    def bin(self) -> str:
        return f"/usr/lib/postgresql/{PG_MAJOR}/bin"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    def _chroot(self, *args: str) -> list[str]:
        return ["chroot", f"--userspec={self.uid}:{self.gid}", str(self.rootfs), *_ENV, *args]

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True)
        pwfile = self.data_dir.parent / f"{self.data_dir.name}.pw"
        pwfile.write_text(self.password + "\n")
        for p in (self.data_dir, pwfile):
            shutil.chown(p, self.uid, self.gid)
        self.data_dir.chmod(0o700)
        try:
            res = subprocess.run(
                self._chroot(
                    f"{self.bin}/initdb",
                    "-D",
                    self.data_in_root,
                    "-U",
                    self.user,
                    f"--pwfile=/{pwfile.relative_to(self.rootfs)}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    "--locale=C.UTF-8",
                    "--encoding=UTF8",
                ),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise ServerError(f"initdb failed: {res.stdout}{res.stderr}")

    def command(self) -> Sequence[str]:
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "/tmp",  # noqa: S108 - inside the chroot
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "max_connections": "200",
            "shared_buffers": "256MB",
            "max_wal_size": "2GB",
            # Keep finished WAL segments for reuse. A segment that has to be created is
            # zero-filled and fsynced by the committing backend: at 10k trades/s (16 MB of WAL
            # every ~7 s) that was a 40-160 ms commit stall each time on a fresh cluster.
            "min_wal_size": "1GB",
            "logging_collector": "off",
            **self.extra_conf,
        }
        args = [f"{self.bin}/postgres", "-D", self.data_in_root]
        for k, v in conf.items():
            args += ["-c", f"{k}={v}"]
        return self._chroot(*args)

    def cwd(self) -> Path:
        return self.workdir

    def crash(self) -> TimescaleServer:
        """Stop as a crash would (SIGQUIT, PostgreSQL's "immediate" shutdown: no checkpoint, WAL
        not yet written is lost) and start again, which runs crash recovery."""
        normal, self.stop_signal = self.stop_signal, signal.SIGQUIT
        try:
            self.stop()
        finally:
            self.stop_signal = normal
        self.start()
        return self

    def ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    @contextmanager
    def database_with_timescale(self, name: str | None = None) -> Iterator[str]:
        """A fresh database with the timescaledb extension; dropped afterwards. Yields its DSN."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(self.dsn_for(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            yield self.dsn_for(name)
        finally:
            if self.proc is not None and self.proc.poll() is None:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.data_dir, ignore_errors=True)
