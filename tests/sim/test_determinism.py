"""One seed, one market: two simulators with the same seed give identical prices; another seed differs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta

import numpy as np
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from sim_helpers import MarketData, data_client, wait_for

from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.calendar import EASTERN
from blockpaca_nb.sim.market import Market

Factory = Callable[..., Simulator]


def history(sim: Simulator, timeframe: TimeFrame, days: int) -> dict[str, list[tuple[object, ...]]]:
    end = datetime.combine(datetime.now(EASTERN).date(), time(0), tzinfo=EASTERN)
    request = StockBarsRequest(
        symbol_or_symbols=["AAPL", "SPY"],
        timeframe=timeframe,
        start=end - timedelta(days=days),
        end=end - timedelta(seconds=1),
    )
    return {
        s: [(b.timestamp, b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap) for b in bars]
        for s, bars in data_client(sim).get_stock_bars(request).data.items()
    }


def test_same_seed_same_history_other_seed_differs(make_sim: Factory) -> None:
    a = make_sim(seed=42, quotes_per_second=0.001)
    b = make_sim(seed=42, quotes_per_second=0.001, symbols=["SPY", "AAPL"])  # other symbols, same prices
    c = make_sim(seed=43, quotes_per_second=0.001)
    daily = history(a, TimeFrame.Day, 100)
    assert len(daily["AAPL"]) >= 60
    assert history(b, TimeFrame.Day, 100) == daily
    minutes = history(a, TimeFrame.Minute, 5)
    assert len(minutes["SPY"]) > 700
    assert history(b, TimeFrame.Minute, 5) == minutes
    other = history(c, TimeFrame.Day, 100)
    assert [bar[4] for bar in other["AAPL"]] != [bar[4] for bar in daily["AAPL"]]
    assert [bar[4] for bar in other["SPY"]] != [bar[4] for bar in daily["SPY"]]


def test_same_seed_same_live_trades(make_sim: Factory, market_data: Callable[..., MarketData]) -> None:
    """Live trades carry the market step as their id: equal ids must mean equal trades."""
    # the "*" wildcard needs the unlimited data plan (a free plan streams 30 named symbols)
    sims = [make_sim(seed=9, quotes_per_second=40, data_plan="sip") for _ in range(2)]
    other = make_sim(seed=10, quotes_per_second=40, data_plan="sip")
    streams = [market_data(s, trades=("*",)) for s in [*sims, other]]

    def by_step(recorder: MarketData) -> dict[tuple[str, int], tuple[float, float]]:
        return {(t.symbol, t.id): (t.price, t.size) for t in recorder.trades}

    def overlap() -> set[tuple[str, int]]:
        return set(by_step(streams[0])) & set(by_step(streams[1])) & set(by_step(streams[2]))

    wait_for(lambda: len(overlap()) >= 30, 15, what="30 trades seen by all three streams")
    common = overlap()
    first, second, third = (by_step(r) for r in streams)
    assert {k: first[k] for k in common} == {k: second[k] for k in common}
    differ = sum(first[k][0] != third[k][0] for k in common)
    assert differ >= 0.9 * len(common)
    # every symbol trades, and at the same steps in both same-seed simulators
    assert {s for s, _ in common} == set(sims[0].symbols)
    shared = set(first) & set(second)
    low = max(min(i for _, i in first), min(i for _, i in second))
    high = min(max(i for _, i in first), max(i for _, i in second))
    window_a = {k for k in first if low <= k[1] <= high}
    window_b = {k for k in second if low <= k[1] <= high}
    assert window_a == window_b == {k for k in shared if low <= k[1] <= high}


def test_market_steps_do_not_depend_on_how_ticks_are_batched() -> None:
    """The price process per symbol is the same whether steps come one by one or in batches, and
    whichever other symbols are simulated; every symbol keeps its own spread."""
    symbols = ("AAPL", "MSFT", "TSLA", "NVDA", "SPY")
    one_by_one = Market(symbols, 9, 40.0)
    batched = Market(symbols, 9, 40.0)
    fewer = Market(("SPY", "AAPL"), 9, 40.0)
    singles = [one_by_one.step(1, 1e9 + i) for i in range(700)]  # crosses the draw buffer (512)
    batches = [batched.step(k, 1e9) for k in (3, 4, 1, 692)]
    (together,) = [fewer.step(700, 1e9)]
    bid = np.concatenate([t.bid for t in singles])
    ask = np.concatenate([t.ask for t in singles])
    assert bid.shape == (700, 5)
    assert np.array_equal(bid, np.concatenate([t.bid for t in batches]))
    assert np.array_equal(ask, np.concatenate([t.ask for t in batches]))
    assert np.array_equal(bid[:, [4, 0]], together.bid)
    trades = np.concatenate([t.trade_price for t in singles])
    assert np.array_equal(trades, np.concatenate([t.trade_price for t in batches]))
    for j, symbol in enumerate(symbols):
        spread_bps = one_by_one.profiles[symbol].spread_bps
        mid = (bid[:, j] + ask[:, j]) / 2
        expected = np.maximum(0.01, np.round(mid * spread_bps / 1e4, 2))
        assert np.allclose(ask[:, j] - bid[:, j], expected, atol=0.0101), symbol
        assert (bid[:, j] < ask[:, j]).all()
