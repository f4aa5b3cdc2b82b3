"""Alpaca paper's broker rules on the simulator's `paper` profile, through the real alpaca-py clients.

Each test asserts Alpaca's exact status, `code` and message (sources in docs/simulator-rules.md) and
what the broker holds afterwards (`sim.orders()`, `sim.positions()`), never only what the client saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus, TimeInForce
from alpaca.trading.models import AccountConfiguration
from alpaca.trading.requests import (
    ClosePositionRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopOrderRequest,
)
from sim_helpers import TradeUpdates, data_client, raw_session, trading_client, wait_for

from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.sim import Simulator

Factory = Callable[..., Simulator]
# The first quote step is 1000 s away: prices and sizes stand still, so every answer is exact.
FROZEN = {"quotes_per_second": 0.001, "seed": 21}
# Slow enough to watch the pending state with a plain GET on a busy machine.
SLOW_CANCEL = {"cancel_latency_ms": 1500, "partial_fill_rate": 0}
# An order this many times the touch takes ~RACE quote steps to fill: time for a cancel to arrive first.
RACE = 40


def api_error(call: Callable[[], Any], status: int, code: int, message: str | None = None) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    err = info.value
    assert (err.status_code, err.code) == (status, code), str(err)
    if message is not None:
        assert err.message == message
    return err


def market(symbol: str, qty: float, side: str = "buy", **kw: Any) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, **kw)


def limit(symbol: str, qty: float, side: str, price: float, tif: str = "gtc") -> LimitOrderRequest:
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, limit_price=price)


def ask_of(sim: Simulator, symbol: str) -> tuple[float, float]:
    quote = data_client(sim).get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbol))[symbol]
    return quote.ask_price, quote.ask_size


def broker_order(sim: Simulator, order_id: Any) -> dict[str, Any]:
    return next(o for o in sim.orders() if o["id"] == str(order_id))


def broker_qty(sim: Simulator, symbol: str) -> float:
    return sum(float(p["qty"]) for p in sim.positions() if p["symbol"] == symbol)


def status_becomes(sim: Simulator, order_id: Any, status: str) -> dict[str, Any]:
    return wait_for(
        lambda: (o := broker_order(sim, order_id))["status"] == status and o, what=f"{order_id} {status}"
    )


def long_position(sim: Simulator, client: TradingClient, symbol: str, qty: int) -> None:
    order = client.submit_order(market(symbol, qty))
    status_becomes(sim, order.id, "filled")
    assert broker_qty(sim, symbol) == qty


# ------------------------------------------------------------------ profiles and knobs


def test_profiles_and_knobs_are_validated() -> None:
    assert Simulator().profile == "paper"
    assert "profile=frictionless" in repr(Simulator(profile="frictionless"))
    with pytest.raises(ConfigurationError, match=r"profile='fast'.*allowed: 'paper', 'frictionless'"):
        Simulator(profile="fast")
    with pytest.raises(ConfigurationError, match=r"cancel_latency_ms=-1.*a number >= 0"):
        Simulator(cancel_latency_ms=-1)
    with pytest.raises(ConfigurationError, match=r"partial_fill_rate=1\.5.*<= 1"):
        Simulator(partial_fill_rate=1.5)


def test_set_faults_changes_the_rule_knobs(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN, profile="frictionless")
    with pytest.raises(ConfigurationError, match="partial_fill_rate"):
        sim.set_faults(partial_fill_rate=2)
    assert sim.set_faults(cancel_latency_ms=1500)["cancel_latency_ms"] == 1500
    client = trading_client(sim)
    order = client.submit_order(limit("AAPL", 1, "buy", 1.0))
    client.cancel_order_by_id(order.id)
    assert broker_order(sim, order.id)["status"] == "pending_cancel"  # the knob took effect while serving
    status_becomes(sim, order.id, "canceled")


# ------------------------------------------------------------------ rule 1: asynchronous cancels and replaces


def test_cancel_is_asynchronous_and_keeps_the_shares_held(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN, **SLOW_CANCEL)
    client, stream = trading_client(sim), trade_updates(sim)
    long_position(sim, client, "AAPL", 10)
    ask, _ = ask_of(sim, "AAPL")
    resting = client.submit_order(limit("AAPL", 10, "sell", round(ask * 3, 2)))
    assert client.cancel_order_by_id(resting.id) is None  # 204: asked for, not done
    assert broker_order(sim, resting.id)["status"] == "pending_cancel"
    stream.wait_event(resting.id, "pending_cancel")
    assert client.get_open_position("AAPL").qty_available == "0"  # still held_for_orders
    api_error(
        lambda: client.submit_order(market("AAPL", 10, "sell")),
        403,
        40310000,
        "insufficient qty available for order (requested: 10, available: 0)",
    )
    api_error(
        lambda: client.cancel_order_by_id(resting.id), 422, 42210000, 'order is already in "pending_cancel" state'
    )
    stream.wait_event(resting.id, "canceled")
    assert stream.events(resting.id) == ["pending_new", "new", "pending_cancel", "canceled"]
    api_error(lambda: client.cancel_order_by_id(resting.id), 422, 42210000, 'order is already in "canceled" state')
    closing = client.submit_order(market("AAPL", 10, "sell"))  # the hold is gone
    status_becomes(sim, closing.id, "filled")
    assert broker_qty(sim, "AAPL") == 0


def test_cancel_of_a_filled_order(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN, **SLOW_CANCEL)
    client = trading_client(sim)
    order = client.submit_order(market("NVDA", 1))
    status_becomes(sim, order.id, "filled")
    api_error(lambda: client.cancel_order_by_id(order.id), 422, 42210000, 'order is already in "filled" state')


def test_cancel_all_answers_before_the_cancels_are_done(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN, **SLOW_CANCEL)
    client, stream = trading_client(sim), trade_updates(sim)
    orders = [client.submit_order(limit(s, 1, "buy", 1.0)) for s in ("AAPL", "NVDA", "SPY")]
    responses = client.cancel_orders()
    assert {str(r.id) for r in responses} == {str(o.id) for o in orders}
    assert {r.status for r in responses} == {200}
    assert {r.body["status"] for r in responses} == {"pending_cancel"}
    assert {o["status"] for o in sim.orders()} == {"pending_cancel"}
    assert len(client.get_orders()) == 3  # pending_cancel orders are still open
    for order in orders:
        stream.wait_event(order.id, "canceled")
    assert {o["status"] for o in sim.orders()} == {"canceled"}
    assert client.get_orders() == []


def test_close_all_positions_with_cancel_orders_confirms_the_cancels_first(
    make_sim: Factory, trade_updates: Any
) -> None:
    sim = make_sim(**FROZEN, **SLOW_CANCEL)
    client, stream = trading_client(sim), trade_updates(sim)
    long_position(sim, client, "AAPL", 5)
    ask, _ = ask_of(sim, "AAPL")
    resting = client.submit_order(limit("AAPL", 5, "sell", round(ask * 3, 2)))
    # without cancel_orders the held shares cannot be sold: a 403 inside the 207
    (refused,) = client.close_all_positions(cancel_orders=False)
    assert refused.status == 403
    assert refused.body.message == "insufficient qty available for order (requested: 5, available: 0)"
    (closed,) = client.close_all_positions(cancel_orders=True)
    assert closed.status == 200
    stream.wait_event(resting.id, "canceled")
    assert stream.events(resting.id)[-2:] == ["pending_cancel", "canceled"]
    assert broker_order(sim, resting.id)["status"] == "canceled"
    status_becomes(sim, closed.order_id, "filled")
    assert sim.positions() == []


def test_replace_is_asynchronous(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(**FROZEN, **SLOW_CANCEL)
    client, stream = trading_client(sim), trade_updates(sim)
    old = client.submit_order(limit("AAPL", 5, "buy", 1.0))
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=1.5))
    assert str(new.replaces) == str(old.id)
    assert broker_order(sim, old.id)["status"] == "pending_replace"
    stream.wait_event(old.id, "pending_replace")
    api_error(
        lambda: client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=2)),
        422,
        42210000,
        'order is already in "pending_replace" state',
    )
    stream.wait_event(old.id, "replaced")
    stream.wait_event(new.id, "new")
    assert stream.events(old.id) == ["pending_new", "new", "pending_replace", "replaced"]
    assert broker_order(sim, old.id)["replaced_by"] == str(new.id)
    assert broker_order(sim, new.id)["status"] == "new"
    api_error(
        lambda: client.replace_order_by_id(new.id, ReplaceOrderRequest(limit_price=1.5)),
        403,
        40310000,
        "order parameters are not changed",
    )


def test_a_notional_order_is_never_replaced_and_a_fractional_ones_qty_never_changes(make_sim: Factory) -> None:
    """Alpaca's replace rules (docs: PATCH /v2/orders/{id}): notional orders cannot be replaced; only
    whole shares may be patched, and a fractional order's qty not at all. The broker keeps the order."""
    sim = make_sim(**FROZEN, partial_fill_rate=0)
    client, raw = trading_client(sim), raw_session(sim)
    ask, size = ask_of(sim, "AAPL")
    notional = client.submit_order(market("AAPL", None, notional=round(ask * (size + 3), 2)))  # more than the touch
    wait_for(lambda: broker_order(sim, notional.id)["status"] == "partially_filled", what="a partial fill")
    api_error(lambda: client.replace_order_by_id(notional.id, ReplaceOrderRequest(qty=1)), 422, 42210000,
              "notional orders cannot be replaced: cancel it and submit a new one")  # fmt: skip
    fraction = client.submit_order(limit("AAPL", 1.5, "buy", round(ask / 2, 2), tif="day"))
    api_error(lambda: client.replace_order_by_id(fraction.id, ReplaceOrderRequest(qty=2)), 422, 42210000,
              "the qty of a fractional order cannot be changed")  # fmt: skip
    whole = client.submit_order(limit("AAPL", 2, "buy", round(ask / 2, 2), tif="day"))
    answer = raw.patch(f"{sim.urls['trading']}/v2/orders/{whole.id}", json={"qty": "2.5"})
    assert (answer.status_code, answer.json()["code"]) == (422, 40010001)
    assert "whole number of shares" in answer.json()["message"]
    held = {o["id"]: o for o in sim.orders()}  # nothing replaced: each still open as sent
    assert [held[str(o.id)]["status"] for o in (fraction, whole)] == ["new", "new"]
    assert (held[str(fraction.id)]["qty"], held[str(whole.id)]["qty"]) == ("1.5", "2")
    moved = client.replace_order_by_id(fraction.id, ReplaceOrderRequest(limit_price=round(ask / 3, 2)))
    assert broker_order(sim, moved.id)["qty"] == "1.5"  # its price may move, its qty stays
    wait_for(lambda: broker_order(sim, moved.id)["status"] == "new", what="the replacement live")  # not pending_new
    orders = f"{sim.urls['trading']}/v2/orders"
    again = raw.patch(f"{orders}/{moved.id}", json={"qty": "1.5", "limit_price": round(ask / 4, 2)})
    assert again.status_code == 200 and again.json()["qty"] == "1.5"  # its own qty again, with a new price: taken
    cheap = raw.patch(f"{orders}/{whole.id}", json={"qty": "1", "limit_price": "0.5"})
    assert (cheap.status_code, cheap.json()["message"]) == (403, "cost basis must be >= minimal amount of order 1")


def test_an_order_that_fills_while_pending_cancel_or_replace(make_sim: Factory, trade_updates: Any) -> None:
    """The cancel (replace) loses the race: `fill`, then `order_cancel_rejected` (`order_replace_rejected`,
    and the replacement is `rejected`)."""
    sim = make_sim(
        seed=21, quotes_per_second=10, cancel_latency_ms=20_000, partial_fill_rate=0, starting_cash=100_000_000
    )
    client, stream = trading_client(sim), trade_updates(sim)
    ask, size = ask_of(sim, "NVDA")
    # RACE x the touch: the first quote fills a part, the next ones (10 a second) the rest, within 20 s
    racing = client.submit_order(limit("NVDA", RACE * size, "buy", round(ask * 1.5, 2), tif="day"))
    client.cancel_order_by_id(racing.id)
    stream.wait_event(racing.id, "order_cancel_rejected", timeout=20)
    events = stream.events(racing.id)
    assert events[:3] == ["pending_new", "new", "partial_fill"] and "pending_cancel" in events
    assert events[-2:] == ["fill", "order_cancel_rejected"]
    assert broker_order(sim, racing.id)["status"] == "filled"

    ask, size = ask_of(sim, "SPY")
    old = client.submit_order(limit("SPY", RACE * size, "buy", round(ask * 1.5, 2), tif="day"))
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=round(ask * 1.6, 2)))
    stream.wait_event(old.id, "order_replace_rejected", timeout=20)
    assert stream.events(old.id)[-2:] == ["fill", "order_replace_rejected"]
    assert stream.wait_event(new.id, "rejected").order.status == OrderStatus.REJECTED
    assert broker_order(sim, old.id)["status"] == "filled"
    assert broker_order(sim, new.id)["status"] == "rejected"
    assert broker_qty(sim, "SPY") == RACE * size  # filled once, not twice


# ------------------------------------------------------------------ rule 2: wash-trade guard


WASH = "potential wash trade detected. use complex orders"


def test_wash_trade_guard(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN, **SLOW_CANCEL)
    client = trading_client(sim)
    long_position(sim, client, "AAPL", 10)
    ask, _ = ask_of(sim, "AAPL")
    take_profit = client.submit_order(limit("AAPL", 10, "sell", round(ask * 2, 2)))
    # a market or stop buy could execute against the open sell: refused
    api_error(lambda: client.submit_order(market("AAPL", 1)), 403, 40310000, WASH)
    stop = StopOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="gtc", stop_price=round(ask * 1.1, 2))
    api_error(lambda: client.submit_order(stop), 403, 40310000, WASH)
    # limit vs limit: only when the buy's limit reaches the sell's
    api_error(lambda: client.submit_order(limit("AAPL", 1, "buy", round(ask * 2, 2))), 403, 40310000, WASH)
    below = client.submit_order(limit("AAPL", 1, "buy", round(ask * 0.5, 2)))
    assert broker_order(sim, below.id)["status"] == "new"
    # still counted while its cancel is pending
    client.cancel_order_by_id(take_profit.id)
    api_error(lambda: client.submit_order(market("AAPL", 1)), 403, 40310000, WASH)
    status_becomes(sim, take_profit.id, "canceled")
    assert {o["status"] for o in sim.orders() if o["side"] == "sell"} == {"canceled"}


# ------------------------------------------------------------------ rule 3: one direction, no flip


def test_no_two_directions_in_flight(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN)
    client = trading_client(sim)
    ask, _ = ask_of(sim, "NVDA")
    client.submit_order(limit("NVDA", 1, "buy", round(ask * 0.5, 2)))
    api_error(
        lambda: client.submit_order(limit("NVDA", 1, "sell", round(ask * 2, 2))),
        403,
        40310000,
        "cannot open a short sell while a long buy order is open",
    )
    ask, _ = ask_of(sim, "SPY")
    client.submit_order(limit("SPY", 1, "sell", round(ask * 2, 2)))
    api_error(
        lambda: client.submit_order(limit("SPY", 1, "buy", round(ask * 0.5, 2))),
        403,
        40310000,
        "cannot open a long buy while a short sell order is open",
    )
    assert broker_qty(sim, "NVDA") == broker_qty(sim, "SPY") == 0
    assert len(sim.orders()) == 2


def test_no_flip_in_one_order(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN)
    client = trading_client(sim)
    long_position(sim, client, "AAPL", 5)
    api_error(
        lambda: client.submit_order(market("AAPL", 8, "sell")),
        403,
        40310000,
        "insufficient qty available for order (requested: 8, available: 5)",
    )
    short = client.submit_order(market("NVDA", 5, "sell"))
    status_becomes(sim, short.id, "filled")
    err = api_error(
        lambda: client.submit_order(market("NVDA", 8)),
        403,
        40310000,
        "insufficient qty available for order (requested: 8, available: 5)",
    )
    assert err.response.json()["existing_qty"] == "-5"
    assert broker_qty(sim, "AAPL") == 5 and broker_qty(sim, "NVDA") == -5


def test_frictionless_allows_the_flip(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN, profile="frictionless")
    client = trading_client(sim)
    client.submit_order(market("NVDA", 5, "sell"))
    wait_for(lambda: broker_qty(sim, "NVDA") == -5, what="the short")
    client.submit_order(market("NVDA", 8))
    wait_for(lambda: broker_qty(sim, "NVDA") == 3, what="the flip")


# ------------------------------------------------------------------ rule 6: paper fills


def first_fill_events(sim: Simulator, stream: TradeUpdates, orders: list[Any]) -> list[tuple[str, float | None]]:
    for order in orders:
        status_becomes(sim, order.id, "filled")
        stream.wait_event(order.id, "fill")
    first = [next(u for u in stream.of(o.id) if u.event in ("fill", "partial_fill")) for o in orders]
    return [(u.event, u.qty) for u in first]


def test_some_marketable_orders_fill_partially_first(make_sim: Factory, trade_updates: Any) -> None:
    runs = []
    for seed in (21, 21, 22):
        sim = make_sim(symbols=["AAPL"], seed=seed, quotes_per_second=0.001, starting_cash=10_000_000)
        client, stream = trading_client(sim), trade_updates(sim)
        orders = [client.submit_order(market("AAPL", 10)) for _ in range(40)]
        runs.append(first_fill_events(sim, stream, orders))
        assert {float(o["filled_qty"]) for o in sim.orders()} == {10.0}  # every order completes
        assert broker_qty(sim, "AAPL") == 400
    partial = [qty for event, qty in runs[0] if event == "partial_fill"]
    assert 1 <= len(partial) <= 12  # about 10 % of 40
    assert all(qty is not None and 1 <= qty <= 9 and qty == int(qty) for qty in partial)
    assert runs[0] == runs[1]  # the same seed, the same partial fills
    assert runs[0] != runs[2]


# ------------------------------------------------------------------ rule 7: buying power and account


def test_short_sale_buying_power_uses_103_percent_of_the_ask(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN, symbols=["AAPL"], starting_cash=20_000)
    client = trading_client(sim)
    power = float(client.get_account().buying_power)
    ask, _ = ask_of(sim, "AAPL")
    qty = math.floor(power / ask) - 1  # affordable at the ask, not at 1.03 × ask
    assert qty * ask < power < qty * ask * 1.03
    short = market("AAPL", qty, "sell")
    err = api_error(lambda: client.submit_order(short), 403, 40310000, "insufficient buying power")
    assert float(err.response.json()["cost_basis"]) == pytest.approx(qty * ask * 1.03, abs=0.01)
    bought = client.submit_order(market("AAPL", qty, "buy"))  # a buy at the far side fits
    wait_for(lambda: broker_qty(sim, "AAPL") > 0, what="the buy")  # (what the frozen touch offers)
    assert broker_order(sim, bought.id)["status"] in ("partially_filled", "filled")


def test_small_accounts_get_multiplier_one_and_cannot_short(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN, starting_cash=1_500)
    client = trading_client(sim)
    account = client.get_account()
    assert account.multiplier == "1" and account.shorting_enabled is False
    assert float(account.buying_power) == 1_500
    api_error(
        lambda: client.submit_order(market("NVDA", 1, "sell")), 403, 40310000, "account is not allowed to short"
    )
    assert sim.orders() == []


def test_account_and_asset_fields_as_alpaca_serves_them_in_2026(make_sim: Factory) -> None:
    sim = make_sim(("AAPL", "MSFT", "AEP"), **FROZEN)
    raw = raw_session(sim)
    body = raw.get(f"{sim.urls['trading']}/v2/account").json()
    assert not {"pattern_day_trader", "daytrade_count", "daytrading_buying_power"} & set(body)
    assert body["multiplier"] == "2" and body["shorting_enabled"] is True
    assert trading_client(sim).get_account().equity == body["equity"]  # alpaca-py 0.44 parses without them
    assets = {a["symbol"]: a for a in raw.get(f"{sim.urls['trading']}/v2/assets").json()}
    assert assets["AAPL"]["borrow_status"] == "easy_to_borrow"
    assert assets["MSFT"]["shortable"] is True  # a well-known name: always shortable, as on Alpaca
    assert assets["AEP"]["shortable"] is False and assets["AEP"]["borrow_status"] == "hard_to_borrow"  # seed 21


def test_account_configurations(make_sim: Factory) -> None:
    sim = make_sim(**FROZEN)
    client = trading_client(sim)
    config = client.get_account_configurations()
    assert isinstance(config, AccountConfiguration) and config.no_shorting is False
    config.no_shorting = True
    assert client.set_account_configurations(config).no_shorting is True
    assert client.get_account().shorting_enabled is False
    api_error(
        lambda: client.submit_order(market("NVDA", 1, "sell")), 403, 40310000, "account is not allowed to short"
    )
    bad = raw_session(sim).patch(f"{sim.urls['trading']}/v2/account/configurations", json={"dtbp_check": "often"})
    assert bad.status_code == 422 and "dtbp_check" in bad.json()["message"] and "entry" in bad.json()["message"]


# ------------------------------------------------------------------ rule 9: exact error codes


def test_short_sale_errors_are_422(make_sim: Factory) -> None:
    sim = make_sim(("AAPL", "NVDA", "AEP"), **FROZEN)
    client = trading_client(sim)
    api_error(
        lambda: client.submit_order(market("AEP", 1, "sell")), 422, 42210000, "asset AEP cannot be sold short"
    )
    api_error(
        lambda: client.submit_order(market("NVDA", 0.5, "sell")),
        422,
        42210000,
        "fractional orders cannot be sold short",
    )
    api_error(lambda: client.submit_order(market("ZZZZ", 1)), 422, 40010001, 'asset "ZZZZ" not found')
    api_error(lambda: client.close_position("AAPL", ClosePositionRequest(qty="1")), 404, 40410000)
    assert sim.orders() == []


# ------------------------------------------------------------------ rule 8: every trade_updates event


def test_every_trade_update_event_reaches_alpaca_py(make_sim: Factory, trade_updates: Any) -> None:
    sim = make_sim(
        seed=21, quotes_per_second=10, cancel_latency_ms=300, partial_fill_rate=1.0, starting_cash=100_000_000
    )
    client, stream = trading_client(sim), trade_updates(sim)
    # partial_fill then fill (every marketable order splits at this rate)
    filled = client.submit_order(market("AAPL", 10))
    stream.wait_event(filled.id, "fill")
    # pending_cancel, canceled
    resting = client.submit_order(limit("NVDA", 1, "buy", 1.0))
    client.cancel_order_by_id(resting.id)
    stream.wait_event(resting.id, "canceled")
    # pending_replace, replaced
    old = client.submit_order(limit("SPY", 1, "buy", 1.0))
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(limit_price=1.5))
    stream.wait_event(old.id, "replaced")
    # order_cancel_rejected, order_replace_rejected, rejected: the order fills before the change
    sim.set_faults(cancel_latency_ms=20_000, partial_fill_rate=0)
    ask, size = ask_of(sim, "TSLA")
    racing = client.submit_order(limit("TSLA", RACE * size, "buy", round(ask * 1.5, 2), tif="day"))
    client.cancel_order_by_id(racing.id)
    stream.wait_event(racing.id, "order_cancel_rejected", timeout=20)
    ask, size = ask_of(sim, "AAPL")
    old_racing = client.submit_order(limit("AAPL", RACE * size, "buy", round(ask * 1.5, 2), tif="day"))
    new_racing = client.replace_order_by_id(old_racing.id, ReplaceOrderRequest(limit_price=round(ask * 1.6, 2)))
    stream.wait_event(old_racing.id, "order_replace_rejected", timeout=20)
    stream.wait_event(new_racing.id, "rejected")
    # accepted, done_for_day, restated, expired: broker-side situations, produced on request
    waiting = client.submit_order(limit("NVDA", 1, "buy", 1.0, tif="day"))
    for event in ("accepted", "restated", "done_for_day"):
        sim.trigger_event(str(waiting.id), event)
        assert stream.wait_event(waiting.id, event).order.id == waiting.id
    assert broker_order(sim, waiting.id)["status"] == "done_for_day"
    expiring = client.submit_order(limit("NVDA", 1, "buy", 1.0, tif="day"))
    sim.trigger_event(str(expiring.id), "expired")
    assert stream.wait_event(expiring.id, "expired").order.status == OrderStatus.EXPIRED
    expected = {
        "accepted", "pending_new", "new", "partial_fill", "fill", "canceled", "expired", "done_for_day",
        "replaced", "rejected", "pending_cancel", "pending_replace", "order_cancel_rejected",
        "order_replace_rejected", "restated",
    }  # fmt: skip
    assert expected <= {u.event for u in stream.updates}
    assert str(new.id) in {o["id"] for o in sim.orders()}
    with pytest.raises(ConfigurationError, match=r"event='fill'.*allowed: accepted, done_for_day, expired, restated"):
        sim.trigger_event(str(waiting.id), "fill")


# ------------------------------------------------------------------ regulatory fees


def _round_trip_cash(sim: Simulator, shares: int) -> tuple[float, list[Any]]:
    """Buy then sell ``shares`` AAPL at the market; the cash it cost and the two filled orders."""
    client = trading_client(sim)
    before = float(client.get_account().cash)
    orders = []
    for side in ("buy", "sell"):
        placed = client.submit_order(MarketOrderRequest(symbol="AAPL", qty=shares, side=side, time_in_force="day"))
        filled = lambda placed=placed: client.get_order_by_id(placed.id).status == OrderStatus.FILLED  # noqa: E731
        wait_for(filled, 30, what=f"the {side} to fill")
        orders.append(client.get_order_by_id(placed.id))
    return float(client.get_account().cash) - before, orders


def test_paper_charges_no_regulatory_fees_and_a_live_like_simulator_charges_alpacas(make_sim: Factory) -> None:
    """Alpaca paper charges no regulatory fees (its paper specification); `regulatory_fees=True`
    takes a live account's out of cash at each fill, by the schedule in blockpaca_nb.fees."""
    from blockpaca_nb.fees import REGULATORY

    options = {"seed": 21, "quotes_per_second": 20, "partial_fill_rate": 0, "starting_cash": 1e7}
    moved, orders = _round_trip_cash(make_sim(["AAPL"], **options), 300)
    trades = sum((-1 if o.side == "buy" else 1) * float(o.filled_qty) * float(o.filled_avg_price) for o in orders)
    cent = 0.0101  # the account's cash is written to the cent, before and after
    assert moved == pytest.approx(trades, abs=cent)
    live = make_sim(["AAPL"], **options, regulatory_fees=True)
    assert live.regulatory_fees and not Simulator(["AAPL"]).regulatory_fees
    moved, orders = _round_trip_cash(live, 300)
    fees = sum(REGULATORY.on_fill(str(o.side.value), float(o.filled_qty), float(o.filled_avg_price)) for o in orders)
    trades = sum((-1 if o.side == "buy" else 1) * float(o.filled_qty) * float(o.filled_avg_price) for o in orders)
    assert fees > 0.5 and moved == pytest.approx(trades - fees, abs=cent)
    with pytest.raises(ConfigurationError, match=r"regulatory_fees='yes' is not valid; allowed: True or False"):
        Simulator(["AAPL"], regulatory_fees="yes")  # type: ignore[arg-type]
