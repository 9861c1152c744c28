"""What the drift tests share: feature rows drawn from a known distribution, small real bundles
fitted and exported by ``signalstack.training`` on such rows, and a recorder standing in for
the Kubernetes API server (list and create Jobs; the live API server comes with a later issue).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from signalstack.drift.psi import reference_distribution
from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.inference.bundle import BundleMeta
from signalstack.inference.inputs import Scaler, input_spec

SYMBOLS = ("AAA", "BBB")
FSV = 1
SCHEMA = Path(__file__).with_name("schemas") / "job_batch_v1.json"


def features(
    n_per_symbol: int,
    end: pd.Timestamp,
    *,
    seed: int,
    shift: bool = False,
    fsv: int = FSV,
    symbols: tuple[str, ...] = SYMBOLS,
) -> pd.DataFrame:
    """Feature rows, one a minute per symbol, the last at ``end``, drawn independently from a
    fixed distribution; ``shift``: price momentum × 4 and volumes × 20 (a market gone wild)."""
    rng = np.random.default_rng(seed)
    n = n_per_symbol * len(symbols)
    price = 100 * np.exp(rng.normal(0, 0.2, n))
    mom, vol = (4.0, 20.0) if shift else (1.0, 1.0)
    cols = {
        "vwap_15m": price,
        "vwap_5m": price * np.exp(rng.normal(0, 0.001, n)),
        "realized_vol_5m": np.exp(rng.normal(np.log(0.001), 0.3, n)),
        "realized_vol_15m": np.exp(rng.normal(np.log(0.001), 0.25, n)),
        "price_momentum_1m": rng.normal(0, 0.001 * mom, n),
        "price_momentum_5m": rng.normal(0, 0.0022 * mom, n),
        "volume_5m": np.exp(rng.normal(np.log(50_000 * vol), 0.5, n)),
        "volume_ratio": np.exp(rng.normal(np.log(vol), 0.3, n)),
        "trade_count_1m": rng.poisson(60 * vol, n).astype(float),
        "avg_trade_size_1m": np.exp(rng.normal(np.log(150), 0.3, n)),
    }
    ts = pd.date_range(end=end, periods=n_per_symbol, freq="1min", tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": np.repeat(symbols, n_per_symbol),
            "ts": np.tile(ts, len(symbols)),
            **{c: cols[c] for c in FEATURE_COLUMNS},
            "feature_set_version": fsv,
        }
    )
    return frame


def export_bundles(root: Path, training_rows: pd.DataFrame, seed: int = 0) -> Path:
    """The regime (XGBoost) and anomaly (Isolation Forest) models fitted on ``training_rows``
    and a small untrained direction LSTM, exported as bundles ``root/<name>`` the way training
    does, each with the reference distribution of its training inputs."""
    import xgboost
    from sklearn.ensemble import IsolationForest

    from signalstack.training import export
    from signalstack.training.labels import REGIMES

    spec = input_spec(FSV)
    x = spec.transform(training_rows)
    ref = reference_distribution(x, list(spec.input_names)).to_dict()
    rng = np.random.default_rng(seed)
    training = {"run_id": "test-run", "data_source": "synthetic", "seed": seed}

    scaler = Scaler.fit(x)
    scaled = scaler.transform(x)
    y = rng.integers(0, len(REGIMES), len(x))
    clf = xgboost.XGBClassifier(
        n_estimators=4, max_depth=2, objective="multi:softprob", n_jobs=1, random_state=seed
    )
    clf.fit(scaled, y)
    meta = BundleMeta.for_model(
        name="regime", kind="xgboost", feature_set_version=FSV, scaler=scaler,
        classes=REGIMES, psi_reference=ref, training=training,
    )  # fmt: skip
    export.export_xgboost(clf, root / "regime", meta, scaled[:200])

    iscaler = Scaler.fit(x, indicators=False)
    iscaled = iscaler.transform(x)
    forest = IsolationForest(n_estimators=10, random_state=seed).fit(iscaled)
    meta = BundleMeta.for_model(
        name="anomaly", kind="iforest", feature_set_version=FSV, scaler=iscaler, classes=(),
        psi_reference=ref, training={**training, "score_threshold": 0.6},
    )  # fmt: skip
    export.export_iforest(forest, root / "anomaly", meta, iscaled[:200])

    import torch

    from signalstack.inference.inputs import sequences
    from signalstack.training.labels import DIRECTIONS
    from signalstack.training.lstm import DirectionLstm

    torch.manual_seed(seed)
    lstm = DirectionLstm(scaler.width, len(DIRECTIONS), hidden_size=4).eval()  # untrained
    meta = BundleMeta.for_model(
        name="direction", kind="lstm", feature_set_version=FSV, scaler=scaler,
        classes=DIRECTIONS, psi_reference=ref, training=training, sequence_length=5,
    )  # fmt: skip
    seq = sequences(scaled[:200], training_rows["symbol"].to_numpy()[:200], 5,
                    pad=scaler.missing_row())  # fmt: skip
    export.export_lstm(lstm, root / "direction", meta, seq)
    return root


def register_champion(tracking_uri: str, bundles: Path, name: str, rows: pd.DataFrame) -> str:
    """Log the ``regime`` bundle as a candidate of registered model ``name`` on the MLflow
    server at ``tracking_uri`` and point its ``champion`` alias at it; its version. (The global
    tracking URI is left unset afterwards.)"""
    import mlflow as ml

    from signalstack.inference.bundle import load_bundle
    from signalstack.training.registry import ModelRegistry

    ml.set_tracking_uri(tracking_uri)
    ml.set_experiment(f"drift-{name}")
    try:
        registry = ModelRegistry(tracking_uri)
        x = rows[list(FEATURE_COLUMNS)]
        with ml.start_run():
            version = registry.log_candidate(
                name, bundles / "regime", x, load_bundle(bundles / "regime").predict(x)
            )
        registry.client.set_registered_model_alias(name, "champion", version)
    finally:
        ml.set_tracking_uri(None)  # type: ignore[arg-type]
    return version


# --- the Kubernetes API server's Job endpoints, recorded ------------------------------------


@dataclass
class FakeJobsApi:
    """Answers ``GET/POST /apis/batch/v1/namespaces/<ns>/jobs`` like the API server (a list
    filtered by ``labelSelector`` equality terms; a create answered 201 with the Job echoed,
    uid and creation time added) and records every request."""

    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, body)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # namespace → jobs
    port: int = 0
    fail: list[int] = field(default_factory=list)  # statuses to answer the next requests with

    @property
    def created(self) -> list[dict[str, Any]]:
        return [body for method, _, body in self.requests if method == "POST"]

    def finish(self, name: str, condition: str = "Complete") -> None:
        for jobs in self.jobs.values():
            for job in jobs:
                if job["metadata"]["name"] == name:
                    job["status"] = {"conditions": [{"type": condition, "status": "True"}]}

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "t", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "t", "user": {"token": "test-token"}}],
                    "contexts": [
                        {
                            "name": "t",
                            "context": {"cluster": "t", "user": "t", "namespace": namespace},
                        }
                    ],
                    "current-context": "t",
                }
            )
        )
        return path


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@contextmanager
def fake_jobs_api() -> Iterator[FakeJobsApi]:
    api = FakeJobsApi()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int) -> None:
            reason = {403: "Forbidden", 503: "ServiceUnavailable"}.get(code, "Error")
            message = f"jobs.batch is {reason.lower()} (test)"
            self._reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": message, "reason": reason, "code": code})  # fmt: skip

        def _namespace(self) -> str | None:
            parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
            if (
                parts[:3] == ["apis", "batch", "v1"]
                and len(parts) == 6
                and parts[3] == "namespaces"
                and parts[5] == "jobs"
            ):
                return parts[4]
            return None

        def do_GET(self) -> None:
            ns = self._namespace()
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            with lock:
                api.requests.append(("GET", self.path, None))
                if api.fail:
                    self._status(api.fail.pop(0))
                    return
                if ns is None:
                    self._reply(404, {"kind": "Status", "code": 404})
                    return
                selector = query.get("labelSelector", [""])[0]
                items = [
                    j
                    for j in api.jobs.get(ns, [])
                    if _matches(j["metadata"].get("labels", {}), selector)
                ]
                self._reply(
                    200,
                    {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items},
                )

        def do_POST(self) -> None:
            ns = self._namespace()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                api.requests.append(("POST", self.path, body))
                if api.fail:
                    self._status(api.fail.pop(0))
                    return
                if ns is None:
                    self._reply(404, {"kind": "Status", "code": 404})
                    return
                job = json.loads(json.dumps(body))
                job["metadata"].update(namespace=ns, uid=f"uid-{len(api.requests)}",
                                       creationTimestamp="2026-01-01T00:00:00Z")  # fmt: skip
                job.setdefault("status", {})
                api.jobs.setdefault(ns, []).append(job)
                self._reply(201, job)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
