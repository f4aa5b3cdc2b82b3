"""What happened in a replay, in order, kept in columns: a year of orders in little memory.

A busy strategy sends hundreds of thousands of orders a year, and each becomes three or four rows
of the trade log. Kept as Python tuples and dicts that is over a kilobyte an order; kept here, an
event is a byte for its kind, a reference to its order, two small codes and six numbers in an
`array` (about 60 bytes). The rows are made from these columns only when the trade log is asked for
(replay_result.py).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

ACCEPTED, REFUSED, EVENT, UNUSED = 0, 1, 2, 3  # record kinds (unused: a place a submission never took)
NUMBERS = 6  # per record: time, filled_qty, filled_notional, fill_qty, fill_price, position_qty
TIME, FILLED_QTY, FILLED_NOTIONAL, FILL_QTY, FILL_PRICE, POSITION_QTY = range(NUMBERS)  # their places
NAN = math.nan
NOTHING = (NAN,) * NUMBERS  # a submission's numbers until it is taken (then its time)


def entry_of(order: Any, orders: Mapping[str, Any]) -> str | None:
    """The client order id of the entry an exit belongs to (None for an order that is no exit)."""
    entry = orders.get(order.parent_id) if order.parent_id else None
    return entry.client_order_id if entry is not None else None


class Names:
    """Strings stored as small codes (event names, statuses): each one kept once."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code


class Records:
    """Submissions and broker events in the order they happened, and a mark per fill."""

    def __init__(self) -> None:
        self.kinds = bytearray()
        self.refs: list[Any] = []  # the broker's order (accepted, event) or the refusal's details
        self.events = bytearray()  # event-name code (events only)
        self.statuses = bytearray()  # the order's status after the event (events only)
        self.numbers = array("d")
        self.names = Names()
        self.qtys: dict[int, float | None] = {}  # an exit's ordered qty at each of its events (it can shrink)
        # per fill: the tick, the symbol's column, the position after, cash after, the fee it paid
        self.fill_ticks, self.fill_symbols = array("l"), array("l")
        self.fill_positions, self.fill_cash, self.fill_fees = array("d"), array("d"), array("d")

    def __len__(self) -> int:
        return len(self.kinds)

    # ----------------------------------------------------------------- writing
    def reserve(self) -> int:
        """A place for a submission, before the events the broker emits while taking it."""
        self.kinds.append(REFUSED)
        self.refs.append(None)
        self.events.append(0)
        self.statuses.append(0)
        self.numbers.extend(NOTHING)
        return len(self.kinds) - 1

    def accepted(self, slot: int, order: Any, when: float) -> None:
        self.kinds[slot], self.refs[slot] = ACCEPTED, order
        self.numbers[slot * NUMBERS] = when

    def unused(self, slot: int) -> None:
        """A reserved place the submission never took (interrupted before the broker had it)."""
        self.kinds[slot] = UNUSED

    def refused(self, slot: int, kind: str, order: Any, client_order_id: str, when: float, reason: str) -> None:
        """A validation error or a broker's refusal (`order`: the fields the strategy gave, a dict, for
        the former; the validated Order for the latter)."""
        self.kinds[slot], self.refs[slot] = REFUSED, (kind, order, client_order_id, reason)
        self.numbers[slot * NUMBERS] = when

    def event(self, name: str, order: Any) -> None:
        """A broker event without a fill (new, canceled, ...)."""
        self._event(name, order)
        self.numbers.extend((order.updated_at, order.filled_qty, order.filled_notional, NAN, NAN, NAN))

    def fill_event(self, name: str, order: Any, fill: float, price: float, position: float) -> None:
        """A fill or partial fill: its size and price, and the position after it."""
        self._event(name, order)
        self.numbers.extend((order.updated_at, order.filled_qty, order.filled_notional, fill, price, position))

    def _event(self, name: str, order: Any) -> None:
        codes = self.names._codes  # the two look-ups inline: a busy year has millions of events
        code, status = codes.get(name), codes.get(order.status)
        self.kinds.append(EVENT)
        self.refs.append(order)
        self.events.append(self.names.code(name) if code is None else code)
        self.statuses.append(self.names.code(order.status) if status is None else status)
        if order.sibling is not None:  # a partial fill of its sibling may shrink it later: keep it as now
            self.qtys[len(self.kinds) - 1] = order.shown_qty

    def qty_at(self, k: int, order: Any) -> float | None:
        """The ordered quantity record `k` saw (an exit's, as it then was)."""
        return self.qtys.get(k, order.shown_qty)

    def fill(self, tick: int, symbol: int, position: float, cash: float, fee: float) -> None:
        self.fill_ticks.append(tick)
        self.fill_symbols.append(symbol)
        self.fill_positions.append(position)
        self.fill_cash.append(cash)
        self.fill_fees.append(fee)

    # ----------------------------------------------------------------- reading
    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        """Each record as (kind, ref, event, status, time, filled_qty, filled_notional, fill_qty,
        fill_price, position_qty), names decoded, NaN as None."""
        names, numbers = self.names.names, self.numbers
        for k, kind in enumerate(self.kinds):
            values = [None if v != v else v for v in numbers[k * NUMBERS : (k + 1) * NUMBERS]]
            event = names[self.events[k]] if kind == EVENT else ""
            status = names[self.statuses[k]] if kind == EVENT else ""
            yield (kind, self.refs[k], event, status, *values)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The kinds (one per record) and the numbers (a row of NUMBERS per record) as numpy arrays."""
        kinds = np.frombuffer(bytes(self.kinds), dtype=np.uint8)
        return kinds, np.frombuffer(self.numbers.tobytes(), dtype=float).reshape(-1, NUMBERS)  # a copy: safe

    def count(self, kind: int) -> int:
        return self.kinds.count(kind)
