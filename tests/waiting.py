"""Waiting for a condition, never for a fixed time: the one polling helper every test shares.

The suite runs on shared 2-core machines, Binder and laptops where a process can take seconds to boot
and a thread can be starved for a while; a test that sleeps a fixed time and then asserts that progress
happened fails there. Tests poll for the condition they need instead, with a generous deadline that only
a real fault reaches, and fail with a message that says what never happened and what was last seen.

Imported as ``from waiting import wait_for``: the root ``tests/conftest.py`` puts this folder on
``sys.path`` (pytest's default import mode), so every test folder can use it without being a package.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "", every: float = 0.05) -> T:
    """Call ``predicate`` every ``every`` seconds until it returns something truthy, and return that.

    Fails with an AssertionError naming ``what`` (or the predicate) and the last value seen when
    ``timeout`` seconds pass first. ``every=0`` suits a predicate that blocks for a while itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or _name(predicate)} "
                                 f"(last seen: {_short(value)})")
        time.sleep(every)


def _name(predicate: Callable[[], object]) -> str:
    return getattr(predicate, "__qualname__", None) or repr(predicate)


def _short(value: object, limit: int = 200) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "…"
