"""Order statistics from a trade log: how each order ended, and how long the broker took.

Each order is counted once, by its final status (its last terminal row, else its most advanced
one); latency is the broker's answer time per submission, or the time to fill. Vectorised like the
P&L accounting, for million-row logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .statuses import IN_FLIGHT_STATUSES, SHOWN_AS_ENDED_STATUSES
from .tradelog_frame import number_column, row_indices, text_column

STATUS_ORDER = (
    "filled",
    "partially_filled",
    "canceled",
    "expired",
    "replaced",
    "done_for_day",
    "rejected",
    "invalid",
    "failed",
    "new",
    "accepted",
    "pending_new",
    "submitting",
)


@dataclass(frozen=True)
class Latency:
    """Latencies in milliseconds and what they measure (axis label)."""

    values: np.ndarray
    label: str

    def summary(self) -> str:
        """``n=…, p50 …, p95 …, p99 …`` (empty when nothing was measured)."""
        if len(self.values) == 0:
            return ""
        p50, p95, p99 = np.percentile(self.values, [50, 95, 99])
        return f"n={len(self.values):,}, p50 {ms_text(p50)}, p95 {ms_text(p95)}, p99 {ms_text(p99)}"


def final_statuses(frame: pd.DataFrame, keep: np.ndarray | None) -> pd.Series:
    """Count each order once, by its final status.

    Rows are grouped by client order id (rows without one are orders of their own). An
    order's final status is its last terminal row (filled, canceled, rejected ...), else
    its last broker status (new, partially_filled ...), else the worker's answer
    (accepted): the worker's "accepted" can be written after the stream's "fill".
    Validation rows (refused before sending) count as ``invalid``.
    """
    rows = np.arange(len(frame)) if keep is None else np.flatnonzero(keep)
    if len(rows) == 0:
        return pd.Series(dtype=np.int64)
    status_codes, statuses = _status_codes(frame, rows)
    orders = order_codes(text_column(frame, "client_order_id", rows))
    rank = np.array([_status_rank(name) for name in statuses], dtype=np.int64)[status_codes]
    score = rank * len(rows) + np.arange(len(rows))
    last = pd.Series(score).groupby(orders, sort=False).max().to_numpy() % len(rows)
    counts = np.bincount(status_codes[last], minlength=len(statuses))
    return _ordered_counts(pd.Series(counts, index=statuses))


def _status_rank(name: str) -> int:
    """Which of an order's rows tells its final status: the highest rank, then the latest."""
    if name in SHOWN_AS_ENDED_STATUSES:
        return 2
    return 0 if name in IN_FLIGHT_STATUSES else 1


def _status_codes(frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each row's status as a code into the list of lower-case names it returns.

    A blank ``status`` falls back to ``raw_status`` (``OrderStatus.FILLED`` → ``filled``);
    validation rows are ``invalid``. Work is done on the few distinct values, not per row.
    """
    codes, names = _labels(text_column(frame, "status", rows), _status_name)
    if "" in names:
        blank = codes == names.index("")
        raw_codes, raw_names = _labels(text_column(frame, "raw_status", rows[blank]), _raw_status_name)
        codes[blank] = raw_codes + len(names)
        names = names + raw_names
    codes[text_column(frame, "type", rows) == "validation"] = len(names)
    return _merge_labels(codes, [*names, "invalid"])


def _labels(values: np.ndarray, normalize: Callable[[str], str]) -> tuple[np.ndarray, list[str]]:
    """Codes of ``values`` into their normalized distinct names (missing values count as "")."""
    codes, uniques = pd.factorize(values)
    codes[codes < 0] = len(uniques)
    return _merge_labels(codes, [normalize(str(value)) for value in uniques] + [normalize("")])


def _merge_labels(codes: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Give names that normalized alike one code."""
    distinct = list(dict.fromkeys(names))
    remap = np.array([distinct.index(name) for name in names], dtype=np.int64)
    return remap[codes], distinct


def _status_name(status: str) -> str:
    """Lower case, British ``cancelled`` spelled as Alpaca does."""
    name = status.strip().lower()
    return "canceled" if name == "cancelled" else name


def _raw_status_name(raw_status: str) -> str:
    """``OrderStatus.FILLED`` → ``filled``; blank → ``unknown``."""
    return _status_name(raw_status.strip().rpartition(".")[2]) or "unknown"


def order_codes(client_order_ids: np.ndarray) -> np.ndarray:
    """One code per client order id; each row without an id is an order of its own."""
    codes, uniques = pd.factorize(client_order_ids)
    blank = (codes < 0) | (codes == _position(uniques, ""))
    codes[blank] = len(uniques) + np.arange(int(blank.sum()))
    return codes


def _position(values: np.ndarray | pd.Index, wanted: object) -> int:
    """The index of ``wanted`` in ``values``, or -2 (never a factorize code) when absent."""
    found = np.flatnonzero(np.asarray(values, dtype=object) == wanted)
    return int(found[0]) if len(found) else -2


def _ordered_counts(counts: pd.Series) -> pd.Series:
    """Drop zero counts; known statuses in lifecycle order, others after, alphabetically."""
    counts = counts[counts > 0]
    rank = {name: index for index, name in enumerate(STATUS_ORDER)}
    names = sorted(counts.index, key=lambda name: (rank.get(name, len(rank)), name))
    return counts.reindex(names).astype(np.int64)


def order_latency(frame: pd.DataFrame, keep: np.ndarray | None) -> Latency:
    """Submission latencies when the log has them, else blockpaca's pending_new → first fill."""
    kind = text_column(frame, "type")
    measured = number_column(frame, "latency_ms")
    rows = row_indices((kind == "submission") & np.isfinite(measured) & (measured >= 0), keep)
    if len(rows):
        return Latency(measured[rows], "submit → broker answer (ms)")
    return Latency(_fill_latency(frame, row_indices(kind == "execution", keep)), "pending_new → first fill (ms)")


def _fill_latency(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Per order: time from its first pending_new/new/accepted row to its first execution, in ms."""
    stamp = number_column(frame, "timestamp", rows)
    codes, names = _labels(text_column(frame, "status", rows), _status_name)
    starts = np.isin(np.array(names, dtype=object), ["pending_new", "new", "accepted"])
    opened = starts[codes] & np.isfinite(stamp)
    executed = (number_column(frame, "executed_qty", rows) > 0) & np.isfinite(stamp)
    if not opened.any() or not executed.any():
        return np.empty(0)
    orders = order_codes(text_column(frame, "client_order_id", rows))
    start = pd.Series(stamp[opened]).groupby(orders[opened]).min()
    end = pd.Series(stamp[executed]).groupby(orders[executed]).min()
    waits = (end - start.reindex(end.index)).to_numpy() * 1000.0
    return waits[np.isfinite(waits) & (waits >= 0)]


def ms_text(value: float) -> str:
    """A latency for a label: three significant digits, in seconds from 1 000 ms on."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
