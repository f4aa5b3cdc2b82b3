"""Positions: seeded from the broker, moved by fills, reconciled with the broker now and then.

Every change bumps :attr:`Portfolio.version`, so a reconciliation can tell whether a fill arrived
while it fetched the broker's positions (it then ignores that older snapshot).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Position:
    """A signed position (negative is short) with its average entry price."""

    ticker: str
    quantity: float = 0.0
    bought_at: float = 0.0

    @property
    def cost_basis(self) -> float:
        return self.quantity * self.bought_at

    def apply_fill(self, signed_qty: float, price: float) -> None:
        """Average in when adding; keep the entry when reducing; restart it when crossing flat."""
        new_qty = round(self.quantity + signed_qty, 9) + 0.0
        if self.quantity == 0 or (self.quantity > 0) == (signed_qty > 0):
            self.bought_at = (self.cost_basis + signed_qty * price) / new_qty if new_qty else 0.0
        elif new_qty and (new_qty > 0) != (self.quantity > 0):
            self.bought_at = price
        self.quantity = new_qty
        if not self.quantity:
            self.bought_at = 0.0

    def as_blockpaca(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            "quantity": self.quantity,
            "bought_at": round(self.bought_at, 6),
            "cost_basis": round(self.cost_basis, 6),
        }


class Portfolio:
    """The session's positions, safe to read from the strategy thread while fills arrive."""

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}
        self._lock = threading.Lock()
        self._snapshot: list[dict[str, Any]] = []
        self.version = 0  # bumped by every fill and reset

    def reset(self, broker_positions: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything with the broker's view (Alpaca position dicts)."""
        with self._lock:
            self._take(broker_positions)

    def _take(self, broker_positions: Iterable[Mapping[str, Any]]) -> None:
        self._positions = {
            p["symbol"]: Position(p["symbol"], float(p["qty"]), float(p["avg_entry_price"]))
            for p in broker_positions
            if float(p["qty"])
        }
        self.version += 1
        self._refresh()

    def apply_fill(self, ticker: str, side: str, qty: float, price: float, position_qty: float | None) -> None:
        """Move a position by one fill; the broker's `position_qty`, when given, has the last word."""
        with self._lock:
            position = self._positions.setdefault(ticker, Position(ticker))
            position.apply_fill(qty if side == "buy" else -qty, price)
            if position_qty is not None and abs(position.quantity - position_qty) > 1e-9:
                position.quantity = position_qty
            if not position.quantity:
                del self._positions[ticker]
            self.version += 1
            self._refresh()

    def _refresh(self) -> None:
        self._snapshot = [p.as_blockpaca() for p in self._positions.values()]

    def as_blockpaca(self) -> list[dict[str, Any]]:
        """blockpaca's schema: [{"ticker", "quantity", "bought_at", "cost_basis"}] (a fresh copy)."""
        return [dict(p) for p in self._snapshot]

    def quantity(self, ticker: str) -> float:
        position = self._positions.get(ticker)
        return position.quantity if position else 0.0
