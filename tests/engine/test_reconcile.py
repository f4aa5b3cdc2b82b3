"""Reconciliation of the session's ledger with the broker, at a consistent point, against the real
simulator: a broker snapshot taken before a fill never counts; the session's queued, in-flight or open
orders hold it off (another bot's open order does not); a real difference — broker ≠ the account
outside the session + the session's own — is reported once (ticker, expected, the broker's), never
written into the session's positions; judged by `sim.positions()`.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from waiting import wait_for

from blockpaca_nb import Session
from blockpaca_nb import session as session_module
from blockpaca_nb.broker import Connection, Credentials, Endpoints
from blockpaca_nb.execution import ExecutionPool
from blockpaca_nb.orders import Order
from blockpaca_nb.portfolio import Portfolio
from blockpaca_nb.ratelimit import RateLimiter
from blockpaca_nb.reconcile import Difference, Reconciler, in_transit
from blockpaca_nb.sim import Simulator

TICKERS = ["AAPL", "MSFT", "TSLA"]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(symbols=TICKERS, seed=21, starting_cash=1e7) as simulator:
        yield simulator


def trading(sim: Simulator) -> TradingClient:
    """Another client on the same account: orders the session does not send itself."""
    return TradingClient(sim.api_key, sim.secret_key, paper=True, url_override=sim.urls["trading"])


def buy_outside(sim: Simulator, ticker: str, qty: int) -> dict[str, Any]:
    request = MarketOrderRequest(symbol=ticker, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    order_id = str(trading(sim).submit_order(request).id)
    return wait_for(lambda: next((o for o in sim.orders() if o["id"] == order_id and o["status"] == "filled"), None),
                    20, f"the {ticker} order to fill")  # fmt: skip


def held(sim: Simulator) -> dict[str, float]:
    return {p["symbol"]: float(p["qty"]) for p in sim.positions() if float(p["qty"])}


def ours(portfolio: Portfolio) -> dict[str, float]:
    return {p["ticker"]: p["quantity"] for p in portfolio.as_blockpaca()}


def test_a_snapshot_taken_before_a_fill_does_not_count(sim: Simulator) -> None:
    buy_outside(sim, "AAPL", 3)  # held before the session
    reconciler, ledger = Reconciler(), Portfolio()
    reconciler.start(sim.positions())

    def snapshot_then_fill() -> list[dict[str, Any]]:
        """The broker's positions, then a fill of the session booked and applied while the answer travels."""
        snapshot = sim.positions()
        fill = buy_outside(sim, "AAPL", 2)  # stands for the session's order (the ledger takes its fill)
        ledger.apply_fill("AAPL", "buy", 2.0, float(fill["filled_avg_price"]), None)
        return snapshot

    assert reconciler.check(ledger, snapshot_then_fill, {}) is None  # ignored: older than a fill
    assert reconciler.check(ledger, sim.positions, {}) == []  # 3 outside + the session's 2 = the broker's 5
    assert held(sim) == {"AAPL": 5.0} and ours(ledger) == {"AAPL": 2.0}


def test_a_difference_at_a_consistent_point_is_reported_once(sim: Simulator) -> None:
    reconciler, ledger = Reconciler(), Portfolio()
    reconciler.start(sim.positions())
    buy_outside(sim, "MSFT", 4)  # booked at the broker by someone else
    found = reconciler.check(ledger, sim.positions, {"buy_long-0-00000001": {"status": "filled"}})
    assert found == [Difference("MSFT", 0.0, 4.0, 0.0)]
    error = found[0].as_error()
    assert (error["where"], error["ticker"], error["expected"], error["broker"]) == ("reconcile", "MSFT", 0.0, 4.0)
    assert "MSFT" in error["reason"] and "holds 4" in error["reason"] and "expected 0" in error["reason"]
    assert ours(ledger) == {}  # the session's positions are its own fills, never the broker's numbers
    assert reconciler.check(ledger, sim.positions, {}) == []  # said once


def test_open_queued_and_unechoed_orders_hold_reconciliation_off(sim: Simulator) -> None:
    reconciler, ledger = Reconciler(), Portfolio()
    assert in_transit({"c": {"status": "partially_filled"}}, None, None) == "1 orders open"
    assert reconciler.check(ledger, sim.positions, {"c": {"status": "accepted"}}) is None
    other_bots = {"someone-else": {"status": "new"}}
    assert in_transit(other_bots, None, None, owns=lambda cid: cid.startswith("buy_long")) is None

    class Link:
        unacknowledged = 2

    assert in_transit({}, None, Link()) == "2 results not yet back from the recorder"
    connection = Connection("sim", Endpoints.from_mapping(sim.urls), Credentials(sim.api_key, sim.secret_key))
    limiter = RateLimiter(1, 60.0, override=True)  # one order may go this minute: the rest wait in line
    pool = ExecutionPool(connection, limiter, queue.Queue(), num_workers=1).start()
    try:
        pool.submit([Order("TSLA", "buy", "market", "buy_long", quantity=1) for _ in range(3)])
        assert "queued or in flight" in (in_transit({}, pool, None) or "")
        assert reconciler.check(ledger, sim.positions, {}, pool) is None
    finally:
        pool.stop(timeout=5)
    assert pool.unresolved() == 0 and in_transit({}, pool, None) is None


def test_a_session_reports_what_happened_outside_it_once(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "RECONCILE_EVERY_S", 0.5)
    buy_outside(sim, "MSFT", 2)  # held before the session: not a difference
    session = Session(TICKERS, simulator=sim, frequency=0.2, warm_up_period=0, trade_log_path=tmp_path, num_workers=1)
    session.start()
    try:
        wait_for(lambda: session.status == "running", 60, "the session to run")
        [cid] = session.submit({"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"})
        wait_for(lambda: (session.orders.get(cid) or {}).get("status") == "filled", 20, "the session's fill")
        sim.set_faults(trade_stream_silent=True)  # what happens next reaches the session by no stream
        buy_outside(sim, "TSLA", 6)

        def reported() -> list[dict[str, Any]]:
            return [e for e in list(session.errors) if isinstance(e, dict) and e.get("where") == "reconcile"]

        [error] = wait_for(reported, 20, "the reconciliation to report the difference")  # AAPL, MSFT agree
        assert (error["ticker"], error["expected"], error["broker"]) == ("TSLA", 0.0, 6.0)
        assert held(sim) == {"AAPL": 1.0, "MSFT": 2.0, "TSLA": 6.0}
        assert ours(session.portfolio) == {"AAPL": 1.0}  # the session's own fills only

        sim.set_faults(trade_stream_silent=False)  # the reconnect recovers the outside order: not the session's
        tsla = next(o["client_order_id"] for o in sim.orders() if o["symbol"] == "TSLA")
        wait_for(lambda: (session.orders.get(tsla) or {}).get("event") == "recovered", 30, "the TSLA recovery")
        for _ in range(2):  # two more looks now: the first one's comparison is over when the second looks
            before, session._next_reconcile = session.account_positions_seen, 0.0
            wait_for(lambda b=before: session.account_positions_seen is not b, 20, "another reconcile")
        assert ours(session.portfolio) == {"AAPL": 1.0} and len(reported()) == 1  # reported once
    finally:
        sim.set_faults(trade_stream_silent=False)
        session.stop()
