"""Benchmark: the dashboard's cost with 500 tickers at display_refresh_rate=0.25.

Run it as a plain script (pytest does not collect it)::

    python tests/benchmarks/bench_dashboard.py            # 20 s per phase
    python tests/benchmarks/bench_dashboard.py --seconds 60

A real Session runs on the embedded simulator: 500 tickers quoting four times a second each (the
simulator sends them in batches, so every refresh finds every row changed: the worst case for
diffs), and a
strategy that trades a few of them every second, so positions, trade updates and the chart all
move. The widgets talk to a :class:`CommMeter (tests/comm_meter.py)` instead of a kernel: every
message is serialised to JSON as a kernel would, then counted (no browser). Two phases over the
same session:

* **ours**: the real dashboard and its pump thread (diffs, coalescing, one message per panel at
  most per refresh);
* **baseline**: a naive pump that, every refresh, sends every panel whole: all 500 quote rows with
  every column, the positions, the trade updates and the header.

For each: the pump thread's CPU (its own thread time, as % of one core), comm messages per second
and bytes per second. Targets for ours: CPU ≤ 10 % of a core, ≤ 40 messages a second.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import traitlets

from blockpaca_nb import Session, Simulator
from blockpaca_nb.sim.universe import UNIVERSE
from blockpaca_nb.ui import Dashboard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, home of the suite's shared wait
from comm_meter import CommMeter
from waiting import wait_for

TICKERS = list(UNIVERSE[:500])
REFRESH_S = 0.25
CPU_TARGET = 0.10
MESSAGE_TARGET = 40.0


class NaivePanel(widgets.DOMWidget):
    """A table widget that is sent whole every time (the baseline)."""

    rows = traitlets.List().tag(sync=True)
    state = traitlets.Dict().tag(sync=True)


class NaivePump:
    """Every refresh: every panel, every row, every column; one message per panel."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.panels = {name: NaivePanel() for name in ("quotes", "positions", "trades", "errors", "header")}
        self.busy = 0.0
        self.durations: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_S):
            started = time.thread_time()
            self.refresh()
            spent = time.thread_time() - started
            self.busy += spent
            self.durations.append(spent)

    def refresh(self) -> None:
        s = self.session
        quotes = s.quotes.reset_index()
        records = [{k: _json(v) for k, v in row.items()} for row in quotes.to_dict("records")]
        self.panels["quotes"].rows = records
        self.panels["positions"].rows = [{k: _json(v) for k, v in p.items()} for p in s.portfolio.as_blockpaca()]
        self.panels["trades"].rows = [{k: _json(v) for k, v in r.items()} for r in list(s.trade_updates)]
        self.panels["errors"].rows = [str(e) for e in list(s.errors)]
        used, limit = s.rate_usage
        self.panels["header"].state = {
            "status": s.status,
            "strategy": s.active_strategy,
            "equity": s.account_info.get("equity"),
            "rate": f"{used}/{limit}",
            "workers": s.worker_health(),
            "time": time.time(),
        }


def _json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def make_strategy(seed: int = 1) -> Callable[[Any], Any]:
    """Buy one share of a random ticker each tick; sell what it holds every third tick."""
    rng = random.Random(seed)
    active = TICKERS[:20]

    def trade_a_few(ctx: Any) -> Any:
        quotes, positions = ctx.get_current_data()
        if len(quotes) < len(TICKERS) // 2:
            return None
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        orders = [{"ticker": rng.choice(active), "quantity": 1, "side": "buy", "order_type": "market"}]
        held = [p for p in positions if p["quantity"] > 0]
        if held and ctx.state["n"] % 3 == 0:
            p = rng.choice(held)
            orders.append({"ticker": p["ticker"], "quantity": 1, "side": "sell", "order_type": "market"})
        return orders

    return trade_a_few


def run_ours(session: Session, meter: CommMeter, seconds: float) -> dict[str, float]:
    dashboard = Dashboard(session, autostart=False)
    dashboard.refresh()  # the first, full copy: counted apart (a page shows it once)
    meter.reset()
    busy0, refreshes0 = dashboard.pump.busy_seconds, dashboard.pump.refreshes
    started = time.monotonic()
    dashboard.start()
    time.sleep(seconds)
    dashboard.pump.stop()
    wall = time.monotonic() - started
    result = summary(meter, wall, dashboard.pump.busy_seconds - busy0)
    result["refreshes"] = dashboard.pump.refreshes - refreshes0
    result["by_class"] = dict(meter.by_class)  # type: ignore[assignment]
    dashboard.close()
    return result


def run_baseline(session: Session, meter: CommMeter, seconds: float) -> dict[str, float]:
    pump = NaivePump(session)
    meter.reset()
    started = time.monotonic()
    pump.start()
    time.sleep(seconds)
    pump.stop()
    wall = time.monotonic() - started
    result = summary(meter, wall, pump.busy)
    result["refreshes"] = len(pump.durations)
    return result


def summary(meter: CommMeter, wall: float, busy: float) -> dict[str, float]:
    return {
        "cpu": busy / wall,
        "messages_per_s": meter.messages / wall,
        "bytes_per_s": meter.bytes / wall,
        "wall": wall,
    }


def report(ours: dict[str, Any], baseline: dict[str, Any]) -> None:
    print(f"dashboard, {len(TICKERS)} tickers, display_refresh_rate={REFRESH_S}s")
    for name, r in (("ours", ours), ("baseline", baseline)):
        print(
            f"  {name:<9} pump CPU {r['cpu'] * 100:5.1f} % of a core   {r['messages_per_s']:6.1f} msg/s   "
            f"{r['bytes_per_s'] / 1024:8.1f} KiB/s   ({r['refreshes']} refreshes in {r['wall']:.1f} s)"
        )
    print(f"  ours by widget: {ours['by_class']}")
    print(
        f"  baseline / ours: CPU x{baseline['cpu'] / max(ours['cpu'], 1e-9):.1f}, "
        f"bytes x{baseline['bytes_per_s'] / max(ours['bytes_per_s'], 1e-9):.1f}"
    )
    ok_cpu = ours["cpu"] <= CPU_TARGET
    ok_msgs = ours["messages_per_s"] <= MESSAGE_TARGET
    print(f"  target CPU <= {CPU_TARGET * 100:.0f} %: {'met' if ok_cpu else 'MISSED'}")
    print(f"  target messages <= {MESSAGE_TARGET:.0f}/s: {'met' if ok_msgs else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--quotes-per-second", type=float, default=4.0, help="per ticker, in the simulator")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        CommMeter() as meter,
        Simulator(  # 500 tickers: the unlimited data plan (a free plan streams 30)
            symbols=TICKERS, seed=3, quotes_per_second=args.quotes_per_second, starting_cash=1e7, data_plan="sip"
        ) as sim,
    ):
        session = Session(
            tickers=TICKERS,
            simulator=sim,
            warm_up_period=0,
            frequency=1,
            display_refresh_rate=REFRESH_S,
            trade_log_path=folder,
            trade_log_name="bench_dashboard",
        )
        session.strategy(make_strategy())
        session.start()
        try:
            wait_for(lambda: session.status == "running", 60, "the session to run")
            wait_for(lambda: session.quotes["bid"].notna().sum() >= len(TICKERS) * 0.95, 60, "quotes")
            ours = run_ours(session, meter, args.seconds)
            baseline = run_baseline(session, meter, args.seconds)
        finally:
            session.stop(wait=True)
    report(ours, baseline)
    if ours["cpu"] > CPU_TARGET or ours["messages_per_s"] > MESSAGE_TARGET:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
