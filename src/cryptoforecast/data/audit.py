"""Leakage audits over built samples and folds. Each returns a list of violations (empty = ok).

They restate the rules independently of the code that builds windows and splits, so a bug in
either shows up as a violation in the tests instead of as a too-good metric.
"""

from __future__ import annotations

import numpy as np

from cryptoforecast.data.datamodule import SampleSet
from cryptoforecast.data.splits import Fold

_MAX = 10


def audit_windows(samples: SampleSet) -> list[str]:
    """Every sample: inputs are L consecutive bars ending exactly at t; its label starts after t.

    Checks, per sample end ``t``: the window's last input timestamp is the sample's timestamp,
    the ``L`` input bars are consecutive (no gap inside), all inputs are finite, the label bars
    ``t+lag .. t+lag+max(h)`` exist, are consecutive and lie strictly after ``t`` (for h >= 1).
    """
    out: list[str] = []
    idx, step = samples.index, samples.step
    lb, lag = samples.windows.lookback, samples.target.execution_lag
    reach = samples.target.reach
    for i, t in enumerate(samples.windows.ends):
        ts = samples.windows.timestamps[i]
        window = idx[t - lb + 1 : t + 1]
        if t - lb + 1 < 0 or window[-1] != ts:
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

    For segments A before B: ``time(last sample of A) + (lag + max h) bars < time(first of B)``,
    and segments do not overlap or run backwards.
    """
    out: list[str] = []
    ts = samples.windows.timestamps
    reach = samples.target.reach * samples.step
    segs = [("train", fold.train), ("val", fold.val), ("test", fold.test)]
    for a, (name_a, pos_a) in enumerate(segs):
        if len(pos_a) and not (np.diff(pos_a) > 0).all():
            out.append(f"fold {fold.number}: {name_a} positions not increasing")
        for name_b, pos_b in segs[a + 1 :]:
            if not len(pos_a) or not len(pos_b):
                continue
            label_end, start_b = ts[pos_a[-1]] + reach, ts[pos_b[0]]
            if label_end >= start_b:
                out.append(
                    f"fold {fold.number}: last {name_a} label ends {label_end}, at or after the "
                    f"first {name_b} sample {start_b}"
                )
    return out
