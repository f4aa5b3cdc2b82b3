"""The load run shared by test_load.py (~30 s) and soak.py (minutes): a session on 500 simulated
symbols quoting 10 times a second each, with a strategy trading every second; it samples the
memory (RSS) and open file descriptors of the kernel and of every child, and the quote latency
(receive time - quote time) as the run goes."""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from reliability_helpers import QuoteWatch, market, running, wait_for

from blockpaca_nb import Session, Simulator
from blockpaca_nb.sim.universe import UNIVERSE

MB = 1024 * 1024


@dataclass
class Sample:
    when: float
    rss: dict[str, int]
    fds: dict[str, int]
    writes: int  # row writes (quotes and trades) into the QuoteBook so far


@dataclass
class LoadReport:
    seconds: float
    symbols: int
    quotes_per_second: float
    samples: list[Sample] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    orders: int = 0
    filled: int = 0
    errors: list[Any] = field(default_factory=list)

    def growth_mb(self) -> dict[str, float]:
        first, last = self.samples[0], self.samples[-1]
        return {k: round((last.rss[k] - first.rss[k]) / MB, 1) for k in first.rss if k in last.rss}

    def fd_change(self) -> dict[str, int]:
        first, last = self.samples[0], self.samples[-1]
        return {k: last.fds[k] - first.fds[k] for k in first.fds if k in last.fds}

    def latency(self, part: str) -> float:
        """Median quote latency (s) in the first or last fifth of the measured run."""
        start, end = self.samples[0].when, self.samples[-1].when
        span = (end - start) / 5
        lo, hi = (start, start + span) if part == "first" else (end - span, end)
        values = [v for t, v in self.latencies if lo <= t <= hi]
        return round(statistics.median(values), 4) if values else float("nan")

    def writes_per_second(self) -> float:
        first, last = self.samples[0], self.samples[-1]
        return round((last.writes - first.writes) / max(last.when - first.when, 1e-9))

    def lines(self) -> list[str]:
        first, last = self.samples[0], self.samples[-1]
        out = [f"{self.symbols} symbols x {self.quotes_per_second:g} quotes/s for {self.seconds:g} s;"
               f" {self.writes_per_second()} QuoteBook writes/s;"
               f" {self.orders} orders, {self.filled} filled, {len(self.errors)} errors"]
        for name in first.rss:
            end_rss = last.rss.get(name, 0) / MB
            out.append(f"  {name:<14} RSS {first.rss[name] / MB:7.1f} MB -> {end_rss:7.1f} MB"
                       f"   fds {first.fds[name]:4d} -> {last.fds.get(name, -1):4d}")
        out.append(f"  quote latency (median): first {self.latency('first') * 1000:.1f} ms,"
                   f" last {self.latency('last') * 1000:.1f} ms")
        return out


def processes(session: Session) -> dict[str, psutil.Process]:
    found = {"kernel": psutil.Process(os.getpid())}
    for name, child in session._children.items():
        found[name] = psutil.Process(child.pid)
    for worker in session.worker_health():
        found[f"worker-{worker['worker']}"] = psutil.Process(worker["pid"])
    sim = session.simulator
    if sim is not None and sim._process is not None:
        found["simulator"] = psutil.Process(sim._process.pid)
    return found


def sample(session: Session) -> Sample:
    rss, fds = {}, {}
    for name, process in processes(session).items():
        try:
            rss[name], fds[name] = process.memory_info().rss, process.num_fds()
        except psutil.Error:
            continue
    book = session._book
    writes = int(book._open().seq_column.sum() // 2) if book is not None else 0
    return Sample(time.time(), rss, fds, writes)


def trade_every_tick(ctx: Any) -> Any:
    """Reads every quote, then buys one share of a symbol and sells one of the symbol bought before."""
    quotes, _positions = ctx.get_current_data()
    if len(quotes) < 100:
        return None
    n = ctx.state["n"] = ctx.state.get("n", 0) + 1
    names = sorted(quotes)
    orders = [market(names[n % len(names)], "buy")]
    if n > 1:
        orders.append(market(names[(n - 1) % len(names)], "sell"))
    return orders


RECOVERY_S = 20.0  # how long a backlog left by a machine busy elsewhere may take to clear
LATENCY_OK_S = 0.2


def _wait_for_a_backlog_to_clear(watch: QuoteWatch, start: float) -> bool:
    """Another process starving the feed near the end of the run leaves quotes behind for a few seconds;
    a leak in the feed would not clear. Under the same load, wait (up to RECOVERY_S) until the quotes of
    the run's last fifth, as the report will measure it, arrive within LATENCY_OK_S. True if it waited
    (the caller takes one more sample, so the report's last fifth covers the wait)."""

    def last_fifth() -> float:
        now = time.time()
        values = [v for t, v in list(watch.latencies) if t >= now - (now - start) / 5]
        return statistics.median(values) if values else float("inf")

    if last_fifth() < LATENCY_OK_S:
        return False
    deadline = time.monotonic() + RECOVERY_S
    while time.monotonic() < deadline and last_fifth() >= LATENCY_OK_S:
        time.sleep(0.5)
    return True


def run_load(seconds: float, log_dir: Path, symbols: int = 500, qps: float = 10.0, warm_s: float = 5.0,
             sample_every: float = 5.0) -> LoadReport:
    tickers = list(UNIVERSE[:symbols])
    report = LoadReport(seconds, symbols, qps)
    # hundreds of tickers: the unlimited data plan (a free plan streams 30 symbols)
    sim = Simulator(symbols=tickers, seed=99, quotes_per_second=qps, starting_cash=1e9, data_plan="sip")
    session = Session(tickers=tickers, simulator=sim, frequency=1.0, warm_up_period=0, trade_log_path=log_dir,
                      trade_log_name="load", num_workers=2)
    session.strategy(trade_every_tick)
    watch: QuoteWatch | None = None
    try:
        running(session, timeout=90)
        wait_for(lambda: len(session.get_current_data()[0]) >= symbols * 0.95, 60, "quotes for the symbols")
        watch = QuoteWatch(session, every=0.05)
        time.sleep(warm_s)
        # the kernel here is the test process: files of earlier tests' leftovers (a closed pool's pipes,
        # a Dask client's sockets) close when collected; collect them now, not in the middle of the count
        gc.collect()
        report.samples.append(sample(session))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(sample_every, max(0.0, end - time.monotonic())))
            report.samples.append(sample(session))
        if _wait_for_a_backlog_to_clear(watch, report.samples[0].when):
            report.samples.append(sample(session))
    finally:
        if watch is not None:
            watch.stop()
            report.latencies = list(watch.latencies)
        session.stop(wait=True)
    report.orders = len(session.orders)
    report.filled = sum(1 for row in session.orders.values() if row.get("status") == "filled")
    report.errors = [e for e in session.errors if not isinstance(e, dict) or e.get("where") != "reconcile"]
    return report
