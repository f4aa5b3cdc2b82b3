"""The shared sliding-window rate limiter: never more than ``limit`` REST calls in any window.

Alpaca allows 200 REST calls a minute per account, counted across everything the account does. A
session makes calls from several processes at once (the execution workers, the recorder, the kernel),
so the count must live where all of them see it: in shared memory, handed to spawned children as a
``Process`` argument.

A strict sliding window: never more than ``limit`` calls in any ``window_s`` seconds, counted at the
moment each call is granted. Waiters are served in order of their place in line — arrival order, or
the order's submission order when it reserved a place; an announced place holds later ones back
while it is on its way (``ARRIVAL_GRACE_S``, or as long as its announcer asks while its process
lives) — and a waiter or announcer whose process died is skipped. The
cross-process lock is a POSIX record lock, which the operating system releases if its holder is
killed, so a SIGKILLed worker cannot freeze the others.

A block of orders takes its places in one go (:meth:`RateLimiter.seat_many`): one lock round trip
for the whole batch, not one per order, because the lock is a system call and the line is searched
with numpy — per order, that was the biggest CPU cost between the strategy's return and the sockets.

This module depends on nothing else in the package but the error types. Why one module over 500
lines: the window, the line (places, the priority lane, announcements) and the waiting room are one
invariant — never more than the limit, first come first served — kept under one lock in one place.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from multiprocessing import context, get_context, reduction
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np

from .errors import ConfigurationError

try:  # POSIX: a lock the kernel frees when its holder dies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

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
"""How long an announced place holds back later ones while it is on its way (by default)."""

_EMPTY = np.iinfo(np.int64).max  # a free seat in the waiting room
_GRANTED = _EMPTY - 1  # a seat whose caller got its slot but has not collected it yet
GRANTED = -1
"""What :meth:`RateLimiter.seat_many` returns for a place whose slot came at once."""
_MIN_NAP_S = 0.0005
_HELD_NAP_S = 0.002  # a slot is free but an earlier place is on its way
_MAX_NAP_S = 0.2
_RESET_ROUNDING_S = 1.0  # X-RateLimit-Reset is in whole seconds
_COUNT, _NEXT_PLACE, _LIMIT, _OVERRIDE, _NEXT_URGENT = range(5)
_URGENT_BASE = -(2**62)  # places of the priority lane: below every ordinary place, so served first


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
            "ints": ctx.RawArray("q", 5),
            "paused": ctx.RawArray("d", 1),
            "history": ctx.RawArray("d", HISTORY_SIZE),
            "places": ctx.RawArray("q", ROOM_SIZE),
            "owners": ctx.RawArray("q", ROOM_SIZE),
            "expected": ctx.RawArray("q", EXPECTED_SIZE),
            "expected_until": ctx.RawArray("d", EXPECTED_SIZE),
            "expected_by": ctx.RawArray("q", EXPECTED_SIZE),
        }
        self._attach()
        self._places[:] = _EMPTY
        self._expected[:] = -1
        self._ints[_LIMIT] = limit
        self._ints[_OVERRIDE] = int(override)
        self._ints[_NEXT_URGENT] = _URGENT_BASE

    # ----------------------------------------------------------------- sharing with children
    def _attach(self) -> None:
        raw = self._raw
        self._ints = _view(raw["ints"], np.int64)
        self._paused = _view(raw["paused"], np.float64)
        self._history = _view(raw["history"], np.float64)
        self._places = _view(raw["places"], np.int64)
        self._owners = _view(raw["owners"], np.int64)
        self._expected = _view(raw["expected"], np.int64)
        self._expected_until = _view(raw["expected_until"], np.float64)
        self._expected_by = _view(raw["expected_by"], np.int64)

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
    def reserve(self, count: int = 1, *, urgent: bool = False) -> range:
        """Reserve ``count`` places in line, for calls that will come later in this order.

        ``urgent=True`` takes places in the priority lane (control actions: liquidation, kill), which
        is served before every ordinary place, waiting or reserved: an EOS order is never overtaken
        by strategy orders queued before it. The lane itself is first come, first served.
        """
        counter = _NEXT_URGENT if urgent else _NEXT_PLACE
        with self._lock:
            first = int(self._ints[counter])
            self._ints[counter] = first + count
        return range(first, first + count)

    def expect(self, places: Iterable[int], *, hold_s: float = ARRIVAL_GRACE_S) -> None:
        """Announce reserved places whose callers are on their way (the pool calls this as it
        hands tickets to a worker; a worker, for its tickets waiting for an in-flight permit). For
        ``hold_s`` seconds nobody with a later place gets a slot before them — so a worker that is a
        few milliseconds quicker than another cannot take the free slots ahead of earlier orders —
        unless this process dies first. :meth:`forget` ends the hold of a place that will not come."""
        wanted = np.fromiter(places, dtype=np.int64)
        wanted = wanted[wanted >= 0]  # the priority lane is ahead of every ordinary place anyway
        with self._lock:
            where = wanted % EXPECTED_SIZE
            self._expected[where] = wanted
            self._expected_until[where] = time.monotonic() + hold_s
            self._expected_by[where] = os.getpid()

    def forget(self, places: Iterable[int]) -> None:
        """End the announcement of places whose callers will not come (their tickets ended unsent)."""
        gone = np.fromiter(places, dtype=np.int64)
        with self._lock:
            where = gone % EXPECTED_SIZE
            self._expected[where[self._expected[where] == gone]] = -1

    def acquire(self, timeout: float | None = None, *, place: int | None = None, urgent: bool = False) -> float:
        """Block (sleeping) until this caller gets a slot; return the seconds waited.

        ``urgent=True`` waits in the priority lane (see :meth:`reserve`).
        Raises ``TimeoutError`` if no slot came within ``timeout`` seconds.
        """
        if urgent and place is None:
            place = self.reserve(1, urgent=True)[0]
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

    async def acquire_async(self, place: int | None = None, *, seat: int | None = None) -> float:
        """Like :meth:`acquire`, for asyncio code: the lock is held for microseconds, waits are
        ``asyncio.sleep``. Cancelling the caller gives up its place in line. ``seat``: the seat
        :meth:`seat_many` gave this place (the caller hands it over: it is left here)."""
        started = time.monotonic()
        try:
            while True:
                seat, place, nap = self._step(seat, place)
                if nap == 0.0:
                    return time.monotonic() - started
                await asyncio.sleep(nap)
        except BaseException:
            self._leave(seat)
            raise

    def seat_many(self, places: list[int]) -> list[int | None]:
        """Take seats for many reserved places at once and serve the line, under one lock.

        Per place, in order: :data:`GRANTED` (its slot came: call now), a seat number (it waits in
        line: pass the seat to :meth:`acquire_async`, or to :meth:`leave`), or None (the waiting
        room is full: call :meth:`acquire_async` without a seat). Grants follow the places in line
        across every process exactly as one seat at a time would.
        """
        if not places:
            return []
        wanted = np.asarray(places, dtype=np.int64)
        with self._lock:
            now = time.monotonic()
            seats = self._sit_down_many(wanted)
            self._serve(now)
            out: list[int | None] = []
            for seat in seats.tolist():
                if seat >= 0 and self._places[seat] == _GRANTED:
                    self._places[seat] = _EMPTY
                    out.append(GRANTED)
                else:
                    out.append(seat if seat >= 0 else None)
        return out

    def leave(self, seat: int | None) -> None:
        """Give up a seat from :meth:`seat_many` that will not be used (its caller was cancelled)."""
        self._leave(seat)

    def _sit_down_many(self, places: np.ndarray) -> np.ndarray:
        """Seat each place (under the lock); -1 for those the full room has no seat for."""
        free = np.flatnonzero(self._places == _EMPTY)
        if free.size < places.size:
            self._clear_departed()
            free = np.flatnonzero(self._places == _EMPTY)
        seats = np.full(places.size, -1, dtype=np.int64)
        taken = free[: places.size]
        seats[: taken.size] = taken
        self._owners[taken] = os.getpid()
        self._places[taken] = places[: taken.size]
        arrived = places[: taken.size]
        where = arrived % EXPECTED_SIZE
        self._expected[where[self._expected[where] == arrived]] = -1
        return seats

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
        if self._next_free(now) > now:
            return
        waiting = np.flatnonzero(self._places < _GRANTED)
        if not waiting.size:
            return
        on_the_way = self._first_on_the_way(now)
        alive: dict[int, bool] = {}  # one look per waiting process, not one per grant
        for seat in waiting[np.argsort(self._places[waiting], kind="stable")].tolist():
            if self._next_free(now) > now or int(self._places[seat]) > on_the_way:
                return
            owner = int(self._owners[seat])
            if not alive.setdefault(owner, _alive(owner)):
                self._places[seat] = _EMPTY
                continue
            self._places[seat] = _GRANTED
            self._record(now)

    def _first_on_the_way(self, now: float) -> int:
        """The lowest announced place that has not arrived, still within its hold, whose announcer
        lives (the announcements of a dead process are dropped here)."""
        coming = (self._expected >= 0) & (self._expected_until > now)
        while coming.any():
            first = np.flatnonzero(coming)[np.argmin(self._expected[coming])]
            announcer = int(self._expected_by[first])
            if _alive(announcer):
                return int(self._expected[first])
            dead = self._expected_by == announcer
            self._expected[dead] = -1
            coming &= ~dead
        return int(_EMPTY)

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
    def free_in(self) -> float:
        """Seconds until the next slot frees for a newcomer (0 when one is free now)."""
        with self._lock:
            now = time.monotonic()
            return max(0.0, self._next_free(now) - now)

    def room(self) -> int:
        """About how many calls would get a slot right now, waiters aside (a hint, e.g. for spreading
        a block over workers; it reserves nothing). Looks at the last 4096 grants at most."""
        now = time.monotonic()
        if self._paused[0] > now:
            return 0
        count, limit = int(self._ints[_COUNT]), int(self._ints[_LIMIT])
        recent = np.arange(count - min(count, limit, 4096), count) % HISTORY_SIZE
        busy = int(np.count_nonzero(self._history[recent] > now - self.window_s - self.margin_s))
        return max(0, limit - busy - self.waiting())

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
