"""Model export formats: load time and per-row latency of each serving candidate, one process.

Models of realistic size on synthetic stored features of feature set 1 → its 12 model inputs →
``inputs.Scaler``: 24 columns (values + missing indicators) for XGBoost and the LSTM, 12 (values
alone) for the Isolation Forest, as training scales them:

- regime, XGBoost (200 trees of depth 4 × 3 classes): the native booster JSON run by xgboost
  (``Booster.inplace_predict``, nthread 1) vs ONNX (onnxmltools) run by ONNX Runtime; baseline
  ``XGBClassifier.predict_proba`` (the training-side call).
- anomaly, Isolation Forest (200 trees, 256 samples each): scikit-learn (``score_samples`` of
  the joblib-loaded model: the baseline and a candidate) vs skl2onnx's ONNX vs our compact ONNX
  (``export.iforest_to_onnx``: one TreeEnsembleRegressor), both run by ONNX Runtime.
- direction, LSTM (hidden 32, L = 30, width 24): ONNX Runtime vs torch (the reference; one
  thread as one serving worker has).

Per candidate: ``load_ms`` (best of --loads: model file on disk → ready to predict),
``import_s`` (the runtime's import in a fresh interpreter: what a serving process pays once at
start-up), ``single_row_us`` p50/p99 over --calls calls of one row (the API predicts one symbol at
a time), ``batch_256_us_per_row`` (best of --batch-calls calls of 256 rows), ``file_bytes``, and
the max abs difference from the training-side model (``parity_max_abs_diff``). Every ONNX /
booster candidate runs on one thread (``intra_op_num_threads = 1`` / ``nthread = 1``), as each
serving worker does. Candidates are measured interleaved, round by round, so background load on
the shared machine hits each one alike. ``bundle_*``: the chosen formats through
``Bundle.predict`` (stored features → inputs → scaler → model) for one row: the whole model
path of one API request.

    .venv/bin/python bench/export.py [--calls 5000] [--batch-calls 200] [--loads 20] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
import xgboost as xgb
from sklearn.ensemble import IsolationForest

from signalstack.inference.bundle import Bundle, BundleMeta, load_bundle
from signalstack.inference.inputs import Scaler, input_spec, sequences
from signalstack.training.export import (
    export_iforest,
    export_lstm,
    export_xgboost,
    iforest_to_onnx,
    lstm_to_onnx,
    xgboost_to_json,
    xgboost_to_onnx,
)
from signalstack.training.lstm import DirectionLstm

ROOT = Path(__file__).resolve().parents[1]
F4 = npt.NDArray[np.float32]
F8 = npt.NDArray[np.float64]
Predict = Callable[[F4], Any]


@dataclass(frozen=True)
class Data:
    features: npt.NDArray[np.float64]  # stored feature rows (columns of feature set 1)
    scaler: Scaler  # with missing indicators: XGBoost, LSTM
    x: F4
    plain_scaler: Scaler  # without: the Isolation Forest
    x_plain: F4
    y: npt.NDArray[np.int64]


def ort_session(data: bytes | str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def ort_predict(sess: ort.InferenceSession, output: str) -> Predict:
    name = sess.get_inputs()[0].name
    return lambda x: sess.run([output], {name: x})[0]


def synthetic(n: int, seed: int) -> Data:
    """Stored feature rows of feature set 1 (plausible scales, 3% missing), the model inputs,
    the scalers (with missing indicators for XGBoost and the LSTM, without for the Isolation
    Forest, as training fits them), and 3-class labels that depend on a few inputs."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 10))
    feats = np.column_stack(
        [
            100 * np.exp(0.002 * z[:, 0]), 100 * np.exp(0.002 * z[:, 1]),
            1e-3 * np.abs(1 + 0.3 * z[:, 2]), 1e-3 * np.abs(1 + 0.2 * z[:, 3]),
            1e-3 * z[:, 4], 2e-3 * z[:, 5], np.exp(8 + z[:, 6]), np.exp(0.5 * z[:, 7]),
            rng.poisson(20, n), np.exp(4 + 0.5 * z[:, 9]),
        ]
    )  # fmt: skip
    feats[rng.random(feats.shape) < 0.03] = np.nan
    inputs = input_spec(1).transform(feats)
    scaler = Scaler.fit(inputs)
    x = scaler.transform(inputs)
    plain = Scaler.fit(inputs, indicators=False)
    signal = x[:, 0] + 0.5 * x[:, 3] - 0.3 * x[:, 5] + rng.normal(scale=0.8, size=n)
    y = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3])).astype(np.int64)
    return Data(feats, scaler, x, plain, plain.transform(inputs), y)


def time_load(load: Callable[[], Any], loads: int) -> float:
    best = float("inf")
    for _ in range(loads):
        t0 = time.perf_counter()
        load()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def import_seconds(module: str) -> float:
    """The import in a fresh interpreter (best of 3)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(3)
    ]  # fmt: skip
    return round(min(runs), 3)


def latency(
    candidates: dict[str, Predict], single: F4, batch: F4, calls: int, batch_calls: int
) -> dict[str, dict[str, float]]:
    """Interleaved rounds: each candidate gets a slice of calls in turn."""
    for fn in candidates.values():  # warm-up (first-call allocations)
        for _ in range(20):
            fn(single)
        fn(batch)
    singles: dict[str, list[float]] = {k: [] for k in candidates}
    batches: dict[str, list[float]] = {k: [] for k in candidates}
    rounds = 10
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples = singles[name]
            for _ in range(max(1, calls // rounds)):
                t0 = time.perf_counter()
                fn(single)
                samples.append(time.perf_counter() - t0)
            for _ in range(max(1, batch_calls // rounds)):
                t0 = time.perf_counter()
                fn(batch)
                batches[name].append(time.perf_counter() - t0)
    out = {}
    for name in candidates:
        s = np.asarray(singles[name]) * 1e6
        out[name] = {
            "single_row_us_p50": round(float(np.percentile(s, 50)), 1),
            "single_row_us_p99": round(float(np.percentile(s, 99)), 1),
            "batch_256_us_per_row": round(min(batches[name]) * 1e6 / len(batch), 2),
        }
        print(f"  {name:>22}: one row p50 {out[name]['single_row_us_p50']:>8.1f} µs, p99 "
              f"{out[name]['single_row_us_p99']:>8.1f} µs; batch of 256 "
              f"{out[name]['batch_256_us_per_row']:>7.2f} µs/row")  # fmt: skip
    return out


def max_diff(a: Any, b: Any) -> float:
    return float(
        np.max(np.abs(np.asarray(a, np.float64).ravel() - np.asarray(b, np.float64).ravel()))
    )


def merge(
    lat: dict[str, dict[str, float]], extra: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    return {k: {**lat[k], **extra.get(k, {})} for k in lat}


def bench_xgboost(args: argparse.Namespace, tmp: Path, x: F4, y: Any) -> dict[str, Any]:
    print(f"XGBoost: {args.trees} trees of depth 4 × 3 classes on {x.shape[1]} inputs")
    model = xgb.XGBClassifier(
        n_estimators=args.trees, max_depth=4, learning_rate=0.1, n_jobs=1, random_state=0
    ).fit(x, y)
    json_path, onnx_path = tmp / "xgb.json", tmp / "xgb.onnx"
    json_path.write_bytes(xgboost_to_json(model))
    onnx_path.write_bytes(xgboost_to_onnx(model, x.shape[1]))

    def load_booster() -> xgb.Booster:
        b = xgb.Booster(params={"nthread": 1})
        b.load_model(bytearray(json_path.read_bytes()))
        return b

    booster = load_booster()
    sess = ort_session(str(onnx_path))
    check = x[: args.check_rows]
    ref = model.predict_proba(check)
    model.set_params(n_jobs=1)
    cands: dict[str, Predict] = {
        "onnx": ort_predict(sess, "probabilities"),
        "xgboost-json": lambda a: booster.inplace_predict(a),
        "baseline_predict_proba": model.predict_proba,
    }
    extra = {
        "onnx": {
            "load_ms": round(time_load(lambda: ort_session(str(onnx_path)), args.loads), 2),
            "file_bytes": onnx_path.stat().st_size,
            "parity_max_abs_diff": max_diff(cands["onnx"](check), ref),
            "runtime": "onnxruntime",
        },
        "xgboost-json": {
            "load_ms": round(time_load(load_booster, args.loads), 2),
            "file_bytes": json_path.stat().st_size,
            "parity_max_abs_diff": max_diff(cands["xgboost-json"](check), ref),
            "runtime": "xgboost",
        },
    }
    return merge(latency(cands, x[:1], x[:256], args.calls, args.batch_calls), extra)


def bench_iforest(args: argparse.Namespace, tmp: Path, x: F4) -> dict[str, Any]:
    print(f"Isolation Forest: {args.trees} trees on {x.shape[1]} inputs")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    model = IsolationForest(n_estimators=args.trees, random_state=0).fit(x)
    pkl, compact, skl = tmp / "if.joblib", tmp / "if.onnx", tmp / "if_skl2onnx.onnx"
    joblib.dump(model, pkl)
    compact.write_bytes(iforest_to_onnx(model, x.shape[1]))
    proto = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    skl.write_bytes(proto.SerializeToString())
    loaded = joblib.load(pkl)
    s_compact, s_skl = ort_session(str(compact)), ort_session(str(skl))
    check = x[: args.check_rows]
    ref = -model.score_samples(check)
    skl_fn = ort_predict(s_skl, "scores")  # decision_function = score_samples - offset_
    offset = float(model.offset_)
    cands: dict[str, Predict] = {
        "onnx-compact": ort_predict(s_compact, "score"),
        "onnx-skl2onnx": skl_fn,
        "sklearn-joblib": loaded.score_samples,
    }
    extra = {
        "onnx-compact": {
            "load_ms": round(time_load(lambda: ort_session(str(compact)), args.loads), 2),
            "file_bytes": compact.stat().st_size,
            "parity_max_abs_diff": max_diff(cands["onnx-compact"](check), ref),
            "graph_nodes": 4,
            "runtime": "onnxruntime",
        },
        "onnx-skl2onnx": {
            "load_ms": round(time_load(lambda: ort_session(str(skl)), max(1, args.loads // 4)), 2),
            "file_bytes": skl.stat().st_size,
            "parity_max_abs_diff": max_diff(-(skl_fn(check).ravel() + offset), ref),
            "graph_nodes": len(proto.graph.node),
            "runtime": "onnxruntime",
        },
        "sklearn-joblib": {
            "load_ms": round(time_load(lambda: joblib.load(pkl), args.loads), 2),
            "file_bytes": pkl.stat().st_size,
            "parity_max_abs_diff": 0.0,
            "runtime": "scikit-learn",
        },
    }
    return merge(latency(cands, x[:1], x[:256], args.calls, args.batch_calls), extra)


def bench_lstm(args: argparse.Namespace, tmp: Path, seq: F4) -> dict[str, Any]:
    length, width = seq.shape[1:]
    print(f"LSTM: hidden 32, L = {length}, width {width}")
    torch.manual_seed(0)
    model = DirectionLstm(width, 3, hidden_size=32).eval()
    onnx_path, pt = tmp / "lstm.onnx", tmp / "lstm.pt"
    onnx_path.write_bytes(lstm_to_onnx(model, length))
    torch.save(model.state_dict(), pt)

    def load_torch() -> DirectionLstm:
        m = DirectionLstm(width, 3, hidden_size=32)
        m.load_state_dict(torch.load(pt, weights_only=True))
        return m.eval()

    sess = ort_session(str(onnx_path))

    def torch_fn(a: F4) -> Any:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(a)), dim=-1).numpy()

    check = seq[: args.check_rows]
    cands: dict[str, Predict] = {"onnx": ort_predict(sess, "probabilities"), "torch": torch_fn}
    extra = {
        "onnx": {
            "load_ms": round(time_load(lambda: ort_session(str(onnx_path)), args.loads), 2),
            "file_bytes": onnx_path.stat().st_size,
            "parity_max_abs_diff": max_diff(cands["onnx"](check), torch_fn(check)),
            "runtime": "onnxruntime",
        },
        "torch": {
            "load_ms": round(time_load(load_torch, args.loads), 2),
            "file_bytes": pt.stat().st_size,
            "parity_max_abs_diff": 0.0,
            "runtime": "torch",
        },
    }
    return merge(latency(cands, seq[:1], seq[:256], args.calls, args.batch_calls), extra)


def bench_bundles(args: argparse.Namespace, tmp: Path, data: Data, seq: F4) -> dict[str, Any]:
    """The chosen formats through Bundle.predict for one stored-feature row: the whole model path
    of one request (inputs → scaler → model; for the LSTM its session's last L rows)."""
    feats, x, y = data.features, data.x, data.y

    def meta(kind: str, name: str, classes: tuple[str, ...], length: int | None) -> BundleMeta:
        return BundleMeta.for_model(
            name=name, kind=kind, feature_set_version=1, classes=classes,
            scaler=data.plain_scaler if kind == "iforest" else data.scaler,
            psi_reference={}, training={"bench": True}, sequence_length=length,
        )  # fmt: skip

    xg = xgb.XGBClassifier(n_estimators=args.trees, max_depth=4, n_jobs=1, random_state=0).fit(x, y)
    forest = IsolationForest(n_estimators=args.trees, random_state=0).fit(data.x_plain)
    torch.manual_seed(0)
    lstm = DirectionLstm(x.shape[1], 3).eval()
    check = x[: args.check_rows]
    bundles = {
        "regime": export_xgboost(xg, tmp / "regime", meta("xgboost", "regime",
                                 ("calm", "trending", "volatile"), None), check),
        "anomaly": export_iforest(forest, tmp / "anomaly", meta("iforest", "anomaly", (), None),
                                  data.x_plain[: args.check_rows]),
        "direction": export_lstm(lstm, tmp / "direction", meta("lstm", "direction",
                                 ("down", "flat", "up"), seq.shape[1]), seq[: args.check_rows]),
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, b in bundles.items():
        rows = feats[-seq.shape[1] :] if b.meta.kind == "lstm" else feats[-1:]

        def request(b: Bundle = b, rows: F8 = rows) -> Any:
            # the API's one prediction: the latest row (the LSTM: its last L rows → one sequence)
            return b.predict_last(rows)

        samples = []
        for _ in range(20):
            request()
        for _ in range(max(100, args.calls // 5)):
            t0 = time.perf_counter()
            r = request()
            samples.append(time.perf_counter() - t0)
        s = np.asarray(samples) * 1e6
        out[name] = {
            "format": b.meta.format,
            "rows_in": len(rows),
            "path": "Bundle.predict_last: inputs, scaler, (the last sequence), model",
            "predict_us_p50": round(float(np.percentile(s, 50)), 1),
            "predict_us_p99": round(float(np.percentile(s, 99)), 1),
            "load_ms": round(time_load(partial(load_bundle, tmp / name), 5), 2),
        }
        o = out[name]
        print(
            f"  bundle {name:>9} ({b.meta.format}): predict p50 {o['predict_us_p50']} µs, "
            f"p99 {o['predict_us_p99']} µs, load {o['load_ms']} ms; output {r.shape}"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000, help="training rows")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--length", type=int, default=30, help="LSTM sequence length")
    ap.add_argument("--calls", type=int, default=5000, help="single-row calls per candidate")
    ap.add_argument("--batch-calls", type=int, default=200, help="256-row calls per candidate")
    ap.add_argument("--loads", type=int, default=20)
    ap.add_argument("--check-rows", type=int, default=2000, help="rows of the parity figures")
    ap.add_argument("--quick", action="store_true", help="sanity run: few calls, few loads")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export.json")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.batch_calls, args.loads, args.rows = 500, 20, 3, 5000
    torch.set_num_threads(1)  # one serving worker: one thread, as the ONNX sessions
    load_before = os.getloadavg()[0]
    data = synthetic(args.rows, seed=0)
    x, y = data.x, data.y
    seq = sequences(x, np.arange(len(x)) // 390, args.length)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as d:
        tmp = Path(d)
        result: dict[str, Any] = {
            "regime_xgboost": bench_xgboost(args, tmp, x, y),
            "anomaly_iforest": bench_iforest(args, tmp, data.x_plain),
            "direction_lstm": bench_lstm(args, tmp, seq),
        }
        result["bundles"] = bench_bundles(args, tmp, data, seq)
    imports = {
        m: import_seconds(m) for m in ("onnxruntime", "xgboost", "sklearn.ensemble", "torch")
    }
    print("import in a fresh interpreter (s):", imports)
    result.update(
        {
            "import_s": imports,
            "choice": {
                "regime_xgboost": "onnx",
                "anomaly_iforest": "onnx (compact: one TreeEnsembleRegressor)",
                "direction_lstm": "onnx",
                "why": "see docs/ARCHITECTURE.md 'Model export formats'",
            },
            "budget": "API p99 <= 3 ms at 1,000 req/s on one worker (XGBoost, IForest); LSTM 5 ms",
            "models": {
                "xgboost": f"{args.trees} trees, depth 4, 3 classes, {x.shape[1]} inputs",
                "iforest": f"{args.trees} trees, max_samples 256",
                "lstm": f"hidden 32, 1 layer, L={args.length}, width {x.shape[1]}",
            },
            "threads": 1,
            "calls": {"single": args.calls, "batch_256": args.batch_calls, "loads": args.loads},
            "quick": args.quick,
            "versions": {
                "onnxruntime": ort.__version__,
                "xgboost": xgb.__version__,
                "torch": torch.__version__,
                "sklearn": __import__("sklearn").__version__,
            },
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "date": dt.date.today().isoformat(),
            "load_average_before": load_before,
            "load_average": os.getloadavg()[0],
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
