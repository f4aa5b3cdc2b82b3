"""Benchmark: what the risk limits add to each order before it leaves the kernel (target ≤ 20 µs).

Run it as a plain script (pytest does not collect it)::

    python tests/benchmarks/bench_risk.py

A block of 100 orders over 50 tickers goes through ``RiskDesk.screen`` as ``Session.submit`` sends
it: once for a strategy with every limit and a budget, plus session limits, over books that already
hold 40 positions and 100 open orders — and, in the same run, once with no limits at all (the
baseline: what every session without limits pays). Component benchmark: the session's full path
with limits is ``bench_session.py --strategies 4``.
"""

from __future__ import annotations

from bench_quotebook import measure  # the same timing as the other component benchmarks

from blockpaca_nb.books import Books
from blockpaca_nb.orders import Order
from blockpaca_nb.risk import Limits, RiskDesk

TICKERS = [f"T{i:02d}" for i in range(50)]
ORDERS = 100
ROUNDS = 2000
TARGET_US = 20.0


def held_books() -> Books:
    """Books with 40 positions and 100 open orders, as a busy session has them."""
    books = Books()
    books.open("capped", 5_000_000.0)
    for i, ticker in enumerate(TICKERS[:40]):
        books.apply(
            {"fill_qty": 10, "fill_price": 100.0 + i, "side": "buy", "ticker": ticker, "strategy": "capped"},
            ended=False,
        )
    for i in range(100):
        books.sent(f"buy_long-0-{i:08x}-capped", "capped", TICKERS[i % 50], 1.0)
    return books


def main() -> None:
    quotes = {t: {"bid": 100.0 + i, "ask": 100.05 + i} for i, t in enumerate(TICKERS)}
    block = [
        Order(TICKERS[i % 50], ("buy", "sell")[i % 2], "market", ("buy_long", "sell_long")[i % 2], quantity=1.0)
        for i in range(ORDERS)
    ]
    limits = Limits.from_mapping(
        {
            "max_position": 1_000, "max_position_notional": 1e6, "max_order_notional": 1e5,
            "max_gross_exposure": 1e8, "max_orders_per_minute": 10**9, "max_daily_loss": 1e6,
        }
    )  # fmt: skip
    limited = RiskDesk(held_books(), limits)
    limited.set("capped", limits, 5_000_000.0)
    free = RiskDesk(held_books())
    passed = limited.screen(block, "capped", quotes, reduce_only=False)
    assert len(passed.passed) == ORDERS, passed.refused[:3]
    ours = measure(lambda: limited.screen(block, "capped", quotes, reduce_only=False), ROUNDS // 10)
    baseline = measure(lambda: free.screen(block, "capped", quotes, reduce_only=False), ROUNDS // 10)
    per_order = [value / ORDERS for value in ours]
    added = (ours[1] - baseline[1]) / ORDERS
    print(f"risk checks, a block of {ORDERS} orders (every limit, a budget and session limits; 40 positions held)")
    print(f"  with limits  best {ours[0]:9.1f} µs   median {ours[1]:9.1f} µs   p99 {ours[2]:9.1f} µs per block")
    best, median, p99 = baseline
    print(f"  no limits    best {best:9.1f} µs   median {median:9.1f} µs   p99 {p99:9.1f} µs per block")
    print(f"  added per order: median {added:.1f} µs, p99 {per_order[2]:.1f} µs (target ≤ {TARGET_US:g} µs) — "
          f"{'met' if added <= TARGET_US else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
