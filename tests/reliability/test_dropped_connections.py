"""2. Dropped connections: the simulator drops both websockets (market data and trade updates) every
BLOCKPACA_DROP_EVERY seconds (default 5) for BLOCKPACA_DROP_SECONDS (default 25; the full run is
60 s with drops every 10 s) while orders fill continuously.

Quotes resume within 2 s of every drop (the gaps between new quotes in the QuoteBook), and no
trade update is lost: fills that happened while the trade stream was down are recovered through
REST and logged once — every filled order has exactly one `filled` row, and the session's
positions match the broker's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from reliability_helpers import (
    QuoteWatch,
    env_float,
    figure,
    filled_rows_per_order,
    market,
    positions_match,
    raw_rows,
    running,
    session_options,
    settle,
    wait_for,
)

from blockpaca_nb import Session, Simulator

TICKERS = ["AAPL", "MSFT", "TSLA"]
DURATION_S = env_float("BLOCKPACA_DROP_SECONDS", 25)
EVERY_S = env_float("BLOCKPACA_DROP_EVERY", 5)
MAX_QUOTE_GAP_S = 2.0
ORDER_EVERY_S = 0.1


@pytest.mark.timeout(DURATION_S + 150)
def test_streams_dropped_every_few_seconds(tmp_path: Path) -> None:
    with Simulator(symbols=TICKERS, seed=8, quotes_per_second=10, starting_cash=1e9) as sim:
        session = running(Session(**session_options(sim, tmp_path, max_orders_per_minute=5000)))
        wait_for(lambda: len(session.get_current_data()[0]) == len(TICKERS), 20, "the first quotes")
        watch = QuoteWatch(session)
        connections = FeedConnections(session._children["feed"].pid, sim.port)
        try:
            faulty_from = time.time()
            sim.set_faults(ws_drop_every_s=EVERY_S)
            sent = trade_for(session, DURATION_S)
            sim.set_faults(ws_drop_every_s=None)
            connections.stop()
            assert not settle(session, sent, timeout=30), "orders not final after the drops"
            wait_for(lambda: positions_match(session, sim), 20, "the last fills to reach the session's positions")
            positions_agree(session, sim)
        finally:
            watch.stop()
            session.stop()
        check_quotes(watch, faulty_from, faulty_from + DURATION_S, len(connections.ports) - 1)
        check_fills(session, sim, sent)


def trade_for(session: Session, seconds: float) -> list[str]:
    """A market order every ORDER_EVERY_S seconds, alternating buys and sells, for ``seconds``."""
    sent: list[str] = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        side = "buy" if n % 4 < 2 else "sell"
        sent += session.submit(market(TICKERS[n % 3], side, 1 + n % 3))
        n += 1
        time.sleep(ORDER_EVERY_S)
    return sent


def positions_agree(session: Session, sim: Simulator) -> None:
    broker = {p["symbol"]: float(p["qty"]) for p in sim.positions()}
    ours = {p["ticker"]: p["quantity"] for p in session.get_current_data()[1]}
    assert ours == {k: v for k, v in broker.items() if v}, (ours, broker)


class FeedConnections:
    """The feed's market-data connections to the simulator, told apart by their local port (each
    reconnection after a drop is a new one), sampled twice a second."""

    def __init__(self, pid: int, port: int) -> None:
        self.process, self.port = psutil.Process(pid), port
        self.ports: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(psutil.Error):
                self.ports |= {c.laddr.port for c in self.process.net_connections("inet") if c.raddr
                               and c.raddr.port == self.port and c.status == "ESTABLISHED"}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def check_quotes(watch: QuoteWatch, start: float, end: float, reconnections: int) -> None:
    gaps = [(gap, when) for gap, when in watch.gaps(since=start - 1) if when <= end + MAX_QUOTE_GAP_S]
    long_gaps = sorted((round(g, 2) for g, _ in gaps if g > 0.2), reverse=True)  # usual: < 0.1 s
    drops = int((end - start) // EVERY_S)
    figure("dropped_connections", seconds=DURATION_S, drop_every_s=EVERY_S, drops=drops,
           feed_reconnections=reconnections, max_quote_gap_s=round(max(g for g, _ in gaps), 2),
           quote_gaps_over_200ms=long_gaps)
    assert gaps, "no quotes at all"
    assert max(g for g, _ in gaps) < MAX_QUOTE_GAP_S, f"quotes stopped for longer than 2 s: {long_gaps}"
    assert reconnections >= drops - 1, f"the drops did not happen ({reconnections} reconnections)"


def check_fills(session: Session, sim: Simulator, sent: list[str]) -> None:
    rows = raw_rows(session.trade_log_file)
    at_broker = {o["client_order_id"]: o for o in sim.orders()}
    filled_here = filled_rows_per_order(rows)
    recovered = [r for r in rows if r["event"] == "recovered"]
    per_order = Counter(filled_here[c] for c in sent)
    figure(
        "dropped_connections",
        orders=len(sent),
        filled_at_broker=sum(at_broker[c]["status"] == "filled" for c in sent),
        filled_rows_per_order=dict(per_order),
        recovered_through_rest=len(recovered),
    )
    assert all(at_broker[c]["status"] == "filled" for c in sent)
    assert per_order == {1: len(sent)}, f"filled rows per order: {dict(per_order)}"
    assert recovered, "no fill happened while the trade stream was down: the test did not test recovery"
