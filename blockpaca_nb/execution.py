"""The execution pool: hands orders to N worker processes, in order, and keeps every one accounted for.

Orders travel kernel → :class:`ExecutionPool` → worker processes (:mod:`.worker`) → broker.

**Dispatch.** :meth:`ExecutionPool.submit` returns at once. It numbers each order (``seq``), picks its
worker, fixes the client order id ``{action}-{worker}-{uuid8}`` for good and reserves the order's
place in the rate limiter's line (submission order). A block is cut into one contiguous run per
worker, the least-loaded workers taking the earliest orders, so loads even out (the orders the
rate limit lets go at once are cut apart from the rest, so every worker sends some): a worker takes
its whole run's places in the line in one go, where interleaved places (0, 2, 4 … to one worker,
1, 3, 5 … to the other) would hold each worker back until the other's earlier ones arrived.
Per-worker pipes carry the tickets; a sender thread per worker writes them, so a stalled worker
never blocks the kernel. The first tickets wait until every worker is up, and a block's places are
announced to the limiter (:meth:`RateLimiter.expect`) all at once before any batch leaves: a worker
that is quicker off the mark — or whose sender thread ran first — cannot take the free slots ahead
of earlier orders held by another, so overflow waits in submission order across all workers.

**Channels.** Every worker reports on its own one-way pipe, a list of reports per message
(``Connection.send`` is a synchronous write, with a single writer per pipe: a worker SIGKILLed
mid-write spoils only its own pipe, which the pool then reads to its end). One supervisor thread in
the parent reads all pipes, forwards each result to ``results`` and keeps the books: which tickets
each worker still holds. When a worker dies it reads that worker's pipe to the end, starts a
replacement and hands the unresolved tickets, with their *same* client order ids, to live workers.
The broker refuses a second order with the same client order id, so a re-sent ticket is either the
first copy the broker sees, or is answered "client_order_id must be unique", looked up, and reported
accepted: never lost, never doubled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from multiprocessing import connection as mp_connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from .errors import BlockpacaError, ConfigurationError
from .events import failed
from .orders import Order, new_client_order_id
from .processes import launch
from .ratelimit import SPAWN, RateLimiter
from .scrub import scrubbed_logger
from .worker import (
    IN_FLIGHT_AT_STOP,
    NOT_SENT,
    STOP,
    WITHDRAWN,
    ResultSink,
    Settings,
    Ticket,
    Withdraw,
    run_worker,
    ticket_fields,
)

if TYPE_CHECKING:
    from .broker import Connection

log = scrubbed_logger(__name__)

_SUPERVISE_S = 0.2
_BOOT_TIMEOUT_S = 20.0  # the first tickets wait at most this long for every worker to be up
_ON_THE_WAY_S = 1.0
"""How long a dispatched batch's places hold later ones back on their way to their worker, counted
from dispatch (a busy machine can leave a sender thread or a worker unscheduled for a few hundred
milliseconds). Arrival ends the hold at once; a batch held up longer (a full pipe) only loses its
place in line, never an order, and a dead worker's tickets are dispatched again with their places."""


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


def _send_batches(inbox: Any, outgoing: queue.SimpleQueue[Any], all_up: threading.Event) -> None:
    """Sender thread, one per worker process: writes ticket batches to the worker's pipe.

    The very first tickets wait until every worker is up: a worker that booted first would
    otherwise take a whole window's slots for its share while earlier orders of the others wait.
    """
    all_up.wait(_BOOT_TIMEOUT_S)
    try:
        while (item := outgoing.get()) is not None:
            inbox.send(item)
    except OSError:  # the worker died; its tickets are re-dispatched by the supervisor
        pass
    finally:
        inbox.close()


def default_workers() -> int:
    """A sensible number of worker processes for the cores this process may run on: 2 to 4, and 1
    on one core (Binder, `taskset -c 0`), where a second worker only competes with the first, the
    kernel, the recorder and the broker for the same core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return 1 if cores == 1 else min(4, max(2, cores))


class ExecutionPool:
    """Parallel, rate-limited, idempotent order submission through N worker processes.

    ``max_in_flight`` (per worker) defaults to Alpaca's minute's limit, 200: the slots free at once
    go out in one round trip even when one worker holds them all.

    ``results`` receives plain dicts: for each ticket ``submitting`` (right before its first
    attempt) and then exactly one of ``accepted`` (with the parts of the broker's order JSON the trade
    log uses, ``events.LOGGED_ORDER_FIELDS``), ``rejected``
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
        max_in_flight: int = 200,
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
        self._settings = Settings(max_retries, max_in_flight, float(request_timeout_s))
        self._slots = [_WorkerSlot(number) for number in range(num_workers)]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a ticket resolved or a worker gone
        self._tracked: dict[int, _Tracked] = {}
        self._seq = itertools.count()
        self._supervisor: threading.Thread | None = None
        self._closing = False
        self._all_up = threading.Event()  # every worker reported ready once (restarts do not reset it)
        self._started_at = 0.0  # when start() spawned the workers (the senders' boot wait counts from then)
        self._withdrawn_upto = -1  # ordinary tickets numbered below this were withdrawn, unsent
        self._withdraw_action = ""

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> ExecutionPool:
        """Spawn the worker processes and the supervisor thread; returns at once."""
        with self._lock:
            if self._supervisor is not None or self._closing:
                return self
            self._started_at = time.monotonic()
            for slot in self._slots:
                self._spawn(slot)
            self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="execution-supervisor")
        self._supervisor.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker is up (has reported ready once); False if ``timeout`` passed first.
        Tickets submitted before then wait for it anyway (up to 20 s)."""
        return self._all_up.wait(timeout)

    def _spawn(self, slot: _WorkerSlot) -> None:
        """Start (or restart) the process of one worker number, with fresh pipes (under the lock)."""
        inbox_theirs, inbox_ours = self._ctx.Pipe(duplex=False)
        outbox_ours, outbox_theirs = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=run_worker,
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
            args=(inbox_ours, slot.outgoing, self._all_up),
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
                slot.outgoing.put(STOP)
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
    def submit(
        self,
        orders: Iterable[Order],
        *,
        urgent: bool = False,
        claim: Callable[[list[str]], None] | None = None,
        strategy: str = "",
    ) -> list[Ticket]:
        """Queue orders for sending, in this order, and return their tickets at once (never blocks
        on the network). Each gets its worker and its client order id here, for good.
        ``urgent=True`` (control actions) puts them in the rate limiter's priority lane; ``claim``
        is given the client order ids before any ticket leaves (the session's ledger); ``strategy``
        (the one that sent them) goes into each client order id."""
        orders = list(orders)
        with self._lock:
            if self._supervisor is None or self._closing:
                state = "stopped" if self._closing else "not started: call start() first"
                raise BlockpacaError(f"the execution pool is {state}")
            places = self._limiter.reserve(len(orders), urgent=urgent)
            holders = self._holders(len(orders))
            jobs = zip(orders, places, holders, strict=True)
            tracked = [self._ticket_for(order, place, slot, strategy) for order, place, slot in jobs]
            if claim is not None:
                claim([item.ticket.client_order_id for item in tracked])
            self._dispatch(tracked)
        return [item.ticket for item in tracked]

    def withdraw_unsent(self, action: str, strategy: str = "", *, urgent: bool = False) -> None:
        """A control action began: every ordinary ticket not yet sent ends as failed ("not sent:
        withdrawn by {action}"), each with its trade-log row; urgent tickets and those already on the
        wire go on. With ``strategy``, only that strategy's tickets (its liquidation began), and with
        ``urgent`` its priority-lane ones too (its liquidation was halted). Returns at once."""
        if strategy:
            with self._lock:
                for slot in self._slots:
                    slot.outgoing.put(Withdraw(action, strategy, urgent))
            return
        with self._lock:
            self._withdrawn_upto = next(self._seq)  # tickets numbered below this were withdrawn
            for slot in self._slots:
                slot.outgoing.put(Withdraw(action))
            self._withdraw_action = action

    def _holders(self, count: int) -> list[_WorkerSlot]:
        """Which worker takes each of ``count`` orders: contiguous runs sized so the loads even out,
        the least-loaded worker first (see the module docstring) — first over the orders the rate
        limit lets go at once, then over the rest, so the ones that go now are sent by every worker."""
        load = {slot.number: len(slot.tickets) for slot in self._slots}
        at_once = min(count, max(1, self._limiter.room()))
        return self._runs(at_once, load) + self._runs(count - at_once, load)

    def _runs(self, count: int, load: dict[int, int]) -> list[_WorkerSlot]:
        """One contiguous run per worker for ``count`` orders; ``load`` is updated with them."""
        share = dict.fromkeys(load, 0)
        for _ in range(count):
            share[min(load, key=lambda number: load[number] + share[number])] += 1
        order = sorted(self._slots, key=lambda slot: (load[slot.number], slot.number))
        for number, extra in share.items():
            load[number] += extra
        return [slot for slot in order for _ in range(share[slot.number])]

    def _ticket_for(self, order: Order, place: int, slot: _WorkerSlot, strategy: str) -> _Tracked:
        cid = new_client_order_id(order.action, slot.number, strategy)
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
                item.ticket = replace(item.ticket, resent=True)  # the dead worker may have sent it
                slot.tickets[item.ticket.seq] = item.ticket
            batches.setdefault(slot.number, []).append((item.ticket, item.place))
        self._announce([place for batch in batches.values() for _ticket, place in batch])
        for number, batch in batches.items():
            self._slots[number].outgoing.put(batch)

    # ----------------------------------------------------------------- the supervisor thread
    def _supervise(self) -> None:
        """Read every worker's results, forward them, restart dead workers; ends after stop().
        A death shows as the end of its pipe; the exit statuses are looked at every _SUPERVISE_S
        besides (not at every report: that was two system calls per message)."""
        next_look = 0.0
        while True:
            with self._lock:
                watched = {slot.outbox: slot for slot in self._slots if slot.outbox is not None}
                if not watched and self._closing:
                    return
            for ready in mp_connection.wait(list(watched), timeout=_SUPERVISE_S):
                self._drain(watched[ready])  # type: ignore[index]
            if time.monotonic() < next_look:
                continue
            next_look = time.monotonic() + _SUPERVISE_S
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
            self._handle(slot, event if isinstance(event, list) else [event])

    def _handle(self, slot: _WorkerSlot, events: list[dict[str, Any]]) -> None:
        """Book a worker's reports under one lock and forward them: one ``submitting`` and one
        final result per ticket."""
        if any(event.get("kind") == "ready" for event in events):
            self._worker_ready(slot)
        with self._lock:
            forward = [event for event in events if event.get("kind") != "ready" and self._book(slot, event)]
        for event in forward:
            self._results.put(event)

    def _book(self, slot: _WorkerSlot, event: dict[str, Any]) -> bool:
        """Whether to forward one report (under the lock): a ticket's first ``submitting``, its final result."""
        seq = event.get("seq")
        if event.get("kind") != "submitting":
            return self._resolve(seq) is not None  # type: ignore[arg-type]
        slot.sent += 1
        item = self._tracked.get(seq)  # type: ignore[arg-type]
        if item is None or item.announced:
            return False
        item.announced = True
        return True

    def _announce(self, places: list[int]) -> None:
        """Tell the limiter a block's places are on their way, every worker's at once, before any
        batch leaves: a sender thread that runs first must not let its worker take the free slots
        ahead of earlier places bound for another (under the lock). Before every worker is up the
        batches wait in their senders: :meth:`_worker_ready` announces them when they can leave."""
        if self._all_up.is_set():
            self._limiter.expect(places, hold_s=_ON_THE_WAY_S)

    def _worker_ready(self, slot: _WorkerSlot) -> None:
        """A worker is up; the last one up lets the first batches go, their places announced first
        (only while the senders still wait for it: after their boot wait some may have left)."""
        with self._lock:
            slot.ready = True
            if all(other.ready for other in self._slots) and not self._all_up.is_set():
                if time.monotonic() - self._started_at < _BOOT_TIMEOUT_S:
                    waiting = [item.place for item in self._tracked.values() if not item.announced]
                    self._limiter.expect(waiting, hold_s=_ON_THE_WAY_S)
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
                leftovers = [self._withdrawn(item) for item in orphans if self._was_withdrawn(item)]
                self._dispatch([item for item in orphans if not self._was_withdrawn(item)], avoid=slot.number)
        for event in leftovers:
            self._results.put(event)

    def _was_withdrawn(self, item: _Tracked) -> bool:
        """An orphan a control action withdrew while its dead worker still held it: never re-sent."""
        return item.place >= 0 and not item.announced and item.ticket.seq < self._withdrawn_upto

    def _withdrawn(self, item: _Tracked) -> dict[str, Any]:
        self._resolve(item.ticket.seq)
        reason = WITHDRAWN.format(action=self._withdraw_action)
        return {**failed(reason, 0), **ticket_fields(item.ticket), "time": time.time()}

    def _resolve_leftovers(self) -> None:
        with self._lock:
            leftovers = [self._left_over(item) for item in list(self._tracked.values())]
        for event in leftovers:
            self._results.put(event)

    def _left_over(self, item: _Tracked) -> dict[str, Any]:
        """The final result of a ticket the stopped pool could not finish (under the lock)."""
        self._resolve(item.ticket.seq)
        outcome = failed(IN_FLIGHT_AT_STOP, None) if item.announced else failed(NOT_SENT, 0)
        return {**outcome, **ticket_fields(item.ticket), "time": time.time()}

    # ----------------------------------------------------------------- looking
    def unresolved(self) -> int:
        """Orders handed to the pool without their final result yet: queued, or in flight."""
        with self._lock:
            return len(self._tracked)

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
