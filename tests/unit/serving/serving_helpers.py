"""Tiny trained models for the serving tests: simulated sessions → the local engine → a store
of feature rows; the three models fitted on them with the training code (synthetic labels:
the tests check what serving answers, not what the models learnt) and exported as bundles.

Built once per test session (:func:`trained`), on one thread."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import uvicorn

with warnings.catch_warnings():  # starlette's TestClient still runs on httpx (deprecated there)
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from signalstack.features.columns import FEATURE_COLUMNS
from signalstack.store.duckdb import DuckDBStore

__all__ = ["TestClient", "Trained", "copy_bundles", "feature_row", "running_server", "trained"]

SYMBOLS = ("AAA", "BBB")
SEQUENCE_LENGTH = 8
REGIMES = ("calm", "trending", "volatile")
DIRECTIONS = ("down", "flat", "up")


@dataclass
class Trained:
    """The store the features came from, the bundles' directory and the training-side models."""

    store_path: Path  # a DuckDB file holding the simulated sessions' bars and features
    bundles: Path  # regime/, direction/, anomaly/
    frame: pd.DataFrame  # every feature row, by (symbol, ts)
    xgb: Any
    iforest: Any
    lstm: Any
    threshold: float
    scalers: dict[str, Any]  # the fitted scalers, as training holds them (not the bundles')

    def bundle_dir(self, name: str) -> Path:
        return self.bundles / name


_LOCK = threading.Lock()
_TRAINED: Trained | None = None


def trained() -> Trained:
    """The session's tiny models (built on first use)."""
    global _TRAINED
    with _LOCK:
        if _TRAINED is None:
            _TRAINED = _build(Path(tempfile.mkdtemp(prefix="serving-tests-")))
        return _TRAINED


def _build(root: Path) -> Trained:
    import torch

    from signalstack.drift.psi import reference_distribution
    from signalstack.inference.bundle import BundleMeta
    from signalstack.inference.inputs import Scaler, input_spec, sequences
    from signalstack.training.export import export_iforest, export_lstm, export_xgboost
    from signalstack.training.frames import simulate_into_store
    from signalstack.training.lstm import LstmConfig, fit_lstm
    from signalstack.training.models import IForestConfig, XgbConfig, fit_iforest, fit_xgboost

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store_path = root / "features.duckdb"
        store = DuckDBStore(str(store_path))
        store.migrate()
        data = simulate_into_store(store, days=2, symbols=SYMBOLS, seed=11, trades_per_day=4_000)
        frame = store.training_frame(SYMBOLS, data.start, data.end, as_of=data.end)
        store.close()

        spec = input_spec(1)
        raw = spec.transform(frame)
        rng = np.random.default_rng(0)
        # labels that depend on the inputs, so the fitted models are not constant
        y = (np.nan_to_num(raw[:, 3]) > 0).astype(np.int64)
        y += np.nan_to_num(raw[:, 1]) > np.nanmedian(raw[:, 1])
        y = np.where(rng.random(len(y)) < 0.1, rng.integers(0, 3, len(y)), y)
        psi = reference_distribution(raw, list(spec.input_names)).to_dict()
        bundles = root / "bundles"

        scaler = Scaler.fit(raw)
        x = scaler.transform(raw)
        xgb = fit_xgboost(x, y, XgbConfig(n_estimators=12, max_depth=3, threads=1))
        export_xgboost(xgb, bundles / "regime", BundleMeta.for_model(
            name="regime", kind="xgboost", feature_set_version=1, scaler=scaler,
            classes=REGIMES, psi_reference=psi, training={"run_id": "test-regime"},
        ), x)  # fmt: skip

        flat = Scaler.fit(raw, indicators=False)
        xf = flat.transform(raw)
        forest = fit_iforest(xf, IForestConfig(n_estimators=25, seed=0))
        scores = -forest.score_samples(xf)
        threshold = float(np.quantile(scores, 0.9))
        export_iforest(forest, bundles / "anomaly", BundleMeta.for_model(
            name="anomaly", kind="iforest", feature_set_version=1, scaler=flat, classes=(),
            psi_reference=psi, training={"run_id": "test-anomaly", "score_threshold": threshold},
        ), xf)  # fmt: skip

        seq = sequences(x, session_keys(frame), SEQUENCE_LENGTH, pad=scaler.missing_row())
        lstm = fit_lstm(seq, y, LstmConfig(sequence_length=SEQUENCE_LENGTH, hidden_size=8,
                                           epochs=1, batch_size=128, seed=0))  # fmt: skip
        export_lstm(lstm, bundles / "direction", BundleMeta.for_model(
            name="direction", kind="lstm", feature_set_version=1, scaler=scaler,
            classes=DIRECTIONS, psi_reference=psi, training={"run_id": "test-direction"},
            sequence_length=SEQUENCE_LENGTH,
        ), seq[:200])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    scalers = {"regime": scaler, "direction": scaler, "anomaly": flat}
    return Trained(store_path, bundles, frame, xgb, forest, lstm, threshold, scalers)


def session_keys(frame: pd.DataFrame) -> Any:
    """One key per row: its symbol and session (the New York date)."""
    day = frame["ts"].dt.tz_convert("America/New_York").dt.date.astype(str)
    return (frame["symbol"].astype(str) + "/" + day).to_numpy()


def copy_bundles(dst: Path, names: tuple[str, ...] = ("regime", "direction", "anomaly")) -> Path:
    """A SERVING_MODEL_DIR of its own (tests move bundles in and out of it)."""
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copytree(trained().bundle_dir(n), dst / n)
    return dst


def feature_row(row: pd.Series) -> dict[str, float | None]:
    """A stored feature row → the /predict JSON object (NaN → null)."""
    return {c: (None if pd.isna(row[c]) else float(row[c])) for c in FEATURE_COLUMNS}


_HAMMER = r"""
import json, sys, httpx
url, limit, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
with httpx.Client(base_url=url, timeout=30) as c:
    for i in range(limit):
        name = names[i % len(names)]
        r = c.post(f"/predict/{name}", json={"symbol": "AAA"})
        print(json.dumps([name, r.status_code, r.json().get("model_version"), r.text[:200]]),
              flush=True)
"""


def hammer(url: str, limit: int, names: tuple[str, ...]) -> subprocess.Popen[str]:
    """A client in its own process (as real clients are) posting /predict/<name> for symbol
    AAA in a loop, ``limit`` requests at most; stdout: one JSON line per answer, [name,
    status, model_version, body]. Stop it early with terminate()."""
    return subprocess.Popen(
        [sys.executable, "-c", _HAMMER, url, str(limit), ",".join(names)],
        stdout=subprocess.PIPE,
        text=True,
    )


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free loopback port (a thread); yields its URL."""
    import socket

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (with proto 0 every
    # response waits ~40 ms for the client's delayed ACK between its header and body writes)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(600):  # bounded: 60 s
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited at start-up")
            threading.Event().wait(0.1)
        else:
            raise TimeoutError("uvicorn did not start within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
