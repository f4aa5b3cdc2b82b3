"""Background processes that are safe to start from a threaded Jupyter kernel and never orphaned.

Children are spawned (never plain fork), ignore SIGINT (the kernel's Interrupt button is for the
user's cell, not for the session), and exit within a second of their parent's death.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

SPAWN: SpawnContext = mp.get_context("spawn")
_PARENT_POLL_S = 0.5


def start_child(target: Callable[..., None], *args: Any, name: str) -> SpawnProcess:
    """Start `target(*args)` in a spawned daemon child prepared by `child_setup`."""
    process = SPAWN.Process(target=_run_child, args=(target, os.getpid(), *args), name=name, daemon=True)
    process.start()
    return process


def _run_child(target: Callable[..., None], parent: int, *args: Any) -> None:
    child_setup(parent)
    target(*args)


def child_setup(parent: int) -> None:
    """Ignore SIGINT and exit as soon as the parent process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watchdog").start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


def stop_child(process: SpawnProcess | None, timeout: float = 5.0) -> None:
    """Terminate a child and wait for it; kill it if it does not go."""
    if process is None or process.pid is None:
        return
    if process.is_alive():
        process.terminate()
        process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout)
