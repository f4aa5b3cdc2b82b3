"""The simulator's clock: it runs at wall speed, but may start at any instant and jump while serving.

Users and tests must cross the close and the open in seconds, not wait for them. So every place in
the simulator that reads the time (the clock and calendar endpoints, bars, quote, trade and order
timestamps, day-order expiry) asks this module instead of the wall. There is one clock per process:
a simulator child serves exactly one market.

`time()` has the same meaning as `time.time()` (epoch seconds), so a module may simply read
`simclock.time()` where it read `time.time()`.
"""

from __future__ import annotations

import time as _wall
from datetime import UTC, date, datetime

from .calendar import EASTERN

__all__ = ["parse_instant", "set_to", "time", "today"]

_offset = 0.0  # simulated epoch seconds minus wall epoch seconds


def time() -> float:
    """Now on the simulator's clock, in epoch seconds."""
    return _wall.time() + _offset


def today() -> date:
    """The simulator's current date in New York."""
    return datetime.fromtimestamp(time(), EASTERN).date()


def parse_instant(text: str) -> float:
    """An ISO-8601 time that names its zone ("2026-12-04T15:59:00-05:00", "…Z"), as epoch seconds."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"clock time {text!r} is not valid; allowed: an ISO time with its zone,"
            " e.g. '2026-12-04T15:59:00-05:00'"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"clock time {text!r} has no zone; allowed: an ISO time with its zone,"
            " e.g. '2026-12-04T15:59:00-05:00'"
        )
    return moment.astimezone(UTC).timestamp()


def set_to(epoch: float | None) -> None:
    """Make the clock read `epoch` now and run on from there; None returns it to the wall."""
    global _offset
    _offset = 0.0 if epoch is None else epoch - _wall.time()
