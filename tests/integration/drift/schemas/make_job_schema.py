"""Make ``job_batch_v1.json`` (a standalone, strict JSON schema of a batch/v1 Job) from the
Kubernetes OpenAPI v3 document ``api/openapi-spec/v3/apis__batch__v1_openapi.json``.

Usage: ``python make_job_schema.py <apis__batch__v1_openapi.json> > job_batch_v1.json``
(see SOURCES.md for where the input came from). What it does, and only this:

- keeps the component schemas reachable from ``io.k8s.api.batch.v1.Job`` under ``definitions``
  and points every ``$ref`` there; drops ``description`` (size);
- ``additionalProperties: false`` on every object node that declares ``properties`` and has no
  ``additionalProperties`` of its own — what the API server's strict field validation refuses
  (and what ``kubeconform -strict`` checks);
- ``x-kubernetes-int-or-string`` nodes become ``oneOf: [string, integer]`` (as kubeconform's
  schemas have them);
- the Job's ``apiVersion`` and ``kind`` are pinned to ``batch/v1`` and ``Job``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

ROOT = "io.k8s.api.batch.v1.Job"
PREFIX = "#/components/schemas/"


def convert(node: Any, refs: set[str]) -> Any:
    if isinstance(node, list):
        return [convert(v, refs) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "description":
            continue
        if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX):
            name = v[len(PREFIX) :]
            refs.add(name)
            out[k] = "#/definitions/" + name
            continue
        if k == "properties":
            out[k] = {p: convert(s, refs) for p, s in v.items()}
            continue
        out[k] = convert(v, refs)
    if node.get("x-kubernetes-int-or-string"):
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    open_object = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and not open_object:
        out["additionalProperties"] = False
    return out


def main(path: str) -> None:
    schemas = json.load(open(path))["components"]["schemas"]  # noqa: SIM115
    definitions: dict[str, Any] = {}
    todo = {ROOT}
    while todo:
        name = todo.pop()
        refs: set[str] = set()
        definitions[name] = convert(schemas[name], refs)
        todo |= refs - set(definitions)
    job = definitions[ROOT]
    job["properties"]["apiVersion"] = {"type": "string", "enum": ["batch/v1"]}
    job["properties"]["kind"] = {"type": "string", "enum": ["Job"]}
    doc = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$ref": "#/definitions/" + ROOT,
        "definitions": dict(sorted(definitions.items())),
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
