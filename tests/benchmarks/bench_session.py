"""Benchmark: the full path, from a strategy's return to the broker, with the whole session running.

Run it as a script (pytest does not collect it):

    python tests/benchmarks/bench_session.py                 # blocks of 100 and 500, start-up, component
    python tests/benchmarks/bench_session.py --repeats 9 --skip-500 --skip-startup
    python tests/benchmarks/bench_session.py --only-blocks --blockpaca    # beside blockpaca 0.1.2
    python tests/benchmarks/bench_session.py --only-blocks --strategies 4  # the block from 4 strategies

What a user meets, not a component: a started `Session` on `Simulator(latency_ms=25)` — quote feed,
recorder (trade_updates stream, CSV trade log), execution workers, the dashboard's pump refreshing
headless (its widgets talk to a counting comm) — whose strategy returns a block of market orders
once. Measured, by the simulator's own clock (each order's ``created_at``, taken after its latency):

* strategy return → the FIRST and the LAST order of the block at the broker;
* strategy return → the last acceptance in the trade log (the recorder's row, seen by the kernel);
* CPU per order, summed over every process of the session (kernel, workers, recorder, feed; the
  simulator is the broker and not counted), from the return until the kernel saw every fill, with
  the same processes' idle CPU over as long a quiet spell taken off; by process, and the kernel's
  by thread (from /proc: the strategy's, the events', the execution supervisor's, the dashboard's);

and, in the same run against the same simulator, the same for an **ideal client**: one asyncio loop,
aiohttp, all requests at once over connections opened beforehand (its CPU: that loop's thread time).
Blocks alternate between the two, and every figure is printed beside the ideal client's, as the
median and the spread (min–max) over the repeats: the machine may be busy with other work.

Block of 500 (above the limit of 200): one session, 200 calls per 5 s window (the minute shortened so
the repeats fit; the limiter works alike at any window), each block fired into an empty window; the
200th order at the broker against the ideal client's 200 at once. The session's first block meets
cold connections and is shown apart.

Start-up: `Session(tickers=...)` with no keys (it starts its own simulator) → first strategy tick,
``warm_up_period=0``; with each child process's spawn time and CPU until then.

blockpaca 0.1.2 (``--blockpaca``; installed once in a cached virtualenv): its own `run_trading`, its
processes and defaults (the rate limit lifted, as the session's), pointed at the same simulator by
`blockpaca_012_driver.py`; the same block, its first and last order at the broker and its CPU per
order over its process tree, beside the ideal client's blocks alternating with its own.

Component: the execution pool alone (bench_execution.py's part 1): no strategy thread, recorder,
feed or trade_updates traffic — printed as a second line, labelled so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from blockpaca_nb import Session, Simulator, event_loop
from blockpaca_nb.orders import Order, new_client_order_id
from blockpaca_nb.ui import Dashboard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, home of the suite's shared wait
from comm_meter import CommMeter
from waiting import wait_for

TICKERS = ["AAPL", "MSFT", "TSLA", "NVDA", "SPY"]
NO_LIMIT = 100_000
TICK_S = 0.05
OVER_LIMIT_WINDOW_S = 5.0
TEAM_LIMITS = {"max_position": 10**9, "max_order_notional": 1e9, "max_gross_exposure": 1e15, "max_daily_loss": 1e12}


def block_of(count: int) -> list[dict[str, Any]]:
    """blockpaca's order dicts: what a strategy returns."""
    return [
        {"ticker": TICKERS[i % len(TICKERS)], "quantity": 1, "side": "buy", "order_type": "market"}
        for i in range(count)
    ]


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def ms(seconds: float) -> float:
    return seconds * 1000


def spread(values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    if not values:
        return "-"
    shown = [v * scale for v in values]
    return f"{statistics.median(shown):7.1f} {unit} ({min(shown):.1f}–{max(shown):.1f})"


# ------------------------------------------------------------------ the broker's record


def arrivals(sim: Simulator, known: set[str]) -> list[float]:
    """Creation times (epoch s) of the orders the simulator got since ``known`` (its ids), sorted;
    ``known`` is updated."""
    fresh = [o for o in sim.orders() if o["id"] not in known]
    known.update(o["id"] for o in fresh)
    return sorted(epoch(o["created_at"]) for o in fresh)


# ------------------------------------------------------------------ CPU of a set of processes


class CpuMeter:
    """CPU seconds (user + system) of the kernel process and its children, the broker excluded."""

    def __init__(self, exclude: set[int], root: int | None = None) -> None:
        self.exclude = exclude
        self.me = psutil.Process(root)
        self.measured: list[psutil.Process] = [self.me]

    def refresh(self) -> None:
        """Find the processes to measure, before a block: finding them scans all of /proc (some 20 ms
        of this process's CPU, which a sample taken inside the block would count as the session's)."""
        self.measured = self.processes()

    def processes(self) -> list[psutil.Process]:
        children = self.me.children(recursive=True)
        broker = {p.pid for p in children if p.pid in self.exclude}
        for child in list(children):
            if child.pid in broker:
                broker.update(c.pid for c in child.children(recursive=True))
        return [self.me, *(c for c in children if c.pid not in broker)]

    def sample(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for process in self.measured:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            out[process.pid] = times.user + times.system
        return out

    def idle_rate(self, seconds: float = 0.5) -> float:
        """CPU seconds per second these processes spend while nothing is asked of them."""
        before = self.sample()
        time.sleep(seconds)
        return self.spent(before, self.sample()) / seconds

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(after[pid] - before.get(pid, 0.0) for pid in after)

    def by_name(self, before: dict[int, float], after: dict[int, float], known: dict[int, str]) -> dict[str, float]:
        names: dict[str, float] = {}
        for process in self.measured:
            if process.pid in after:
                name = "kernel" if process.pid == self.me.pid else known.get(process.pid) or _child_name(process)
                names[name] = names.get(name, 0.0) + after[process.pid] - before.get(process.pid, 0.0)
        return names


def thread_times() -> dict[str, float]:
    """CPU seconds of each of this process's (the kernel's) threads, by thread name, from /proc."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        name = names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def process_names(session: Session) -> dict[int, str]:
    """pid -> what it is: the session's children by their role (feed, recorder, worker N)."""
    names = {w["pid"]: f"worker {w['worker']}" for w in session.worker_health() if w["pid"]}
    for name, child in session._children.items():
        if child.pid:
            names[child.pid] = name
    return names


def _child_name(process: psutil.Process) -> str:
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    if "janitor" in line or "-S -c" in line:
        return "janitor"
    if "resource_tracker" in line:
        return "resource_tracker"
    try:
        return process.name() if process.name() != "python" else f"child {process.pid}"
    except psutil.Error:
        return "?"


# ------------------------------------------------------------------ the ideal client


class IdealClient:
    """One event loop in its own thread, aiohttp, warm connections, every request at once. The loop is
    of the kind the session's workers run on (uvloop where installed): the same footing."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.loop = event_loop.new_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="ideal-client")
        self.thread.start()
        self.session: aiohttp.ClientSession = self.run(self._open())

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    async def _open(self) -> aiohttp.ClientSession:
        headers = {"APCA-API-KEY-ID": self.sim.api_key, "APCA-API-SECRET-KEY": self.sim.secret_key}
        # connections kept however long the benchmark pauses (aiohttp closes idle ones after 15 s: 200
        # connecting at once then overflow the listen backlog, and a dropped SYN waits a second)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3600)
        return aiohttp.ClientSession(headers=headers, connector=connector)

    async def _post(self, order: Order) -> None:
        body = json.dumps(order.to_alpaca(new_client_order_id(order.action, 9))).encode()
        url = f"{self.sim.urls['trading']}/v2/orders"
        async with self.session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            await response.read()
            assert response.status == 200, response.status

    async def _block(self, count: int) -> tuple[float, float]:
        orders = [Order(o["ticker"], "buy", "market", "buy_long", quantity=1) for o in block_of(count)]
        cpu, started = time.thread_time(), time.time()
        await asyncio.gather(*(self._post(order) for order in orders))
        return started, time.thread_time() - cpu

    def block(self, count: int) -> tuple[float, float]:
        """Fire ``count`` orders at once; returns (when it started, epoch s; CPU seconds)."""
        return self.run(self._block(count))

    def close(self) -> None:
        self.run(self.session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ------------------------------------------------------------------ a session that fires on demand


class Firing:
    """The strategy: returns a block once each time :meth:`fire` asks, and notes when it returned."""

    def __init__(self) -> None:
        self.wanted: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.returned: queue.SimpleQueue[float] = queue.SimpleQueue()
        self.first_tick: float | None = None

    def __call__(self, ctx: Any) -> Any:
        if self.first_tick is None:
            self.first_tick = time.time()
        try:
            count = self.wanted.get_nowait()
        except queue.Empty:
            return None
        orders = block_of(count)
        self.returned.put(time.time())
        return orders

    def fire(self, count: int) -> float:
        self.wanted.put(count)
        return self.returned.get(timeout=30)


class Team:
    """``--strategies N``: N strategies alongside, each returning its share of the block on its own
    clock, each with limits (so the risk checks are on the path); the block's clock starts at the
    first one's return."""

    def __init__(self, count: int) -> None:
        self.members = [Firing() for _ in range(count)]
        self.first_tick: float | None = None

    def register(self, session: Session) -> None:
        for number, member in enumerate(self.members):
            session.strategy(member, alongside=True, name=f"team_{number}", limits=TEAM_LIMITS)

    def fire(self, count: int) -> float:
        shares = [count // len(self.members) + (i < count % len(self.members)) for i in range(len(self.members))]
        for member, share in zip(self.members, shares, strict=True):
            member.wanted.put(share)
        returns = [member.returned.get(timeout=30) for member in self.members]
        self.first_tick = min(m.first_tick or time.time() for m in self.members)
        return min(returns)


class Rows:
    """The kernel's view of the trade log: when each accepted row and each fill reached it. A block's
    end is waited for on a condition the rows signal, not by polling: a poll's CPU would be counted
    as the session's (the kernel's main thread)."""

    def __init__(self, session: Session) -> None:
        self.accepted: list[float] = []
        self.fills = 0
        self.changed = threading.Condition()
        original = session._on_row

        def on_row(row: dict[str, Any]) -> None:
            original(row)
            with self.changed:
                if row.get("kind") == "accepted":
                    self.accepted.append(time.time())
                elif row.get("event") == "fill":
                    self.fills += 1
                self.changed.notify_all()

        session._on_row = on_row  # type: ignore[method-assign]

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        with self.changed:
            if not self.changed.wait_for(done, timeout):
                raise TimeoutError(f"no {what} within {timeout:g} s")


def started_session(
    sim: Simulator, folder: str, limit: int | None, workers: int | None, window_s: float = 60.0, strategies: int = 1
) -> tuple[Session, Firing, Rows]:
    firing: Any = Firing() if strategies == 1 else Team(strategies)
    session = Session(
        tickers=TICKERS,
        simulator=sim,
        warm_up_period=0,
        frequency=TICK_S,
        trade_log_path=folder,
        trade_log_name=f"bench_session_{time.monotonic_ns()}",
        max_orders_per_minute=limit,
        num_workers=workers,
        rate_window_s=window_s,
    )
    rows = Rows(session)
    if isinstance(firing, Team):
        firing.register(session)
    else:
        session.strategy(firing)
    session.start()
    wait_for(lambda: session.status == "running", 60, "the session to run")
    wait_for(lambda: session.worker_health() and all(w["alive"] for w in session.worker_health()), 60, "workers")
    if strategies > 1:  # limits refuse an order with no quote to value it by
        wait_for(lambda: (session.quotes["ask"] > 0).all(), 60, "a quote for every ticker")
    return session, firing, rows


def warm(session: Session, firing: Firing, rows: Rows, sim: Simulator, known: set[str], count: int) -> None:
    """One untimed block: workers booted, connections open, first-call costs paid."""
    before = len(rows.accepted)
    firing.fire(count)
    wait_for(lambda: len(rows.accepted) >= before + count, 60, "the warm-up block's acceptances", every=0.01)
    arrivals(sim, known)


# ------------------------------------------------------------------ block of N, repeated


def run_blocks(args: argparse.Namespace, sim: Simulator, folder: str, count: int) -> dict[str, list[float]]:
    names = ("first", "last", "log", "cpu", "cpu_raw", "i_first", "i_last", "i_cpu")
    out: dict[str, list[float]] = {name: [] for name in names}
    by_process: list[dict[str, float]] = []
    session, firing, rows = started_session(sim, folder, NO_LIMIT, args.workers, strategies=args.strategies)
    meter = CpuMeter({sim._process.pid} if sim._process else set())
    ideal = IdealClient(sim)
    dashboard = Dashboard(session, autostart=False)
    dashboard.start()
    known: set[str] = set()
    try:
        warm(session, firing, rows, sim, known, count)
        ideal.block(count)  # opens `count` connections
        arrivals(sim, known)
        for _ in range(args.repeats):
            time_session_block(session, firing, rows, sim, known, meter, count, out, by_process)
            time_ideal_block(ideal, sim, known, count, out, rows)
    finally:
        ideal.close()
        dashboard.pump.stop()
        session.stop(wait=True, timeout=60)
    report_blocks(count, out, by_process, len(session.worker_health()) or args.workers or 0, args.strategies)
    return out


def time_session_block(
    session: Session,
    firing: Firing,
    rows: Rows,
    sim: Simulator,
    known: set[str],
    meter: CpuMeter,
    count: int,
    out: dict[str, list[float]],
    by_process: list[dict[str, float]],
) -> None:
    meter.refresh()
    idle_rate = meter.idle_rate()
    accepted, fills = len(rows.accepted), rows.fills
    cpu0, threads0 = meter.sample(), thread_times()
    returned = firing.fire(count)
    rows.wait(lambda: len(rows.accepted) >= accepted + count, "acceptances in the trade log")
    last_log = rows.accepted[-1]
    rows.wait(lambda: rows.fills >= fills + count, "every fill in the kernel")
    cpu1, threads1 = meter.sample(), thread_times()
    window = time.time() - returned
    at_broker = arrivals(sim, known)
    assert len(at_broker) == count, f"{len(at_broker)} orders at the broker, sent {count}"
    raw = CpuMeter.spent(cpu0, cpu1)
    out["first"].append(at_broker[0] - returned)
    out["last"].append(at_broker[-1] - returned)
    out["log"].append(last_log - returned)
    out["cpu_raw"].append(raw / count)
    out["cpu"].append(max(0.0, raw - idle_rate * window) / count)
    spent = meter.by_name(cpu0, cpu1, process_names(session))
    spent.update({f"kernel/{name}": seconds - threads0.get(name, 0.0) for name, seconds in threads1.items()})
    by_process.append(spent)


def time_ideal_block(
    ideal: IdealClient,
    sim: Simulator,
    known: set[str],
    count: int,
    out: dict[str, list[float]],
    rows: Rows | None = None,
) -> None:
    """``rows``: a session on the same account, whose recorder streams the ideal client's orders too;
    their fills are waited for, so the session's next idle measure is idle."""
    time.sleep(0.3)
    fills = rows.fills if rows else 0
    started, cpu = ideal.block(count)
    at_broker = arrivals(sim, known)
    assert len(at_broker) == count
    if rows:
        rows.wait(lambda: rows.fills >= fills + count, "the ideal block's fills in the session")
    out["i_first"].append(at_broker[0] - started)
    out["i_last"].append(at_broker[-1] - started)
    out["i_cpu"].append(cpu / count)


def report_blocks(
    count: int, out: dict[str, list[float]], by_process: list[dict[str, float]], workers: int, strategies: int = 1
) -> None:
    n = len(out["last"])
    who = "one strategy" if strategies == 1 else f"{strategies} strategies alongside, with limits"
    print(f"\n== full path: block of {count} market orders from {who}, 25 ms broker latency, {n} repeats, "
          f"{workers} workers ==")  # fmt: skip
    print("                                 session                       ideal client (same run)")
    print(f"return → first at broker    {spread(out['first']):>28}   {spread(out['i_first']):>28}")
    print(f"return → last at broker     {spread(out['last']):>28}   {spread(out['i_last']):>28}")
    print(f"return → last acceptance    {spread(out['log']):>28}   (in the trade log, as the kernel sees it)")
    print(f"CPU per order, all procs    {spread(out['cpu'], 'µs', 1e6):>28}   {spread(out['i_cpu'], 'µs', 1e6):>28}")
    print(f"  (before idle taken off    {spread(out['cpu_raw'], 'µs', 1e6):>28})")
    ratios = [s / i for s, i in zip(out["last"], out["i_last"], strict=True)]
    firsts = [s - i for s, i in zip(out["first"], out["i_first"], strict=True)]
    cpus = [s / i for s, i in zip(out["cpu"], out["i_cpu"], strict=True)]
    print(f"last / ideal's last         {spread(ratios, '×', 1):>28}   (target ≤ 1.3)")
    print(f"first − ideal's first       {spread(firsts):>28}   (target ≤ 5 ms)")
    print(f"CPU / ideal's CPU           {spread(cpus, '×', 1):>28}   (target ≤ 2)")
    total, ideal = sum(out["cpu"]) / n, sum(out["i_cpu"]) / n  # a process's CPU is read in 10 ms steps:
    print(f"  over all {n} blocks together: {total * 1e6:.0f} µs against {ideal * 1e6:.0f} µs per order,"
          f" {total / ideal:.1f}× (a block's figure is read in whole 10 ms steps of each process's CPU)")  # fmt: skip
    names = {name for sample in by_process for name in sample if "/" not in name}
    totals = {name: sum(s.get(name, 0.0) for s in by_process) / (n * count) * 1e6 for name in names}
    shown = ", ".join(f"{name} {value:.0f}" for name, value in sorted(totals.items(), key=lambda kv: -kv[1]))
    print(f"CPU per order by process (µs, all blocks together, idle not taken off): {shown}")
    kernel = {name for sample in by_process for name in sample if name.startswith("kernel/")}
    threads = {name: sum(s.get(name, 0.0) for s in by_process) / (n * count) * 1e6 for name in kernel}
    shown = ", ".join(f"{name[7:]} {value:.0f}" for name, value in sorted(threads.items(), key=lambda kv: -kv[1])
                      if value)  # fmt: skip
    print(f"  the kernel's threads (µs per order, all blocks together, idle not taken off): {shown}")


# ------------------------------------------------------------------ block of 500 over the limit


def run_over_limit(args: argparse.Namespace, sim: Simulator, folder: str, count: int) -> None:
    """Blocks of ``count`` at 200 a window; the window is 5 s, not a minute, so repeats fit in a run
    (the limiter works alike at any window). The first block of the session meets cold connections."""
    mine: list[float] = []
    ideals: list[float] = []
    sizes: list[int] = []
    session, firing, rows = started_session(sim, folder, 200, args.workers, window_s=OVER_LIMIT_WINDOW_S)
    ideal = IdealClient(sim)
    known: set[str] = set()
    assert session._limiter is not None
    limiter = session._limiter
    try:
        ideal.block(200)  # open its connections
        arrivals(sim, known)
        for _ in range(args.repeats_500):
            wait_for(lambda: limiter.used() == 0 and limiter.waiting() == 0, 60, "an empty window", every=0.05)
            time.sleep(limiter.margin_s)
            free, accepted = limiter.limit, len(rows.accepted)
            returned = firing.fire(count)
            wait_for(lambda free=free, accepted=accepted: len(rows.accepted) >= accepted + free, 60, every=0.005)
            mine.append(arrivals(sim, known)[free - 1] - returned)
            wait_for(lambda accepted=accepted: len(rows.accepted) >= accepted + count, 60, "the rest", every=0.05)
            arrivals(sim, known)
            started, _cpu = ideal.block(free)
            ideals.append(arrivals(sim, known)[-1] - started)
            sizes.append(free)
    finally:
        ideal.close()
        session.stop(wait=True, timeout=60)
    print(f"\n== block of {count} at a limit of 200 per {OVER_LIMIT_WINDOW_S:g} s window: the first 200 ==")
    print(f"return → 200th at broker, the session's first block (cold connections): {ms(mine[0]):.1f} ms")
    warm = mine[1:]
    print(f"return → 200th at broker, later blocks  {spread(warm):>28}   ideal, 200 at once: {spread(ideals)}")
    if warm:
        ratios = [a / b for a, b in zip(warm, ideals[1:], strict=True)]
        print(f"ratio                                   {spread(ratios, '×', 1):>28}   (target ≤ 1.3)")


# ------------------------------------------------------------------ blockpaca 0.1.2 beside it


BLOCKPACA = "blockpaca==0.1.2"
DRIVER = Path(__file__).resolve().parent / "blockpaca_012_driver.py"


def blockpaca_python() -> Path:
    """A virtualenv holding blockpaca 0.1.2 (made once, in the user's cache): its python."""
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "blockpaca_nb" / "bench-blockpaca-0.1.2"
    python = home / "bin" / "python"
    if not (home / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", BLOCKPACA], check=True)
        (home / "ready").write_text(BLOCKPACA)
    return python


class Blockpaca:
    """blockpaca 0.1.2's run_trading in its own process tree (blockpaca_012_driver.py), on ``sim``."""

    def __init__(self, sim: Simulator, folder: str) -> None:
        config = {
            "urls": sim.urls,
            "api_key": sim.api_key,
            "secret_key": sim.secret_key,
            "folder": folder,
            "frequency": TICK_S,
            "limit": NO_LIMIT,  # as the session's: its default 190 tokens a minute would hold the third block
        }
        self.process = subprocess.Popen(
            [str(blockpaca_python()), str(DRIVER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=folder,
        )
        self._line_starting("ready")

    def _line_starting(self, prefix: str) -> str:
        assert self.process.stdout is not None
        while True:  # blockpaca prints its own lines (positions, fills) on the same stdout
            line = self.process.stdout.readline()
            assert line, f"blockpaca's run ended before printing {prefix!r}"
            if line.startswith(prefix):
                return line

    def fire(self, count: int, tag: str) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"fire {count} {tag}\n")
        self.process.stdin.flush()
        return float(self._line_starting(f"returned {tag} ").split()[2])

    def close(self) -> None:
        try:
            self.process.communicate("quit\n", timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def tagged_arrivals(sim: Simulator, tag: str) -> list[float]:
    return sorted(epoch(o["created_at"]) for o in sim.orders() if o["client_order_id"].startswith(f"{tag}-"))


def run_blockpaca(args: argparse.Namespace, sim: Simulator, folder: str, count: int) -> None:
    """blockpaca 0.1.2 (its own defaults but the rate limit, lifted as the session's) beside the
    ideal client, blocks alternating, on the simulator every other line of this run uses."""
    try:
        runner = Blockpaca(sim, folder)
    except (OSError, subprocess.CalledProcessError, AssertionError) as err:
        print(f"\n== blockpaca 0.1.2: not run ({err}) ==")
        return
    out: dict[str, list[float]] = {name: [] for name in ("first", "last", "cpu", "i_first", "i_last", "i_cpu")}
    meter, ideal, known = CpuMeter(set(), runner.process.pid), IdealClient(sim), set[str]()
    try:
        runner.fire(count, "warm")
        wait_for(lambda: len(tagged_arrivals(sim, "warm")) >= count, 60, "blockpaca's warm-up block", every=0.01)
        ideal.block(count)
        arrivals(sim, known)
        for n in range(args.repeats):
            time_blockpaca_block(runner, meter, sim, count, f"b{n}", out)
            time.sleep(0.3)
            arrivals(sim, known)
            time_ideal_block(ideal, sim, known, count, out)
    finally:
        ideal.close()
        runner.close()
    report_blockpaca(count, out)


def time_blockpaca_block(
    runner: Blockpaca, meter: CpuMeter, sim: Simulator, count: int, tag: str, out: dict[str, list[float]]
) -> None:
    meter.refresh()
    idle_rate = meter.idle_rate()
    cpu0 = meter.sample()
    returned = runner.fire(count, tag)
    wait_for(lambda: len(tagged_arrivals(sim, tag)) >= count, 60, "blockpaca's block at the broker", every=0.002)
    at_broker = tagged_arrivals(sim, tag)
    time.sleep(0.3)  # its results and trade_updates, as for the session (which waits for every fill)
    raw = CpuMeter.spent(cpu0, meter.sample())
    out["first"].append(at_broker[0] - returned)
    out["last"].append(at_broker[-1] - returned)
    out["cpu"].append(max(0.0, raw - idle_rate * (time.time() - returned)) / count)


def report_blockpaca(count: int, out: dict[str, list[float]]) -> None:
    shown = f"block of {count}, {len(out['last'])} repeats"
    print(f"\n== blockpaca 0.1.2 (its run_trading, its defaults, no rate limit): {shown} ==")
    print("                                 blockpaca 0.1.2               ideal client (same run)")
    print(f"return → first at broker    {spread(out['first']):>28}   {spread(out['i_first']):>28}")
    print(f"return → last at broker     {spread(out['last']):>28}   {spread(out['i_last']):>28}")
    print(f"CPU per order, all procs    {spread(out['cpu'], 'µs', 1e6):>28}   {spread(out['i_cpu'], 'µs', 1e6):>28}")
    ratios = [s / i for s, i in zip(out["last"], out["i_last"], strict=True)]
    print(f"last / ideal's last         {spread(ratios, '×', 1):>28}   (this project's line above: target ≤ 1.3)")


# ------------------------------------------------------------------ start-up as a user meets it


def run_startup(args: argparse.Namespace, folder: str) -> None:
    for key in [k for k in os.environ if k.startswith("APCA_")]:
        os.environ.pop(key)  # no keys: the session starts its own simulator, as in the quickstart
    offset = create_time_offset()
    totals: list[float] = []
    per_child: list[dict[str, tuple[float, float]]] = []
    for _ in range(args.startup_repeats):
        firing, before = Firing(), {p.pid for p in psutil.Process().children(recursive=True)}
        began = time.time()
        session = Session(
            tickers=TICKERS,
            warm_up_period=0,
            frequency=TICK_S,
            trade_log_path=folder,
            trade_log_name=f"bench_startup_{time.monotonic_ns()}",
        )
        session.strategy(firing)
        session.start()
        try:
            wait_for(lambda firing=firing: firing.first_tick, 60, "the first tick", every=0.002)
            assert firing.first_tick is not None
            totals.append(firing.first_tick - began)
            per_child.append(child_starts(session, began + offset, before))
        finally:
            session.stop(wait=True, timeout=60)
    print("\n== start-up: Session(tickers=...) with no keys (own simulator) → first tick, warm_up_period=0 ==")
    print(f"Session(...) → first tick   {spread(totals)}   (target ≤ 2 s quiet, ≤ 4 s busy)")
    for name in sorted({name for sample in per_child for name in sample}):
        spawned = [s[name][0] for s in per_child if name in s]
        cpu = [s[name][1] for s in per_child if name in s]
        print(f"  {name:<17} spawned at +{spread(spawned)}   its CPU until the first tick {spread(cpu)}")


def create_time_offset() -> float:
    """psutil's create_time rests on the boot time in whole seconds: measure its offset once."""
    began = time.time()
    probe = psutil.Popen([sys.executable, "-S", "-c", "import time; time.sleep(0.2)"])
    offset = probe.create_time() - began
    probe.wait()
    return offset


def child_starts(session: Session, began: float, before: set[int]) -> dict[str, tuple[float, float]]:
    """Each new child: (spawned, s after Session(...); its CPU seconds so far)."""
    names = process_names(session)
    out: dict[str, tuple[float, float]] = {}
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:
            line = " ".join(child.cmdline())
            times = child.cpu_times()
            created = child.create_time()
        except psutil.Error:
            continue
        name = names.get(child.pid) or _kind_of(line)
        out[name] = (created - began, times.user + times.system)
    return out


def _kind_of(line: str) -> str:
    if "blockpaca_nb.sim.child" in line:
        return "simulator"
    if "-S -c" in line:
        return "janitor"
    if "resource_tracker" in line:
        return "resource_tracker"
    return line[:40]


# ------------------------------------------------------------------ the component line


def run_component(args: argparse.Namespace, sim: Simulator) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_execution import _ideal_client, time_pool_blocks

    pool = time_pool_blocks(sim, 100, args.repeats, args.workers)
    ideal, _singles = asyncio.run(_ideal_client(sim, 100, args.repeats))
    print("\n== component: the execution pool alone (no strategy thread, recorder, feed, trade_updates) ==")
    print(f"pool.submit() → last accepted result  {spread(pool)}   ideal client, whole block: {spread(ideal)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per contender (median, spread)")
    parser.add_argument("--repeats-500", type=int, default=4, help="blocks of 500 (the first is cold)")
    parser.add_argument("--startup-repeats", type=int, default=3, help="start-ups timed")
    parser.add_argument("--latency-ms", type=float, default=25.0, help="simulated broker latency (default 25)")
    parser.add_argument("--workers", type=int, default=None, help="execution workers (default: for this machine)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100], help="blocks under the limit (default 100)")
    parser.add_argument("--strategies", type=int, default=1, help="split each block over N strategies alongside")
    parser.add_argument("--skip-500", action="store_true", help="no block of 500 at the default limit")
    parser.add_argument("--skip-startup", action="store_true", help="no start-up timing")
    parser.add_argument("--skip-component", action="store_true", help="no pool-only line")
    parser.add_argument(
        "--blockpaca", action="store_true", help="blockpaca 0.1.2 beside it (installs it in a cached virtualenv)"
    )
    parser.add_argument("--only-blocks", action="store_true", help="only the blocks under the limit (and --blockpaca)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with (
        tempfile.TemporaryDirectory() as folder,
        CommMeter(),
        Simulator(symbols=TICKERS, seed=1, latency_ms=args.latency_ms, starting_cash=1e12) as sim,
    ):
        for size in args.sizes:
            run_blocks(args, sim, folder, size)
            if args.blockpaca:
                run_blockpaca(args, sim, folder, size)
        if args.only_blocks:
            return
        if not args.skip_500:
            run_over_limit(args, sim, folder, 500)
        if not args.skip_component:
            run_component(args, sim)
    if not args.skip_startup:
        with tempfile.TemporaryDirectory() as folder:
            run_startup(args, folder)
    print(f"\nmachine after: load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
