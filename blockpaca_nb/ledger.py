"""The session's ledger: which orders are the session's, and the positions their fills made.

An Alpaca account is shared — other bots, other notebooks, long-term holdings — so "the account's
positions" are not "what this session did". Every client order id the session hands to the
execution pool is claimed here before the order can reach the broker, so a fill is attributed to
the session however early its stream event arrives; fills of orders the session did not send move
nothing here. The same fills also move the book of the strategy that sent each order (books.py).
Control actions (liquidate, the EOS) act on these positions; the account's own are a separate,
explicit scope (``liquidate(scope="account")``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .books import Books
from .fees import FeeSchedule
from .portfolio import Portfolio
from .statuses import ENDED_ORDER_STATUSES


def fill_of(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The (quantity, price) one trade-log row adds to its order's position, or None: its fill
    columns (a fill event's own fill, or what a change recovered through REST executed). The
    ``executed_*`` columns are the order's running total (blockpaca's meaning), never added up."""
    quantity, price = row.get("fill_qty"), row.get("fill_price")
    if not quantity or price is None:
        return None
    return float(quantity), float(price)


class Ledger:
    """The session's orders (by client order id) and its positions (from their fills only)."""

    def __init__(self, fee_schedule: FeeSchedule | None = None) -> None:
        self._owned: set[str] = set()
        self._lock = threading.Lock()
        self.positions = Portfolio()
        self.books = Books(fee_schedule)  # the same fills, by the strategy that sent each order (see books.py)

    def claim(self, client_order_ids: Iterable[str]) -> None:
        """These orders are the session's (called before they can reach the broker)."""
        with self._lock:
            self._owned.update(client_order_ids)

    def owns(self, client_order_id: object) -> bool:
        return isinstance(client_order_id, str) and client_order_id in self._owned

    def owned(self) -> list[str]:
        """Every client order id the session claimed (a copy)."""
        with self._lock:
            return list(self._owned)

    def apply(self, row: Mapping[str, Any], marks: Mapping[str, float] | None = None) -> bool:
        """Move the session's position, and its strategy's book, by the fill in ``row`` if the order
        is the session's (``marks``: prices to record the books' P&L at, when given)."""
        if not self.owns(row.get("client_order_id")):
            return False
        self.books.apply(row, ended=row.get("status") in ENDED_ORDER_STATUSES, marks=marks)
        fill = fill_of(row)
        if fill is None:
            return False
        self.positions.apply_fill(str(row["ticker"]), str(row["side"]), fill[0], fill[1], None)
        return True

    def quantities(self) -> dict[str, float]:
        """Signed quantity per ticker of the session's open positions."""
        return {p["ticker"]: float(p["quantity"]) for p in self.positions.as_blockpaca()}

    @property
    def order_count(self) -> int:
        return len(self._owned)
