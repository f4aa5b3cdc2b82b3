"""Counting rate-limit grants: the most that fall in any window (the check every limiter test makes)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def max_in_any_window(times: Iterable[float], window_s: float) -> int:
    """The most grant times that fall in any half-open window ``[t, t + window_s)``."""
    ordered = np.sort(np.asarray(list(times), dtype=np.float64))
    if not ordered.size:
        return 0
    ends = np.searchsorted(ordered, ordered + window_s, side="left")
    return int((ends - np.arange(ordered.size)).max())
