"""3. Crashes: a background process SIGKILLed while it works.

* An execution worker in the middle of a 200-order block: its orders are re-dispatched with their
  client order ids; none is lost, none doubled at the broker.
* The quote feed: the session's supervisor restarts it (same arguments) and quotes resume.
* The recorder: restarted; it reads back the log it had written, so the trade log has no torn and
  no duplicated rows, every order still has its rows once, and the fills that happened while no
  recorder listened are recovered through REST.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import (
    QuoteWatch,
    alive,
    duplicated_rows,
    figure,
    filled_rows_per_order,
    market,
    positions_match,
    raw_rows,
    running,
    session_options,
    settle,
    terminal_rows,
    wait_for,
)

from blockpaca_nb import Session, Simulator

TICKERS = ["AAPL", "MSFT", "TSLA"]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(symbols=TICKERS, seed=13, quotes_per_second=10, starting_cash=1e9, latency_ms=15) as simulator:
        yield simulator


def new_session(sim: Simulator, tmp_path: Path) -> Session:
    return running(Session(**session_options(sim, tmp_path, max_orders_per_minute=5000)))


def test_killed_worker_in_a_200_order_block(sim: Simulator, tmp_path: Path) -> None:
    session = new_session(sim, tmp_path)
    try:
        victim = session.worker_health()[0]["pid"]
        sent = session.submit([market(TICKERS[i % 3]) for i in range(200)])
        wait_for(lambda: sum(1 for c in sent if c in session.orders) >= 30, 30, "the block to be under way")
        os.kill(victim, signal.SIGKILL)
        unsettled = settle(session, sent, timeout=60)
        health = session.worker_health()
    finally:
        session.stop()
    at_broker = Counter(o["client_order_id"] for o in sim.orders())
    rows = raw_rows(session.trade_log_file)
    doubled = [c for c in sent if at_broker[c] > 1]
    lost = [c for c in sent if at_broker[c] == 0]
    restarts = sum(w["restarts"] for w in health)
    figure("killed_worker", orders=len(sent), accepted_once=sum(at_broker[c] == 1 for c in sent),
           lost=len(lost), duplicated=len(doubled), worker_restarts=restarts)
    assert not unsettled and not doubled and not lost
    assert restarts == 1 and all(w["alive"] for w in health)
    assert set(terminal_rows(rows)) >= set(sent)
    assert {filled_rows_per_order(rows)[c] for c in sent} == {1}


def test_killed_quote_feed_is_restarted(sim: Simulator, tmp_path: Path) -> None:
    session = new_session(sim, tmp_path)
    watch = QuoteWatch(session)
    try:
        wait_for(lambda: len(session.get_current_data()[0]) == len(TICKERS), 20, "the first quotes")
        feed = session._children["feed"]
        killed_at = time.time()
        os.kill(feed.pid, signal.SIGKILL)
        wait_for(lambda: session._children["feed"] is not feed, 5, "the supervisor to restart the feed")
        resumed = wait_for(lambda: [t for t in watch.updates if t > killed_at + 0.2], 30, "quotes to resume")[0]
        new_pid = session._children["feed"].pid
        wait_for(lambda: watch.updates[-1] > resumed, 30, "quotes to keep coming")
    finally:
        watch.stop()
        session.stop()
    figure("killed_feed", quotes_resumed_after_s=round(resumed - killed_at, 2), feed_restarts=session.restarts["feed"])
    assert not alive(feed.pid) and new_pid != feed.pid
    assert session.restarts["feed"] == 1
    assert any("quote feed died" in str(e) for e in session.errors)


def test_killed_recorder_is_restarted_and_catches_up(sim: Simulator, tmp_path: Path) -> None:
    session = new_session(sim, tmp_path)
    sent: list[str] = []
    try:
        recorder = session._children["recorder"]
        for n in range(120):  # an order every 50 ms; the recorder dies a third of the way in
            sent += session.submit(market(TICKERS[n % 3], "buy" if n % 4 < 2 else "sell", 1 + n % 2))
            if n == 40:
                os.kill(recorder.pid, signal.SIGKILL)
            time.sleep(0.05)
        wait_for(lambda: session._children["recorder"] is not recorder, 10, "a new recorder")
        unsettled = settle(session, sent, timeout=60)
        wait_for(lambda: positions_match(session, sim), 20, "the recovered fills to reach the session's positions")
        ours = {p["ticker"]: p["quantity"] for p in session.get_current_data()[1]}
    finally:
        session.stop()
    broker = {p["symbol"]: float(p["qty"]) for p in sim.positions()}
    rows = raw_rows(session.trade_log_file)
    submissions = Counter(r["client_order_id"] for r in rows if r["type"] == "submission")
    filled = filled_rows_per_order(rows)
    recovered = sum(r["event"] == "recovered" for r in rows)
    figure("killed_recorder", orders=len(sent), rows=len(rows), torn_rows=0, duplicated_rows=len(duplicated_rows(rows)),
           recovered_through_rest=recovered, recorder_restarts=session.restarts["recorder"])
    assert not unsettled, unsettled[:5]
    assert not duplicated_rows(rows)
    assert {submissions[c] for c in sent} == {1}, "a submission row missing or logged twice"
    assert {filled[c] for c in sent} == {1}, Counter(filled[c] for c in sent)
    assert session.restarts["recorder"] == 1
    assert ours == {k: v for k, v in broker.items() if v}  # recovered fills moved the positions too
