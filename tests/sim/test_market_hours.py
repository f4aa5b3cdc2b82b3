"""Alpaca's market-hours rules on the simulator's clock, through the real alpaca-py clients.

One simulator with `market_hours="nyse"` starts four seconds before a Friday close; `set_clock`
carries it over the weekend, into after hours, pre-market and the auctions, so each rule is seen in
seconds. The tests run in file order: each moves the clock on from where the last one left it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import GetCalendarRequest, LimitOrderRequest, MarketOrderRequest, ReplaceOrderRequest
from sim_helpers import TradeUpdates, data_client, trading_client, wait_for

from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.calendar import EASTERN

FRIDAY_CLOSE = datetime(2026, 12, 4, 16, 0, tzinfo=EASTERN)
MONDAY_OPEN = datetime(2026, 12, 7, 9, 30, tzinfo=EASTERN)


@pytest.fixture(scope="module")
def hsim() -> Iterator[Simulator]:
    with Simulator(
        ("AAPL", "SPY"), seed=3, quotes_per_second=20, market_hours="nyse", clock_start="2026-12-04T15:59:56-05:00"
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(hsim: Simulator) -> TradingClient:
    return trading_client(hsim)


@pytest.fixture(scope="module")
def stream(hsim: Simulator) -> Iterator[TradeUpdates]:
    recorder = TradeUpdates(hsim)
    yield recorder
    recorder.stop()


def held_order(sim: Simulator, order_id: Any) -> dict[str, Any]:
    """The broker's own record of an order (ground truth, not the client's view)."""
    return next(o for o in sim.orders() if o["id"] == str(order_id))


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def let_the_market_step(sim: Simulator, steps: int = 5) -> None:
    """Wait until the simulated market has moved `steps` times (matching runs after every move)."""
    data = data_client(sim)
    seen: list[Any] = []

    def moved() -> bool:
        quote = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))["AAPL"]
        if not seen or seen[-1] != quote.timestamp:
            seen.append(quote.timestamp)
        return len(seen) > steps

    wait_for(moved, 15, what=f"{steps} market steps")


def marketable_buy(sim: Simulator, symbol: str = "AAPL", **kwargs: Any) -> LimitOrderRequest:
    quote = data_client(sim).get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbol))[symbol]
    limit = round(quote.ask_price * 1.05, 2)
    return LimitOrderRequest(symbol=symbol, qty=1, side=OrderSide.BUY, limit_price=limit, **kwargs)


def test_clock_start_and_the_close(hsim: Simulator, client: TradingClient) -> None:
    """The clock starts at clock_start; at the close a resting day order expires and a gtc stays."""
    clock = client.get_clock()
    assert clock.is_open and abs(clock.timestamp - FRIDAY_CLOSE) < timedelta(seconds=60)
    assert clock.next_close == FRIDAY_CLOSE
    resting = {"symbol": "SPY", "qty": 1, "side": OrderSide.BUY, "limit_price": 1.0}
    day = client.submit_order(LimitOrderRequest(**resting, time_in_force=TimeInForce.DAY))
    gtc = client.submit_order(LimitOrderRequest(**resting, time_in_force=TimeInForce.GTC))
    assert abs(day.submitted_at - FRIDAY_CLOSE) < timedelta(seconds=60)  # order times: the simulated clock
    wait_for(lambda: not client.get_clock().is_open, 20, what="the Friday close")
    assert client.get_clock().next_open == MONDAY_OPEN
    wait_for(lambda: held_order(hsim, day.id)["status"] == "expired", 10, what="the day order to expire")
    assert when(held_order(hsim, day.id)["expired_at"]) >= FRIDAY_CLOSE
    assert held_order(hsim, gtc.id)["status"] == "new"
    days = client.get_calendar(GetCalendarRequest())  # the default range is around the simulated date
    assert any(d.date == FRIDAY_CLOSE.date() for d in days)


def test_after_hours_order_is_accepted_and_fills_at_the_open(
    hsim: Simulator, client: TradingClient, stream: TradeUpdates
) -> None:
    order = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert order.status == OrderStatus.ACCEPTED
    stream.wait_event(order.id, "accepted")
    let_the_market_step(hsim)
    assert held_order(hsim, order.id)["status"] == "accepted"
    assert not [p for p in hsim.positions() if p["symbol"] == "AAPL"]
    with pytest.raises(APIError) as refused:  # Alpaca: not replaceable before it is live
        client.replace_order_by_id(order.id, ReplaceOrderRequest(qty=3))
    assert (refused.value.status_code, refused.value.code) == (422, 42210000)
    assert refused.value.message == "cannot replace order in accepted status"
    assert held_order(hsim, order.id)["qty"] == "2" and held_order(hsim, order.id)["status"] == "accepted"
    hsim.set_clock("2026-12-07T09:30:00-05:00")
    wait_for(lambda: held_order(hsim, order.id)["status"] == "filled", 10, what="the fill at the open")
    assert when(held_order(hsim, order.id)["filled_at"]) >= MONDAY_OPEN
    assert [p["qty"] for p in hsim.positions() if p["symbol"] == "AAPL"] == ["2"]
    stream.wait_event(order.id, "fill")
    assert stream.events(order.id) == ["accepted", "new", "fill"]


def test_extended_hours_orders(hsim: Simulator, client: TradingClient) -> None:
    hsim.set_clock("2026-12-07T17:00:00-05:00")  # Monday, after hours
    message = "extended hours order must be DAY or GTC limit orders"
    for wrong in (
        MarketOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, extended_hours=True
        ),
        marketable_buy(hsim, time_in_force=TimeInForce.IOC, extended_hours=True),
    ):
        with pytest.raises(APIError) as info:
            client.submit_order(wrong)
        assert (info.value.status_code, info.value.code, info.value.message) == (422, 42210000, message)
    extended = client.submit_order(marketable_buy(hsim, time_in_force=TimeInForce.DAY, extended_hours=True))
    plain = client.submit_order(marketable_buy(hsim, time_in_force=TimeInForce.DAY))
    wait_for(lambda: held_order(hsim, extended.id)["status"] == "filled", 10, what="the after-hours fill")
    assert plain.status == OrderStatus.ACCEPTED
    hsim.set_clock("2026-12-07T20:00:30-05:00")  # after-hours trading is over
    late = client.submit_order(marketable_buy(hsim, time_in_force=TimeInForce.DAY, extended_hours=True))
    assert late.status == OrderStatus.ACCEPTED
    let_the_market_step(hsim)
    assert held_order(hsim, late.id)["status"] == "accepted"
    hsim.set_clock("2026-12-08T04:00:05-05:00")  # Tuesday pre-market
    wait_for(lambda: held_order(hsim, late.id)["status"] == "filled", 10, what="the pre-market fill")
    assert held_order(hsim, plain.id)["status"] == "accepted"  # a plain order waits for the open
    hsim.set_clock("2026-12-08T09:30:00-05:00")
    wait_for(lambda: held_order(hsim, plain.id)["status"] == "filled", 10, what="the plain order at the open")


def test_opg_and_cls_windows(hsim: Simulator, client: TradingClient) -> None:
    hsim.set_clock("2026-12-08T10:00:00-05:00")
    cases = [(TimeInForce.OPG, "9:28am"), (TimeInForce.CLS, "3:50pm")]
    opg_refused = MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.OPG)
    with pytest.raises(APIError) as info:
        client.submit_order(opg_refused)
    expected = f"opg orders must be submitted after 7:00pm and before {cases[0][1]}"
    assert (info.value.status_code, info.value.code, info.value.message) == (403, 40310000, expected)
    at_close = client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.CLS)
    )
    let_the_market_step(hsim)
    assert held_order(hsim, at_close.id)["status"] == "new"  # waits for the closing auction
    hsim.set_clock("2026-12-08T15:55:00-05:00")
    with pytest.raises(APIError) as info:
        client.submit_order(MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.CLS))
    expected = f"cls orders must be submitted after 7:00pm and before {cases[1][1]}"
    assert (info.value.status_code, info.value.code, info.value.message) == (403, 40310000, expected)
    hsim.set_clock("2026-12-08T15:59:30-05:00")
    wait_for(lambda: held_order(hsim, at_close.id)["status"] == "filled", 10, what="the closing-auction fill")
    hsim.set_clock("2026-12-08T20:00:00-05:00")
    at_open = client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.OPG)
    )
    assert at_open.status == OrderStatus.ACCEPTED
    hsim.set_clock("2026-12-09T09:30:00-05:00")
    wait_for(lambda: held_order(hsim, at_open.id)["status"] == "filled", 10, what="the opening-auction fill")
    filled = when(held_order(hsim, at_open.id)["filled_at"])
    assert datetime(2026, 12, 9, 9, 30, tzinfo=EASTERN) <= filled < datetime(2026, 12, 9, 9, 31, tzinfo=EASTERN)


def test_the_clock_only_moves_forward(hsim: Simulator, client: TradingClient) -> None:
    with pytest.raises(ConfigurationError, match="only moves forward"):
        hsim.set_clock("2026-12-04T12:00:00-05:00")
    with pytest.raises(ConfigurationError, match="set_clock"):
        hsim.set_clock("tomorrow")
    assert client.get_clock().timestamp >= datetime(2026, 12, 9, 9, 30, tzinfo=EASTERN)


def test_clock_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="clock_start"):
        Simulator(clock_start="2026-12-04T15:59:00")  # no zone
    with pytest.raises(ConfigurationError, match="data_plan"):
        Simulator(data_plan="gold")
