"""Alpaca's order classes bracket, oco and oto through alpaca-py: legs held until the entry fills,
one exit's fill cancels the other, `legs` in the order JSON, trade_updates for every leg."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from sim_helpers import raw_session, trading_client, wait_for
from test_paper_rules import ask_of, broker_order, broker_qty, status_becomes

from blockpaca_nb.sim import Simulator

Factory = Callable[..., Simulator]
FROZEN = {"quotes_per_second": 0.001, "seed": 21, "cancel_latency_ms": 200, "partial_fill_rate": 0}


def bracket(symbol: str, qty: int, take: float, stop: float, **kw: Any) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol,
        qty=qty,
        side="buy",
        time_in_force=TimeInForce.GTC,
        order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=take),
        stop_loss=StopLossRequest(stop_price=stop),
        **kw,
    )


def test_bracket_legs_wait_for_the_entry_then_cancel_each_other(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN)
    client, stream = trading_client(sim), trade_updates(sim)
    ask, _ = ask_of(sim, "AAPL")
    entry = client.submit_order(bracket("AAPL", 10, round(ask * 1.5, 2), round(ask * 0.5, 2)))
    assert entry.order_class == OrderClass.BRACKET
    assert entry.legs is not None and len(entry.legs) == 2
    take, stop = entry.legs
    assert (take.side, take.type, float(take.limit_price)) == ("sell", "limit", round(ask * 1.5, 2))
    assert (stop.side, stop.type, float(stop.stop_price)) == ("sell", "stop", round(ask * 0.5, 2))
    status_becomes(sim, entry.id, "filled")
    for leg in (take, stop):
        stream.wait_event(leg.id, "new")  # released by the entry's fill
    assert {broker_order(sim, leg.id)["status"] for leg in (take, stop)} == {"new"}
    assert client.get_open_position("AAPL").qty_available == "0"  # both exits sell the same 10 shares

    # move the take-profit to a marketable price: it fills, and the stop is canceled
    bid = float(client.get_open_position("AAPL").current_price) * 0.9
    moved = client.replace_order_by_id(take.id, ReplaceOrderRequest(limit_price=round(bid, 2)))
    status_becomes(sim, moved.id, "filled")
    stream.wait_event(stop.id, "canceled")
    assert stream.events(stop.id) == ["new", "canceled"]
    assert broker_order(sim, stop.id)["status"] == "canceled"
    assert broker_qty(sim, "AAPL") == 0 and sim.positions() == []


def test_an_exit_marketable_when_released_still_cancels_its_sibling(make_sim: Factory, trade_updates: Any) -> None:
    """Both exits go live before either trades: a take profit that fills at once cancels the stop.
    (A buy stop entry triggered beyond its stop price — a gap — fills above its take profit.)"""
    sim = make_sim(**FROZEN)
    client, stream = trading_client(sim), trade_updates(sim)
    ask, _ = ask_of(sim, "AAPL")
    gapped = StopOrderRequest(symbol="AAPL", qty=10, side="buy", time_in_force=TimeInForce.GTC,
                              stop_price=round(ask * 0.8, 2), order_class=OrderClass.BRACKET,
                              take_profit=TakeProfitRequest(limit_price=round(ask * 0.9, 2)),
                              stop_loss=StopLossRequest(stop_price=round(ask * 0.5, 2)))  # fmt: skip
    entry = client.submit_order(gapped)
    assert entry.legs is not None
    take, stop = entry.legs
    stream.wait_event(stop.id, "canceled")
    assert stream.events(stop.id) == ["new", "canceled"]
    assert broker_order(sim, take.id)["status"] == "filled" and broker_order(sim, stop.id)["status"] == "canceled"
    assert sim.positions() == []


def test_exits_on_the_wrong_side_of_the_entry_are_refused_as_on_paper(make_sim: Factory) -> None:
    """Alpaca refuses (422) a take profit not a cent beyond the entry's price and a stop loss not a
    cent short of it: the entry's limit, else the quote a market entry meets (the base price)."""
    sim = make_sim(**FROZEN)
    client = trading_client(sim)
    ask, _ = ask_of(sim, "AAPL")
    above, below, far_below = round(ask * 1.1, 2), round(ask * 0.9, 2), round(ask * 0.5, 2)
    refused = {
        "take_profit.limit_price must be >= base_price + 0.01": bracket("AAPL", 1, below, far_below),
        "stop_loss.stop_price must be <= base_price - 0.01": bracket("AAPL", 1, round(ask * 1.5, 2), above),
        f"take_profit.limit_price must be >= base_price + 0.01 (base_price {below:g})": LimitOrderRequest(
            symbol="AAPL", qty=1, side="buy", time_in_force="day", limit_price=below, order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=below), stop_loss=StopLossRequest(stop_price=far_below)),
        "take_profit.limit_price must be <= base_price - 0.01": MarketOrderRequest(
            symbol="AAPL", qty=1, side="sell", time_in_force="day", order_class=OrderClass.OTO,
            take_profit=TakeProfitRequest(limit_price=above)),
    }  # fmt: skip
    for message, order in refused.items():
        with pytest.raises(APIError) as caught:
            client.submit_order(order)
        assert caught.value.status_code == 422 and message in str(caught.value), str(caught.value)
    assert sim.orders() == []


def test_a_canceled_entry_cancels_its_held_legs(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN)
    client, stream = trading_client(sim), trade_updates(sim)
    entry = client.submit_order(
        LimitOrderRequest(
            symbol="NVDA",
            qty=5,
            side="buy",
            time_in_force="day",
            limit_price=1.0,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=2.0),
            stop_loss=StopLossRequest(stop_price=0.5, limit_price=0.45),
        )
    )
    assert entry.legs is not None and {leg.status for leg in entry.legs} == {OrderStatus.HELD}
    assert entry.legs[1].type == "stop_limit"
    nested = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
    assert [str(o.id) for o in nested] == [str(entry.id)] and nested[0].legs is not None
    assert len(client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))) == 3  # flat: legs too
    client.cancel_order_by_id(entry.id)
    for leg in entry.legs:
        stream.wait_event(leg.id, "canceled")
    assert {o["status"] for o in sim.orders()} == {"canceled"}


def test_oco_exits_are_live_at_once(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN)
    client, stream = trading_client(sim), trade_updates(sim)
    bought = client.submit_order(MarketOrderRequest(symbol="SPY", qty=4, side="buy", time_in_force="day"))
    status_becomes(sim, bought.id, "filled")
    price = float(client.get_open_position("SPY").current_price)
    exits = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=4,
            side="sell",
            time_in_force="gtc",
            limit_price=round(price * 2, 2),
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=round(price * 2, 2)),
            stop_loss=StopLossRequest(stop_price=round(price * 0.5, 2)),
        )
    )
    assert exits.legs is not None and len(exits.legs) == 1
    (stop,) = exits.legs
    stream.wait_event(stop.id, "new")
    # the stop moved above the bid triggers and fills; the limit is canceled
    moved = client.replace_order_by_id(stop.id, ReplaceOrderRequest(stop_price=round(price * 1.2, 2)))
    status_becomes(sim, moved.id, "filled")
    stream.wait_event(exits.id, "canceled")
    assert broker_order(sim, exits.id)["status"] == "canceled"
    assert sim.positions() == []


def test_oto_releases_its_one_exit(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN)
    client, stream = trading_client(sim), trade_updates(sim)
    ask, _ = ask_of(sim, "AAPL")
    entry = client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=3,
            side="buy",
            time_in_force="day",
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=round(ask * 0.8, 2)),
        )
    )
    assert entry.legs is not None and len(entry.legs) == 1
    stream.wait_event(entry.legs[0].id, "new")
    assert broker_order(sim, entry.id)["order_class"] == "oto"
    assert broker_order(sim, entry.legs[0].id)["status"] == "new"
    wait_for(lambda: broker_qty(sim, "AAPL") == 3, what="the entry")


def test_complex_orders_are_checked_like_alpaca(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN)
    http = raw_session(sim)
    url = f"{sim.urls['trading']}/v2/orders"
    base = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "gtc"}
    cases = [
        ({**base, "order_class": "bracket", "take_profit": {"limit_price": 500}}, "require both"),
        ({**base, "order_class": "oto"}, "exactly one of take_profit or stop_loss"),
        ({**base, "order_class": "ladder"}, "allowed: bracket, oco, oto, simple"),
        (
            {**base, "order_class": "bracket", "take_profit": {"limit_price": 5}, "stop_loss": {"stop_price": 9}},
            "must be above stop_loss.stop_price",
        ),
        (
            {
                **base,
                "time_in_force": "ioc",
                "order_class": "oto",
                "stop_loss": {"stop_price": 1},
            },
            "must be day or gtc",
        ),
    ]
    for body, words in cases:
        answer = http.post(url, json=body)
        assert answer.status_code == 422 and answer.json()["code"] == 40010001, answer.text
        assert words in answer.json()["message"]
    assert sim.orders() == []


def _broker_with_a_bracket(cancel_latency_ms: float) -> tuple[Any, Any, Any, Any]:
    """An in-process broker (as replay runs it) that bought 10 AAPL with exits at 105 / 95."""
    from blockpaca_nb.sim.broker import Broker
    from blockpaca_nb.sim.hours import MarketHours
    from blockpaca_nb.sim.market import Market

    market = Market(("AAPL",), 1, 1.0)
    rules = {"cancel_latency_ms": cancel_latency_ms, "partial_fill_rate": 0.0}
    broker = Broker(market, 1_000_000, lambda *_: None, MarketHours("always"), rules=rules)
    _quote(market, 100.0, 1e6)
    entry = broker.submit({"symbol": "AAPL", "qty": 10, "side": "buy", "type": "market", "time_in_force": "day",
                           "order_class": "bracket", "take_profit": {"limit_price": 105},
                           "stop_loss": {"stop_price": 95}}, now=1000.0)  # fmt: skip
    take, stop = entry.legs
    return market, broker, take, stop


def _quote(market: Any, bid: float, bid_size: float) -> None:
    market.bid[0], market.ask[0], market.bid_size[0], market.ask_size[0] = bid, bid + 0.01, bid_size, 1e6


def test_an_exit_filled_in_part_shrinks_its_sibling_and_a_replacement_waiting_for_it() -> None:
    """The take profit sells 8 of 10 while the stop loss is being replaced: the stop (and its
    replacement) may then sell only the 2 still held — never turning the position short."""
    market, broker, take, stop = _broker_with_a_bracket(cancel_latency_ms=150)
    replacement = broker.replace(stop.id, {"stop_price": 96}, now=1000.0)
    _quote(market, 105.0, 8)  # only 8 shares bid at the take profit's price
    broker.on_market(1000.05)
    assert take.filled_qty == 8 and broker.held("AAPL") == 2
    assert stop.remaining == replacement.remaining == 2
    broker.run_due(1000.2)  # the replace takes effect
    _quote(market, 95.5, 1e6)  # through the new stop
    broker.on_market(1000.3)
    assert broker.held("AAPL") == 0 and replacement.status == "filled" and replacement.filled_qty == 2
    assert take.status == "canceled"
