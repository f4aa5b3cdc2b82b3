"""blockpaca 0.1.2's own `run_trading`, pointed at the simulator, firing blocks when asked.

Why: the full-path benchmark (`bench_session.py --blockpaca`) sets this project beside the tool it
grew from, on the same block, the same broker and in the same run. This script runs in a separate
virtualenv that holds `blockpaca==0.1.2` (the benchmark makes it); it changes nothing of blockpaca's
path but the three addresses it has written in (Alpaca paper's REST base, its data stream, the
trade_updates stream), so its processes, zmq hand-off, token semaphore and aiohttp workers run as a
blockpaca user's would.

Protocol (one line each, on stdin / stdout): the benchmark writes ``fire <count> <tag>``; the
strategy returns ``count`` market buys whose ``action`` is ``tag`` (blockpaca puts the action first in
the client order id, so the benchmark finds the block at the broker) and prints ``returned <tag>
<epoch s>`` as it returns them. ``quit`` ends the run (end-of-session action ``hold``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from functools import partial
from typing import Any

TICKERS = ["AAPL", "MSFT", "TSLA", "NVDA", "SPY"]


class Quit(BaseException):
    """Leaves blockpaca's loop, which swallows every Exception a strategy raises."""


def point_at(urls: dict[str, str]) -> None:
    import blockpaca.core as core
    from alpaca.trading.stream import TradingStream

    core.ALPACA_REST_BASE = urls["trading"] + "/v2"
    core.ALPACA_STREAM_URL = urls["data_stream"]
    core.get_trading_stream = lambda: partial(TradingStream, url_override=urls["trading_stream"])


class Strategy:
    def __init__(self) -> None:
        self.asks: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Raw reads of fd 0: a thread blocked in ``sys.stdin`` holds its lock, and every process
        blockpaca forks then hangs in multiprocessing's ``sys.stdin.close()``."""
        pending = b""
        while chunk := os.read(0, 4096):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self.asks.put(line.decode().strip())
        self.asks.put("quit")

    def __call__(self, ctx: dict[str, Any]) -> list[dict[str, Any]] | None:
        try:
            ask = self.asks.get_nowait()
        except queue.Empty:
            return None
        if ask == "quit":
            raise Quit
        _, count, tag = ask.split()
        orders = [
            {"ticker": TICKERS[i % len(TICKERS)], "quantity": 1, "side": "buy", "order_type": "market", "action": tag}
            for i in range(int(count))
        ]
        print(f"returned {tag} {time.time():.6f}", flush=True)
        return orders


def main() -> None:
    config = json.loads(sys.argv[1])
    point_at(config["urls"])
    from blockpaca import run_trading

    print("ready", flush=True)
    with contextlib.suppress(Quit):
        run_trading(
            Strategy(),
            trade_log_name="bench_blockpaca",
            trade_log_path=config["folder"],
            api_key=config["api_key"],
            secret_key=config["secret_key"],
            tickers=TICKERS,
            frequency=config["frequency"],
            run_seconds=3600,
            total_allowed_per_min=config["limit"],
            eos_behavior="hold",
            warm_up_period=0,
        )


if __name__ == "__main__":
    main()
