"""Benchmark: QuoteBook.bid_ask() for 500 tickers and validating a 100-order block.

Run it as a plain script (pytest does not collect it)::

    python tests/benchmarks/bench_quotebook.py

Each measurement is shown next to a naive baseline run in the same process, so the ratio
means something even on a busy machine:

* ``bid_ask()`` against a per-row loop that reads every ticker with ``quote()``;
* ``parse_orders()`` against a validator that deep-copies each order and checks its
  fields with regular expressions.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
import time
from collections.abc import Callable

from blockpaca_nb.orders import ACTIONS_BY_SIDE, parse_orders
from blockpaca_nb.quotes import QuoteBook

TICKER_COUNT = 500
ORDER_COUNT = 100
ROUNDS = 2000


def measure(work: Callable[[], object], rounds: int = ROUNDS) -> tuple[float, float, float]:
    """Return (best, median, p99) of ``work``'s run time in microseconds, after a warm-up."""
    for _ in range(min(100, rounds)):
        work()
    timings = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        work()
        timings.append((time.perf_counter_ns() - start) / 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, math.ceil(0.99 * len(timings)) - 1)]
    return timings[0], statistics.median(timings), p99


def report(name: str, ours: tuple[float, float, float], baseline: tuple[float, float, float]) -> None:
    print(f"{name}")
    for label, (best, median, p99) in (("ours", ours), ("baseline", baseline)):
        print(f"  {label:<9} best {best:9.1f} µs   median {median:9.1f} µs   p99 {p99:9.1f} µs")
    print(f"  speed-up  median x{baseline[1] / ours[1]:.1f}   p99 x{baseline[2] / ours[2]:.1f}")


def bench_bid_ask() -> None:
    tickers = [f"T{i:03d}" for i in range(TICKER_COUNT)]
    with QuoteBook.create(tickers) as book:
        now = time.time()
        for i, ticker in enumerate(tickers):
            book.write_quote(ticker, 100.0 + i, 100.05 + i, 100, 200, now, now)

        def per_row_loop() -> dict[str, dict[str, float]]:
            quotes = {}
            for ticker in book.tickers:
                quote = book.quote(ticker)
                if not (math.isnan(quote.bid) and math.isnan(quote.ask)):
                    quotes[ticker] = {"bid": quote.bid, "ask": quote.ask}
            return quotes

        assert book.bid_ask() == per_row_loop()
        report(
            f"QuoteBook.bid_ask(), {TICKER_COUNT} tickers",
            measure(book.bid_ask),
            measure(per_row_loop, ROUNDS // 10),
        )


_TICKER_PATTERN = re.compile(r"^[A-Z][A-Z0-9./]*$")
_NUMBER_PATTERN = re.compile(r"^\d+(\.\d+)?$")
_SIDE_PATTERN = re.compile(r"^(buy|sell)$", re.IGNORECASE)
_TYPE_PATTERN = re.compile(r"^(market|limit|stop|stop_limit)$", re.IGNORECASE)


def naive_validate(block: list[dict[str, object]]) -> list[dict[str, object]]:
    """The slow way: deep copies and a regular expression per field."""
    valid = []
    for raw in copy.deepcopy(block):
        ok = (
            bool(_TICKER_PATTERN.match(str(raw.get("ticker", ""))))
            and bool(_NUMBER_PATTERN.match(str(raw.get("quantity", ""))))
            and bool(_SIDE_PATTERN.match(str(raw.get("side", ""))))
            and bool(_TYPE_PATTERN.match(str(raw.get("order_type", ""))))
        )
        side = str(raw.get("side", "")).lower()
        action = raw.get("action")
        if ok and (action is None or action in ACTIONS_BY_SIDE.get(side, ())):
            valid.append(copy.deepcopy(raw))
    return valid


def bench_validation() -> None:
    tickers = frozenset(f"T{i:03d}" for i in range(TICKER_COUNT))
    block: list[dict[str, object]] = []
    for i in range(ORDER_COUNT):
        order: dict[str, object] = {"ticker": f"T{i:03d}", "quantity": 1 + i % 7, "side": ("buy", "sell")[i % 2]}
        if i % 3:
            order["order_type"] = "market"
        else:
            order.update(order_type="limit", limit_price=100.0 + i, time_in_force="gtc")
        block.append(order)
    orders, errors = parse_orders(block, tickers)
    assert len(orders) == ORDER_COUNT and not errors
    assert len(naive_validate(block)) == ORDER_COUNT
    report(
        f"parse_orders(), a block of {ORDER_COUNT} orders",
        measure(lambda: parse_orders(block, tickers)),
        measure(lambda: naive_validate(block), ROUNDS // 4),
    )


def main() -> None:
    bench_bid_ask()
    bench_validation()


if __name__ == "__main__":
    main()
