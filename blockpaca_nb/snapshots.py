"""Copies of containers the session's threads keep changing (``s.errors``, the trade updates, the
orders), for a reader on another thread: a copy is one C call, yet a garbage collection inside it can
run Python code and hand the GIL to a writer, and the copy then fails ("deque mutated during
iteration", "dictionary changed size during iteration"). Such a copy is made again."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
ATTEMPTS = 20  # each attempt fails only if a writer ran in the middle of it: a handful is plenty


def snapshot(copy: Callable[[], list[T]]) -> list[T]:
    """``copy()``, made again while another thread's change interrupts it (the last attempt's error
    propagates: a container changing through twenty copies in a row is a bug worth seeing)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return copy()
        except RuntimeError:  # changed midway by another thread: copy again
            continue
    return copy()
