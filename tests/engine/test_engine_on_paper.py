"""The engine on Alpaca paper's rules: the simulator's default profile, through a real Session.

Every order event Alpaca sends reaches the trade log; a partial fill is never taken for the whole
order; a wash-trade or two-directions refusal says what to do; an order accepted after hours waits
for the open instead of looking lost; more tickers than a free data plan streams is said up front.
Each test checks what the broker holds (`sim.orders()`, `sim.positions()`), not only the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import ReplaceOrderRequest
from waiting import wait_for

from blockpaca_nb import BrokerError, ConfigurationError, Session, Simulator
from blockpaca_nb.preflight import data_plan_warning
from blockpaca_nb.refusals import advice, with_advice
from blockpaca_nb.sim.universe import UNIVERSE
from blockpaca_nb.ui.views import describe_error

Sims = Callable[..., Simulator]
RACE = 40  # an order this many times the touch fills over ~RACE quote steps: time for a cancel to lose


def make_session(sim: Simulator, tmp_path: Path, tickers: list[str], **kwargs: Any) -> Session:
    options: dict[str, Any] = {
        "tickers": tickers,
        "simulator": sim,
        "frequency": 0.2,
        "warm_up_period": 0,
        "trade_log_path": tmp_path,
        "trade_log_name": "paper",
        "num_workers": 2,
    }
    return Session(**{**options, **kwargs})


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Start simulators with any settings; each is stopped after the test's sessions."""
    started: list[Simulator] = []

    def make(*args: Any, **kwargs: Any) -> Simulator:
        started.append(Simulator(*args, **kwargs).start())
        return started[-1]

    yield make
    for simulator in started:
        simulator.stop()


@pytest.fixture
def running(make_sim: Callable[..., Simulator]) -> Iterator[list[Session]]:
    """Sessions started by a test; each is stopped (holding its positions) before the simulators."""
    sessions: list[Session] = []
    yield sessions
    for session in sessions:
        session.stop(eos="hold")


def start(sessions: list[Session], session: Session) -> Session:
    sessions.append(session.start())
    wait_for(lambda: session.status == "running", 60, what="the session running")
    return session


def client(sim: Simulator) -> TradingClient:
    return TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])


def touch(sim: Simulator, symbol: str) -> tuple[float, float]:
    data = StockHistoricalDataClient(sim.api_key, sim.secret_key, url_override=sim.urls["data"])
    quote = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbol))[symbol]
    return quote.ask_price, quote.ask_size


def send(session: Session, order: dict[str, Any]) -> str:
    """Submit one order; return its client order id once the broker's order id is known."""
    cid = session.submit(order)[0]
    wait_for(lambda: session.orders.get(cid, {}).get("order_id"), what=f"the broker's id of {cid}")
    return cid


def logged_events(session: Session, cid: str) -> list[str]:
    log = session.trade_log
    return log[(log["client_order_id"] == cid) & (log["type"] == "execution")]["event"].tolist()


def wait_logged(session: Session, cid: str, event: str, timeout: float = 30) -> list[str]:
    return wait_for(lambda: event in (e := logged_events(session, cid)) and e, timeout, what=f"{event} of {cid}")


def broker_qty(sim: Simulator, symbol: str) -> float:
    return sum(float(p["qty"]) for p in sim.positions() if p["symbol"] == symbol)


def session_qty(session: Session, symbol: str) -> float:
    return sum(float(p["quantity"]) for p in session.get_current_data()[1] if p["ticker"] == symbol)


# ------------------------------------------------------------------ every trade_updates event


def test_every_trade_update_event_reaches_the_trade_log(tmp_path: Path, make_sim: Sims, running: list[Session]) -> None:
    tickers = ["AAPL", "NVDA", "SPY", "TSLA"]
    sim = make_sim(
        tickers, seed=21, quotes_per_second=10, cancel_latency_ms=300, partial_fill_rate=1.0, starting_cash=1e8
    )
    session = start(running, make_session(sim, tmp_path, tickers))
    broker = client(sim)
    # every marketable order arrives as a partial fill first: the position is the sum of both
    bought = send(session, {"ticker": "AAPL", "quantity": 10, "side": "buy", "order_type": "market"})
    assert wait_logged(session, bought, "fill")[-2:] == ["partial_fill", "fill"]
    wait_for(lambda: session_qty(session, "AAPL") == broker_qty(sim, "AAPL") == 10, what="10 AAPL held")
    # an asynchronous cancel and replace: pending first
    resting = send(session, {"ticker": "NVDA", "quantity": 1, "side": "buy", "order_type": "limit",
                             "limit_price": 1.0, "time_in_force": "gtc"})  # fmt: skip
    broker.cancel_order_by_id(session.orders[resting]["order_id"])
    assert wait_logged(session, resting, "canceled")[-2:] == ["pending_cancel", "canceled"]
    moved = send(session, {"ticker": "SPY", "quantity": 1, "side": "buy", "order_type": "limit",
                           "limit_price": 1.0, "time_in_force": "gtc"})  # fmt: skip
    broker.replace_order_by_id(session.orders[moved]["order_id"], ReplaceOrderRequest(limit_price=1.5))
    assert wait_logged(session, moved, "replaced")[-2:] == ["pending_replace", "replaced"]
    # a cancel and a replace that lose the race against the fill
    sim.set_faults(cancel_latency_ms=20_000, partial_fill_rate=0)
    for symbol, change, lost in (
        ("TSLA", "cancel", "order_cancel_rejected"),
        ("AAPL", "replace", "order_replace_rejected"),
    ):
        ask, size = touch(sim, symbol)
        racing = send(session, {"ticker": symbol, "quantity": RACE * size, "side": "buy", "order_type": "limit",
                                "limit_price": round(ask * 1.5, 2)})  # fmt: skip
        order_id = session.orders[racing]["order_id"]
        if change == "cancel":
            broker.cancel_order_by_id(order_id)
        else:
            broker.replace_order_by_id(order_id, ReplaceOrderRequest(limit_price=round(ask * 1.6, 2)))
        assert wait_logged(session, racing, lost)[-2:] == ["fill", lost]
    # what only the broker decides: restated, done for the day, expired
    day = send(session, {"ticker": "NVDA", "quantity": 1, "side": "buy", "order_type": "limit", "limit_price": 1.0})
    for event in ("restated", "done_for_day", "expired"):
        sim.trigger_event(session.orders[day]["order_id"], event)
        wait_logged(session, day, event)
    assert session.orders[day]["status"] == "expired"
    # the session's positions are the broker's: every partial fill counted once
    for symbol in tickers:
        wait_for(lambda s=symbol: session_qty(session, s) == broker_qty(sim, s), what=f"{symbol} agrees")
    rows = session.trade_log
    reasons = dict(zip(rows["event"], rows["reason"], strict=True))
    assert "filled first" in reasons["order_cancel_rejected"] and "next trading day" in reasons["done_for_day"]


# ------------------------------------------------------------------ refusals say what to do


def test_wash_trade_and_two_direction_refusals_say_what_to_do(
    tmp_path: Path, make_sim: Sims, running: list[Session]
) -> None:
    tickers = ["AAPL", "MSFT"]
    sim = make_sim(tickers, seed=21, quotes_per_second=10, partial_fill_rate=0, starting_cash=1e6)
    session = start(running, make_session(sim, tmp_path, tickers))
    send(session, {"ticker": "AAPL", "quantity": 10, "side": "buy", "order_type": "market"})
    wait_for(lambda: broker_qty(sim, "AAPL") == 10, what="10 AAPL held")
    ask, _ = touch(sim, "AAPL")
    take_profit = send(session, {"ticker": "AAPL", "quantity": 10, "side": "sell", "order_type": "limit",
                                 "limit_price": round(ask * 2, 2), "time_in_force": "gtc"})  # fmt: skip
    wash = session.submit({"ticker": "AAPL", "quantity": 5, "side": "buy", "order_type": "market"})[0]
    # MSFT is flat: a resting buy, then a sell that cannot cross it, is two directions in flight
    send(session, {"ticker": "MSFT", "quantity": 1, "side": "buy", "order_type": "limit", "limit_price": 1.0,
                   "time_in_force": "gtc"})  # fmt: skip
    ask, _ = touch(sim, "MSFT")
    short = session.submit({"ticker": "MSFT", "quantity": 1, "side": "sell", "order_type": "limit",
                            "limit_price": round(ask * 2, 2), "action": "short_sell"})[0]  # fmt: skip
    for cid, said, todo in (
        (wash, "potential wash trade detected. use complex orders", "open sell order for AAPL"),
        (short, "cannot open a short sell while a long buy order is open", "open buy order for MSFT"),
    ):
        row = wait_for(lambda c=cid: session.orders.get(c, {}).get("status") == "rejected" and session.orders[c])
        assert row["reason"].startswith(said) and todo in row["reason"] and "cancel it first" in row["reason"]
        assert any(isinstance(e, dict) and e.get("client_order_id") == cid for e in session.errors)
        source, message, _detail, _at = describe_error(row)  # the dashboard's errors panel
        assert source == "broker rejected" and said in message and todo in message
        assert not [o for o in sim.orders() if o["client_order_id"] == cid]  # nothing reached the broker
    assert [o["status"] for o in sim.orders() if o["client_order_id"] == take_profit] == ["new"]
    log = session.trade_log
    refused = log[(log["client_order_id"].isin([wash, short])) & (log["status"] == "rejected")]
    assert len(refused) == 2 and refused["reason"].str.contains("cancel it first").all()


def test_advice_for_alpacas_refusals() -> None:
    assert "open buy order for AAPL" in advice("potential wash trade detected. use complex orders", "AAPL", "sell")
    held = "insufficient qty available for order (requested: 10, available: 0)"
    assert with_advice(held, "AAPL", "sell").startswith(held + " — ")
    assert "the position is smaller" in advice(held, "AAPL", "sell")  # not only orders hold shares
    assert "whole shares" in advice("fractional orders cannot be sold short", "AAPL", "sell")
    assert "cannot be sold short at this broker" in advice("asset AEP cannot be sold short", "AEP", "sell")
    assert with_advice("something new", "AAPL", "buy") == "something new"


# ------------------------------------------------------------------ after hours


def test_an_order_accepted_after_hours_waits_for_the_open(
    tmp_path: Path, make_sim: Sims, running: list[Session]
) -> None:
    saturday = "2026-12-05T12:00:00-05:00"
    sim = make_sim(["AAPL"], seed=3, quotes_per_second=10, market_hours="nyse", clock_start=saturday)
    session = start(running, make_session(sim, tmp_path, ["AAPL"]))
    cid = send(session, {"ticker": "AAPL", "quantity": 2, "side": "buy", "order_type": "market"})
    wait_logged(session, cid, "accepted")
    waiting = wait_for(lambda: session.waiting, what="the order shown as waiting")
    assert [row["client_order_id"] for row in waiting] == [cid]
    assert "market opens" in waiting[0]["reason"] and waiting[0]["status"] == "accepted"
    assert not [e for e in session.errors if isinstance(e, dict) and e.get("client_order_id") == cid]
    assert [o["status"] for o in sim.orders() if o["client_order_id"] == cid] == ["accepted"]
    assert broker_qty(sim, "AAPL") == 0
    sim.set_clock("2026-12-07T09:30:05-05:00")  # Monday's open
    wait_logged(session, cid, "fill")
    wait_for(lambda: session_qty(session, "AAPL") == broker_qty(sim, "AAPL") == 2, what="2 AAPL held")
    assert session.waiting == []


# ------------------------------------------------------------------ data plans


FORTY = list(UNIVERSE[100:140])  # 40 of the simulator's listed symbols (a keyless session refuses others)


def test_more_tickers_than_a_free_data_plan_streams(tmp_path: Path, make_sim: Sims, running: list[Session]) -> None:
    basic = make_sim(FORTY, seed=1, quotes_per_second=5)  # the paper profile's free plan
    told = start(running, make_session(basic, tmp_path, FORTY, trade_log_name="basic"))
    warnings = [e for e in told.errors if isinstance(e, dict) and e.get("where") == "data plan"]
    assert len(warnings) == 1
    assert "40 tickers" in warnings[0]["reason"] and "data_plan='sip'" in warnings[0]["reason"]
    # a session that starts its own simulator gives it the plan its tickers need: quotes for all 40
    own = start(running, make_session({"seed": 1, "quotes_per_second": 5}, tmp_path, FORTY, trade_log_name="own"))  # type: ignore[arg-type]
    assert own.simulator is not None and own.simulator._config.data_plan == "sip"
    assert not [e for e in own.errors if isinstance(e, dict) and e.get("where") == "data plan"]
    wait_for(lambda: len(own.get_current_data()[0]) == 40, 60, what="quotes for all 40 tickers")


def test_data_plan_warning_for_alpaca() -> None:
    iex, sip = "wss://stream.data.alpaca.markets/v2/iex", "wss://stream.data.alpaca.markets/v2/sip"
    assert data_plan_warning(FORTY[:30], iex, None) is None
    assert "40 tickers: Alpaca's free data plan streams 30" in str(data_plan_warning(FORTY, iex, None))
    assert data_plan_warning(FORTY, sip, None) is None  # a SIP stream: the user has the paid plan


def test_bars_ask_for_the_feed_a_free_plan_serves(tmp_path: Path, make_sim: Sims, running: list[Session]) -> None:
    sim = make_sim(["AAPL"], seed=1, quotes_per_second=5)
    session = start(running, make_session(sim, tmp_path, ["AAPL"]))
    assert len(session.bars("AAPL", "1Min", limit=5)) == 5  # IEX: every plan
    assert len(session.context.bars("AAPL", "1Day", limit=3)) == 3
    with pytest.raises(BrokerError, match="recent SIP data"):  # the free plan refuses recent SIP
        session.bars("AAPL", "1Min", limit=5, feed="sip")
    with pytest.raises(BrokerError, match="recent SIP data"):  # the context passes the feed on
        session.context.bars("AAPL", "1Min", limit=5, feed="sip")
    with pytest.raises(ConfigurationError, match="feed='bogus'"):
        session.bars("AAPL", feed="bogus")
    with pytest.raises(ConfigurationError, match=r"feed='bogus' is not valid; allowed: 'iex' \(any data plan\)"):
        session.context.bars("AAPL", feed="bogus")


# ------------------------------------------------------------------ orders with exits


def test_a_bracket_order_is_sent_as_alpacas_and_logged_with_its_exits(
    tmp_path: Path, make_sim: Sims, running: list[Session]
) -> None:
    sim = make_sim(["AAPL"], seed=21, quotes_per_second=10, partial_fill_rate=0, starting_cash=1e6)
    session = start(running, make_session(sim, tmp_path, ["AAPL"]))
    bid = touch(sim, "AAPL")[0] * 0.999
    # a buy stop below the market triggers at once and fills at the ask, above its own price (a gap):
    # the take profit, a cent beyond that price as Alpaca requires, is marketable once it is live
    exits = {"take_profit": round(bid * 0.99, 2), "stop_loss": {"stop_price": round(bid * 0.8, 2)}}
    entry = send(session, {"ticker": "AAPL", "quantity": 10, "side": "buy", "order_type": "stop",
                           "stop_price": round(bid * 0.95, 2), **exits})  # fmt: skip
    held = next(o for o in sim.orders() if o["client_order_id"] == entry)
    assert held["order_class"] == "bracket" and len(held["legs"]) == 2
    take_profit, stop_loss = sorted(held["legs"], key=lambda leg: leg["type"])  # limit, stop
    wait_for(lambda: {o["id"]: o["status"] for o in sim.orders()}.get(stop_loss["id"]) == "canceled",
             what="the stop loss canceled by the take profit's fill")  # fmt: skip
    assert [o["status"] for o in sim.orders() if o["id"] == take_profit["id"]] == ["filled"]
    wait_for(lambda: session_qty(session, "AAPL") == broker_qty(sim, "AAPL") == 0, what="flat again")
    log = session.trade_log
    wait_for(lambda: len((log := session.trade_log)[log["order_id"] == stop_loss["id"]]), what="the stop's rows")
    log = session.trade_log
    accepted = log[(log["client_order_id"] == entry) & (log["type"] == "submission")]
    assert accepted["reason"].str.startswith("bracket exits: take-profit exit sell limit").all()
    exits = log[log["order_id"].isin([take_profit["id"], stop_loss["id"]])]
    assert (exits["action"] == "sell_long").all() and exits["reason"].str.contains(f"exit of {entry}").all()
    assert {"fill", "canceled"} <= set(exits["event"])


def test_orders_with_exits_are_checked_before_sending(tmp_path: Path, make_sim: Sims, running: list[Session]) -> None:
    sim = make_sim(["AAPL"], seed=21, quotes_per_second=10)
    session = start(running, make_session(sim, tmp_path, ["AAPL"]))
    session.submit({"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market",
                    "take_profit": 100.0, "stop_loss": 150.0})  # fmt: skip
    session.submit({"ticker": "AAPL", "quantity": 1, "side": "sell", "order_type": "market",
                    "order_class": "oco", "take_profit": 300.0, "stop_loss": 150.0})  # fmt: skip
    wait_for(lambda: len([e for e in session.errors if getattr(e, "field", None)]) == 2, what="two errors")
    fields = [e.field for e in session.errors if getattr(e, "field", None)]
    assert fields == ["take_profit", "order_type"]
    assert sim.orders() == []
