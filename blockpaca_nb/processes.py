"""Background processes that are safe to start from a threaded Jupyter kernel and never orphaned.

Children are spawned (never plain fork), ignore SIGINT (the kernel's Interrupt button is for the
user's cell, not for the session), and exit within a second of their parent's death.

A spawned child normally re-imports the parent's `__main__` script, which re-runs a script that
lacks an `if __name__ == "__main__":` guard (and fails as it tries to start processes again).
Our children need nothing from `__main__` — their targets live in this package and user strategies
stay in the parent — so `launch` hides the main module from the spawn preparation.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.process import BaseProcess
from typing import Any

SPAWN: SpawnContext = mp.get_context("spawn")
_PARENT_POLL_S = 0.5


def start_child(target: Callable[..., None], *args: Any, name: str) -> SpawnProcess:
    """Start `target(*args)` in a spawned daemon child prepared by `child_setup`."""
    process = SPAWN.Process(target=_run_child, args=(target, os.getpid(), *args), name=name, daemon=True)
    launch(process)
    return process


_MAIN_LOCK = threading.Lock()
_MISSING = object()


def launch(process: BaseProcess) -> None:
    """Start a spawn-context process without making it re-run the caller's `__main__` script."""
    main = sys.modules.get("__main__")
    if main is None:
        process.start()
        return
    with _MAIN_LOCK:
        saved_file = main.__dict__.pop("__file__", _MISSING)
        saved_spec = main.__dict__.get("__spec__")
        main.__spec__ = None
        try:
            process.start()
        finally:
            main.__spec__ = saved_spec
            if saved_file is not _MISSING:
                main.__file__ = saved_file


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
