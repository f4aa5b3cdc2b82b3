"""Plotly figures from a trade log: fills over prices, P&L, positions, order statuses, latency.

:func:`plot_trade_log` draws one figure of four rows from a trade log (a CSV path or the
DataFrame :func:`~blockpaca_nb.tradelog.load_trade_log` returns, ours or blockpaca 0.1.2's):

1. every fill over the path of fill prices, buys ▲ green and sells ▼ red, sized by quantity;
2. cumulative P&L: realized (average-cost accounting, longs and shorts) plus unrealized
   (each open position marked to its ticker's latest fill price);
3. the position of each ticker;
4. how many orders ended in each status, and the latency distribution.

:func:`pnl_frame` gives the accounting behind rows 2 and 3 as a DataFrame, one row per fill.

A session can log a million rows, so nothing here loops over rows in Python: the average
cost is a linear recurrence solved with a parallel prefix scan in numpy, the time series are
WebGL traces (``Scattergl``), and each trace keeps at most ``max_points`` points by min-max
decimation, which always keeps a trace's first and last points and its extremes. Times are
sent to plotly as milliseconds since the epoch on date axes (UTC): plotly encodes numeric
arrays compactly, where datetimes would travel as long strings.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .errors import ConfigurationError, show_value
from .orders import ACTIONS_BY_SIDE
from .tradelog import BLOCKPACA_COLUMNS, load_trade_log

__all__ = ["PNL_COLUMNS", "REQUIRED_COLUMNS", "decimate", "plot_trade_log", "pnl_frame"]

REQUIRED_COLUMNS: tuple[str, ...] = BLOCKPACA_COLUMNS
"""Columns a DataFrame (or CSV) must have to be plotted: blockpaca 0.1.2's ten."""

PNL_COLUMNS: tuple[str, ...] = (
    "time",
    "ticker",
    "position",
    "realized",
    "unrealized",
    "total",
    "side",
    "qty",
    "price",
    "avg_cost",
    "client_order_id",
)
"""Columns of :func:`pnl_frame`: the ticker's state after each fill, then the fill itself."""

MIN_POINTS = 4
"""The smallest ``max_points``: a decimated trace keeps its first and last point and one bucket."""

TERMINAL_STATUSES = frozenset(
    {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day", "stopped", "failed", "invalid"}
)
"""Statuses after which an order changes no more; an order's final status is its last of these."""

_WORKER_STATUSES = frozenset({"accepted", "submitting"})
_STATUS_ORDER = (
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
_STATUS_COLORS = {
    "filled": "#2ca02c",
    "partially_filled": "#98df8a",
    "canceled": "#7f7f7f",
    "expired": "#c7c7c7",
    "rejected": "#d62728",
    "invalid": "#ff9896",
    "failed": "#8c1c13",
}
_OPEN_COLOR = "#1f77b4"
_BUY_COLOR = "#2ca02c"
_SELL_COLOR = "#d62728"
_PALETTE = tuple(qualitative.Plotly) + tuple(qualitative.Dark24)
_QTY_SCALE = 1_000_000_000  # quantities are summed in integer billionths of a share: exact
_LATENCY_BINS = 60
_EMPTY_TEXT = "no fills yet"


@dataclass(frozen=True)
class _Latency:
    """Latencies in milliseconds and what they measure (axis label)."""

    values: np.ndarray
    label: str

    def summary(self) -> str:
        """``n=…, p50 …, p95 …, p99 …`` (empty when nothing was measured)."""
        if len(self.values) == 0:
            return ""
        p50, p95, p99 = np.percentile(self.values, [50, 95, 99])
        return f"n={len(self.values):,}, p50 {_ms(p50)}, p95 {_ms(p95)}, p99 {_ms(p99)}"


# --------------------------------------------------------------------------- public API


def plot_trade_log(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    tickers: Sequence[str] | None = None,
    max_points: int = 20_000,
) -> go.Figure:
    """Return one plotly figure of a trade log: fills, cumulative P&L, positions, statuses, latency.

    ``source`` is a trade-log CSV path or a DataFrame with at least blockpaca's ten columns;
    ``tickers`` limits the figure to those symbols; ``max_points`` caps the points of every
    time-series trace (min-max decimation keeps each trace's shape and extremes). A log
    without fills gives a figure saying "no fills yet". Raises ConfigurationError naming
    the argument or column at fault.
    """
    limit = _check_max_points(max_points)
    wanted = _check_tickers(tickers)
    frame = _trade_log(source)
    keep = _ticker_mask(frame, wanted)
    if len(frame) == 0 or (keep is not None and not keep.any()):
        return _empty_figure(_EMPTY_TEXT if wanted is None else f"{_EMPTY_TEXT} for {', '.join(wanted)}")
    pnl = _account(_fills(frame, keep))
    latency = _latency(frame, keep)
    figure = _grid(latency)
    _add_fill_rows(figure, pnl, limit)
    _add_order_row(figure, _final_statuses(frame, keep), latency)
    return figure


def pnl_frame(source: str | os.PathLike[str] | pd.DataFrame, *, tickers: Sequence[str] | None = None) -> pd.DataFrame:
    """Return the P&L of every fill in time order, with average-cost accounting per ticker.

    One row per fill (:data:`PNL_COLUMNS`): ``position`` after the fill; ``realized`` the
    ticker's cumulative realized P&L (closing quantity × (price − average cost), negated
    for shorts); ``unrealized`` the open position marked to this fill's price (the ticker's
    latest); ``total`` their sum; then the fill (``side``, ``qty``, ``price``), the average
    cost of the open position after it (NaN when flat), and the order's client id. A fill
    that crosses zero closes the old position at the average cost and opens the rest at
    its price.
    """
    frame = _trade_log(source)
    pnl = _account(_fills(frame, _ticker_mask(frame, _check_tickers(tickers))))
    return pnl.loc[:, list(PNL_COLUMNS)]


def decimate(values: np.ndarray, max_points: int) -> np.ndarray:
    """Return the sorted indices of at most ``max_points`` (>= 4) of ``values`` that keep its shape.

    The series is cut into equal runs of points and each run keeps its minimum and its
    maximum; the first and last points are always kept. A series within the limit is kept
    whole. Cheap (two argmin/argmax passes), and unlike keeping every n-th point it never
    drops a spike.
    """
    max_points = _check_max_points(max_points)
    count = len(values)
    if count <= max_points:
        return np.arange(count)
    buckets = max((max_points - 2) // 2, 1)
    size = -(-count // buckets)
    padded = np.empty(buckets * size)
    padded[count:] = np.inf
    padded[:count] = values
    starts = np.arange(buckets) * size
    lows = starts + padded.reshape(buckets, size).argmin(axis=1)
    padded[count:] = -np.inf
    highs = starts + padded.reshape(buckets, size).argmax(axis=1)
    kept = np.concatenate(([0, count - 1], lows, highs))
    return np.unique(kept[kept < count])


# --------------------------------------------------------------------------- input


def _check_max_points(max_points: object) -> int:
    """Accept an integer of at least :data:`MIN_POINTS` (bool is not a count)."""
    if isinstance(max_points, bool) or not isinstance(max_points, int | np.integer) or max_points < MIN_POINTS:
        raise ConfigurationError(
            f"max_points={show_value(max_points)} is not valid; allowed: an integer >= {MIN_POINTS}"
        )
    return int(max_points)


def _check_tickers(tickers: object) -> list[str] | None:
    """Accept None (all tickers), one symbol, or a sequence of symbols."""
    if tickers is None:
        return None
    if isinstance(tickers, str):
        tickers = [tickers]
    if not isinstance(tickers, Sequence) or not tickers:
        raise ConfigurationError(
            f"tickers={show_value(tickers)} is not valid; allowed: None or a non-empty list of ticker strings"
        )
    bad = [ticker for ticker in tickers if not isinstance(ticker, str) or not ticker.strip()]
    if bad:
        raise ConfigurationError(f"tickers: {show_value(bad[0])} is not a ticker; allowed: strings like 'AAPL'")
    return [ticker.strip() for ticker in tickers]


def _trade_log(source: object) -> pd.DataFrame:
    """Return the trade log ``source`` names (a path) or is (a DataFrame), checked."""
    if isinstance(source, pd.DataFrame):
        return _checked_frame(source)
    if isinstance(source, str | os.PathLike):
        return _read(pathlib.Path(source).expanduser())
    raise ConfigurationError(
        f"source={show_value(source)} is not valid; allowed: a trade-log CSV path or a pandas DataFrame"
    )


def _read(path: pathlib.Path) -> pd.DataFrame:
    """Load the CSV at ``path`` once its header shows it is a trade log."""
    if not path.is_file():
        what = "a directory, not a trade-log file" if path.is_dir() else "not an existing file"
        raise ConfigurationError(f"source: {str(path)!r} is {what}")
    with open(path, encoding="utf-8", errors="replace") as file:
        header = file.readline().strip()
    if header:
        _require_columns(set(header.split(",")), f"source: {str(path)!r}")
    try:
        return load_trade_log(path)
    except (ValueError, pd.errors.ParserError) as error:
        raise ConfigurationError(f"source: {str(path)!r} is not a readable trade log ({error})") from None


def _checked_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a DataFrame's columns; coerce numbers given as text (without touching the caller's frame)."""
    _require_columns(set(frame.columns), "source: the DataFrame")
    numeric = ("executed_price", "executed_qty", "timestamp", "latency_ms")
    wrong = [c for c in numeric if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])]
    if not wrong:
        return frame
    return frame.assign(**{column: pd.to_numeric(frame[column], errors="coerce") for column in wrong})


def _require_columns(present: set[str], what: str) -> None:
    missing = [column for column in REQUIRED_COLUMNS if column not in present]
    if missing:
        names = ", ".join(repr(column) for column in missing)
        raise ConfigurationError(
            f"{what} is missing trade-log column(s) {names}; required: {', '.join(REQUIRED_COLUMNS)}"
        )


def _ticker_mask(frame: pd.DataFrame, tickers: list[str] | None) -> np.ndarray | None:
    """Rows of the wanted tickers, or None for all rows (saves a million-row mask)."""
    if tickers is None:
        return None
    return frame["ticker"].isin(tickers).to_numpy()


def _text(frame: pd.DataFrame, column: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A text column as an object array (rows selected), without copying a whole column.

    Missing values stay as they are (NaN, None): cleaning a million rows costs more than
    the comparisons that read them; :func:`_clean` blanks a selection when it matters.
    """
    values = frame[column].to_numpy(dtype=object)
    return values if rows is None else values[rows]


def _clean(values: np.ndarray) -> np.ndarray:
    """Missing values as "" and everything as text (for hover labels and group keys).

    A loaded log is text already and is returned as it is; only a caller's odd DataFrame
    (numbers or None in a text column) pays for the conversion.
    """
    if pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty"):
        return values
    return np.where(pd.isna(values), "", values).astype(str).astype(object)


def _numbers(frame: pd.DataFrame, column: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A numeric column as float64 (rows selected), NaN for missing values or a missing column."""
    if column not in frame.columns:
        return np.full(len(frame) if rows is None else len(rows), np.nan)
    values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values if rows is None else values[rows]


def _rows(mask: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """Indices where ``mask`` (and ``keep``, when filtering tickers) hold."""
    return np.flatnonzero(mask if keep is None else mask & keep)


# --------------------------------------------------------------------------- accounting


def _fills(frame: pd.DataFrame, keep: np.ndarray | None) -> pd.DataFrame:
    """Return the execution rows that executed something, in time order, with a signed side.

    A fill needs a ticker, a finite time, a positive price and quantity, and a side (from
    ``side``, or else from blockpaca's ``action``); rows lacking one are left out.
    """
    kind = _text(frame, "type")
    price = _numbers(frame, "executed_price")
    qty = _numbers(frame, "executed_qty")
    stamp = _numbers(frame, "timestamp")
    rows = _rows((kind == "execution") & (price > 0) & (qty > 0) & np.isfinite(stamp), keep)
    ticker = _clean(_text(frame, "ticker", rows))
    sign = _side_signs(_text(frame, "side", rows), _text(frame, "action", rows))
    usable = (sign != 0) & (ticker != "")
    rows = rows[usable]
    fills = pd.DataFrame(
        {
            "timestamp": stamp[rows],
            "ticker": ticker[usable],
            "sign": sign[usable],
            "qty": qty[rows],
            "price": price[rows],
            "client_order_id": _clean(_text(frame, "client_order_id", rows)),
            "action": _clean(_text(frame, "action", rows)),
        }
    )
    return fills.sort_values("timestamp", kind="stable", ignore_index=True)


def _side_signs(side: np.ndarray, action: np.ndarray) -> np.ndarray:
    """+1 for buys, -1 for sells, 0 when neither the side nor the action tells."""
    codes, names = pd.factorize(side)
    by_side = np.array([_sign_of_side(name) for name in names] + [0], dtype=np.int8)
    signs = by_side[codes]
    unknown = signs == 0
    if unknown.any():
        action_codes, actions = pd.factorize(action[unknown])
        by_action = np.array([_sign_of_action(name) for name in actions] + [0], dtype=np.int8)
        signs[unknown] = by_action[action_codes]
    return signs


def _sign_of_side(side: object) -> int:
    """Read ``buy``/``sell`` in any case, also alpaca-py's ``OrderSide.BUY`` spelling."""
    text = str(side).strip().lower().removeprefix("orderside.")
    return {"buy": 1, "sell": -1}.get(text, 0)


def _sign_of_action(action: object) -> int:
    """+1/-1 for one of blockpaca's actions (``buy_to_cover``, ``short_sell`` ...), else 0."""
    text = str(action).strip().lower()
    return next((1 if side == "buy" else -1 for side, names in ACTIONS_BY_SIDE.items() if text in names), 0)


def _account(fills: pd.DataFrame) -> pd.DataFrame:
    """Average-cost accounting of ``fills`` (time order): one row per fill, see :func:`pnl_frame`.

    The work is done per ticker in one pass of array operations over the fills grouped by
    ticker (stable, so time order holds inside each group), then put back in time order.
    """
    codes, _ = pd.factorize(fills["ticker"])
    order = np.argsort(codes, kind="stable")
    state = _ticker_states(
        codes[order], fills["sign"].to_numpy()[order], fills["qty"].to_numpy()[order], fills["price"].to_numpy()[order]
    )
    in_time = np.empty_like(order)
    in_time[order] = np.arange(len(order))
    columns = {name: values[in_time] for name, values in state.items()}
    return _pnl_table(fills, columns)


def _ticker_states(codes: np.ndarray, sign: np.ndarray, qty: np.ndarray, price: np.ndarray) -> dict[str, np.ndarray]:
    """Position, average cost and P&L after each fill; fills grouped by ticker code, in time order."""
    units = np.rint(qty * _QTY_SCALE).astype(np.int64) * sign
    after = pd.Series(units).groupby(codes, sort=False).cumsum().to_numpy()
    before = after - units
    avg = _average_costs(before, after, np.abs(units) / _QTY_SCALE, price)
    avg_before = np.concatenate(([0.0], avg[:-1]))
    closes = (np.sign(units) == -np.sign(before)) & (before != 0)
    closed = np.where(closes, np.minimum(np.abs(units), np.abs(before)), 0) / _QTY_SCALE
    realized_step = closed * (price - avg_before) * np.sign(before)
    realized = pd.Series(realized_step).groupby(codes, sort=False).cumsum().to_numpy()
    position = after / _QTY_SCALE
    unrealized = position * (price - avg) + 0.0  # + 0.0 turns -0.0 (flat shorts) into 0.0
    unrealized_step = unrealized - _previous_in_group(unrealized, codes)
    return {
        "position": position,
        "avg_cost": np.where(after != 0, avg, np.nan),
        "realized": realized,
        "unrealized": unrealized,
        "realized_step": realized_step,
        "unrealized_step": unrealized_step,
    }


def _average_costs(before: np.ndarray, after: np.ndarray, qty: np.ndarray, price: np.ndarray) -> np.ndarray:
    """Average cost of the open position after each fill (positions in integer units).

    avg_k = alpha_k * avg_(k-1) + beta_k, where a fill that adds to a position (or opens
    one) gives alpha = |before| / |after|, beta = qty * price / |after|; one that crosses
    zero opens at its price (alpha 0, beta price); one that reduces keeps the average
    (alpha 1, beta 0). A ticker's first fill starts from zero, so alpha = 0 there and one
    scan over all tickers never mixes them.
    """
    same_side = np.sign(after) == np.sign(before)
    grows = (before == 0) | (same_side & (np.abs(after) > np.abs(before)))
    crosses = (before != 0) & (after != 0) & ~same_side
    size = np.where(after != 0, np.abs(after), 1).astype(np.float64) / _QTY_SCALE
    alpha = np.where(grows, (np.abs(before) / _QTY_SCALE) / size, np.where(crosses, 0.0, 1.0))
    beta = np.where(grows, qty * price / size, np.where(crosses, price, 0.0))
    return _linear_scan(alpha, beta)


def _linear_scan(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Solve x_k = alpha_k * x_(k-1) + beta_k (x_(-1) = 0) for all k in O(n log n) array steps.

    Hillis-Steele prefix scan over affine maps: after the step of width w, element k holds
    the composition of the maps k-2w+1..k. Products of alpha only shrink (0 <= alpha <= 1)
    and all terms are added, never subtracted, so the result is as accurate as the loop.
    Stops early once every remaining product is zero (positions that went flat).
    """
    scale, offset = alpha.astype(np.float64), beta.astype(np.float64)
    width = 1
    while width < len(scale) and scale[width:].any():
        offset[width:] = scale[width:] * offset[:-width] + offset[width:]
        scale[width:] = scale[width:] * scale[:-width]
        width *= 2
    return offset


def _previous_in_group(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The previous value of the same group (0 for a group's first), rows grouped by code."""
    previous = np.concatenate(([0.0], values[:-1]))
    starts = np.concatenate(([True], codes[1:] != codes[:-1]))
    previous[starts] = 0.0
    return previous


def _pnl_table(fills: pd.DataFrame, state: dict[str, np.ndarray]) -> pd.DataFrame:
    """Assemble :data:`PNL_COLUMNS` (plus the step columns the portfolio line needs)."""
    micros = np.round(fills["timestamp"].to_numpy() * 1e6)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(micros, unit="us", utc=True).astype("datetime64[ns, UTC]"),
            "ticker": fills["ticker"].to_numpy(),
            "position": state["position"],
            "realized": state["realized"],
            "unrealized": state["unrealized"],
            "total": state["realized"] + state["unrealized"],
            "side": np.where(fills["sign"].to_numpy() > 0, "buy", "sell"),
            "qty": fills["qty"].to_numpy(),
            "price": fills["price"].to_numpy(),
            "avg_cost": state["avg_cost"],
            "client_order_id": fills["client_order_id"].to_numpy(),
            "action": fills["action"].to_numpy(),
            "ms": micros / 1e3,
            "realized_step": state["realized_step"],
            "unrealized_step": state["unrealized_step"],
        }
    )


# --------------------------------------------------------------------------- orders


def _final_statuses(frame: pd.DataFrame, keep: np.ndarray | None) -> pd.Series:
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
    orders = _order_codes(_text(frame, "client_order_id", rows))
    rank = np.array([_status_rank(name) for name in statuses], dtype=np.int64)[status_codes]
    score = rank * len(rows) + np.arange(len(rows))
    last = pd.Series(score).groupby(orders, sort=False).max().to_numpy() % len(rows)
    counts = np.bincount(status_codes[last], minlength=len(statuses))
    return _ordered_counts(pd.Series(counts, index=statuses))


def _status_rank(name: str) -> int:
    """Which of an order's rows tells its final status: the highest rank, then the latest."""
    if name in TERMINAL_STATUSES:
        return 2
    return 0 if name in _WORKER_STATUSES else 1


def _status_codes(frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each row's status as a code into the list of lower-case names it returns.

    A blank ``status`` falls back to ``raw_status`` (``OrderStatus.FILLED`` → ``filled``);
    validation rows are ``invalid``. Work is done on the few distinct values, not per row.
    """
    codes, names = _labels(_text(frame, "status", rows), _status_name)
    if "" in names:
        blank = codes == names.index("")
        raw_codes, raw_names = _labels(_text(frame, "raw_status", rows[blank]), _raw_status_name)
        codes[blank] = raw_codes + len(names)
        names = names + raw_names
    codes[_text(frame, "type", rows) == "validation"] = len(names)
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


def _order_codes(client_order_ids: np.ndarray) -> np.ndarray:
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
    rank = {name: index for index, name in enumerate(_STATUS_ORDER)}
    names = sorted(counts.index, key=lambda name: (rank.get(name, len(rank)), name))
    return counts.reindex(names).astype(np.int64)


def _latency(frame: pd.DataFrame, keep: np.ndarray | None) -> _Latency:
    """Submission latencies when the log has them, else blockpaca's pending_new → first fill."""
    kind = _text(frame, "type")
    measured = _numbers(frame, "latency_ms")
    rows = _rows((kind == "submission") & np.isfinite(measured) & (measured >= 0), keep)
    if len(rows):
        return _Latency(measured[rows], "submit → broker answer (ms)")
    return _Latency(_fill_latency(frame, _rows(kind == "execution", keep)), "pending_new → first fill (ms)")


def _fill_latency(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Per order: time from its first pending_new/new/accepted row to its first execution, in ms."""
    stamp = _numbers(frame, "timestamp", rows)
    codes, names = _labels(_text(frame, "status", rows), _status_name)
    starts = np.isin(np.array(names, dtype=object), ["pending_new", "new", "accepted"])
    opened = starts[codes] & np.isfinite(stamp)
    executed = (_numbers(frame, "executed_qty", rows) > 0) & np.isfinite(stamp)
    if not opened.any() or not executed.any():
        return np.empty(0)
    orders = _order_codes(_text(frame, "client_order_id", rows))
    start = pd.Series(stamp[opened]).groupby(orders[opened]).min()
    end = pd.Series(stamp[executed]).groupby(orders[executed]).min()
    waits = (end - start.reindex(end.index)).to_numpy() * 1000.0
    return waits[np.isfinite(waits) & (waits >= 0)]


# --------------------------------------------------------------------------- figure


def _grid(latency: _Latency) -> go.Figure:
    """Four rows: fills, P&L and positions span both columns; statuses and latency share the last."""
    figure = make_subplots(
        rows=4,
        cols=2,
        specs=[[{"colspan": 2}, None], [{"colspan": 2}, None], [{"colspan": 2}, None], [{}, {}]],
        row_heights=[0.36, 0.22, 0.2, 0.22],
        vertical_spacing=0.07,
        horizontal_spacing=0.1,
        subplot_titles=(
            "Fills over fill price",
            "Cumulative P&L (realized + unrealized, average cost)",
            "Position",
            "Orders by final status",
            f"Latency ({latency.summary()})" if len(latency.values) else "Latency",
        ),
    )
    for row in (1, 2, 3):
        figure.update_xaxes(type="date", row=row, col=1)
    for row in (2, 3):
        figure.update_xaxes(matches="x", row=row, col=1)
    figure.update_xaxes(title_text="time (UTC)", row=3, col=1)
    figure.update_yaxes(title_text="fill price", row=1, col=1)
    figure.update_yaxes(title_text="P&L", row=2, col=1)
    figure.update_yaxes(title_text="shares", row=3, col=1)
    figure.update_yaxes(title_text="orders", row=4, col=1)
    figure.update_xaxes(title_text=latency.label, row=4, col=2)
    figure.update_yaxes(title_text="count", row=4, col=2)
    figure.update_layout(height=1000, hovermode="closest", template="plotly_white", margin={"r": 160})
    return figure


def _add_fill_rows(figure: go.Figure, pnl: pd.DataFrame, limit: int) -> None:
    """Rows 1-3: per ticker its price path and fills, its P&L (hidden until asked), its position.

    Traces are built as plain dicts and added in one call: plotly validates each once.
    """
    if pnl.empty:
        _annotate(figure, _EMPTY_TEXT, row=1, col=1)
        return
    traces: list[tuple[int, dict[str, object]]] = []
    size_scale = float(pnl["qty"].max())
    for number, (ticker, part) in enumerate(_by_ticker(pnl)):
        color = _PALETTE[number % len(_PALETTE)]
        traces += [(1, trace) for trace in _fill_traces(ticker, part, color, limit, size_scale)]
        traces.append((2, _line(part, "total", f"{ticker} P&L", color, limit, visible="legendonly", legend="legend2")))
        traces.append(
            (3, _line(part, "position", f"{ticker} position", color, limit, legendgroup=ticker, showlegend=False))
        )
    traces += [(2, trace) for trace in _portfolio_pnl(pnl, limit)]
    figure.add_traces([trace for _, trace in traces], rows=[row for row, _ in traces], cols=[1] * len(traces))
    _place_legends(figure)


def _by_ticker(pnl: pd.DataFrame) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The plotted columns of each ticker (alphabetical), in time order: slices of one sorted copy."""
    codes, tickers = pd.factorize(pnl["ticker"], sort=True)
    order = np.argsort(codes, kind="stable")
    names = ("ms", "price", "qty", "side", "total", "position", "client_order_id", "action")
    columns = {name: pnl[name].to_numpy()[order] for name in names}
    bounds = np.searchsorted(codes[order], np.arange(len(tickers) + 1))
    return [
        (str(ticker), {name: values[bounds[i] : bounds[i + 1]] for name, values in columns.items()})
        for i, ticker in enumerate(tickers)
    ]


def _fill_traces(
    ticker: str, part: dict[str, np.ndarray], color: str, limit: int, size_scale: float
) -> list[dict[str, object]]:
    """The ticker's fill-price path, then its buys and its sells as markers."""
    traces = [_line(part, "price", ticker, color, limit, legendgroup=ticker)]
    for side, symbol, fill_color in (("buy", "triangle-up", _BUY_COLOR), ("sell", "triangle-down", _SELL_COLOR)):
        chosen = part["side"] == side
        fills = {name: values[chosen] for name, values in part.items()}
        traces.append(_markers(fills, f"{ticker} {side}", symbol, (fill_color, color), limit, size_scale, ticker))
    return traces


def _line(
    part: dict[str, np.ndarray], column: str, name: str, color: str, limit: int, dash: str = "solid", **options: object
) -> dict[str, object]:
    """A WebGL step line of ``column`` over time, decimated to ``limit`` points."""
    values = part[column]
    kept = decimate(values, limit)
    return {
        "type": "scattergl",
        "x": part["ms"][kept],
        "y": values[kept],
        "name": name,
        "mode": "lines",
        "line": {"color": color, "shape": "hv", "width": 1.5, "dash": dash},
        "hovertemplate": f"{name}: %{{y:,.6~f}}<br>%{{x|%Y-%m-%d %H:%M:%S.%L}}<extra></extra>",
        **options,
    }


def _markers(
    fills: dict[str, np.ndarray],
    name: str,
    symbol: str,
    colors: tuple[str, str],
    limit: int,
    size_scale: float,
    group: str,
) -> dict[str, object]:
    """WebGL triangles sized by quantity (fill colour, edge colour); hover: order, action, qty, price."""
    kept = decimate(fills["price"], limit)
    qty = fills["qty"][kept]
    return {
        "type": "scattergl",
        "x": fills["ms"][kept],
        "y": fills["price"][kept],
        "name": name,
        "mode": "markers",
        "legendgroup": group,
        "showlegend": False,
        "marker": {
            "symbol": symbol,
            "color": colors[0],
            "size": np.rint(6 + 10 * np.sqrt(qty / size_scale)).astype(np.uint8),  # 1 byte a point in JSON
            "line": {"color": colors[1], "width": 1},
        },
        "text": fills["client_order_id"][kept] + "<br>" + fills["action"][kept],
        "customdata": qty,
        "hovertemplate": (
            f"<b>{name}</b> %{{customdata:,.9~f}} @ %{{y:,.6~f}}<br>%{{text}}"
            "<br>%{x|%Y-%m-%d %H:%M:%S.%L}<extra></extra>"
        ),
    }


def _portfolio_pnl(pnl: pd.DataFrame, limit: int) -> list[dict[str, object]]:
    """All tickers' total and realized P&L: running sums of each fill's change, in time order."""
    realized = np.cumsum(pnl["realized_step"].to_numpy())
    total = realized + np.cumsum(pnl["unrealized_step"].to_numpy())
    portfolio = {"ms": pnl["ms"].to_numpy(), "total": total, "realized": realized}
    return [
        _line(portfolio, "total", "total P&L", "#111111", limit, legend="legend2"),
        _line(portfolio, "realized", "realized P&L", "#7f7f7f", limit, legend="legend2", dash="dot"),
    ]


def _place_legends(figure: go.Figure) -> None:
    """Tickers' legend beside the fills; the P&L legend beside the P&L row."""
    top_fills = figure.layout.yaxis.domain[1]
    top_pnl = figure.layout.yaxis2.domain[1]
    figure.update_layout(
        legend={"x": 1.01, "y": top_fills, "yanchor": "top", "title": {"text": "ticker"}},
        legend2={"x": 1.01, "y": top_pnl, "yanchor": "top", "title": {"text": "P&L"}},
    )


def _add_order_row(figure: go.Figure, statuses: pd.Series, latency: _Latency) -> None:
    """Row 4: the status bar chart and the latency histogram (or a note when there is none)."""
    if statuses.empty:
        _annotate(figure, "no orders", row=4, col=1)
    else:
        figure.add_trace(_status_bar(statuses), row=4, col=1)
    if len(latency.values) == 0:
        _annotate(figure, "no latency measured", row=4, col=2)
    else:
        figure.add_trace(_latency_histogram(latency), row=4, col=2)


def _status_bar(statuses: pd.Series) -> go.Bar:
    """One bar per final status, coloured by outcome (green filled, red rejected, blue open)."""
    names = [str(name) for name in statuses.index]
    return go.Bar(
        x=names,
        y=statuses.to_numpy(),
        name="orders by status",
        text=statuses.to_numpy(),
        textposition="auto",
        marker={"color": [_STATUS_COLORS.get(name, _OPEN_COLOR) for name in names]},
        showlegend=False,
        hovertemplate="%{x}: %{y} orders<extra></extra>",
    )


def _latency_histogram(latency: _Latency) -> go.Histogram:
    """A histogram binned here (plotly receives bin centres and counts, not every value).

    Values above the 99.5th percentile fall in the last bin, so one slow outlier does not
    squash the rest; the subplot title and the trace name give the median, p95 and p99 of
    all values.
    """
    values = latency.values
    low, high = float(values.min()), float(np.percentile(values, 99.5))
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(np.clip(values, low, high), bins=_LATENCY_BINS, range=(low, high))
    return go.Histogram(
        x=(edges[:-1] + edges[1:]) / 2,
        y=counts,
        histfunc="sum",
        xbins={"start": low, "end": high, "size": (high - low) / _LATENCY_BINS},
        name=f"latency ({latency.summary()})",
        marker={"color": _OPEN_COLOR},
        showlegend=False,
        hovertemplate="%{x} ms: %{y} orders<extra></extra>",
    )


def _ms(value: float) -> str:
    """A latency for a label: three significant digits, in seconds from 1 000 ms on."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"


def _annotate(figure: go.Figure, text: str, row: int, col: int) -> None:
    """Write ``text`` in the middle of the subplot at ``row``, ``col``."""
    axes = figure.get_subplot(row, col)
    x_ref, y_ref = axes.xaxis.plotly_name.replace("axis", ""), axes.yaxis.plotly_name.replace("axis", "")
    figure.add_annotation(
        text=text, xref=f"{x_ref} domain", yref=f"{y_ref} domain", x=0.5, y=0.5, showarrow=False, font={"size": 16}
    )


def _empty_figure(text: str) -> go.Figure:
    """A figure that says there is nothing to plot yet (an empty log, or no rows for the tickers)."""
    figure = go.Figure()
    figure.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 18})
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, template="plotly_white", height=300)
    return figure
