"""Writes values.schema.json of the umbrella chart and every subchart (run after changing a
subchart's values: `python charts/signalstack/hack/schemas.py`). The schemas are the checked-in
JSON; this only keeps the shared fragments (image, resources, probes, ...) written once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[1]
S = dict[str, Any]

DURATION = r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
PORTS = ("serving", "ingest", "sink", "stream", "kafka", "timescaledb", "mlflow")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def obj(props: S, required: list[str] | None = None, closed: bool = True, **kw: Any) -> S:
    s: S = {"type": "object", "properties": props, **kw}
    if closed:
        s["additionalProperties"] = False
    if required:
        s["required"] = required
    return s


def string(**kw: Any) -> S:
    return {"type": "string", **kw}


def integer(**kw: Any) -> S:
    return {"type": "integer", **kw}


BOOL: S = {"type": "boolean"}
MAP: S = {"type": "object"}
STR_MAP: S = {"type": "object", "additionalProperties": {"type": "string"}}
LIST: S = {"type": "array"}
QTY: S = {"anyOf": [{"type": "string", "pattern": QUANTITY}, {"type": "number", "minimum": 0}]}

IMAGE = obj(
    {
        "repository": string(minLength=1),
        "tag": {"type": "string", "not": {"const": "latest"}},
        "registry": string(),
        "digest": string(pattern=r"^(sha256:[a-f0-9]{64})?$"),
        "pullPolicy": string(enum=["", "Always", "IfNotPresent", "Never"]),
    },
    ["repository"],
)
RESOURCES = obj(
    {
        "requests": obj({"cpu": QTY, "memory": QTY, "ephemeral-storage": QTY}, ["cpu", "memory"]),
        "limits": obj({"cpu": QTY, "memory": QTY, "ephemeral-storage": QTY}, ["memory"]),
    },
    ["requests", "limits"],
)
PROBE = obj(
    {
        "httpGet": MAP,
        "tcpSocket": MAP,
        "exec": MAP,
        "grpc": MAP,
        "initialDelaySeconds": integer(minimum=0),
        "periodSeconds": integer(minimum=1),
        "timeoutSeconds": integer(minimum=1),
        "failureThreshold": integer(minimum=1),
        "successThreshold": integer(minimum=1),
    },
    minProperties=1,
)
SERVICE_ACCOUNT = obj({"create": BOOL, "name": string()})
# bundles from a volume (serving, drift: common.modelDir.*)
MODEL_DIR = obj({"enabled": BOOL, "path": string(pattern=r"^/"), "existingClaim": string()})
SERVICE_MONITOR = obj(
    {
        "enabled": BOOL,
        "interval": string(pattern=DURATION, minLength=2),
        "scrapeTimeout": string(pattern=DURATION, minLength=2),
    }
)
NETWORK_POLICY = obj(
    {"enabled": BOOL, "extraIngress": LIST, "extraEgress": LIST, "ingressFrom": LIST}
)
SECRET_REF = obj({"existingSecret": string(), "existingSecretKey": string(minLength=1)})


def common(extra: S, required: list[str] | None = None, *, image: bool = True) -> S:
    """A subchart's schema: its own properties + the knobs every pod-running subchart has."""
    props: S = {
        "enabled": BOOL,
        "global": MAP,
        "nameOverride": string(),
        "fullnameOverride": string(),
        "commonLabels": STR_MAP,
        "podLabels": STR_MAP,
        "podAnnotations": STR_MAP,
        "imagePullSecrets": LIST,
        "logLevel": string(enum=["DEBUG", "INFO", "WARNING", "ERROR"]),
        "env": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "extraEnv": LIST,
        "podSecurityContext": MAP,
        "securityContext": MAP,
        "tmpSizeLimit": QTY,
        "serviceAccount": SERVICE_ACCOUNT,
        "nodeSelector": STR_MAP,
        "tolerations": LIST,
        "affinity": MAP,
        "priorityClassName": string(),
        "networkPolicy": NETWORK_POLICY,
        "resources": RESOURCES,
    }
    if image:
        props["image"] = IMAGE
    props.update(extra)
    return obj(props, required)


CRON = string(pattern=r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$")
CRONJOB = {
    "schedule": CRON,
    "timeZone": string(minLength=1),
    "suspend": BOOL,
    "concurrencyPolicy": string(enum=["Forbid", "Replace", "Allow"]),
    "startingDeadlineSeconds": integer(minimum=10),
    "successfulJobsHistoryLimit": integer(minimum=0),
    "failedJobsHistoryLimit": integer(minimum=0),
    "backoffLimit": integer(minimum=0),
    "activeDeadlineSeconds": integer(minimum=1),
    "ttlSecondsAfterFinished": integer(minimum=0),
}

TOPIC = obj(
    {
        "name": string(pattern=r"^[a-zA-Z0-9._-]{1,249}$"),
        "partitions": integer(minimum=1),
        "replicas": integer(minimum=1),
        "config": MAP,
    },
    ["name", "partitions", "replicas"],
)
GLOBAL = obj(
    {
        "image": obj(
            {
                "registry": string(),
                "tag": {"type": "string", "not": {"const": "latest"}},
                "pullPolicy": string(enum=["Always", "IfNotPresent", "Never"]),
            }
        ),
        "imagePullSecrets": LIST,
        "logLevel": string(enum=["DEBUG", "INFO", "WARNING", "ERROR"]),
        "contracts": obj(
            {
                "topics": obj(
                    {k: TOPIC for k in ("trades", "features", "predictions", "dlq")},
                    ["trades", "features", "predictions", "dlq"],
                ),
                "tables": {
                    "type": "array",
                    "items": string(pattern=r"^[a-z_][a-z0-9_]*$"),
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "ports": obj(
                    {k: integer(minimum=1, maximum=65535) for k in PORTS},
                    list(PORTS),
                ),
            },
            ["topics", "tables", "ports"],
        ),
        "market": obj(
            {"symbols": string(pattern=r"^[A-Za-z0-9.]+(,[A-Za-z0-9.]+)*$")}, ["symbols"]
        ),
        "kafka": obj(
            {
                "clusterName": string(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"),
                "bootstrapServers": string(),
            }
        ),
        "timescaledb": obj(
            {
                "host": string(),
                "database": string(minLength=1),
                "user": string(minLength=1),
                "existingSecret": string(),
                "passwordKey": string(minLength=1),
            },
            ["database", "user", "passwordKey"],
        ),
        "mlflow": obj({"trackingUri": string(), "modelAlias": string(minLength=1)}),
        "podSecurityContext": MAP,
        "containerSecurityContext": MAP,
        "networkPolicy": obj(
            {
                "enabled": BOOL,
                "prometheusNamespace": string(minLength=1),
                "prometheusPodLabels": STR_MAP,
                "dnsPodLabels": STR_MAP,
                "kubeApiCidrs": {"type": "array", "items": string()},
                "kubeApiPorts": {"type": "array", "items": integer(minimum=1, maximum=65535)},
            }
        ),
        "serviceMonitor": obj({"labels": STR_MAP}),
        "pushgateway": obj(
            {
                "url": string(pattern=r"^(https?://[^/\s]+(/\S*)?)?$"),
                "namespace": string(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"),
                "podLabels": {**STR_MAP, "minProperties": 1},
                "port": integer(minimum=1, maximum=65535),
            },
            ["url", "podLabels", "port"],
        ),
        "tests": obj({"enabled": BOOL}),
    },
    ["image", "contracts", "timescaledb", "kafka", "mlflow", "networkPolicy"],
)


SUBCHARTS: dict[str, S] = {}

SUBCHARTS["serving"] = common(
    {
        "replicaCount": integer(minimum=1),
        "models": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": string(enum=["regime", "direction", "anomaly"]),
        },
        "reloadIntervalSeconds": {"type": "number", "exclusiveMinimum": 0},
        "modelDir": MODEL_DIR,
        "auth": SECRET_REF,
        "feed": obj(
            {"type": string(enum=["kafka", "none"]), "groupId": string(minLength=1)}, ["type"]
        ),
        "service": obj(
            {
                "type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "nodePort": {"type": ["integer", "null"], "minimum": 30000, "maximum": 32767},
                "annotations": STR_MAP,
            }
        ),
        "autoscaling": obj(
            {
                "enabled": BOOL,
                "minReplicas": integer(minimum=1),
                "maxReplicas": integer(minimum=1),
                "targetCPUUtilizationPercentage": integer(minimum=1, maximum=100),
                "requestRate": obj(
                    {
                        "enabled": BOOL,
                        "metricName": string(minLength=1),
                        "averageValue": string(pattern=QUANTITY),
                    }
                ),
            }
        ),
        "podDisruptionBudget": obj({"enabled": BOOL, "minAvailable": integer(minimum=0)}),
        "serviceMonitor": SERVICE_MONITOR,
        "kserve": obj(
            {"enabled": BOOL, "minReplicas": integer(minimum=0), "maxReplicas": integer(minimum=1)}
        ),
        "startupProbe": PROBE,
        "livenessProbe": PROBE,
        "readinessProbe": PROBE,
        "terminationGracePeriodSeconds": integer(minimum=0),
    },
    ["image", "resources", "livenessProbe", "readinessProbe"],
)


PVC = obj(
    {
        "enabled": BOOL,
        "size": QTY,
        "storageClass": string(),
        "existingClaim": string(),
        "accessModes": {
            "type": "array",
            "minItems": 1,
            "items": string(
                enum=["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]
            ),
        },
    },
)
PROBES = {"startupProbe": PROBE, "livenessProbe": PROBE, "readinessProbe": PROBE}
POD_KNOBS = {"terminationGracePeriodSeconds": integer(minimum=0)}
EXIT_CODES = {
    "type": "array",
    "items": integer(minimum=0, maximum=255),
    "minItems": 1,
    "uniqueItems": True,
}

SUBCHARTS["kafka"] = obj(
    {
        "enabled": BOOL,
        "global": MAP,
        "nameOverride": string(),
        "fullnameOverride": string(),
        "commonLabels": STR_MAP,
        "version": string(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$"),
        "nodePool": obj(
            {
                "name": string(pattern=DNS_LABEL),
                "replicas": integer(minimum=1),
                "roles": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": string(enum=["controller", "broker"]),
                },
                "storage": obj(
                    {
                        "type": string(enum=["persistent-claim", "ephemeral"]),
                        "size": QTY,
                        "class": string(),
                        "deleteClaim": BOOL,
                    },
                    ["type"],
                ),
                "resources": RESOURCES,
            },
            ["name", "replicas", "roles", "storage", "resources"],
        ),
        "config": MAP,
        "external": obj(
            {
                "enabled": BOOL,
                "bootstrapNodePort": integer(minimum=30000, maximum=32767),
                "brokerNodePorts": {
                    "type": "array",
                    "items": integer(minimum=30000, maximum=32767),
                },
                "advertisedHost": string(),
            }
        ),
        "entityOperator": obj({"resources": RESOURCES}, ["resources"]),
        "podSecurityContext": MAP,
        "networkPolicy": NETWORK_POLICY,
    },
    ["version", "nodePool"],
)

SUBCHARTS["timescaledb"] = common(
    {
        "networkPolicy": obj(
            {
                "enabled": BOOL,
                "extraIngress": LIST,
                "extraEgress": LIST,
                "grafana": obj(
                    {"enabled": BOOL, "namespace": string(minLength=1), "podLabels": STR_MAP}
                ),
            }
        ),
        "persistence": PVC,
        "config": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "extraDatabases": {"type": "array", "items": string(pattern=r"^[a-z_][a-z0-9_]*$")},
        "migrations": obj(
            {
                "enabled": BOOL,
                "image": IMAGE,
                "backoffLimit": integer(minimum=0),
                "activeDeadlineSeconds": integer(minimum=1),
                "resources": RESOURCES,
            },
            ["image", "resources"],
        ),
        **PROBES,
    },
    ["image", "resources", "livenessProbe", "readinessProbe"],
)

SUBCHARTS["mlflow"] = common(
    {
        "backendStore": obj(
            {
                "database": string(pattern=r"^[a-z_][a-z0-9_]*$"),
                "existingSecret": string(),
                "existingSecretKey": string(minLength=1),
            }
        ),
        "persistence": PVC,
        "workers": integer(minimum=1),
        "extraAllowedHosts": {"type": "array", "items": string()},
        "service": obj({"type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"])}),
        **PROBES,
    },
    ["image", "resources", "livenessProbe", "readinessProbe"],
)

SUBCHARTS["ingest"] = common(
    {
        "replicaCount": {
            "const": 1,
            "description": "Polygon allows one connection per API key: "
            "one replica per feed; add a feed (its own key) to scale out",
        },
        "feeds": {
            "type": "array",
            "minItems": 1,
            "items": obj(
                {
                    "name": string(pattern=DNS_LABEL, maxLength=20),
                    "symbols": string(pattern=r"^([A-Za-z0-9.]+(,[A-Za-z0-9.]+)*)?$"),
                    "existingSecret": string(minLength=1),
                    "existingSecretKey": string(minLength=1),
                },
                ["name", "existingSecret"],
            ),
        },
        "polygon": obj({"wsUrl": string(), "restUrl": string()}),
        "fakePolygon": obj(
            {
                "enabled": BOOL,
                "port": integer(minimum=1024, maximum=65535),
                "live": BOOL,
                "rate": {"type": "number", "minimum": 0},
                "tradesPerDay": integer(minimum=1000),
                "resources": RESOURCES,
            }
        ),
        "serviceMonitor": SERVICE_MONITOR,
        **PROBES,
        **POD_KNOBS,
    },
    ["image", "resources", "livenessProbe", "readinessProbe", "feeds"],
)

SUBCHARTS["sink"] = common(
    {
        "replicaCount": integer(minimum=1),
        "groupId": string(minLength=1),
        "serviceMonitor": SERVICE_MONITOR,
        "podDisruptionBudget": obj({"enabled": BOOL, "maxUnavailable": integer(minimum=0)}),
        **PROBES,
        **POD_KNOBS,
    },
    ["image", "resources", "livenessProbe", "readinessProbe"],
)

SPARK_MEM = string(pattern=r"^[0-9]+[kmgt]?$")
SUBCHARTS["stream"] = common(
    {
        "sparkVersion": string(pattern=r"^4\.0\.[0-9]+$"),
        "mainApplicationFile": string(pattern=r"^(local|file|s3a|https?)://"),
        "sparkMaster": string(minLength=1),
        "shufflePartitions": integer(minimum=1),
        "triggerSeconds": {"type": "number", "exclusiveMinimum": 0},
        "latenessMs": integer(minimum=0),
        "sparkConf": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "checkpoints": obj(
            {
                # mounted by the driver and every executor: singleNode admits ReadWriteOnce
                "persistence": {
                    **PVC,
                    "properties": {**PVC["properties"], "singleNode": BOOL},
                },
                "mountPath": string(pattern=r"^/"),
                "uri": string(),
            }
        ),
        "restartPolicy": obj(
            {
                "type": string(enum=["Always", "OnFailure", "Never"]),
                "onFailureRetries": integer(minimum=0),
                "onFailureRetryInterval": integer(minimum=1),
                "onSubmissionFailureRetries": integer(minimum=0),
                "onSubmissionFailureRetryInterval": integer(minimum=1),
            },
            ["type"],
        ),
        "driver": obj(
            {
                "cores": integer(minimum=1),
                "coreLimit": string(pattern=QUANTITY),
                "memory": SPARK_MEM,
            },
            ["cores", "memory"],
        ),
        "executor": obj(
            {
                "instances": integer(minimum=1),
                "cores": integer(minimum=1),
                "coreLimit": string(pattern=QUANTITY),
                "memory": SPARK_MEM,
            },
            ["instances", "cores", "memory"],
        ),
        "serviceMonitor": SERVICE_MONITOR,
    },
    ["image", "resources", "driver", "executor"],
)

SUBCHARTS["training"] = common(
    {
        **CRONJOB,
        "args": {"type": "array", "minItems": 1, "items": string()},
        "successExitCodes": EXIT_CODES,
        "threads": integer(minimum=1),
        "retrainJob": obj({"enabled": BOOL}),
    },
    ["image", "resources", "schedule", "timeZone"],
)

SUBCHARTS["drift"] = common(
    {
        **CRONJOB,
        "successExitCodes": EXIT_CODES,
        "retrain": obj(
            {
                "mode": string(enum=["kubernetes", "off"]),
                "lookbackDays": integer(minimum=1),
                "jobTemplateConfigMap": string(),
            }
        ),
        "modelDir": MODEL_DIR,
    },
    ["image", "resources", "schedule", "timeZone"],
)

SUBCHARTS["backfill"] = common(
    {
        **CRONJOB,
        "args": {"type": "array", "minItems": 1, "items": string()},
        "lookbackSessions": integer(minimum=1),
        "polygon": obj(
            {
                "existingSecret": string(minLength=1),
                "existingSecretKey": string(minLength=1),
                "restUrl": string(),
            },
            ["existingSecret"],
        ),
    },
    ["image", "resources", "schedule", "timeZone"],
)

SUBCHARTS["monitoring"] = obj(
    {
        "enabled": BOOL,
        "global": MAP,
        "nameOverride": string(),
        "fullnameOverride": string(),
        "commonLabels": STR_MAP,
        "dashboards": obj(
            {
                "enabled": BOOL,
                "label": string(minLength=1),
                "labelValue": string(),
                "folder": string(),
                "namespace": string(),
            }
        ),
        "rules": obj({"enabled": BOOL, "labels": STR_MAP}),
        "grafana": obj(
            {
                "namespace": string(minLength=1),
                "service": string(minLength=1),
                "port": integer(minimum=1, maximum=65535),
            }
        ),
    }
)

SUBCHARTS["common"] = obj({"global": MAP, "enabled": BOOL})


def umbrella() -> S:
    props: S = {"global": GLOBAL, "common": MAP}
    for name in (
        "kafka",
        "timescaledb",
        "mlflow",
        "ingest",
        "stream",
        "sink",
        "serving",
        "training",
        "backfill",
        "drift",
        "monitoring",
    ):
        # each subchart's own schema checks its section; here only the switch
        props[name] = obj({"enabled": BOOL}, ["enabled"], closed=False)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "signalstack",
        **obj(props, ["global"]),
    }


def documents() -> dict[str, S]:
    """values.schema.json of every chart, by its path relative to the umbrella chart."""
    docs = {"values.schema.json": umbrella()}
    for name, schema in SUBCHARTS.items():
        docs[f"charts/{name}/values.schema.json"] = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": name,
            **schema,
        }
    return docs


def render(doc: S) -> str:
    return json.dumps(doc, indent=2) + "\n"


def main() -> None:
    for rel, doc in documents().items():
        (CHART / rel).write_text(render(doc))


if __name__ == "__main__":
    main()
