"""Text sentiment: score timestamped texts, aggregate them per bar, align them without look-ahead.

Pipeline::

    texts CSV (timestamp,text) --scorer--> hourly CSV (timestamp,sentiment,count)
        --TextSentiment--> per-bar features

- Scorers (:class:`SentimentScorer`) map texts to scores in ``[-1, 1]``. :class:`VaderScorer`
  (VADER compound score, rule-based, offline) is the default. :class:`TransformersScorer` runs a
  local FinBERT/CryptoBERT-style classifier through ``transformers`` (an optional dependency,
  imported lazily; nothing is downloaded: ``local_files_only=True``); its score is
  ``p(positive) - p(negative)``.
- :func:`hourly_sentiment` assigns a text stamped ``ts`` to the bucket containing ``ts``
  (``[floor(ts), floor(ts) + interval)``), so the text is usable at that bucket's **close**. It
  never reaches an earlier bucket. Rows hold the bucket open time, the mean score and the count.
- :class:`TextSentiment` aligns such a file to bars: bar ``t`` (open time) with close
  ``e = t + interval`` (minus a lag of ``k`` hours) aggregates the buckets closing in
  ``(e - interval, e]``, i.e. the texts of its own bar. Bars without texts get count 0 and
  sentiment 0 (``fill="zero"``: no news reads as neutral) or NaN (``fill="nan"``: only for dense
  feeds, since NaN rows drop out of the samples).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cryptoforecast.data.external import resolve_external_path
from cryptoforecast.data.schema import DataError, interval_to_timedelta
from cryptoforecast.data.sources import parse_timestamps
from cryptoforecast.features.transforms import TransformBase

logger = logging.getLogger(__name__)

HOURLY_COLUMNS: tuple[str, ...] = ("timestamp", "sentiment", "count")
FILL_RULES: tuple[str, ...] = ("zero", "nan")
# Label names (lowercased substrings) read as the positive / negative class of a classifier.
_POSITIVE = ("positive", "bullish")
_NEGATIVE = ("negative", "bearish")


@runtime_checkable
class SentimentScorer(Protocol):
    """Turns texts into sentiment scores."""

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Scores in ``[-1, 1]``, float64 ``[len(texts)]``: -1 most negative, +1 most positive."""
        ...


class VaderScorer:
    """VADER (Hutto & Gilbert, 2014) compound score: rule-based, offline, no model files."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Compound scores in ``[-1, 1]``."""
        return np.array(
            [self._analyzer.polarity_scores(str(t))["compound"] for t in texts], dtype=np.float64
        )


def label_roles(id2label: Mapping[int, str]) -> tuple[int, int]:
    """Indices of the positive and negative classes of a classifier's ``id2label``.

    ``positive``/``bullish`` and ``negative``/``bearish`` are recognised (case-insensitive), so
    FinBERT (positive, negative, neutral) and CryptoBERT (Bullish, Bearish, Neutral) both work.

    Raises:
        ValueError: no single positive or negative label, naming the labels found.

    """
    found: dict[str, list[int]] = {"positive": [], "negative": []}
    for idx, label in id2label.items():
        name = str(label).lower()
        if any(p in name for p in _POSITIVE):
            found["positive"].append(int(idx))
        elif any(n in name for n in _NEGATIVE):
            found["negative"].append(int(idx))
    if len(found["positive"]) != 1 or len(found["negative"]) != 1:
        raise ValueError(
            f"cannot tell the positive and negative classes from labels {dict(id2label)}; "
            f"expected one of {_POSITIVE} and one of {_NEGATIVE}"
        )
    return found["positive"][0], found["negative"][0]


def probabilities_to_score(probs: np.ndarray, pos: int, neg: int) -> np.ndarray:
    """``p(positive) - p(negative)`` from class probabilities ``[N, C]`` (rows sum to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.clip(probs[:, pos] - probs[:, neg], -1.0, 1.0)


class TransformersScorer:
    """A local sequence-classification model (FinBERT, CryptoBERT, ...) via ``transformers``.

    Args:
        model_dir: a directory holding the model and tokenizer files (``save_pretrained``
            output). Nothing is downloaded (``local_files_only=True``).
        batch_size: texts per forward pass.
        max_length: tokens per text (longer texts are truncated).

    Raises:
        FileNotFoundError: ``model_dir`` is not a directory.
        ImportError: ``transformers`` (or torch) is not installed.
        ValueError: the model's labels have no positive/negative pair (:func:`label_roles`).

    """

    def __init__(self, model_dir: str | Path, batch_size: int = 32, max_length: int = 256) -> None:
        self.model_dir = Path(model_dir).expanduser()
        if not self.model_dir.is_dir():
            raise FileNotFoundError(
                f"{self.model_dir}: model directory not found; pass a local folder saved with "
                "save_pretrained (models are never downloaded at run time)"
            )
        try:
            import transformers
        except ImportError as exc:
            raise ImportError(
                "TransformersScorer needs the optional 'transformers' package "
                "(pip install transformers); use the default VADER scorer otherwise"
            ) from exc
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(self.model_dir), local_files_only=True
        )
        self._model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(self.model_dir), local_files_only=True
        ).eval()
        self._pos, self._neg = label_roles(self._model.config.id2label)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """``p(positive) - p(negative)`` per text."""
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = [str(t) for t in texts[start : start + self.batch_size]]
            enc = self._tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.no_grad():
                probs = torch.softmax(self._model(**enc).logits, dim=-1)  # [B, C]
            out.append(probabilities_to_score(probs.numpy(), self._pos, self._neg))
        return np.concatenate(out) if out else np.zeros(0)


def make_scorer(name: str = "vader", model_dir: str | Path | None = None) -> SentimentScorer:
    """``vader`` or ``transformers`` (which needs ``model_dir``)."""
    if name == "vader":
        return VaderScorer()
    if name == "transformers":
        if model_dir is None:
            raise ValueError("the transformers scorer needs --model-dir (a local model folder)")
        return TransformersScorer(model_dir)
    raise ValueError(f"unknown scorer {name!r}; choose vader or transformers")


# ---------------------------------------------------------------------------- files


def read_texts(path: str | Path) -> pd.DataFrame:
    """Read a ``timestamp,text`` CSV (extra columns ignored; naive timestamps are UTC).

    Returns:
        Frame with a UTC ``timestamp`` column and a ``text`` column, in file order.

    Raises:
        DataError: missing file or column, an unparseable timestamp or an empty text, naming the
            file and data row (1-based, header excluded).

    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a corrupt file
        raise DataError(f"{path}: cannot read file: {exc}") from exc
    lower = {str(c).strip().lower(): c for c in raw.columns}
    missing = [c for c in ("timestamp", "text") if c not in lower]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(raw.columns)}")
    text = raw[lower["text"]].astype(str)
    empty = text.str.strip().eq("").to_numpy()
    if empty.any():
        raise DataError(f"{path}: data row {int(np.flatnonzero(empty)[0]) + 1}: empty text")
    return pd.DataFrame(
        {"timestamp": parse_timestamps(raw[lower["timestamp"]], source=str(path)), "text": text}
    )


def hourly_sentiment(
    texts: pd.DataFrame, scorer: SentimentScorer, interval: str = "1h"
) -> pd.DataFrame:
    """Score texts and aggregate them per bucket of ``interval``.

    Args:
        texts: ``timestamp`` (UTC) and ``text`` columns (:func:`read_texts`).
        scorer: the sentiment scorer.
        interval: bucket length; a text stamped ``ts`` goes to the bucket containing it and is
            usable at that bucket's close.

    Returns:
        Frame with columns ``timestamp`` (bucket open time, sorted; only buckets with texts),
        ``sentiment`` (mean score) and ``count``.

    """
    step = interval_to_timedelta(interval)
    scores = np.asarray(scorer.score(list(texts["text"])), dtype=np.float64)
    if scores.shape != (len(texts),) or not np.isfinite(scores).all():
        raise ValueError(f"scorer returned {scores.shape} scores for {len(texts)} texts")
    if (np.abs(scores) > 1.0).any():
        raise ValueError(f"scorer returned scores outside [-1, 1]: {scores[np.abs(scores) > 1]}")
    stamps = pd.DatetimeIndex(texts["timestamp"]).as_unit("ns")
    order = np.argsort(stamps.asi8, kind="stable")  # by time, ties in file order
    buckets = stamps[order].floor(step)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]]) if len(order) else order
    # Per-bucket sums with np.add.reduceat: a bucket's mean depends on its own texts only (a
    # groupby mean can round differently when other buckets change).
    sums = np.add.reduceat(scores[order], starts) if len(order) else np.zeros(0)
    count = np.diff(np.r_[starts, len(order)]).astype(np.int64)
    return pd.DataFrame(
        {"timestamp": buckets[starts], "sentiment": sums / count, "count": count}
    ).reset_index(drop=True)


def write_hourly(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the :func:`hourly_sentiment` frame as CSV (ISO UTC timestamps)."""
    out = frame.loc[:, list(HOURLY_COLUMNS)].copy()
    out["timestamp"] = pd.DatetimeIndex(out["timestamp"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)


def read_hourly(path: str | Path) -> pd.DataFrame:
    """Read and validate an hourly sentiment CSV (a bundled file name or a path).

    Returns:
        Frame indexed by the UTC bucket open time (sorted) with float64 ``sentiment`` and
        ``count`` columns.

    Raises:
        DataError: a missing column, an unparseable or repeated timestamp, a sentiment outside
            ``[-1, 1]`` or a count that is not a positive integer (file and data row named).

    """
    resolved = resolve_external_path(path)
    source = str(resolved)
    try:
        raw = pd.read_csv(resolved, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a corrupt file
        raise DataError(f"{source}: cannot read file: {exc}") from exc
    missing = [c for c in HOURLY_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {list(raw.columns)}")
    stamps = pd.DatetimeIndex(parse_timestamps(raw["timestamp"], source=source))
    sentiment = pd.to_numeric(raw["sentiment"].str.strip(), errors="coerce").to_numpy(float)
    count = pd.to_numeric(raw["count"].str.strip(), errors="coerce").to_numpy(float)
    checks = (
        (~(np.abs(sentiment) <= 1.0), "sentiment", "a number in [-1, 1]"),
        (~((count >= 1) & (count == np.round(count))), "count", "an integer >= 1"),
        (pd.Series(stamps).duplicated().to_numpy(), "timestamp", "unique"),
    )
    for bad, column, need in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: data row {row + 1}: {column} {raw[column].iloc[row]!r} must be {need}"
            )
    frame = pd.DataFrame({"sentiment": sentiment, "count": count}, index=stamps.rename(None))
    return frame.sort_index(kind="stable")


# ---------------------------------------------------------------------------- transform


def _segment_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``sum(values[lo[i]:hi[i]])`` per i, added left to right (exact for the same rows).

    Not via cumulative sums: those would change a bar's value by rounding when rows are
    appended to the file, and a bar's value must depend on its own buckets only.
    """
    out = np.zeros(len(lo))
    for j in range(int((hi - lo).max(initial=0))):  # buckets per bar: interval / bucket
        take = lo + j < hi
        out[take] += values[lo[take] + j]
    return out


class TextSentiment(TransformBase):
    """Per-bar text sentiment from an hourly sentiment CSV (see the module docstring).

    Columns per lag ``k`` in ``lags_hours`` (suffix ``_lag{k}``, none for 0): ``text_sent``, the
    count-weighted mean score of the texts in the bar (usable at its close minus ``k`` hours), and
    ``text_count``, how many texts that was.

    Args:
        path: the hourly CSV (``timestamp,sentiment,count``) or a bundled file name.
        lags_hours: further delays, in hours (0 = none).
        fill: ``zero`` (no texts -> sentiment 0) or ``nan`` (no texts -> NaN).
        bucket_interval: the bucket length the CSV was written with.
        interval: the bar length of the candles.

    Warm-up 0 (clock-time alignment only).

    """

    def __init__(
        self,
        path: str,
        lags_hours: Sequence[int] = (0,),
        fill: str = "zero",
        bucket_interval: str = "1h",
        interval: str = "1h",
    ) -> None:
        self.path, self.fill = str(path), str(fill)
        self.bucket_interval, self.interval = str(bucket_interval), str(interval)
        if self.fill not in FILL_RULES:
            raise ValueError(f"fill must be one of {FILL_RULES}, got {self.fill!r}")
        self._bucket = interval_to_timedelta(self.bucket_interval)
        self._step = interval_to_timedelta(self.interval)
        if self._bucket > self._step:
            raise ValueError(
                f"bucket_interval {self.bucket_interval} is longer than the bar {self.interval}"
            )
        self.lags_hours = tuple(int(k) for k in lags_hours)
        if not self.lags_hours or min(self.lags_hours) < 0:
            raise ValueError(f"lags_hours must be integers >= 0, got {list(lags_hours)}")
        if len(set(self.lags_hours)) != len(self.lags_hours):
            raise ValueError(f"lags_hours must be unique, got {list(lags_hours)}")
        hourly = read_hourly(self.path)
        self._source = str(resolve_external_path(self.path))
        self._close = (hourly.index + self._bucket).as_unit("ns").asi8  # when a bucket is usable
        self._span = (hourly.index[0], hourly.index[-1] + self._bucket) if len(hourly) else None
        self._count = hourly["count"].to_numpy()
        self._weighted = hourly["sentiment"].to_numpy() * self._count
        suffixes = ["" if k == 0 else f"_lag{k}" for k in self.lags_hours]
        self._names = [f"text_{c}{s}" for s in suffixes for c in ("sent", "count")]
        self._warmup = 0
        self._warned = False

    def params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "path": self.path,
            "lags_hours": list(self.lags_hours),
            "fill": self.fill,
            "bucket_interval": self.bucket_interval,
            "interval": self.interval,
        }

    def _compute(self, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        index = candles.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise TypeError("TextSentiment needs a timezone-aware (UTC) DatetimeIndex")
        self._warn_coverage(index)
        out: dict[str, np.ndarray] = {}
        for k in self.lags_hours:
            suffix = "" if k == 0 else f"_lag{k}"
            end = (index + self._step - pd.Timedelta(hours=k)).as_unit("ns").asi8
            hi = np.searchsorted(self._close, end, side="right")
            lo = np.searchsorted(self._close, end - self._step.value, side="right")
            count = _segment_sums(self._count, lo, hi)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = _segment_sums(self._weighted, lo, hi) / count
            mean[count == 0] = 0.0 if self.fill == "zero" else np.nan
            out[f"text_sent{suffix}"] = mean
            out[f"text_count{suffix}"] = count
        return out

    def _warn_coverage(self, index: pd.DatetimeIndex) -> None:
        if self._warned or self._span is None or len(index) == 0:
            return
        first, last = self._span
        outside = int(((index + self._step <= first) | (index >= last)).sum())
        if outside:
            self._warned = True
            logger.warning(
                "%s covers %s .. %s; %d bar(s) outside it get text_count 0 and fill=%s "
                "(no texts is not the same as neutral news)",
                self._source,
                first,
                last,
                outside,
                self.fill,
            )
