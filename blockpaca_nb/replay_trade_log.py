"""A replay's trade log as a DataFrame, made column by column from its records.

A busy year is over two million rows. Made a row at a time by the live recorder's row functions,
written as CSV and read back, `r.trade_log` took five times as long as the replay itself (46.6 s
for a year of the quickstart's momentum). Here each order's columns are made once, by the live
recorder's own `order_columns`, and spread over its rows; what changes from one event to the next
(times, fills, statuses, an exit's quantity) comes straight from the records' arrays. Rows the
broker or the validation refused go through the live `submission_row`, then into the columns all
at once. The CSV text (`trade_log_csv`: what a session's file would hold, byte for byte) is still
made row by row by the live path; a test holds that reading it gives this frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .recorder import event_note, order_columns, raw_status, submission_row
from .replay_records import (
    EVENT,
    FILL_PRICE,
    FILL_QTY,
    FILLED_NOTIONAL,
    FILLED_QTY,
    REFUSED,
    TIME,
    UNUSED,
    Records,
    entry_of,
)
from .scrub import scrub_text
from .tradelog import COLUMN_TYPES, COLUMNS, FLOAT_COLUMNS, cell, typed_trade_log

if TYPE_CHECKING:
    import pandas as pd

NUMBER_COLUMNS = frozenset((*FLOAT_COLUMNS, "worker"))  # empty in the CSV when None
_ORDER_TEXT = ("client_order_id", "ticker", "side", "action", "order_id", "order_type", "strategy")

Refusal = Callable[[Any, float], Mapping[str, Any]]  # a refused record's (details, time) -> the worker's result


def trade_log_frame(records: Records, orders: Mapping[str, Any], refusal: Refusal) -> pd.DataFrame:
    """The trade log of `records` (the broker's `orders` name each exit's entry); `refusal` makes a
    refused record's result as the recorder would have been handed it."""
    import pandas as pd

    table = _Table(len(records))
    kinds, numbers = records.arrays()
    taken = np.flatnonzero((kinds != REFUSED) & (kinds != UNUSED))  # rows of the broker's orders
    orders_of_rows = _Orders([records.refs[k] for k in taken.tolist()], orders)
    event = kinds[taken] == EVENT
    _events(table, records, taken[event], orders_of_rows, orders_of_rows.place[event], numbers)
    _accepted(table, taken[~event], orders_of_rows, orders_of_rows.place[~event], numbers)
    del orders_of_rows  # its lists are a busy year's largest: let them go before the frame is made
    refused = np.flatnonzero(kinds == REFUSED)
    table.rows(refused, [submission_row(refusal(records.refs[k], numbers[k, TIME])) for k in refused.tolist()])
    frame = pd.DataFrame({column: table.typed(column) for column in COLUMNS})
    return typed_trade_log(frame if (kinds != UNUSED).all() else frame[kinds != UNUSED].reset_index(drop=True))


class _Table:
    """The trade log's columns as arrays, filled kind by kind at the rows' places."""

    def __init__(self, n: int) -> None:
        self.columns: dict[str, np.ndarray] = {
            column: np.full(n, np.nan) if column in FLOAT_COLUMNS else np.full(n, "", dtype=object)
            for column in COLUMNS
        }
        self.columns["worker"] = np.full(n, None, dtype=object)  # an integer, or none

    def put(self, rows: np.ndarray, **values: Any) -> None:
        for column, value in values.items():
            self.columns[column][rows] = value

    def rows(self, places: np.ndarray, rows: list[Mapping[str, Any]]) -> None:
        """Rows made by the live recorder, cleaned as the CSV writer cleans its cells."""
        for column in COLUMNS:
            cells = [cell(row[column]) for row in rows]
            if column in NUMBER_COLUMNS:
                cells = [None if value == "" else value for value in cells]
            self.columns[column][places] = _floats(cells) if column in FLOAT_COLUMNS else _objects(cells)

    def typed(self, column: str) -> pd.Series:
        """The column as the trade log types it, its array let go (a busy year's columns are large)."""
        import pandas as pd

        return pd.Series(self.columns.pop(column), copy=False).astype(COLUMN_TYPES[column])


class _Orders:
    """The distinct orders of a list of rows, and each one's own columns made once by the recorder."""

    def __init__(self, refs: list[Any], orders: Mapping[str, Any]) -> None:
        self.place, self.distinct = _distinct(refs)  # each row's order, as a place in `distinct`
        self.entries = [entry_of(order, orders) for order in self.distinct]
        self.values: dict[str, list[Any]] = {}  # column -> one value per distinct order
        for order, entry in zip(self.distinct, self.entries, strict=True):
            for column, value in order_columns(order_fields(order), entry).items():
                self.values.setdefault(column, []).append(value)

    def column(self, name: str, place: np.ndarray) -> np.ndarray:
        """Column `name` for rows whose orders are at `place`."""
        values = self.values.get(name, [])
        return (_floats(values) if name in FLOAT_COLUMNS else _objects(values))[place]


def _events(
    table: _Table, records: Records, rows: np.ndarray, orders: _Orders, place: np.ndarray, numbers: np.ndarray
) -> None:
    """The broker's events: each order's own columns spread over its rows; the rest row by row."""
    for column in (*_ORDER_TEXT, "qty", "limit_price", "worker"):
        table.put(rows, **{column: orders.column(column, place)})
    table.put(rows, qty=_qty_then(records, rows, table.columns["qty"][rows]))
    names = np.array(records.names.names, dtype=object)
    events = np.frombuffer(bytes(records.events), dtype=np.uint8)[rows]
    statuses = np.frombuffer(bytes(records.statuses), dtype=np.uint8)[rows]
    table.put(rows, type="execution", event=names[events], status=names[statuses])
    table.put(rows, raw_status=np.array([raw_status(name) for name in names], dtype=object)[statuses])
    table.put(rows, reason=_reasons(records.names.names, events, orders, place))
    _event_numbers(table, rows, numbers[rows])


def _qty_then(records: Records, rows: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """The ordered quantity at each event: an exit's, shrunk by its sibling's partial fill, as it was."""
    if records.qtys:
        kept = np.fromiter(records.qtys.keys(), dtype=np.intp, count=len(records.qtys))
        qty[np.searchsorted(rows, kept)] = _floats(list(records.qtys.values()))
    return qty


def _event_numbers(table: _Table, rows: np.ndarray, numbers: np.ndarray) -> None:
    filled, notional, fill = numbers[:, FILLED_QTY], numbers[:, FILLED_NOTIONAL], numbers[:, FILL_QTY]
    average = np.divide(notional, filled, out=np.full(len(rows), np.nan), where=filled != 0)
    traded = fill > 0
    table.put(rows, timestamp=numbers[:, TIME], filled_qty=filled, filled_avg_price=average)
    table.put(rows, executed_qty=np.nan_to_num(filled, nan=0.0), executed_price=np.nan_to_num(average, nan=0.0))
    price = numbers[:, FILL_PRICE]
    table.put(rows, fill_qty=np.where(traded, fill, np.nan), fill_price=np.where(traded, price, np.nan))


def _reasons(names: list[str], events: np.ndarray, orders: _Orders, place: np.ndarray) -> np.ndarray:
    """Each event's note: the same for every plain order's event of one name; an exit's names its entry."""
    plain = np.array([scrub_text(event_note(name, {})) for name in names], dtype=object)
    reasons = plain[events]
    exits = np.array([entry is not None for entry in orders.entries], dtype=bool)
    notes: dict[tuple[int, int], str] = {}  # (order, event) -> its note
    for k in np.flatnonzero(exits[place]).tolist():
        key = (int(place[k]), int(events[k]))
        if key not in notes:
            order, entry = orders.distinct[key[0]], orders.entries[key[0]]
            notes[key] = scrub_text(event_note(names[key[1]], order_fields(order), entry))
        reasons[k] = notes[key]
    return reasons


def _accepted(table: _Table, rows: np.ndarray, orders: _Orders, place: np.ndarray, numbers: np.ndarray) -> None:
    """The workers' answers (in a replay, the broker's acceptance): one per order, its ticket as sent.
    An accepted order is one of ours and no exit, so its own columns read as its ticket would."""
    table.put(rows, type="submission", status="accepted", raw_status=raw_status("accepted"), event="accepted")
    for column in (*_ORDER_TEXT, "qty", "limit_price"):
        table.put(rows, **{column: orders.column(column, place)})
    table.put(rows, timestamp=numbers[rows, TIME], executed_qty=0.0, executed_price=0.0, worker=0, latency_ms=0.0)


def _distinct(orders: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Each row's order as a place in the list of distinct orders (an order has several events)."""
    places: dict[int, int] = {}
    distinct: list[Any] = []
    place = []
    for order in orders:
        found = places.get(id(order))
        if found is None:
            found = places[id(order)] = len(distinct)
            distinct.append(order)
        place.append(found)
    return np.array(place, dtype=np.intp), distinct


def order_fields(order: Any) -> dict[str, Any]:
    """The broker's order as the stream's message names it (the fields the rows read); its quantity
    as Alpaca shows it (none for a notional order)."""
    return {"id": order.id, "client_order_id": order.client_order_id, "symbol": order.symbol, "side": order.side,
            "type": order.type, "qty": order.shown_qty, "limit_price": order.limit_price}  # fmt: skip


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)
