"""The pump: the one thread that reads the session and writes to the dashboard's widgets.

Why a thread and not a task on the kernel's event loop: ipykernel runs a cell on the thread of
its event loop, so while a cell is busy (``time.sleep(5)``, a long computation, a blocking
``s.stop()``) no timer or task on that loop runs — measured in JupyterLab 4.6 with ipykernel
7.4: a ``loop.call_later`` updater sent nothing for the whole 8 s of a sleeping cell while a
thread kept updating its widget five times a second (the browser test checks the dashboard
keeps updating through such a cell). Comm messages from a thread are safe: ipykernel hands every
IOPub message to its IOPub thread, and a dashboard prints nothing, so ipykernel 7's routing of
threads' output to cells does not concern it. (Button clicks, by contrast, wait: the kernel
handles widget messages on that same busy thread, after the cell — measured too; handlers are
therefore quick, non-blocking and thread-safe, ready for front ends that use kernel subshells.)

Rate budget: the pump refreshes every ``interval`` seconds (the session's
``display_refresh_rate``); each refresh reads everything once, and each panel sends at most one
message holding only what changed, so updates are coalesced by construction. ``wake()`` brings the
next refresh forward (a button was pressed) but never closer than half an interval after the
previous one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..scrub import scrubbed_logger

log = scrubbed_logger(__name__)


class Pump:
    """Calls ``refresh`` every ``interval`` seconds on a daemon thread until it returns False."""

    def __init__(self, refresh: Callable[[], bool], interval: float, name: str = "blockpaca-dashboard") -> None:
        self.refresh = refresh
        self.interval = float(interval)
        self.name = name
        self.refreshes = 0
        self.busy_seconds = 0.0  # CPU time the refreshes used (thread time)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once; later calls do nothing while it runs)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Refresh soon (any thread)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (not from the pump itself)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            gap = self.interval / 2 - (time.monotonic() - last)
            if gap > 0 and self._stop.wait(gap):
                return
            last = time.monotonic()
            if not self._refresh_once():
                return
            self._wake.wait(max(0.0, self.interval - (time.monotonic() - last)))
            self._wake.clear()

    def _refresh_once(self) -> bool:
        """One refresh, timed; an exception is logged and the pump goes on."""
        started = time.thread_time()
        try:
            return bool(self.refresh())
        except Exception:
            log.exception("dashboard refresh failed")
            return True
        finally:
            self.busy_seconds += time.thread_time() - started
            self.refreshes += 1
