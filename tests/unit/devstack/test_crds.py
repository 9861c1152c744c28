"""scripts/crds.py: the CustomResourceDefinitions of the local cluster, built from the offline
schemas in charts/crd-schemas. Each property is checked by a function that is also shown to
catch a deliberately broken variant of the script (monkeypatched), so none can pass vacuously."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "crds.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("signalstack_crds_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def crds() -> ModuleType:
    """A fresh copy of the script per test (monkeypatching one leaves the others intact)."""
    return load()


def built(crds: ModuleType) -> list[dict[str, Any]]:
    return [crds.crd(*k) for k in crds.KINDS]


def source(crds: ModuleType, kind: tuple[Any, ...]) -> dict[str, Any]:
    group, stem, version = kind[:3]
    return json.loads((crds.SCHEMAS / group / f"{stem}_{version}.json").read_text())  # type: ignore[no-any-return]


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object under node, with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from nodes(value, f"{path}/{i}")


def pairs(crds: ModuleType) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, source node, built node) of every schema object of every CRD, walked together
    (the conversion keeps every key but the ones it rewrites)."""
    for kind, crd in zip(crds.KINDS, built(crds), strict=True):
        out = dict(nodes(schema_of(crd)))
        for path, node in nodes(source(crds, kind)):
            yield f"{kind[1]}{path}", node, out[path]


# ---- the checks --------------------------------------------------------------------------


def check_names(crds: ModuleType) -> None:
    items = built(crds)
    assert len(items) == len(crds.KINDS)
    for (group, stem, version, kind, plural, short), crd in zip(crds.KINDS, items, strict=True):
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["metadata"]["name"] == f"{plural}.{group}"
        spec = crd["spec"]
        assert spec["group"] == group and spec["scope"] == "Namespaced"
        assert spec["names"] == {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                                 "singular": stem, "shortNames": list(short)}  # fmt: skip
        (v,) = spec["versions"]
        assert (v["name"], v["served"], v["storage"]) == (version, True, True)


def check_closed_objects_opened(crds: ModuleType) -> None:
    """A structural schema may not combine properties with additionalProperties: false; a map
    (additionalProperties: {schema}) stays a map."""
    closed = maps = 0
    for path, src, out in pairs(crds):
        if "properties" in src and src.get("additionalProperties") is False:
            closed += 1
            assert "additionalProperties" not in out, path
        if isinstance(src.get("additionalProperties"), dict):
            maps += 1
            assert isinstance(out.get("additionalProperties"), dict), path
    assert closed and maps  # the carried schemas have both


def check_nullable(crds: ModuleType) -> None:
    """JSON Schema's type: [T, "null"] is OpenAPI's type: T, nullable: true."""
    seen = 0
    for path, src, out in pairs(crds):
        kind = src.get("type")
        if isinstance(kind, list) and "null" in kind:
            seen += 1
            (want,) = [t for t in kind if t != "null"]
            assert (out["type"], out.get("nullable")) == (want, True), path
        assert not isinstance(out.get("type"), list), path
    assert seen


def check_cel_rules_kept(crds: ModuleType) -> None:
    """Strimzi's x-kubernetes-validations (CEL) reach the API server: the rules offline
    schemas miss."""
    seen = 0
    for path, src, out in pairs(crds):
        if "x-kubernetes-validations" in src:
            seen += 1
            assert out.get("x-kubernetes-validations") == src["x-kubernetes-validations"], path
    assert seen


def check_api_approval(crds: ModuleType) -> None:
    """The API server refuses a CRD in a *.k8s.io group without the API review annotation."""
    groups = set()
    for crd in built(crds):
        group = crd["spec"]["group"]
        if group.endswith(".k8s.io") or group.endswith(".kubernetes.io"):
            groups.add(group)
            assert crd["metadata"]["annotations"].get("api-approved.kubernetes.io"), group
    assert "sparkoperator.k8s.io" in groups


# ---- the real script passes them --------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [check_names, check_closed_objects_opened, check_nullable, check_cel_rules_kept,
     check_api_approval],
)  # fmt: skip
def test_crds(crds: ModuleType, check: Any) -> None:
    check(crds)


def test_output_is_one_json_list_from_the_standard_library_alone(crds: ModuleType) -> None:
    """The script runs before any venv exists (scripts/cluster.sh): `python3 -I` (no site
    packages, no user paths) prints one JSON document, a List of every CRD."""
    res = subprocess.run([sys.executable, "-I", str(SCRIPT)], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    doc = json.loads(res.stdout)
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")
    assert doc["items"] == json.loads(json.dumps(built(crds)))


# ---- and each catches a broken variant --------------------------------------------------


def identity(node: Any) -> Any:
    return node


def singular_as_plural(crd: dict[str, Any]) -> dict[str, Any]:
    names = crd["spec"]["names"]
    names["singular"] = names["plural"]
    return crd


def drop_every(key: str) -> Any:
    def structural(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: structural(v) for k, v in node.items() if k != key}
        if isinstance(node, list):
            return [structural(v) for v in node]
        return node

    return structural


@pytest.mark.parametrize(
    ("check", "attr", "broken"),
    [
        (check_names, "crd", lambda crd: lambda *k: singular_as_plural(crd(*k))),
        (check_closed_objects_opened, "structural", lambda _: identity),
        (check_closed_objects_opened, "structural", lambda _: drop_every("additionalProperties")),
        (check_nullable, "structural", lambda _: identity),
        (check_cel_rules_kept, "structural", lambda _: drop_every("x-kubernetes-validations")),
        (check_api_approval, "APPROVAL", lambda _: {}),
    ],
    ids=["names", "closed-kept", "maps-dropped", "nullable", "cel-dropped", "no-approval"],
)
def test_each_check_catches_a_broken_script(
    crds: ModuleType, monkeypatch: pytest.MonkeyPatch, check: Any, attr: str, broken: Any
) -> None:
    monkeypatch.setattr(crds, attr, broken(getattr(crds, attr)))
    with pytest.raises(AssertionError):
        check(crds)
