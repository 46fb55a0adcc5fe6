"""Monitoring: PSI, rolling accuracy/MAE vs persistence, scoring only known labels, alerts."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.data.schema import DataError
from cryptoforecast.serving.monitor import (
    PSI_EPS,
    AlertEvent,
    MonitorSpec,
    detect_alerts,
    drift_status,
    monitor_decisions,
    psi,
    psi_bins,
    rolling_psi,
    write_alerts,
)

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _candles(log_returns: np.ndarray) -> pd.DataFrame:
    """Canonical-style candles whose close follows the given log returns (bar 0 at 100)."""
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    index = pd.date_range(T0, periods=len(close), freq="1h", name="timestamp")
    return pd.DataFrame({"close": close}, index=index)


def _decisions(y_pred: list[float] | np.ndarray, first: int = 0) -> pd.DataFrame:
    ts = pd.date_range(T0 + first * HOUR, periods=len(y_pred), freq="1h")
    return pd.DataFrame(
        {"timestamp": ts, "symbol": "BTCUSDT", "fold": 0, "horizon": 1, "y_pred": y_pred}
    )


# ------------------------------------------------------------------------------------ PSI


def test_psi_is_near_zero_on_the_training_distribution_and_large_when_shifted() -> None:
    rng = np.random.default_rng(0)
    train = rng.standard_normal((20_000, 3))
    edges = np.nanquantile(train, np.linspace(0.0, 1.0, 11), axis=0).T  # as the bundle does
    same = psi(edges, train)
    assert same.shape == (3,) and (same < 1e-3).all()
    fresh = psi(edges, rng.standard_normal((5_000, 3)))
    assert (fresh < PSI_EPS * 100 + 0.01).all() and drift_status(float(fresh.max())) == "stable"
    shifted = psi(edges, rng.standard_normal((5_000, 3)) + np.array([0.0, 0.5, 2.0]))
    assert shifted[0] < 0.01 < 0.1 < shifted[1] < shifted[2]
    assert drift_status(float(shifted[2])) == "significant"


def test_psi_hand_computed() -> None:
    edges = np.arange(11.0)  # deciles 0..10: bins (-inf,1], (1,2], ..., (9,+inf)
    # 20 values: 4 in the first bin (1.0 sits on its closed right edge), 2 in each of bins
    # 2..9, none above 9
    values = [0.5, -3.0, 1.0, 0.9] + [b + 0.5 for b in range(1, 9) for _ in range(2)]
    expected = (0.2 - 0.1) * math.log(0.2 / 0.1) + (PSI_EPS - 0.1) * math.log(PSI_EPS / 0.1)
    assert psi(edges, values) == pytest.approx(expected, rel=1e-12)
    assert psi(edges, [*values, np.nan]) == pytest.approx(expected, rel=1e-12)  # NaN ignored
    assert math.isnan(psi(edges, [np.nan]))


def test_tied_edges_give_honest_expected_shares() -> None:
    cuts, shares = psi_bins(np.arange(11.0))
    assert list(cuts) == list(range(1, 10)) and np.allclose(shares, 0.1)
    # a constant feature: everything at or below the value, nothing above
    cuts, shares = psi_bins(np.full(11, 3.0))
    assert list(cuts) == [3.0] and list(shares) == [1.0, 0.0]
    assert psi(np.full(11, 3.0), np.full(50, 3.0)) == pytest.approx(0.0)
    assert psi(np.full(11, 3.0), np.full(50, 4.0)) > 10.0
    # a 0/1 flag, 70 % zeros: quantiles 0..0.7 are 0, 0.8..1 are 1
    flag = np.array([0.0] * 8 + [1.0] * 3)
    cuts, shares = psi_bins(flag)
    assert list(cuts) == [0.0, 1.0] and np.allclose(shares, [0.7, 0.3, 0.0])
    live = np.array([0.0] * 70 + [1.0] * 30)
    assert psi(flag, live) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="11 finite non-decreasing"):
        psi_bins(np.arange(11.0)[::-1])


def test_rolling_psi_equals_psi_of_each_trailing_window() -> None:
    rng = np.random.default_rng(1)
    edges = np.nanquantile(rng.standard_normal((500, 2)), np.linspace(0, 1, 11), axis=0).T
    live = rng.standard_normal((60, 2)) + np.linspace(0, 2, 60)[:, None]
    live[5, 0] = np.nan
    out = rolling_psi(edges, live, window=20, min_periods=10)
    for r in range(60):
        chunk = live[max(0, r - 19) : r + 1]
        for f in range(2):
            if np.isfinite(chunk[:, f]).sum() < 10:
                assert np.isnan(out[r, f])
            else:
                assert out[r, f] == pytest.approx(psi(edges[f], chunk[:, f]), rel=1e-12)


# ------------------------------------------------------------------------ rolling accuracy

# log returns into bars 1..9; label of a decision at d (lag 1, h 1) = R[d + 2 - 1]
R = np.array([0.01, 0.02, -0.01, 0.0, 0.03, -0.02, 0.01, -0.01, 0.02])
Y_PRED = [0.01, 0.01, -0.01, 0.01, 0.01, -0.02, -0.01, 0.0]  # decisions at bars 0..7


def test_rolling_accuracy_and_mae_hand_computed() -> None:
    spec = MonitorSpec(window=3, min_periods=2, drift_window=3, drift_min_periods=1)
    report = monitor_decisions(_decisions(Y_PRED), _candles(R), execution_lag=1, spec=spec)
    scores = report.scores
    np.testing.assert_allclose(
        scores["y_true"], [0.02, -0.01, 0.0, 0.03, -0.02, 0.01, -0.01, 0.02]
    )
    assert (scores["known_at"] == scores["timestamp"] + 3 * HOUR).all()  # close of bar d+2
    np.testing.assert_array_equal(scores["hit"], [1, 0, np.nan, 1, 0, 0, 1, 0])

    frame = report.frame
    assert (frame["as_of"] == frame["timestamp"] + HOUR).all()
    # row t knows the decisions d <= t - 2; window = the last 3 of them; needs 2
    np.testing.assert_array_equal(frame["n_scored"], [0, 0, 1, 2, 3, 3, 3, 3])
    np.testing.assert_allclose(frame["da"][3:], [0.5, 0.5, 0.5, 0.5, 1 / 3])
    mae = [0.015, 0.04 / 3, 0.05 / 3, 0.02, 0.08 / 3]
    persistence = [0.015, 0.01, 0.04 / 3, 0.05 / 3, 0.02]
    np.testing.assert_allclose(frame["mae"][3:], mae)
    np.testing.assert_allclose(frame["mae_persistence"][3:], persistence)
    np.testing.assert_allclose(frame["mae_ratio"][3:], np.array(mae) / persistence)
    assert frame[["da", "mae", "mae_ratio"]].iloc[:3].isna().all().all()
    assert frame["max_psi"].isna().all()  # no features given: drift off

    # the summary is as of the last candle's close (bar 9): it holds every decision's label,
    # those of the last two decisions included, though no decision row came after them
    s = report.summary
    assert s["as_of"] == (T0 + 10 * HOUR).isoformat()
    assert s["last_decision_as_of"] == (T0 + 8 * HOUR).isoformat()
    assert s["n_scored"] == 8 and s["n_pending"] == 0 and s["n_unscorable"] == 0
    assert s["directional_accuracy"] == pytest.approx(1 / 3)  # decisions 5, 6, 7
    assert s["mae_ratio"] == pytest.approx((0.03 + 0.0 + 0.02) / (0.01 + 0.01 + 0.02))
    assert s["overall_directional_accuracy"] == pytest.approx(3 / 7)  # decisions 0..7
    assert s["overall_mae_ratio"] == pytest.approx(0.14 / 0.12)
    # one candle less: the last decision's label is past the data, so it alone is pending
    short = monitor_decisions(_decisions(Y_PRED), _candles(R[:-1]), execution_lag=1, spec=spec)
    assert short.summary["n_scored"] == 7 and short.summary["n_pending"] == 1
    # the breach rows: DA 0.5 is not below 0.5 until row 7; ratios > 1.05 from row 4
    kinds = [(a.kind, a.status, a.time) for a in report.alerts]
    assert kinds == [
        ("mae_ratio", "breach", T0 + 5 * HOUR),
        ("directional_accuracy", "breach", T0 + 8 * HOUR),
    ]


def test_classifier_decisions_monitor_direction_only() -> None:
    dec = _decisions([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    dec["p_up"] = [0.7, 0.4, 0.3, 0.6, 0.8, 0.2, 0.1, 0.5]
    spec = MonitorSpec(window=3, min_periods=2, drift_window=3, drift_min_periods=1)
    report = monitor_decisions(dec, _candles(R), execution_lag=1, spec=spec)
    np.testing.assert_array_equal(report.scores["hit"], [1, 1, np.nan, 1, 0, 0, 1, 0])
    assert report.frame["mae_ratio"].isna().all() and report.summary["task"] == "classification"
    assert report.frame["da"].iloc[3] == pytest.approx(1.0)


def test_a_decision_is_scored_only_once_its_label_is_known() -> None:
    """Change a candle at bar k: monitor rows before k are unchanged (and rows after move)."""
    rng = np.random.default_rng(2)
    n = 400
    r = rng.normal(0, 0.01, n - 1)
    decisions = _decisions(rng.normal(0, 0.01, 300), first=60)
    spec = MonitorSpec(window=40, min_periods=10, drift_window=40, drift_min_periods=10)
    train = rng.normal(0, 0.01, (2000, 2))
    stats = {
        "feature_names": ["ret", "ret_mean5"],
        "decile_edges": np.quantile(train, np.linspace(0, 1, 11), axis=0).T.tolist(),
    }

    def run(candles: pd.DataFrame, dec: pd.DataFrame) -> pd.DataFrame:
        ret = np.log(candles["close"]).diff()
        feats = pd.DataFrame({"ret": ret, "ret_mean5": ret.rolling(5).mean()})
        rep = monitor_decisions(dec, candles, 1, spec, features=feats, training_stats=stats)
        return rep.frame

    full = _candles(r)
    base = run(full, decisions)
    k = 200  # bar whose close changes; decisions up to k - 2 (lag 1, h 1) need bars <= k - 1
    bumped = full.copy()
    bumped.iloc[k, 0] *= 1.05
    changed = run(bumped, decisions)
    before = base["timestamp"] < full.index[k]
    pd.testing.assert_frame_equal(base[before], changed[before])
    assert not base[~before][["da", "mae", "max_psi"]].equals(
        changed[~before][["da", "mae", "max_psi"]]
    )
    # truncation: the candles and decisions up to bar k give the same first rows
    cut = run(full.iloc[: k + 1], decisions[decisions["timestamp"] <= full.index[k]])
    pd.testing.assert_frame_equal(cut, base.iloc[: len(cut)])


def test_gap_labels_are_never_scored() -> None:
    candles = _candles(R).drop(T0 + 5 * HOUR)  # a missing bar
    dec = _decisions(Y_PRED).drop(index=5)  # no decision at the missing bar
    spec = MonitorSpec(window=3, min_periods=1, drift_window=3, drift_min_periods=1)
    report = monitor_decisions(dec, candles, execution_lag=1, spec=spec, step=HOUR)
    y = report.scores.set_index("timestamp")["y_true"]
    assert y.loc[[T0 + 3 * HOUR, T0 + 4 * HOUR]].isna().all()  # labels across the gap
    assert report.summary["n_unscorable"] == 2


# --------------------------------------------------------------------------------- alerts


def test_alert_fires_once_on_crossing_and_once_on_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    times = pd.date_range(T0, periods=9, freq="1h")
    da = [np.nan, 0.55, 0.49, 0.45, 0.51, 0.40, 0.53, 0.49, np.nan]
    frame = pd.DataFrame(
        {
            "timestamp": times,
            "as_of": times + HOUR,
            "n_scored": 100.0,
            "da": da,
            "mae_ratio": 0.9,
            "max_psi": np.nan,
        }
    )
    psi_frame = pd.DataFrame(index=pd.DatetimeIndex(times, name="timestamp"))
    with caplog.at_level(logging.WARNING, logger="cryptoforecast.serving.monitor"):
        events = detect_alerts(frame, psi_frame, MonitorSpec())
    # 0.49 breaches; 0.51 is inside the 0.02 hysteresis (no event); 0.53 recovers; 0.49 again
    got = [(e.status, e.time, e.value) for e in events]
    assert got == [
        ("breach", times[2] + HOUR, 0.49),
        ("recovered", times[6] + HOUR, 0.53),
        ("breach", times[7] + HOUR, 0.49),
    ]
    assert {e.kind for e in events} == {"directional_accuracy"}
    assert events[1].threshold == pytest.approx(0.52)
    assert len([r for r in caplog.records if "directional_accuracy breach" in r.message]) == 2

    path = tmp_path / "alerts.jsonl"
    write_alerts(events[:1], path)
    write_alerts(events[1:], path)  # appends
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [ln["status"] for ln in lines] == ["breach", "recovered", "breach"]
    assert lines[0] == {
        "time": (times[2] + HOUR).isoformat(),
        "kind": "directional_accuracy",
        "status": "breach",
        "value": 0.49,
        "threshold": 0.5,
        "detail": "directional accuracy 0.490 over 100 scored decisions below 0.5",
    }


def test_planted_drift_alerts_name_the_feature_and_save_writes_the_files(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    n = 600
    candles = _candles(rng.normal(0, 0.01, n - 1))
    stable = rng.standard_normal(n)
    moved = rng.standard_normal(n) + np.where(np.arange(n) >= 400, 3.0, 0.0)  # shift at 400
    feats = pd.DataFrame({"calm": stable, "moved": moved}, index=candles.index)
    train = rng.standard_normal((3000, 2))
    stats = {
        "feature_names": ["calm", "moved"],
        "decile_edges": np.quantile(train, np.linspace(0, 1, 11), axis=0).T.tolist(),
    }
    spec = MonitorSpec(window=50, min_periods=20)  # drift: the default 168-row window
    dec = _decisions(rng.normal(0, 0.01, n - 2))
    report = monitor_decisions(dec, candles, 1, spec, features=feats, training_stats=stats)
    drift = [e for e in report.alerts if e.kind == "drift"]
    assert len(drift) == 1 and drift[0].status == "breach"
    assert T0 + 401 * HOUR <= drift[0].time <= T0 + 460 * HOUR  # ~30 shifted rows of 168
    assert report.psi["calm"].max() < 0.2 and report.psi["moved"].iloc[:400].max() < 0.2
    assert drift[0].detail.startswith("PSI above 0.25: moved (") and "calm" not in drift[0].detail
    assert report.summary["worst_features"][0]["feature"] == "moved"
    assert report.summary["drift_status"] == "significant"
    assert "drift" in report.summary["alerts"]["active"]
    assert report.frame["worst_feature"].iloc[-1] == "moved"

    written = report.save(tmp_path, plot=False)
    assert {p.name for p in written} == {
        "monitor.parquet",
        "scores.parquet",
        "psi.parquet",
        "alerts.jsonl",
        "monitor_summary.json",
    }
    saved = json.loads((tmp_path / "monitor_summary.json").read_text())
    assert saved["alerts"]["total"] == len(report.alerts)
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == [e.kind for e in report.alerts]
    report.save(tmp_path, plot=False)  # a second save rewrites, never duplicates
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == len(lines)
    back = pd.read_parquet(tmp_path / "monitor.parquet")
    pd.testing.assert_frame_equal(back, report.frame, check_dtype=False)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors() -> None:
    candles = _candles(R)
    with pytest.raises(DataError, match="missing column.*y_pred"):
        monitor_decisions(_decisions(Y_PRED).drop(columns="y_pred"), candles, 1)
    with pytest.raises(DataError, match="row 0: no candle at its timestamp"):
        monitor_decisions(_decisions(Y_PRED, first=-3), candles, 1)
    dup = pd.concat([_decisions(Y_PRED), _decisions(Y_PRED[:1])])
    with pytest.raises(DataError, match="duplicate timestamp 2026-01-01 00:00:00"):
        monitor_decisions(dup, candles, 1)
    multi = pd.concat([_decisions(Y_PRED), _decisions(Y_PRED).assign(horizon=4)])
    with pytest.raises(DataError, match=r"need one horizon, found \[1, 4\]"):
        monitor_decisions(multi, candles, 1)
    assert monitor_decisions(multi, candles, 1, horizon=1).summary["n_decisions"] == 8
    with pytest.raises(DataError, match="monitor.min_periods must be an integer in 1..10"):
        MonitorSpec(window=10, min_periods=20)
    with pytest.raises(DataError, match="da_floor"):
        MonitorSpec(da_floor=1.5)
    event = AlertEvent(T0, "drift", "breach", 0.3, 0.25, "x")
    assert event.to_dict()["time"] == "2026-01-01T00:00:00+00:00"
