"""A trade stream that goes silent (a half-open socket: open, but every message lost) and is noticed
late. Orders submitted, filled and canceled meanwhile — one the stream never mentioned at all, one it
last saw resting long before — are recovered through REST after the reconnect, however long before
it they happened: the recorder knows every order the workers submitted, and catch-up covers every
order not yet final. Judged by the broker: each order's last trade-log row says what `sim.orders()`
says, each fill is logged once, and the session holds what `sim.positions()` holds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.client import TradingClient
from reliability_helpers import market, positions_match, raw_rows, running, session_options, settle, wait_for

from blockpaca_nb import Session, Simulator
from blockpaca_nb.recorder import CATCH_UP_MARGIN_S

TICKERS = ["AAPL", "MSFT", "TSLA"]


def broker_order(sim: Simulator, cid: str) -> dict[str, Any]:
    """The broker's order with this client id ({} until the broker has it)."""
    return next((o for o in sim.orders() if o["client_order_id"] == cid), {})


def last_execution_row(rows: list[dict[str, str]], cid: str) -> dict[str, str]:
    return [r for r in rows if r["client_order_id"] == cid and r["type"] == "execution"][-1]


def silence(sim: Simulator, during: Any) -> None:
    """Silence the trade stream, run ``during()``, and let the silence be "noticed" only well after
    it: later than any fixed look-back from the moment of the reconnect would reach."""
    sim.set_faults(trade_stream_silent=True)
    silent_from = time.time()
    during()
    wait_for(lambda: time.time() > silent_from + 2 * CATCH_UP_MARGIN_S + 1, 30, "the silence to last")
    sim.set_faults(trade_stream_silent=False)


@pytest.mark.timeout(240)
def test_orders_during_a_silent_trade_stream_are_recovered(tmp_path: Path) -> None:
    with Simulator(symbols=TICKERS, seed=11, quotes_per_second=10) as sim:
        session = running(Session(**session_options(sim, tmp_path)))
        cids: list[str] = []
        try:
            quotes = wait_for(lambda: session.get_current_data()[0].get("AAPL"), 20, "a first AAPL quote")

            def fill_unheard() -> None:  # the stream never says a word about this order
                cids.extend(session.submit(market("MSFT", "buy", 2)))
                wait_for(lambda: broker_order(sim, cids[0]).get("status") == "filled", 20, "the order to fill")
                wait_for(lambda: session.orders.get(cids[0]), 20, "the worker's answer")

            silence(sim, fill_unheard)
            assert session.orders[cids[0]]["status"] == "accepted"  # only the worker's answer got through
            assert not settle(session, cids, timeout=30), "the order filled unheard is not final"

            limit = {**market("AAPL", "buy", 1), "order_type": "limit", "limit_price": round(quotes["bid"] * 0.5, 2)}
            cids += session.submit(limit)
            wait_for(lambda: (session.orders.get(cids[1]) or {}).get("status") == "new", 20, "the limit to rest")
            trading = TradingClient(sim.api_key, sim.secret_key, paper=True, url_override=sim.urls["trading"])

            def cancel_unheard() -> None:  # the stream saw it rest long ago; its cancel goes unheard
                trading.cancel_order_by_id(broker_order(sim, cids[1])["id"])
                wait_for(lambda: broker_order(sim, cids[1]).get("status") == "canceled", 20, "the cancel")

            silence(sim, cancel_unheard)
            assert not settle(session, cids, timeout=30), "the order canceled unheard is not final"
            wait_for(lambda: positions_match(session, sim), 20, "the session's positions to match the broker's")
        finally:
            session.stop()
        rows = raw_rows(session.trade_log_file)
        for cid in cids:
            at_broker, logged = broker_order(sim, cid), last_execution_row(rows, cid)
            assert (logged["status"], float(logged["executed_qty"])) == (
                at_broker["status"],
                float(at_broker["filled_qty"]),
            ), cid
            assert logged["event"] == "recovered"
        fills = [float(r["fill_qty"]) for r in rows if r["client_order_id"] == cids[0] and r["fill_qty"]]
        assert fills == [2.0]  # logged once, with what it executed
