"""Engine benchmarks: quote latency and feed capacity, get_current_data(), Session start-up.

    python tests/benchmarks/bench_engine.py [--seconds 5]

Prints each figure next to its target and a baseline measured in the same run. A measurement,
not a test: it exits 0 either way and says FAIL where a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from typing import Any

import msgpack
import numpy as np

from blockpaca_nb import Session, Simulator
from blockpaca_nb.broker import Connection, Credentials, Endpoints
from blockpaca_nb.feed import start_feed
from blockpaca_nb.portfolio import Portfolio
from blockpaca_nb.processes import stop_child
from blockpaca_nb.quotes import QuoteBook
from blockpaca_nb.sim.universe import UNIVERSE

ROWS: list[tuple[str, str, str, str]] = []


def report(name: str, measured: str, target: str, ok: bool) -> None:
    ROWS.append((name, measured, target, "pass" if ok else "FAIL"))
    print(f"{name:<52} {measured:>22}   target {target:<14} {'pass' if ok else 'FAIL'}", flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ----------------------------------------------------------------------------- 1. quote latency
def quote_latency(seconds: float) -> None:
    """Simulator send time (the quote's `t`) → the moment a reader sees the row change."""
    symbols = list(UNIVERSE[:20])
    with Simulator(symbols=symbols, seed=1, quotes_per_second=100) as sim:  # 20 × 100 = 2 000 quotes/s
        connection = Connection("sim", Endpoints.from_mapping(sim.urls), Credentials(sim.api_key, sim.secret_key))
        book = QuoteBook.create(symbols)
        feed = start_feed(connection, book.meta)
        try:
            latencies, seen = _watch_book(book, seconds)
        finally:
            stop_child(feed)
            book.unlink()
    rate = seen / seconds
    print(f"  quotes seen {seen} in {seconds:.0f} s ({rate:,.0f}/s); latencies sampled {len(latencies)}")
    p50, p99 = percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
    report("quote latency p50 (sim send → get_current_data)", f"{p50:.3f} ms", "-", True)
    report("quote latency p99 at ~2 000 quotes/s", f"{p99:.3f} ms", "<= 2 ms", p99 <= 2.0)


def _watch_book(book: QuoteBook, seconds: float) -> tuple[list[float], int]:
    """Sample every row change: its receive_time (written by the feed the moment the quote lands in
    shared memory, i.e. when get_current_data() can see it) minus its quote_time (the simulator's
    send stamp `t`). Same clock: both processes run on this machine."""
    deadline_warm = time.time() + 3
    while time.time() < deadline_warm and len(book.bid_ask()) < len(book.tickers):
        time.sleep(0.01)
    last = book.column("quote_time")
    latencies: list[float] = []
    seen = 0
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(0.0005)  # leave the CPU to the simulator and the feed (2 cores)
        table = book.snapshot()
        times = table["quote_time"].to_numpy()
        changed = times != last
        if changed.any():
            seen += int(changed.sum())
            latencies.extend((table["receive_time"].to_numpy()[changed] - times[changed]).tolist())
            last = times
    return latencies, seen


# ----------------------------------------------------------------------------- 2. feed capacity
async def _blast_server(port_box: list[int], symbols: list[str], total: int, ready: threading.Event) -> None:
    """A bare market-data endpoint that sends pre-encoded quote frames as fast as it can."""
    from aiohttp import web

    frames = []
    batch = 1000
    stamp = msgpack.Timestamp.from_unix(time.time())
    for start in range(0, total, batch):
        items = [
            {
                "T": "q",
                "S": symbols[i % len(symbols)],
                "bp": float(i),
                "ap": float(i) + 0.01,
                "bs": 1.0,
                "as": 1.0,
                "bx": "V",
                "ax": "V",
                "c": ["R"],
                "z": "C",
                "t": stamp,
            }
            for i in range(start, min(start + batch, total))
        ]
        frames.append(msgpack.packb(items))

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "connected"}]))
        await ws.receive()  # auth
        await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
        await ws.receive()  # subscribe
        for frame in frames:
            await ws.send_bytes(frame)
        await asyncio.sleep(3600)
        return ws

    app = web.Application()
    app.router.add_get("/v2/iex", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_box.append(runner.addresses[0][1])
    ready.set()
    await asyncio.sleep(3600)


def feed_capacity(total: int = 400_000) -> None:
    """Quotes per second the feed process writes into the QuoteBook when the socket is never idle."""
    symbols = list(UNIVERSE[:500])
    port_box: list[int] = []
    ready = threading.Event()
    threading.Thread(target=lambda: asyncio.run(_blast_server(port_box, symbols, total, ready)), daemon=True).start()
    ready.wait(60)
    endpoints = Endpoints(
        trading="http://127.0.0.1:1",
        trading_stream="ws://127.0.0.1:1",
        data="http://127.0.0.1:1",
        data_stream=f"ws://127.0.0.1:{port_box[0]}/v2/iex",
    )
    book = QuoteBook.create(symbols)
    feed = start_feed(Connection("sim", endpoints, Credentials("k", "s")), book.meta)
    try:
        first = _wait_bid(book, lambda b: b >= 0, 60)
        done = _wait_bid(book, lambda b: b >= total - len(symbols), 120)
    finally:
        stop_child(feed)
        book.unlink()
    rate = (total - len(symbols)) / (done - first)
    report("feed ingest capacity", f"{rate:,.0f} quotes/s", ">= 50 000/s", rate >= 50_000)


def _wait_bid(book: QuoteBook, predicate: Any, timeout: float) -> float:
    end = time.time() + timeout
    while time.time() < end:
        bids = book.column("bid")
        if np.isfinite(bids).any() and predicate(np.nanmax(bids)):
            return time.perf_counter()
        time.sleep(0.0005)
    raise TimeoutError("the feed did not deliver in time")


# ----------------------------------------------------------------------------- 3. get_current_data
def current_data(repeats: int = 2000) -> None:
    symbols = list(UNIVERSE[:500])
    book = QuoteBook.create(symbols)
    try:
        now = time.time()
        for i, s in enumerate(symbols):
            book.write_quote(s, 100.0 + i, 100.01 + i, 100.0, 200.0, now, now)
        portfolio = Portfolio()
        portfolio.reset(
            {"symbol": s, "qty": str(10 + i), "avg_entry_price": str(50.0 + i)} for i, s in enumerate(symbols[:50])
        )

        def get_current_data() -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
            return book.bid_ask(), portfolio.as_blockpaca()  # what Session.get_current_data does

        ours = _time_calls(get_current_data, repeats)

        def naive() -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
            quotes = {s: {"bid": (q := book.quote(s)).bid, "ask": q.ask} for s in symbols}
            return quotes, portfolio.as_blockpaca()

        baseline = _time_calls(naive, max(50, repeats // 10))
    finally:
        book.unlink()
    med, p99 = statistics.median(ours) * 1e6, percentile(ours, 99) * 1e6
    print(f"  baseline (per-row seqlock reads): median {statistics.median(baseline) * 1e6:.0f} µs")
    report("get_current_data() 500 symbols + 50 positions, median", f"{med:.0f} µs", "<= 200 µs", med <= 200)
    report("get_current_data() p99", f"{p99:.0f} µs", "-", True)
    report("  ratio baseline / ours", f"{statistics.median(baseline) / statistics.median(ours):.1f}×", "-", True)


def _time_calls(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- 4. start → first tick
def start_to_first_tick(runs: int = 3) -> None:
    with Simulator(symbols=["AAPL", "MSFT"], seed=3) as sim, tempfile.TemporaryDirectory() as tmp:
        times = []
        for _ in range(runs):
            first = threading.Event()
            session = Session(
                tickers=["AAPL", "MSFT"], simulator=sim, warm_up_period=0, frequency=1, trade_log_path=tmp
            )
            session.strategy(lambda ctx, first=first: first.set())
            t0 = time.perf_counter()
            session.start()
            returned = time.perf_counter() - t0
            first.wait(30)
            times.append(time.perf_counter() - t0)
            session.stop(wait=True)
            print(f"  start() returned in {returned * 1e3:.1f} ms; first tick after {times[-1]:.2f} s")
    best, med = min(times), statistics.median(times)
    report("Session.start() → first tick (warm_up_period=0), median", f"{med:.2f} s", "<= 3 s", med <= 3)
    report("  best of runs", f"{best:.2f} s", "-", True)
    # The simulator was already serving; a Session that starts its own adds the simulator's start-up.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    current_data()
    start_to_first_tick()
    quote_latency(args.seconds)
    feed_capacity()
    print("\nsummary")
    for row in ROWS:
        print("  " + " | ".join(row))


if __name__ == "__main__":
    main()
