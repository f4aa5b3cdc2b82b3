"""Reconciliation: the session's positions against the broker's, at a moment when they must agree.

Why a *consistent point*: the kernel learns of fills through the recorder, a moment after the broker
booked them, so the broker's positions are ahead of ours whenever an order is on its way. Comparing
then would report differences that are only in transit, and adopting the broker's view would count
those fills twice when their events arrive. So a reconciliation runs only when nothing can be in
transit, and keeps the broker's snapshot only if nothing changed while it was fetched:

1. *quiet*: the execution pool holds no order (queued or in flight), every result it forwarded has
   come back from the recorder (the link has nothing unacknowledged), and every order the session
   knows of has ended; then every fill of every order sent is already in our positions;
2. remember the portfolio's version, fetch the broker's positions, check *quiet* again;
3. adopt the snapshot only if the version is unchanged (no fill or reset applied meanwhile).

A snapshot that fails a check is dropped and the next reconciliation tries again. A difference found
at a consistent point is a real one (a fill the stream and the catch-up both missed, an order placed
outside the session): it is reported — ticker, our quantity, the broker's — and the positions then
follow the broker, which is what holds the shares.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .portfolio import Portfolio
from .statuses import ENDED_ORDER_STATUSES

QUANTITY_TOLERANCE = 1e-9  # fractional shares are exact to nine places (Alpaca's precision)


class _Pool(Protocol):
    def unresolved(self) -> int: ...


class _Link(Protocol):
    @property
    def unacknowledged(self) -> int: ...


@dataclass(frozen=True)
class Difference:
    """One ticker where our position and the broker's disagreed at a consistent point."""

    ticker: str
    ours: float
    broker: float

    def as_error(self) -> dict[str, Any]:
        """The entry for ``Session.errors`` (and the dashboard's errors panel)."""
        reason = (
            f"{self.ticker}: the session held {self.ours:g}, the broker holds {self.broker:g}; "
            "positions now follow the broker"
        )
        return {"kind": "error", "where": "reconcile", "ticker": self.ticker, "ours": self.ours,
                "broker": self.broker, "reason": reason, "time": time.time()}  # fmt: skip


def in_transit(orders: Mapping[str, Mapping[str, Any]], pool: _Pool | None, link: _Link | None) -> str | None:
    """What may still be on its way between the broker and our positions (None: nothing)."""
    if pool is not None and (waiting := pool.unresolved()):
        return f"{waiting} orders queued or in flight"
    if link is not None and (unechoed := link.unacknowledged):
        return f"{unechoed} results not yet back from the recorder"
    open_orders = sum(row.get("status") not in ENDED_ORDER_STATUSES for row in list(orders.values()))
    return f"{open_orders} orders open" if open_orders else None


def reconcile_positions(
    portfolio: Portfolio,
    broker_positions: Callable[[], Iterable[Mapping[str, Any]]],
    orders: Mapping[str, Mapping[str, Any]],
    pool: _Pool | None = None,
    link: _Link | None = None,
) -> list[Difference] | None:
    """Compare and adopt the broker's positions at a consistent point (see the module docstring).
    Returns the differences found, or None when this was no consistent point."""
    if in_transit(orders, pool, link):
        return None
    version = portfolio.version
    snapshot = list(broker_positions())
    if in_transit(orders, pool, link):
        return None
    ours = portfolio.adopt(snapshot, version)
    if ours is None:
        return None
    return differences(ours, {str(p["symbol"]): float(p["qty"]) for p in snapshot})


def differences(ours: Mapping[str, float], broker: Mapping[str, float]) -> list[Difference]:
    """Tickers whose quantities differ (a missing ticker holds zero), in ticker order."""
    tickers = sorted(set(ours) | set(broker))
    found = [Difference(t, ours.get(t, 0.0), broker.get(t, 0.0)) for t in tickers]
    return [d for d in found if abs(d.ours - d.broker) > QUANTITY_TOLERANCE]
