"""The messages between the session's processes, one typed shape per kind.

Everything that crosses a pipe or a queue between the kernel, the execution workers and the
recorder is a plain dict (picklable, cheap, readable in a log), tagged by ``"kind"``. This module
names each shape once, so a reader sees what a worker can report or what lands in ``s.errors``
without reading the code that builds it; the constructors are the only places these dicts are made.

Flow: worker → pool → recorder (``WorkerResult``), recorder → kernel (trade-log rows and
``RecorderStatus``), kernel → ``s.errors`` (``ErrorEvent``, validation errors, strategy errors).
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

WORKER_RESULT_KINDS = frozenset({"submitting", "accepted", "rejected", "failed"})
"""A worker's reports on a ticket: ``submitting`` right before its first attempt, then exactly one
final result."""

RECORDER_STATUS_KINDS = frozenset({"recorder_ready", "recorder_failed"})
"""The recorder is up (and whether its trade stream listens), or cannot run at all."""


class TicketFields(TypedDict):
    """What every report about one order carries (see :func:`.worker.ticket_fields`)."""

    seq: int
    client_order_id: str
    worker: int
    ticker: str
    side: str
    action: str
    order_type: str
    qty: float | None
    notional: float | None
    limit_price: float | None
    stop_price: float | None
    time_in_force: str


class Outcome(TypedDict, total=False):
    """The final result of one ticket, before the ticket's fields and times are added."""

    kind: Literal["accepted", "rejected", "failed"]
    order: dict[str, Any]  # accepted: the parts of the broker's order JSON the log uses (LOGGED_ORDER_FIELDS)
    looked_up: bool  # accepted: found by client order id after an uncertain attempt
    status: int | None  # rejected: the HTTP status
    code: int | None  # rejected: Alpaca's error code, e.g. 40310000
    reason: str  # rejected / failed: why, scrubbed
    attempts: int | None


class WorkerReady(TypedDict):
    kind: Literal["ready"]
    worker: int


class RecorderStatus(TypedDict, total=False):
    kind: Literal["recorder_ready", "recorder_failed"]
    listening: bool  # ready: the trade_updates stream is connected
    reason: str  # failed: why


class ErrorEvent(TypedDict):
    """One entry of ``s.errors`` that is neither a strategy's exception nor a refused order."""

    kind: Literal["error"]
    where: str  # what failed: "session", "recorder", "liquidate", "reconcile", ...
    reason: str
    time: float


def error_event(where: str, reason: str) -> ErrorEvent:
    return {"kind": "error", "where": where, "reason": reason, "time": time.time()}


class ReconcileError(ErrorEvent):
    """A difference a reconciliation found (``where`` "reconcile"): the broker's position in a ticker
    is not the account's outside the session plus the session's own (see :mod:`.reconcile`)."""

    ticker: str
    expected: float  # outside the session + the session's own
    broker: float
    session: float  # the session's own part of ``expected``


def reconcile_error(ticker: str, expected: float, broker: float, session: float, reason: str) -> ReconcileError:
    event = error_event("reconcile", reason)
    return {**event, "ticker": ticker, "expected": expected, "broker": broker, "session": session}  # type: ignore[typeddict-item]


LOGGED_ORDER_FIELDS = ("id", "client_order_id", "order_class", "legs", "submitted_at", "created_at")
"""What the recorder reads of an accepted order's JSON (its ids, its exits, when it was submitted):
all an accepted result carries of it across two pipes."""


def accepted(order: dict[str, Any], attempts: int, *, looked_up: bool) -> Outcome:
    """A ticket the broker took (``looked_up``: found by client order id after an uncertain attempt)."""
    logged = {key: order[key] for key in LOGGED_ORDER_FIELDS if key in order}
    return {"kind": "accepted", "order": logged, "attempts": attempts, "looked_up": looked_up}


def order_refused(kind: str, order: Any, reason: str, strategy: str, when: float) -> dict[str, Any]:
    """An order kept from the broker by a limit (``limit_refused``) or refused by it in replay
    (``rejected``), as ``s.errors`` / ``r.errors`` hold it; ``order`` a validated Order."""
    return {
        "kind": kind,
        "ticker": order.ticker,
        "side": order.side,
        "action": order.action,
        "order_type": order.order_type,
        "qty": order.quantity,
        "limit_price": order.limit_price,
        "reason": reason,
        "strategy": strategy,
        "time": when,
    }


def failed(reason: str, attempts: int | None) -> Outcome:
    """A ticket given up: never sent (``attempts`` 0), or no usable answer after its attempts."""
    return {"kind": "failed", "reason": reason, "attempts": attempts}
