"""Developer commands of the local stack (scripts/cluster.sh uses both):

- ``python -m signalstack.devstack kafka [--host H] [--port P] [--workdir D]``: a real broker in
  the foreground until SIGTERM or Ctrl-C, then stopped cleanly. The local cluster runs its broker
  this way, on the cluster bridge's address, for the pods of the chart's ci profile.
- ``python -m signalstack.devstack topics --namespace NS BOOTSTRAP``: the namespace's Strimzi
  ``KafkaTopic`` objects created on a broker, as Strimzi's Topic Operator would.
- ``python -m signalstack.devstack spark-submit --namespace NS NAME``: submit a SparkApplication
  as spark-operator would (``signalstack.devstack.spark_submit``), with this venv's Spark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from signalstack.devstack.kafka import KafkaServer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def main() -> None:
    """The real components of the set-up cache, one at a time."""


@app.command()
def kafka(
    host: Annotated[str, typer.Option(help="address of the client listener")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the client listener; 0: a free one")] = 0,
    workdir: Annotated[Path | None, typer.Option(help="state and log; default a temp dir")] = None,
) -> None:
    """A single-node KRaft broker until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = KafkaServer(workdir=workdir, host=host, port=port or None)
    with server:
        print(f"kafka ready on {server.bootstrap} (log {server.log_path})", flush=True)
        stop.wait()


def _api(kubeconfig: Path | None) -> Any:
    from kubernetes import client, config

    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig else None
    )
    return client.ApiClient()


@app.command()
def topics(
    bootstrap: Annotated[str, typer.Argument(help="the broker (host:port)")],
    namespace: Annotated[str, typer.Option(help="where the KafkaTopic objects are")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(help="default: $KUBECONFIG")] = None,
) -> None:
    """Create (or check) the namespace's KafkaTopics on BOOTSTRAP: name, partitions, replicas
    and config as the Topic Operator reads them."""
    from kubernetes import client

    from signalstack.ingest.kafka_io import TopicSpec, ensure_topics

    listed = client.CustomObjectsApi(_api(kubeconfig)).list_namespaced_custom_object(
        "kafka.strimzi.io", "v1", namespace, "kafkatopics"
    )
    specs = [
        TopicSpec(
            item["spec"].get("topicName") or item["metadata"]["name"],
            # Strimzi's defaults when a KafkaTopic leaves them out: the broker's (one here)
            int(item["spec"].get("partitions", 1)),
            int(item["spec"].get("replicas", 1)),
            {str(k): str(v) for k, v in item["spec"].get("config", {}).items()},
        )
        for item in cast("dict[str, Any]", listed)["items"]
    ]
    ensure_topics(bootstrap, specs)
    print(" ".join(sorted(s.name for s in specs)), flush=True)


@app.command("spark-submit")
def spark_submit(
    name: Annotated[str, typer.Argument(help="the SparkApplication")],
    namespace: Annotated[str, typer.Option(help="its namespace")] = "default",
    kubeconfig: Annotated[
        Path | None, typer.Option(help="default: $KUBECONFIG, ~/.kube/config")
    ] = None,
) -> None:
    """spark-submit --deploy-mode cluster of a SparkApplication read from the API server."""
    from kubernetes import client

    from signalstack.devstack.spark_submit import submission

    api = _api(kubeconfig)
    spark_app = cast(
        "dict[str, Any]",
        client.CustomObjectsApi(api).get_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", namespace, "sparkapplications", name
        ),
    )
    import pyspark

    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent)}
    if kubeconfig:
        env["KUBECONFIG"] = str(kubeconfig)
    exe = Path(sys.executable).parent / "spark-submit"
    # the pod templates are read during the submission (waitAppCompletion=false): gone after it
    with tempfile.TemporaryDirectory(prefix=f"spark-submit-{name}-") as work:
        sub = submission(spark_app, f"k8s://{api.configuration.host}", Path(work))
        sub.write_templates()
        done = subprocess.run([str(exe), *sub.argv], env=env, check=False)
    if done.returncode != 0:
        raise typer.Exit(done.returncode)
    print(sub.driver_pod, flush=True)


if __name__ == "__main__":
    app()
