"""Benchmark: replay speed against the issue's targets, beside backtrader on the same bars and logic.

Run it as a plain script (pytest does not collect it)::

    pip install backtrader          # or: pip install -e .[bench]
    python tests/benchmarks/bench_replay.py [--months 12] [--no-backtrader] [--no-sweep]

What a user waits for is the `replay()` call: loading the simulator's minute bars, the strategy's
calls, every order through the simulator's broker rules, and the records. Lines:

1. replay of the quickstart's momentum (buy 1 when the mid rises and fewer than 5 are held, sell all
   when it falls: an order on most ticks of most symbols) over 1 month and over `--months` months of
   1-minute ticks for 10 symbols: seconds, ticks/s, symbol-bars/s, µs per tick (the two must agree
   within 20 %: cost linear in length), and the peak RSS of a fresh process that runs the long replay
   (target ≤ 300 MB); what a user reads next (`r.stats`, `r.trade_log`): its time, and the peak RSS
   with it; then the same for a strategy that trades a few times a day, and for the two
   side by side, each with its own book (its cost must be linear in length too); and a strategy that
   reads 20 daily bars at every minute (what `ctx.bars()` costs);
2. backtrader on the same minute bars with the same logic, over 1 month (its rate does not depend on
   the length): bars/s, and replay's rate over it (target ≥ 10×);
3. sweep() of 16 parameter sets over `--months` months on a local process pool against the same 16
   replays one after another in this process, its data already loaded (target ≥ 1.7× on 2 cores; the
   pool pays for starting its workers and handing each the data).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys
import time
from typing import Any

SYMBOLS = ["AAPL", "MSFT", "SPY", "TSLA", "NVDA", "AMZN", "META", "GOOGL", "QQQ", "IWM"]
MAX_SHARES = 5
TARGET_SECONDS_PER_YEAR = 10.0
TARGET_BACKTRADER_RATIO = 10.0
TARGET_RSS_MB = 300.0
TARGET_SWEEP_SPEEDUP = 1.7


def last_session_before_today() -> dt.date:
    from blockpaca_nb.sim import calendar

    today = dt.datetime.now(calendar.EASTERN).date()
    return calendar.previous_sessions(today, 1)[0].date


def span(months: int) -> tuple[dt.date, dt.date]:
    end = last_session_before_today()
    return end - dt.timedelta(days=round(months * 30.44)) + dt.timedelta(days=1), end


def timed_replay(months: int, light: bool = False, several: bool = False, read: bool = False) -> dict[str, float]:
    """The quickstart's momentum (an order on most ticks of most symbols), or with `light` a strategy
    that reads every quote every minute and trades on a 30-minute move of 50 bps (a few orders a day),
    or with `several` the two side by side, each with its own book. With `read`, then what a user
    reads next is timed too: `r.stats`, then `r.trade_log`."""
    from blockpaca_nb import replay
    from blockpaca_nb.examples import momentum

    start, end = span(months)
    fn: Any = make_momentum(30, 50.0) if light else momentum
    if several:
        fn = {"momentum": momentum, "light": make_momentum(30, 50.0)}
    began = time.perf_counter()
    result = replay(fn, SYMBOLS, start=start, end=end, progress=False)
    seconds = time.perf_counter() - began
    read_at = time.perf_counter()
    stats_seconds = log_seconds = rows = 0.0
    if read:
        assert len(result.stats)
        log_at = time.perf_counter()
        rows, log_seconds = len(result.trade_log), time.perf_counter() - log_at
        stats_seconds = log_at - read_at
    return {
        "stats_seconds": stats_seconds,
        "log_seconds": log_seconds,
        "rows": rows,
        "seconds": seconds,
        "ticks": result.ticks,
        "orders": float(result.stats["orders"]),
        "us_per_tick": seconds / result.ticks * 1e6,
        "bars_per_s": result.ticks * len(SYMBOLS) / seconds,
    }


def child_rss(months: int, light: bool = False, read: bool = False) -> float:
    """Peak RSS (MB) of a fresh interpreter running the replay. Read from /proc (VmHWM): getrusage's
    ru_maxrss survives exec, so a child of this big process would report this process's peak."""
    code = (
        "import sys; sys.path.insert(0, 'tests/benchmarks'); import bench_replay as b;"
        f" b.timed_replay({months}, {light}, read={read}); print(b.peak_rss_mb())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bars_reader(months: int) -> dict[str, float]:
    """A strategy that reads 20 daily bars of 3 symbols at every minute's tick (a moving average's
    input): what `ctx.bars()` costs in a replay."""
    from blockpaca_nb import replay

    spent = {"seconds": 0.0, "calls": 0.0}

    def reads_daily_bars(ctx: Any) -> None:
        began = time.perf_counter()
        ctx.bars(SYMBOLS[:3], "1Day", 20)
        spent["seconds"] += time.perf_counter() - began
        spent["calls"] += 1

    start, end = span(months)
    began = time.perf_counter()
    replay(reads_daily_bars, SYMBOLS[:3], start=start, end=end, progress=False)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "calls": spent["calls"], "ms_per_call": spent["seconds"] / spent["calls"] * 1e3}


# =============================================================================== backtrader


def backtrader_rate(months: int) -> dict[str, float] | None:
    try:
        import backtrader as bt
    except ImportError:
        return None
    import pandas as pd

    from blockpaca_nb.history import sim_tape

    start, end = span(months)
    tape = sim_tape(SYMBOLS, start, end, 0)
    index = pd.to_datetime(tape.bar_end - 60, unit="s")
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(100_000.0)
    for j, symbol in enumerate(SYMBOLS):
        frame = pd.DataFrame({f: v[:, j] for f, v in tape.bars.items()}, index=index)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes), name=symbol)
    cerebro.addstrategy(_backtrader_momentum(bt))
    began = time.perf_counter()
    cerebro.run()
    seconds = time.perf_counter() - began
    bars = len(index) * len(SYMBOLS)
    return {"seconds": seconds, "bars": bars, "bars_per_s": bars / seconds}


def _backtrader_momentum(bt: Any) -> Any:
    class Momentum(bt.Strategy):  # the quickstart's logic, on each bar's close
        def next(self) -> None:
            for data in self.datas:
                if len(data) < 2:
                    continue
                held = self.getposition(data).size
                if data.close[0] > data.close[-1] and held < MAX_SHARES:
                    self.buy(data=data, size=1)
                elif data.close[0] < data.close[-1] and held > 0:
                    self.close(data=data)

    return Momentum


# =============================================================================== sweep


def make_momentum(lookback: int, threshold: float) -> Any:
    def strategy(ctx: Any) -> list[dict[str, Any]]:
        quotes, positions = ctx.get_current_data()
        held = {p["ticker"]: p["quantity"] for p in positions}
        mids = ctx.state.setdefault("mids", {})
        orders = []
        for ticker, q in quotes.items():
            path = mids.setdefault(ticker, [])
            path.append((q["bid"] + q["ask"]) / 2)
            if len(path) <= lookback:
                continue
            move = (path[-1] / path[-1 - lookback] - 1) * 10_000
            if move > threshold and not held.get(ticker):
                orders.append({"ticker": ticker, "quantity": 1, "side": "buy", "order_type": "market"})
            elif move < -threshold and held.get(ticker, 0) > 0:
                orders.append({"ticker": ticker, "quantity": held[ticker], "side": "sell", "order_type": "market"})
            del path[: -lookback - 1]
        return orders

    return strategy


def sweep_speedup(months: int) -> dict[str, float]:
    from blockpaca_nb import replay, sweep

    start, end = span(months)
    grid = {"lookback": [2, 5, 10, 20], "threshold": [0.0, 2.0, 5.0, 10.0]}
    arguments = {"tickers": SYMBOLS[:4], "start": start, "end": end, "frequency": "5m"}
    replay(make_momentum(2, 0.0), progress=False, **arguments)  # the tape is loaded and kept: both sides alike
    began = time.perf_counter()
    for lookback in grid["lookback"]:
        for threshold in grid["threshold"]:
            stats = replay(make_momentum(lookback, threshold), progress=False, **arguments).stats  # as sweep() does
            assert len(stats)
    serial = time.perf_counter() - began
    began = time.perf_counter()
    sweep(make_momentum, grid, progress=False, **arguments)
    pooled = time.perf_counter() - began
    return {"serial": serial, "pooled": pooled, "speedup": serial / pooled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--no-backtrader", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()
    timed_replay(1)  # imports and caches warm, as in a notebook's second cell
    short, long = timed_replay(1), timed_replay(args.months, read=True)
    print(f"replay, momentum, {len(SYMBOLS)} symbols, 1-minute ticks (the whole replay() call):")
    for label, run in (("1 month", short), (f"{args.months} months", long)):
        print(
            f"  {label:>10}: {run['seconds']:7.2f} s  {run['ticks']:7.0f} ticks  {run['orders']:7.0f} orders"
            f"  {run['us_per_tick']:6.0f} µs/tick  {run['bars_per_s']:9.0f} symbol-bars/s"
        )
    per_year = long["seconds"] * 12 / args.months
    drift = long["us_per_tick"] / short["us_per_tick"] - 1
    print(f"  a year would take {per_year:.1f} s (target ≤ {TARGET_SECONDS_PER_YEAR:g} s); per-tick cost "
          f"{args.months} months vs 1 month: {drift:+.0%} (target within ±20 %)")  # fmt: skip
    print(f"  peak RSS of a fresh process replaying {args.months} months: {child_rss(args.months):.0f} MB"
          f" (target ≤ {TARGET_RSS_MB:g} MB; this process: {_rss():.0f} MB)")  # fmt: skip
    print(f"  then what a user reads next: r.stats {long['stats_seconds']:.2f} s,"
          f" r.trade_log {long['log_seconds']:.2f} s"
          f" ({long['rows']:,.0f} rows); peak RSS of a fresh process replaying and reading both:"
          f" {child_rss(args.months, read=True):.0f} MB")  # fmt: skip
    light = timed_replay(args.months, light=True)
    print(f"  a strategy that trades a few times a day, {args.months} months: {light['seconds']:.2f} s,"
          f" {light['orders']:.0f} orders, {light['us_per_tick']:.0f} µs/tick, {light['bars_per_s']:.0f} symbol-bars/s;"
          f" peak RSS {child_rss(args.months, light=True):.0f} MB")  # fmt: skip
    one, year = (timed_replay(months, several=True) for months in (1, args.months))
    print(f"  two strategies side by side (the two above, a book each), {args.months} months: {year['seconds']:.2f} s,"
          f" {year['us_per_tick']:.0f} µs/tick; vs 1 month: {year['us_per_tick'] / one['us_per_tick'] - 1:+.0%}"
          " (linear in length too)")  # fmt: skip
    reader = bars_reader(1)
    print(f"  a strategy reading 20 daily bars of 3 symbols at every minute, 1 month: {reader['seconds']:.2f} s"
          f" ({reader['calls']:.0f} ctx.bars() calls, {reader['ms_per_call']:.2f} ms each)")  # fmt: skip
    if not args.no_backtrader:
        bt_run = backtrader_rate(1)
        if bt_run is None:
            print("backtrader: not installed (pip install backtrader) — comparison skipped")
        else:
            ratio = short["bars_per_s"] / bt_run["bars_per_s"]
            print(f"backtrader, same bars and logic, 1 month: {bt_run['seconds']:.2f} s, {bt_run['bars_per_s']:.0f} "
                  f"symbol-bars/s; replay {ratio:.1f}× its rate (target ≥ {TARGET_BACKTRADER_RATIO:g}×)")  # fmt: skip
    if not args.no_sweep:
        sw = sweep_speedup(args.months)
        print(f"sweep of 16 (4 symbols, {args.months} months, 5m): one after another {sw['serial']:.2f} s, "
              f"local pool {sw['pooled']:.2f} s: {sw['speedup']:.2f}×"
              f" (target ≥ {TARGET_SWEEP_SPEEDUP:g}× on 2 cores)")  # fmt: skip


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb() -> float:
    """This process's peak resident set since it started (exec), in MB."""
    with open("/proc/self/status") as status:
        line = next(text for text in status if text.startswith("VmHWM:"))
    return float(line.split()[1]) / 1024


if __name__ == "__main__":
    main()
