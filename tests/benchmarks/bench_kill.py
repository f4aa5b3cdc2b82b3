"""Benchmark: the kill switch, from ``s.kill()`` to an account flat with respect to the session
(target ≤ 2 s at the simulator's default latency).

Run it as a plain script (pytest does not collect it)::

    python tests/benchmarks/bench_kill.py [--repeats 5] [--latency-ms 0]

Each repeat: a session on a `Simulator` (paper profile) with four strategies alongside, which
between them hold long and short positions in five symbols and keep resting limit orders open (the
broker refuses some of their orders as wash trades, as Alpaca paper would); the
account also holds a position from before the session, which the kill switch must leave alone.
Timed by the broker's ground truth (``sim.positions()``, ``sim.orders()``): ``kill()`` returning, the
last of the session's orders cancelled or filled, and the account back to what it held before the
session; then every strategy's book flat in the kernel. Printed beside it, from the same run: an account
with positions only (no resting orders, nothing outside) flattened by one alpaca-py client
(``close_all_positions(cancel_orders=True)``): what one call costs when nothing must be waited for.
The paper profile's cancels take 150 ms to be confirmed, and the kill switch waits for them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alpaca.trading.client import TradingClient
from alpaca.trading.requests import MarketOrderRequest

from blockpaca_nb import Session, Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from waiting import wait_for

TICKERS = ["AAPL", "MSFT", "TSLA", "NVDA", "SPY"]
OUTSIDE = ("SPY", 7.0)  # held before the session: not the session's


def trader(side: str, tickers: list[str], quantity: int) -> Any:
    """Opens a position in each ticker once, then keeps a far-away limit order resting."""

    def strategy(ctx: Any) -> Any:
        if ctx.state.get("done"):
            return None
        quotes, _ = ctx.get_current_data()
        if any(t not in quotes for t in tickers):
            return None
        ctx.state["done"] = True
        action = "buy_long" if side == "buy" else "short_sell"
        orders = [{"ticker": t, "quantity": quantity, "side": side, "order_type": "market", "action": action}
                  for t in tickers]  # fmt: skip
        far = 0.5 if side == "buy" else 1.5
        price = lambda t: round(quotes[t]["bid" if side == "buy" else "ask"] * far, 2)  # noqa: E731
        rest = [{"ticker": t, "quantity": 1, "side": side, "order_type": "limit", "limit_price": price(t),
                 "time_in_force": "gtc", "action": action} for t in tickers[:1]]  # fmt: skip
        return orders + rest

    return strategy


def client(sim: Simulator) -> TradingClient:
    return TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])


def held(sim: Simulator) -> dict[str, float]:
    return {p["symbol"]: float(p["qty"]) for p in sim.positions() if float(p["qty"])}


def open_orders(sim: Simulator) -> list[dict[str, Any]]:
    done = {"filled", "canceled", "expired", "rejected", "replaced"}
    return [o for o in sim.orders() if o["status"] not in done]


def one_kill(latency_ms: float) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as folder, Simulator(symbols=TICKERS, seed=9, latency_ms=latency_ms) as sim:
        client(sim).submit_order(MarketOrderRequest(symbol=OUTSIDE[0], qty=OUTSIDE[1], side="buy", time_in_force="day"))
        wait_for(lambda: held(sim).get(OUTSIDE[0]) == OUTSIDE[1], 30, "the outside position")
        s = Session(tickers=TICKERS, simulator=sim, frequency=0.2, warm_up_period=0, trade_log_path=folder)
        s.start()
        s.strategy(trader("buy", TICKERS[:3], 10), alongside=True, name="longs")
        s.strategy(trader("sell", TICKERS[2:], 4), alongside=True, name="shorts")
        s.strategy(trader("buy", TICKERS[1:4], 3), alongside=True, name="more_longs")
        s.strategy(trader("sell", TICKERS[:1], 2), alongside=True, name="hedge")
        # each strategy has sent its orders (some refused as wash trades: real) and positions are held
        s.wait_for(until=lambda: (s.positions_by_strategy["quantity"] != 0).sum() >= 5, timeout=60)
        wait_for(lambda: not sum(w["in_flight"] for w in s.worker_health()), 30, "every order answered")
        wait_for(lambda: not [o for o in open_orders(sim) if o["type"] == "market"], 30, "market orders done")
        started = time.monotonic()
        s.kill()
        returned = time.monotonic() - started
        wait_for(lambda: held(sim) == {OUTSIDE[0]: OUTSIDE[1]} and not open_orders(sim), 60, "flat", every=0.005)
        flat = time.monotonic() - started
        wait_for(lambda: s.positions_by_strategy["quantity"].abs().sum() == 0, 30, "books flat", every=0.005)
        books = time.monotonic() - started
        s.stop(wait=True, timeout=60)
        return returned, flat, books


def one_ideal(latency_ms: float) -> float:
    """The same kind of account flattened by one client: cancel all, close all, until flat."""
    with Simulator(symbols=TICKERS, seed=9, latency_ms=latency_ms) as sim:
        trading = client(sim)
        for ticker in TICKERS:
            trading.submit_order(MarketOrderRequest(symbol=ticker, qty=5, side="buy", time_in_force="day"))
        wait_for(lambda: len(held(sim)) == len(TICKERS), 30, "positions")
        started = time.monotonic()
        trading.close_all_positions(cancel_orders=True)
        wait_for(lambda: not held(sim) and not open_orders(sim), 60, "flat", every=0.005)
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the simulator's latency (default: its own, 0)")
    args = parser.parse_args()
    kills = [one_kill(args.latency_ms) for _ in range(args.repeats)]
    ideal = [one_ideal(args.latency_ms) for _ in range(args.repeats)]

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms ({min(values) * 1000:.0f}–{max(values) * 1000:.0f})"

    print(f"kill switch, 4 strategies, 5 symbols long and short, resting orders, {args.latency_ms:g} ms latency")
    print(f"  kill() returned                 {spread([k[0] for k in kills])}")
    print(f"  the account flat w.r.t. the session (broker) {spread([k[1] for k in kills])}   (target ≤ 2 s)")
    print(f"  every strategy's book flat      {spread([k[2] for k in kills])}")
    print(f"  one client, close_all_positions {spread(ideal)}   (positions only: no cancels to wait for)")


if __name__ == "__main__":
    main()
