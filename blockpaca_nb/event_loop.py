"""The event loop a child process runs on: uvloop where it is installed, else asyncio's own.

Why: the simulator answering a block of orders and a worker sending one spend much of their CPU in
the event loop itself — socket writes, callbacks, the selector — rather than in our code. uvloop
(libuv under asyncio's API) does that part in C; it is a dependency on Linux and macOS, where it has
wheels. ``BLOCKPACA_EVENT_LOOP=asyncio`` picks asyncio's loop instead (to compare, or to debug).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import ConfigurationError

T = TypeVar("T")

log = logging.getLogger(__name__)
CHOICE_VARIABLE = "BLOCKPACA_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def loop_name() -> str:
    """The loop :func:`run` will use here: "uvloop" when installed and not turned off, else "asyncio".
    An unknown ``BLOCKPACA_EVENT_LOOP`` is a :class:`ConfigurationError` (a session and a simulator ask
    before they start their children, so a typo stops them in the kernel, not in a child)."""
    raw = os.environ.get(CHOICE_VARIABLE, "uvloop")
    if raw.strip().lower() not in CHOICES:
        raise ConfigurationError(f"{CHOICE_VARIABLE}={raw!r} is not valid; allowed: {', '.join(map(repr, CHOICES))}")
    if raw.strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind :func:`loop_name` names (for a loop run in a thread)."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new event loop of the kind :func:`loop_name` names."""
    name = loop_name()
    log.debug("process %d runs on %s's event loop", os.getpid(), name)
    if name == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
