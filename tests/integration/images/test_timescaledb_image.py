"""The timescaledb image (Dockerfile target `timescaledb`, scripts/timescaledb-entrypoint.sh) run
the way the chart's StatefulSet runs it: the rendered StatefulSet's arguments, environment,
user, mounts and probe, the initdb ConfigMap's SQL, a read-only root and no capabilities; the
migrations hook Job's own command in the image it names creates the hypertables; a restart on the
same data keeps them; without POSTGRES_PASSWORD it refuses to initialise, saying why."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.integration.images.conftest import Docker
from tests.integration.images.test_images import VERSIONS
from tests.integration.k8s.conftest import env_of, find, one, pod_spec, rendered
from tests.integration.serving.serve_process import free_port

from signalstack.store.migrations import sql_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2700)]

NAME = (
    "signalstack-timescaledb"  # the release's StatefulSet, ConfigMap (-initdb), Job (-migrations)
)
HYPERTABLES = {"trades", "ohlcv_1m", "features", "predictions", "anomalies"}
SETTINGS = ("shared_preload_libraries", "timescaledb.telemetry_level", "listen_addresses",
            "timescaledb.license", "server_version_num")  # fmt: skip


@dataclass(frozen=True)
class Chart:
    """What the chart's default render says about the database and its migrations."""

    container: dict[str, Any]
    pod_security: dict[str, Any]
    initdb: dict[str, str]  # file name -> SQL
    migrations: dict[str, Any]  # the hook Job's container


@pytest.fixture(scope="module")
def chart() -> Chart:
    docs = rendered("default")
    sts = pod_spec(one(docs, "StatefulSet", NAME))
    assert sts is not None
    [container] = sts["containers"]
    [job] = [d for d in find(docs, "Job") if d["metadata"]["name"] == f"{NAME}-migrations"]
    job_spec = pod_spec(job)
    assert job_spec is not None
    initdb = one(docs, "ConfigMap", f"{NAME}-initdb")["data"]
    return Chart(container, sts["securityContext"], initdb, job_spec["containers"][0])


@dataclass
class Database:
    """One run of the image on the host network, as the StatefulSet runs it."""

    docker: Docker
    image: str
    chart: Chart
    data: Path  # the `data` volume (mounted at PGDATA's parent)
    initdb: Path  # the ConfigMap's files
    port: int
    password: str | None
    name: str = ""
    extra: list[str] = field(default_factory=list)  # more docker run options

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in env_of(self.chart.container).items() if isinstance(v, str)}
        env["PGPORT"] = str(self.port)  # host networking: a free port, not the chart's 5432
        if self.password is not None:  # the chart's Secret
            env["POSTGRES_PASSWORD"] = self.password
        return env

    def options(self) -> list[str]:
        sc = self.chart.pod_security
        opts = ["--network", "host", "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges",
                "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}",
                "--group-add", str(sc["fsGroup"])]  # fmt: skip
        assert self.chart.container["securityContext"]["readOnlyRootFilesystem"] is True
        for m in self.chart.container["volumeMounts"]:
            path = m["mountPath"]
            if m["name"] == "data":
                opts += ["-v", f"{self.data}:{path}"]
            elif m["name"] == "initdb":
                opts += ["-v", f"{self.initdb / m['subPath']}:{path}:ro"]
            else:  # emptyDirs: root's, writable by the fsGroup
                opts += [
                    "--tmpfs",
                    f"{path}:rw,nosuid,nodev,size=64m,mode=2775,gid={sc['fsGroup']}",
                ]
        for k, v in self.env.items():
            opts += ["-e", f"{k}={v}"]
        return opts + self.extra

    def start(self, args: list[str] | None = None) -> None:
        """Started in the background with ``args`` (default: the chart's)."""
        self.name = f"signalstack-timescaledb-test-{self.port}-{secrets.token_hex(3)}"
        args = self.chart.container["args"] if args is None else args
        self.docker("run", "-d", "--name", self.name, *self.options(), self.image, *args)

    def probe(self) -> bool:
        """The chart's readiness probe, in the container (its port ours)."""
        command = [
            a.replace("-p 5432", f"-p {self.port}")
            for a in self.chart.container["readinessProbe"]["exec"]["command"]
        ]
        return self.docker("exec", self.name, *command, check=False).returncode == 0

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.probe():
                return
            running = self.docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
            if running.stdout.strip() != "true":
                raise AssertionError(f"timescaledb exited:\n{self.logs()}")
            time.sleep(0.5)
        raise AssertionError(f"timescaledb not ready within {timeout_s} s:\n{self.logs()}")

    def logs(self) -> str:
        done = self.docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def stop(self) -> None:
        if self.name:
            self.docker("stop", "-t", "60", self.name, check=False)  # SIGINT: a fast shutdown
            self.docker("rm", "-f", self.name, check=False)

    def dsn(self, database: str | None = None, password: str | None = None) -> str:
        env = self.env
        return (
            f"postgresql://{env['POSTGRES_USER']}:{password or self.password}@127.0.0.1:"
            f"{self.port}/{database or env['POSTGRES_DB']}"
        )


@pytest.fixture
def database(
    docker: Docker, images: dict[str, str], chart: Chart, tmp_path: Path
) -> Iterator[Database]:
    data, initdb = tmp_path / "data", tmp_path / "initdb"
    data.mkdir()
    initdb.mkdir()
    fs_group = chart.pod_security["fsGroup"]
    os.chown(data, 0, fs_group)  # an emptyDir / PVC with the fsGroup: not the postgres user's
    data.chmod(0o2775)
    for file, sql in chart.initdb.items():
        (initdb / file).write_text(sql)
        (initdb / file).chmod(0o644)
    db = Database(docker, images["timescaledb"], chart, data, initdb, free_port(),
                  secrets.token_urlsafe(18))  # fmt: skip
    try:
        yield db
    finally:
        db.stop()


def test_the_statefulset_contract_initdb_migrations_and_a_restart(
    database: Database, docker: Docker, images: dict[str, str], chart: Chart
) -> None:
    db = database
    db.start()
    db.wait_ready()
    with psycopg.connect(db.dsn(), connect_timeout=10) as conn:
        show = {
            k: str(conn.execute(f"SHOW {k}").fetchone()[0])  # type: ignore[index]
            for k in SETTINGS
        }
        databases = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        version = ext.fetchone()
        user = conn.execute("SELECT current_user").fetchone()
    assert "timescaledb" in show["shared_preload_libraries"]
    assert show["timescaledb.telemetry_level"] == "off"
    assert show["listen_addresses"] == "*"
    assert show["timescaledb.license"] == "apache"  # Debian's build (docs/components/images.md)
    assert show["server_version_num"].startswith(VERSIONS["POSTGRES_MAJOR"])
    assert version == (VERSIONS["TIMESCALEDB_DEB_VERSION"],)
    assert user == (db.env["POSTGRES_USER"],)
    # the initdb ConfigMap's databases (MLflow's backend store) exist
    assert "CREATE DATABASE mlflow;" in chart.initdb["10-extra-databases.sql"]
    assert {"mlflow", db.env["POSTGRES_DB"]} <= databases
    # TCP connections need the password (scram-sha-256), from the host's loopback too
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(db.dsn(password="not-the-password"), connect_timeout=10).close()

    # the migrations hook Job: its own command, in the image it names, against this server
    job = chart.migrations
    assert job["image"].split(":")[0] == "signalstack/sink"
    env = {k: v for k, v in env_of(job).items() if isinstance(v, str)}
    env |= {"TIMESCALE_HOST": "127.0.0.1", "TIMESCALE_PORT": str(db.port),
            "TIMESCALE_PASSWORD": str(db.password)}  # fmt: skip
    opts = ["--network", "host", "--tmpfs", "/tmp:rw,size=64m", "--cap-drop", "ALL",
            "--entrypoint", job["command"][0]]  # fmt: skip
    opts += [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    done = docker.run(images["sink"], *job["command"][1:], *job["args"], opts=opts)
    assert done.returncode == 0, done.stdout + done.stderr
    migrations = sorted(p.stem for p in sql_dir().glob("[0-9]*_*") if p.suffix in (".sql", ".py"))
    assert "applied:" in done.stdout and migrations[-1] in done.stdout, done.stdout
    with psycopg.connect(db.dsn(), connect_timeout=10) as conn:
        hypertables = {
            r[0]
            for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        applied = {r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")}
        conn.execute(
            "INSERT INTO features (symbol, ts, feature_set_version) VALUES ('AAA', now(), 1)"
        )
    assert hypertables >= HYPERTABLES
    assert applied == set(migrations)

    # the password is nowhere in the data directory as given (scram keeps a salted hash)
    for f in db.data.rglob("*"):
        if f.is_file():
            assert str(db.password).encode() not in f.read_bytes(), f

    # a restart (a new pod on the same volume) keeps everything and initialises nothing; the
    # postgres options alone (no "postgres" before them) start postgres with them too
    db.stop()
    args = db.chart.container["args"]
    assert args[0] == "postgres"
    db.start(args[1:])
    db.wait_ready()
    assert "holds a database: skipping initialisation" in db.logs()
    with psycopg.connect(db.dsn(), connect_timeout=10) as conn:
        assert conn.execute("SELECT count(*) FROM features").fetchone() == (1,)
        applied_again = {r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")}
        connections = conn.execute("SHOW max_connections").fetchone()
    assert applied_again == applied
    # the chart's `-c max_connections=…` reached postgres
    assert [f"max_connections={connections[0] if connections else ''}"] == [
        a for a in args if a.startswith("max_connections=")
    ]


def test_no_password_is_a_clear_error_and_touches_nothing(database: Database) -> None:
    db = database
    db.password = None
    done = db.docker.run(db.image, *db.chart.container["args"], opts=db.options(), timeout=120)
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD is not set" in done.stderr, done.stdout + done.stderr
    assert list(db.data.iterdir()) == []


def test_a_failed_initialisation_is_set_aside_and_done_again(database: Database) -> None:
    db = database
    broken = db.initdb / "20-broken.sql"
    broken.write_text("CREATE TABLE half_done (id int);\nCREATE TABLE broken (;\n")
    broken.chmod(0o644)
    db.extra = ["-v", f"{broken}:/docker-entrypoint-initdb.d/20-broken.sql:ro"]
    done = db.docker.run(db.image, *db.chart.container["args"], opts=db.options(), timeout=120)
    assert done.returncode != 0
    assert "initialising /var/lib/postgresql/data/pgdata failed" in done.stderr, done.stderr
    pgdata = db.data / "pgdata"
    assert (pgdata / "PG_VERSION").is_file()  # initdb ran; the init scripts did not finish
    # fixed (the script gone): the next start sets the unfinished directory aside and starts over
    db.extra = []
    db.start()
    db.wait_ready()
    assert "holds an unfinished initialisation" in db.logs()
    assert (db.data / "pgdata.incomplete" / "PG_VERSION").is_file()
    with psycopg.connect(db.dsn(), connect_timeout=10) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
        databases = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert "half_done" not in tables
    assert "mlflow" in databases
