"""The live single-node cluster (scripts/cluster.sh) the chart's integration test runs on.

One cluster per session: the images are built (`scripts/docker.sh images`, from the layer cache
when nothing changed), the cluster is started (its binaries built once per version) with its
Kafka broker on the bridge, and it is taken down at the end. What the host looked like before is
kept, so the last test can check that `down` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from signalstack.devstack import cache_dir

ROOT = Path(__file__).resolve().parents[3]
CLUSTER_SH = ROOT / "scripts" / "cluster.sh"
DOCKER_SH = ROOT / "scripts" / "docker.sh"
CHART = ROOT / "charts" / "signalstack"
CI_VALUES = CHART / "values-ci.yaml"
HELM = cache_dir() / "bin" / "helm"
DL = Path(
    os.environ.get("SIGNALSTACK_DOWNLOAD_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "signalstack"
)
WORKDIR = Path(os.environ.get("SIGNALSTACK_CLUSTER_DIR") or DL / "cluster")
BIN = DL / "k8s" / "bin"
NAMESPACE = "signalstack"
RELEASE = "signalstack"
BRIDGE = "ssk0"
NODE_IP = "10.216.0.1"
# what the kubelet and the bridge change, and `down` restores (scripts/cluster.sh SYSCTLS)
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
)


class CommandError(AssertionError):
    """A command exited non-zero; the message has its output."""


def run(
    args: Sequence[str | Path],
    *,
    timeout: float = 180,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env=env, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise CommandError(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-4000:]}"
        )
    return done


def host_state() -> dict[str, list[str]]:
    """What a cluster leaves on the host when it is not cleaned up: processes, mounts, addresses,
    links, routes, iptables chains, cgroups, directories."""
    procs = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(WORKDIR) in cmd or str(BIN) in cmd or "containerd-shim" in cmd:
            procs.append(cmd.strip())
    mounts = [
        m
        for m in run(["findmnt", "-rn", "-o", "TARGET"]).stdout.splitlines()
        if m.startswith((str(WORKDIR), str(DL / "k8s"), "/var/run/netns/cni-", "/run/netns/cni-"))
    ]
    iptables = [
        f"{ipt} {line}"
        for ipt in ("iptables-save", "ip6tables-save")
        for line in run([ipt]).stdout.splitlines()
        if line.startswith((":", "-A"))
        and ("KUBE" in line or "CNI" in line or "SIGNALSTACK" in line)
    ]
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob("**/kubepods*") if p.is_dir()]
    sysctls = run(["sysctl", *SYSCTLS]).stdout.splitlines()
    # lifetimes count down on DHCP/SLAAC hosts: not what a cluster changes
    addresses = [re.sub(r"\s+(valid|preferred)_lft \S+", "", a)
                 for a in run(["ip", "-o", "addr"]).stdout.split("\n")]  # fmt: skip
    routes = [re.sub(r"\s+expires \S+", "", r)
              for r in run(["ip", "route", "show", "table", "all"]).stdout.split("\n")]  # fmt: skip
    shims = [str(p) for p in Path("/run/containerd/s").glob("*")]
    return {
        "processes": sorted(procs),
        "mounts": sorted(mounts),
        "addresses": sorted(addresses),
        "links": sorted(re.sub(r"^\d+: ", "", ln)
                        for ln in run(["ip", "-o", "link"]).stdout.split("\n")),
        "routes": sorted(routes),
        "iptables": sorted(iptables),
        "cgroups": sorted(cgroups),
        "sysctls": sysctls,
        "shim sockets": sorted(shims),
        "dirs": [p for p in (str(WORKDIR), "/var/log/containers", "/var/lib/cni",
                             "/var/lib/kubelet", "/run/netns") if Path(p).exists()],
        "temp": sorted(str(p) for p in Path("/tmp").glob("spark-submit-*")),
    }  # fmt: skip


@dataclass
class Cluster:
    kubeconfig: Path
    bootstrap: str
    before: dict[str, list[str]]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }

    def kubectl(
        self, *args: str, timeout: float = 120, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([BIN / "kubectl", *args], timeout=timeout, stdin=stdin, env=self.env(),
                   check=check)  # fmt: skip

    def get(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def helm(
        self, *args: str | Path, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([HELM, *args], timeout=timeout, env=self.env(), check=check)

    def script(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(["bash", CLUSTER_SH, *args], timeout=timeout, env=self.env())

    def wait(self, what: str, predicate: Any, timeout: float = 300, every: float = 2) -> Any:
        """Poll ``predicate()`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                pods = self.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
                raise AssertionError(f"{what}: not after {timeout:.0f} s\n{pods}")
            time.sleep(every)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("the live cluster needs root (containerd, the kubelet, routes)")
    if (WORKDIR / "run" / "up").exists():
        # one cluster per machine (fixed addresses): never adopt, or tear down, someone else's
        pytest.fail(f"a cluster from {WORKDIR} runs already: scripts/cluster.sh down first")
    before = host_state()
    daemon = run(["bash", DOCKER_SH, "host"], check=False, timeout=60)
    started_docker = daemon.returncode != 0
    run(["bash", DOCKER_SH, "images"], timeout=3600)
    try:
        kubeconfig = Path(run(["bash", CLUSTER_SH, "up"], timeout=3600).stdout.split()[-1])
        bootstrap = run(["bash", CLUSTER_SH, "kafka"], timeout=300).stdout.split()[-1]
        yield Cluster(kubeconfig, bootstrap, before)
    finally:
        run(["bash", CLUSTER_SH, "down"], timeout=600, check=False)
        if started_docker:
            run(["bash", DOCKER_SH, "stop"], timeout=120, check=False)
