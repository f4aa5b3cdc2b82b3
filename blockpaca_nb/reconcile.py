"""Reconciliation: the session's ledger against the broker's positions, at a moment when they must agree.

The session's positions come from its own fills only (see :mod:`.ledger`); the account may also hold
what was there before the session and what other bots trade. So the check is: the broker's position
in a ticker = the account's position outside the session + the session's position. The part outside
the session is measured at the start (the account before any order of the session) and carried on.

Why a *consistent point*: the kernel learns of fills through the recorder, a moment after the broker
booked them, so the broker is ahead of the ledger whenever one of the session's orders is on its way.
Comparing then would report differences that are only in transit. So a comparison counts only when
nothing of the session can be in transit, and only if the ledger did not move while the broker's
snapshot was fetched:

1. *quiet*: the execution pool holds no order (queued or in flight), every result it forwarded has
   come back from the recorder (the link has nothing unacknowledged), and every order of the session
   has ended; then every fill of every order sent is already in the ledger;
2. remember the ledger's version, fetch the broker's positions, check *quiet* again;
3. compare only if the version is unchanged (no fill applied meanwhile: no older snapshot wins).

A difference found at a consistent point is real — an order placed outside the session, or a fill the
stream and the catch-up both missed — and is reported (ticker, the expected quantity, the broker's).
The ledger is never overwritten with the broker's numbers (they include what is not the session's);
the part outside the session moves to the broker's figure, so the same difference is reported once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .events import ReconcileError, reconcile_error
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
    """One ticker where the broker's position is not the session's plus the account's outside it."""

    ticker: str
    expected: float  # outside the session + the session's own
    broker: float
    session: float  # the session's own part of ``expected``

    def as_error(self) -> ReconcileError:
        """The entry for ``Session.errors`` (and the dashboard's errors panel)."""
        outside = round(self.expected - self.session, 9)
        reason = (
            f"{self.ticker}: the broker holds {self.broker:g}, expected {self.expected:g} "
            f"(the session's {self.session:g} + {outside:g} outside it): an order outside the session "
            "or a fill the session missed"
        )
        return reconcile_error(self.ticker, self.expected, self.broker, self.session, reason)


def in_transit(
    orders: Mapping[str, Mapping[str, Any]],
    pool: _Pool | None,
    link: _Link | None,
    owns: Callable[[str], bool] | None = None,
) -> str | None:
    """What of the session may still be on its way between the broker and the ledger (None: nothing).
    ``owns`` picks the session's orders (default: every order)."""
    if pool is not None and (waiting := pool.unresolved()):
        return f"{waiting} orders queued or in flight"
    if link is not None and (unechoed := link.unacknowledged):
        return f"{unechoed} results not yet back from the recorder"
    rows = list(orders.items())
    open_orders = sum(r.get("status") not in ENDED_ORDER_STATUSES for c, r in rows if owns is None or owns(c))
    return f"{open_orders} orders open" if open_orders else None


def quantities(positions: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Signed quantity per symbol of Alpaca position dicts (zero positions left out)."""
    return {str(p["symbol"]): float(p["qty"]) for p in positions if float(p["qty"])}


class Reconciler:
    """Compares the ledger with the broker at consistent points; keeps the account's part outside
    the session between comparisons (see the module docstring)."""

    def __init__(self) -> None:
        self.outside: dict[str, float] | None = None  # the account's positions that are not the session's

    def start(self, account_positions: Iterable[Mapping[str, Any]]) -> None:
        """The account before the session's first order: all of it is outside the session."""
        self.outside = quantities(account_positions)

    def check(
        self,
        ledger: Portfolio,
        broker_positions: Callable[[], Iterable[Mapping[str, Any]]],
        orders: Mapping[str, Mapping[str, Any]],
        pool: _Pool | None = None,
        link: _Link | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> list[Difference] | None:
        """Fetch the broker's positions and compare them with the ledger if this is a consistent
        point. Returns the differences found, or None when it was not one (nothing compared)."""
        quiet = in_transit(orders, pool, link, owns) is None
        version = ledger.version
        broker = quantities(broker_positions())
        if not quiet or in_transit(orders, pool, link, owns) or ledger.version != version:
            return None
        session = {p["ticker"]: float(p["quantity"]) for p in ledger.as_blockpaca()}
        if self.outside is None:
            self.outside = _minus(broker, session)
            return []
        found = differences(_plus(self.outside, session), broker, session)
        self.outside = _minus(broker, session)
        return found


def differences(
    expected: Mapping[str, float], broker: Mapping[str, float], session: Mapping[str, float]
) -> list[Difference]:
    """Tickers whose quantities differ (a missing ticker holds zero), in ticker order."""
    tickers = sorted(set(expected) | set(broker))
    found = [Difference(t, expected.get(t, 0.0), broker.get(t, 0.0), session.get(t, 0.0)) for t in tickers]
    return [d for d in found if abs(d.expected - d.broker) > QUANTITY_TOLERANCE]


def _plus(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {t: round(a.get(t, 0.0) + b.get(t, 0.0), 9) for t in set(a) | set(b)}


def _minus(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {t: round(a.get(t, 0.0) - b.get(t, 0.0), 9) for t in set(a) | set(b)}
