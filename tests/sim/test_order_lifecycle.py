"""Each order type's lifecycle as alpaca-py's TradingStream reports it (parsed TradeUpdate models)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, OrderType, TimeInForce, TradeEvent
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopOrderRequest,
    TrailingStopOrderRequest,
)
from sim_helpers import TradeUpdates, data_client, trading_client, wait_for

from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.broker import Broker, SimOrder
from blockpaca_nb.sim.hours import MarketHours
from blockpaca_nb.sim.market import Market

OPENING = ["pending_new", "new"]
CANCELING = ["pending_cancel", "canceled"]  # paper: a cancel the client asks for takes effect a moment later


@pytest.fixture(scope="module")
def lsim() -> Iterator[Simulator]:
    # seed 5; the default symbols start near their real prices (NVDA ~$170, SPY ~$630): ten million
    # dollars leave room for the large orders here; quotes move 20 times a second.
    # The paper profile, without its random partial fills: these tests name each order's exact events
    # (tests/sim/test_paper_rules.py covers the partial fills).
    with Simulator(seed=5, quotes_per_second=20, starting_cash=10_000_000, partial_fill_rate=0) as s:
        yield s


@pytest.fixture(scope="module")
def stream(lsim: Simulator) -> Iterator[TradeUpdates]:
    recorder = TradeUpdates(lsim)
    yield recorder
    recorder.stop()


@pytest.fixture(scope="module")
def client(lsim: Simulator) -> TradingClient:
    return trading_client(lsim)


def held(client: TradingClient, symbol: str) -> float:
    try:
        return float(client.get_open_position(symbol).qty)
    except APIError as err:
        assert err.status_code == 404
        return 0.0


def ask_of(sim: Simulator, symbol: str) -> float:
    request = StockLatestQuoteRequest(symbol_or_symbols=symbol)
    return data_client(sim).get_stock_latest_quote(request)[symbol].ask_price


def assert_fill_fields(update: TradeUpdate) -> None:
    """A fill or partial fill carries price, qty, position_qty, an execution id and a timestamp."""
    assert update.price is not None and update.price > 0
    assert update.qty is not None and update.qty > 0
    assert update.position_qty is not None
    assert update.execution_id is not None
    assert abs((update.timestamp - datetime.now(UTC)).total_seconds()) < 30


def settle(stream: TradeUpdates, order_id: Any, last: str) -> list[str]:
    stream.wait_event(order_id, last)
    return stream.events(order_id)


# ------------------------------------------------------------------ market


def test_market_order_qty(client: TradingClient, stream: TradeUpdates) -> None:
    before = held(client, "AAPL")
    order = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert settle(stream, order.id, "fill") == [*OPENING, "fill"]
    pending, new, fill = stream.of(order.id)
    assert pending.event == TradeEvent.PENDING_NEW and pending.order.status == OrderStatus.PENDING_NEW
    assert new.event == TradeEvent.NEW and new.order.status == OrderStatus.NEW
    assert fill.event == TradeEvent.FILL and fill.order.status == OrderStatus.FILLED
    assert_fill_fields(fill)
    assert fill.qty == 10
    assert fill.position_qty == before + 10
    assert fill.price == float(fill.order.filled_avg_price)
    assert pending.timestamp <= new.timestamp <= fill.timestamp
    rest = client.get_order_by_id(order.id)
    assert rest.status == OrderStatus.FILLED and float(rest.filled_avg_price) == fill.price


def test_market_order_notional_and_sell(client: TradingClient, stream: TradeUpdates) -> None:
    order = client.submit_order(
        MarketOrderRequest(symbol="MSFT", notional=500, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    fill = stream.wait_event(order.id, "fill")
    assert fill.order.notional == "500"
    assert fill.qty is not None and fill.price is not None
    assert fill.qty * fill.price == pytest.approx(500, abs=0.01)
    assert fill.qty != int(fill.qty)  # fractional
    held_now = fill.position_qty
    assert held_now is not None

    sale = client.submit_order(
        MarketOrderRequest(symbol="MSFT", qty=held_now, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    sold = stream.wait_event(sale.id, "fill")
    assert sold.order.side == OrderSide.SELL
    assert sold.position_qty == 0


def test_large_order_fills_partially_across_quotes(
    lsim: Simulator, client: TradingClient, stream: TradeUpdates
) -> None:
    before = held(client, "NVDA")
    qty = 12_000  # each quote shows at most 2 100 shares at the ask
    order = client.submit_order(
        MarketOrderRequest(symbol="NVDA", qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    events = settle(stream, order.id, "fill")
    assert events[:2] == OPENING and events[-1] == "fill"
    partials = [u for u in stream.of(order.id) if u.event == TradeEvent.PARTIAL_FILL]
    fills = [*partials, stream.of(order.id)[-1]]
    assert len(partials) >= 5
    assert set(events[2:-1]) == {"partial_fill"}
    for update in fills:
        assert_fill_fields(update)
    assert {p.order.status for p in partials} == {OrderStatus.PARTIALLY_FILLED}
    # cumulative quantities and positions add up, fill by fill
    running = 0.0
    for update in fills:
        running += update.qty
        assert float(update.order.filled_qty) == pytest.approx(running)
        assert update.position_qty == pytest.approx(before + running)
    assert running == qty
    # several quotes were used: more than one distinct fill time
    assert len({u.timestamp for u in fills}) >= 2
    vwap = sum(u.qty * u.price for u in fills) / qty
    assert float(fills[-1].order.filled_avg_price) == pytest.approx(vwap, rel=1e-9)


# ------------------------------------------------------------------ limit


def test_far_limit_rests_is_replaced_then_canceled(
    lsim: Simulator, client: TradingClient, stream: TradeUpdates
) -> None:
    order = client.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=1.0)
    )
    stream.wait_event(order.id, "new")
    time.sleep(0.5)  # about ten quotes later it still rests
    assert client.get_order_by_id(order.id).status == OrderStatus.NEW
    assert stream.events(order.id) == OPENING

    new = client.replace_order_by_id(order.id, ReplaceOrderRequest(limit_price=2.0, qty=6))
    replaced = stream.wait_event(order.id, "replaced")
    assert replaced.order.status == OrderStatus.REPLACED
    assert replaced.order.replaced_by == new.id
    assert settle(stream, new.id, "new") == OPENING
    assert stream.of(new.id)[-1].order.replaces == order.id

    client.cancel_order_by_id(new.id)
    canceled = stream.wait_event(new.id, "canceled")
    assert canceled.order.status == OrderStatus.CANCELED
    assert canceled.order.canceled_at is not None
    assert stream.events(new.id) == [*OPENING, *CANCELING]
    assert stream.events(order.id) == [*OPENING, "pending_replace", "replaced"]


def test_marketable_limit_fills_at_the_touch(lsim: Simulator, client: TradingClient, stream: TradeUpdates) -> None:
    limit = round(ask_of(lsim, "TSLA") * 1.05, 2)
    order = client.submit_order(
        LimitOrderRequest(symbol="TSLA", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=limit)
    )
    assert settle(stream, order.id, "fill") == [*OPENING, "fill"]
    fill = stream.of(order.id)[-1]
    assert fill.price is not None and fill.price <= limit
    assert fill.order.type == OrderType.LIMIT


# ------------------------------------------------------------------ stop and stop_limit


def test_stop_orders(lsim: Simulator, client: TradingClient, stream: TradeUpdates) -> None:
    ask = ask_of(lsim, "SPY")
    far = client.submit_order(
        StopOrderRequest(
            symbol="SPY", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, stop_price=round(ask * 3, 2)
        )
    )
    stream.wait_event(far.id, "new")
    time.sleep(0.3)
    assert client.get_order_by_id(far.id).status == OrderStatus.NEW
    client.cancel_order_by_id(far.id)
    assert settle(stream, far.id, "canceled") == [*OPENING, *CANCELING]

    # a buy stop at or below the ask is triggered at once and fills like a market order
    hit = client.submit_order(
        StopOrderRequest(
            symbol="SPY", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, stop_price=round(ask * 0.9, 2)
        )
    )
    assert settle(stream, hit.id, "fill") == [*OPENING, "fill"]
    assert_fill_fields(stream.of(hit.id)[-1])
    assert stream.of(hit.id)[-1].order.type == OrderType.STOP


def test_stop_limit_orders(lsim: Simulator, client: TradingClient, stream: TradeUpdates) -> None:
    ask = ask_of(lsim, "AAPL")
    # triggered, and its limit is marketable: fills
    hit = client.submit_order(
        StopLimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            stop_price=round(ask * 0.9, 2),
            limit_price=round(ask * 1.1, 2),
        )
    )
    assert settle(stream, hit.id, "fill") == [*OPENING, "fill"]
    assert stream.of(hit.id)[-1].order.type == OrderType.STOP_LIMIT
    # triggered, but the limit is far below the market: rests until canceled
    rest = client.submit_order(
        StopLimitOrderRequest(
            symbol="AAPL",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            stop_price=round(ask * 0.9, 2),
            limit_price=round(ask * 0.5, 2),
        )
    )
    stream.wait_event(rest.id, "new")
    time.sleep(0.3)
    assert client.get_order_by_id(rest.id).status == OrderStatus.NEW
    new = client.replace_order_by_id(rest.id, ReplaceOrderRequest(limit_price=round(ask * 0.6, 2)))
    stream.wait_event(rest.id, "replaced")
    assert float(new.limit_price) == round(ask * 0.6, 2) and float(new.stop_price) == round(ask * 0.9, 2)
    client.cancel_order_by_id(new.id)
    assert settle(stream, new.id, "canceled") == [*OPENING, *CANCELING]


# ------------------------------------------------------------------ trailing stop


def test_trailing_stop_orders(lsim: Simulator, client: TradingClient, stream: TradeUpdates) -> None:
    wide = client.submit_order(
        TrailingStopOrderRequest(
            symbol="TSLA", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, trail_percent=50
        )
    )
    stream.wait_event(wide.id, "new")
    rest = wait_for(lambda: (o := client.get_order_by_id(wide.id)).hwm is not None and o, what="hwm")
    assert rest.status == OrderStatus.NEW and rest.trail_percent == "50"
    assert float(rest.stop_price) == pytest.approx(float(rest.hwm) * 1.5, abs=0.01)

    new = client.replace_order_by_id(wide.id, ReplaceOrderRequest(trail=40))
    stream.wait_event(wide.id, "replaced")
    assert new.trail_percent == "40" and new.type == OrderType.TRAILING_STOP
    client.cancel_order_by_id(new.id)
    assert settle(stream, new.id, "canceled") == [*OPENING, *CANCELING]

    # a trail too tight to survive the next quote triggers and fills
    tight = client.submit_order(
        TrailingStopOrderRequest(
            symbol="TSLA", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, trail_price=0.0001
        )
    )
    assert settle(stream, tight.id, "fill") == [*OPENING, "fill"]
    assert_fill_fields(stream.of(tight.id)[-1])


# ------------------------------------------------------------------ time in force


def test_ioc_fills_what_it_can_then_cancels(client: TradingClient, stream: TradeUpdates) -> None:
    order = client.submit_order(
        MarketOrderRequest(symbol="NVDA", qty=5_000, side=OrderSide.BUY, time_in_force=TimeInForce.IOC)
    )
    assert settle(stream, order.id, "canceled") == [*OPENING, "partial_fill", "canceled"]
    partial, canceled = stream.of(order.id)[-2:]
    assert_fill_fields(partial)
    assert 0 < partial.qty < 5_000
    assert float(canceled.order.filled_qty) == partial.qty


def test_fok_fills_entirely_or_not_at_all(client: TradingClient, stream: TradeUpdates) -> None:
    big = client.submit_order(
        MarketOrderRequest(symbol="NVDA", qty=5_000, side=OrderSide.BUY, time_in_force=TimeInForce.FOK)
    )
    assert settle(stream, big.id, "canceled") == [*OPENING, "canceled"]
    assert float(stream.of(big.id)[-1].order.filled_qty) == 0
    small = client.submit_order(
        MarketOrderRequest(symbol="NVDA", qty=50, side=OrderSide.BUY, time_in_force=TimeInForce.FOK)
    )
    assert settle(stream, small.id, "fill") == [*OPENING, "fill"]


@pytest.mark.parametrize("tif", [TimeInForce.GTC, TimeInForce.OPG, TimeInForce.CLS])
def test_other_time_in_force_values(client: TradingClient, stream: TradeUpdates, tif: TimeInForce) -> None:
    order = client.submit_order(MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, time_in_force=tif))
    assert order.time_in_force == tif
    assert settle(stream, order.id, "fill") == [*OPENING, "fill"]


def test_short_sale_fill_reports_negative_position(client: TradingClient, stream: TradeUpdates) -> None:
    before = held(client, "TSLA")
    if before > 0:  # a long position cannot be sold through zero in one order: flatten first
        flat = client.submit_order(
            MarketOrderRequest(symbol="TSLA", qty=before, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
        )
        assert stream.wait_event(flat.id, "fill").position_qty == 0
        before = 0.0
    order = client.submit_order(
        MarketOrderRequest(symbol="TSLA", qty=5, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    fill = stream.wait_event(order.id, "fill")
    assert fill.position_qty == before - 5 < 0
    assert client.get_open_position("TSLA").side == "short"


# ------------------------------------------------------------------ market hours and expiry


def test_closed_market_accepts_orders_without_filling(make_sim: Any, trade_updates: Any) -> None:
    """On a Saturday a plain order is only `accepted` (it waits for the open) and may be canceled."""
    s = make_sim(market_hours="nyse", quotes_per_second=20, clock_start="2026-12-05T12:00:00-05:00")
    client = trading_client(s)
    recorder = trade_updates(s)
    assert client.get_clock().is_open is False
    order = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    recorder.wait_event(order.id, "accepted")
    assert [o["status"] for o in s.orders() if o["id"] == str(order.id)] == ["accepted"]
    assert s.positions() == []
    client.cancel_order_by_id(order.id)  # an order waiting for the open can still be canceled
    assert settle(recorder, order.id, "canceled") == ["accepted", *CANCELING]


def test_day_orders_expire_at_the_close() -> None:
    """The close → `expired` for day/opg/cls orders, untouched gtc (unreachable live on a weekend)."""
    events: list[tuple[str, SimOrder, dict[str, Any]]] = []
    market = Market(("AAPL",), 1, 1.0)
    broker = Broker(market, 100_000, lambda e, o, x: events.append((e, o, dict(x))), MarketHours("always"))
    body = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "limit_price": 1.0}
    day = broker.submit({**body, "time_in_force": "day"})
    gtc = broker.submit({**body, "time_in_force": "gtc"})
    opg = broker.submit({**body, "time_in_force": "opg"})
    broker.expire_day_orders(time.time())
    assert day.status == "expired" and opg.status == "expired" and gtc.status == "new"
    assert day.expired_at is not None
    assert [e for e, o, _ in events if o is day] == [*OPENING, "expired"]
    assert [e for e, o, _ in events if o is gtc] == OPENING


def test_every_event_parses_as_an_order(stream: TradeUpdates) -> None:
    """Everything the stream delivered in this module parsed into alpaca-py models."""
    assert stream.updates
    assert all(isinstance(u.order, Order) for u in stream.updates)
    assert {u.event for u in stream.updates} >= {"pending_new", "new", "fill", "partial_fill", "canceled", "replaced"}
