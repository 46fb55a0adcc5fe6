"""Ablation runner pieces with fixed numbers: wording, claim verdicts, alignment, study files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.evaluation.stats import diebold_mariano
from cryptoforecast.pipelines.ablation import (
    Claim,
    FoldMismatchError,
    StudyConfigError,
    align_frames,
    claim_verdict,
    conclusion,
    fmt_p,
    load_study_file,
    rmse_change_interval,
)
from cryptoforecast.pipelines.ablation_report import (
    marker,
    update_readme,
)

CLAIM = Claim(text="wavelet denoising cuts RMSE by 15%", rmse_change_pct=-15.0, arm="wavelet")


@pytest.mark.parametrize(
    ("p", "text"),
    [(0.41, "0.41"), (0.0499, "0.0499"), (0.05, "0.05"), (0.009, "0.009"), (0.0004, "< 0.001")],
)
def test_fmt_p_never_rounds_across_the_threshold(p: float, text: str) -> None:
    assert fmt_p(p) == text


def test_conclusion_follows_the_p_value_rule() -> None:
    assert conclusion("wavelet", "no_wavelet", -1.234, -0.8, 0.41) == (
        "no significant difference between `wavelet` and `no_wavelet` (RMSE -1.23 %, DM p = 0.41)"
    )
    # a large point estimate is still "no significant difference" when p >= 0.05
    assert conclusion("a", "b", -20.0, -1.9, 0.05).startswith("no significant difference")
    assert conclusion("a", "b", -0.4, -2.1, 0.0499) == (
        "`a` is significantly better than `b` (RMSE -0.40 %, DM p = 0.0499)"
    )
    assert conclusion("a", "b", 0.3, 3.5, 0.0004) == (
        "`a` is significantly worse than `b` (RMSE +0.30 %, DM p < 0.001)"
    )
    assert "identical forecasts" in conclusion("a", "b", 0.0, float("nan"), 1.0)


@pytest.mark.parametrize(
    ("observed", "ci", "stat", "p", "verdict"),
    [
        (-0.02, (-0.21, 0.16), -0.2, 0.83, "is refuted"),  # interval excludes -15 %
        (-14.0, (-19.0, -9.0), -4.0, 0.0001, "is confirmed:"),  # -15 % inside, significant
        (-25.0, (-30.0, -20.0), -6.0, 0.0001, "is confirmed, the change is even larger"),
        (-8.0, (-20.0, 5.0), -1.0, 0.3, "is not confirmed"),  # -15 % inside, not significant
        (3.0, (1.0, 5.0), 3.0, 0.001, "is refuted"),  # significantly worse
    ],
)
def test_claim_verdict(
    observed: float, ci: tuple[float, float], stat: float, p: float, verdict: str
) -> None:
    text = claim_verdict(CLAIM, observed, ci, stat, p)
    assert text.startswith('The claim "wavelet denoising cuts RMSE by 15%" (-15.0 % RMSE)')
    assert verdict in text and f"{observed:+.2f} %" in text


def test_claim_without_a_test_says_so() -> None:
    assert "cannot be tested" in claim_verdict(CLAIM, 0.0, None, float("nan"), 1.0)


def test_rmse_interval_excludes_zero_exactly_when_dm_rejects() -> None:
    rejected = []
    for shift in (0.0, 0.01, 0.015, 0.025, -0.1, 0.1):  # p from about 0.65 down to 1e-16
        rng = np.random.default_rng(3)
        e_ref = rng.normal(0.0, 0.01, 400)
        e_model = e_ref * (1.0 + shift) + rng.normal(0.0, 0.002, 400)
        dm = diebold_mariano(e_model, e_ref)
        ci = rmse_change_interval(dm, float(np.mean(e_ref**2)))
        assert ci is not None and ci[0] < ci[1]
        assert (ci[0] > 0 or ci[1] < 0) == (dm.p_value < 0.05)
        point = 100.0 * (np.sqrt(np.mean(e_model**2) / np.mean(e_ref**2)) - 1.0)
        assert ci[0] < point < ci[1]
        rejected.append(dm.p_value < 0.05)
    assert any(rejected) and not all(rejected)  # both sides of the rule are exercised


def _frame(stamps: pd.DatetimeIndex, y: np.ndarray | None = None) -> pd.DataFrame:
    n = len(stamps)
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "symbol": "BTCUSDT",
            "fold": 0,
            "horizon": 1,
            "y_true": np.arange(n, dtype=float) if y is None else y,
            "y_pred": 0.0,
            "base_close": 100.0,
        }
    )


def test_align_frames_exact_and_intersection() -> None:
    stamps = pd.date_range("2026-01-01", periods=48, freq="h", tz="UTC")
    a, b = _frame(stamps), _frame(stamps[2:]).assign(y_true=np.arange(2, 48, dtype=float))
    frames = {"base/seed0": a, "treat/seed0": b}
    with pytest.raises(FoldMismatchError) as err:
        align_frames("s", frames, "exact")
    assert "46 rows are common" in str(err.value)
    assert "base/seed0: 48 rows, 2 not in every arm (first: BTCUSDT h1 2026-01-01 00:00" in str(
        err.value
    )
    assert "treat/seed0: 46 rows, 0 not in every arm" in str(err.value)
    out, dropped = align_frames("s", frames, "intersection")
    assert dropped == {"base/seed0": 2, "treat/seed0": 0}
    assert out["base/seed0"]["timestamp"].equals(out["treat/seed0"]["timestamp"])
    same, none = align_frames("s", {"x": a, "y": a.copy()}, "exact")
    assert none == {"x": 0, "y": 0} and len(same["y"]) == 48


def test_align_frames_refuses_different_targets_on_the_same_rows() -> None:
    stamps = pd.date_range("2026-01-01", periods=24, freq="h", tz="UTC")
    with pytest.raises(ValueError, match="y_true of y differs from x"):
        align_frames("s", {"x": _frame(stamps), "y": _frame(stamps, np.zeros(24))}, "exact")


def test_update_readme_replaces_only_between_markers(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# Title\n\nintro\n\n## tail\n")
    update_readme(path, "wavelet", "first version")
    update_readme(path, "models", "models text")
    update_readme(path, "wavelet", "second version")
    text = path.read_text()
    assert text.startswith("# Title\n\nintro\n\n## tail\n")
    assert "first version" not in text and text.count(marker("wavelet", False)) == 1
    assert text.index("second version") < text.index("models text")
    path.write_text(text.replace(marker("models", True), ""))
    with pytest.raises(ValueError, match="markers of study 'models' are broken"):
        update_readme(path, "models", "x")


def test_study_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("studies:\n  w:\n    question: q\n    arms: {a: [], b: []}\n    typo: 1\n")
    with pytest.raises(
        StudyConfigError, match=r"s\.yaml: studies\.w: unknown key\(s\) \['typo'\]"
    ):
        load_study_file(path)
    path.write_text(
        "studies:\n  w:\n    question: q\n    arms:\n      a: []\n      b:\n        - x: 1\n"
    )
    with pytest.raises(StudyConfigError, match=r"studies\.w\.arms\.b must be a list of Hydra"):
        load_study_file(path)
    path.write_text("studies:\n  w:\n    question: q\n    arms: {a: []}\n")
    with pytest.raises(StudyConfigError, match="at least two arm"):
        load_study_file(path)
    path.write_text(
        "studies:\n  w:\n    question: q\n    arms: {a: [], b: [], c: []}\n"
        "    claim: {text: t, rmse_change_pct: -15}\n"
    )
    with pytest.raises(StudyConfigError, match=r"claim\.arm must name one treatment arm"):
        load_study_file(path)


def test_the_shipped_study_file_parses() -> None:
    from cryptoforecast.paths import PROJECT_ROOT

    spec = load_study_file(PROJECT_ROOT / "experiments/ablations/studies.yaml")
    assert {"wavelet_lightgbm", "wavelet_attention_lstm", "sentiment", "onchain"} <= set(
        spec.studies
    )
    wavelet = spec.studies["wavelet_lightgbm"]
    assert wavelet.baseline == "no_wavelet" and wavelet.claim is not None
    assert wavelet.claim.arm == "wavelet" and "data.end=2026-02-20" in spec.shared
    assert spec.studies["assets"].evaluate_symbol == "BTCUSDT"
