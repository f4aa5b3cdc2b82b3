"""What a replay leaves: its trade log, equity curve, positions, orders, state and statistics.

The replay loop keeps only compact records (replay_records.py: the broker's events in columns, a
mark per fill); the tables a user reads are built from them here, once, when first asked for. The
trade log's CSV text is made by the live recorder's own row functions and written by the live CSV
format, so a replay's log reads, plots and analyses exactly like a session's; its DataFrame is made
by columns (replay_trade_log.py), and a test holds it equal to reading that text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigurationError
from .orders import action_from_client_order_id
from .performance import performance
from .replay_records import ACCEPTED, EVENT, FILL_PRICE, FILL_QTY, REFUSED, TIME, UNUSED, entry_of
from .tradelog import COLUMNS, csv_text

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from .history import Tape
    from .replayer import Replayer

NEW_YORK = "America/New_York"


class ReplayResult:
    """The outcome of `replay()`; tables are built on first use."""

    def __init__(self, runner: Replayer, elapsed: float) -> None:
        self.name = runner.name
        self.tape: Tape = runner.tape
        states = runner.states
        # the strategy's ctx.state at the end; with several strategies, each one's by name
        self.state: dict[str, Any] = next(iter(states.values())) if len(states) == 1 else states
        self.errors: list[Any] = runner.errors
        self.error_count = runner.error_count
        self.interrupted = runner.interrupted
        self.elapsed = elapsed
        self.ticks = runner.stopped_at
        self.starting_cash = runner.broker.starting_cash
        self._records = runner.records
        self._broker = runner.broker
        self._books, self._pnl_samples = runner.books, runner.pnl_samples

    def __repr__(self) -> str:
        stopped = ", interrupted" if self.interrupted else ""
        return (
            f"<ReplayResult {self.name}: {self.ticks} ticks of {len(self.tape.symbols)} symbols in "
            f"{self.elapsed:.2f} s{stopped}; final equity {self._final_equity():,.2f}{self._errors_said()}>"
        )

    def _final_equity(self) -> float:
        """The last equity (the starting cash when interrupted before the first tick)."""
        return float(self.equity.iloc[-1]) if len(self.equity) else float(self.starting_cash)

    def _errors_said(self) -> str:
        return f"; {self.error_count:,} errors (r.errors)" if self.error_count else ""

    # ----------------------------------------------------------------- the trade log
    @cached_property
    def trade_log_csv(self) -> str:
        """The trade log as CSV text, exactly as a session writes its file."""
        return csv_text(self._rows())

    @cached_property
    def trade_log(self) -> pd.DataFrame:
        """The trade log as `load_trade_log` reads a session's (blockpaca's ten columns first)."""
        from .replay_trade_log import trade_log_frame

        return trade_log_frame(self._records, self._broker.orders, _refused_result)

    def save_trade_log(self, path: str) -> None:
        with open(path, "w", encoding="utf-8", newline="") as file:
            file.write(self.trade_log_csv)

    def _rows(self) -> Iterator[dict[str, Any]]:
        from .recorder import submission_row  # the live recorder's own rows (imported when a log is made)

        orders, records = self._broker.orders, self._records
        for k, record in enumerate(records):
            kind, ref, when = record[0], record[1], record[4]
            if kind == UNUSED:
                continue
            if kind == EVENT:
                row = _event_row(record, records.qty_at(k, ref), orders)
            else:
                row = submission_row(_accepted_result(ref, when) if kind == ACCEPTED else _refused_result(ref, when))
            yield {column: row[column] for column in COLUMNS}

    # ----------------------------------------------------------------- equity, positions, orders
    @cached_property
    def _held(self) -> np.ndarray:
        """Shares of each symbol held at each tick, from the mark each fill left."""
        n, k = self.ticks, len(self.tape.symbols)
        held = np.zeros((n, k))
        records = self._records
        if not len(records.fill_ticks) or not n:
            return held
        ticks, symbols = np.asarray(records.fill_ticks), np.asarray(records.fill_symbols)
        after = np.asarray(records.fill_positions)
        for j in range(k):
            mine = symbols == j
            held[:, j] = _carried(ticks[mine], after[mine], n, 0.0)
        return held

    @cached_property
    def _position_values(self) -> np.ndarray:
        """Each position's value at the mid, at each tick (made once: the equity and the exposure read it)."""
        n = self.ticks
        values = self.tape.bid[:n] + self.tape.ask[:n]
        values *= 0.5
        values *= self._held
        return values

    @cached_property
    def equity(self) -> pd.Series:
        """The account's equity at each tick (cash plus positions at the mid), New York time."""
        import pandas as pd

        n = self.ticks
        cash = np.full(n, self.starting_cash)
        records = self._records
        if len(records.fill_ticks):
            ticks, cash_after = np.asarray(records.fill_ticks), np.asarray(records.fill_cash)
            cash = _carried(ticks, cash_after, n, self.starting_cash)
        values = cash + self._position_values.sum(axis=1)
        index = pd.to_datetime(self.tape.times[:n], unit="s", utc=True).tz_convert(NEW_YORK)
        return pd.Series(values, index=index, name="equity")

    @property
    def positions(self) -> pd.DataFrame:
        """What the account held when the replay ended: a live session's `s.positions` columns
        (ticker, quantity, bought_at, cost_basis), then avg_price (= bought_at), market value and
        unrealised P&L at the last mid."""
        import pandas as pd

        rows = []
        mids = dict(zip(self.tape.symbols, self.tape.mids_at(max(self.ticks - 1, 0)), strict=True))
        for position in self._broker.positions.values():
            mid = mids[position.ticker]
            rows.append(
                {
                    **position.as_blockpaca(),
                    "avg_price": position.bought_at,
                    "market_value": position.quantity * mid,
                    "unrealized_pl": position.quantity * (mid - position.bought_at),
                }
            )
        columns = ["ticker", "quantity", "bought_at", "cost_basis", "avg_price", "market_value", "unrealized_pl"]
        return pd.DataFrame(rows, columns=columns)

    @property
    def positions_by_strategy(self) -> pd.DataFrame:
        """Each strategy's book at the end, as `Session.positions_by_strategy` (several strategies)."""
        import pandas as pd

        from .books import BOOK_COLUMNS

        if self._books is None:
            raise ConfigurationError("positions_by_strategy needs several strategies; with one, see positions")
        last = max(self.ticks - 1, 0)
        marks = dict(zip(self.tape.symbols, self.tape.mids_at(last), strict=True))
        return pd.DataFrame(self._books.rows(marks), columns=list(BOOK_COLUMNS))

    @property
    def pnl_by_strategy(self) -> pd.DataFrame:
        """Each strategy's P&L (realised + unrealised at the mid) at every tick it ran, one column each."""
        import pandas as pd

        if self._books is None:
            raise ConfigurationError("pnl_by_strategy needs several strategies; with one, see equity")
        times = pd.to_datetime([t for t, _ in self._pnl_samples], unit="s", utc=True).tz_convert(NEW_YORK)
        return pd.DataFrame([pnl for _, pnl in self._pnl_samples], index=times).fillna(0.0)

    @property
    def orders(self) -> pd.DataFrame:
        """Every order the broker took, with its terms (a stop's price, the time in force, the order
        class) and its final status."""
        import pandas as pd

        columns = ["id", "client_order_id", "symbol", "side", "type", "qty", "notional", "limit_price", "stop_price",
                   "time_in_force", "order_class", "status", "filled_qty", "filled_avg_price", "created_at",
                   "filled_at"]  # fmt: skip
        rows = [[getattr(o, c) for c in columns] for o in self._broker.orders.values()]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("created_at", "filled_at"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True).dt.tz_convert(NEW_YORK)
        return frame

    @cached_property
    def fills(self) -> pd.DataFrame:
        """Every fill: time (epoch s), symbol, signed qty, price, fee (its commission and, with
        ``regulatory_fees=True``, regulatory fees)."""
        import pandas as pd

        kinds, numbers = self._records.arrays()
        rows = np.flatnonzero((kinds == EVENT) & ~np.isnan(numbers[:, FILL_QTY]))
        orders = [self._records.refs[k] for k in rows.tolist()]
        sign = np.array([1.0 if order.side == "buy" else -1.0 for order in orders])
        frame = pd.DataFrame({"time": numbers[rows, TIME], "symbol": [order.symbol for order in orders],
                              "qty": sign * numbers[rows, FILL_QTY], "price": numbers[rows, FILL_PRICE]})  # fmt: skip
        frame["fee"] = np.asarray(self._records.fill_fees)  # one mark per fill, in the same order
        return frame

    @cached_property
    def stats(self) -> pd.Series:
        """Total return, CAGR, volatility, Sharpe, Sortino, max drawdown and its dates, exposure,
        turnover, trades, win rate, average holding time (performance.py says how each is computed);
        then ``refused`` (orders refused by validation or by the broker) and ``errors`` (the strategy's
        exceptions): figures of a strategy that failed describe something else than it meant."""
        gross = np.abs(self._position_values).sum(axis=1)
        orders = self._records.count(ACCEPTED)
        fees = math.fsum(self._records.fill_fees)
        figures = performance(self.equity, self.starting_cash, self.fills, gross, orders, fees)
        figures["refused"] = refused = self._records.count(REFUSED)
        figures["errors"] = self.error_count - refused
        return figures

    # ----------------------------------------------------------------- plots
    def plot(self) -> go.Figure:
        """Equity and drawdown over the replay."""
        from .plots import equity_figure

        return equity_figure(self.equity, title=f"Replay of {self.name}")

    def plot_trades(self, **options: Any) -> go.Figure:
        """The live trade-log figure (fills over prices, P&L per ticker, order statuses)."""
        from .plots import plot_trade_log

        return plot_trade_log(self.trade_log, **options)


def _carried(ticks: np.ndarray, values: np.ndarray, n: int, before: float) -> np.ndarray:
    """Each of n ticks gets the last value set at or before it (`before` until the first)."""
    if not ticks.size:  # never set (a symbol that never filled)
        return np.full(n, before, dtype=float)
    latest = np.searchsorted(ticks, np.arange(n), side="right") - 1
    return np.where(latest >= 0, values[np.maximum(latest, 0)], before)


def _accepted_result(order: Any, when: float) -> dict[str, Any]:
    """An accepted submission as the execution worker's result for it (what the recorder logs): the
    broker's order holds what the result would say, its ticket as sent."""
    return {
        "kind": "accepted",
        "order": {"id": order.id},
        **_ticket(order.client_order_id, order.symbol, order.side, order.type, order.shown_qty, order.limit_price),
        "time": when,
        "latency_ms": 0.0,
    }


def _refused_result(details: tuple[str, Any, str, str], when: float) -> dict[str, Any]:
    """A refused submission (by the validation or the broker) as the recorder is handed it."""
    what, order, cid, reason = details
    if isinstance(order, dict):  # refused by validation: what the strategy named
        return {"kind": what, "reason": reason, "time": when, **order}
    fields = _ticket(cid, order.ticker, order.side, order.order_type, order.quantity, order.limit_price)
    return {"kind": what, "reason": reason, **fields, "time": when, "latency_ms": 0.0}


def _ticket(cid: str, ticker: str, side: str, order_type: str, qty: Any, limit: Any) -> dict[str, Any]:
    action = action_from_client_order_id(cid) or ""
    return {"client_order_id": cid, "worker": 0, "ticker": ticker, "side": side, "action": action,
            "order_type": order_type, "qty": qty, "limit_price": limit}  # fmt: skip


def _event_row(record: tuple[Any, ...], qty: float | None, orders: dict[str, Any]) -> dict[str, Any]:
    """A broker event, as the recorder turns the stream's message for it into a row (`qty`: the
    order's quantity when it happened)."""
    from .recorder import trade_update_row
    from .replay_trade_log import order_fields

    _, order, event, status, updated, filled_qty, filled_notional, fill_qty, fill_price, position_qty = record
    fields = {**order_fields(order), "qty": qty, "status": status, "filled_qty": filled_qty,
              "filled_avg_price": filled_notional / filled_qty if filled_qty else None}  # fmt: skip
    data = {"event": event, "timestamp": updated, "position_qty": position_qty, "order": fields}
    fill = (fill_qty, fill_price) if fill_qty is not None else None
    return trade_update_row(data, fill, entry_of(order, orders))
