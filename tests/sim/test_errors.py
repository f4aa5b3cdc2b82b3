"""Every error case, raised by alpaca-py as APIError with Alpaca's status, code and message."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import (
    ClosePositionRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
)
from sim_helpers import data_client, raw_session, trading_client, wait_for

from blockpaca_nb.sim import Simulator


@pytest.fixture(scope="module")
def esim() -> Iterator[Simulator]:
    # frozen prices; seed 21 makes MSFT hard to borrow (not shortable)
    # the well-known names are always shortable and fractionable: AEP and ADP have drawn profiles
    with Simulator(("AAPL", "MSFT", "TSLA", "NVDA", "SPY", "AEP", "ADP"), seed=21, quotes_per_second=0.001) as s:
        yield s


@pytest.fixture(scope="module")
def client(esim: Simulator) -> TradingClient:
    return trading_client(esim)


def api_error(call: Callable[[], Any], status: int, code: int | None = None) -> APIError:
    """Run `call`, expect alpaca-py's APIError with this status (and code), return it."""
    with pytest.raises(APIError) as info:
        call()
    err = info.value
    assert err.status_code == status, str(err)
    body = json.loads(str(err))
    assert isinstance(body["code"], int) and isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert err.code == code, str(err)
    return err


def market(symbol: str, qty: float, side: OrderSide = OrderSide.BUY, **kw: Any) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, **kw)


def test_duplicate_client_order_id(client: TradingClient) -> None:
    client.submit_order(market("AAPL", 1, client_order_id="only-once"))
    err = api_error(lambda: client.submit_order(market("AAPL", 1, client_order_id="only-once")), 422, 40010001)
    assert err.message == "client_order_id must be unique"


def test_a_taken_client_order_id_is_found_after_the_account_checks(client: TradingClient) -> None:
    """The retry of a sell whose first copy rests (its answer lost, say) is refused for the shares
    that copy holds — 403 insufficient qty — before the id is found taken: a client must look up an
    order after an uncertain attempt, whatever the refusal."""
    client.submit_order(market("ADP", 3))
    wait_for(lambda: any(p.symbol == "ADP" and float(p.qty) == 3 for p in client.get_all_positions()), 10, "ADP")
    sell = LimitOrderRequest(
        symbol="ADP", qty=3, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, limit_price=99_999,
        client_order_id="sell-all-once",
    )
    client.submit_order(sell)
    err = api_error(lambda: client.submit_order(sell), 403, 40310000)
    assert err.message == "insufficient qty available for order (requested: 3, available: 0)"
    assert [o.client_order_id for o in client.get_orders()].count("sell-all-once") == 1
    client.cancel_order_by_id(str(client.get_order_by_client_id("sell-all-once").id))


def test_insufficient_buying_power(client: TradingClient) -> None:
    err = api_error(lambda: client.submit_order(market("AAPL", 100_000)), 403, 40310000)
    assert "insufficient buying power" in err.message
    # notional too
    api_error(
        lambda: client.submit_order(
            MarketOrderRequest(symbol="AAPL", notional=10_000_000, side=OrderSide.BUY, time_in_force="day")
        ),
        403,
        40310000,
    )
    # resting orders hold buying power: a second one that would exceed it is refused
    bp = float(client.get_account().buying_power)
    limit = 10.0
    first = client.submit_order(
        LimitOrderRequest(symbol="SPY", qty=int(bp * 0.6 / limit), side="buy", time_in_force="gtc", limit_price=limit)
    )
    api_error(
        lambda: client.submit_order(
            LimitOrderRequest(
                symbol="SPY", qty=int(bp * 0.6 / limit), side="buy", time_in_force="gtc", limit_price=limit
            )
        ),
        403,
        40310000,
    )
    client.cancel_order_by_id(first.id)


def test_selling_more_than_held(client: TradingClient) -> None:
    client.submit_order(market("NVDA", 5))
    err = api_error(lambda: client.submit_order(market("NVDA", 8, OrderSide.SELL)), 403, 40310000)
    assert "insufficient qty" in err.message
    body = json.loads(str(err))
    assert body["symbol"] == "NVDA" and body["existing_qty"] == "5" and body["available"] == "5"
    # shares held for an open sell order are not available either
    client.submit_order(LimitOrderRequest(symbol="NVDA", qty=4, side="sell", time_in_force="gtc", limit_price=100_000))
    api_error(lambda: client.submit_order(market("NVDA", 2, OrderSide.SELL)), 403, 40310000)
    api_error(lambda: client.close_position("NVDA", ClosePositionRequest(qty="9")), 403, 40310000)


def test_short_sale_of_hard_to_borrow_asset(client: TradingClient) -> None:
    assert client.get_asset("AEP").shortable is False  # a drawn profile (seed 21)
    assert client.get_asset("MSFT").shortable is True  # a well-known name: always shortable
    err = api_error(lambda: client.submit_order(market("AEP", 1, OrderSide.SELL)), 422, 42210000)
    assert err.message == "asset AEP cannot be sold short"


def test_unknown_symbol(client: TradingClient, esim: Simulator) -> None:
    err = api_error(lambda: client.submit_order(market("NOSUCH", 1)), 422, 40010001)
    assert "NOSUCH" in err.message
    api_error(lambda: client.get_asset("NOSUCH"), 404, 40410000)
    api_error(lambda: client.get_open_position("NOSUCH"), 404, 40410000)
    data = data_client(esim)
    api_error(lambda: data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="NOSUCH")), 422)
    api_error(
        lambda: data.get_stock_bars(StockBarsRequest(symbol_or_symbols=["AAPL", "NOSUCH"], timeframe=TimeFrame.Day)),
        422,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": "AAPL", "side": "buy", "type": "market", "time_in_force": "day"},  # no qty
        {"symbol": "AAPL", "qty": 1, "notional": 10, "side": "buy", "type": "market", "time_in_force": "day"},
        {"symbol": "AAPL", "qty": -1, "side": "buy", "type": "market", "time_in_force": "day"},
        {"symbol": "AAPL", "qty": "abc", "side": "buy", "type": "market", "time_in_force": "day"},
        {"symbol": "AAPL", "qty": 1, "side": "hold", "type": "market", "time_in_force": "day"},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "iceberg", "time_in_force": "day"},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "forever"},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "time_in_force": "day"},  # no limit_price
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "stop", "time_in_force": "day"},  # no stop_price
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "stop_limit", "time_in_force": "day", "stop_price": 5},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "trailing_stop", "time_in_force": "day"},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day", "limit_price": 5},
        {"symbol": "AAPL", "qty": 1.5, "side": "buy", "type": "market", "time_in_force": "gtc"},
        {"symbol": "AAPL", "notional": 100, "side": "buy", "type": "limit", "time_in_force": "day", "limit_price": 1},
        {"qty": 1, "side": "buy", "type": "market", "time_in_force": "day"},  # no symbol
        {
            "symbol": "AAPL",
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "x" * 200,
        },
    ],
)
def test_bad_order_parameters(client: TradingClient, body: dict[str, Any]) -> None:
    """Bodies alpaca-py's request models would refuse, sent through the client's own `post`."""
    api_error(lambda: client.post("/orders", body), 422, 40010001)


def test_bad_query_parameters(client: TradingClient, esim: Simulator) -> None:
    api_error(lambda: client.get("/orders", {"status": "sideways"}), 422, 40010001)
    api_error(lambda: client.get("/orders", {"limit": "many"}), 422, 40010001)
    api_error(lambda: client.get("/orders", {"limit": 501}), 422, 40010001)
    api_error(lambda: client.get("/orders", {"after": "yesterday"}), 422, 40010001)
    api_error(lambda: client.get("/orders", {"direction": "up"}), 422, 40010001)
    api_error(lambda: client.get("/calendar", {"start": "2024-13-45"}), 422, 40010001)
    api_error(lambda: client.delete("/positions", {"cancel_orders": "perhaps"}), 422, 40010001)
    data = data_client(esim)
    api_error(lambda: data.get("/stocks/bars", {"symbols": "AAPL", "timeframe": "7Fortnights"}), 422)
    api_error(lambda: data.get("/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "limit": 0}), 422)
    api_error(lambda: data.get("/stocks/bars", {"symbols": "AAPL", "timeframe": "1Day", "page_token": "%%%"}), 422)
    api_error(lambda: data.get("/stocks/bars", {"timeframe": "1Day"}), 422)  # no symbols


def test_unknown_order_id(client: TradingClient) -> None:
    missing = uuid.uuid4()
    err = api_error(lambda: client.get_order_by_id(missing), 404, 40410000)
    assert "not found" in err.message
    api_error(lambda: client.cancel_order_by_id(missing), 404, 40410000)
    api_error(lambda: client.replace_order_by_id(missing, ReplaceOrderRequest(qty=1)), 404, 40410000)
    api_error(lambda: client.get_order_by_client_id("never-used"), 404, 40410000)
    # a path id that is not a UUID is a validation error, as on Alpaca
    api_error(lambda: client.get("/orders/not-a-uuid"), 422, 40010001)


def test_bad_credentials(esim: Simulator) -> None:
    wrong = trading_client(esim, secret="not-the-secret")
    err = api_error(wrong.get_account, 401)
    assert err.code == 40110000
    unknown_key = TradingClient("NOBODY", esim.secret_key, url_override=esim.urls["trading"])
    api_error(unknown_key.get_clock, 401)
    # no credentials at all
    response = raw_session(esim).get(esim.urls["trading"] + "/v2/account", headers={"APCA-API-KEY-ID": ""})
    assert response.status_code == 401 and set(response.json()) >= {"code", "message"}


def test_cancel_or_replace_a_filled_order(client: TradingClient) -> None:
    order = client.submit_order(market("SPY", 1))
    wait_for(lambda: client.get_order_by_id(order.id).status == "filled", what="the fill")
    err = api_error(lambda: client.cancel_order_by_id(order.id), 422, 42210000)
    assert err.message == 'order is already in "filled" state'
    err = api_error(lambda: client.replace_order_by_id(order.id, ReplaceOrderRequest(qty=2)), 422, 42210000)
    assert err.message == 'order is already in "filled" state'


def test_unknown_endpoint_is_a_json_404(client: TradingClient) -> None:
    api_error(lambda: client.get("/no/such/endpoint"), 404, 40410000)
    api_error(lambda: client.post("/account"), 404)  # wrong method: still a JSON error


def test_buying_back_more_than_a_short_needs_buying_power_for_the_excess() -> None:
    # frictionless: paper refuses any flip (tests/sim/test_paper_rules.py); this is about buying power
    with Simulator(symbols=["SPY"], seed=21, quotes_per_second=0.001, profile="frictionless") as fresh:
        _buy_back_more_than_short(trading_client(fresh))


def _buy_back_more_than_short(client: TradingClient) -> None:
    client.submit_order(market("SPY", 10, OrderSide.SELL))
    cash = float(client.get_account().cash)
    # covering the short and going hugely long: only the long part needs buying power, and it is too much
    api_error(lambda: client.submit_order(market("SPY", 10_000_000)), 403, 40310000)
    assert float(client.get_account().cash) == pytest.approx(cash)
    client.submit_order(market("SPY", 10))  # covering alone needs none
    assert "SPY" not in [p.symbol for p in client.get_all_positions()]


def test_sub_penny_prices_are_refused(client: TradingClient) -> None:
    err = api_error(
        lambda: client.submit_order(
            LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day", limit_price=1.2345)
        ),
        422,
        42210000,
    )
    assert "sub-penny" in err.message
    below_a_dollar = LimitOrderRequest(symbol="AAPL", qty=10, side="buy", time_in_force="day", limit_price=0.1234)
    order = client.submit_order(below_a_dollar)  # four decimals are fine under $1
    client.cancel_order_by_id(order.id)


def test_no_order_worth_less_than_a_dollar(client: TradingClient, esim: Simulator) -> None:
    """Alpaca's minimum: an order's cost basis (limit × qty, else the quote it meets × qty, or the
    notional) of at least $1 — 403 with Alpaca's text. Closing a position (DELETE) has none."""

    def refused(request: Any) -> None:
        err = api_error(lambda: client.submit_order(request), 403, 40310000)
        assert err.message == "cost basis must be >= minimal amount of order 1"

    def held() -> float:
        return sum(float(p["qty"]) for p in esim.positions() if p["symbol"] == "TSLA")

    before = len(esim.orders())
    refused(LimitOrderRequest(symbol="TSLA", qty=1, side="buy", time_in_force="day", limit_price=0.99))
    refused(market("TSLA", None, notional=0.99))  # type: ignore[arg-type]
    refused(market("TSLA", 0.001))  # a thousandth of a share: cents
    assert len(esim.orders()) == before  # nothing taken
    client.submit_order(market("TSLA", 0.01))  # worth a few dollars: taken
    wait_for(lambda: held() == 0.01, what="the fraction bought")
    client.submit_order(market("TSLA", 0.008, OrderSide.SELL))
    wait_for(lambda: held() == 0.002, what="the fraction sold")
    dust = next(p for p in esim.positions() if p["symbol"] == "TSLA")
    assert float(dust["market_value"]) < 1
    refused(market("TSLA", 0.002, OrderSide.SELL))  # too little to sell…
    client.close_position("TSLA")  # …but the position closes
    wait_for(lambda: held() == 0, what="the dust closed")


def test_fractional_orders_on_a_non_fractionable_asset_are_refused(client: TradingClient) -> None:
    asset = next(a for a in client.get_all_assets() if not a.fractionable)
    err = api_error(lambda: client.submit_order(market(asset.symbol, 0.5)), 422, 40010001)
    assert "not fractionable" in err.message
    notional = MarketOrderRequest(symbol=asset.symbol, notional=100, side="buy", time_in_force="day")
    api_error(lambda: client.submit_order(notional), 422, 40010001)
