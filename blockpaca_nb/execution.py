"""Order execution: worker processes, the shared rate limiter, idempotent retries.

Orders travel kernel → :class:`ExecutionPool` → N worker processes → broker. Each worker runs one
asyncio loop with one keep-alive ``aiohttp`` session and keeps up to ``max_in_flight`` submissions
in flight, so a block of orders costs about one broker round trip, not one per order.

**Why not alpaca-py's TradingClient for submits.** It is synchronous (``requests``): one order per
thread at a time. On a 429 or 504 it sleeps a fixed 3 s, up to three times, ignoring the broker's
rate-limit headers — with many orders in flight that serializes everything and piles retries onto a
broker that asked us to wait. The workers speak the same wire protocol themselves (reference
alpaca-protocol.md §1.4-§1.5, §2): ``POST {trading}/v2/orders`` with the JSON body of
:meth:`Order.to_alpaca` and the ``APCA-API-*`` headers; ``GET {trading}/v2/orders:by_client_order_id``
to look an order up. Everything else in the toolkit may keep using alpaca-py.

**Dispatch.** :meth:`ExecutionPool.submit` returns at once. It numbers each order (``seq``), picks the
least-loaded worker, fixes the client order id ``{action}-{worker}-{uuid8}`` for good and reserves the
order's place in the rate limiter's line (submission order). Per-worker pipes carry the tickets; a
sender thread per worker writes them, so a stalled worker never blocks the kernel. The first tickets
wait until every worker is up, and each batch's places are announced to the limiter as it goes
(:meth:`RateLimiter.expect`): a worker that is quicker off the mark cannot take the free slots ahead of
earlier orders held by another, so overflow waits in submission order across all workers.

**Channels.** Every worker reports on its own one-way pipe (``Connection.send`` is a synchronous
write, with a single writer per pipe: a worker SIGKILLed mid-write spoils only its own pipe, which the
pool then reads to its end). One supervisor thread in the parent reads all pipes, forwards each
result to ``results`` and keeps the books: which tickets each worker still holds. When a worker dies
it reads that worker's pipe to the end, starts a replacement and hands the unresolved tickets, with
their *same* client order ids, to live workers. The broker refuses a second order with the same
client order id, so a re-sent ticket is either the first copy the broker sees, or is answered
"client_order_id must be unique", looked up, and reported accepted: never lost, never doubled.

**Retries.** Timeouts, connection resets, 5xx and 429 are retried with the same client order id, with
exponential backoff (0.1 s × 2ⁿ, jittered, capped at 2 s), up to ``max_retries`` times. A 429
pauses the shared limiter until ``X-RateLimit-Reset`` (everyone waits, not just the unlucky worker)
and uses up no retry — the broker said "wait", not "failed" (``MAX_THROTTLED`` bounds them);
each response's ``X-RateLimit-Limit`` updates the limit unless the user fixed it. When the retries
run out after a failure that may have reached the broker (timeout, reset, 5xx), the order is looked up
by client id before it is declared failed. Every ticket ends in exactly one result: ``accepted``,
``rejected`` (with the broker's status, code and message) or ``failed`` (reason and attempts).

**Other REST calls.** :class:`BrokerCalls` gives the toolkit's alpaca-py calls (account, positions,
clock, assets, bars, the recorder's catch-up) the same discipline: a limiter slot per attempt, a
timeout, the same retries, and errors that carry the broker's reason but never the request.

**Rate limiter.** A strict sliding window in shared memory: never more than ``limit`` calls in any
``window_s`` seconds, counted at the moment each call is granted. Waiters are served in order of
their place in line — arrival order, or the order's submission order when it reserved a place; an
announced place holds later ones back for up to ``ARRIVAL_GRACE_S`` while it is on its way — and a
waiter whose process died is skipped. The cross-process lock is a POSIX record lock, which the
operating system releases if its holder is killed, so a SIGKILLed worker cannot freeze the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import queue
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from multiprocessing import context, get_context, reduction
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from requests.adapters import HTTPAdapter

from .errors import AuthenticationError, BlockpacaError, BrokerError, ConfigurationError
from .orders import Order, new_client_order_id
from .processes import child_setup, configure_child_logging, launch

if TYPE_CHECKING:
    import aiohttp
    from alpaca.trading.client import TradingClient

    from .broker import Connection

try:  # POSIX: a lock the kernel frees when its holder dies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SPAWN = get_context("spawn")
DEFAULT_LIMIT = 200
DEFAULT_WINDOW_S = 60.0
HISTORY_SIZE = 100_000
"""How many grant times the limiter keeps (a ring); also the highest limit it can enforce."""
ROOM_SIZE = 4096
"""How many callers can wait for a slot at once, across all processes."""
EXPECTED_SIZE = 8192
"""How many announced places (see :meth:`RateLimiter.expect`) the limiter keeps track of at once."""
ARRIVAL_GRACE_S = 0.2
"""How long an announced place holds back later ones while it is on its way."""
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
MAX_THROTTLED = 50
"""How many 429 answers one order may meet before it is declared failed (they use up no retry)."""
NOT_SENT = "not sent: the execution pool was stopped first"
IN_FLIGHT_AT_STOP = "the pool stopped before the broker answered; it may still have accepted the order"

_EMPTY = np.iinfo(np.int64).max  # a free seat in the waiting room
_GRANTED = _EMPTY - 1  # a seat whose caller got its slot but has not collected it yet
_MIN_NAP_S = 0.0005
_HELD_NAP_S = 0.002  # a slot is free but an earlier place is on its way
_MAX_NAP_S = 0.2
_RESET_ROUNDING_S = 1.0  # X-RateLimit-Reset is in whole seconds
_COUNT, _NEXT_PLACE, _LIMIT, _OVERRIDE = range(4)
_STOP = "stop"
_SUPERVISE_S = 0.2
_BOOT_TIMEOUT_S = 20.0  # the first tickets wait at most this long for every worker to be up
_DUPLICATE_ID = "client_order_id must be unique"


# =============================================================================== rate limiter


class _FileLock:
    """A mutex across processes that the operating system releases if its holder dies.

    A POSIX record lock (``lockf``) on an unlinked temporary file; a thread lock orders the threads
    of one process, since record locks belong to the whole process. Travels to spawned children
    through ``Process`` arguments (the file descriptor is passed along).
    """

    def __init__(self) -> None:
        self._file: Any = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the lock
        self._fd: int = self._file.fileno()
        self._threads = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        context.assert_spawning(self)  # like the shared arrays: Process arguments only
        return {"fd": reduction.DupFd(self._fd)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._file = None
        self._fd = state["fd"].detach()
        self._threads = threading.Lock()

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._threads.release()


def _process_lock(ctx: BaseContext) -> Any:
    """The crash-safe file lock where the platform has one, a plain multiprocessing lock elsewhere."""
    return _FileLock() if fcntl is not None else ctx.Lock()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a waiter whose process died is skipped)."""
    if pid == os.getpid() or sys.platform == "win32":  # os.kill(pid, 0) would terminate on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _view(raw: Any, dtype: type) -> np.ndarray:
    return np.frombuffer(memoryview(raw).cast("B"), dtype=dtype)


class RateLimiter:
    """Strict sliding-window limiter shared by every process of a session: never more than ``limit``
    REST calls in any ``window_s`` window.

    Every REST call the toolkit makes takes a slot first (:meth:`acquire` in threads,
    :meth:`acquire_async` in asyncio code). Callers that must wait are served in order of their
    place in line: their arrival, or a place reserved earlier with :meth:`reserve` (the execution
    pool reserves places when orders are submitted, so overflow waits in submission order).
    After a 429, :meth:`pause_until` holds everyone back until the broker's reset time.

    The state lives in shared memory; pass the limiter to spawned children as a ``Process``
    argument. ``margin_s`` (default: window/120, 0.5 s a minute) is added to the window before a
    slot is reused, to absorb the moments between our grant and the broker's clock-in.
    ``override=True`` means the user fixed the limit: :meth:`set_limit` then changes nothing.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        ctx: BaseContext | None = None,
        override: bool = False,
        margin_s: float | None = None,
    ) -> None:
        _check_limit(limit)
        if not isinstance(window_s, int | float) or isinstance(window_s, bool) or not window_s > 0:
            raise ConfigurationError(f"window_s={window_s!r} is not valid; allowed: seconds > 0")
        ctx = ctx or SPAWN
        self.window_s = float(window_s)
        self.margin_s = self.window_s / 120 if margin_s is None else float(margin_s)
        self._lock = _process_lock(ctx)
        self._raw = {
            "ints": ctx.RawArray("q", 4),
            "paused": ctx.RawArray("d", 1),
            "history": ctx.RawArray("d", HISTORY_SIZE),
            "places": ctx.RawArray("q", ROOM_SIZE),
            "owners": ctx.RawArray("q", ROOM_SIZE),
            "expected": ctx.RawArray("q", EXPECTED_SIZE),
            "expected_at": ctx.RawArray("d", EXPECTED_SIZE),
        }
        self._attach()
        self._places[:] = _EMPTY
        self._expected[:] = -1
        self._ints[_LIMIT] = limit
        self._ints[_OVERRIDE] = int(override)

    # ----------------------------------------------------------------- sharing with children
    def _attach(self) -> None:
        raw = self._raw
        self._ints = _view(raw["ints"], np.int64)
        self._paused = _view(raw["paused"], np.float64)
        self._history = _view(raw["history"], np.float64)
        self._places = _view(raw["places"], np.int64)
        self._owners = _view(raw["owners"], np.int64)
        self._expected = _view(raw["expected"], np.int64)
        self._expected_at = _view(raw["expected_at"], np.float64)

    def __getstate__(self) -> dict[str, Any]:
        return {"window_s": self.window_s, "margin_s": self.margin_s, "lock": self._lock, "raw": self._raw}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.window_s, self.margin_s = state["window_s"], state["margin_s"]
        self._lock, self._raw = state["lock"], state["raw"]
        self._attach()

    # ----------------------------------------------------------------- settings
    @property
    def limit(self) -> int:
        return int(self._ints[_LIMIT])

    @property
    def override(self) -> bool:
        """True when the user fixed the limit: the broker's headers then do not change it."""
        return bool(self._ints[_OVERRIDE])

    @override.setter
    def override(self, value: bool) -> None:
        self._ints[_OVERRIDE] = int(bool(value))

    def set_limit(self, limit: int) -> None:
        """Adopt the broker's limit (its ``X-RateLimit-Limit`` header) unless the user fixed one."""
        _check_limit(limit)
        if self.override or limit == self._ints[_LIMIT]:
            return
        with self._lock:
            self._ints[_LIMIT] = min(limit, HISTORY_SIZE)

    def pause_until(self, epoch: float) -> None:
        """After a 429: nobody gets a slot before ``epoch`` (the broker's ``X-RateLimit-Reset``).

        A reset further away than one window (plus the header's rounding) can only be clock skew,
        so the pause is capped there.
        """
        now = time.monotonic()
        until = now + min(epoch - time.time(), self.window_s + _RESET_ROUNDING_S)
        with self._lock:
            self._paused[0] = max(self._paused[0], until)

    # ----------------------------------------------------------------- taking a slot
    def reserve(self, count: int = 1) -> range:
        """Reserve ``count`` places in line, for calls that will come later in this order."""
        with self._lock:
            first = int(self._ints[_NEXT_PLACE])
            self._ints[_NEXT_PLACE] = first + count
        return range(first, first + count)

    def expect(self, places: Iterable[int]) -> None:
        """Announce reserved places whose callers are on their way (the pool calls this as it
        hands tickets to a worker). For up to ``ARRIVAL_GRACE_S`` nobody with a later place gets a
        slot before them, so a worker that is a few milliseconds quicker than another cannot take
        the free slots ahead of earlier orders."""
        wanted = np.fromiter(places, dtype=np.int64)
        with self._lock:
            where = wanted % EXPECTED_SIZE
            self._expected[where] = wanted
            self._expected_at[where] = time.monotonic()

    def acquire(self, timeout: float | None = None, *, place: int | None = None) -> float:
        """Block (sleeping) until this caller gets a slot; return the seconds waited.

        Raises ``TimeoutError`` if no slot came within ``timeout`` seconds.
        """
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        seat: int | None = None
        try:
            while True:
                seat, place, nap = self._step(seat, place)
                if nap == 0.0:
                    return time.monotonic() - started
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    nap = min(nap, left)
                time.sleep(nap)
        except BaseException:
            self._leave(seat)
            raise
        if self._leave(seat):  # the slot came just as the time ran out
            return time.monotonic() - started
        raise TimeoutError(f"no rate-limit slot within {timeout:g} s ({self.limit} calls per {self.window_s:g} s)")

    async def acquire_async(self, place: int | None = None) -> float:
        """Like :meth:`acquire`, for asyncio code: the lock is held for microseconds, waits are
        ``asyncio.sleep``. Cancelling the caller gives up its place in line."""
        started = time.monotonic()
        seat: int | None = None
        try:
            while True:
                seat, place, nap = self._step(seat, place)
                if nap == 0.0:
                    return time.monotonic() - started
                await asyncio.sleep(nap)
        except BaseException:
            self._leave(seat)
            raise

    def _step(self, seat: int | None, place: int | None) -> tuple[int | None, int, float]:
        """Take a seat in the waiting room if needed, then see whether the slot came.

        Returns (seat, place, nap): nap is 0.0 once the slot is ours, else how long to sleep.
        """
        with self._lock:
            now = time.monotonic()
            if place is None:
                place = int(self._ints[_NEXT_PLACE])
                self._ints[_NEXT_PLACE] = place + 1
            if seat is None:
                seat = self._sit_down(place)
                if seat is None:
                    return None, place, _MAX_NAP_S  # the room is full: try again shortly
            self._serve(now)
            if self._places[seat] == _GRANTED:
                self._places[seat] = _EMPTY
                return None, place, 0.0
            turn = self._turn_at(place, now)
        nap = turn - now if turn > now else _HELD_NAP_S
        return seat, place, min(max(nap, _MIN_NAP_S), _MAX_NAP_S)

    def _sit_down(self, place: int) -> int | None:
        free = np.flatnonzero(self._places == _EMPTY)
        if not free.size:
            self._clear_departed()
            free = np.flatnonzero(self._places == _EMPTY)
            if not free.size:
                return None
        seat = int(free[0])
        self._owners[seat] = os.getpid()
        self._places[seat] = place
        if self._expected[place % EXPECTED_SIZE] == place:
            self._expected[place % EXPECTED_SIZE] = -1  # arrived
        return seat

    def _clear_departed(self) -> None:
        """Free the seats of callers whose process died (granted or still waiting)."""
        for seat in np.flatnonzero(self._places != _EMPTY):
            if not _alive(int(self._owners[seat])):
                self._places[seat] = _EMPTY

    def _leave(self, seat: int | None) -> bool:
        """Give up a seat; returns True if its slot had been granted meanwhile (the slot is used)."""
        if seat is None:
            return False
        with self._lock:
            granted = bool(self._places[seat] == _GRANTED)
            self._places[seat] = _EMPTY
        return granted

    def _serve(self, now: float) -> None:
        """Under the lock: hand every free slot to the waiting caller with the lowest place,
        unless an earlier place is announced and on its way."""
        on_the_way: int | None = None
        while self._next_free(now) <= now:
            seat = int(np.argmin(self._places))
            place = int(self._places[seat])
            if place >= _GRANTED:
                return  # nobody waiting
            on_the_way = self._first_on_the_way(now) if on_the_way is None else on_the_way
            if place > on_the_way:
                return
            if not _alive(int(self._owners[seat])):
                self._places[seat] = _EMPTY
                continue
            self._places[seat] = _GRANTED
            self._record(now)

    def _first_on_the_way(self, now: float) -> int:
        """The lowest announced place that has not arrived and is still within its grace."""
        coming = (self._expected >= 0) & (self._expected_at > now - ARRIVAL_GRACE_S)
        return int(self._expected[coming].min()) if coming.any() else int(_EMPTY)

    def _record(self, now: float) -> None:
        count = int(self._ints[_COUNT])
        self._history[count % HISTORY_SIZE] = now
        self._ints[_COUNT] = count + 1

    def _next_free(self, now: float) -> float:
        """When the next slot frees: the pause's end, or when the oldest of the last ``limit``
        grants leaves the window."""
        return self._free_after(0, now)

    def _free_after(self, ahead: int, now: float) -> float:
        """Earliest time at which ``ahead`` more callers have had a slot and one more is free."""
        free = float(self._paused[0])
        count, limit = int(self._ints[_COUNT]), int(self._ints[_LIMIT])
        index = count + ahead - limit
        if index >= count:  # depends on grants that have not happened yet
            return max(free, now + self.window_s)
        if index >= 0:
            free = max(free, float(self._history[index % HISTORY_SIZE]) + self.window_s + self.margin_s)
        return free

    def _turn_at(self, place: int, now: float) -> float:
        ahead = int(np.count_nonzero(self._places < place))
        return self._free_after(ahead, now)

    # ----------------------------------------------------------------- looking
    def used(self, now: float | None = None) -> int:
        """How many calls were granted in the window ending ``now`` (``time.monotonic()`` seconds)."""
        now = time.monotonic() if now is None else now
        recent = np.asarray(self.grants())
        return int(np.count_nonzero((recent > now - self.window_s) & (recent <= now)))

    def waiting(self) -> int:
        """How many callers are waiting for a slot right now, across all processes."""
        return int(np.count_nonzero(self._places < _GRANTED))

    def grants(self) -> list[float]:
        """Every grant time kept (the last ``HISTORY_SIZE``), oldest first, in ``time.monotonic()``
        seconds — for tests and benchmarks: the most calls in any window."""
        with self._lock:
            count = int(self._ints[_COUNT])
            kept = min(count, HISTORY_SIZE)
            start = (count - kept) % HISTORY_SIZE
            ring = self._history
            times = np.concatenate((ring[start : start + kept], ring[: max(0, start + kept - HISTORY_SIZE)]))
        return times.tolist()

    def __repr__(self) -> str:
        return (
            f"RateLimiter(limit={self.limit}, window_s={self.window_s:g}, used={self.used()},"
            f" waiting={self.waiting()}, override={self.override})"
        )


def _check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= HISTORY_SIZE:
        raise ConfigurationError(f"limit={limit!r} is not valid; allowed: an integer from 1 to {HISTORY_SIZE}")


def per_window(per_minute: int, window_s: float) -> int:
    """The broker's per-minute limit as a count for a window of ``window_s`` seconds.

    Shorter windows get their share (never less than 1); longer ones keep the per-minute count,
    which is stricter than the broker and so still safe.
    """
    return max(1, int(per_minute * min(1.0, window_s / 60.0)))


def max_in_any_window(times: Iterable[float], window_s: float) -> int:
    """The most grant times that fall in any half-open window ``[t, t + window_s)``."""
    ordered = np.sort(np.asarray(list(times), dtype=np.float64))
    if not ordered.size:
        return 0
    ends = np.searchsorted(ordered, ordered + window_s, side="left")
    return int((ends - np.arange(ordered.size)).max())


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


def _failed(reason: str, attempts: int | None) -> dict[str, Any]:
    return {"kind": "failed", "reason": reason, "attempts": attempts}


# =============================================================================== the worker process


@dataclass(frozen=True)
class _Settings:
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

    def verdict(self) -> str:
        """accepted / duplicate / rejected, or throttled (429: not taken) / ambiguous (may be taken)."""
        status = self.status
        if status is None or status >= 500 or status == 408:
            return "ambiguous"
        if 200 <= status < 300:
            return "accepted" if isinstance(self.payload, dict) else "ambiguous"
        if status == 429:
            return "throttled"
        if status == 422 and _DUPLICATE_ID in self.message.lower():
            return "duplicate"
        return "rejected"


@dataclass(frozen=True)
class _LookUp:
    """A look-up by client order id: the order, or None with ``known`` telling 'not there' from 'no answer'."""

    order: dict[str, Any] | None
    known: bool
    reason: str = ""


def _backoff(retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): 0.1 s × 2ⁿ⁻¹, jittered, capped."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


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
        if item == _STOP:
            return


def _run_worker(
    number: int,
    parent: int,
    connection: Connection,
    limiter: RateLimiter,
    inbox: Any,
    outbox: Any,
    settings: _Settings,
) -> None:
    """Entry point of a worker process (spawned): ignore SIGINT, die with the parent, send orders."""
    child_setup(parent)
    configure_child_logging(connection.credentials.secret_key)
    asyncio.run(_Submitter(number, connection, limiter, outbox, settings).run(inbox))


class _Submitter:
    """Inside a worker: takes tickets from the pool, sends them to the broker, reports each outcome."""

    def __init__(
        self, number: int, connection: Connection, limiter: RateLimiter, outbox: Any, settings: _Settings
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
            while (batch := await incoming.get()) != _STOP:
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
                    outcome = _failed(NOT_SENT, 0)
                else:
                    self.unsent.pop(ticket.seq, None)
                    started, sent = time.time(), True
                    self._emit({"kind": "submitting", **fields, "time": started})
                    outcome = await self._send_order(ticket, place)
        except asyncio.CancelledError:
            outcome = _failed(IN_FLIGHT_AT_STOP, None) if sent else _failed(NOT_SENT, 0)
        except Exception as error:  # a bug must still end the ticket with a result
            log.exception("worker %d: unexpected error on %s", self.number, ticket.client_order_id)
            outcome = _failed(self._scrub(f"internal error: {_describe(error, 0)}"), None)
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
        reason, maybe_taken = "", False
        failures = throttled = 0
        for attempt in itertools.count(1):
            if attempt > 1:
                await asyncio.sleep(_backoff(max(failures, 1)))
                await self.limiter.acquire_async(place)
            answer = await self._call("POST", self.orders_url, data=body, headers={"Content-Type": "application/json"})
            verdict = answer.verdict()
            if verdict in ("accepted", "duplicate", "rejected"):
                return await self._answered(ticket, place, attempt, answer)
            reason = answer.reason if answer.status is None else f"HTTP {answer.status}: {answer.message}"
            maybe_taken = maybe_taken or verdict == "ambiguous"
            throttled += verdict == "throttled"
            failures += verdict != "throttled"
            if failures > self.settings.max_retries or throttled > MAX_THROTTLED:
                return await self._after_retries(ticket, place, attempt, reason, maybe_taken)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _answered(self, ticket: Ticket, place: int, attempts: int, answer: _Answer) -> dict[str, Any]:
        """The final result of a POST the broker answered: accepted, duplicate (look it up) or rejected."""
        verdict = answer.verdict()
        if verdict == "accepted":
            return {"kind": "accepted", "order": answer.payload, "attempts": attempts, "looked_up": False}
        if verdict == "duplicate":
            return await self._already_there(ticket, place, attempts, answer)
        return self._rejected(answer, attempts)

    async def _already_there(self, ticket: Ticket, place: int, attempts: int, answer: _Answer) -> dict[str, Any]:
        """The broker holds an order with our client order id: an earlier attempt got through."""
        found = await self._look_up(ticket, place, not_found_is_final=False)
        if found.order is None:
            why = f"the broker reports {_DUPLICATE_ID!r} but the look-up failed: {found.reason}"
            return _failed(why, attempts)
        if not _same_order(found.order, ticket.order):
            return self._rejected(answer, attempts, "client_order_id already used by a different order")
        return {"kind": "accepted", "order": found.order, "attempts": attempts, "looked_up": True}

    async def _after_retries(
        self, ticket: Ticket, place: int, attempts: int, reason: str, maybe_taken: bool
    ) -> dict[str, Any]:
        """Out of retries: if an attempt may have reached the broker, ask before calling it failed."""
        if not maybe_taken:
            return _failed(f"gave up after {attempts} attempts; last: {reason}", attempts)
        found = await self._look_up(ticket, place, not_found_is_final=True)
        if found.order is not None and _same_order(found.order, ticket.order):
            return {"kind": "accepted", "order": found.order, "attempts": attempts, "looked_up": True}
        where = "not at the broker" if found.known else f"look-up failed: {found.reason}"
        return _failed(f"gave up after {attempts} attempts; last: {reason}; {where}", attempts)

    async def _look_up(self, ticket: Ticket, place: int, *, not_found_is_final: bool) -> _LookUp:
        """GET the order by client order id, retrying failures (and 404s when it must be there)."""
        params = {"client_order_id": ticket.client_order_id}
        reason = ""
        failures = throttled = 0
        while failures <= self.settings.max_retries and throttled <= MAX_THROTTLED:
            if failures or throttled:
                await asyncio.sleep(_backoff(max(failures, 1)))
            await self.limiter.acquire_async(place)
            answer = await self._call("GET", self.by_client_id_url, params=params)
            if answer.status == 200 and isinstance(answer.payload, dict):
                return _LookUp(answer.payload, True)
            if answer.status == 404 and not_found_is_final:
                return _LookUp(None, True)
            reason = answer.reason if answer.status is None else f"HTTP {answer.status}: {answer.message}"
            throttled += answer.status == 429  # "wait" uses up no retry, as for the POST
            failures += answer.status != 429
        return _LookUp(None, False, reason)

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
            try:
                reset = float(answer.reset) if answer.reset else time.time() + BACKOFF_CAP_S
            except ValueError:
                reset = time.time() + BACKOFF_CAP_S
            self.limiter.pause_until(reset)

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


# =============================================================================== the pool (parent side)


@dataclass
class _Tracked:
    """A ticket without its final result yet: where it is and its place in the limiter's line."""

    ticket: Ticket
    place: int
    holder: int
    announced: bool = False


@dataclass(eq=False)
class _WorkerSlot:
    """One worker number: its current process, its two pipes and the tickets it holds."""

    number: int
    process: BaseProcess | None = None
    inbox: Any = None  # our sending end: tickets go out through the sender thread
    outbox: Any = None  # our receiving end: the worker's results come in
    outgoing: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    tickets: dict[int, Ticket] = field(default_factory=dict)
    sent: int = 0
    ready: bool = False
    restarts: int = 0


def _send_batches(inbox: Any, outgoing: queue.SimpleQueue[Any], all_up: threading.Event, limiter: RateLimiter) -> None:
    """Sender thread, one per worker process: writes ticket batches to the worker's pipe.

    The very first tickets wait until every worker is up: a worker that booted first would
    otherwise take a whole window's slots for its share while earlier orders of the others wait.
    Each batch's places are announced to the limiter as they go, for the same reason.
    """
    all_up.wait(_BOOT_TIMEOUT_S)
    try:
        while (item := outgoing.get()) is not None:
            if item != _STOP:
                limiter.expect(place for _ticket, place in item)
            inbox.send(item)
    except OSError:  # the worker died; its tickets are re-dispatched by the supervisor
        pass
    finally:
        inbox.close()


def default_workers() -> int:
    """A sensible number of worker processes for this machine: 2 to 4."""
    return min(4, max(2, os.cpu_count() or 2))


class ExecutionPool:
    """Parallel, rate-limited, idempotent order submission through N worker processes.

    ``results`` receives plain dicts: for each ticket ``submitting`` (right before its first
    attempt) and then exactly one of ``accepted`` (with the broker's order JSON), ``rejected``
    (status, code, reason) or ``failed`` (reason, attempts). See the module docstring.
    """

    def __init__(
        self,
        connection: Connection,
        limiter: RateLimiter,
        results: ResultSink,
        *,
        num_workers: int | None = None,
        max_retries: int = 3,
        max_in_flight: int = 64,
        ctx: BaseContext | None = None,
        request_timeout_s: float = 10.0,
    ) -> None:
        num_workers = default_workers() if num_workers is None else num_workers
        _check_count("num_workers", num_workers, 1)
        _check_count("max_retries", max_retries, 0)
        _check_count("max_in_flight", max_in_flight, 1)
        if not isinstance(request_timeout_s, int | float) or not request_timeout_s > 0:
            raise ConfigurationError(f"request_timeout_s={request_timeout_s!r} is not valid; allowed: seconds > 0")
        self._connection = connection
        self._limiter = limiter
        self._results = results
        self._ctx = ctx or SPAWN
        self._settings = _Settings(max_retries, max_in_flight, float(request_timeout_s))
        self._slots = [_WorkerSlot(number) for number in range(num_workers)]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a ticket resolved or a worker gone
        self._tracked: dict[int, _Tracked] = {}
        self._seq = itertools.count()
        self._supervisor: threading.Thread | None = None
        self._closing = False
        self._all_up = threading.Event()  # every worker reported ready once (restarts do not reset it)

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> ExecutionPool:
        """Spawn the worker processes and the supervisor thread; returns at once."""
        with self._lock:
            if self._supervisor is not None or self._closing:
                return self
            for slot in self._slots:
                self._spawn(slot)
            self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="execution-supervisor")
        self._supervisor.start()
        return self

    def _spawn(self, slot: _WorkerSlot) -> None:
        """Start (or restart) the process of one worker number, with fresh pipes (under the lock)."""
        inbox_theirs, inbox_ours = self._ctx.Pipe(duplex=False)
        outbox_ours, outbox_theirs = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_run_worker,
            args=(
                slot.number,
                os.getpid(),
                self._connection,
                self._limiter,
                inbox_theirs,
                outbox_theirs,
                self._settings,
            ),
            name=f"blockpaca-execution-{slot.number}",
            daemon=True,
        )
        launch(process)
        inbox_theirs.close()  # the worker holds the only other ends: its death shows as end-of-file
        outbox_theirs.close()
        slot.process, slot.inbox, slot.outbox = process, inbox_ours, outbox_ours
        slot.outgoing = queue.SimpleQueue()
        threading.Thread(
            target=_send_batches,
            args=(inbox_ours, slot.outgoing, self._all_up, self._limiter),
            daemon=True,
            name=f"execution-sender-{slot.number}",
        ).start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking orders; unsent tickets end as failed, in-flight ones get ``timeout`` seconds
        to be answered; then every worker process is gone. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            for slot in self._slots:
                slot.outgoing.put(_STOP)
            self._all_up.set()  # a worker still booting reads its stop message when it is up
        if self._supervisor is None:
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            self._changed.wait_for(lambda: not self._tracked, timeout)
        self._end_processes(deadline)
        self._supervisor.join(5.0)
        self._resolve_leftovers()

    def _end_processes(self, deadline: float) -> None:
        """Let the workers exit by themselves until ``deadline``, then terminate, then kill."""
        if self._wait_for_exits(deadline):
            return
        for how in ("terminate", "kill"):
            with self._lock:
                for slot in self._slots:
                    if slot.outbox is not None and slot.process is not None:
                        log.warning("execution worker %d did not stop in time: %s", slot.number, how)
                        getattr(slot.process, how)()
            if self._wait_for_exits(time.monotonic() + 2.0):
                return

    def _wait_for_exits(self, until: float) -> bool:
        """Wait until the supervisor has seen every worker go. It alone reaps worker processes:
        two threads waiting on one child race, and the loser may take it for alive."""
        with self._lock:
            return self._changed.wait_for(
                lambda: all(slot.outbox is None for slot in self._slots), max(0.0, until - time.monotonic())
            )

    def __enter__(self) -> ExecutionPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- submitting
    def submit(self, orders: Iterable[Order]) -> list[Ticket]:
        """Queue orders for sending, in this order, and return their tickets at once (never blocks
        on the network). Each gets its worker and its client order id here, for good."""
        orders = list(orders)
        with self._lock:
            if self._supervisor is None or self._closing:
                state = "stopped" if self._closing else "not started: call start() first"
                raise BlockpacaError(f"the execution pool is {state}")
            places = self._limiter.reserve(len(orders))
            tracked = [self._ticket_for(order, place) for order, place in zip(orders, places, strict=True)]
            self._dispatch(tracked)
        return [item.ticket for item in tracked]

    def _ticket_for(self, order: Order, place: int) -> _Tracked:
        slot = self._least_loaded()
        cid = new_client_order_id(order.action, slot.number)
        ticket = Ticket(next(self._seq), order, cid, slot.number, time.time())
        item = _Tracked(ticket, place, slot.number)
        self._tracked[ticket.seq] = item
        slot.tickets[ticket.seq] = ticket  # counts towards its load for the next pick
        return item

    def _least_loaded(self, avoid: int | None = None) -> _WorkerSlot:
        others = [slot for slot in self._slots if slot.number != avoid] or self._slots
        return min(others, key=lambda slot: len(slot.tickets))

    def _dispatch(self, items: Iterable[_Tracked], avoid: int | None = None) -> None:
        """Send tickets to their holders in batches (under the lock). Items whose holder no longer
        has them (a dead worker's) go to the least-loaded other worker, one that is already up."""
        batches: dict[int, list[tuple[Ticket, int]]] = {}
        for item in items:
            slot = self._slots[item.holder]
            if item.ticket.seq not in slot.tickets:
                slot = self._least_loaded(avoid)
                item.holder = slot.number
                slot.tickets[item.ticket.seq] = item.ticket
            batches.setdefault(slot.number, []).append((item.ticket, item.place))
        for number, batch in batches.items():
            self._slots[number].outgoing.put(batch)

    # ----------------------------------------------------------------- the supervisor thread
    def _supervise(self) -> None:
        """Read every worker's results, forward them, restart dead workers; ends after stop()."""
        while True:
            with self._lock:
                watched = {slot.outbox: slot for slot in self._slots if slot.outbox is not None}
                if not watched and self._closing:
                    return
            for ready in mp_connection.wait(list(watched), timeout=_SUPERVISE_S):
                self._drain(watched[ready])  # type: ignore[index]
            for slot in watched.values():
                process = slot.process
                if slot.outbox is not None and process is not None and not process.is_alive():
                    self._drain(slot)  # may meet the end of the pipe and handle the death itself
                    self._worker_gone(slot, process)

    def _drain(self, slot: _WorkerSlot) -> None:
        """Take everything the worker wrote; the pipe's end means the worker is gone."""
        process = slot.process
        while slot.outbox is not None:
            try:
                if not slot.outbox.poll():
                    return
                event = slot.outbox.recv()
            except (EOFError, OSError):  # gone, possibly in the middle of a message
                self._worker_gone(slot, process)
                return
            self._handle(slot, event)

    def _handle(self, slot: _WorkerSlot, event: dict[str, Any]) -> None:
        """Book one result and forward it: one ``submitting`` and one final result per ticket."""
        seq, kind = event.get("seq"), event.get("kind")
        if kind == "ready":
            self._worker_ready(slot)
            return
        with self._lock:
            item = self._tracked.get(seq)  # type: ignore[arg-type]
            if kind == "submitting":
                slot.sent += 1
                forward = item is not None and not item.announced
                if item is not None:
                    item.announced = True
            else:
                forward = self._resolve(seq) is not None  # type: ignore[arg-type]
        if forward:
            self._results.put(event)

    def _worker_ready(self, slot: _WorkerSlot) -> None:
        with self._lock:
            slot.ready = True
            if all(other.ready for other in self._slots):
                self._all_up.set()

    def _resolve(self, seq: int) -> _Tracked | None:
        """Forget a ticket that got its final result (under the lock)."""
        item = self._tracked.pop(seq, None)
        if item is not None:
            self._slots[item.holder].tickets.pop(seq, None)
            if not self._tracked:
                self._changed.notify_all()
        return item

    def _worker_gone(self, slot: _WorkerSlot, process: BaseProcess | None) -> None:
        """Worker process ``process`` ended: restart its slot and hand its unresolved tickets to live
        workers. A death is handled once, however it was noticed (end of pipe, exit status)."""
        if process is None or slot.process is not process:
            return  # already replaced
        process.join(1.0)
        if process.is_alive():  # its pipe broke but it lingers: make sure it sends nothing more
            process.kill()
            process.join(1.0)
        with self._lock:
            if slot.outbox is None or slot.process is not process:
                return
            with contextlib.suppress(OSError):
                slot.outbox.close()
            slot.outbox = None
            slot.outgoing.put(None)
            self._changed.notify_all()
            orphans = [self._tracked[seq] for seq in slot.tickets if seq in self._tracked]
            slot.tickets.clear()
            if self._closing:
                leftovers = [self._left_over(item) for item in orphans]
            else:
                log.warning("execution worker %d died (exit code %s); restarting it", slot.number, _exit_code(process))
                slot.restarts += 1
                self._spawn(slot)
                self._dispatch(orphans, avoid=slot.number)
                leftovers = []
        for event in leftovers:
            self._results.put(event)

    def _resolve_leftovers(self) -> None:
        with self._lock:
            leftovers = [self._left_over(item) for item in list(self._tracked.values())]
        for event in leftovers:
            self._results.put(event)

    def _left_over(self, item: _Tracked) -> dict[str, Any]:
        """The final result of a ticket the stopped pool could not finish (under the lock)."""
        self._resolve(item.ticket.seq)
        outcome = _failed(IN_FLIGHT_AT_STOP, None) if item.announced else _failed(NOT_SENT, 0)
        return {**outcome, **ticket_fields(item.ticket), "time": time.time()}

    # ----------------------------------------------------------------- looking
    def health(self) -> list[dict[str, Any]]:
        """Per worker: alive, pid, in_flight (tickets it holds), sent (first attempts), restarts."""
        with self._lock:
            return [
                {
                    "worker": slot.number,
                    "alive": slot.outbox is not None and _running(slot.process),
                    "pid": slot.process.pid if slot.process is not None else None,
                    "in_flight": len(slot.tickets),
                    "sent": slot.sent,
                    "restarts": slot.restarts,
                }
                for slot in self._slots
            ]

    def __repr__(self) -> str:
        state = "stopped" if self._closing else ("running" if self._supervisor else "not started")
        return (
            f"<ExecutionPool {state}: {len(self._slots)} workers, {len(self._tracked)} orders in flight,"
            f" {self._connection.mode} mode>"
        )


def _check_count(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigurationError(f"{name}={value!r} is not valid; allowed: an integer >= {low}")


def _running(process: BaseProcess | None) -> bool:
    """Whether a child is running, without reaping it (that is the supervisor's job)."""
    return process is not None and not mp_connection.wait([process.sentinel], 0)


def _exit_code(process: BaseProcess | None) -> int | None:
    return None if process is None else process.exitcode


# =============================================================================== other REST calls

T = TypeVar("T")
REST_TIMEOUT_S = (3.05, 10.0)
"""Connect and read timeouts of every REST call made through alpaca-py (which sets none)."""
_TRANSIENT = frozenset({408, 500, 502, 503, 504})


@dataclass(frozen=True)
class _Problem:
    """What went wrong with one REST call: the error to raise, and whether to try again."""

    error: Exception
    retry: bool = False
    reset: float | None = None  # a 429's X-RateLimit-Reset (epoch seconds)
    unanswered: bool = False  # no HTTP answer at all (refused, reset, timed out)


class BrokerCalls:
    """Every REST call the toolkit makes outside the workers (account, positions, clock, assets,
    the recorder's catch-up): alpaca-py's TradingClient with the workers' discipline.

    Each attempt takes a slot from the shared limiter; requests time out (``timeout``: connect and
    read seconds); timeouts, resets and 5xx are retried up to ``max_retries`` times with backoff, and
    a 429 pauses the limiter until the broker's reset and is retried without using up a retry;
    ``max_unanswered`` caps the retries of calls that got no answer at all (a check at start-up
    should not spend a minute on an unreachable endpoint). Anything else fails at once:
    :class:`AuthenticationError` for refused keys, :class:`BrokerError` with the broker's reason
    otherwise — never carrying a request or its headers (the secret). ``make`` builds the alpaca-py
    client from the connection (default: the TradingClient).
    """

    def __init__(
        self,
        connection: Connection,
        limiter: RateLimiter | None = None,
        *,
        max_retries: int = 3,
        timeout: tuple[float, float] = REST_TIMEOUT_S,
        max_unanswered: int | None = None,
        make: Callable[[Connection], Any] | None = None,
    ) -> None:
        self.connection = connection
        self.limiter = limiter
        self.max_retries = max_retries
        self.max_unanswered = max_retries if max_unanswered is None else max_unanswered
        self.timeout = timeout
        self._make = make
        self._client: TradingClient | None = None

    def __call__(self, call: Callable[[TradingClient], T]) -> T:
        failures = throttled = unanswered = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            try:
                return call(self.client())
            except Exception as error:  # judged below: retried, translated, or a bug re-raised
                problem = _judge(error, self.connection.endpoints.trading, self.timeout)
            if not problem.retry:
                raise problem.error from None
            throttled += problem.reset is not None
            failures += problem.reset is None
            unanswered += problem.unanswered
            if failures > self.max_retries or throttled > MAX_THROTTLED or unanswered > self.max_unanswered:
                raise problem.error from None
            self._wait(problem, failures)

    def _wait(self, problem: _Problem, failures: int) -> None:
        if problem.reset is not None and self.limiter is not None:
            self.limiter.pause_until(problem.reset)  # the next acquire waits for the reset
            return
        time.sleep(_backoff(max(failures, 1)))

    def client(self) -> TradingClient:
        """The TradingClient: alpaca-py's own retries off (we retry), every request with a timeout."""
        if self._client is None:
            client = self._make(self.connection) if self._make else self.connection.trading_client()
            client._retry = 0  # alpaca-py would sleep 3 s per 429, uncounted and regardless of the reset
            adapter = _TimeoutAdapter(self.timeout)
            client._session.mount("http://", adapter)
            client._session.mount("https://", adapter)
            self._client = client
        return self._client

    def __repr__(self) -> str:
        return f"<BrokerCalls {self.connection.mode} {self.connection.endpoints.trading}>"


class _TimeoutAdapter(HTTPAdapter):
    """requests' adapter with a default timeout (requests has none)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        return super().send(request, **kwargs)


def _judge(error: Exception, endpoint: str, timeout: tuple[float, float]) -> _Problem:
    """Sort a failed REST call: permanent (raise), transient (retry) or throttled (wait, retry)."""
    import requests
    from alpaca.common.exceptions import APIError

    if isinstance(error, APIError):
        return _judge_answer(error)
    if isinstance(error, requests.Timeout):
        text = f"no answer from the broker at {endpoint} within {timeout[1]:g} s"
        return _Problem(BrokerError(text), True, unanswered=True)
    if isinstance(error, requests.ConnectionError):
        text = f"cannot reach the broker at {endpoint}: {_root_cause(error)}"
        return _Problem(BrokerError(text), True, unanswered=True)
    raise error


def _judge_answer(error: Any) -> _Problem:
    """An HTTP error answer from alpaca-py (APIError), without its request (which holds the keys)."""
    status = error.status_code
    try:
        message, code = str(error.message), error.code
    except (ValueError, KeyError, TypeError):
        message, code = str(error)[:200] or f"HTTP {status}", None
    if status in (401, 403):
        text = f"the broker refused the API keys ({message}); check api_key/secret_key or APCA_API_* variables"
        return _Problem(AuthenticationError(text, status, code))
    if status == 429:
        reset = error.response.headers.get("X-RateLimit-Reset") if error.response is not None else None
        return _Problem(BrokerError(message, status, code), True, _reset_time(reset))
    return _Problem(BrokerError(message, status, code), status in _TRANSIENT or status is None)


def _reset_time(header: str | None) -> float:
    try:
        return float(header) if header else time.time() + BACKOFF_CAP_S
    except ValueError:
        return time.time() + BACKOFF_CAP_S


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a requests error, short ("Connection refused", not a pool dump)."""
    reason: object = error.args[0] if error.args else error
    reason = getattr(reason, "reason", reason)
    text = str(reason)
    return text.split("] ", 1)[-1][:160] if text else type(error).__name__
