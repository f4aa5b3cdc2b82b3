"""Every Trading REST endpoint through alpaca-py's TradingClient, parsed by alpaca-py's own models.

Most tests run on a "frozen" simulator (`quotes_per_second=0.001`: no quote moves for 1000 s), so
fills happen at known prices and the accounting can be checked to the cent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.models import Quote
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    AssetClass,
    AssetExchange,
    AssetStatus,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import (
    Asset,
    Calendar,
    Clock,
    ClosePositionResponse,
    Order,
    PortfolioHistory,
    Position,
    TradeAccount,
)
from alpaca.trading.requests import (
    CancelOrderResponse,
    ClosePositionRequest,
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    GetPortfolioHistoryRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
)
from sim_helpers import data_client, trading_client, wait_for

from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.calendar import EASTERN

FROZEN = {"quotes_per_second": 0.001}  # the first quote step is 1000 s away: prices do not move
Factory = Callable[..., Simulator]


def quote(sim: Simulator, symbol: str) -> Quote:
    return data_client(sim).get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbol))[symbol]


def buy(client: TradingClient, symbol: str, qty: float, **kw: object) -> Order:
    return client.submit_order(
        MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, **kw)
    )


def sell(client: TradingClient, symbol: str, qty: float, **kw: object) -> Order:
    return client.submit_order(
        MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.SELL, time_in_force=TimeInForce.DAY, **kw)
    )


def far_limit(client: TradingClient, symbol: str, qty: float, price: float, **kw: object) -> Order:
    """A buy limit far below the market: it rests."""
    return client.submit_order(
        LimitOrderRequest(
            symbol=symbol,
            qty=qty,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=price,
            **kw,
        )
    )


def money(x: float) -> float:
    return round(x, 2)


# ------------------------------------------------------------------ read-only endpoints


def test_account_is_a_valid_trade_account(sim: Simulator) -> None:
    account = trading_client(sim).get_account()
    assert isinstance(account, TradeAccount)
    assert account.status.value == "ACTIVE"
    assert account.currency == "USD"
    assert float(account.cash) == 100_000.0
    assert float(account.equity) == 100_000.0
    assert float(account.buying_power) > 0
    assert account.trading_blocked is False and account.account_blocked is False
    assert account.shorting_enabled is True


def test_clock_is_open_around_the_clock_by_default(sim: Simulator) -> None:
    clock = trading_client(sim).get_clock()
    assert isinstance(clock, Clock)
    assert clock.is_open is True
    assert abs((clock.timestamp - datetime.now(UTC)).total_seconds()) < 5
    assert clock.next_close > clock.timestamp or clock.next_open > clock.timestamp
    assert clock.next_open.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))  # US/Eastern


def test_clock_follows_nyse_hours_when_asked(make_sim: Factory) -> None:
    client = trading_client(make_sim(market_hours="nyse", **FROZEN))
    clock = client.get_clock()
    now = clock.timestamp.astimezone(EASTERN).replace(tzinfo=None)  # Calendar times are naive Eastern
    sessions = client.get_calendar(GetCalendarRequest(start=now.date(), end=now.date() + timedelta(days=10)))
    upcoming = [s for s in sessions if s.close > now]
    current = upcoming[0]
    assert clock.is_open == (current.open <= now)
    following = upcoming[1] if clock.is_open else current
    assert clock.next_open.astimezone(EASTERN).replace(tzinfo=None) == following.open
    assert clock.next_close.astimezone(EASTERN).replace(tzinfo=None) == current.close


def test_calendar_lists_nyse_sessions(sim: Simulator) -> None:
    client = trading_client(sim)
    days = client.get_calendar(GetCalendarRequest(start=date(2024, 1, 1), end=date(2024, 12, 31)))
    assert all(isinstance(d, Calendar) for d in days)
    assert len(days) == 252  # NYSE trading days in 2024
    assert days[0].date == date(2024, 1, 2)
    assert days[-1].date == date(2024, 12, 31)
    by_date = {d.date: d for d in days}
    assert date(2024, 7, 4) not in by_date and date(2024, 3, 29) not in by_date
    assert (by_date[date(2024, 3, 1)].open.hour, by_date[date(2024, 3, 1)].open.minute) == (9, 30)
    assert by_date[date(2024, 3, 1)].close.hour == 16
    assert by_date[date(2024, 11, 29)].close.hour == 13  # day after Thanksgiving closes early
    # without a range alpaca-py sends no parameters at all
    assert len(client.get_calendar()) > 0


def test_assets_list_and_one(sim: Simulator) -> None:
    client = trading_client(sim)
    assets = client.get_all_assets()
    assert all(isinstance(a, Asset) for a in assets)
    assert {a.symbol for a in assets} == set(sim.symbols)
    aapl = client.get_asset("AAPL")
    assert aapl.symbol == "AAPL"
    assert aapl.asset_class == AssetClass.US_EQUITY
    assert aapl.exchange == AssetExchange.NASDAQ
    assert aapl.status == AssetStatus.ACTIVE and aapl.tradable
    assert client.get_asset(aapl.id).symbol == "AAPL"  # by asset id too
    assert client.get_asset("aapl").id == aapl.id
    active = client.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass.US_EQUITY))
    assert len(active) == len(sim.symbols)
    assert client.get_all_assets(GetAssetsRequest(status=AssetStatus.INACTIVE)) == []
    with pytest.raises(APIError) as err:
        client.get_asset("NOSUCH")
    assert err.value.status_code == 404 and err.value.code == 40410000


def test_full_universe_has_at_least_500_assets(make_sim: Factory) -> None:
    big = make_sim(symbols=None, **FROZEN)
    assert len(big.symbols) >= 500
    assets = trading_client(big).get_all_assets()
    assert len(assets) == len(big.symbols) >= 500
    assert len({a.symbol for a in assets}) == len(assets)
    assert len({a.id for a in assets}) == len(assets)


def test_portfolio_history_tracks_equity(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    buy(client, "AAPL", 10)
    history = client.get_portfolio_history(GetPortfolioHistoryRequest(period="1D", timeframe="1Min"))
    assert isinstance(history, PortfolioHistory)
    assert history.timeframe == "1Min"
    assert len(history.timestamp) == len(history.equity) == len(history.profit_loss)
    assert len(history.profit_loss_pct) == len(history.equity)
    assert history.base_value == 100_000.0
    assert history.timestamp == sorted(history.timestamp)
    assert abs(history.timestamp[-1] - time.time()) < 5
    equity = float(client.get_account().equity)
    assert history.equity[-1] == pytest.approx(equity, abs=0.01)
    assert history.profit_loss[-1] == pytest.approx(equity - 100_000, abs=0.01)
    assert history.equity[-1] < 100_000  # bought at the ask, valued at the mid
    # alpaca-py sends booleans Python-style (extended_hours=True): accepted
    client.get_portfolio_history(GetPortfolioHistoryRequest(extended_hours=True, period="1W"))


# ------------------------------------------------------------------ orders


def test_submit_get_by_id_and_client_order_id(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    ask = quote(s, "AAPL").ask_price
    order = buy(client, "AAPL", 3, client_order_id="mine-1")
    assert isinstance(order, Order)
    assert order.symbol == "AAPL" and order.side == OrderSide.BUY and order.type == OrderType.MARKET
    assert order.client_order_id == "mine-1"
    assert order.status in (OrderStatus.PENDING_NEW, OrderStatus.ACCEPTED, OrderStatus.NEW)
    assert order.qty == "3"
    assert order.asset_id == client.get_asset("AAPL").id

    fetched = client.get_order_by_id(order.id)
    assert fetched.id == order.id
    assert fetched.status == OrderStatus.FILLED
    assert float(fetched.filled_qty) == 3
    assert float(fetched.filled_avg_price) == ask
    assert fetched.filled_at is not None and fetched.filled_at >= fetched.submitted_at
    assert client.get_order_by_id(str(order.id)).id == order.id
    assert client.get_order_by_client_id("mine-1").id == order.id


def test_submit_answer_reports_acceptance_not_the_fill(make_sim: Factory) -> None:
    """The POST answer is the order as accepted: nothing filled yet (fills follow on the stream)."""
    client = trading_client(make_sim(**FROZEN))
    order = buy(client, "AAPL", 2)
    assert order.status in (OrderStatus.PENDING_NEW, OrderStatus.ACCEPTED, OrderStatus.NEW)
    assert float(order.filled_qty) == 0
    assert order.filled_avg_price is None
    assert order.filled_at is None


def test_notional_order(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    ask = quote(s, "MSFT").ask_price
    order = client.submit_order(
        MarketOrderRequest(symbol="MSFT", notional=1000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert order.notional == "1000" and order.qty is None
    filled = client.get_order_by_id(order.id)
    assert filled.status == OrderStatus.FILLED
    assert float(filled.filled_qty) == pytest.approx(1000 / ask, rel=1e-6)
    assert float(filled.filled_qty) * float(filled.filled_avg_price) == pytest.approx(1000, abs=0.01)
    position = client.get_open_position("MSFT")
    assert float(position.qty) == pytest.approx(1000 / ask, rel=1e-6)


def test_list_orders_with_filters(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    price = quote(s, "MSFT").bid_price
    filled_aapl = buy(client, "AAPL", 1)
    time.sleep(0.01)
    open_msft = far_limit(client, "MSFT", 1, round(price * 0.5, 2))
    time.sleep(0.01)
    split = datetime.now(UTC)
    time.sleep(0.01)
    sold_aapl = sell(client, "AAPL", 1)
    time.sleep(0.01)
    open_tsla = far_limit(client, "TSLA", 1, 1.0)

    def ids(**filters: object) -> list[uuid.UUID]:
        return [o.id for o in client.get_orders(GetOrdersRequest(**filters))]

    # default: open orders, newest first
    assert [o.id for o in client.get_orders()] == [open_tsla.id, open_msft.id]
    assert ids(status=QueryOrderStatus.OPEN) == [open_tsla.id, open_msft.id]
    assert ids(status=QueryOrderStatus.CLOSED) == [sold_aapl.id, filled_aapl.id]
    every = [open_tsla.id, sold_aapl.id, open_msft.id, filled_aapl.id]
    assert ids(status=QueryOrderStatus.ALL) == every
    assert ids(status=QueryOrderStatus.ALL, direction="asc") == every[::-1]
    assert ids(status=QueryOrderStatus.ALL, limit=2) == every[:2]
    assert ids(status=QueryOrderStatus.ALL, limit=2, direction="asc") == every[::-1][:2]
    assert ids(status=QueryOrderStatus.ALL, after=split) == [open_tsla.id, sold_aapl.id]
    assert ids(status=QueryOrderStatus.ALL, until=split) == [open_msft.id, filled_aapl.id]
    assert ids(status=QueryOrderStatus.ALL, side=OrderSide.SELL) == [sold_aapl.id]
    assert ids(status=QueryOrderStatus.ALL, side=OrderSide.BUY) == [open_tsla.id, open_msft.id, filled_aapl.id]
    assert ids(status=QueryOrderStatus.ALL, symbols=["AAPL"]) == [sold_aapl.id, filled_aapl.id]
    assert ids(status=QueryOrderStatus.ALL, symbols=["TSLA", "MSFT"]) == [open_tsla.id, open_msft.id]
    assert ids(status=QueryOrderStatus.ALL, symbols=["SPY"]) == []
    assert ids(status=QueryOrderStatus.ALL, nested=True) == every  # nested=True (Python spelling) accepted


def test_replace_order(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    old = far_limit(client, "AAPL", 5, 10.0, client_order_id="before")
    new = client.replace_order_by_id(old.id, ReplaceOrderRequest(qty=7, limit_price=11.5, client_order_id="after"))
    assert isinstance(new, Order)
    assert new.id != old.id
    assert new.replaces == old.id
    assert new.client_order_id == "after"
    assert float(new.qty) == 7 and float(new.limit_price) == 11.5
    assert new.type == OrderType.LIMIT and new.time_in_force == TimeInForce.GTC
    # paper: the replace takes effect a moment later; meanwhile the old order reads pending_replace
    assert client.get_order_by_id(old.id).status in (OrderStatus.PENDING_REPLACE, OrderStatus.REPLACED)
    replaced = wait_for(
        lambda: (o := client.get_order_by_id(old.id)).status == OrderStatus.REPLACED and o, what="the replace"
    )
    assert replaced.replaced_by == new.id and replaced.replaced_at is not None
    assert client.get_order_by_id(new.id).status == OrderStatus.NEW
    # only the replacement is open
    assert [o.id for o in client.get_orders()] == [new.id]

    # a replacement that makes the order marketable fills it
    ask = quote(s, "AAPL").ask_price
    again = client.replace_order_by_id(new.id, ReplaceOrderRequest(limit_price=round(ask * 1.05, 2)))
    done = wait_for(
        lambda: (o := client.get_order_by_id(again.id)).status == OrderStatus.FILLED and o, what="the fill"
    )
    assert float(done.filled_avg_price) == ask  # fills at the touch, not at the limit
    assert float(done.filled_qty) == 7


def test_cancel_one_and_all(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    a = far_limit(client, "AAPL", 1, 10.0)
    b = far_limit(client, "MSFT", 1, 10.0)
    c = far_limit(client, "TSLA", 1, 10.0)
    assert client.cancel_order_by_id(a.id) is None
    # paper: the cancel is asked for, then confirmed
    assert client.get_order_by_id(a.id).status in (OrderStatus.PENDING_CANCEL, OrderStatus.CANCELED)
    cancelled = wait_for(
        lambda: (o := client.get_order_by_id(a.id)).status == OrderStatus.CANCELED and o, what="the cancel"
    )
    assert cancelled.canceled_at is not None
    responses = client.cancel_orders()
    assert all(isinstance(r, CancelOrderResponse) for r in responses)
    assert {r.id for r in responses} == {b.id, c.id}
    assert {r.status for r in responses} == {200}
    wait_for(lambda: client.get_orders() == [], what="every cancel to be confirmed")
    assert {client.get_order_by_id(o).status for o in (b.id, c.id)} == {OrderStatus.CANCELED}
    assert client.cancel_orders() == []  # nothing left to cancel


def test_time_in_force_values_are_accepted(make_sim: Factory) -> None:
    client = trading_client(make_sim(**FROZEN))
    for tif in TimeInForce:
        order = client.submit_order(
            LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=tif, limit_price=10.0)
        )
        assert order.time_in_force == tif
    # opg/cls/day/gtc rest; ioc and fok could not fill at 10.0 and were canceled at once
    statuses = {o.time_in_force: o.status for o in client.get_orders(GetOrdersRequest(status="all"))}
    assert statuses[TimeInForce.IOC] == OrderStatus.CANCELED
    assert statuses[TimeInForce.FOK] == OrderStatus.CANCELED
    for tif in (TimeInForce.DAY, TimeInForce.GTC, TimeInForce.OPG, TimeInForce.CLS):
        assert statuses[tif] == OrderStatus.NEW


# ------------------------------------------------------------------ positions and accounting


def test_long_position_accounting(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    q = quote(s, "AAPL")
    mid = round((q.bid_price + q.ask_price) / 2, 4)
    before = client.get_account()
    assert float(before.cash) == 100_000

    buy(client, "AAPL", 10)
    account = client.get_account()
    assert float(account.cash) == money(100_000 - 10 * q.ask_price)
    position = client.get_open_position("AAPL")
    assert isinstance(position, Position)
    assert position.side == PositionSide.LONG
    assert float(position.qty) == 10 and float(position.qty_available) == 10
    assert float(position.avg_entry_price) == q.ask_price
    assert float(position.cost_basis) == money(10 * q.ask_price)
    assert float(position.current_price) == pytest.approx(mid)
    assert float(position.market_value) == money(10 * mid)
    assert float(position.unrealized_pl) == money(10 * mid - 10 * q.ask_price)
    assert position.exchange == AssetExchange.NASDAQ and position.asset_class == AssetClass.US_EQUITY
    assert client.get_open_position(position.asset_id).symbol == "AAPL"
    assert float(account.long_market_value) == money(10 * mid)
    assert float(account.equity) == money(float(account.cash) + 10 * mid)
    assert float(account.portfolio_value) == float(account.equity)
    # buying power shrinks by at least what was spent (Reg T: 2x the margin excess)
    assert float(account.buying_power) <= float(before.buying_power) - 10 * q.ask_price + 0.01
    assert float(account.buying_power) == pytest.approx(
        2 * (float(account.equity) - float(account.initial_margin)), abs=0.02
    )

    # sell part of it at the bid: realised cash, unchanged average entry
    sell(client, "AAPL", 4)
    account = client.get_account()
    assert float(account.cash) == money(100_000 - 10 * q.ask_price + 4 * q.bid_price)
    position = client.get_open_position("AAPL")
    assert float(position.qty) == 6
    assert float(position.avg_entry_price) == q.ask_price
    assert float(position.cost_basis) == money(6 * q.ask_price)

    # buying more averages the entry price
    buy(client, "AAPL", 6)
    position = client.get_open_position("AAPL")
    assert float(position.qty) == 12
    assert float(position.avg_entry_price) == pytest.approx(q.ask_price)


def test_short_position_accounting(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    q = quote(s, "MSFT")
    mid = round((q.bid_price + q.ask_price) / 2, 4)
    sell(client, "MSFT", 5)
    account = client.get_account()
    assert float(account.cash) == money(100_000 + 5 * q.bid_price)
    position = client.get_open_position("MSFT")
    assert position.side == PositionSide.SHORT
    assert float(position.qty) == -5
    assert float(position.avg_entry_price) == q.bid_price
    assert float(position.cost_basis) == money(-5 * q.bid_price)
    assert float(position.market_value) == money(-5 * mid)
    assert float(position.unrealized_pl) == money(-5 * mid + 5 * q.bid_price)
    assert float(account.short_market_value) == money(-5 * mid)
    assert float(account.equity) == money(float(account.cash) - 5 * mid)

    # covering closes the position; the round trip cost the spread
    buy(client, "MSFT", 5)
    assert client.get_all_positions() == []
    with pytest.raises(APIError) as err:
        client.get_open_position("MSFT")
    assert err.value.status_code == 404 and err.value.code == 40410000
    account = client.get_account()
    assert float(account.cash) == money(100_000 + 5 * q.bid_price - 5 * q.ask_price)
    assert float(account.equity) == float(account.cash)


def test_close_position_by_qty_and_percentage(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    buy(client, "AAPL", 20)
    order = client.close_position("AAPL", ClosePositionRequest(qty="5"))
    assert isinstance(order, Order)
    assert order.side == OrderSide.SELL and float(order.qty) == 5
    assert float(client.get_open_position("AAPL").qty) == 15
    order = client.close_position("AAPL", ClosePositionRequest(percentage="20"))
    assert float(order.qty) == 3
    assert float(client.get_open_position("AAPL").qty) == 12
    order = client.close_position("AAPL")  # everything
    assert float(order.qty) == 12
    assert client.get_all_positions() == []
    # closing a short position buys it back
    sell(client, "MSFT", 4)
    order = client.close_position("MSFT", ClosePositionRequest(percentage="50"))
    assert order.side == OrderSide.BUY and float(order.qty) == 2
    assert float(client.get_open_position("MSFT").qty) == -2


def test_close_all_positions_with_cancel_orders(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    buy(client, "AAPL", 3)
    sell(client, "MSFT", 2)
    resting = far_limit(client, "TSLA", 1, 1.0)
    positions = client.get_all_positions()
    assert {p.symbol: float(p.qty) for p in positions} == {"AAPL": 3, "MSFT": -2}

    results = client.close_all_positions(cancel_orders=True)
    assert all(isinstance(r, ClosePositionResponse) for r in results)
    assert {r.symbol for r in results} == {"AAPL", "MSFT"}
    assert {r.status for r in results} == {200}
    for r in results:
        assert isinstance(r.body, Order) and r.order_id == r.body.id
    assert client.get_all_positions() == []
    assert client.get_order_by_id(resting.id).status == OrderStatus.CANCELED
    assert float(client.get_account().long_market_value) == 0


def test_close_all_positions_keeps_orders_without_cancel(make_sim: Factory) -> None:
    s = make_sim(**FROZEN)
    client = trading_client(s)
    buy(client, "AAPL", 3)
    resting = far_limit(client, "TSLA", 1, 1.0)
    results = client.close_all_positions()
    assert [r.symbol for r in results] == ["AAPL"]
    assert client.get_all_positions() == []
    assert client.get_order_by_id(resting.id).status == OrderStatus.NEW
