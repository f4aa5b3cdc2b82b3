"""Background processes that are safe to start from a threaded Jupyter kernel and never orphaned.

Children are spawned (never plain fork), ignore SIGINT (the kernel's Interrupt button is for the
user's cell, not for the session) from their first instruction on — they start with SIGINT blocked,
so an Interrupt pressed while one is still importing cannot kill it — and exit within a second of
their parent's death.

A kernel restart kills the kernel's whole process group at once, resource tracker included, so
nobody would be left to free the QuoteBook's shared memory: a tiny janitor process in a session of
its own (:func:`start_janitor`) frees it when the kernel is gone, however it went.

Children log at ``BLOCKPACA_LOG_LEVEL`` (default WARNING) to stderr, through a filter that blanks
the API secret; the websockets frame dumps (which quote the authentication message) stay off.

A spawned child normally re-imports the parent's `__main__` script, which re-runs a script that
lacks an `if __name__ == "__main__":` guard (and fails as it tries to start processes again).
Our children need nothing from `__main__` — their targets live in this package and user strategies
stay in the parent — so `launch` hides the main module from the spawn preparation.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.process import BaseProcess
from typing import Any

from .scrub import remember_secret, scrub_handlers

SPAWN: SpawnContext = mp.get_context("spawn")
_PARENT_POLL_S = 0.5


def start_child(target: Callable[..., None], *args: Any, name: str) -> SpawnProcess:
    """Start `target(*args)` in a spawned daemon child prepared by `child_setup`."""
    process = SPAWN.Process(target=_run_child, args=(target, os.getpid(), *args), name=name, daemon=True)
    launch(process)
    return process


_MAIN_LOCK = threading.Lock()
_MISSING = object()


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in the calling thread while processes are started: the mask is inherited
    through fork and exec, so a child cannot be killed by an Interrupt before it ignores SIGINT
    itself. (The kernel's main thread still gets the Interrupt.)"""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def launch(process: BaseProcess) -> None:
    """Start a spawn-context process without making it re-run the caller's `__main__` script."""
    main = sys.modules.get("__main__")
    if main is None:
        with sigint_blocked():
            process.start()
        return
    with _MAIN_LOCK, sigint_blocked():
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
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by `launch`; now ignored
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


# ----------------------------------------------------------------------------- logging in children

LOG_LEVEL_VARIABLE = "BLOCKPACA_LOG_LEVEL"
_QUIET_LOGGERS = ("websockets",)  # at DEBUG it dumps every frame, the authentication message too


def configure_child_logging(*secrets: str) -> None:
    """A child's logging: stderr at BLOCKPACA_LOG_LEVEL (default WARNING), secrets blanked by the
    one scrubber (:class:`~blockpaca_nb.scrub.ScrubFilter`) on every handler."""
    level = os.environ.get(LOG_LEVEL_VARIABLE, "WARNING").upper()
    logging.basicConfig(level=level if level in logging.getLevelNamesMapping() else "WARNING")
    for secret in secrets:
        remember_secret(secret)
    scrub_handlers(logging.getLogger())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).getEffectiveLevel()))


# ----------------------------------------------------------------------------- the janitor

_JANITOR = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
names = []
for line in sys.stdin:
    names.append(line.strip())
for name in names:
    try:
        os.unlink(os.path.join("/dev/shm", name.lstrip("/")))
    except OSError:
        pass
"""


def start_janitor(segments: list[str]) -> subprocess.Popen[str] | None:
    """Start the janitor: it frees these shared-memory segments once its stdin closes — when the
    caller calls :func:`stop_janitor`, or dies (even with its whole process group). POSIX only."""
    if not os.path.isdir("/dev/shm"):  # pragma: no cover - no POSIX shared memory files here
        return None
    with sigint_blocked():
        janitor = subprocess.Popen(
            [sys.executable, "-S", "-c", _JANITOR], stdin=subprocess.PIPE, text=True, start_new_session=True
        )
    assert janitor.stdin is not None
    janitor.stdin.write("".join(f"{name}\n" for name in segments))
    janitor.stdin.flush()
    return janitor


def stop_janitor(janitor: subprocess.Popen[str] | None, timeout: float = 5.0) -> None:
    """Let the janitor free its segments (the caller already did) and exit."""
    if janitor is None:
        return
    with contextlib.suppress(OSError):
        if janitor.stdin is not None:
            janitor.stdin.close()
    try:
        janitor.wait(timeout)
    except subprocess.TimeoutExpired:
        janitor.kill()
        janitor.wait(timeout)
