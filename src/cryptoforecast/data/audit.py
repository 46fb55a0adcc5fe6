"""Leakage audits over built samples and folds. Each returns a list of violations (empty = ok).

They restate the rules independently of the code that builds windows and splits, so a bug in
either shows up as a violation in the tests instead of as a too-good metric.
"""

from __future__ import annotations

import numpy as np

from cryptoforecast.data.datamodule import SYMBOL_COLUMN, SampleSet
from cryptoforecast.data.splits import Fold

_MAX = 10


def audit_windows(samples: SampleSet) -> list[str]:
    """Every sample: inputs are L consecutive bars ending exactly at t; its label starts after t.

    Checks, per sample end ``t``: the window's last input timestamp is the sample's timestamp,
    the ``L`` input bars are consecutive (no gap inside), all inputs are finite, the label bars
    ``t+lag .. t+lag+max(h)`` exist, are consecutive and lie strictly after ``t`` (for h >= 1).
    Multi-symbol sets also: the input and label rows lie in the sample's own symbol's rows, and
    the one-hot symbol columns are the same on all of them (no window mixes two symbols).
    """
    out: list[str] = []
    idx, step = samples.index, samples.step
    lb, lag = samples.windows.lookback, samples.target.execution_lag
    reach = samples.target.reach
    blocks = samples.symbol_rows
    starts = np.array([b.start for b in blocks])
    prefix = SYMBOL_COLUMN.format("")
    onehot = [j for j, name in enumerate(samples.feature_names) if name.startswith(prefix)]
    for i, t in enumerate(samples.windows.ends):
        ts = samples.windows.timestamps[i]
        block = blocks[int(np.searchsorted(starts, t, side="right")) - 1]
        window = idx[t - lb + 1 : t + 1]
        ids = samples.features[max(t - lb + 1, 0) : t + reach + 1, onehot] if onehot else None
        if len(blocks) > 1 and (t - lb + 1 < block.start or t + reach >= block.stop):
            out.append(f"sample {i} at {ts} ({block.symbol}): rows cross another symbol's rows")
        elif ids is not None and not (ids == ids[0]).all():
            out.append(f"sample {i} at {ts} ({block.symbol}): window mixes symbols (one-hot)")
        elif t - lb + 1 < 0 or window[-1] != ts:
            out.append(f"sample {i}: last input bar {window[-1]} != sample time {ts}")
        elif (window[-1] - window[0]) != (lb - 1) * step:
            out.append(f"sample {i} at {ts}: input window spans a gap")
        elif not np.isfinite(samples.features[t - lb + 1 : t + 1]).all():
            out.append(f"sample {i} at {ts}: non-finite input (inside a warm-up)")
        elif t + reach >= len(idx) or idx[t + reach] - ts != reach * step:
            out.append(f"sample {i} at {ts}: label bars missing or across a gap")
        elif idx[t + lag + 1] <= ts:
            out.append(f"sample {i} at {ts}: label ends at or before t")
        if len(out) >= _MAX:
            break
    return out


def audit_purge(samples: SampleSet, fold: Fold) -> list[str]:
    """No label of an earlier segment reaches the first bar of a later one.

    For segments A before B: ``time(latest sample of A) + (lag + max h) bars < time(earliest of
    B)``, and segments do not overlap or run backwards. Over all symbols together, so in a
    multi-symbol set no symbol's label reaches into a later segment of any symbol.
    """
    out: list[str] = []
    ts = samples.windows.timestamps
    ns = ts.as_unit("ns").asi8
    reach = samples.target.reach * samples.step
    names = samples.sample_symbols()
    multi = len(samples.symbol_rows) > 1
    segs = [("train", fold.train), ("val", fold.val), ("test", fold.test)]
    for a, (name_a, pos_a) in enumerate(segs):
        if len(pos_a) and not (np.diff(pos_a) > 0).all():
            out.append(f"fold {fold.number}: {name_a} positions not increasing")
        for name_b, pos_b in segs[a + 1 :]:
            if not len(pos_a) or not len(pos_b):
                continue
            last_a, first_b = pos_a[np.argmax(ns[pos_a])], pos_b[np.argmin(ns[pos_b])]
            label_end, start_b = ts[last_a] + reach, ts[first_b]
            if label_end >= start_b:
                who_a = f" ({names[last_a]})" if multi else ""
                who_b = f" ({names[first_b]})" if multi else ""
                out.append(
                    f"fold {fold.number}: last {name_a} label{who_a} ends {label_end}, at or "
                    f"after the first {name_b} sample{who_b} {start_b}"
                )
    return out


def audit_time_alignment(samples: SampleSet, fold: Fold) -> list[str]:
    """Every symbol is cut at the same times.

    Each segment must hold every sample, of any symbol, whose time lies within the segment's
    span (earliest to latest of its samples): a symbol whose segment starts earlier or ends
    later than another's breaks it. Holds trivially for time splits of one symbol.
    """
    out: list[str] = []
    ts = samples.windows.timestamps
    ns = ts.as_unit("ns").asi8
    names = samples.sample_symbols()
    for name, pos in (("train", fold.train), ("val", fold.val), ("test", fold.test)):
        if not len(pos):
            continue
        lo, hi = ns[pos].min(), ns[pos].max()
        missing = np.setdiff1d(np.flatnonzero((ns >= lo) & (ns <= hi)), pos)
        if len(missing):
            i = missing[0]
            out.append(
                f"fold {fold.number}: {name} spans {ts[np.argmax(ns == lo)]} -> "
                f"{ts[np.argmax(ns == hi)]}, but the {names[i]} sample at {ts[i]} inside that "
                f"span is not in {name} ({len(missing)} such samples)"
            )
    return out
