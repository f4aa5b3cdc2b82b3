"""Child supervision: restart the quote feed or the recorder when one dies, and say so.

A trader's session runs for hours; a child process can be killed by the OOM killer, a segfault in a
native library, or a user's `kill`. The supervisor thread watches the children's sentinels and
restarts a dead one at once — unless it keeps dying young, then with exponential backoff, so a
child that cannot run does not eat the machine. Each restart is reported where the user looks
(``Session.errors``, the dashboard) and counted (``Session.restarts``).

It sits above the feed and the recorder (it restarts them through callables the session gives it)
and below the session; the low-level :mod:`.processes` knows nothing of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection

from .processes import SpawnProcess

log = logging.getLogger(__name__)

SUPERVISE_S = 0.25
QUICK_DEATH_S = 5.0  # a child that dies sooner than this after its start is restarted with backoff
NAMES = {"feed": "quote feed", "recorder": "recorder"}


@dataclass
class Revival:
    """When a dead child may be restarted: at once, unless it keeps dying young (then with backoff)."""

    started_at: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0
    not_before: float = 0.0
    noticed: bool = False

    def due(self, process: SpawnProcess) -> bool:
        if process.is_alive():
            return False
        now = time.monotonic()
        if not self.noticed:
            self.noticed = True
            self.quick_deaths = self.quick_deaths + 1 if now - self.started_at < QUICK_DEATH_S else 0
            self.not_before = now + (min(0.25 * 2**self.quick_deaths, 30.0) if self.quick_deaths > 1 else 0.0)
        return now >= self.not_before

    def started(self) -> None:
        self.started_at, self.noticed = time.monotonic(), False


Restart = Callable[[], "SpawnProcess | None"]
"""Start a replacement child; None when it cannot be done yet (try again later)."""


class Supervisor:
    """Watches named children; :meth:`run` (a thread's body) restarts the dead until ``closing`` is set."""

    def __init__(self, children: dict[str, SpawnProcess], report: Callable[[str, str], None]) -> None:
        self.children = children  # shared with the session: name -> current process
        self.restarts: dict[str, int] = {}
        self._restart: dict[str, Restart] = {}
        self._report = report

    def watch(self, name: str, process: SpawnProcess, restart: Restart) -> None:
        self.children[name] = process
        self._restart[name] = restart
        self.restarts.setdefault(name, 0)

    def run(self, closing: threading.Event) -> None:
        revivals = {name: Revival() for name in self._restart}
        while not closing.is_set():
            watched = [c.sentinel for c in self.children.values() if c.pid is not None]
            if not mp_connection.wait(watched, timeout=SUPERVISE_S):
                continue
            revived = False
            for name, revival in revivals.items():
                if not closing.is_set() and revival.due(self.children[name]):
                    revived = self._revive(name, revival) or revived
            if not revived:  # a child waits out its backoff: do not spin on its sentinel
                closing.wait(SUPERVISE_S)

    def _revive(self, name: str, revival: Revival) -> bool:
        dead = self.children[name]
        replacement = self._restart[name]()
        if replacement is None:
            return False
        self.children[name] = replacement
        revival.started()
        self.restarts[name] += 1
        reason = f"the {NAMES.get(name, name)} died (exit code {dead.exitcode}); restarted"
        log.warning("%s", reason)
        self._report(name, reason)
        return True
