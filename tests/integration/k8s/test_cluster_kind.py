"""kind-config.yaml, the local registry `make kind-up` starts and the make targets of the
cluster path agree with one another (nothing here can run kind: no images can be pulled)."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
import yaml

from .conftest import CHART, KUBERNETES_VERSION, ROOT, find, rendered

pytestmark = pytest.mark.integration

CLUSTER_SH = ROOT / "manifests" / "cluster.sh"
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)


def shell_var(name: str) -> str:
    m = re.search(rf"^{name}=(\S+)", CLUSTER_SH.read_text(), re.M)
    assert m, f"{name} not set in {CLUSTER_SH}"
    return m.group(1)


def make_n(*targets: str) -> str:
    res = subprocess.run(
        ["make", "-n", *targets], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_kind_config_points_containerd_at_the_registry_hosts() -> None:
    cfg = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert (cfg["kind"], cfg["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert cfg["name"] == shell_var("CLUSTER")
    # The node image is pinned once, in versions.env (kind create cluster --image).
    assert all("image" not in n for n in cfg["nodes"])
    [patch] = cfg["containerdConfigPatches"]
    toml = tomllib.loads(patch)
    certs_d = toml["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"]
    assert certs_d == "/etc/containerd/certs.d"
    script = CLUSTER_SH.read_text()
    # kind-up writes <certs.d>/localhost:<port>/hosts.toml naming the registry container.
    assert f'dir="{certs_d}/localhost:${{REG_PORT}}"' in script
    assert 'printf \'[host."http://%s:5000"]\\n\' "$REG_NAME"' in script
    assert '-p "127.0.0.1:${REG_PORT}:5000"' in script
    assert "docker network connect kind" in script
    assert '--image "$KIND_NODE_IMAGE"' in script


def test_one_registry_address_everywhere() -> None:
    registry = f"localhost:{shell_var('REG_PORT')}"
    assert registry == "localhost:5001"  # the contract's kind registry
    hosting = yaml.safe_load((ROOT / "manifests" / "local-registry-hosting.yaml").read_text())
    assert yaml.safe_load(hosting["data"]["localRegistryHosting.v1"])["host"] == registry
    assert f"--default-repo={registry}" in make_n("deploy")
    kind_values = yaml.safe_load((CHART / "values-kind.yaml").read_text()) or {}
    chart_registry = kind_values.get("global", {}).get("image", {}).get("registry")
    assert chart_registry in (None, registry), chart_registry
    assert f"--default-repo={registry}" in (ROOT / "skaffold.yaml").read_text()


def test_every_node_port_of_the_kind_profile_is_mapped_to_loopback() -> None:
    docs = rendered("kind")
    node_ports = {
        p["nodePort"]
        for s in find(docs, "Service")
        for p in s["spec"].get("ports", [])
        if "nodePort" in p
    }
    for kafka in find(docs, "Kafka"):  # Strimzi's external listener (bootstrap + brokers)
        for listener in kafka["spec"]["kafka"]["listeners"]:
            conf = listener.get("configuration", {})
            node_ports |= {
                conf[k]["nodePort"] for k in ("bootstrap",) if "nodePort" in conf.get(k, {})
            }
            node_ports |= {b["nodePort"] for b in conf.get("brokers", []) if "nodePort" in b}
    assert node_ports, "the kind profile exposes nothing through NodePorts"
    [node] = yaml.safe_load((ROOT / "kind-config.yaml").read_text())["nodes"]
    mapped = {m["containerPort"]: m for m in node["extraPortMappings"]}
    for port in node_ports:
        assert port in mapped, f"NodePort {port} is not in kind-config.yaml's extraPortMappings"
        assert mapped[port]["listenAddress"] == "127.0.0.1"


def test_node_image_is_the_kubernetes_version_the_chart_is_validated_for() -> None:
    image = VERSIONS["KIND_NODE_IMAGE"]
    assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", image), image
    assert image.split(":")[1].split("@")[0] == f"v{KUBERNETES_VERSION}"


def test_make_targets_run_the_cluster_scripts() -> None:
    out = make_n("kind-up", "operators", "deploy", "port-forward", "kind-down")
    for line in (
        "bash manifests/cluster.sh kind-up",
        "bash manifests/operators.sh",
        "skaffold run -p kind --default-repo=localhost:5001",
        "bash manifests/cluster.sh port-forward",
        "bash manifests/cluster.sh kind-down",
    ):
        assert line in out, out
    # skaffold deploys with the pinned helm of make setup.
    assert '.cache/bin:$PATH" skaffold run' in out


@pytest.mark.parametrize("script", ["cluster.sh", "operators.sh"])
def test_scripts_pass_shellcheck(script: str) -> None:
    path = ROOT / "manifests" / script
    parse = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert parse.returncode == 0, parse.stderr
    # shellcheck: Debian's, from make setup's k8s-tools step (actionlint uses it too).
    lint = subprocess.run(
        ["shellcheck", "-x", "-P", "SCRIPTDIR", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
