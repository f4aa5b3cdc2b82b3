"""The simulator's child process: read the config from stdin, serve, and stop when stdin closes.

Run as `python -m blockpaca_nb.sim.child` by `Simulator.start()`; the first stdout line reports the
port (or the error) to the parent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import sys
import threading
from typing import Any

from .. import event_loop
from .server import SimConfig

LISTEN_BACKLOG = 1024  # connections waiting to be accepted (the kernel caps it at net.core.somaxconn)


def _serve() -> None:
    """Child entry point: read the config from stdin, serve until stdin closes (or the parent dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel's Interrupt button is not for us
    logging.basicConfig(level=os.environ.get("BLOCKPACA_SIM_LOG", "WARNING"))
    logging.getLogger("aiohttp.server").addFilter(_not_a_client_hang_up)
    raw = json.loads(sys.stdin.readline())
    config = SimConfig(**{**raw, "symbols": tuple(raw["symbols"])})
    event_loop.run(_serve_async(config))


def _not_a_client_hang_up(record: logging.LogRecord) -> bool:
    """A client that goes away mid-request (a killed worker, a dropped test client) is not a server
    error: keep it out of the log so real errors stand out."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, ConnectionError)


async def _serve_async(config: SimConfig) -> None:
    from aiohttp import web

    from .server import build_app

    runner = web.AppRunner(build_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    # A block's first orders open their connections all at once (hundreds): with aiohttp's backlog of
    # 128 the rest of the SYNs were dropped and retried a second later, which Alpaca's servers never do.
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True, backlog=LISTEN_BACKLOG)
    try:
        await site.start()
    except OSError as err:
        _report({"error": f"cannot listen on {config.host}:{config.port}: {err.strerror}"})
        await runner.cleanup()
        return
    _report({"port": runner.addresses[0][1]})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_watch_parent, args=(os.getppid(), loop, stop), daemon=True).start()
    await stop.wait()
    await runner.cleanup()


def _report(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _watch_parent(parent: int, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when stdin closes (stop() or the parent's death) or when the parent pid changes."""
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready and not sys.stdin.readline():
            break
        if os.getppid() != parent:
            break
    loop.call_soon_threadsafe(stop.set)


if __name__ == "__main__":
    _serve()
