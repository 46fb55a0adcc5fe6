"""Numpy metrics for every reported number , shared by torch and LightGBM models.

All functions take aligned 1-D arrays (one value per sample, e.g. one ``horizon`` slice of a
``PredictionFrame``) and raise ``ValueError`` on shape mismatch, empty input or non-finite values,
so a misaligned join fails loudly instead of producing a plausible number.

Units. Models forecast log returns ``r = log(close[t+lag+H] / close[t+lag])``.
``regression_report`` computes the error magnitudes (``rmse``, ``mae``, ``mape``) in **price**
units on the close reconstructed from the return, ``base * exp(r)``, and the skill measures
(``r2``, directional accuracy, precision/recall/F1, information coefficient) on the **returns**.
MAPE in particular is only meaningful on prices: returns are centred on zero, so
``|y - y_hat| / |y|`` explodes for the many near-zero returns and the average is dominated by a
few tiny denominators.

Direction conventions (used by ``directional_accuracy`` and the precision/recall in the report):
"up" means strictly positive. Rows whose true return is exactly 0 have no direction and are
excluded; a predicted return of exactly 0 counts as "not up" (a flat forecast is no buy signal).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "classification_report",
    "directional_accuracy",
    "information_coefficient",
    "mae",
    "mape",
    "precision_recall_f1",
    "price_from_log_return",
    "r2",
    "regression_report",
    "rmse",
]


def _check_pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate two aligned 1-D arrays and return them as float64."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"expected 1-D arrays, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty input")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("input contains NaN or inf")
    return a, b


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error. Shapes: ``[N], [N] -> scalar``."""
    a, b = _check_pair(y_true, y_pred)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error. Shapes: ``[N], [N] -> scalar``."""
    a, b = _check_pair(y_true, y_pred)
    return float(np.mean(np.abs(a - b)))


def mape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute percentage error, in percent.

    Rows with ``y_true == 0`` are excluded (the ratio is undefined there); meant for prices,
    which are never zero.

    Raises:
        ValueError: On invalid input or if every ``y_true`` is zero.

    Shapes:
        ``[N], [N] -> scalar``.

    """
    a, b = _check_pair(y_true, y_pred)
    keep = a != 0.0
    if not keep.any():
        raise ValueError("mape undefined: every y_true is zero")
    return float(100.0 * np.mean(np.abs((a[keep] - b[keep]) / a[keep])))


def r2(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``.

    A constant ``y_true`` gives 1.0 for a perfect fit and 0.0 otherwise (scikit-learn's
    ``force_finite`` convention). Negative values mean worse than predicting the mean.

    Shapes:
        ``[N], [N] -> scalar``.
    """
    a, b = _check_pair(y_true, y_pred)
    ss_res = float(np.sum((a - b) ** 2))
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def directional_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Fraction of rows where the predicted direction matches the realised one.

    Up means ``> 0``. Rows with ``y_true == 0`` are excluded; ``y_pred == 0`` counts as
    "not up", i.e. correct when the true return is negative.

    Raises:
        ValueError: On invalid input or if every ``y_true`` is zero.

    Shapes:
        ``[N], [N] -> scalar`` in ``[0, 1]``.

    """
    a, b = _check_pair(y_true, y_pred)
    keep = a != 0.0
    if not keep.any():
        raise ValueError("directional accuracy undefined: every y_true is zero")
    return float(np.mean((a[keep] > 0.0) == (b[keep] > 0.0)))


def _check_labels(y: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(y)
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be boolean or 0/1 (NaN is not allowed)")
        arr = arr.astype(np.bool_)
    return arr


def precision_recall_f1(
    y_true_up: npt.ArrayLike, y_pred_up: npt.ArrayLike
) -> tuple[float, float, float]:
    """Precision, recall and F1 of the "up" class.

    A ratio with a zero denominator (no predicted ups for precision, no true ups for recall) is
    0.0, as scikit-learn's ``zero_division=0``.

    Args:
        y_true_up: Realised "up" labels (bool or 0/1).
        y_pred_up: Predicted "up" labels (bool or 0/1).

    Returns:
        ``(precision, recall, f1)``.

    Shapes:
        ``[N], [N] -> 3 scalars``.

    """
    t = _check_labels(y_true_up, "y_true_up")
    p = _check_labels(y_pred_up, "y_pred_up")
    _check_pair(t, p)
    tp = float(np.sum(t & p))
    n_pred, n_true = float(p.sum()), float(t.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2.0 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _rank(x: FloatArray) -> FloatArray:
    """Ranks starting at 1, ties get their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(x.size)
    xs = x[order]
    new_value = np.concatenate(([True], xs[1:] != xs[:-1]))
    dense = np.cumsum(new_value)[inverse]  # 1-based group id of each element
    bounds = np.concatenate((np.flatnonzero(new_value), [x.size]))  # group starts + end
    ranks: FloatArray = 0.5 * (bounds[dense] + bounds[dense - 1] + 1).astype(np.float64)
    return ranks


def information_coefficient(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Information coefficient: Spearman rank correlation between forecasts and outcomes.

    Returns NaN when either side is constant (e.g. the zero-forecast baseline) or ``N < 2``:
    the correlation is undefined there, and NaN keeps that visible in reports.

    Shapes:
        ``[N], [N] -> scalar`` in ``[-1, 1]`` or NaN.
    """
    a, b = _check_pair(y_true, y_pred)
    ra, rb = _rank(a), _rank(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt(np.sum(ra**2) * np.sum(rb**2)))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.sum(ra * rb) / denom, -1.0, 1.0))


def price_from_log_return(base_close: npt.ArrayLike, log_ret: npt.ArrayLike) -> FloatArray:
    """Close reconstructed from a log return: ``base_close * exp(log_ret)``.

    Args:
        base_close: Close the return is measured from (``close[t+lag]`` for the R4 target).
        log_ret: Log returns, aligned with ``base_close``.

    Returns:
        Reconstructed closes.

    Raises:
        ValueError: On shape mismatch, empty or non-finite input, or a non-positive base.

    Shapes:
        ``[N], [N] -> [N]``.

    """
    base, r = _check_pair(base_close, log_ret)
    if (base <= 0.0).any():
        raise ValueError("base_close must be strictly positive")
    return base * np.exp(r)


def regression_report(
    y_true_ret: npt.ArrayLike, y_pred_ret: npt.ArrayLike, base_close: npt.ArrayLike
) -> dict[str, float]:
    """All standard regression numbers for one aligned set of return forecasts.

    Args:
        y_true_ret: Realised log returns.
        y_pred_ret: Forecast log returns.
        base_close: Close each return is measured from (see ``price_from_log_return``).

    Returns:
        ``rmse``, ``mae``, ``mape`` (percent) on reconstructed prices; ``r2``,
        ``directional_accuracy``, ``precision``, ``recall``, ``f1`` (of the "up" class, rows with
        a zero true return excluded) and ``ic`` (Spearman) on returns.

    Shapes:
        ``[N], [N], [N] -> dict of scalars``.

    """
    a, b = _check_pair(y_true_ret, y_pred_ret)
    base, _ = _check_pair(base_close, a)
    price_true = price_from_log_return(base, a)
    price_pred = price_from_log_return(base, b)
    hit_rate = directional_accuracy(a, b)  # raises first if no row has a direction
    keep = a != 0.0
    precision, recall, f1 = precision_recall_f1(a[keep] > 0.0, b[keep] > 0.0)
    return {
        "rmse": rmse(price_true, price_pred),
        "mae": mae(price_true, price_pred),
        "mape": mape(price_true, price_pred),
        "r2": r2(a, b),
        "directional_accuracy": hit_rate,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ic": information_coefficient(a, b),
    }


def classification_report(y_true_up: npt.ArrayLike, p_up: npt.ArrayLike) -> dict[str, float]:
    """Numbers for a directional classifier: labels 0/1 against predicted probabilities of "up".

    The predicted class is ``p_up > 0.5``.

    Args:
        y_true_up: Realised "up" labels (bool or 0/1).
        p_up: Predicted probabilities of "up", in ``[0, 1]``.

    Returns:
        ``accuracy`` (also as ``directional_accuracy``), ``precision``, ``recall``, ``f1`` of the
        "up" class, ``brier`` (mean squared error of the probability), ``log_loss`` (natural log,
        probabilities clipped to ``[1e-15, 1 - 1e-15]``) and ``auc`` (ROC AUC from ranks; NaN when
        only one class is present).

    Shapes:
        ``[N], [N] -> dict of scalars``.

    """
    t = _check_labels(y_true_up, "y_true_up")
    p, _ = _check_pair(p_up, t.astype(np.float64))
    if ((p < 0.0) | (p > 1.0)).any():
        raise ValueError("p_up must lie in [0, 1]")
    pred = p > 0.5
    precision, recall, f1 = precision_recall_f1(t, pred)
    accuracy = float(np.mean(pred == t))
    clipped = np.clip(p, 1e-15, 1.0 - 1e-15)
    log_loss = float(-np.mean(np.where(t, np.log(clipped), np.log1p(-clipped))))
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos and n_neg:
        ranks = _rank(p)
        auc = float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
    else:
        auc = float("nan")
    return {
        "accuracy": accuracy,
        "directional_accuracy": accuracy,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "brier": float(np.mean((p - t) ** 2)),
        "log_loss": log_loss,
        "auc": auc,
    }
