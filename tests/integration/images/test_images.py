"""The container images, built here and run for real (Dockerfile, scripts/docker.sh): each runs
as the non-root user on a read-only root filesystem; serving answers OIP v2 from a mounted model
directory and holds no training stack; the stream image keeps the Spark images' driver /
executor contract with the Kafka connector on its classpath."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.integration.images.conftest import ROOT, TARGETS, Docker
from tests.integration.serving.serve_process import free_port
from tests.unit.serving.serving_helpers import copy_bundles, trained

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import load_bundle

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # the first test builds every image: minutes on a fresh machine (the training stack)
    pytest.mark.timeout(2700),
]

TMPFS = ("--tmpfs", "/tmp:rw,nosuid,nodev,size=256m")
# Spark resolves the local host name; with --network none Docker's /etc/hosts knows only localhost
STREAM_OPTS = (*TMPFS, "--hostname", "localhost")


# what scripts/docker.sh put in the build context for the builder stages
EXTRA_CAS = sorted((ROOT / "ca-certificates").glob("*.crt"))
# the pins the images are built at (POSTGRES_MAJOR, TIMESCALEDB_DEB_VERSION, ...)
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines()
    if line and not line.startswith("#") and "=" in line
)


def _certs(pem: str) -> set[str]:
    """The base64 bodies of the certificates in a PEM text."""
    return {
        "".join(b.split("-----")[0].split()) for b in pem.split("-----BEGIN CERTIFICATE-----")[1:]
    }


# target -> (user, entrypoint, args of a run needing no writable path, what its stdout says)
CLI = ("10001:10001", ["signalstack"], ("--help",), "Usage: signalstack")
STARTS: dict[str, tuple[str, list[str], tuple[str, ...], str]] = {
    **{t: CLI for t in TARGETS},
    # the entrypoint runs other commands as given
    "stream": ("10001:10001", ["/opt/signalstack/entrypoint.sh"], ("signalstack", "--help"),
               "Usage: signalstack"),
    # postgres as the chart's uid 70 (the official alpine images' postgres); --version needs no
    # initialised data directory
    "timescaledb": ("70:70", ["docker-entrypoint.sh"], ("postgres", "--version"),
                    f"postgres (PostgreSQL) {VERSIONS['POSTGRES_MAJOR']}."),
}  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
def test_image_runs_as_non_root_on_a_read_only_root(
    docker: Docker, images: dict[str, str], target: str
) -> None:
    image = images[target]
    user, entrypoint, args, says = STARTS[target]
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == user
    assert config["Entrypoint"] == entrypoint
    labels = config["Labels"]
    assert labels["org.opencontainers.image.vendor"] == "signalstack"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    # no writable mount at all: it starts on a read-only root as its configured user
    done = docker.run(image, *args)
    assert done.returncode == 0, done.stderr
    assert says in done.stdout
    probe = docker.run(image, "-c", "id -u; id -g; ls -A /usr/local/share/ca-certificates "
                       "2>/dev/null; ls -A /etc/ssl/private 2>/dev/null; true",
                       opts=["--entrypoint", "/bin/sh"])  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    # the builder stages' extra CA certificates never reach a final image: not as files, and
    # not in the trust bundle; no private key either (ssl-cert's snakeoil pair in timescaledb)
    assert probe.stdout.split() == user.split(":")
    bundle = docker.run(image, "/etc/ssl/certs/ca-certificates.crt", opts=["--entrypoint", "cat"])
    if target == "timescaledb":  # Debian's postgres, no ca-certificates (it connects nowhere)
        assert bundle.returncode != 0 and "No such file" in bundle.stderr
        return
    assert bundle.returncode == 0, bundle.stderr
    trusted = _certs(bundle.stdout)
    assert len(trusted) > 50  # Debian's public roots
    for extra in EXTRA_CAS:
        assert not _certs(extra.read_text()) & trusted, extra.name


@pytest.mark.parametrize("target", ["serving", "drift"])
def test_serving_and_drift_images_hold_no_training_stack(
    docker: Docker, images: dict[str, str], target: str
) -> None:
    code = (
        "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None "
        "for m in ('torch', 'sklearn', 'xgboost', 'onnxruntime', 'mlflow', 'kubernetes')}))"
    )
    done = docker.run(images[target], "-c", code, opts=["--entrypoint", "python"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "torch": False, "sklearn": False, "xgboost": False, "onnxruntime": True, "mlflow": True,
        "kubernetes": True,
    }  # fmt: skip
    # and the training image does have them (the same probe can tell)
    done = docker.run(images["training"], "-c", code, opts=["--entrypoint", "python"])
    assert json.loads(done.stdout)["torch"] is True, done.stderr


def test_serving_image_answers_from_a_mounted_model_dir(
    docker: Docker, images: dict[str, str], tmp_path: Path
) -> None:
    models = copy_bundles(tmp_path / "models")
    for p in [models, *models.rglob("*")]:  # readable by the image's uid 10001
        p.chmod(0o755 if p.is_dir() else 0o644)
    port = free_port()
    name = f"signalstack-serving-test-{port}"
    docker("run", "-d", "--rm", "--name", name, "--read-only", *TMPFS, "--network", "host",
           "-v", f"{models}:/var/lib/signalstack/models:ro",
           "-e", "SERVING_MODEL_DIR=/var/lib/signalstack/models",
           "-e", "SERVING_HOST=127.0.0.1", "-e", f"SERVING_PORT={port}",
           images["serving"])  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(docker, name, url)
        assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200
        rows = trained().frame.iloc[40:43]
        inputs = [
            {"name": c, "shape": [3], "datatype": "FP64", "data": rows[c].tolist()}
            for c in FEATURE_COLUMNS
        ]
        r = httpx.post(f"{url}/v2/models/direction/infer", json={"inputs": inputs}, timeout=30)
        assert r.status_code == 200, r.text
        got = np.asarray(r.json()["outputs"][0]["data"]).reshape(3, 3)
        want = load_bundle(trained().bundle_dir("direction")).predict(rows)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    finally:
        docker("rm", "-f", name, check=False)


def _wait_ready(docker: Docker, name: str, url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = docker("inspect", "-f", "{{.State.Running}}", name, check=False)
        if state.stdout.strip() != "true":
            logs = docker("logs", name, check=False)
            raise AssertionError(f"serving exited:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.5)
    logs = docker("logs", name, check=False)
    raise AssertionError(f"serving not ready within {timeout_s} s:\n{logs.stdout}\n{logs.stderr}")


SPARK_CHECK = """
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
jvm = spark.sparkContext._jvm
provider = jvm.org.apache.spark.sql.execution.datasources.DataSource.lookupDataSource(
    "kafka", spark._jsparkSession.sessionState().conf()
)
print("SPARK", spark.version)
print("KAFKA-SOURCE", provider.getName())
print("ROWS", spark.range(5).count())
spark.stop()
"""


def test_stream_image_driver_runs_spark_submit_with_the_kafka_connector(
    docker: Docker, images: dict[str, str], tmp_path: Path
) -> None:
    app = tmp_path / "check.py"
    app.write_text(SPARK_CHECK)
    app.chmod(0o644)
    # `driver ARGS`: spark-submit in client mode, as the spark-operator starts the driver pod;
    # the application finds the Kafka source on the image's default classpath
    done = docker.run(
        images["stream"], "driver", "--master", "local[1]",
        "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
        "/opt/check/check.py",
        opts=[*STREAM_OPTS, "--tmpfs", "/opt/spark/work-dir:rw,size=64m",
              "-e", "SPARK_LOCAL_IP=127.0.0.1", "-v", f"{app}:/opt/check/check.py:ro"],
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "SPARK 4.0." in done.stdout
    assert "KAFKA-SOURCE org.apache.spark.sql.kafka010.KafkaSourceProvider" in done.stdout
    assert "ROWS 5" in done.stdout


def test_stream_image_executor_starts_the_kubernetes_backend(
    docker: Docker, images: dict[str, str]
) -> None:
    missing = docker.run(images["stream"], "executor", opts=STREAM_OPTS)
    assert missing.returncode == 64
    assert "SPARK_DRIVER_URL is not set" in missing.stderr
    # with the variables a driver sets, the executor JVM starts KubernetesExecutorBackend, which
    # then fails to reach this (absent) driver and exits
    env = {
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:1",
        "SPARK_EXECUTOR_ID": "1", "SPARK_EXECUTOR_CORES": "1", "SPARK_APPLICATION_ID": "app-test",
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1", "SPARK_EXECUTOR_MEMORY": "256m",
        # the JVM options, in index order: the second prints the system properties (with
        # java.class.path) once the first has set one
        "SPARK_JAVA_OPT_1": "-XshowSettings:properties",
        "SPARK_JAVA_OPT_0": "-Dsignalstack.check=yes",
        "EXECUTOR_DRIVER_PROPS_FETCHER_MAX_ATTEMPTS": "1",
    }  # fmt: skip
    opts = [*STREAM_OPTS, *(a for k, v in env.items() for a in ("-e", f"{k}={v}"))]
    done = docker.run(images["stream"], "executor", opts=opts, timeout=180)
    log = done.stdout + done.stderr
    assert done.returncode != 0
    assert "KubernetesExecutorBackend" in log, log[-4000:]
    assert "ClassNotFoundException" not in log
    assert "127.0.0.1:1" in log
    assert "signalstack.check = yes" in log
    assert "spark-sql-kafka-0-10_2.13" in log  # the connector on the executor's classpath
