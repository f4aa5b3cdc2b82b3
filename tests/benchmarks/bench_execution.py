"""Benchmark: how fast a block of orders gets through the execution pool, and the rate limit held.

Run it as a script (pytest does not collect it):

    python tests/benchmarks/bench_execution.py                       # full: 1 000 orders at 200/min (~4 min)
    python tests/benchmarks/bench_execution.py --limit 50 --window 5 # short demo of the same run

Part 1 — a block of 100 market orders against `Simulator(latency_ms=25)`, from `pool.submit()` to the
last "accepted" result, compared in the same run with
  (a) a sequential alpaca-py `TradingClient.submit_order` loop,
  (b) an "ideal client": one asyncio loop, aiohttp, all 100 requests at once over warm connections,
  (c) the physical limit: one 25 ms round trip (measured: one order on a warm connection).
Targets: the pool within 1.3x the ideal client and under 50 ms.

Part 2 — 1 000 orders through a limit of 200 per 60 s (or --limit/--window): the most calls in any
window (from the limiter's own grant times) and whether orders got their slots in submission order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from blockpaca_nb.broker import Connection, Credentials, Endpoints
from blockpaca_nb.execution import ExecutionPool, default_workers
from blockpaca_nb.orders import Order, new_client_order_id
from blockpaca_nb.ratelimit import RateLimiter
from blockpaca_nb.sim import Simulator
from blockpaca_nb.worker import Ticket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, home of the shared helpers
from rate_windows import max_in_any_window

TICKERS = ["AAPL", "MSFT", "TSLA", "NVDA", "SPY"]
NO_LIMIT = 100_000


def market_orders(count: int) -> list[Order]:
    return [Order(TICKERS[i % len(TICKERS)], "buy", "market", "buy_long", quantity=1) for i in range(count)]


def connect(sim: Simulator) -> Connection:
    return Connection("sim", Endpoints.from_mapping(sim.urls), Credentials(sim.api_key, sim.secret_key))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


# ------------------------------------------------------------------ the pool


def wait_for_finals(results: queue.Queue[dict[str, Any]], tickets: list[Ticket], timeout: float) -> dict[int, Any]:
    """Read results until every ticket has its final one; returns seq -> [submitting, final]."""
    wanted = {ticket.seq for ticket in tickets}
    events: dict[int, list[dict[str, Any]]] = {seq: [] for seq in wanted}
    missing = set(wanted)
    deadline = time.monotonic() + timeout
    while missing:
        event = results.get(timeout=max(0.0, deadline - time.monotonic()))
        if event["seq"] in events:
            events[event["seq"]].append(event)
            if event["kind"] != "submitting":
                missing.discard(event["seq"])
    return events


def time_pool_blocks(sim: Simulator, size: int, repeats: int, workers: int | None) -> list[float]:
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    with ExecutionPool(connect(sim), RateLimiter(NO_LIMIT), results, num_workers=workers) as pool:
        wait_for_finals(results, pool.submit(market_orders(size)), 60)  # boot the workers, warm connections
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            tickets = pool.submit(market_orders(size))
            events = wait_for_finals(results, tickets, 60)
            times.append(time.perf_counter() - started)
            assert all(e[-1]["kind"] == "accepted" for e in events.values())
    return times


# ------------------------------------------------------------------ the references


def time_sequential_alpaca_py(sim: Simulator, size: int) -> float:
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    client = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
    client.get_clock()  # warm the connection
    started = time.perf_counter()
    for order in market_orders(size):
        request = MarketOrderRequest(symbol=order.ticker, qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        client.submit_order(request)
    return time.perf_counter() - started


async def _ideal_client(sim: Simulator, size: int, repeats: int) -> tuple[list[float], list[float]]:
    headers = {"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key}
    url = f"{sim.urls['trading']}/v2/orders"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def post(order: Order) -> None:
            body = json.dumps(order.to_alpaca(new_client_order_id(order.action, 0))).encode()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                await response.read()
                assert response.status == 200, response.status

        await asyncio.gather(*(post(order) for order in market_orders(size)))  # open `size` connections
        blocks, singles = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            await asyncio.gather(*(post(order) for order in market_orders(size)))
            blocks.append(time.perf_counter() - started)
        for order in market_orders(repeats * 2):
            started = time.perf_counter()
            await post(order)
            singles.append(time.perf_counter() - started)
    return blocks, singles


# ------------------------------------------------------------------ part 2: the rate limit


def run_throttled(orders: int, limit: int, window_s: float, latency_ms: float) -> None:
    broker_limit = limit if window_s == 60 else None  # the simulator's window is a fixed minute
    print(f"\n== {orders} orders through a limit of {limit} per {window_s:g} s ==")
    with Simulator(
        symbols=TICKERS, seed=2, latency_ms=latency_ms, starting_cash=1e12, rate_limit_per_min=broker_limit
    ) as sim:
        limiter = RateLimiter(limit, window_s, override=True)
        results: queue.Queue[dict[str, Any]] = queue.Queue()
        with ExecutionPool(connect(sim), limiter, results) as pool:
            started = time.monotonic()
            tickets = pool.submit(market_orders(orders))
            expected = (orders / limit - 1) * window_s
            events = wait_for_finals(results, tickets, expected * 1.5 + 120)
            elapsed = time.monotonic() - started
        finals = [events[t.seq][-1] for t in tickets]
        grants = limiter.grants()
        print(
            f"all final after      {elapsed:8.1f} s   (floor for {orders} at {limit}/{window_s:g}s: {expected:.1f} s)"
        )
        print(f"accepted             {sum(f['kind'] == 'accepted' for f in finals):8d} of {orders}")
        print(f"retried (e.g. 429s)  {sum(f.get('attempts', 1) > 1 for f in finals):8d}")
        print(f"REST calls granted   {len(grants):8d}")
        print(f"max in any {window_s:g} s     {max_in_any_window(grants, window_s):8d}   (limit {limit})")
        report_fifo(tickets, events)


def report_fifo(tickets: list[Ticket], events: dict[int, Any], tolerance_s: float = 0.05) -> None:
    """FIFO kept = no order got its first slot after an order submitted later (timestamps are
    taken in different worker processes: `tolerance_s` absorbs the moment each one notices)."""
    first_try = [next(e["time"] for e in events[t.seq] if e["kind"] == "submitting") for t in tickets]
    latest_so_far, worst, inversions = float("-inf"), 0.0, 0
    for moment in first_try:  # in submission order
        if moment + tolerance_s < latest_so_far:
            inversions += 1
            worst = max(worst, latest_so_far - moment)
        latest_so_far = max(latest_so_far, moment)
    verdict = (
        "yes" if not inversions else f"no: {inversions} orders went before an earlier one (worst {worst * 1000:.0f} ms)"
    )
    print(f"FIFO kept            {verdict}")


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", type=int, default=100, help="orders in the timed block (default 100)")
    parser.add_argument("--latency-ms", type=float, default=25.0, help="simulated broker latency (default 25)")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per contender (median reported)")
    parser.add_argument("--orders", type=int, default=1000, help="orders in the rate-limited run (default 1000)")
    parser.add_argument("--limit", type=int, default=200, help="calls per window in the rate-limited run")
    parser.add_argument("--window", type=float, default=60.0, help="window seconds in the rate-limited run")
    parser.add_argument("--workers", type=int, default=None, help="execution workers (default: for this machine)")
    parser.add_argument("--skip-throttled", action="store_true", help="only part 1")
    args = parser.parse_args()

    print(f"== a block of {args.block} market orders, broker latency {args.latency_ms:g} ms ==")
    with Simulator(symbols=TICKERS, seed=1, latency_ms=args.latency_ms, starting_cash=1e12) as sim:
        pool = statistics.median(time_pool_blocks(sim, args.block, args.repeats, args.workers))
        ideal_blocks, singles = asyncio.run(_ideal_client(sim, args.block, args.repeats))
        ideal, round_trip = statistics.median(ideal_blocks), statistics.median(singles)
        sequential = time_sequential_alpaca_py(sim, args.block)
    workers = args.workers or default_workers()
    how = f"submit() to the last 'accepted', median of {args.repeats}; {workers} workers"
    print(f"execution pool       {ms(pool)}   ({how})")
    print(f"(a) alpaca-py loop   {ms(sequential)}   (sequential TradingClient.submit_order)")
    print(f"(b) ideal client     {ms(ideal)}   (one asyncio loop, all at once, warm connections)")
    print(f"(c) one round trip   {ms(round_trip)}   (one order on a warm connection; nominal {args.latency_ms:g} ms)")
    print(f"pool / ideal         {pool / ideal:8.2f} x   (target <= 1.3)")
    print(f"pool / round trip    {pool / round_trip:8.2f} x")
    print(f"alpaca-py / pool     {sequential / pool:8.1f} x")
    print(f"pool under 50 ms     {'yes' if pool <= 0.050 else 'no'}")
    if not args.skip_throttled:
        run_throttled(args.orders, args.limit, args.window, args.latency_ms)


if __name__ == "__main__":
    main()
