"""The execution worker: a spawned process that sends tickets to the broker, many in flight.

Each worker runs one asyncio loop with one keep-alive ``aiohttp`` session and keeps up to
``max_in_flight`` submissions in flight, so a block of orders costs about one broker round trip, not
one per order. It takes :class:`Ticket` batches from its pipe (see :mod:`.execution` for the pool that
hands them out) and reports every outcome on its own one-way pipe.

**Per batch, not per order.** Between the strategy's return and the sockets every per-order step
costs CPU on a machine whose two cores the kernel, the recorder, the feed and the broker share. So
a batch takes its in-flight permits and its places in the rate limiter's line in one go (one lock
round trip, :meth:`RateLimiter.seat_many`), and reports leave as one pipe message (a list), not
one message per report: ``submitting`` reports at the end of the loop iteration that made them,
final results gathered for up to ``RESULTS_WINDOW_S`` (a block's answers come back spread over a
few milliseconds; one message each woke the pool, the recorder's sender and the recorder in turn).
An accepted result carries only the parts of the broker's order the trade log uses.

**Why not alpaca-py's TradingClient for submits.** It is synchronous (``requests``): one order per
thread at a time. On a 429 or 504 it sleeps a fixed 3 s, up to three times, ignoring the broker's
rate-limit headers — with many orders in flight that serializes everything and piles retries onto a
broker that asked us to wait. The workers speak the same wire protocol themselves (reference
alpaca-protocol.md §1.4-§1.5, §2): ``POST {trading}/v2/orders`` with the JSON body of
:meth:`Order.to_alpaca` and the ``APCA-API-*`` headers; ``GET {trading}/v2/orders:by_client_order_id``
to look an order up.

**Never doubled, never lost.** The client order id is fixed before the first attempt and kept across
retries (see :mod:`.retry` for what is retried). The broker refuses a second order with the same id,
so a retry is either the first copy the broker sees or is answered "client_order_id must be unique",
looked up and reported accepted. When the retries run out after an attempt that may have reached the
broker — or the broker refuses an order after such an attempt — the order is looked up by client id
before it is declared failed or rejected. Every ticket ends in exactly one result: ``accepted``,
``rejected`` (with the broker's status, code and message) or ``failed`` (reason and attempts).

Why one module over 500 lines: the submit, the retry and the look-up are one promise (never
doubled, never lost); each step decides what the next may assume, so they are read together.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import event_loop, retry
from .errors import ConfigurationError
from .events import Outcome, TicketFields, accepted, failed
from .orders import Order, strategy_from_client_order_id
from .processes import child_setup, configure_child_logging
from .ratelimit import GRANTED, RateLimiter, per_window
from .scrub import scrub_text, scrubbed_logger

if TYPE_CHECKING:
    import aiohttp

    from .broker import Connection

log = scrubbed_logger(__name__)

NOT_SENT = "not sent: the execution pool was stopped first"
IN_FLIGHT_AT_STOP = "the pool stopped before the broker answered; it may still have accepted the order"
STOP = "stop"  # the pool's last message to a worker
WITHDRAWN = "not sent: withdrawn by {action} before it was sent"
RESULTS_WINDOW_S = 0.005
"""How long a report not needed at once (a final result) may wait for others to leave with it (see
the module docstring)."""
QUEUED_HOLD_S = 5.0
"""How long one announcement of the places waiting for an in-flight permit holds (renewed 20 times
as often): longer than any pause a busy machine gives a worker."""


@dataclass(frozen=True)
class Withdraw:
    """The pool's message to a worker: drop every ordinary ticket not yet sent (a control action
    began), or only those of one strategy; tickets in the priority lane and those already on the
    wire go on — unless ``urgent``: a halted liquidation's own, still waiting for a slot, go too."""

    action: str
    strategy: str = ""
    urgent: bool = False


_DUPLICATE_ID = "client_order_id must be unique"


# =============================================================================== tickets and results


@dataclass(frozen=True)
class Ticket:
    """One order on its way. The client order id is fixed before the first attempt and never changes;
    ``worker`` is the worker it was first given to (the number inside the client order id);
    ``resent``: handed on after its worker died, so an attempt of that worker may have got through."""

    seq: int
    order: Order
    client_order_id: str
    worker: int
    created: float
    resent: bool = False


class ResultSink(Protocol):
    def put(self, item: Any, /) -> None: ...


def ticket_fields(ticket: Ticket) -> TicketFields:
    """The fields every result of a ticket carries (plain values, picklable)."""
    order = ticket.order
    return {
        "seq": ticket.seq,
        "client_order_id": ticket.client_order_id,
        "worker": ticket.worker,
        "ticker": order.ticker,
        "side": order.side,
        "action": order.action,
        "order_type": order.order_type,
        "qty": order.quantity,
        "notional": order.notional,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "time_in_force": order.time_in_force,
    }



# =============================================================================== the worker process


@dataclass(frozen=True)
class Settings:
    max_retries: int
    max_in_flight: int
    request_timeout_s: float


@dataclass(frozen=True)
class _Answer:
    """What came back from one REST call; ``status`` None means no HTTP answer at all."""

    status: int | None
    payload: Any = None
    reason: str = ""
    limit: str | None = None
    reset: str | None = None

    @property
    def message(self) -> str:
        if isinstance(self.payload, dict) and "message" in self.payload:
            return str(self.payload["message"])
        return self.reason

    @property
    def code(self) -> int | None:
        code = self.payload.get("code") if isinstance(self.payload, dict) else None
        return code if isinstance(code, int) else None

    @property
    def retry_verdict(self) -> str:
        return retry.verdict(self.status)

    def verdict(self) -> str:
        """accepted / duplicate / rejected, or throttled (429: not taken) / ambiguous (may be taken)."""
        kind = self.retry_verdict
        if kind in ("unanswered", "transient"):
            return "ambiguous"
        if kind == "throttled":
            return "throttled"
        if self.status is not None and 200 <= self.status < 300:
            return "accepted" if isinstance(self.payload, dict) else "ambiguous"
        if self.status == 422 and _DUPLICATE_ID in self.message.lower():
            return "duplicate"
        return "rejected"

    def describe(self) -> str:
        return self.reason if self.status is None else f"HTTP {self.status}: {self.message}"


@dataclass(frozen=True)
class _LookUp:
    """A look-up by client order id: the order, or None with ``known`` telling 'not there' from 'no answer'."""

    order: dict[str, Any] | None
    known: bool
    reason: str = ""


def _describe(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return f"no answer within {timeout_s:g} s"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}


def _same_order(found: dict[str, Any], order: Order) -> bool:
    """Whether a looked-up order is ours and not another order that happens to share its id."""
    kind = found.get("type") or found.get("order_type")
    return (
        str(found.get("symbol", "")).upper() == order.ticker.upper()
        and found.get("side") == order.side
        and kind == order.order_type
    )


def _read_inbox(inbox: Any, loop: asyncio.AbstractEventLoop, incoming: asyncio.Queue[Any]) -> None:
    """Worker thread: pass the pool's messages to the loop; the pipe's end means the parent is gone."""
    while True:
        try:
            item = inbox.recv()
        except (EOFError, OSError):
            os._exit(0)
        loop.call_soon_threadsafe(incoming.put_nowait, item)
        if item == STOP:
            return


def run_worker(
    number: int,
    parent: int,
    connection: Connection,
    limiter: RateLimiter,
    inbox: Any,
    outbox: Any,
    settings: Settings,
) -> None:
    """Entry point of a worker process (spawned): ignore SIGINT, die with the parent, send orders."""
    child_setup(parent)
    configure_child_logging(connection.credentials.secret_key)
    event_loop.run(_Submitter(number, connection, limiter, outbox, settings).run(inbox))


@dataclass(eq=False)
class _Job:
    """One ticket inside a worker and what it holds: an in-flight permit, a seat in the rate limiter's
    line or its slot already granted, and whether its final result left — a task cancelled before it
    ever ran still reports, and gives back what it held."""

    ticket: Ticket
    place: int
    permit: bool = False
    seat: int | None = None
    granted: bool = False
    reported: bool = False


class _Submitter:
    """Inside a worker: takes tickets from the pool, sends them to the broker, reports each outcome."""

    def __init__(
        self, number: int, connection: Connection, limiter: RateLimiter, outbox: Any, settings: Settings
    ) -> None:
        self.number = number
        self.limiter = limiter
        self.outbox = outbox
        self.settings = settings
        self.headers = connection.credentials.headers()
        self.orders_url = f"{connection.endpoints.trading}/v2/orders"
        self.by_client_id_url = f"{connection.endpoints.trading}/v2/orders:by_client_order_id"
        self.tasks: set[asyncio.Task[None]] = set()
        self.unsent: dict[int, tuple[asyncio.Task[None], int, str]] = {}  # seq -> (task, place, strategy)
        self.withdrawn: dict[int, str] = {}  # seq -> why it will not be sent
        self.in_flight = asyncio.Semaphore(settings.max_in_flight)
        self.stopping = False
        self.reports: list[dict[str, Any]] = []  # sent together (see _emit)
        self.flush_soon = False  # a flush is scheduled for the end of this loop iteration
        self.flush_later: asyncio.TimerHandle | None = None  # one at the end of the window
        self.queued: dict[int, int] = {}  # seq -> place, of tickets waiting for an in-flight permit
        self.holding: asyncio.Task[None] | None = None

    async def run(self, inbox: Any) -> None:
        self.session = self._open_session()
        incoming: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=_read_inbox, args=(inbox, loop, incoming), daemon=True, name="inbox").start()
        self._emit({"kind": "ready", "worker": self.number}, soon=True)
        try:
            while (message := await incoming.get()) != STOP:
                if isinstance(message, Withdraw):
                    self._withdraw(message.action, message.strategy, message.urgent)
                    continue
                await self._take(message)
            await self._wind_down()
        finally:
            self._flush()  # the last results, before anything here can fail
            await self.session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.settings.max_in_flight, keepalive_timeout=30, ssl=_ssl_context())
        return aiohttp.ClientSession(
            headers=self.headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s),
        )

    async def _take(self, batch: list[tuple[Ticket, int]]) -> None:
        """A batch from the pool: the free in-flight permits and the line's places in one go, then
        one task per ticket. A slot granted here is used at once (its permit is already held)."""
        jobs = [_Job(ticket, place) for ticket, place in batch]
        ready = []
        for job in jobs:
            if self.in_flight.locked():
                break
            await self.in_flight.acquire()  # a permit is free: returns without waiting
            job.permit = True
            ready.append(job)
        for job, seat in zip(ready, self.limiter.seat_many([job.place for job in ready]), strict=True):
            job.granted = seat == GRANTED
            job.seat = None if job.granted else seat
        self.queued.update((job.ticket.seq, job.place) for job in jobs[len(ready) :])
        if self.queued and (self.holding is None or self.holding.done()):
            self.holding = asyncio.create_task(self._hold_places())
        for job in jobs:
            self._start(job)

    async def _hold_places(self) -> None:
        """Keep announcing the places of tickets that wait for an in-flight permit: they are on
        their way, and a later place in another worker must not take the free slots first. Each
        announcement holds for ``QUEUED_HOLD_S``, far longer than it is renewed, so a worker the
        machine leaves unscheduled for a while keeps its places (the limiter drops them if it dies)."""
        while self.queued:
            self.limiter.expect(list(self.queued.values()), hold_s=QUEUED_HOLD_S)
            await asyncio.sleep(QUEUED_HOLD_S / 20)

    def _start(self, job: _Job) -> None:
        task = asyncio.create_task(self._execute(job))
        self.tasks.add(task)
        self.unsent[job.ticket.seq] = (task, job.place, strategy_from_client_order_id(job.ticket.client_order_id))
        task.add_done_callback(lambda done, job=job: self._done(done, job))  # type: ignore[misc]

    def _done(self, task: asyncio.Task[None], job: _Job) -> None:
        """A ticket's task ended: give back its permit and seat; report it if it never ran."""
        self.tasks.discard(task)
        if self.queued.pop(job.ticket.seq, None) is not None:  # ended before its permit: not coming
            self.limiter.forget([job.place])
        if job.permit:
            job.permit = False
            self.in_flight.release()
        if job.seat is not None:
            self.limiter.leave(job.seat)
            job.seat = None
        if not job.reported:  # cancelled before its first step: nothing was sent
            job.reported = True
            self.unsent.pop(job.ticket.seq, None)
            reason = self.withdrawn.pop(job.ticket.seq, NOT_SENT)
            self._emit({**failed(reason, 0), **ticket_fields(job.ticket), "time": time.time(), "latency_ms": 0.0})

    def _withdraw(self, action: str, strategy: str = "", urgent: bool = False) -> None:
        """A control action began: ordinary tickets still waiting for a slot end unsent (only the
        strategy's, when one is named; with ``urgent``, its priority-lane tickets too)."""
        for seq, (task, place, sender) in list(self.unsent.items()):
            if (place >= 0 or urgent) and (not strategy or sender == strategy):
                self.withdrawn[seq] = WITHDRAWN.format(action=action)
                task.cancel()

    async def _wind_down(self) -> None:
        """Stop: tickets not yet sent end as failed at once; the ones on the wire finish."""
        self.stopping = True
        for task, _place, _strategy in self.unsent.values():
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.holding is not None:
            self.holding.cancel()

    async def _execute(self, job: _Job) -> None:
        """One ticket from start to its final result: permit, slot, announcement, attempts, report."""
        ticket, place = job.ticket, job.place
        fields = ticket_fields(ticket)
        started, sent = time.time(), False
        try:
            if not job.permit:
                await self.in_flight.acquire()
                job.permit = True
                self.queued.pop(ticket.seq, None)
            if not job.granted:
                seat, job.seat = job.seat, None  # acquire_async owns it from here
                await self.limiter.acquire_async(place, seat=seat)
            if self.stopping:
                outcome = failed(NOT_SENT, 0)
            else:
                self.unsent.pop(ticket.seq, None)
                started, sent = time.time(), True
                self._emit({"kind": "submitting", **fields, "time": started}, soon=True)
                outcome = await self._send_order(ticket, place)
        except asyncio.CancelledError:
            outcome = failed(IN_FLIGHT_AT_STOP, None) if sent else failed(self.withdrawn.pop(ticket.seq, NOT_SENT), 0)
        except Exception as error:  # a bug must still end the ticket with a result
            log.exception("worker %d: unexpected error on %s", self.number, ticket.client_order_id)
            outcome = failed(f"internal error: {_describe(error, 0)}", None)
        self.unsent.pop(ticket.seq, None)
        now = time.time()
        job.reported = True
        self._emit({**outcome, **fields, "time": now, "latency_ms": round((now - started) * 1000, 3)})

    def _emit(self, event: dict[str, Any], soon: bool = False) -> None:
        """Every report leaves the worker here, scrubbed: a reason may quote a server that quoted
        the request back, or an aiohttp error that quoted a header. ``soon``: it leaves at the end
        of this loop iteration (a ``submitting``: the pool must learn at once that a ticket may be
        at the broker); else within ``RESULTS_WINDOW_S``, with whatever else is waiting by then."""
        self.reports.append({**event, "reason": scrub_text(event["reason"])} if event.get("reason") else event)
        loop = asyncio.get_running_loop()
        if soon:
            if not self.flush_soon:
                self.flush_soon = True
                loop.call_soon(self._flush)
        elif self.flush_later is None:
            self.flush_later = loop.call_later(RESULTS_WINDOW_S, self._flush)

    def _flush(self) -> None:
        """Send every waiting report now; a flush scheduled for later is no longer needed."""
        self.flush_soon = False
        if self.flush_later is not None:
            self.flush_later.cancel()
            self.flush_later = None
        if not self.reports:
            return
        reports, self.reports = self.reports, []
        try:
            self.outbox.send(reports)
        except OSError:  # the pool's end is gone: so is the parent
            os._exit(0)

    # ----------------------------------------------------------------- the retry policy
    async def _send_order(self, ticket: Ticket, place: int) -> Outcome:
        """POST the order until it is answered, retrying with the same client order id.

        A 429 is the broker saying "wait", not a failure: it does not use up a retry (the limiter
        already holds everyone back until the reset), up to ``MAX_THROTTLED`` of them.
        """
        body = json.dumps(ticket.order.to_alpaca(ticket.client_order_id)).encode()
        attempts = retry.Attempts(self.settings.max_retries)
        reason, maybe_taken = "", ticket.resent
        for attempt in itertools.count(1):
            if attempt > 1:
                await asyncio.sleep(attempts.pause())
                await self.limiter.acquire_async(place)
            answer = await self._call("POST", self.orders_url, data=body, headers={"Content-Type": "application/json"})
            verdict = answer.verdict()
            if verdict in ("accepted", "duplicate", "rejected"):
                return await self._answered(ticket, place, attempt, answer, maybe_taken)
            reason = answer.describe()
            maybe_taken = maybe_taken or verdict == "ambiguous"
            if not attempts.failed(answer.retry_verdict):
                return await self._after_retries(ticket, place, attempt, reason, maybe_taken)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _answered(
        self, ticket: Ticket, place: int, attempts: int, answer: _Answer, maybe_taken: bool = False
    ) -> Outcome:
        """The final result of a POST the broker answered: accepted, duplicate (look it up) or rejected.
        A refusal after an attempt that may have got through (a timeout, a 5xx) is looked up first:
        the refusal may be of the retry (say "insufficient qty" for the shares the first copy holds)."""
        verdict = answer.verdict()
        if verdict == "accepted":
            return accepted(answer.payload, attempts, looked_up=False)
        if verdict == "duplicate":
            return await self._already_there(ticket, place, attempts, answer)
        if maybe_taken:
            found = await self._look_up(ticket, place, not_found_is_final=True)
            if found.order is not None and _same_order(found.order, ticket.order):
                return accepted(found.order, attempts, looked_up=True)
            if not found.known:  # the first copy may be at the broker: not a rejection we can vouch for
                why = f"{answer.message}; an earlier attempt may have got through; look-up failed: {found.reason}"
                return failed(why, attempts)
        return self._rejected(answer, attempts)

    async def _already_there(self, ticket: Ticket, place: int, attempts: int, answer: _Answer) -> Outcome:
        """The broker holds an order with our client order id: an earlier attempt got through."""
        found = await self._look_up(ticket, place, not_found_is_final=False)
        if found.order is None:
            why = f"the broker reports {_DUPLICATE_ID!r} but the look-up failed: {found.reason}"
            return failed(why, attempts)
        if not _same_order(found.order, ticket.order):
            return self._rejected(answer, attempts, "client_order_id already used by a different order")
        return accepted(found.order, attempts, looked_up=True)

    async def _after_retries(
        self, ticket: Ticket, place: int, attempts: int, reason: str, maybe_taken: bool
    ) -> Outcome:
        """Out of retries: if an attempt may have reached the broker, ask before calling it failed."""
        if not maybe_taken:
            return failed(f"gave up after {attempts} attempts; last: {reason}", attempts)
        found = await self._look_up(ticket, place, not_found_is_final=True)
        if found.order is not None and _same_order(found.order, ticket.order):
            return accepted(found.order, attempts, looked_up=True)
        where = "not at the broker" if found.known else f"look-up failed: {found.reason}"
        return failed(f"gave up after {attempts} attempts; last: {reason}; {where}", attempts)

    async def _look_up(self, ticket: Ticket, place: int, *, not_found_is_final: bool) -> _LookUp:
        """GET the order by client order id, retrying failures (and 404s when it must be there)."""
        params = {"client_order_id": ticket.client_order_id}
        attempts = retry.Attempts(self.settings.max_retries)
        while True:
            await self.limiter.acquire_async(place)
            answer = await self._call("GET", self.by_client_id_url, params=params)
            if answer.status == 200 and isinstance(answer.payload, dict):
                return _LookUp(answer.payload, True)
            if answer.status == 404 and not_found_is_final:
                return _LookUp(None, True)
            # anything else, even a 404 while the order must be there, is worth asking again
            if not attempts.failed("throttled" if answer.retry_verdict == "throttled" else "transient"):
                return _LookUp(None, False, answer.describe())
            await asyncio.sleep(attempts.pause())

    def _rejected(self, answer: _Answer, attempts: int, reason: str | None = None) -> Outcome:
        return {
            "kind": "rejected",
            "status": answer.status,
            "code": answer.code,
            "reason": reason or answer.message,
            "attempts": attempts,
        }

    # ----------------------------------------------------------------- one REST call
    async def _call(self, method: str, url: str, **options: Any) -> _Answer:
        """One HTTP request (the caller already holds a rate-limit slot); never raises."""
        import aiohttp

        try:
            async with self.session.request(method, url, **options) as response:
                raw = await response.read()
                headers = response.headers
                answer = _Answer(
                    response.status,
                    _decode(raw),
                    f"HTTP {response.status}",
                    headers.get("X-RateLimit-Limit"),
                    headers.get("X-RateLimit-Reset"),
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            return _Answer(None, reason=_describe(error, self.settings.request_timeout_s))
        self._observe(answer)
        return answer

    def _observe(self, answer: _Answer) -> None:
        """Feed the broker's rate-limit headers to the shared limiter; a 429 pauses everyone."""
        with contextlib.suppress(ValueError, ConfigurationError):
            if answer.limit:
                self.limiter.set_limit(per_window(int(answer.limit), self.limiter.window_s))
        if answer.status == 429:
            self.limiter.pause_until(retry.reset_time(answer.reset))


def _ssl_context() -> Any:
    """TLS with certifi's roots when available (as alpaca-py's requests uses), else the system's."""
    import ssl

    try:
        import certifi
    except ImportError:  # pragma: no cover
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
