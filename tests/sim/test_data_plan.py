"""The free data plan's limits, historical trades and quotes, and the built-in universe's ETFs and
price levels — through the real alpaca-py clients (raw websockets only where alpaca-py cannot show
the server's answer)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.live import StockDataStream
from alpaca.data.requests import (
    StockBarsRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockQuotesRequest,
    StockTradesRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from sim_helpers import _stop_stream, data_client, trading_client, wait_for
from websockets.sync.client import ClientConnection, connect

from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.calendar import EASTERN, previous_sessions
from blockpaca_nb.sim.universe import KNOWN_PRICES, UNIVERSE

FORTY = UNIVERSE[:40]
LARGE_ETFS = ("SPY", "QQQ", "IWM", "DIA", "XLF", "XLK", "XLE", "XLV", "XLI", "XLY", "XLP", "XLU", "XLB", "XLRE", "XLC")


@pytest.fixture(scope="module")
def dsim() -> Iterator[Simulator]:
    with Simulator(FORTY, seed=11, quotes_per_second=20) as s:  # the default data plan: basic
        yield s


class _Observed(StockDataStream):
    """alpaca-py's StockDataStream, keeping the server's control messages (it only logs errors)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.control: list[dict[str, Any]] = []

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("T") in ("error", "subscription"):
            self.control.append(msg)
        await super()._dispatch(msg)


def run_stream(sim: Simulator, quotes: tuple[str, ...]) -> tuple[_Observed, threading.Thread]:
    stream = _Observed(sim.api_key, sim.secret_key, url_override=sim.urls["data_stream"])

    async def ignore(_quote: Any) -> None:
        return None

    stream.subscribe_quotes(ignore, *quotes)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    return stream, thread


def raw(sim: Simulator, path: str = "/v2/iex") -> ClientConnection:
    conn = connect(f"ws://127.0.0.1:{sim.port}{path}", open_timeout=5, close_timeout=1)
    assert json.loads(conn.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
    conn.send(json.dumps({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
    return conn


def control(conn: ClientConnection) -> dict[str, Any]:
    """The next control message (quotes and trades that arrive meanwhile are skipped)."""
    while True:
        for message in json.loads(conn.recv(timeout=5)):
            if message["T"] in ("success", "error", "subscription"):
                return message


def test_free_plan_streams_thirty_symbols(dsim: Simulator) -> None:
    stream, thread = run_stream(dsim, FORTY[:31])
    try:
        wait_for(lambda: stream.control, 10, what="the answer to 31 symbols")
        assert stream.control[0] == {"T": "error", "code": 405, "msg": "symbol limit exceeded"}
    finally:
        _stop_stream(stream, thread)
    with raw(dsim) as conn:  # the subscription stays as it was; bars are not limited
        assert control(conn) == {"T": "success", "msg": "authenticated"}
        conn.send(json.dumps({"action": "subscribe", "quotes": list(FORTY[:30])}))
        assert control(conn)["quotes"] == sorted(FORTY[:30])
        conn.send(json.dumps({"action": "subscribe", "trades": [FORTY[30]]}))
        assert control(conn) == {"T": "error", "code": 405, "msg": "symbol limit exceeded"}
        conn.send(json.dumps({"action": "subscribe", "trades": ["*"]}))
        assert control(conn) == {"T": "error", "code": 405, "msg": "symbol limit exceeded"}
        conn.send(json.dumps({"action": "subscribe", "bars": list(FORTY)}))
        ack = control(conn)
        assert ack["quotes"] == sorted(FORTY[:30]) and ack["trades"] == [] and ack["bars"] == sorted(FORTY)
        with raw(dsim) as second:  # one connection per key
            assert control(second) == {"T": "error", "code": 406, "msg": "connection limit exceeded"}


def test_free_plan_cannot_stream_sip(dsim: Simulator) -> None:
    with raw(dsim, "/v2/sip") as conn:
        assert control(conn) == {"T": "error", "code": 409, "msg": "insufficient subscription"}


def test_unlimited_plan_streams_more(make_sim: Any) -> None:
    sim = make_sim(FORTY, seed=11, quotes_per_second=1, data_plan="sip")
    stream, thread = run_stream(sim, FORTY)
    try:
        wait_for(lambda: stream.control, 10, what="the subscription ack")
        assert stream.control[0]["T"] == "subscription" and stream.control[0]["quotes"] == sorted(FORTY)
    finally:
        _stop_stream(stream, thread)
    recent = StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, feed=DataFeed.SIP)
    data_client(sim).get_stock_bars(recent)  # SIP up to now is allowed on the unlimited plan


def test_recent_sip_history_is_refused_on_the_free_plan(dsim: Simulator) -> None:
    data = data_client(dsim)
    now = datetime.now(EASTERN)
    sessions = previous_sessions(now.date(), 2)
    start, sip = sessions[0].open, DataFeed.SIP
    last_minute = sessions[-1].close - timedelta(minutes=1)
    for end in (None, now - timedelta(minutes=10)):
        for request in (
            StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=start, end=end, feed=sip),
            StockTradesRequest(symbol_or_symbols="AAPL", start=last_minute, end=end, feed=sip),
        ):
            with pytest.raises(APIError) as info:
                (data.get_stock_bars if isinstance(request, StockBarsRequest) else data.get_stock_trades)(request)
            message = "subscription does not permit querying recent SIP data"
            assert (info.value.status_code, info.value.code, info.value.message) == (403, 40310000, message)
    older = now - timedelta(minutes=16)
    assert data.get_stock_bars(
        StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=start, end=older, feed=DataFeed.SIP)
    ).data["AAPL"]
    for feed in (DataFeed.IEX, None):  # iex is the free plan's feed, and its default
        daily = StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=start, feed=feed)
        assert data.get_stock_bars(daily).data["AAPL"]


def test_historical_trades_and_quotes_match_the_bars(dsim: Simulator) -> None:
    """Past sessions: trades aggregate exactly to the minute bars; each trade is at its quote's bid or
    ask. Pagination: two symbols × five sessions is more than alpaca-py's 10 000-item page."""
    data = data_client(dsim)
    sessions = previous_sessions(datetime.now(EASTERN).date(), 5)
    start, end = sessions[0].open, sessions[-1].close
    symbols = ["AAPL", "ABBV"]
    trades = data.get_stock_trades(
        StockTradesRequest(symbol_or_symbols=symbols, start=start, end=end, feed=DataFeed.IEX)
    )
    minutes_per_session = [int((s.close - s.open).total_seconds() // 60) for s in sessions]
    assert {s: len(trades.data[s]) for s in symbols} == {s: 4 * sum(minutes_per_session) for s in symbols}
    day = sessions[-1]
    bars = data.get_stock_bars(
        StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=day.open, end=day.close)
    ).data["AAPL"]
    prints = [t for t in trades.data["AAPL"] if day.open <= t.timestamp < day.close]
    assert len(bars) == minutes_per_session[-1] and len(prints) == 4 * len(bars)
    for m, bar in enumerate(bars):
        minute = prints[4 * m : 4 * m + 4]
        assert all(bar.timestamp <= t.timestamp < bar.timestamp + timedelta(minutes=1) for t in minute)
        assert (minute[0].price, minute[-1].price) == (bar.open, bar.close)
        assert (max(t.price for t in minute), min(t.price for t in minute)) == (bar.high, bar.low)
        assert sum(t.size for t in minute) == bar.volume
    quote_request = StockQuotesRequest(symbol_or_symbols="AAPL", start=day.open, end=day.close)
    quotes = data.get_stock_quotes(quote_request).data["AAPL"]
    assert len(quotes) == len(prints)
    for quote, trade in zip(quotes, prints, strict=True):
        assert quote.timestamp < trade.timestamp and quote.bid_price < quote.ask_price
        assert trade.price in (quote.bid_price, quote.ask_price)


def test_live_trades_in_history_and_latest(dsim: Simulator) -> None:
    data = data_client(dsim)
    latest = wait_for(
        lambda: (t := data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"]).id and t,
        10,
        what="a live AAPL trade",
    )
    since = latest.timestamp - timedelta(seconds=30)
    live = data.get_stock_trades(StockTradesRequest(symbol_or_symbols="AAPL", start=since)).data["AAPL"]
    assert (latest.timestamp, latest.price, latest.size) in {(t.timestamp, t.price, t.size) for t in live}
    quotes = data.get_stock_quotes(StockQuotesRequest(symbol_or_symbols="AAPL", start=since)).data["AAPL"]
    assert quotes and all(q.bid_price < q.ask_price for q in quotes)


@pytest.mark.parametrize("seed", [0, 5])
def test_universe_has_the_etfs_and_real_price_levels(make_sim: Any, seed: int) -> None:
    sim = make_sim(None, seed=seed, quotes_per_second=0.5)
    client: TradingClient = trading_client(sim)
    assets = {a.symbol: a for a in client.get_all_assets()}
    for symbol in (*LARGE_ETFS, "AAPL", "MSFT", "NVDA"):
        assert assets[symbol].shortable and assets[symbol].easy_to_borrow and assets[symbol].fractionable, symbol
    wanted = StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "SPY", "QQQ"])
    quotes = data_client(sim).get_stock_latest_quote(wanted)
    for symbol, quote in quotes.items():
        assert abs(quote.ask_price / KNOWN_PRICES[symbol] - 1) < 0.07, (symbol, quote.ask_price)
    short = client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    filled = lambda: any(o["id"] == str(short.id) and o["status"] == "filled" for o in sim.orders())  # noqa: E731
    wait_for(filled, 10, what="the short sale of SPY")
    assert [p["qty"] for p in sim.positions() if p["symbol"] == "SPY"] == ["-1"]
