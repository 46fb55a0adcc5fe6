"""Operational profile of a fitted Forecaster: model size, prediction latency, peak memory.

Latency is measured through the public ``Forecaster.predict(samples, positions)`` path, so it
includes whatever that path does besides the model (building the design matrix, a torch
``DataLoader``, un-scaling). ``TorchForecaster.predict`` already switches the module to eval mode
and runs under ``torch.no_grad()``; this module checks the former after the warm-up calls.

Numbers depend on the machine, its load and the thread settings (``torch.get_num_threads()``,
LightGBM's ``num_threads``), so compare them only within one run on one machine.
"""

from __future__ import annotations

import io
import logging
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from cryptoforecast.data.datamodule import SampleSet
    from cryptoforecast.models.base import Forecaster

log = logging.getLogger(__name__)

__all__ = ["peak_rss_mb", "profile_forecaster", "serialized_size_bytes"]

MIB = 1024.0 * 1024.0


def _torch_module(model: object) -> Any | None:
    """The ``torch.nn.Module`` a forecaster wraps (``TorchForecaster.module``), or None."""
    if "torch" not in sys.modules:  # no torch loaded: the model cannot hold a torch module
        return None
    import torch

    module = getattr(model, "module", None)
    return module if isinstance(module, torch.nn.Module) else None


def serialized_size_bytes(model: object) -> int:
    """Serialized size of a fitted forecaster's model in bytes.

    LightGBM (anything with ``model_size_bytes()``): its text models. Torch (a ``module``
    attribute holding an ``nn.Module``): ``torch.save(module.state_dict())`` into memory, i.e.
    the weights and buffers without code or optimizer state. Anything else (baselines): 0.
    """
    size_fn = getattr(model, "model_size_bytes", None)
    if callable(size_fn):
        return int(size_fn())
    module = _torch_module(model)
    if module is None:
        return 0
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def peak_rss_mb() -> float:
    """Peak resident set size of this **process** so far, in MiB (``ru_maxrss``).

    It is a high-water mark over the whole process lifetime (data loading, training, other
    models profiled earlier), not the memory of one model; it never goes down. Linux reports
    KiB, macOS bytes.
    """
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0


def _time_ms(
    model: Forecaster, samples: SampleSet, batches: list[npt.NDArray[np.int64]]
) -> npt.NDArray[np.float64]:
    """Wall time in ms of ``model.predict`` on each position batch, one call per batch."""
    out = np.empty(len(batches), dtype=np.float64)
    for i, pos in enumerate(batches):
        start = time.perf_counter_ns()
        model.predict(samples, pos)
        out[i] = (time.perf_counter_ns() - start) / 1e6
    return out


def profile_forecaster(
    model: Forecaster,
    samples: SampleSet,
    positions: np.ndarray,
    n_single: int = 200,
    batch_size: int = 256,
    n_batch: int = 20,
    n_warmup: int = 5,
) -> dict[str, float]:
    """Size, single-sample and batch latency percentiles, and peak RSS of a fitted forecaster.

    Single-sample latency: ``n_single`` calls of ``model.predict(samples, positions[i:i+1])``
    (positions reused cyclically). Batch latency: ``n_batch`` calls with ``batch_size``
    consecutive positions each (wrapping around, so a short ``positions`` repeats samples).
    Before timing, ``n_warmup`` single calls and one batch call are made and discarded (lazy
    initialisation, caches, allocator warm-up). Latencies are per call, not per sample, and come
    from ``time.perf_counter_ns``.

    Args:
        model: a fitted Forecaster.
        samples: the SampleSet it predicts from.
        positions: ``[S]`` indices into ``samples.windows.ends`` to predict (e.g. a test fold).
        n_single: timed single-sample calls.
        batch_size: samples per batch call.
        n_batch: timed batch calls.
        n_warmup: discarded single-sample calls before timing.

    Returns:
        ``ops/size_mb`` (:func:`serialized_size_bytes` in MiB), ``ops/latency_single_p50_ms``,
        ``ops/latency_single_p99_ms``, ``ops/latency_batch_p50_ms``, ``ops/latency_batch_p99_ms``
        and ``ops/peak_rss_mb`` (process-wide high-water mark, see :func:`peak_rss_mb`).

    Raises:
        ValueError: on empty or non-1-D ``positions`` or non-positive counts.
    """
    pos = np.asarray(positions)
    if pos.ndim != 1 or pos.size == 0 or not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"positions must be a non-empty 1-D integer array, got {pos.shape}")
    if min(n_single, batch_size, n_batch) < 1 or n_warmup < 0:
        raise ValueError(
            "need n_single, batch_size, n_batch >= 1 and n_warmup >= 0; got "
            f"{n_single}, {batch_size}, {n_batch}, {n_warmup}"
        )
    pos = pos.astype(np.int64)
    singles = [pos[[i % pos.size]] for i in range(n_warmup + n_single)]
    batches = [
        np.take(pos, np.arange(i * batch_size, (i + 1) * batch_size), mode="wrap")
        for i in range(n_batch + 1)
    ]

    first = model.predict(samples, singles[0]) if n_warmup else None
    if first is not None and len(first) != 1:
        raise ValueError(f"predict returned {len(first)} rows for one position")
    _time_ms(model, samples, singles[1:n_warmup])
    _time_ms(model, samples, batches[:1])
    module = _torch_module(model)
    if module is not None and module.training:
        log.warning(
            "profile_forecaster: the torch module is in training mode after predict(); "
            "latencies include dropout/batch-norm training behaviour"
        )
    single_ms = _time_ms(model, samples, singles[n_warmup:])
    batch_ms = _time_ms(model, samples, batches[1:])

    s50, s99 = np.percentile(single_ms, [50, 99])
    b50, b99 = np.percentile(batch_ms, [50, 99])
    out = {
        "ops/size_mb": serialized_size_bytes(model) / MIB,
        "ops/latency_single_p50_ms": float(s50),
        "ops/latency_single_p99_ms": float(s99),
        "ops/latency_batch_p50_ms": float(b50),
        "ops/latency_batch_p99_ms": float(b99),
        "ops/peak_rss_mb": peak_rss_mb(),
    }
    log.info(
        "profile %s: size %.3f MiB, single p50 %.3f ms, batch(%d) p50 %.3f ms, peak RSS %.0f MiB",
        type(model).__name__,
        out["ops/size_mb"],
        out["ops/latency_single_p50_ms"],
        batch_size,
        out["ops/latency_batch_p50_ms"],
        out["ops/peak_rss_mb"],
    )
    return out
