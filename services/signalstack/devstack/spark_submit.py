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
    role: dict[str, Any], spec: dict[str, Any], container: str, app: str
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
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": labels}, "spec": pod_spec}


def submission(app: Mapping[str, Any], master: str, workdir: Path) -> Submission:
    """The spark-submit of ``app`` (a SparkApplication as the API server returns it) against
    ``master`` (``k8s://https://…``), its pod templates under ``workdir``."""
    meta, spec = app["metadata"], app["spec"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    if spec.get("mode", "cluster") != "cluster":
        raise ValueError(f"SparkApplication {name}: only mode cluster is submitted this way")
    driver, executor = spec.get("driver", {}), spec.get("executor", {})
    driver_pod = f"{name}-driver"
    conf: dict[str, str] = {
        "spark.kubernetes.namespace": namespace,
        "spark.kubernetes.container.image": spec["image"],
        "spark.kubernetes.submission.waitAppCompletion": "false",
        "spark.kubernetes.driver.pod.name": driver_pod,
        "spark.kubernetes.executor.podNamePrefix": name,
    }
    if spec.get("imagePullPolicy"):
        conf["spark.kubernetes.container.image.pullPolicy"] = spec["imagePullPolicy"]
    for role, prefix, template_key in (
        (driver, "driver", "spark.kubernetes.driver"),
        (executor, "executor", "spark.kubernetes.executor"),
    ):
        if "cores" in role:
            conf[f"spark.{prefix}.cores"] = str(role["cores"])
        if "coreLimit" in role:
            conf[f"{template_key}.limit.cores"] = str(role["coreLimit"])
        if "memory" in role:
            conf[f"spark.{prefix}.memory"] = str(role["memory"])
        if role.get("serviceAccount"):
            conf[f"spark.kubernetes.authenticate.{prefix}.serviceAccountName"] = role[
                "serviceAccount"
            ]
        container = DRIVER_CONTAINER if prefix == "driver" else EXECUTOR_CONTAINER
        conf[f"{template_key}.podTemplateFile"] = str(workdir / f"{prefix}-template.json")
        conf[f"{template_key}.podTemplateContainerName"] = container
    if "instances" in executor:
        conf["spark.executor.instances"] = str(executor["instances"])
    # the application's own settings last: they win, as with the operator
    conf.update({str(k): str(v) for k, v in spec.get("sparkConf", {}).items()})
    argv = ["--master", master, "--deploy-mode", "cluster", "--name", name]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append(spec["mainApplicationFile"])
    argv += [str(a) for a in spec.get("arguments", ())]
    templates = {
        workdir / "driver-template.json": _template(driver, spec, DRIVER_CONTAINER, name),
        workdir / "executor-template.json": _template(executor, spec, EXECUTOR_CONTAINER, name),
    }
    return Submission(tuple(argv), templates, driver_pod)


__all__ = ["DRIVER_CONTAINER", "EXECUTOR_CONTAINER", "Submission", "submission"]
