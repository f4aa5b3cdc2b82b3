"""The recorder: one process, the only writer of the CSV trade log.

It takes two inputs — the broker's trade_updates stream and the inbox (execution results from the
workers, validation errors from the kernel) — turns each into a trade-log row, appends it, and
forwards the same row to the kernel's event channel. Rows are plain dicts with the trade-log columns
plus `kind`, so the kernel, the dashboard and the CSV all see one shape.

**Channels.** The kernel's end is a :class:`~.recorder_link.RecorderLink`: one one-way pipe each way, each with a
single writer, so no cross-process lock exists that a killed recorder could leave held. The kernel
numbers every inbox item and keeps it until the event that comes back acknowledges it. When the
recorder dies, the session's supervisor has the link start a new one on fresh pipes, and the link
sends again whatever was not acknowledged.

**Each order change once.** The stream and the REST catch-up can both report a change: catch-up
runs whenever the stream (re)connects, and events the broker queued meanwhile arrive after it. An
order's progress only moves forward — its filled quantity, then its status (pending_new, new,
partially_filled, pending_cancel …, final) — and a report that does not move it is dropped. A change
recovered through REST carries what was executed since the change logged before it (the quantity
and the average price of that part) in its fill columns, so positions follow it like a fill.

**Restart.** A new recorder first drops a last line its predecessor left cut off (it is not a row;
what it said comes back through REST), then reads back the CSV it appends to: the last logged state of every
order (so nothing is logged twice), the submission rows already there (a re-sent inbox item is not
logged again, only acknowledged), and the time of the last row — it catches up through REST from
there, or from the oldest order still open, whichever is earlier.

Why one module over 500 lines: it is the recorder process, whole — the stream, the catch-up and
the log writer share one rule (a row is written once, in lifecycle order), checked in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import event_loop
from .broker import Connection
from .broker_calls import BrokerCalls
from .errors import BlockpacaError, BrokerError
from .orders import client_order_id_parts, strategy_from_client_order_id
from .processes import SpawnProcess, configure_child_logging, start_child
from .ratelimit import RateLimiter
from .refusals import with_advice
from .scrub import scrub_text, scrubbed_logger
from .statuses import FINAL_ORDER_STATUSES
from .tradelog import TradeLogRow, TradeLogWriter

log = scrubbed_logger(__name__)
_NOT_LOGGED = ("kind", "position_qty", "leg_of")  # what rows carry to the kernel, not to the CSV
STOP = None  # put on the inbox to stop the recorder after what is already queued
CATCH_UP_MARGIN_S = 5.0  # how far before the known gap a catch-up starts looking
PAGE_SIZE = 500  # Alpaca's largest page of orders
READY_TIMEOUT_S = 30.0
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.25, 10.0
BURST_WINDOW_S = 0.005  # a block's order changes come spread over milliseconds: one write per window, not per change
# How far along an order is, by status (the filled quantity counts first). Waiting (accepted after
# hours, a held bracket exit) and pending_new come before new; done_for_day after the pending changes.
_RANK = {
    "accepted": 0,
    "held": 0,
    "pending_new": 0,
    "new": 1,
    "partially_filled": 2,
    "pending_cancel": 3,
    "pending_replace": 3,
    "done_for_day": 4,
}
_FINAL_RANK = 9
# Events that change no status or quantity, yet the user must see them: a cancel or replace that lost
# the race against a fill, and Alpaca restating an order.
_ALWAYS_LOGGED = frozenset({"order_cancel_rejected", "order_replace_rejected", "restated"})
# What an event means when the broker gives no reason of its own.
_EVENT_NOTES = {
    "accepted": "the broker holds it until the market opens (sent outside market hours)",
    "held": "held until its entry order fills",
    "done_for_day": "done for today: it gets no more fills until the next trading day",
    "order_cancel_rejected": "the cancel came too late: the order filled first",
    "order_replace_rejected": "the replace came too late: the order filled first",
    "restated": "the broker restated the order (no change to it)",
}


def start_recorder(
    connection: Connection,
    path: Path,
    inbox: Any,
    events: Any,
    limiter: RateLimiter | None = None,
    resume: float | None = None,
) -> SpawnProcess:
    """Start the recorder process. ``inbox``/``events``: the reading end of a pipe (or a queue) and
    the writing end of another; ``resume``: the session's start time when this replaces a recorder
    that died (the log is read back first), None for a new session."""
    return start_child(run_recorder, connection, path, inbox, events, limiter, resume, name="blockpaca-recorder")


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


# =============================================================================== rows


def raw_status(status: str) -> str:
    """blockpaca's raw_status column: the broker's enum text, ``OrderStatus.FILLED``."""
    return f"OrderStatus.{status.upper()}"


def trade_update_row(
    data: Mapping[str, Any], fill: tuple[float, float] | None = None, leg_of: str | None = None
) -> dict[str, Any]:
    """A trade_updates message (the `data` part) as a trade-log row. ``executed_qty``/``executed_price``
    are the order's cumulative filled quantity and average price (blockpaca's meaning); ``fill``
    (quantity, price) is what this change executed, overriding the message's own fill (a change
    recovered through REST has none). ``leg_of``: the client order id of the order this one is an
    exit of (Alpaca names a leg with an id of its own)."""
    order = data.get("order") or {}
    status = order.get("status") or ""
    event = str(data.get("event") or "")
    if fill is None and event in ("fill", "partial_fill"):
        fill = ((_number(data.get("qty")) or 0.0), (_number(data.get("price")) or 0.0))
    filled, average = _number(order.get("filled_qty")), _number(order.get("filled_avg_price"))
    row = TradeLogRow(
        type="execution",
        executed_price=average or 0.0,
        executed_qty=filled or 0.0,
        status=status,
        timestamp=_epoch(data.get("timestamp")),
        raw_status=raw_status(status),
        event=event,
        filled_qty=filled,
        filled_avg_price=average,
        reason=scrub_text(str(data.get("reason") or event_note(event, order, leg_of))),
        fill_qty=fill[0] if fill and fill[0] > 0 else None,
        fill_price=fill[1] if fill and fill[0] > 0 else None,
        **order_columns(order, leg_of),
    )
    return {"kind": "trade_update", "position_qty": _number(data.get("position_qty")), "leg_of": leg_of, **vars(row)}


def order_columns(order: Mapping[str, Any], leg_of: str | None = None) -> dict[str, Any]:
    """The columns of an order's execution rows that are the same for each of its events."""
    cid = order.get("client_order_id") or ""
    action, worker, strategy = client_order_id_parts(cid) or ("", None, "")
    return {
        "client_order_id": cid,
        "ticker": order.get("symbol") or "",
        "side": order.get("side") or "",
        "action": action or (_exit_action(order) if leg_of else ""),
        "order_id": order.get("id") or "",
        "order_type": order.get("type") or order.get("order_type") or "",
        "qty": _number(order.get("qty")),
        "limit_price": _number(order.get("limit_price")),
        "worker": worker,
        "strategy": strategy_from_client_order_id(leg_of) if leg_of else strategy,
    }


def event_note(event: str, order: Mapping[str, Any], leg_of: str | None = None) -> str:
    """What an execution row's reason says when the broker gave none: the event explained, and for
    an exit, which one and of which entry ("take-profit exit of buy_long-0-…")."""
    note = _EVENT_NOTES.get(event, "")
    if leg_of:
        note = "; ".join(filter(None, [f"{_leg_name(order)} of {leg_of}", note]))
    return note


def _exit_action(leg: Mapping[str, Any]) -> str:
    """A bracket's exit closes what its entry opened: a sell closes a long, a buy covers a short."""
    return "sell_long" if leg.get("side") == "sell" else "buy_to_cover"


def _leg_name(leg: Mapping[str, Any]) -> str:
    return "take-profit exit" if (leg.get("type") or leg.get("order_type")) == "limit" else "stop-loss exit"


def legs_of(order: Mapping[str, Any]) -> dict[str, str]:
    """The exits an order JSON carries (its ``legs``), by order id, each to the order's client id."""
    parent = str(order.get("client_order_id") or "")
    legs = order.get("legs") or []
    return {str(leg.get("id")): parent for leg in legs if isinstance(leg, Mapping) and leg.get("id")}


def _exits_note(order: Mapping[str, Any]) -> str:
    """An accepted order's exits, e.g. "bracket exits: take-profit exit sell limit 230 (order …); …"."""
    legs = [leg for leg in order.get("legs") or [] if isinstance(leg, Mapping)]
    if not legs:
        return ""
    return f"{order.get('order_class') or 'order'} exits: " + "; ".join(_leg_text(leg) for leg in legs)


def _leg_text(leg: Mapping[str, Any]) -> str:
    prices = [f"{name} {leg[key]}" for name, key in (("stop", "stop_price"), ("limit", "limit_price")) if leg.get(key)]
    return f"{_leg_name(leg)} {leg.get('side')} {' '.join(prices)} (order {leg.get('id')})"


_KERNEL_REFUSALS = {"validation_error": "validation", "limit_refused": "risk"}  # kind -> the row's type
_SUBMISSION_STATUS = {"accepted": "accepted", "rejected": "rejected", "failed": "failed", "submitting": "submitting"}


def submission_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """An execution worker's result, or a validation error from the kernel, as a trade-log row."""
    kind = str(result.get("kind"))
    order = result.get("order") or {}
    status = _SUBMISSION_STATUS.get(kind, kind)
    row = TradeLogRow(
        type=_KERNEL_REFUSALS.get(kind, "submission"),
        client_order_id=str(result.get("client_order_id") or ""),
        ticker=str(result.get("ticker") or ""),
        status="rejected" if kind in _KERNEL_REFUSALS else status,
        side=str(result.get("side") or ""),
        action=str(result.get("action") or ""),
        timestamp=float(result.get("time") or time.time()),
        raw_status=raw_status(status) if kind in ("accepted", "rejected") else "",
        event=kind,
        order_id=str(order.get("id") or ""),
        order_type=str(result.get("order_type") or ""),
        qty=_number(result.get("qty")),
        limit_price=_number(result.get("limit_price")),
        reason=scrub_text(_reason(kind, result)),
        worker=result.get("worker"),
        latency_ms=_number(result.get("latency_ms")),
        strategy=str(result.get("strategy") or strategy_from_client_order_id(result.get("client_order_id"))),
    )
    return {"kind": kind, **vars(row)}


def _reason(kind: str, result: Mapping[str, Any]) -> str:
    """The submission's reason; a broker's refusal is followed by what to do about it."""
    reason = str(result.get("reason") or "")
    if kind == "accepted" and not reason:
        return _exits_note(result.get("order") or {})
    if kind != "rejected" or not reason:
        return reason
    return with_advice(reason, str(result.get("ticker") or ""), str(result.get("side") or ""))


def _row_key(row: Mapping[str, Any]) -> tuple[str, str, str, float]:
    """What identifies a submission or validation row (a re-sent inbox item yields the same)."""
    return (str(row["type"]), str(row["client_order_id"]), str(row["event"]), float(row["timestamp"]))


# =============================================================================== order progress


def _rank(status: str) -> int:
    return _FINAL_RANK if status in FINAL_ORDER_STATUSES else _RANK.get(status, 1)


@dataclass
class Progress:
    """The last logged state of one order."""

    status: str
    filled_qty: float
    avg_price: float
    first_seen: float

    @property
    def final(self) -> bool:
        return _rank(self.status) == _FINAL_RANK

    def moved_by(self, status: str, filled_qty: float) -> bool:
        """Whether a report of (status, filled quantity) moves this order forward."""
        if self.final:
            return False
        return (filled_qty, _rank(status)) > (self.filled_qty, _rank(self.status))


class ProgressBook:
    """The last logged state of every order (by order id); moves only forward. It also knows the
    orders the workers had accepted before the broker reported anything about them (``expected``),
    so a catch-up looks for them even when the stream never said a word about them."""

    def __init__(self) -> None:
        self.orders: dict[str, Progress] = {}
        self.expected: dict[str, float] = {}  # order id -> when a worker's answer named it

    def expect(self, order_id: str, when: float) -> bool:
        """Note an order a worker submitted; True when nothing was known about it yet."""
        if order_id in self.orders or order_id in self.expected:
            return False
        self.expected[order_id] = when
        return True

    def open_orders(self) -> dict[str, float]:
        """Every order not known to be final, with when it was first known, oldest first."""
        found = {oid: p.first_seen for oid, p in self.orders.items() if not p.final}
        found.update(self.expected)
        return dict(sorted(found.items(), key=lambda item: item[1]))

    def is_news(self, order_id: str, status: str, filled_qty: float) -> bool:
        known = self.orders.get(order_id)
        return known is None or known.moved_by(status, filled_qty)

    def advance(self, order_id: str, order: Mapping[str, Any], when: float) -> tuple[float, float]:
        """Record the order's new state; return what was executed since the last one (qty, avg price)."""
        status = str(order.get("status") or "")
        qty = _number(order.get("filled_qty")) or 0.0
        avg = _number(order.get("filled_avg_price")) or 0.0
        known = self.orders.get(order_id)
        before_qty, before_avg = (known.filled_qty, known.avg_price) if known else (0.0, 0.0)
        first_seen = known.first_seen if known else self.expected.pop(order_id, when)
        self.orders[order_id] = Progress(status, qty, avg, first_seen)
        done = round(qty - before_qty, 9)
        if done <= 0:
            return 0.0, 0.0
        return done, round((qty * avg - before_qty * before_avg) / done, 6)



# =============================================================================== the writer


class Recorder:
    """Writes rows and forwards them; shared by the stream thread and the inbox loop.

    Rows and events wait in one buffer, in order, and leave together: the rows in one write to the
    trade log, then their events in one message to the kernel (an acknowledgement never leaves
    before its row is written). Outside a :meth:`batch` that happens at once; inside, when the
    thread's outermost batch ends — one write and one message for a burst, not one per row.
    A row is turned into its CSV line as it is recorded, so a bad one fails its caller, not the
    flush. A flush that fails (the disk, the pipe to the kernel) calls ``broken``: the recorder
    process then exits, and its successor re-reads the log and catches up (the kernel re-sends
    what was not acknowledged). In-process (tests), ``broken`` raises.
    """

    def __init__(self, path: Path, events: Any, resume: float | None = None) -> None:
        self.send: Callable[[Any], None] = events.send if hasattr(events, "send") else events.put
        self.lock = threading.Lock()
        self.ledger = ProgressBook()
        self.legs: dict[str, str] = {}  # exit order id -> the client id of the order it belongs to
        self.logged: set[tuple[str, str, str, float]] = set()  # submission rows in the log at a restart
        self.last_time: float | None = None
        self.caught_up_from: float | None = None  # the stream reports every change from here on
        self.look_up: Callable[[str], None] | None = None  # recover one order through REST (the stream's)
        self._lines: list[str] = []  # waiting for the next flush, in order
        self._events: list[dict[str, Any]] = []
        self.broken: Callable[[BaseException], None] = _raise
        self._depth = threading.local()  # how deep each thread is in batches
        _cut_torn_tail(path)
        if resume is not None:
            self._read_back(path)
        self.writer = TradeLogWriter(path)

    # ----------------------------------------------------------------- writing
    def record(self, row: dict[str, Any], ack: int | None = None) -> None:
        with self.lock:
            self._lines.append(self.writer.line({k: v for k, v in row.items() if k not in _NOT_LOGGED}))
            self._events.append(row if ack is None else {**row, "ack": ack})
        self._flush_unless_batching()

    def forward(self, event: dict[str, Any]) -> None:
        with self.lock:
            self._events.append(event)
        self._flush_unless_batching()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold this thread's rows and events until the outermost batch ends, then flush."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    def hold(self) -> None:
        """Begin a batch on this thread (see :meth:`batch`); :meth:`release` ends it."""
        self._depth.value = getattr(self._depth, "value", 0) + 1

    def release(self) -> None:
        self._depth.value -= 1
        self._flush_unless_batching()

    def _flush_unless_batching(self) -> None:
        if not getattr(self._depth, "value", 0):
            self.flush()

    def flush(self) -> None:
        """Write what waits to the log in one go, then send its events as one message. Once the log
        is closed (the recorder is stopping) nothing more is written."""
        with self.lock:
            if self.writer.closed:
                return
            lines, events = self._lines, self._events
            self._lines, self._events = [], []
            try:
                if lines:
                    self.writer.append_lines(lines)
                if events:
                    self.send(events)
            except Exception as err:  # nothing of this flush is acknowledged: see the class docstring
                self.broken(err)

    def close(self) -> None:
        """Flush what waits and close the log."""
        self.flush()
        with self.lock:
            self.writer.close()

    def take(self, item: dict[str, Any], ack: int | None) -> None:
        """One inbox item: log it (unless a previous recorder did), acknowledge it, forward it."""
        if item.get("kind") == "submitting":  # the kernel tracks it; the stream's pending_new logs it
            self.forward(item if ack is None else {**item, "ack": ack})
            return
        self.legs.update(legs_of(item.get("order") or {}))
        row = self._as_known(submission_row(item))
        if self.logged and _row_key(row) in self.logged:
            self.forward({**row, "ack": ack})
        else:
            self.record(row, ack)
        self._expect(row, item.get("order") or {})

    def _as_known(self, row: dict[str, Any]) -> dict[str, Any]:
        """A worker's answer often comes after the stream told of the order's fills (the answer
        crosses two pipes, the stream one socket): its row then gives the order's status and
        cumulative fill as the log knows them, so an order's last row says how much of it was
        executed, at what price (blockpaca's meaning of executed_qty / executed_price)."""
        order_id = str(row.get("order_id") or "")
        if row.get("kind") != "accepted" or not order_id:
            return row
        with self.lock:
            known = self.ledger.orders.get(order_id)
        if known is None:
            return row
        return {**row, "status": known.status, "raw_status": raw_status(known.status),
                "executed_qty": known.filled_qty, "executed_price": known.avg_price}  # fmt: skip

    def _expect(self, row: Mapping[str, Any], order: Mapping[str, Any]) -> None:
        """A worker's answer names an order the broker took: catch-up looks for it until it is final.
        An answer that comes after the stream's last catch-up for an order submitted before that
        catch-up started may describe changes nobody will report: it is looked up at once."""
        order_id = str(row.get("order_id") or "")
        if row.get("event") != "accepted" or not order_id:
            return
        with self.lock:
            unheard = self.ledger.expect(order_id, float(row["timestamp"]))
        caught_up, submitted = self.caught_up_from, _epoch(order.get("submitted_at") or order.get("created_at"))
        if unheard and caught_up is not None and submitted < caught_up and self.look_up:
            self.flush()  # what is held so far need not wait for the broker's answer
            try:
                self.look_up(order_id)
            except BlockpacaError as err:  # the next catch-up looks for it again
                log.warning("order %s: look-up failed (%s)", order_id, err)

    def report(self, data: Mapping[str, Any]) -> None:
        """One order change (from the stream or recovered through REST): logged if it is news."""
        order = data.get("order") or {}
        order_id = str(order.get("id") or "")
        state = (str(order.get("status") or ""), _number(order.get("filled_qty")) or 0.0)
        with self.lock:
            if order_id and not self.ledger.is_news(order_id, *state) and data.get("event") not in _ALWAYS_LOGGED:
                return
            executed = self.ledger.advance(order_id, order, _epoch(data.get("timestamp")))
            self.legs.update(legs_of(order))
        own = _number(data.get("qty")) if data.get("event") in ("fill", "partial_fill") else None
        keep_own = own is not None and abs(own - executed[0]) < 1e-9  # nothing missed: the fill's own price
        self.record(trade_update_row(data, None if keep_own else executed, self.legs.get(order_id)))

    # ----------------------------------------------------------------- reading back after a restart
    def _read_back(self, path: Path) -> None:
        for row in _log_rows(path):
            when = _number(row.get("timestamp"))
            if when is None:
                continue
            self.last_time = when if self.last_time is None else max(self.last_time, when)
            if row.get("type") == "execution" and row.get("order_id"):
                self._restore(row, when)
            elif row.get("type") in ("submission", "validation"):
                self.logged.add(_row_key({**row, "timestamp": when}))
                if row.get("event") == "accepted" and row.get("order_id"):
                    self.ledger.expect(row["order_id"], when)

    def _restore(self, row: Mapping[str, str], when: float) -> None:
        order = {key: row.get(key) for key in ("status", "filled_qty", "filled_avg_price")}
        order_id = row["order_id"]
        if self.ledger.is_news(order_id, str(order["status"]), _number(order["filled_qty"]) or 0.0):
            self.ledger.advance(order_id, order, when)


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line cut off mid-write (a recorder killed while writing, a full disk): it is not
    a row, and what it said is recovered through REST. The header line is kept."""
    if not path.is_file():
        return
    with open(path, "r+b") as file:
        size = file.seek(0, 2)
        if size == 0:
            return
        file.seek(max(0, size - 65536))
        tail = file.read()
        if tail.endswith(b"\n") or tail.count(b"\n") == 0:
            return
        file.truncate(size - len(tail) + tail.rindex(b"\n") + 1)


def _log_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of an existing trade log, skipping any that are not whole."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if not header:
            return
        for cells in reader:
            if len(cells) == len(header):
                yield dict(zip(header, cells, strict=True))


# =============================================================================== the stream


class TradeUpdates:
    """The trade_updates websocket, spoken directly: we need to know when it listens, and to catch
    up through REST after every reconnect — alpaca-py's TradingStream tells neither."""

    def __init__(
        self, connection: Connection, recorder: Recorder, calls: BrokerCalls | None = None, since: float | None = None
    ) -> None:
        self.connection = connection
        self.recorder = recorder
        self.calls = calls or BrokerCalls(connection)
        self.since = since  # from when changes may have been missed; None: nothing yet (a new session)
        self.listening = threading.Event()
        self.last_heard = 0.0  # when the stream last proved alive (a message, or listening began)
        self.in_burst = False  # rows held for a burst (see _record_in_burst)
        own_calls = BrokerCalls(connection, self.calls.limiter)  # the inbox thread's, not shared
        recorder.look_up = lambda order_id: self.look_up(order_id, own_calls)

    def record(self, data: Mapping[str, Any]) -> None:
        self.recorder.report(data)

    def run(self) -> None:
        event_loop.run(self._run_forever())

    async def _run_forever(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            try:
                await self._session()
                delay = RECONNECT_MIN_S
            except Exception as err:  # a dropped or refused connection: log, wait, reconnect
                log.warning("trade_updates stream: %s; reconnecting in %.1f s", type(err).__name__, delay)
            if self.listening.is_set():  # caught up and listened: only what came after can be missing.
                self.since = self.last_heard  # A half-open socket is noticed late: not "now".
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _session(self) -> None:
        import websockets

        url = self.connection.endpoints.trading_stream  # uncompressed: small messages, inflating each cost CPU
        async with websockets.connect(url, open_timeout=10, compression=None) as ws:
            creds = self.connection.credentials
            await ws.send(
                json.dumps(
                    {"action": "authenticate", "data": {"key_id": creds.api_key, "secret_key": creds.secret_key}}
                )
            )
            reply = json.loads(await ws.recv())
            if (reply.get("data") or {}).get("status") != "authorized":
                raise PermissionError("trade_updates stream: not authorized")
            await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
            async for raw in ws:
                message = json.loads(raw)
                self.last_heard = time.time()
                if message.get("stream") == "listening":
                    started = self.last_heard
                    await asyncio.to_thread(self.catch_up)  # a failure reconnects: `since` stays
                    self.recorder.caught_up_from = started
                    self.listening.set()
                elif message.get("stream") == "trade_updates":
                    self._record_in_burst(message.get("data") or {})

    def _record_in_burst(self, data: Mapping[str, Any]) -> None:
        """Record a stream message. Messages that arrive within ``BURST_WINDOW_S`` of the first are
        one burst: their rows leave in one write and one message to the kernel."""
        if not self.in_burst:
            self.in_burst = True
            self.recorder.hold()
            asyncio.get_running_loop().call_later(BURST_WINDOW_S, self._end_burst)
        self.record(data)

    def _end_burst(self) -> None:
        self.in_burst = False
        self.recorder.release()

    def catch_up(self) -> None:
        """Record what happened to orders while the stream was down (each change once): every order
        submitted since the stream was last heard, and every order known not to be final, however
        old — those the workers submitted included, whether or not the stream ever mentioned them."""
        for raw in self._missed_orders():
            self._recover(raw)

    def _missed_orders(self) -> Iterator[dict[str, Any]]:
        """The orders a catch-up looks at (see :meth:`catch_up`), each once."""
        recovered: set[str] = set()
        if self.since is not None:  # None: the first connection of a new session
            for raw in self._orders_since(self.since - CATCH_UP_MARGIN_S):
                recovered.add(str(raw["id"]))
                yield raw
        unfinished = {oid: t for oid, t in self.recorder.ledger.open_orders().items() if oid not in recovered}
        if not unfinished:
            return
        oldest = min(unfinished.values()) - CATCH_UP_MARGIN_S
        for raw in self._orders_since(oldest, open_only=True):  # still open: one call for them all
            if unfinished.pop(str(raw["id"]), None) is not None:
                yield raw
        for order_id in unfinished:  # ended while unheard: one look each
            if (raw := self._fetch(order_id)) is not None:
                yield raw

    def look_up(self, order_id: str, calls: BrokerCalls | None = None) -> None:
        """Recover one order's current state through REST (by the broker's order id)."""
        if (raw := self._fetch(order_id, calls)) is not None:
            self._recover(raw)

    def _fetch(self, order_id: str, calls: BrokerCalls | None = None) -> dict[str, Any] | None:
        """One order by the broker's id. An order the broker does not know is forgotten (said in
        the log), so it cannot stall every catch-up."""
        try:
            order = (calls or self.calls)(lambda c: c.get_order_by_id(order_id))
        except BrokerError as err:
            if err.status != 404:
                raise
            log.warning("order %s: the broker does not know it (%s); no longer looked for", order_id, err)
            self.recorder.ledger.expected.pop(order_id, None)
            return None
        return order.model_dump(mode="json")

    def _recover(self, raw: dict[str, Any]) -> None:
        self.record({"event": "recovered", "order": raw, "timestamp": raw.get("updated_at")})

    def _orders_since(self, after: float, open_only: bool = False) -> Iterator[dict[str, Any]]:
        """Every order (or every open one) submitted after ``after`` (epoch seconds), oldest first,
        page by page."""
        from alpaca.common.enums import Sort
        from alpaca.trading.enums import QueryOrderStatus

        seen: set[str] = set()
        status = QueryOrderStatus.OPEN if open_only else QueryOrderStatus.ALL
        while True:
            request = _orders_request(status, after, Sort.ASC)
            page = [o.model_dump(mode="json") for o in self.calls(lambda c, r=request: c.get_orders(r))]
            fresh = [o for o in page if str(o["id"]) not in seen]
            seen.update(str(o["id"]) for o in fresh)
            yield from fresh
            if len(page) < PAGE_SIZE or not fresh:
                return
            after = max(after, _epoch(page[-1].get("submitted_at")) - 1e-6)


def _orders_request(status: Any, after: float, direction: Any) -> Any:
    from alpaca.trading.requests import GetOrdersRequest

    moment = datetime.fromtimestamp(after, UTC)
    return GetOrdersRequest(status=status, after=moment, direction=direction, limit=PAGE_SIZE)


# =============================================================================== the process


def run_recorder(
    connection: Connection,
    path: Path,
    inbox: Any,
    events: Any,
    limiter: RateLimiter | None = None,
    resume: float | None = None,
) -> None:
    """Child entry point: stream trade updates in a thread; record the inbox until STOP."""
    configure_child_logging(connection.credentials.secret_key)
    try:
        recorder = Recorder(path, events, resume)
    except Exception as err:  # e.g. the log cannot be written: say so, the session fails with it
        send = events.send if hasattr(events, "send") else events.put
        send({"kind": "recorder_failed", "reason": scrub_text(f"{type(err).__name__}: {err}"), "time": time.time()})
        return
    recorder.broken = _exit_broken
    since = None if resume is None else max(resume, recorder.last_time or resume)
    stream = TradeUpdates(connection, recorder, BrokerCalls(connection, limiter), since)
    threading.Thread(target=stream.run, daemon=True, name="trade-updates").start()
    listening = stream.listening.wait(READY_TIMEOUT_S)
    recorder.forward({"kind": "recorder_ready", "listening": listening, "time": time.time()})
    receive = inbox.recv if hasattr(inbox, "recv") else inbox.get
    while (message := receive()) is not STOP:
        with recorder.batch():  # one log write and one message to the kernel per batch
            for ack, item in inbox_items(message):
                recorder.take(item, ack)
    recorder.close()


def _raise(error: BaseException) -> None:
    raise error


def _exit_broken(error: BaseException) -> None:
    """A flush failed in the recorder process: end it, so the session starts a successor (which
    re-reads the log and catches up) and re-sends what was not acknowledged. From any thread."""
    log.error("the trade log or the kernel's pipe failed (%s: %s); the recorder exits", type(error).__name__, error)
    os._exit(1)


def inbox_items(message: Any) -> list[tuple[int | None, dict[str, Any]]]:
    """An inbox message's items: the kernel sends lists of numbered items; a bare item is unnumbered."""
    if isinstance(message, list):
        return message
    return [message if isinstance(message, tuple) else (None, message)]


