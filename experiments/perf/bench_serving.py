"""Serving benchmark: end-to-end and ONNX-only latency, bundle size, serving-process RSS.

    .venv/bin/python experiments/perf/bench_serving.py [--days 60] [--models tcn] [--calls 1000]
                                                       [--reuse]

Trains tiny runs with the DEFAULT feature set (34 features, 2957-bar warm-up) on bundled BTCUSDT
(one epoch of 3 batches: weights do not change latency), exports each, then measures every bundle
in a fresh interpreter that imports only the serving path (so RSS is what a server would hold):

- e2e: ``Predictor.predict`` on raw candles as read from the bundled file (min_history + 24
  bars, UTC timestamps, float64: the fast path of clean canonical candles; features, scaling,
  ONNX, signal), one request at a time, each call a different newest bar (a stream over the
  last 200 bars), warm, ``--calls`` calls -> p50/p99 ms
- e2e_checked: the same candles through the full parse + quality-check path
  (``predict_prepared(prepare_candles(candles))``, what non-canonical input such as JSON
  strings takes) -> p50/p99 ms
- http: the same through the FastAPI app (TestClient, JSON in/out) -> p50/p99 ms
- onnx: ``session.run`` alone on one prepared window -> p50/p99 ms
- parity: max |predictor - predictions.parquet| over 48 test timestamps (the predictor sees only
  min_history bars, so recursive EMA features differ from training's by < their 1e-6 tolerance)
- fast_vs_full: max |window features of the fast path - FeatureSet.compute on all history_bars|
  over the same 48 timestamps (windowed transforms computed on their tail only)
- rss: peak resident memory of that serving process (MB)

``--reuse`` measures the bundles a previous run left in outputs/bench_serving/ again (no
training), for repeated measurements. Results: printed, and written to
outputs/bench_serving/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "outputs" / "bench_serving"
TORCH_SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "logger=none"]

CHILD = r"""
import json, os, resource, sys, time
import numpy as np, pandas as pd
from fastapi.testclient import TestClient
from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.serving.app import create_app
from cryptoforecast.serving.predictor import Predictor

bundle, run, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Predictor.from_bundle(bundle)
raw = read_candle_file(bundled_path("BTCUSDT"))
n = p.min_history + 24
stream = [raw.iloc[len(raw) - n - k : len(raw) - k] for k in range(200)]  # 200 newest bars
candles = stream[0]

def pct(fn, n=200):
    for i in range(10):
        fn(i)
    t = []
    for i in range(n):
        s = time.perf_counter(); fn(i); t.append((time.perf_counter() - s) * 1e3)
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
            "max_ms": float(np.max(t)), "calls": n}

e2e = pct(lambda i: p.predict(stream[i % 200]), n=calls)
e2e_checked = pct(lambda i: p.predict_prepared(p.prepare_candles(stream[i % 200])), n=calls // 4)
frame = p.prepare_candles(candles)
x = p._window(frame)[None].astype(p.input_dtype)
onnx_only = pct(lambda i: p.session.run(["y_hat"], {"x": x}), n=2000)
client = TestClient(create_app(p))
body = candles.assign(timestamp=candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
body = {"candles": body.to_dict(orient="records")}
http = pct(lambda i: client.post("/predict", json=body), n=100)
pred = pd.read_parquet(f"{run}/predictions.parquet")
col = "p_up" if "p_up" in pred.columns else "y_pred"
worst = fast_vs_full = 0.0
for ts, y in pred[["timestamp", col]].iloc[-48:].itertuples(index=False):
    seen = raw[raw["timestamp"] <= ts].tail(p.min_history)
    out = p.predict(seen)
    worst = max(worst, abs(out["forecasts"][0][col] - y))
    frame = p.prepare_candles(seen)
    full = p.feature_set.compute(frame).to_numpy()[-p.lookback:]
    fast_vs_full = max(fast_vs_full, float(np.max(np.abs(p.window_features(frame) - full))))
heavy = [m for m in ("torch", "lightning", "lightgbm") if m in sys.modules]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"e2e": e2e, "e2e_checked": e2e_checked, "onnx": onnx_only, "http": http,
                  "parity_max_abs": worst, "fast_vs_full_max_abs": fast_vs_full,
                  "rss_mb": rss, "heavy_imports": heavy, "n_features": len(p.feature_set.names()),
                  "min_history": p.min_history, "load_avg": os.getloadavg()}))
"""


def train_and_export(model: str, days: int) -> tuple[Path, Path]:
    """One tiny run with the default features, exported; returns (run, bundle)."""
    run = OUT / model
    shutil.rmtree(run, ignore_errors=True)
    extra = ["+model.module.n_estimators=200"] if model == "lightgbm" else TORCH_SHORT
    # an ensemble's base models keep their own defaults (attention_lstm, tcn, lightgbm)
    cmd = [
        sys.executable,
        "train.py",
        f"model={model}",
        f"data.days={days}",
        "features=default",
        "features.lookback=64",
        f"hydra.run.dir={run}",
        *extra,
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    bundle = run / "bundle"
    subprocess.run(
        [sys.executable, "-m", "cryptoforecast.cli", "export", str(run), "--out", str(bundle)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return run, bundle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--models", default="attention_lstm,tcn,lightgbm,ensemble")
    parser.add_argument("--calls", type=int, default=1000, help="timed end-to-end requests")
    parser.add_argument("--reuse", action="store_true", help="measure existing bundles again")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for model in args.models.split(","):
        start = time.perf_counter()
        run, bundle = OUT / model, OUT / model / "bundle"
        if not (args.reuse and (bundle / "manifest.json").is_file()):
            run, bundle = train_and_export(model, args.days)
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(bundle), str(run), str(args.calls)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["bundle_kb"] = round(sum(f.stat().st_size for f in bundle.iterdir()) / 1024, 1)
        row["model_onnx_kb"] = round((bundle / "model.onnx").stat().st_size / 1024, 1)
        row["setup_seconds"] = round(time.perf_counter() - start, 1)
        results[model] = row
        print(model, json.dumps(row))
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'model':16s} {'e2e p50/p99 ms':>16s} {'checked p50/p99':>16s} {'http p50/p99':>14s} "
          f"{'onnx p50/p99 ms':>16s} {'bundle KB':>10s} {'onnx KB':>8s} {'RSS MB':>7s} "
          f"{'parity':>9s} {'fast-full':>9s}")  # fmt: skip
    for model, r in results.items():
        print(
            f"{model:16s} {r['e2e']['p50_ms']:7.2f}/{r['e2e']['p99_ms']:<8.2f} "
            f"{r['e2e_checked']['p50_ms']:7.2f}/{r['e2e_checked']['p99_ms']:<8.2f} "
            f"{r['http']['p50_ms']:6.2f}/{r['http']['p99_ms']:<7.2f} "
            f"{r['onnx']['p50_ms']:7.3f}/{r['onnx']['p99_ms']:<8.3f} {r['bundle_kb']:10.1f} "
            f"{r['model_onnx_kb']:8.1f} {r['rss_mb']:7.0f} {r['parity_max_abs']:9.2e} "
            f"{r['fast_vs_full_max_abs']:9.2e}"
        )
    loads = [r["load_avg"][0] for r in results.values()]
    print(f"1-minute load average during the runs: {min(loads):.2f}..{max(loads):.2f}")


if __name__ == "__main__":
    main()
