"""Small statistics used by every report (through evaluation.reporting): Wilson intervals, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (sound at 0 % and 100 %, unlike the normal one)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentiles(
    values: Sequence[float],
    qs: Sequence[float] = (50, 95),
    *,
    mean: bool = False,
    count: bool = False,
    maximum: bool = False,
    method: str = "linear",
) -> dict[str, float]:
    """{"p50": .., "p95": ..} of `values` (NaN when empty), with "n" first (count), "mean" and "max" when
    asked. method "nearest" gives measured values only (no interpolation between two samples)."""
    arr = np.asarray(values, dtype=np.float64)
    empty = arr.size == 0
    out: dict[str, float] = {"n": int(arr.size)} if count else {}
    out.update({f"p{int(q)}": math.nan if empty else float(np.percentile(arr, q, method=method)) for q in qs})
    if mean:
        out["mean"] = math.nan if empty else float(arr.mean())
    if maximum:
        out["max"] = math.nan if empty else float(arr.max())
    return out
