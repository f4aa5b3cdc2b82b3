"""The execution worker: a spawned process that sends tickets to the broker, many in flight.

Each worker runs one asyncio loop with one keep-alive ``aiohttp`` session and keeps up to
``max_in_flight`` submissions in flight, so a block of orders costs about one broker round trip, not
one per order. It takes :class:`Ticket` batches from its pipe (see :mod:`.execution` for the pool that
hands them out) and reports every outcome on its own one-way pipe.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import retry
from .errors import ConfigurationError
from .orders import Order
from .processes import child_setup, configure_child_logging
from .ratelimit import RateLimiter, per_window

if TYPE_CHECKING:
    import aiohttp

    from .broker import Connection

log = logging.getLogger(__name__)

NOT_SENT = "not sent: the execution pool was stopped first"
IN_FLIGHT_AT_STOP = "the pool stopped before the broker answered; it may still have accepted the order"
STOP = "stop"  # the pool's last message to a worker
_DUPLICATE_ID = "client_order_id must be unique"


# =============================================================================== tickets and results


@dataclass(frozen=True)
class Ticket:
    """One order on its way. The client order id is fixed before the first attempt and never changes;
    ``worker`` is the worker it was first given to (the number inside the client order id)."""

    seq: int
    order: Order
    client_order_id: str
    worker: int
    created: float


class ResultSink(Protocol):
    def put(self, item: Any, /) -> None: ...


def ticket_fields(ticket: Ticket) -> dict[str, Any]:
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


def failure(reason: str, attempts: int | None) -> dict[str, Any]:
    return {"kind": "failed", "reason": reason, "attempts": attempts}


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
    asyncio.run(_Submitter(number, connection, limiter, outbox, settings).run(inbox))


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
        self.secret = connection.credentials.secret_key
        self.orders_url = f"{connection.endpoints.trading}/v2/orders"
        self.by_client_id_url = f"{connection.endpoints.trading}/v2/orders:by_client_order_id"
        self.tasks: set[asyncio.Task[None]] = set()
        self.unsent: dict[int, asyncio.Task[None]] = {}
        self.in_flight = asyncio.Semaphore(settings.max_in_flight)
        self.stopping = False

    async def run(self, inbox: Any) -> None:
        self.session = self._open_session()
        incoming: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        threading.Thread(target=_read_inbox, args=(inbox, loop, incoming), daemon=True, name="inbox").start()
        self._emit({"kind": "ready", "worker": self.number})
        try:
            while (batch := await incoming.get()) != STOP:
                for ticket, place in batch:
                    self._start(ticket, place)
            await self._wind_down()
        finally:
            await self.session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.settings.max_in_flight, keepalive_timeout=30, ssl=_ssl_context())
        return aiohttp.ClientSession(
            headers=self.headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout_s),
        )

    def _start(self, ticket: Ticket, place: int) -> None:
        task = asyncio.create_task(self._execute(ticket, place))
        self.tasks.add(task)
        self.unsent[ticket.seq] = task
        task.add_done_callback(self.tasks.discard)

    async def _wind_down(self) -> None:
        """Stop: tickets not yet sent end as failed at once; the ones on the wire finish."""
        self.stopping = True
        for task in self.unsent.values():
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _execute(self, ticket: Ticket, place: int) -> None:
        """One ticket from start to its final result: slot, announcement, attempts, report."""
        fields = ticket_fields(ticket)
        started, sent = time.time(), False
        try:
            async with self.in_flight:
                await self.limiter.acquire_async(place)
                if self.stopping:
                    outcome = failure(NOT_SENT, 0)
                else:
                    self.unsent.pop(ticket.seq, None)
                    started, sent = time.time(), True
                    self._emit({"kind": "submitting", **fields, "time": started})
                    outcome = await self._send_order(ticket, place)
        except asyncio.CancelledError:
            outcome = failure(IN_FLIGHT_AT_STOP, None) if sent else failure(NOT_SENT, 0)
        except Exception as error:  # a bug must still end the ticket with a result
            log.exception("worker %d: unexpected error on %s", self.number, ticket.client_order_id)
            outcome = failure(self._scrub(f"internal error: {_describe(error, 0)}"), None)
        self.unsent.pop(ticket.seq, None)
        now = time.time()
        self._emit({**outcome, **fields, "time": now, "latency_ms": round((now - started) * 1000, 3)})

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            self.outbox.send(event)
        except OSError:  # the pool's end is gone: so is the parent
            os._exit(0)

    # ----------------------------------------------------------------- the retry policy
    async def _send_order(self, ticket: Ticket, place: int) -> dict[str, Any]:
        """POST the order until it is answered, retrying with the same client order id.

        A 429 is the broker saying "wait", not a failure: it does not use up a retry (the limiter
        already holds everyone back until the reset), up to ``MAX_THROTTLED`` of them.
        """
        body = json.dumps(ticket.order.to_alpaca(ticket.client_order_id)).encode()
        attempts = retry.Attempts(self.settings.max_retries)
        reason, maybe_taken = "", False
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
    ) -> dict[str, Any]:
        """The final result of a POST the broker answered: accepted, duplicate (look it up) or rejected.
        A refusal after an attempt that may have got through (a timeout, a 5xx) is looked up first:
        the refusal may be of the retry (say "insufficient qty" for the shares the first copy holds)."""
        verdict = answer.verdict()
        if verdict == "accepted":
            return {"kind": "accepted", "order": answer.payload, "attempts": attempts, "looked_up": False}
        if verdict == "duplicate":
            return await self._already_there(ticket, place, attempts, answer)
        if maybe_taken:
            found = await self._look_up(ticket, place, not_found_is_final=True)
            if found.order is not None and _same_order(found.order, ticket.order):
                return {"kind": "accepted", "order": found.order, "attempts": attempts, "looked_up": True}
        return self._rejected(answer, attempts)

    async def _already_there(self, ticket: Ticket, place: int, attempts: int, answer: _Answer) -> dict[str, Any]:
        """The broker holds an order with our client order id: an earlier attempt got through."""
        found = await self._look_up(ticket, place, not_found_is_final=False)
        if found.order is None:
            why = f"the broker reports {_DUPLICATE_ID!r} but the look-up failed: {found.reason}"
            return failure(why, attempts)
        if not _same_order(found.order, ticket.order):
            return self._rejected(answer, attempts, "client_order_id already used by a different order")
        return {"kind": "accepted", "order": found.order, "attempts": attempts, "looked_up": True}

    async def _after_retries(
        self, ticket: Ticket, place: int, attempts: int, reason: str, maybe_taken: bool
    ) -> dict[str, Any]:
        """Out of retries: if an attempt may have reached the broker, ask before calling it failed."""
        if not maybe_taken:
            return failure(f"gave up after {attempts} attempts; last: {reason}", attempts)
        found = await self._look_up(ticket, place, not_found_is_final=True)
        if found.order is not None and _same_order(found.order, ticket.order):
            return {"kind": "accepted", "order": found.order, "attempts": attempts, "looked_up": True}
        where = "not at the broker" if found.known else f"look-up failed: {found.reason}"
        return failure(f"gave up after {attempts} attempts; last: {reason}; {where}", attempts)

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

    def _rejected(self, answer: _Answer, attempts: int, reason: str | None = None) -> dict[str, Any]:
        return {
            "kind": "rejected",
            "status": answer.status,
            "code": answer.code,
            "reason": self._scrub(reason or answer.message),
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
            return _Answer(None, reason=self._scrub(_describe(error, self.settings.request_timeout_s)))
        self._observe(answer)
        return answer

    def _observe(self, answer: _Answer) -> None:
        """Feed the broker's rate-limit headers to the shared limiter; a 429 pauses everyone."""
        with contextlib.suppress(ValueError, ConfigurationError):
            if answer.limit:
                self.limiter.set_limit(per_window(int(answer.limit), self.limiter.window_s))
        if answer.status == 429:
            self.limiter.pause_until(retry.reset_time(answer.reset))

    def _scrub(self, text: str) -> str:
        """Defence in depth: the secret must never reach a result, even quoted back by a server."""
        return text.replace(self.secret, "***") if self.secret else text


def _ssl_context() -> Any:
    """TLS with certifi's roots when available (as alpaca-py's requests uses), else the system's."""
    import ssl

    try:
        import certifi
    except ImportError:  # pragma: no cover
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())

