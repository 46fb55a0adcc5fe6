"""Text sentiment: VADER on the bundled sample texts, hourly aggregation, bar alignment, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoforecast.cli import main
from cryptoforecast.data.schema import DataError
from cryptoforecast.features.sentiment import (
    SentimentScorer,
    TextSentiment,
    TransformersScorer,
    VaderScorer,
    hourly_sentiment,
    label_roles,
    make_scorer,
    probabilities_to_score,
    read_hourly,
    read_texts,
    write_hourly,
)
from cryptoforecast.paths import BUNDLED_DATA_DIR

SAMPLE = BUNDLED_DATA_DIR / "sample_texts.csv"
SAMPLE_HOURLY = BUNDLED_DATA_DIR / "sample_sentiment_hourly.csv"


@pytest.fixture(scope="module")
def texts() -> pd.DataFrame:
    return read_texts(SAMPLE)


@pytest.fixture(scope="module")
def vader() -> VaderScorer:
    return VaderScorer()


def _bars(start: str, n: int, freq: str = "h") -> pd.DataFrame:
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="timestamp")
    return pd.DataFrame({c: 1.0 for c in ("open", "high", "low", "close", "volume")}, index=index)


def test_vader_signs_on_hand_picked_sample_texts(texts: pd.DataFrame, vader: VaderScorer) -> None:
    assert isinstance(vader, SentimentScorer)
    scores = dict(zip(texts["text"], vader.score(list(texts["text"])), strict=True))
    positive = [
        "Bitcoin breaks $71,000, a new all-time high, bulls celebrate",
        "Happy to see BTC at a record high, congratulations to the long-term holders",
        "Dencun upgrade goes live on Ethereum mainnet, successful launch",
        "ETF inflows hit a record $1 billion in a single day, amazing demand",
    ]
    negative = [
        "Hotter than expected CPI sends crypto lower, risk assets under pressure",
        "Crypto lender under investigation for fraud, withdrawals frozen",
        "Brutal wick, overleveraged traders got destroyed",
        "Regulators warn investors about scams using fake ETF websites",
    ]
    assert all(scores[t] > 0.3 for t in positive), {t: scores[t] for t in positive}
    assert all(scores[t] < -0.3 for t in negative), {t: scores[t] for t in negative}
    values = np.array(list(scores.values()))
    assert values.min() >= -1 and values.max() <= 1 and len(values) == 60


def test_hourly_aggregation_counts(texts: pd.DataFrame, vader: VaderScorer) -> None:
    hourly = hourly_sentiment(texts, vader)
    assert list(hourly.columns) == ["timestamp", "sentiment", "count"]
    assert hourly["count"].sum() == 60 and len(hourly) == 49
    assert hourly["timestamp"].is_monotonic_increasing
    cpi = hourly.set_index("timestamp").loc[pd.Timestamp("2024-03-12 08:00", tz="UTC")]
    in_hour = texts[texts["timestamp"].dt.floor("h") == pd.Timestamp("2024-03-12 08:00", tz="UTC")]
    assert cpi["count"] == 4 == len(in_hour)
    assert cpi["sentiment"] == pytest.approx(vader.score(list(in_hour["text"])).mean())
    four = hourly_sentiment(texts, vader, interval="4h")
    assert four["count"].sum() == 60 and (four["timestamp"].dt.hour % 4 == 0).all()


def test_bundled_hourly_sample_matches_a_fresh_scoring(
    texts: pd.DataFrame, vader: VaderScorer
) -> None:
    fresh = hourly_sentiment(texts, vader).set_index("timestamp")
    bundled = read_hourly(SAMPLE_HOURLY)
    assert bundled.index.equals(pd.DatetimeIndex(fresh.index))
    np.testing.assert_allclose(bundled["sentiment"], fresh["sentiment"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(bundled["count"], fresh["count"])


def test_a_text_never_affects_an_earlier_bar(
    tmp_path: Path, texts: pd.DataFrame, vader: VaderScorer
) -> None:
    bars = _bars("2024-03-10 00:00", 24 * 6)
    base, extra = tmp_path / "base.csv", tmp_path / "extra.csv"
    write_hourly(hourly_sentiment(texts, vader), base)
    added = pd.DataFrame(
        {"timestamp": [pd.Timestamp("2024-03-12 10:30", tz="UTC")], "text": ["Terrible crash"]}
    )
    write_hourly(hourly_sentiment(pd.concat([texts, added]), vader), extra)
    for lag in (0, 4):
        a = TextSentiment(str(base), lags_hours=[lag])(bars)
        b = TextSentiment(str(extra), lags_hours=[lag])(bars)
        changed = (a != b).any(axis=1)
        # the 10:00 bar contains 10:30 and closes at 11:00: the earliest bar that may see it
        first = pd.Timestamp("2024-03-12 10:00", tz="UTC") + pd.Timedelta(hours=lag)
        assert changed.idxmax() == first and not changed[:first].iloc[:-1].any()
        assert b.loc[first].iloc[1] == 1 and b.loc[first].iloc[0] < 0  # one new negative text


def test_text_sentiment_fill_and_longer_bars(tmp_path: Path, vader: VaderScorer) -> None:
    texts = pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(
                ["2024-03-11 04:10", "2024-03-11 05:20", "2024-03-11 05:40", "2024-03-11 09:00"],
                tz="UTC",
            ),
            "text": ["great gains", "awful losses", "good news", "terrible hack"],
        }
    )
    path = tmp_path / "hourly.csv"
    hourly = hourly_sentiment(texts, vader)
    write_hourly(hourly, path)
    scores = vader.score(list(texts["text"]))
    one = TextSentiment(str(path))(_bars("2024-03-11 03:00", 4))
    assert one["text_count"].tolist() == [0, 1, 2, 0]
    assert one["text_sent"].iloc[0] == 0.0 and one["text_sent"].iloc[1] == pytest.approx(scores[0])
    nan = TextSentiment(str(path), fill="nan")(_bars("2024-03-11 03:00", 4))
    assert np.isnan(nan["text_sent"].iloc[0]) and nan["text_count"].iloc[0] == 0
    four = TextSentiment(str(path), interval="4h")(_bars("2024-03-11 00:00", 3, "4h"))
    assert four["text_count"].tolist() == [0, 3, 1]  # bar 04:00-08:00 holds three texts
    assert four["text_sent"].iloc[1] == pytest.approx(scores[:3].mean())
    assert TextSentiment(str(path), lags_hours=[0, 2]).names() == [
        "text_sent",
        "text_count",
        "text_sent_lag2",
        "text_count_lag2",
    ]


def test_read_texts_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,body\n2024-01-01T00:00:00Z,hi\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['timestamp', 'text'\]"):
        read_texts(path)
    path.write_text("timestamp,text\n2024-01-01T00:00:00Z,hi\nyesterday noon,ok\n")
    with pytest.raises(DataError, match=r"t.csv: data row 2: cannot parse timestamp 'yesterday"):
        read_texts(path)
    path.write_text('timestamp,text\n2024-01-01T00:00:00Z,hi\n2024-01-01T01:00:00Z," "\n')
    with pytest.raises(DataError, match="data row 2: empty text"):
        read_texts(path)


def test_read_hourly_errors(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("timestamp,sentiment,count\n2024-01-01T00:00:00Z,1.5,2\n")
    with pytest.raises(DataError, match=r"data row 1: sentiment '1.5' must be a number in"):
        read_hourly(path)
    path.write_text(
        "timestamp,sentiment,count\n2024-01-01T00:00:00Z,0.1,2\n2024-01-01T00:00:00Z,0.2,1\n"
    )
    with pytest.raises(DataError, match="data row 2: timestamp .* must be unique"):
        read_hourly(path)
    path.write_text("timestamp,sentiment,count\n2024-01-01T00:00:00Z,0.1,0\n")
    with pytest.raises(DataError, match="count '0' must be an integer >= 1"):
        read_hourly(path)


def test_label_mapping_for_finbert_and_cryptobert() -> None:
    assert label_roles({0: "positive", 1: "negative", 2: "neutral"}) == (0, 1)
    assert label_roles({0: "Bearish", 1: "Neutral", 2: "Bullish"}) == (2, 0)
    with pytest.raises(ValueError, match="LABEL_0"):
        label_roles({0: "LABEL_0", 1: "LABEL_1"})
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    np.testing.assert_allclose(probabilities_to_score(probs, 0, 1), [0.5, -0.7])


def test_transformers_scorer_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        TransformersScorer(tmp_path / "missing")
    with pytest.raises(ValueError, match="--model-dir"):
        make_scorer("transformers")


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is not None, reason="transformers is installed"
)
def test_transformers_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="optional 'transformers' package"):
        TransformersScorer(tmp_path)


def test_cli_scores_texts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hourly.csv"
    assert main(["sentiment", "score", str(SAMPLE), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["texts"] == 60 and summary["buckets"] == 49
    pd.testing.assert_frame_equal(read_hourly(out), read_hourly(SAMPLE_HOURLY))
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,text\nnot a time,hello\n")
    assert main(["sentiment", "score", str(bad), "--out", str(out)]) == 1
    assert "data row 1" in capsys.readouterr().err
    args = ["sentiment", "score", str(SAMPLE), "--out", str(out), "--scorer", "transformers"]
    assert main([*args, "--model-dir", str(tmp_path / "nope")]) == 1
    assert "model directory not found" in capsys.readouterr().err
