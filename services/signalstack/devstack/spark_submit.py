"""What spark-operator would run for a SparkApplication, run here without the operator.

spark-operator 2.x turns a ``SparkApplication`` into one ``spark-submit --master k8s://…
--deploy-mode cluster`` (its image, main file, arguments, ``sparkConf``, driver and executor
resources and service accounts as ``--conf``) and patches what ``--conf`` cannot say into the
pods (security contexts, ``env`` with ``valueFrom``, volumes, ports). Here that second half is a
pod template per role (Spark's own ``spark.kubernetes.{driver,executor}.podTemplateFile``), so
the pods the API server admits are the ones the chart describes.

Its operator cannot be obtained on our machines (docs/components/cluster.md): the live-cluster
test and ``make deploy`` on the local cluster submit the chart's stream job this way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"


@dataclass(frozen=True)
class Submission:
    """One spark-submit: its argv (after the ``spark-submit`` path) and the pod templates it
    names, to be written where ``argv`` says (``write_templates``)."""

    argv: tuple[str, ...]
    templates: Mapping[Path, dict[str, Any]]
    driver_pod: str

    def write_templates(self) -> None:
        for path, pod in self.templates.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(pod, indent=2))


def _template(
    role: dict[str, Any],
    spec: dict[str, Any],
    container: str,
    app: str,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pod a role's spec describes beyond what ``--conf`` carries."""
    mounts = {m["name"] for m in role.get("volumeMounts", ())}
    c: dict[str, Any] = {"name": container}
    for key in ("env", "envFrom", "volumeMounts", "ports", "securityContext"):
        if role.get(key):
            c[key] = role[key]
    pod_spec: dict[str, Any] = {"containers": [c]}
    if role.get("podSecurityContext"):
        pod_spec["securityContext"] = role["podSecurityContext"]
    volumes = [v for v in spec.get("volumes", ()) if v["name"] in mounts]
    if volumes:
        pod_spec["volumes"] = volumes
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if role.get(key):
            pod_spec[key] = role[key]
    labels = {**role.get("labels", {}), "sparkoperator.k8s.io/app-name": app}
    metadata: dict[str, Any] = {"labels": labels}
    if owner:
        # the operator's driver is owned by its SparkApplication (the executors by the driver):
        # deleting the application, or uninstalling its release, removes every pod
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


# a role's fields and the Spark properties spark-operator 2.5 passes them as (Spark's documented
# keys; submission.go driverConfOption, executorConfOption); {r} is driver or executor
ROLE_CONF = (
    ("cores", "spark.{r}.cores"),
    ("coreRequest", "spark.kubernetes.{r}.request.cores"),
    ("coreLimit", "spark.kubernetes.{r}.limit.cores"),
    ("memory", "spark.{r}.memory"),
    ("memoryOverhead", "spark.{r}.memoryOverhead"),
    ("serviceAccount", "spark.kubernetes.authenticate.{r}.serviceAccountName"),
    ("javaOptions", "spark.{r}.extraJavaOptions"),
)
EXECUTOR_CONF = (
    ("instances", "spark.executor.instances"),
    ("deleteOnTermination", "spark.kubernetes.executor.deleteOnTermination"),
)


def _role_conf(role: Mapping[str, Any], prefix: str, image: str) -> dict[str, str]:
    """The ``--conf`` of the driver's or the executors' own fields."""
    conf = {f"spark.kubernetes.{prefix}.container.image": str(role.get("image") or image)}
    fields = ROLE_CONF + (EXECUTOR_CONF if prefix == "executor" else ())
    for field, key in fields:
        value = role.get(field)
        if value is None or value == "":
            continue
        conf[key.format(r=prefix)] = str(value).lower() if isinstance(value, bool) else str(value)
    for key, value in role.get("annotations", {}).items():
        conf[f"spark.kubernetes.{prefix}.annotation.{key}"] = str(value)
    return conf


def submission(app: Mapping[str, Any], master: str, workdir: Path) -> Submission:
    """The spark-submit of ``app`` (a SparkApplication as the API server returns it) against
    ``master`` (``k8s://https://…``), its pod templates under ``workdir``."""
    meta, spec = app["metadata"], app["spec"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    if spec.get("mode", "cluster") != "cluster":
        raise ValueError(f"SparkApplication {name}: only mode cluster is submitted this way")
    # the pods carry the application's labels, then their role's (as the operator's do)
    driver, executor = (
        {**role, "labels": {**meta.get("labels", {}), **role.get("labels", {})}}
        for role in (spec.get("driver", {}), spec.get("executor", {}))
    )
    driver_pod = driver.get("podName") or f"{name}-driver"
    # the operator's order (submission.go buildSparkSubmitArgs): spark-submit keeps a key's last
    # --conf, so sparkConf overrides the application-wide settings before it, and the driver's
    # and executor's own fields after it override sparkConf
    conf: dict[str, str] = {
        "spark.kubernetes.namespace": namespace,
        "spark.kubernetes.container.image": spec["image"],
        "spark.kubernetes.submission.waitAppCompletion": "false",
        "spark.kubernetes.executor.podNamePrefix": name,
    }
    if spec.get("imagePullPolicy"):
        conf["spark.kubernetes.container.image.pullPolicy"] = spec["imagePullPolicy"]
    for key, value in spec.get("sparkConf", {}).items():
        if key != "spark.kubernetes.driver.pod.name":  # the operator's own, as below
            conf[str(key)] = str(value)
    conf["spark.kubernetes.driver.pod.name"] = driver_pod
    for role, prefix in ((driver, "driver"), (executor, "executor")):
        conf.update(_role_conf(role, prefix, spec["image"]))
        container = DRIVER_CONTAINER if prefix == "driver" else EXECUTOR_CONTAINER
        conf[f"spark.kubernetes.{prefix}.podTemplateFile"] = str(
            workdir / f"{prefix}-template.json"
        )
        conf[f"spark.kubernetes.{prefix}.podTemplateContainerName"] = container
    argv = ["--master", master, "--deploy-mode", "cluster"]
    if spec.get("mainClass"):
        argv += ["--class", spec["mainClass"]]
    argv += ["--name", name]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append(spec["mainApplicationFile"])
    argv += [str(a) for a in spec.get("arguments", ())]
    owner = None
    if meta.get("uid"):
        owner = {
            "apiVersion": app.get("apiVersion", "sparkoperator.k8s.io/v1beta2"),
            "kind": app.get("kind", "SparkApplication"),
            "name": name,
            "uid": meta["uid"],
            "controller": True,
        }
    templates = {
        workdir / "driver-template.json": _template(driver, spec, DRIVER_CONTAINER, name, owner),
        workdir / "executor-template.json": _template(executor, spec, EXECUTOR_CONTAINER, name),
    }
    return Submission(tuple(argv), templates, driver_pod)


__all__ = ["DRIVER_CONTAINER", "EXECUTOR_CONTAINER", "Submission", "submission"]
