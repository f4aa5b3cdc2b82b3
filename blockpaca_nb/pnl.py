"""P&L from fills: average-cost accounting per ticker, longs and shorts, vectorised.

One row per fill: the ticker's position after it, realized P&L (closing quantity × (price − average
cost), negated for shorts), unrealized (the open position marked to the ticker's latest price) and
the average cost of what is still open. A fill that crosses zero closes the old position at the
average cost and opens the rest at its price.

A session can log a million rows, so nothing here loops over rows in Python: the average cost is a
linear recurrence solved with a parallel prefix scan in numpy. The trade-log plots, the live ledger
and replay all use this one implementation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .order_stats import order_codes
from .orders import ACTIONS_BY_SIDE, strategy_from_client_order_id
from .tradelog_frame import as_text, number_column, read_source, row_indices, text_column, ticker_rows, wanted_tickers

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


_QTY_SCALE = 1_000_000_000  # quantities are summed in integer billionths of a share: exact


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
    frame = read_source(source)
    pnl = account_for(fills_of(frame, ticker_rows(frame, wanted_tickers(tickers))))
    return pnl.loc[:, list(PNL_COLUMNS)]


def fills_of(frame: pd.DataFrame, keep: np.ndarray | None) -> pd.DataFrame:
    """Return the execution rows that executed something, in time order, with a signed side.

    A fill needs a ticker, a finite time, a positive price and quantity, and a side (from
    ``side``, or else from blockpaca's ``action``); rows lacking one are left out. Each fill is
    counted once: see :func:`fill_columns`.
    """
    kind = text_column(frame, "type")
    qty, price = fill_columns(frame, kind == "execution")
    stamp = number_column(frame, "timestamp")
    rows = row_indices((kind == "execution") & (price > 0) & (qty > 0) & np.isfinite(stamp), keep)
    ticker = as_text(text_column(frame, "ticker", rows))
    sign = _side_signs(text_column(frame, "side", rows), text_column(frame, "action", rows))
    usable = (sign != 0) & (ticker != "")
    rows = rows[usable]
    fills = pd.DataFrame(
        {
            "timestamp": stamp[rows],
            "ticker": ticker[usable],
            "sign": sign[usable],
            "qty": qty[rows],
            "price": price[rows],
            "client_order_id": as_text(text_column(frame, "client_order_id", rows)),
            "action": as_text(text_column(frame, "action", rows)),
        }
    )
    fills["strategy"] = _strategies(frame, rows, fills["client_order_id"].to_numpy())
    return fills.sort_values("timestamp", kind="stable", ignore_index=True)


def _strategies(frame: pd.DataFrame, rows: np.ndarray, client_order_ids: np.ndarray) -> np.ndarray:
    """The strategy each fill's order belongs to: the log's `strategy` column (a bracket's exit has
    an id of the broker's, its entry's strategy is in the column), else what our client id says."""
    if "strategy" in frame.columns:
        return as_text(text_column(frame, "strategy", rows))
    return np.array([strategy_from_client_order_id(cid) for cid in client_order_ids], dtype=object)


def fill_columns(frame: pd.DataFrame, execution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(quantity, price) each row executed itself, NaN where it executed nothing.

    Our logs say it in ``fill_qty``/``fill_price``. blockpaca's ten columns only hold the order's
    cumulative ``executed_qty`` and average ``executed_price`` on every row, so there a row's fill is
    what it adds to the order's largest total so far (rows of one order in log order), at the price
    that moves the order's average from the one before to its own.
    """
    fill_qty = number_column(frame, "fill_qty")
    if np.isfinite(fill_qty).any():
        return fill_qty, number_column(frame, "fill_price")
    return _fills_from_totals(frame, execution)


def _fills_from_totals(frame: pd.DataFrame, execution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row fills from cumulative quantities and average prices (see :func:`fill_columns`)."""
    total, average = number_column(frame, "executed_qty"), number_column(frame, "executed_price")
    qty, price = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    rows = np.flatnonzero(execution & (total > 0) & (average > 0))
    steps = pd.DataFrame({"order": order_codes(text_column(frame, "client_order_id", rows)), "total": total[rows]})
    steps["value"] = steps["total"] * average[rows]
    before = steps.groupby("order")["total"].cummax().groupby(steps["order"]).shift(1).fillna(0.0)
    grows = (steps["total"] > before + 1e-9).to_numpy()
    rows, steps = rows[grows], steps[grows]
    previous = steps.groupby("order")[["total", "value"]].shift(1).fillna(0.0)
    qty[rows] = (steps["total"] - previous["total"]).to_numpy()
    price[rows] = ((steps["value"] - previous["value"]).to_numpy() / qty[rows]).round(6)
    return qty, price


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


def account_for(fills: pd.DataFrame) -> pd.DataFrame:
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
            "strategy": fills["strategy"].to_numpy(),
            "ms": micros / 1e3,
            "realized_step": state["realized_step"],
            "unrealized_step": state["unrealized_step"],
        }
    )
