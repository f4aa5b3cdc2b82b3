"""The strategies of a session: which are registered, which run, each one's clock and state.

A session runs one *main* strategy (``@s.strategy``: re-running the cell, ``s.swap`` or ``s.select``
replaces it, and the newcomer takes over its positions and ``ctx.state``) and any number of
strategies *alongside* it (``@s.strategy(alongside=True)``, ``s.activate``), each ticking on its own
clock in its own thread, so one slow strategy never delays another. Each has a state a trader can
read: running, paused, reduce-only (a limit was crossed: only orders that shrink its positions
pass) or halted (it no longer ticks and its orders are refused).
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError
from .orders import STRATEGY_TAG
from .risk import Limits
from .statuses import TICKING_STATES
from .strategy import Strategy

RESERVED_NAMES = frozenset({"session"})


def strategy_name(fn: Strategy, name: str | None = None) -> str:
    """The name a strategy is known by (its function's name unless given): it travels in the client
    order id of every order the strategy sends, so letters, digits and ``_`` only."""
    if name is None:
        raw = getattr(fn, "__name__", None) or type(fn).__name__
        name = re.sub(r"[^A-Za-z0-9_]", "_", raw).strip("_")[:48] or "strategy"
    if not isinstance(name, str) or not STRATEGY_TAG.fullmatch(name) or name in RESERVED_NAMES:
        raise ConfigurationError(
            f"strategy name={name!r} is not valid; allowed: 1 to 48 letters, digits or '_' (not 'session')"
        )
    return name


@dataclass
class Slot:
    """One registered strategy: its function, its clock, its state and its limits."""

    name: str
    fn: Strategy
    every: float | None = None  # seconds between ticks; None: the session's frequency
    budget: float | None = None
    limits: Limits | None = None
    state: str = "running"
    state_reason: str = ""
    context_state: dict[str, Any] = field(default_factory=dict)
    ticks: int = 0
    ticks_done: int = 0
    skipped: int = 0
    overruns: int = 0
    overrun_reported: bool = False
    call: concurrent.futures.Future[list[str]] | None = None
    next_due: float | None = None  # monotonic time of the next tick (None: not scheduled)
    _runner: concurrent.futures.ThreadPoolExecutor | None = None

    def busy(self) -> bool:
        return self.call is not None and not self.call.done()

    def run(self, job: Any, *args: Any) -> None:
        """Call ``job(*args)`` in this strategy's own thread."""
        if self._runner is None:
            self._runner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"blockpaca-{self.name}")
        self.call = self._runner.submit(job, *args)

    def shut(self) -> None:
        if self._runner is not None:
            self._runner.shutdown(wait=False, cancel_futures=True)


class Lineup:
    """The registered strategies by name, the main one and the ones alongside; their clocks."""

    def __init__(self) -> None:
        self.slots: dict[str, Slot] = {}
        self.main: str | None = None
        self.alongside: list[str] = []
        self.version = 0  # bumped by every change the tick loop must see (a new clock, a new set)
        self.first_state: dict[str, Any] = {}  # ctx.state of the first main strategy (s.state before it)

    # ----------------------------------------------------------------- registering
    def register(self, slot: Slot, *, alongside: bool) -> tuple[str | None, Slot]:
        """Add or replace a strategy by name (re-running its cell keeps its state, book and clock) and
        start it: as the main one, or alongside. Returns the main strategy it replaced, if any."""
        old = self.slots.get(slot.name)
        if old is None and not alongside:  # a new main strategy carries on its predecessor's state
            main = self.slots.get(self.main) if self.main else None
            slot.context_state = main.context_state if main is not None else self.first_state
        if old is not None:
            slot.context_state, slot.ticks, slot.ticks_done = old.context_state, old.ticks, old.ticks_done
            slot.call, slot._runner, slot.state, slot.state_reason = old.call, old._runner, old.state, old.state_reason
            if slot.every == old.every:
                slot.next_due = old.next_due
        self.slots[slot.name] = slot
        self.version += 1
        if alongside:
            self._own_state(slot)
            if slot.name == self.main:
                self.main = None
            if slot.name not in self.alongside:
                self.alongside.append(slot.name)
            return None, slot
        return self.make_main(slot.name), slot

    def make_main(self, name: str) -> str | None:
        """``name`` becomes the main strategy; returns the one it replaces (None if none or itself)."""
        self.require(name)
        before, self.main = self.main, name
        previous = self.slots.get(before) if before not in (None, name) else None
        if previous is not None:  # it takes over the main strategy's ctx.state (one that ran alongside too)
            self.slots[name].context_state = previous.context_state
        if name in self.alongside:
            self.alongside.remove(name)
        if name != before:
            self.restart_clocks(name)  # the time it was not the main one is no tick skipped
        self.version += 1
        return before if before not in (None, name) else None

    def activate(self, name: str) -> None:
        self.require(name)
        if name != self.main and name not in self.alongside:
            self.alongside.append(name)
            self.slots[name].next_due = None
            self._own_state(self.slots[name])
            self.version += 1

    def deactivate(self, name: str) -> None:
        self.require(name)
        if name == self.main:
            self.main = None
        elif name in self.alongside:
            self.alongside.remove(name)
        self.version += 1

    def _own_state(self, slot: Slot) -> None:
        """A strategy that runs alongside gets a ctx.state of its own (a former main one shares the
        main lineage's dict: it gets a copy of it)."""
        main = self.slots.get(self.main) if self.main else None
        shared = [s for s in self.slots.values() if s is not slot and s.context_state is slot.context_state]
        if shared or (main is not None and main is not slot and main.context_state is slot.context_state):
            slot.context_state = dict(slot.context_state)

    def require(self, name: str) -> Slot:
        if name not in self.slots:
            raise ConfigurationError(f"no strategy named {name!r}; registered: {sorted(self.slots)}")
        return self.slots[name]

    # ----------------------------------------------------------------- running
    def active(self) -> list[Slot]:
        names = ([self.main] if self.main else []) + self.alongside
        return [self.slots[name] for name in names]

    def ticking(self) -> Iterator[Slot]:
        return (slot for slot in self.active() if slot.state in TICKING_STATES)

    def next_due(self, every_default: float) -> float:
        """The monotonic time of the earliest tick due (inf with nothing to run); a strategy that
        starts now gets its first tick now."""
        now = time.monotonic()
        due = float("inf")
        for slot in self.ticking():
            if slot.next_due is None:
                slot.next_due = now
            due = min(due, slot.next_due)
        return due

    def due_now(self, every_default: float) -> list[Slot]:
        """The strategies whose tick is due; each one's clock moves to its next absolute time, and a
        tick missed by more than a whole period is skipped (and counted), not run late in a burst."""
        now = time.monotonic()
        due: list[Slot] = []
        for slot in self.ticking():
            if slot.next_due is None or slot.next_due > now:
                continue
            every = slot.every or every_default
            missed = int((now - slot.next_due) // every)
            slot.skipped += missed
            slot.next_due += (missed + 1) * every
            due.append(slot)
        return due

    def restart_clocks(self, name: str | None = None) -> None:
        """Every strategy's clock (or ``name``'s) after a pause: a tick due meanwhile is due now — the
        time paused is no tick skipped (those count a strategy too busy for its clock)."""
        now = time.monotonic()
        for slot in self.slots.values():
            if (name is None or slot.name == name) and slot.next_due is not None and slot.next_due < now:
                slot.next_due = now

    def shut(self) -> None:
        for slot in self.slots.values():
            slot.shut()
