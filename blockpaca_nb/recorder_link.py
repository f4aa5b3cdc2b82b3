"""The kernel's end of the recorder: starts the recorder process, feeds its inbox, reads its events,
and starts a new one (re-sending what the dead one had not acknowledged) when the supervisor asks.

The recorder process itself lives in :mod:`.recorder`; this side runs in the user's kernel and never
blocks it: :meth:`RecorderLink.put` hands items to a sender thread. See the recorder's docstring for
the channel design (one one-way pipe each way, acknowledged inbox items).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import threading
import time
from pathlib import Path
from typing import Any

from .broker import Connection
from .processes import SPAWN, SpawnProcess, stop_child
from .ratelimit import RateLimiter
from .recorder import STOP, start_recorder
from .scrub import scrubbed_logger

log = scrubbed_logger(__name__)
_RETIRE = object()  # ends a sender thread whose recorder was replaced
_MORE = object()  # what `_gather` says when the sender goes on
MAX_BATCH = 500  # inbox items per pipe message at most




class RecorderLink:
    """The kernel's end of the recorder: starts it, feeds its inbox, reads its events, restarts it.

    :meth:`put` never blocks (a sender thread writes the pipe). :meth:`get` returns the recorder's
    events in order, across restarts, and None once the link is stopped. Only the session's
    supervisor calls :meth:`restart_if_dead`.
    """

    def __init__(self, connection: Connection, path: Path, limiter: RateLimiter | None = None) -> None:
        self.connection, self.path, self.limiter = connection, path, limiter
        self.process: SpawnProcess | None = None
        self.restarts = 0
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._unacked: dict[int, dict[str, Any]] = {}
        self._numbers = itertools.count()
        self._outgoing: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._events: Any = None
        self._received: collections.deque[dict[str, Any]] = collections.deque()  # the rest of a message
        self._reading: Any = None  # the events pipe get() reads: a dead recorder's until its end
        self._stopping = self._closed = False

    def start(self) -> SpawnProcess:
        with self._lock:
            self._spawn(None)
        assert self.process is not None
        return self.process

    def _spawn(self, resume: float | None) -> None:
        """A recorder process on fresh pipes, sent every unacknowledged item first (under the lock)."""
        inbox_theirs, inbox_ours = SPAWN.Pipe(duplex=False)
        events_ours, events_theirs = SPAWN.Pipe(duplex=False)
        process = start_recorder(self.connection, self.path, inbox_theirs, events_theirs, self.limiter, resume)
        inbox_theirs.close()  # the recorder holds the only other ends: its death shows as end-of-file
        events_theirs.close()
        self._outgoing.put(_RETIRE)
        self._outgoing = queue.SimpleQueue()
        for number in sorted(self._unacked):
            self._outgoing.put((number, self._unacked[number]))
        sender = threading.Thread(target=_send_all, args=(inbox_ours, self._outgoing), name="recorder-inbox")
        sender.daemon = True
        sender.start()
        self.process, self._events = process, events_ours
        self._changed.notify_all()

    def put(self, item: dict[str, Any] | None) -> None:
        """Queue an inbox item for the recorder (STOP: stop after what is queued); never blocks.
        A worker's ``submitting`` report is not passed on: the recorder logs no row for it (the
        stream's pending_new does) and the kernel ignores its echo — four pipe crossings per order."""
        if item is not None and item.get("kind") == "submitting":
            return
        with self._lock:
            if item is STOP:
                self._stopping = True
                self._outgoing.put(STOP)
                return
            number = next(self._numbers)
            self._unacked[number] = item
            self._outgoing.put((number, item))

    def get(self) -> dict[str, Any] | None:
        """The next event from the recorder (waiting for it); None once the link is stopped.

        The recorder sends a burst's events as one list: its items are acknowledged as the list
        arrives (a successor started meanwhile must not get them again) and handed out one by one.
        A dead recorder's pipe is read to its end before its successor's: what it sent before
        dying still comes, in order."""
        while not self._received:
            if self._reading is None:
                with self._lock:
                    self._reading = self._events
            try:
                message = self._reading.recv()
            except (EOFError, OSError):  # that recorder is gone: its successor's pipe, or the end
                if not self._next_pipe():
                    return None
                continue
            events = message if isinstance(message, list) else [message]
            for event in events:
                self._acknowledge(event)
            self._received.extend(events)
        return self._received.popleft()

    def _next_pipe(self) -> bool:
        """The pipe being read ended: wait for a successor's (False: the link is stopped)."""
        ended, self._reading = self._reading, None
        with contextlib.suppress(OSError):
            ended.close()
        with self._lock:
            self._changed.wait_for(lambda: self._events is not ended or self._closed)
            return self._events is not ended

    def _acknowledge(self, event: dict[str, Any]) -> None:
        number = event.pop("ack", None)
        if number is not None:
            with self._lock:
                self._unacked.pop(number, None)

    def restart_if_dead(self) -> bool:
        """Start a new recorder if the current one died (and the link is not stopping)."""
        with self._lock:
            if self._stopping or self.process is None or self.process.is_alive():
                return False
            log.warning("the recorder died (exit code %s); restarting it", self.process.exitcode)
            self.restarts += 1
            self._spawn(self.started_at)
            return True

    @property
    def unacknowledged(self) -> int:
        return len(self._unacked)

    def stop(self, timeout: float = 10.0) -> None:
        """Let the recorder log what is queued and exit (kill it after ``timeout``); end :meth:`get`."""
        self.put(STOP)
        if self.process is not None:
            self.process.join(timeout)
            stop_child(self.process)
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    def __repr__(self) -> str:
        pid = self.process.pid if self.process is not None else None
        return f"<RecorderLink pid={pid} restarts={self.restarts} unacknowledged={len(self._unacked)}>"


def _send_all(conn: Any, outgoing: queue.SimpleQueue[Any]) -> None:
    """Sender thread of one recorder: writes its inbox pipe until STOP, retirement or its death.
    What has queued up meanwhile leaves as one message (a list of numbered items)."""
    try:
        while True:
            batch, end = _gather(outgoing)
            if batch:
                conn.send(batch)
            if end is STOP:
                conn.send(STOP)
            if end is not _MORE:
                return
    except OSError:  # the recorder died; its items stay unacknowledged and go to the next one
        pass
    finally:
        conn.close()


def _gather(outgoing: queue.SimpleQueue[Any]) -> tuple[list[Any], Any]:
    """The items queued now (waiting for the first, at most ``MAX_BATCH``), and STOP or the
    retirement if one came after them (``_MORE`` if not: STOP is None)."""
    batch: list[Any] = []
    item = outgoing.get()
    while item is not STOP and item is not _RETIRE:
        batch.append(item)
        if len(batch) >= MAX_BATCH:
            return batch, _MORE
        try:
            item = outgoing.get_nowait()
        except queue.Empty:
            return batch, _MORE
    return batch, item
