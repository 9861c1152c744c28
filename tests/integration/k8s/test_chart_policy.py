"""Policy of every rendered pod (both profiles): pod security "restricted" (non-root, seccomp,
no privilege escalation, every capability dropped, read-only root filesystem), requests and
limits, probes on long-running containers, pinned images that come only from values, secrets
only by reference, and service-account tokens only where the API server is called."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from .conftest import CHART, pod_spec, render, rendered

pytestmark = pytest.mark.integration

PROFILES = ("kind", "production")
LONG_RUNNING = ("Deployment", "StatefulSet")
# the pods that call the API server: drift (creates retraining Jobs), the Spark driver (executors)
API_CLIENTS = {"drift", "stream"}


def pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every workload, the SparkApplication's driver and executor as pods."""
    out = []
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        spec = pod_spec(d)
        if spec is not None:
            out.append((where, spec))
        elif d["kind"] == "SparkApplication":
            for role in ("driver", "executor"):
                r = d["spec"][role]
                container = {"name": role, "image": d["spec"]["image"], **r}
                out.append((f"{where}/{role}", {"securityContext": r["podSecurityContext"],
                                                 "containers": [container]}))  # fmt: skip
    return out


def violations(doc: dict[str, Any]) -> list[str]:
    """What in one rendered object breaks the policy (empty: nothing)."""
    bad: list[str] = []
    for where, spec in pods([doc]):
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") == 0:
            bad.append(f"{where}: pod not runAsNonRoot")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            bad.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            bad.append(f"{where}: host namespaces")
        for c in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where}/{c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{at}: root filesystem not read-only")
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
                bad.append(f"{at}: privilege escalation allowed")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                bad.append(f"{at}: capabilities not dropped")
            if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
                bad.append(f"{at}: runs as root")
            image = c["image"]
            if "@sha256:" not in image:
                tag = image.rsplit("/", 1)[-1].partition(":")[2]
                if not tag or tag == "latest":
                    bad.append(f"{at}: image {image} has no pinned tag")
            if where.startswith("SparkApplication"):
                if not (c.get("cores") and c.get("memory") and c.get("coreLimit")):
                    bad.append(f"{at}: cores, coreLimit and memory not all set")
                continue
            res = c.get("resources") or {}
            if not (res.get("limits") or {}).get("memory"):
                bad.append(f"{at}: no memory limit")
            if not {"cpu", "memory"} <= set(res.get("requests") or {}):
                bad.append(f"{at}: no cpu/memory requests")
            if doc["kind"] in LONG_RUNNING and not (
                c.get("livenessProbe") and c.get("readinessProbe")
            ):
                bad.append(f"{at}: no liveness/readiness probe")
            for e in c.get("env", []):
                name = e["name"]
                if re.search(r"PASSWORD|TOKEN|API_KEY|SECRET", name) and "value" in e:
                    bad.append(f"{at}: secret {name} given as a value")
    return bad


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pod_is_restricted_limited_and_probed(profile: str) -> None:
    docs = rendered(profile)
    assert len(pods(docs)) >= 12
    bad = [v for d in docs for v in violations(d)]
    assert not bad, "\n".join(bad)


MUTATIONS = [
    ("readOnlyRootFilesystem", lambda c: c["securityContext"].update(readOnlyRootFilesystem=False)),
    ("privilege", lambda c: c["securityContext"].update(allowPrivilegeEscalation=True)),
    ("capabilities", lambda c: c["securityContext"].update(capabilities={"drop": []})),
    ("memory limit", lambda c: c["resources"]["limits"].pop("memory")),
    ("probe", lambda c: c.pop("readinessProbe")),
    ("tag", lambda c: c.update(image="signalstack/serving:latest")),
    ("secret", lambda c: c["env"].append({"name": "SERVING_API_TOKEN", "value": "x"})),
]


@pytest.mark.parametrize(("what", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_policy_catches_a_violation(what: str, mutate: Any) -> None:
    deploy = next(
        d for d in rendered("kind")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "signalstack-serving"
    )  # fmt: skip
    assert not violations(deploy)
    broken = copy.deepcopy(deploy)
    mutate(broken["spec"]["template"]["spec"]["containers"][0])
    assert violations(broken), f"a broken {what} passed"


def test_images_come_only_from_values() -> None:
    """With a registry and tag in values, every image (ours, the database's, the Spark app's)
    carries that registry: none is hard-coded in a template."""
    sets = ("global.image.registry=registry.values.test", "global.image.tag=9.9.9")
    docs = rendered("default", sets)
    images = [c["image"] for _, spec in pods(docs) for c in spec["containers"]]
    assert images
    assert all(i.startswith("registry.values.test/") for i in images), images
    ours = [i for i in images if "/signalstack/" in i]
    assert ours and all(i.endswith(":9.9.9") for i in ours), ours


def test_service_account_tokens_only_where_the_api_is_called() -> None:
    docs = rendered("kind")
    mounted = set()
    for d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        sa = next(
            (s for s in docs if s["kind"] == "ServiceAccount"
             and s["metadata"]["name"] == spec.get("serviceAccountName")),
            None,
        )  # fmt: skip
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken", True) if sa else True
        if automount:
            mounted.add(d["metadata"]["labels"]["app.kubernetes.io/component"])
    spark = next(d for d in docs if d["kind"] == "SparkApplication")
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    for role, wants_token in (("driver", True), ("executor", False)):
        sa = accounts[spark["spec"][role]["serviceAccount"]]  # never the namespace's default
        assert sa.get("automountServiceAccountToken", True) is wants_token, role
    mounted.add("stream")
    assert mounted == API_CLIENTS


def test_no_secret_value_in_any_values_file() -> None:
    """Secrets are referenced (existingSecret + key), never written into values."""
    secretish = re.compile(r"(password|token|apikey|api_key|secret)$", re.I)
    allowed = re.compile(r"^(existingSecret|existingSecretKey|passwordKey)$")
    files = sorted(CHART.glob("values*.yaml")) + sorted(CHART.glob("charts/*/values.yaml"))
    assert len(files) >= 13

    def walk(node: Any, path: str) -> list[str]:
        found = []
        if isinstance(node, dict):
            for k, v in node.items():
                p = f"{path}.{k}"
                if secretish.search(str(k)) and not allowed.match(str(k)) and v not in ("", None):
                    found.append(p)
                found += walk(v, p)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                found += walk(v, f"{path}[{i}]")
        return found

    bad = [p for f in files for p in walk(yaml.safe_load(f.read_text()), f.name)]
    assert not bad, bad


def test_production_generates_no_secret() -> None:
    assert not [d for d in rendered("production") if d["kind"] == "Secret"]
    generated = [d for d in rendered("kind") if d["kind"] == "Secret"]
    # the database password and the simulated Polygon's key (kind has no real one)
    assert sorted(d["metadata"]["name"] for d in generated) == [
        "signalstack-ingest-fake-polygon",
        "signalstack-timescaledb",
    ]


def test_every_template_file_is_used() -> None:
    """No template file renders to nothing in every profile (a dead template is a silent bug):
    each templates/ file (not a helper, not a test hook) yields an object in some profile."""
    sources = set()
    for profile in ("default", "kind", "production"):
        text = render(profile, ("serving.kserve.enabled=true",))
        sources |= set(re.findall(r"^# Source: (\S+)$", text, re.M))
    files = {
        "signalstack/" + str(p.relative_to(CHART))
        for p in CHART.rglob("templates/**/*.yaml")
        if "charts/common" not in str(p)
    }
    assert files - sources == set()
