#!/usr/bin/env python3
"""CustomResourceDefinitions for the local cluster (scripts/cluster.sh), from the schemas the repo
carries (charts/crd-schemas, each one upstream CRD version's openAPIV3Schema at the pinned
release; SOURCES.md). Prints one JSON `List` for `kubectl apply -f -`.

Only the operators whose CRD manifests no registry here serves are built this way: Strimzi,
spark-operator and KServe. prometheus-operator's come as published, from its Go module
(scripts/cluster.sh). Nothing but the API server interprets these: no operator runs, so the
custom resources of the chart are validated (schemas and CEL rules) and stored, never reconciled.

Standard library only: the script runs before any venv exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[1] / "charts" / "crd-schemas"

# (group, file stem, version, Kind, plural, short names): the versions the pinned operators serve
# (Strimzi 1.x: v1 only; spark-operator 2.5: v1beta2; KServe 0.20: v1beta1).
KINDS: tuple[tuple[str, str, str, str, str, tuple[str, ...]], ...] = (
    ("kafka.strimzi.io", "kafka", "v1", "Kafka", "kafkas", ("k",)),
    ("kafka.strimzi.io", "kafkanodepool", "v1", "KafkaNodePool", "kafkanodepools", ("knp",)),
    ("kafka.strimzi.io", "kafkatopic", "v1", "KafkaTopic", "kafkatopics", ("kt",)),
    ("kafka.strimzi.io", "kafkauser", "v1", "KafkaUser", "kafkausers", ("ku",)),
    ("sparkoperator.k8s.io", "sparkapplication", "v1beta2", "SparkApplication",
     "sparkapplications", ("sparkapp",)),
    ("sparkoperator.k8s.io", "scheduledsparkapplication", "v1beta2", "ScheduledSparkApplication",
     "scheduledsparkapplications", ("scheduledsparkapp",)),
    ("serving.kserve.io", "inferenceservice", "v1beta1", "InferenceService", "inferenceservices",
     ("isvc",)),
)  # fmt: skip


# A group under k8s.io needs the API review's approval annotation; spark-operator's CRDs carry
# this one upstream.
APPROVAL = {
    "sparkoperator.k8s.io": {
        "api-approved.kubernetes.io": "https://github.com/kubeflow/spark-operator/pull/1298"
    }
}


def structural(node: Any) -> Any:
    """The schema as the API server accepts it: the offline copies close every object with
    ``additionalProperties: false`` (for kubeconform -strict), which a structural schema may not
    combine with ``properties`` (the API server prunes unknown fields instead), and spell
    OpenAPI's ``nullable: true`` as JSON Schema's ``type: [T, "null"]``, which a CRD may not."""
    if isinstance(node, dict):
        out = {k: structural(v) for k, v in node.items()}
        if out.get("additionalProperties") is False:
            del out["additionalProperties"]
        kind = out.get("type")
        if isinstance(kind, list) and "null" in kind:
            (out["type"],) = [t for t in kind if t != "null"]
            out["nullable"] = True
        return out
    if isinstance(node, list):
        return [structural(v) for v in node]
    return node


def crd(
    group: str, stem: str, version: str, kind: str, plural: str, short: tuple[str, ...]
) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / group / f"{stem}_{version}.json").read_text())
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": stem,
        "shortNames": list(short),
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": {"app.kubernetes.io/managed-by": "signalstack-local-cluster"},
            "annotations": APPROVAL.get(group, {}),
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": structural(schema)},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def main() -> int:
    items = [crd(*k) for k in KINDS]
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
