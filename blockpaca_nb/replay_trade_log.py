"""A replay's trade log as a DataFrame, made column by column from its records.

A busy year is over two million rows. Made a row at a time by the live recorder's row functions,
written as CSV and read back, `r.trade_log` took ten times as long as the replay itself (about 45 s
for a year of the quickstart's momentum). Here each order's columns are made once, by the live
recorder's own `order_columns`, and spread over its rows; what changes from one event to the next
(times, fills, statuses) comes straight from the records' arrays. Rows the broker or the validation
refused are few and go through the live `submission_row` one by one. The CSV text (`trade_log_csv`,
what a session's file would hold byte for byte) is still made by the live path; a test holds that
reading it gives this frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .recorder import event_note, order_columns, raw_status, submission_row
from .replay_records import EVENT, FILL_PRICE, FILL_QTY, FILLED_NOTIONAL, FILLED_QTY, REFUSED, TIME, Records
from .scrub import scrub_text
from .tradelog import COLUMN_TYPES, COLUMNS, FLOAT_COLUMNS, cell, typed_trade_log

if TYPE_CHECKING:
    import pandas as pd

NUMBER_COLUMNS = frozenset((*FLOAT_COLUMNS, "worker"))  # empty in the CSV when None
_ORDER_TEXT = ("client_order_id", "ticker", "side", "action", "order_id", "order_type", "strategy")


def trade_log_frame(
    records: Records, orders: Mapping[str, Any], submission: Callable[[int, Any, float], Mapping[str, Any]]
) -> pd.DataFrame:
    """The trade log of `records` (the broker's `orders` name each exit's entry); `submission` makes
    a refused record's result (kind, reference, time) as the recorder would have been handed it."""
    import pandas as pd

    table = _Table(len(records))
    kinds, numbers = records.arrays()
    taken = np.flatnonzero(kinds != REFUSED)  # the broker's events and acceptances: rows of its orders
    book = _Orders([records.refs[k] for k in taken.tolist()], orders)
    event = kinds[taken] == EVENT
    _events(table, records, taken[event], book, book.which[event], numbers)
    _accepted(table, taken[~event], book, book.which[~event], numbers)
    for k in np.flatnonzero(kinds == REFUSED).tolist():
        table.row(k, submission_row(submission(REFUSED, records.refs[k], numbers[k, TIME])))
    del book
    return typed_trade_log(pd.DataFrame({column: table.typed(column) for column in COLUMNS}))


class _Table:
    """The trade log's columns as arrays, filled kind by kind at the rows' places."""

    def __init__(self, n: int) -> None:
        self.columns: dict[str, np.ndarray] = {
            column: np.full(n, np.nan) if column in FLOAT_COLUMNS else np.full(n, "", dtype=object)
            for column in COLUMNS
        }
        self.columns["worker"] = np.full(n, None, dtype=object)

    def put(self, rows: np.ndarray, **values: Any) -> None:
        for column, value in values.items():
            self.columns[column][rows] = value

    def typed(self, column: str) -> pd.Series:
        """The column as the trade log types it, its array let go (a busy year's columns are large)."""
        import pandas as pd

        return pd.Series(self.columns.pop(column), copy=False).astype(COLUMN_TYPES[column])

    def row(self, k: int, row: Mapping[str, Any]) -> None:
        """One row made by the live recorder, cleaned as the CSV writer cleans its cells."""
        for column in COLUMNS:
            value = cell(row[column])
            self.columns[column][k] = None if value == "" and column in NUMBER_COLUMNS else value


class _Orders:
    """The distinct orders of a list of rows; each one's own columns made once, by the live recorder."""

    def __init__(self, refs: list[Any], orders: Mapping[str, Any]) -> None:
        self.which, self.distinct = _distinct(refs)  # each row's order, as a place in `distinct`
        self.entries = [_entry_of(order, orders) for order in self.distinct]
        self.own: dict[str, list[Any]] = {}  # column -> one value per distinct order
        for order, entry in zip(self.distinct, self.entries, strict=True):
            for column, value in order_columns(_order_fields(order), entry).items():
                self.own.setdefault(column, []).append(value)

    def column(self, name: str, which: np.ndarray) -> np.ndarray:
        values = self.own.get(name, [])
        return (_floats(values) if name in FLOAT_COLUMNS else _objects(values))[which]


def _events(
    table: _Table, records: Records, rows: np.ndarray, book: _Orders, which: np.ndarray, numbers: np.ndarray
) -> None:
    """The broker's events: each order's own columns spread over its rows; the rest row by row."""
    for column in (*_ORDER_TEXT, "qty", "limit_price", "worker"):
        table.put(rows, **{column: book.column(column, which)})
    names = np.array([*records.names.names, ""], dtype=object)
    events = np.frombuffer(bytes(records.events), dtype=np.uint8)[rows]
    statuses = np.frombuffer(bytes(records.statuses), dtype=np.uint8)[rows]
    table.put(rows, type="execution", event=names[events], status=names[statuses])
    table.put(rows, raw_status=np.array([raw_status(n) for n in names], dtype=object)[statuses])
    table.put(rows, reason=_reasons(records.names.names, events, book, which))
    _event_numbers(table, rows, numbers[rows])


def _event_numbers(table: _Table, rows: np.ndarray, numbers: np.ndarray) -> None:
    filled, notional, fill = numbers[:, FILLED_QTY], numbers[:, FILLED_NOTIONAL], numbers[:, FILL_QTY]
    average = np.divide(notional, filled, out=np.full(len(rows), np.nan), where=filled != 0)
    traded = fill > 0
    table.put(rows, timestamp=numbers[:, TIME], filled_qty=filled, filled_avg_price=average)
    table.put(rows, executed_qty=np.where(filled != 0, filled, 0.0), executed_price=np.nan_to_num(average, nan=0.0))
    price = numbers[:, FILL_PRICE]
    table.put(rows, fill_qty=np.where(traded, fill, np.nan), fill_price=np.where(traded, price, np.nan))


def _reasons(names: list[str], events: np.ndarray, book: _Orders, which: np.ndarray) -> np.ndarray:
    """Each event's note: the same for every plain order's event of one name; an exit's names its entry."""
    plain = np.array([scrub_text(event_note(name, {})) for name in names], dtype=object)
    reasons = plain[events]
    exits = np.array([entry is not None for entry in book.entries], dtype=bool)
    for k in np.flatnonzero(exits[which]).tolist():
        order, entry = book.distinct[which[k]], book.entries[which[k]]
        reasons[k] = scrub_text(event_note(names[events[k]], _order_fields(order), entry))
    return reasons


def _accepted(table: _Table, rows: np.ndarray, book: _Orders, which: np.ndarray, numbers: np.ndarray) -> None:
    """The workers' answers (in a replay, the broker's acceptance): one per order, its ticket as sent."""
    table.put(rows, type="submission", status="accepted", raw_status=raw_status("accepted"), event="accepted")
    for column in (*_ORDER_TEXT, "limit_price"):
        table.put(rows, **{column: book.column(column, which)})
    sent = _floats([None if order.notional is not None else order.qty for order in book.distinct])
    table.put(rows, qty=sent[which], timestamp=numbers[rows, TIME])
    table.put(rows, executed_qty=0.0, executed_price=0.0, worker=0, latency_ms=0.0)


def _distinct(orders: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Each row's order as a place in the list of distinct orders (an order has several events)."""
    places: dict[int, int] = {}
    distinct: list[Any] = []
    which = []
    for order in orders:
        place = places.get(id(order))
        if place is None:
            place = places[id(order)] = len(distinct)
            distinct.append(order)
        which.append(place)
    return np.array(which, dtype=np.intp), distinct


def _entry_of(order: Any, orders: Mapping[str, Any]) -> str | None:
    """The client order id of the entry an exit belongs to (None for an order that is no exit)."""
    parent = orders.get(order.parent_id) if order.parent_id else None
    return parent.client_order_id if parent is not None else None


def _order_fields(order: Any) -> dict[str, Any]:
    """The broker's order as the stream's message names it (the fields the rows read)."""
    return {"id": order.id, "client_order_id": order.client_order_id, "symbol": order.symbol,
            "side": order.side, "type": order.type, "qty": order.qty, "limit_price": order.limit_price}  # fmt: skip


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)
