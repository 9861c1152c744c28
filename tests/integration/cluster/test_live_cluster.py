"""The chart on a live single-node cluster (scripts/cluster.sh): `helm install` with the ci
profile onto a real API server and kubelet, our images in pods, the stream job submitted to
Kubernetes, CronJobs run, RBAC enforced, upgrade and uninstall; then `down` leaves nothing.

The tests run in file order against one release; each says what it proves. No operator runs
(none can be obtained here): the custom resources are validated by the API server, the
KafkaTopics are created on the host's broker as the Topic Operator would, and the
SparkApplication is submitted as spark-operator would (signalstack.devstack).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from tests.integration.drift.support import export_bundles, features
from tests.integration.ingest.ingest_helpers import records_in_topic

from signalstack.drift.retrain import LABEL_SELECTOR
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import load_bundle

from .conftest import (
    BIN,
    BRIDGE,
    CHART,
    CI_VALUES,
    NAMESPACE,
    NODE_IP,
    RELEASE,
    Cluster,
    host_state,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

NOW = pd.Timestamp.now(tz="UTC").floor("min")
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real bundles (XGBoost, Isolation Forest, LSTM) whose PSI references are the
    un-shifted feature distribution."""
    return export_bundles(
        tmp_path_factory.mktemp("bundles"), features(1500, NOW - pd.Timedelta(days=3), seed=1)
    )


def _pod_run(cluster: Cluster, name: str, code: str, timeout: float = 180) -> str:
    """A one-shot pod of the serving image (restricted security) running ``python -c code`` in
    the release's namespace; its log once it has succeeded."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "probe", "image": "signalstack/serving:dev", "imagePullPolicy": "Never",
                "command": ["python", "-c", code], "securityContext": RESTRICTED,
            }],
        },
    }  # fmt: skip
    cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--ignore-not-found", "--wait")
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))

    def done() -> str | None:
        phase = cluster.get("pod", name, "-n", NAMESPACE)["status"].get("phase")
        if phase == "Failed":
            logs = cluster.kubectl("logs", name, "-n", NAMESPACE, check=False)
            raise AssertionError(f"pod {name} failed:\n{logs.stdout}{logs.stderr}")
        return phase if phase == "Succeeded" else None

    cluster.wait(f"pod {name}", done, timeout=timeout)
    out = cluster.kubectl("logs", name, "-n", NAMESPACE).stdout
    cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false")
    return out


@contextlib.contextmanager
def port_forward(cluster: Cluster, target: str, port: int) -> Iterator[int]:
    """``kubectl port-forward TARGET :PORT`` as a user would; yields the local port."""
    proc = subprocess.Popen(
        [str(BIN / "kubectl"), "port-forward", "-n", NAMESPACE, target, f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert m, (
            f"port-forward said: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
        )
        yield int(m.group(1))
    finally:
        proc.terminate()
        proc.wait(10)


def _db_password(cluster: Cluster) -> str:
    import base64

    secret = cluster.get("secret", f"{RELEASE}-timescaledb", "-n", NAMESPACE)
    return base64.b64decode(secret["data"]["password"]).decode()


def _psql(cluster: Cluster, sql: str) -> str:
    """psql in the TimescaleDB pod (kubectl exec, through the kubelet)."""
    return cluster.kubectl(
        "exec", "-n", NAMESPACE, f"{RELEASE}-timescaledb-0", "--", "psql", "-U", "signalstack",
        "-d", "signalstack", "-At", "-c", sql,
    ).stdout  # fmt: skip


# ---- the cluster itself ------------------------------------------------------------------------


def test_nothing_addressed_to_the_cluster_can_leave_the_machine(cluster: Cluster) -> None:
    """The start script's guarantees, checked from outside it: the pod and Service ranges are
    unreachable beyond the bridge, the node's address is local, the node name resolves nowhere."""
    for addr in ("10.217.9.9", "10.218.0.1", "10.218.0.200"):
        got = subprocess.run(["ip", "-o", "route", "get", addr], capture_output=True, text=True)
        assert got.returncode != 0 or "unreachable" in got.stdout, (addr, got.stdout)
    on_bridge = subprocess.run(["ip", "-o", "route", "get", "10.217.0.50"], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
    assert f" dev {BRIDGE} " in on_bridge
    local = subprocess.run(["ip", "-o", "route", "get", NODE_IP], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert local.startswith("local ")
    node = cluster.get("node")["items"][0]
    assert {a["type"]: a["address"] for a in node["status"]["addresses"]}["InternalIP"] == NODE_IP
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.35.")


def test_every_profile_is_accepted_by_the_api_server(cluster: Cluster) -> None:
    """Each profile's objects pass the API server's own validation (server-side dry run):
    what offline schemas cannot check, such as label lengths and the CRDs' CEL rules."""
    cluster.kubectl("apply", "-f", str(Path(CHART).parents[1] / "manifests" / "namespace.yaml"))
    for ns in ("monitoring",):  # where the profiles put their dashboards
        cluster.kubectl("create", "namespace", ns, check=False)
    profiles = [[], ["-f", str(CHART / "values-kind.yaml")], ["-f", str(CI_VALUES)],
                ["-f", str(CHART / "values-production.yaml")]]  # fmt: skip
    profiles += [["-f", str(p)] for p in sorted((CHART / "ci").glob("*-values.yaml"))]
    for args in profiles:
        rendered = cluster.helm("template", RELEASE, CHART, "-n", NAMESPACE, *args).stdout
        done = cluster.kubectl("apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-",
                               stdin=rendered, check=False)  # fmt: skip
        assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"


def test_the_api_server_refuses_what_kubeconform_accepts(cluster: Cluster) -> None:
    """Deliberately broken inputs: a Kafka whose metrics config breaks a CEL rule of Strimzi's
    CRD, and a value giving the serving pods a label longer than Kubernetes allows. Both render
    and pass the offline checks; the API server refuses both, naming the field."""
    rendered = cluster.helm("template", RELEASE, CHART, "-n", NAMESPACE, "-f", CI_VALUES,
                            "-s", "charts/kafka/templates/kafka.yaml").stdout  # fmt: skip
    kafka = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Kafka")
    kafka["spec"]["kafka"]["metricsConfig"] = {"type": "jmxPrometheusExporter"}
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(kafka),
                           check=False)  # fmt: skip
    assert done.returncode != 0 and "valueFrom property is required" in done.stderr, done.stderr

    long = "x" * 64
    rendered = cluster.helm("template", RELEASE, CHART, "-n", NAMESPACE, "-f", CI_VALUES,
                            "--set", f"serving.podLabels.team={long}").stdout  # fmt: skip
    done = cluster.kubectl("apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-",
                           stdin=rendered, check=False)  # fmt: skip
    assert done.returncode != 0
    assert 'Deployment "signalstack-serving" is invalid' in done.stderr, done.stderr[-2000:]
    assert "must be no more than 63" in done.stderr, done.stderr[-2000:]


# ---- the release -------------------------------------------------------------------------------


def test_helm_install_of_the_ci_profile(cluster: Cluster, bundles: Path) -> None:
    """`helm install --wait`: every object accepted, every Deployment and the StatefulSet ready
    with our images, the migrations hook Job completed (helm fails the install otherwise), and
    `helm test` passes."""
    cluster.script("volumes", str(bundles))
    cluster.helm("install", RELEASE, CHART, "-n", NAMESPACE, "-f", CI_VALUES, "--wait",
                 "--timeout", "10m", timeout=900)  # fmt: skip
    # the chart's own test hooks (serving's health, TimescaleDB's tables), as a user runs them
    cluster.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "5m", timeout=400)
    # the Topic Operator's part
    topics = cluster.kubectl(
        "get", "kafkatopics", "-n", NAMESPACE, "-o", "jsonpath={.items[*].spec.topicName}"
    ).stdout.split()
    assert sorted(topics) == ["market.features", "market.predictions", "market.trades",
                              "market.trades.dlq"]  # fmt: skip
    run = [sys.executable, "-m", "signalstack.devstack", "topics", cluster.bootstrap,
           "--namespace", NAMESPACE]  # fmt: skip
    subprocess.run(run, check=True, env=cluster.env(), capture_output=True, timeout=120)
    for kind in ("deployment", "statefulset"):
        for obj in cluster.get(kind, "-n", NAMESPACE)["items"]:
            want = obj["spec"].get("replicas", 1)
            assert obj["status"].get("readyReplicas") == want, obj["metadata"]["name"]
            images = [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]]
            assert all(i.startswith("signalstack/") and i.endswith(":dev") for i in images)
    listed = _psql(
        cluster,
        "select tablename from pg_tables where schemaname='public' "
        "union select viewname from pg_views where schemaname='public'",
    )
    tables = set(listed.split())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["global"]["contracts"]["tables"]) <= tables
    hypertables = _psql(cluster, "select hypertable_name from timescaledb_information.hypertables")
    assert {"trades", "features", "predictions"} <= set(hypertables.split())


def test_serving_answers_through_its_service(cluster: Cluster, bundles: Path) -> None:
    """An inference through the serving Service, from a pod (cluster DNS, kube-proxy) and through
    `kubectl port-forward` as a user would, equal to the bundle's own prediction."""
    rows = features(3, NOW, seed=9, symbols=("AAPL",))
    body = {"inputs": [{"name": c, "shape": [3], "datatype": "FP64", "data": rows[c].tolist()}
                       for c in FEATURE_COLUMNS]}  # fmt: skip
    want = load_bundle(bundles / "regime").predict(rows)
    with port_forward(cluster, f"svc/{RELEASE}-serving", 8080) as port:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v2/health/ready", timeout=10).status_code == 200
        r = httpx.post(f"{url}/v2/models/regime/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(want.shape),
                                   want, rtol=0, atol=1e-9)  # fmt: skip
    code = (
        "import json, urllib.request as u\n"
        f"req = u.Request('http://{RELEASE}-serving:8080/v2/models/regime/infer', "
        f"data=json.dumps({body!r}).encode(), headers={{'Content-Type': 'application/json'}})\n"
        "try:\n    print(u.urlopen(req, timeout=30).read().decode())\n"
        "except u.HTTPError as e:\n    print(e.code, e.read().decode()); raise"
    )
    answer = json.loads(_pod_run(cluster, "infer-probe", code).strip().splitlines()[-1])
    got = np.asarray(answer["outputs"][0]["data"]).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_pods_have_no_default_route(cluster: Cluster) -> None:
    """Inside a running pod of ours: the bridge's subnet and the Service range, nothing else."""
    sock = Path(cluster.kubeconfig).parent / "containerd" / "containerd.sock"
    ls = ["ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "ls"]
    tasks = subprocess.run(ls, capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    pids = [int(t.split()[1]) for t in tasks if t.split()[2] == "RUNNING"]
    assert pids
    routes = subprocess.run(["nsenter", "-t", str(pids[0]), "-n", "ip", "route"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "default" not in routes, routes
    assert "10.218.0.0/24 via 10.217.0.1" in routes, routes


def test_the_stream_job_runs_on_kubernetes(cluster: Cluster) -> None:
    """The SparkApplication submitted as spark-operator would (`spark-submit --master k8s://…
    --deploy-mode cluster`, its image, arguments and config): the driver and an executor pod
    start on the kubelet, read market.trades (ingest fed it from the simulated Polygon) and
    write feature rows, which serving turns into predictions."""
    run = [sys.executable, "-m", "signalstack.devstack", "spark-submit", f"{RELEASE}-stream",
           "--namespace", NAMESPACE]  # fmt: skip
    done = subprocess.run(run, env=cluster.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    driver = done.stdout.split()[-1]

    def running(selector: str) -> list[str]:
        pods = cluster.get("pods", "-n", NAMESPACE, "-l", selector)["items"]
        return [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"]

    cluster.wait("the driver", lambda: running("spark-role=driver"), timeout=300)
    cluster.wait("an executor", lambda: running("spark-role=executor"), timeout=300)
    pod = cluster.get("pod", driver, "-n", NAMESPACE)
    assert pod["spec"]["containers"][0]["image"] == "signalstack/stream:dev"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "SparkApplication"
    for topic in ("market.features", "market.predictions"):
        cluster.wait(f"rows on {topic}", lambda t=topic: records_in_topic(cluster.bootstrap, t) > 0,
                     timeout=420)  # fmt: skip
    # and the sink wrote the ingested trades to TimescaleDB
    assert int(_psql(cluster, "select count(*) from trades")) > 0


def _job_from_cronjob(cluster: Cluster, name: str, cronjob: str, timeout: float) -> None:
    """`kubectl create job NAME --from=cronjob/CRONJOB`, then wait until it completes; its log
    when it fails."""
    cluster.kubectl("create", "job", "-n", NAMESPACE, name, f"--from=cronjob/{cronjob}")

    def finished() -> bool:
        conds = cluster.get("job", name, "-n", NAMESPACE)["status"].get("conditions", [])
        done = {c["type"] for c in conds if c["status"] == "True"}
        assert "Failed" not in done, cluster.kubectl("logs", "-n", NAMESPACE, f"job/{name}",
                                                     check=False).stdout[-3000:]  # fmt: skip
        return "Complete" in done

    cluster.wait(f"the Job {name}", finished, timeout=timeout)


def test_backfill_cronjob_runs_to_completion(cluster: Cluster) -> None:
    """`kubectl create job --from=cronjob/…`: the Job's pod runs the backfill image to the end,
    against the simulated Polygon's REST side, and records its run."""
    _job_from_cronjob(cluster, "backfill-now", f"{RELEASE}-backfill", timeout=600)
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", "job-name=backfill-now")["items"]
    assert pods[0]["spec"]["containers"][0]["image"] == "signalstack/backfill:dev"
    assert int(_psql(cluster, "select count(*) from backfill_runs")) >= 1


def test_drift_starts_exactly_one_retraining_job_within_its_role(cluster: Cluster) -> None:
    """Shifted feature rows in the cluster's TimescaleDB: the drift job (its own ServiceAccount,
    its Role) creates one retraining Job; a second pass while it is active creates none; the
    ServiceAccount is refused by RBAC for anything beyond its Role."""
    from signalstack.store.timescale import TimescaleStore

    with port_forward(cluster, f"svc/{RELEASE}-timescaledb", 5432) as port:
        dsn = f"postgresql://signalstack:{_db_password(cluster)}@127.0.0.1:{port}/signalstack"
        with TimescaleStore(dsn) as store:
            store.write_features(features(600, NOW, seed=3, shift=True, symbols=("AAPL", "MSFT")))
    _job_from_cronjob(cluster, "drift-now", f"{RELEASE}-drift", timeout=400)
    retrain = cluster.get("jobs", "-n", NAMESPACE, "-l", LABEL_SELECTOR)["items"]
    assert len(retrain) == 1, [j["metadata"]["name"] for j in retrain]
    assert int(_psql(cluster, "select count(*) from drift where psi >= 0.25")) > 0
    _job_from_cronjob(cluster, "drift-again", f"{RELEASE}-drift", timeout=400)
    assert len(cluster.get("jobs", "-n", NAMESPACE, "-l", LABEL_SELECTOR)["items"]) == 1

    sa = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-drift"
    asks = [("create", "jobs", NAMESPACE, "yes"), ("list", "jobs", NAMESPACE, "yes"),
            ("delete", "jobs", NAMESPACE, "no"), ("get", "secrets", NAMESPACE, "no"),
            ("create", "pods", NAMESPACE, "no"), ("create", "jobs", "default", "no"),
            ("create", "jobs", "kube-system", "no")]  # fmt: skip
    for verb, resource, ns, want in asks:
        got = cluster.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", sa,
                              check=False).stdout.strip()  # fmt: skip
        assert got == want, (verb, resource, ns, got)
    # and a real request with the ServiceAccount's own token
    token = cluster.kubectl("create", "token", f"{RELEASE}-drift", "-n", NAMESPACE).stdout.strip()
    # (a kubeconfig of its own: the admin's client certificate would win over the token)
    ca = cluster.kubeconfig.parent / "pki" / "ca.crt"
    as_drift = ["--kubeconfig=/dev/null", f"--server=https://{NODE_IP}:6443",
                f"--certificate-authority={ca}", f"--token={token}"]  # fmt: skip
    refused = cluster.kubectl(*as_drift, "get", "secrets", "-n", NAMESPACE, check=False)
    listed = cluster.kubectl(*as_drift, "get", "jobs", "-n", NAMESPACE, check=False)
    assert listed.returncode == 0, listed.stderr
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    # the retraining Job runs the 7 GB training image, not loaded here: it only had to exist
    cluster.kubectl("delete", "jobs", "-n", NAMESPACE, "-l", LABEL_SELECTOR, "--wait=false")


def test_network_policies_are_in_place(cluster: Cluster) -> None:
    """A default-deny policy and one per component. The CNI bridge plugin does not enforce
    them (docs/components/cluster.md); the objects are what a policy-capable CNI enforces."""
    names = {p["metadata"]["name"] for p in cluster.get("networkpolicy", "-n", NAMESPACE)["items"]}
    assert f"{RELEASE}-default-deny" in names or any("default-deny" in n for n in names), names
    for component in ("serving", "sink", "ingest", "timescaledb", "drift", "backfill"):
        assert any(component in n for n in names), (component, names)


def test_helm_upgrade_rolls_the_serving_deployment(cluster: Cluster) -> None:
    """A changed value rolls the Deployment: a new ReplicaSet, its pod ready, the old one gone."""
    dep = f"{RELEASE}-serving"

    def serving_pods() -> set[str]:
        pods = cluster.get("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=serving")
        return {p["metadata"]["name"] for p in pods["items"]}

    old = serving_pods()
    cluster.helm("upgrade", RELEASE, CHART, "-n", NAMESPACE, "-f", CI_VALUES, "--set",
                 "serving.podAnnotations.rollout=test", "--wait", "--timeout", "5m")  # fmt: skip
    cluster.kubectl("rollout", "status", f"deployment/{dep}", "-n", NAMESPACE, "--timeout=300s",
                    timeout=320)  # fmt: skip
    obj = cluster.get("deployment", dep, "-n", NAMESPACE)
    assert obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    after = cluster.wait(
        "the old serving pod gone",
        lambda: (now := serving_pods()) and not old & now and now - old,
        timeout=180,
    )
    assert after


def test_a_pod_that_cannot_start_fails_the_release(cluster: Cluster) -> None:
    """Deliberately broken: serving's image tag that was never built. `helm install --wait`
    fails, and the pod says why."""
    ns = "signalstack-broken"
    cluster.kubectl("create", "namespace", ns)
    try:
        others = ("kafka", "timescaledb", "ingest", "stream", "sink", "training", "backfill",
                  "drift", "monitoring")  # fmt: skip
        only_serving = [f"--set={c}.enabled=false" for c in others]
        done = cluster.helm(
            "install", "broken", CHART, "-n", ns, "-f", CI_VALUES, *only_serving,
            "--set", "serving.image.tag=never-built", "--set", "serving.modelDir.enabled=false",
            "--set", "global.networkPolicy.enabled=false", "--wait", "--timeout", "60s",
            check=False,
        )  # fmt: skip
        assert done.returncode != 0
        pods = cluster.get("pods", "-n", ns)["items"]
        reasons = {
            s["state"].get("waiting", {}).get("reason")
            for p in pods
            for s in p["status"].get("containerStatuses", [])
        }
        assert "ErrImageNeverPull" in reasons, reasons
    finally:
        cluster.helm("uninstall", "broken", "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_helm_uninstall_leaves_nothing(cluster: Cluster) -> None:
    """Everything the release made goes, the Spark pods with their SparkApplication; what stays
    is only what asks to (`helm.sh/resource-policy: keep`: the stream checkpoints' claim, the
    generated database password) and the claim `scripts/cluster.sh volumes` made."""
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m")
    kinds = cluster.kubectl("api-resources", "--namespaced", "--verbs=list", "-o", "name").stdout
    listable = ",".join(k for k in kinds.split() if k not in ("events", "events.events.k8s.io"))
    ours = (f"PersistentVolumeClaim/{RELEASE}-models", "ConfigMap/kube-root-ca.crt",
            "ServiceAccount/default")  # fmt: skip

    def leftovers() -> dict[str, str]:
        items = cluster.get(listable, "-n", NAMESPACE)["items"]
        return {
            f"{o['kind']}/{o['metadata']['name']}": (o["metadata"].get("annotations") or {}).get(
                "helm.sh/resource-policy", ""
            )
            for o in items
            if f"{o['kind']}/{o['metadata']['name']}" not in ours
        }

    kept = cluster.wait(
        "only the kept objects left",
        lambda: (left := leftovers()) and all(v == "keep" for v in left.values()) and left,
        timeout=300,
    )
    assert set(kept) == {f"PersistentVolumeClaim/{RELEASE}-stream-checkpoints",
                         f"Secret/{RELEASE}-timescaledb"}, kept  # fmt: skip


def test_down_leaves_nothing_behind(cluster: Cluster) -> None:
    """`scripts/cluster.sh down`: the host as it was before the session's `up`."""
    cluster.script("down", timeout=600)
    after = host_state()
    for key, was in cluster.before.items():
        assert after[key] == was, (key, sorted(set(after[key]) ^ set(was)))
