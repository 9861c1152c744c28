"""The spark-submit spark-operator would run for a SparkApplication
(signalstack.devstack.spark_submit), on a hand-written application modelled on the chart's ci
rendering (`helm template ... -f values-ci.yaml -s charts/stream/templates/sparkapplication.yaml`;
the real rendering is submitted in tests/integration/k8s/test_chart_components.py). The mapping is
spark-operator 2.5's (internal/controller/sparkapplication/submission.go)."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from signalstack.devstack.spark_submit import (
    DRIVER_CONTAINER,
    EXECUTOR_CONTAINER,
    Submission,
    submission,
)

MASTER = "k8s://https://10.216.0.1:6443"
SECRET_ENV = {
    "name": "TIMESCALE_PASSWORD",
    "valueFrom": {"secretKeyRef": {"name": "signalstack-timescaledb", "key": "password"}},
}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001}
SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}  # fmt: skip


def role(service_account: str, mounts: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "cores": 1,
        "coreLimit": "1200m",
        "memory": "768m",
        "serviceAccount": service_account,
        "labels": {"app.kubernetes.io/name": "stream", "signalstack.io/kafka-client": "true"},
        "podSecurityContext": POD_SECURITY,
        "securityContext": SECURITY,
        "env": [{"name": "STREAM_CHECKPOINT_DIR", "value": "/checkpoints"}, SECRET_ENV],
        "volumeMounts": [{"name": m, "mountPath": f"/{m}"} for m in mounts],
        **extra,
    }


APP: dict[str, Any] = {
    "apiVersion": "sparkoperator.k8s.io/v1beta2",
    "kind": "SparkApplication",
    "metadata": {
        "name": "signalstack-stream",
        "namespace": "signalstack",
        "labels": {"app.kubernetes.io/part-of": "signalstack"},
    },
    "spec": {
        "type": "Python",
        "mode": "cluster",
        "image": "signalstack/stream:dev",
        "imagePullPolicy": "Never",
        "mainApplicationFile": "local:///opt/signalstack/spark-apps/stream/main.py",
        "arguments": ["--once", 3],
        "sparkVersion": "4.0.4",
        "sparkConf": {
            "spark.sql.shuffle.partitions": "2",
            "spark.kubernetes.driver.request.cores": "100m",
            "spark.ui.enabled": "false",
        },
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}},
            {"name": "driver-only", "emptyDir": {}},
            {"name": "unmounted", "emptyDir": {}},
        ],
        "driver": role(
            "signalstack-stream",
            ["tmp", "checkpoints", "driver-only"],
            ports=[{"name": "metrics", "containerPort": 9110, "protocol": "TCP"}],
        ),
        "executor": role("signalstack-stream-executor", ["tmp", "checkpoints"], instances=1),
    },
}


def submit(tmp_path: Path, **spec: Any) -> Submission:
    app = copy.deepcopy(APP)
    app["spec"].update(spec)
    return submission(app, MASTER, tmp_path)


def conf_pairs(argv: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for flag, value in itertools.pairwise(argv):
        if flag == "--conf":
            key, _, val = value.partition("=")
            out.append((key, val))
    return out


def conf_of(argv: tuple[str, ...]) -> dict[str, str]:
    """What spark-submit ends up with: a key's last --conf wins."""
    return dict(conf_pairs(argv))


def test_cluster_mode_against_the_master_under_the_application_name(tmp_path: Path) -> None:
    sub = submit(tmp_path)
    assert sub.argv[:6] == ("--master", MASTER, "--deploy-mode", "cluster",
                            "--name", "signalstack-stream")  # fmt: skip
    assert sub.driver_pod == "signalstack-stream-driver"
    conf = conf_of(sub.argv)
    assert conf["spark.kubernetes.driver.pod.name"] == sub.driver_pod
    assert conf["spark.kubernetes.submission.waitAppCompletion"] == "false"


def test_image_pull_policy_and_namespace(tmp_path: Path) -> None:
    conf = conf_of(submit(tmp_path).argv)
    assert conf["spark.kubernetes.namespace"] == "signalstack"
    assert conf["spark.kubernetes.container.image"] == "signalstack/stream:dev"
    assert conf["spark.kubernetes.driver.container.image"] == "signalstack/stream:dev"
    assert conf["spark.kubernetes.executor.container.image"] == "signalstack/stream:dev"
    assert conf["spark.kubernetes.container.image.pullPolicy"] == "Never"


def test_driver_and_executor_fields_as_sparks_documented_keys(tmp_path: Path) -> None:
    conf = conf_of(submit(tmp_path).argv)
    for r, account in (("driver", "signalstack-stream"),
                       ("executor", "signalstack-stream-executor")):  # fmt: skip
        assert conf[f"spark.{r}.cores"] == "1"
        assert conf[f"spark.kubernetes.{r}.limit.cores"] == "1200m"
        assert conf[f"spark.{r}.memory"] == "768m"
        assert conf[f"spark.kubernetes.authenticate.{r}.serviceAccountName"] == account
    assert conf["spark.executor.instances"] == "1"
    assert "spark.driver.instances" not in conf


def test_the_optional_fields_the_operator_maps(tmp_path: Path) -> None:
    app = copy.deepcopy(APP)
    app["spec"]["mainClass"] = "org.example.Main"
    app["spec"]["driver"].update(
        coreRequest="250m", memoryOverhead="256m", javaOptions="-Dx=1", podName="the-driver",
        annotations={"example.com/a": "b"}, image="other:1",
    )  # fmt: skip
    app["spec"]["executor"].update(deleteOnTermination=False, coreRequest="50m")
    sub = submission(app, MASTER, tmp_path)
    assert sub.argv[4:6] == ("--class", "org.example.Main")
    assert sub.driver_pod == "the-driver"
    conf = conf_of(sub.argv)
    assert conf["spark.kubernetes.driver.pod.name"] == "the-driver"
    assert conf["spark.kubernetes.driver.request.cores"] == "250m"  # over sparkConf's 100m
    assert conf["spark.kubernetes.executor.request.cores"] == "50m"
    assert conf["spark.driver.memoryOverhead"] == "256m"
    assert conf["spark.driver.extraJavaOptions"] == "-Dx=1"
    assert conf["spark.kubernetes.driver.annotation.example.com/a"] == "b"
    assert conf["spark.kubernetes.driver.container.image"] == "other:1"
    assert conf["spark.kubernetes.executor.container.image"] == "signalstack/stream:dev"
    assert conf["spark.kubernetes.executor.deleteOnTermination"] == "false"


def test_spark_conf_in_the_operators_place(tmp_path: Path) -> None:
    """spark-operator passes sparkConf after the application-wide settings and before the
    driver's and executor's own fields; spark-submit keeps a key's last value. So sparkConf
    overrides the former and is overridden by the latter, and never names the driver pod."""
    sub = submit(tmp_path, sparkConf={
        "spark.sql.shuffle.partitions": "2",
        "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
        "spark.driver.memory": "4g",
        "spark.kubernetes.driver.pod.name": "elsewhere",
    })  # fmt: skip
    pairs = conf_pairs(sub.argv)
    conf = dict(pairs)
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.kubernetes.container.image.pullPolicy"] == "IfNotPresent"
    assert conf["spark.driver.memory"] == "768m"
    assert conf["spark.kubernetes.driver.pod.name"] == sub.driver_pod == "signalstack-stream-driver"
    # each property once: the command says what Spark runs with
    assert len(pairs) == len(conf)
    # with no role field of its own, sparkConf's value stands
    assert conf_of(submit(tmp_path).argv)["spark.kubernetes.driver.request.cores"] == "100m"


def test_main_file_and_arguments_end_the_command(tmp_path: Path) -> None:
    argv = submit(tmp_path).argv
    assert argv[-3:] == ("local:///opt/signalstack/spark-apps/stream/main.py", "--once", "3")
    assert "--conf" not in argv[argv.index(argv[-3]) :]


@pytest.mark.parametrize(
    ("name", "container"), [("driver", DRIVER_CONTAINER), ("executor", EXECUTOR_CONTAINER)]
)
def test_pod_templates_carry_what_conf_cannot(tmp_path: Path, name: str, container: str) -> None:
    sub = submit(tmp_path)
    conf = conf_of(sub.argv)
    path = Path(conf[f"spark.kubernetes.{name}.podTemplateFile"])
    assert path.parent == tmp_path and path in sub.templates
    assert conf[f"spark.kubernetes.{name}.podTemplateContainerName"] == container
    sub.write_templates()
    pod = json.loads(path.read_text())
    assert pod == sub.templates[path]
    want = APP["spec"][name]
    assert pod["kind"] == "Pod"
    assert pod["spec"]["securityContext"] == POD_SECURITY
    (c,) = pod["spec"]["containers"]
    assert c["name"] == container
    assert c["securityContext"] == SECURITY
    assert c["env"] == want["env"] and SECRET_ENV in c["env"]  # valueFrom kept
    assert c["volumeMounts"] == want["volumeMounts"]
    # only the volumes this role mounts (the executors do not get the driver's)
    mounted = [m["name"] for m in want["volumeMounts"]]
    assert [v["name"] for v in pod["spec"]["volumes"]] == mounted
    assert c.get("ports") == want.get("ports")
    assert pod["metadata"]["labels"] == {
        **APP["metadata"]["labels"],
        **want["labels"],
        "sparkoperator.k8s.io/app-name": "signalstack-stream",
    }


def test_client_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only mode cluster"):
        submit(tmp_path, mode="client")


def test_the_driver_is_owned_by_its_application(tmp_path: Path) -> None:
    """As the operator's driver is: deleting the SparkApplication (or uninstalling its release)
    removes the driver, and through Spark's own ownership, the executors."""
    app = copy.deepcopy(APP)
    app["metadata"]["uid"] = "0b5c3a8e-6f0e-4a59-9a55-1b0d2c1e7f01"
    sub = submission(app, MASTER, tmp_path)
    driver, executor = (
        sub.templates[tmp_path / f"{r}-template.json"] for r in ("driver", "executor")
    )
    assert driver["metadata"]["ownerReferences"] == [{
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "name": "signalstack-stream", "uid": app["metadata"]["uid"], "controller": True,
    }]  # fmt: skip
    assert "ownerReferences" not in executor["metadata"]
    # an application not read from the API server has no uid to name
    assert all("ownerReferences" not in t["metadata"] for t in submit(tmp_path).templates.values())
