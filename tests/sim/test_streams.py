"""The two websockets: market data (alpaca-py's StockDataStream, and JSON for other clients) and the
trade_updates handshake."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from alpaca.data.models import Bar, Quote, Trade
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame
from sim_helpers import MarketData, data_client, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.universe import profile


def endpoint(sim: Simulator, path: str) -> str:
    return f"ws://127.0.0.1:{sim.port}{path}"


@contextmanager
def ws(url: str, msgpack_mode: bool = False) -> Iterator[ClientConnection]:
    headers = {"Content-Type": "application/msgpack"} if msgpack_mode else None
    with connect(url, additional_headers=headers, open_timeout=5, close_timeout=1) as conn:
        yield conn


def recv_json(conn: ClientConnection, timeout: float = 5) -> Any:
    frame = conn.recv(timeout=timeout)
    assert isinstance(frame, str), f"expected a JSON text frame, got {frame!r}"
    return json.loads(frame)


def recv_pack(conn: ClientConnection, timeout: float = 5) -> Any:
    frame = conn.recv(timeout=timeout)
    assert isinstance(frame, bytes), f"expected a msgpack binary frame, got {frame!r}"
    return msgpack.unpackb(frame)


@contextmanager
def authed_json(sim: Simulator, path: str) -> Iterator[ClientConnection]:
    """A JSON market-data connection, authenticated."""
    with ws(endpoint(sim, path)) as conn:
        assert recv_json(conn) == [{"T": "success", "msg": "connected"}]
        conn.send(json.dumps({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
        assert recv_json(conn) == [{"T": "success", "msg": "authenticated"}]
        yield conn


# ------------------------------------------------------------------ alpaca-py, parsed mode


def test_quotes_and_trades_parsed(sim: Simulator, market_data: Callable[..., MarketData]) -> None:
    md = market_data(sim, quotes=("AAPL", "MSFT"), trades=("AAPL",))
    wait_for(
        lambda: (
            sum(q.symbol == "MSFT" for q in md.quotes) >= 10
            and sum(q.symbol == "AAPL" for q in md.quotes) >= 10
            and md.trades
        ),
        15,
        what="quotes for AAPL and MSFT and a trade for AAPL",
    )
    now = datetime.now(UTC)
    assert {q.symbol for q in md.quotes} == {"AAPL", "MSFT"}
    assert {t.symbol for t in md.trades} == {"AAPL"}
    for q in md.quotes:
        assert isinstance(q, Quote)
        assert 0 < q.bid_price < q.ask_price and q.bid_size > 0 and q.ask_size > 0
        assert abs((now - q.timestamp).total_seconds()) < 30
    for t in md.trades:
        assert isinstance(t, Trade) and t.price > 0 and t.size > 0 and isinstance(t.id, int)
    for symbol in ("AAPL", "MSFT"):
        stamps = [q.timestamp for q in md.quotes if q.symbol == symbol]
        assert stamps == sorted(stamps)
    # what the stream says is what REST says
    rest = data_client(sim).get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="AAPL"))["AAPL"]
    last = [q for q in md.quotes if q.symbol == "AAPL"][-1]
    assert abs(rest.ask_price / last.ask_price - 1) < 0.01

    # unsubscribing stops that symbol's quotes (and is acknowledged)
    acks = md.stream.subscriptions
    md.stream.unsubscribe_quotes("MSFT")
    wait_for(lambda: md.stream.subscriptions > acks, 5, what="the unsubscribe ack")
    time.sleep(0.3)
    msft = sum(q.symbol == "MSFT" for q in md.quotes)
    aapl = sum(q.symbol == "AAPL" for q in md.quotes)
    wait_for(lambda: sum(q.symbol == "AAPL" for q in md.quotes) > aapl + 3, 5, what="more AAPL quotes")
    assert sum(q.symbol == "MSFT" for q in md.quotes) == msft


def test_quote_rate_follows_quotes_per_second(make_sim: Any, market_data: Callable[..., MarketData]) -> None:
    """At 100 quotes a second per symbol the market keeps pace (several steps per tick included),
    and every symbol is quoted with its own spread."""
    symbols = ("AAPL", "SPY", "NVDA")
    s = make_sim(symbols=list(symbols), quotes_per_second=100, seed=4)
    md = market_data(s, quotes=symbols)
    time.sleep(0.2)
    start, first = time.monotonic(), len(md.quotes)
    wait_for(lambda: time.monotonic() - start >= 1.5, 3)
    rate = (len(md.quotes) - first) / (time.monotonic() - start) / len(symbols)
    assert 70 <= rate <= 130, rate
    for symbol in symbols:
        spread_bps = profile(symbol, 4).spread_bps
        for q in [q for q in md.quotes if q.symbol == symbol][-50:]:
            expected = max(0.01, round((q.bid_price + q.ask_price) / 2 * spread_bps / 1e4, 2))
            assert abs(q.ask_price - q.bid_price - expected) <= 0.0101, (symbol, q)


def test_minute_bars_on_the_stream(sim: Simulator, minute_bar_watch: MarketData) -> None:
    """Bars arrive at the minute boundary: every symbol's bar, identical to what REST then serves."""
    wait_for(lambda: minute_bar_watch.bars, 70, interval=0.2, what="a minute bar (up to one minute)")
    first: Bar = minute_bar_watch.bars[0]
    minute = first.timestamp
    assert minute.second == 0 and minute.microsecond == 0
    time.sleep(0.2)  # the whole boundary's batch has landed
    streamed = {b.symbol: b for b in minute_bar_watch.bars if b.timestamp == minute}
    for bar in streamed.values():
        assert isinstance(bar, Bar)
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.volume > 0 and bar.trade_count and bar.vwap
    request = StockBarsRequest(
        symbol_or_symbols=list(sim.symbols), timeframe=TimeFrame.Minute, start=minute, end=minute
    )
    rest = data_client(sim).get_stock_bars(request).data
    assert {s: v[0] for s, v in rest.items()} == streamed


# ------------------------------------------------------------------ JSON clients


def test_json_mode_for_clients_without_msgpack(sim: Simulator) -> None:
    with authed_json(sim, "/v2/delayed_sip") as conn:  # a free plan may not stream /v2/sip
        conn.send(json.dumps({"action": "subscribe", "quotes": ["AAPL"], "trades": ["AAPL", "SPY"]}))
        ack = recv_json(conn)
        assert ack[0]["T"] == "subscription"
        assert ack[0]["quotes"] == ["AAPL"] and ack[0]["trades"] == ["AAPL", "SPY"]
        assert ack[0]["bars"] == []
        seen: dict[str, list[dict[str, Any]]] = {"q": [], "t": []}
        deadline = time.monotonic() + 15
        while (len(seen["q"]) < 5 or not seen["t"]) and time.monotonic() < deadline:
            for message in recv_json(conn):
                seen[message["T"]].append(message)
        assert len(seen["q"]) >= 5 and seen["t"]
        for q in seen["q"]:
            assert q["S"] == "AAPL"
            assert set(q) >= {"T", "S", "bp", "bs", "ap", "as", "t"}
            assert q["bp"] < q["ap"]
            stamp = datetime.fromisoformat(q["t"].replace("Z", "+00:00"))
            assert abs((datetime.now(UTC) - stamp).total_seconds()) < 30
        for t in seen["t"]:
            assert t["S"] in ("AAPL", "SPY") and t["p"] > 0 and isinstance(t["t"], str)


def test_msgpack_mode_uses_timestamp_extensions(make_sim: Any) -> None:
    sim = make_sim(quotes_per_second=20)
    with ws(endpoint(sim, "/v2/iex"), msgpack_mode=True) as conn:
        assert recv_pack(conn) == [{"T": "success", "msg": "connected"}]
        conn.send(msgpack.packb({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
        assert recv_pack(conn) == [{"T": "success", "msg": "authenticated"}]
        conn.send(msgpack.packb({"action": "subscribe", "quotes": ["SPY"]}))
        assert recv_pack(conn)[0]["T"] == "subscription"
        message = recv_pack(conn)[0]
        assert message["T"] == "q" and message["S"] == "SPY"
        assert isinstance(message["t"], msgpack.Timestamp)


def test_data_handshake_errors(sim: Simulator) -> None:
    path = "/v2/delayed_sip"
    # 402: unknown key or wrong secret, and the server hangs up (msgpack clients get msgpack)
    for key, secret, msgpack_mode in [("NOBODY", sim.secret_key, False), (sim.api_key, "wrong", True)]:
        with ws(endpoint(sim, path), msgpack_mode) as conn:
            receive = recv_pack if msgpack_mode else recv_json
            assert receive(conn) == [{"T": "success", "msg": "connected"}]
            auth = {"action": "auth", "key": key, "secret": secret}
            conn.send(msgpack.packb(auth) if msgpack_mode else json.dumps(auth))
            assert receive(conn) == [{"T": "error", "code": 402, "msg": "auth failed"}]
            with pytest.raises(ConnectionClosed):
                conn.recv(timeout=5)
    # 401: subscribing before authenticating
    with ws(endpoint(sim, path)) as conn:
        recv_json(conn)
        conn.send(json.dumps({"action": "subscribe", "quotes": ["AAPL"]}))
        assert recv_json(conn)[0]["code"] == 401

    with authed_json(sim, path) as first:
        # 406: a second connection with the same key on the same endpoint
        with ws(endpoint(sim, path)) as second:
            recv_json(second)
            second.send(json.dumps({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
            assert recv_json(second) == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]
            with pytest.raises(ConnectionClosed):
                second.recv(timeout=5)
        # 400: garbage after authenticating — reported, and the connection stays usable
        first.send("this is {not json")
        assert recv_json(first) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        first.send(b"\xc1\xff\x00")
        assert recv_json(first) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        first.send(json.dumps({"action": "subscribe", "quotes": "AAPL"}))
        assert recv_json(first)[0]["code"] == 400
        first.send(json.dumps({"action": "dance"}))
        assert recv_json(first)[0]["code"] == 400
        # 403: authenticating twice
        first.send(json.dumps({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
        assert recv_json(first)[0]["code"] == 403
        first.send(json.dumps({"action": "subscribe", "bars": ["AAPL"]}))
        assert recv_json(first)[0]["T"] == "subscription"
    # once the first connection is gone the key may connect again
    wait_for(lambda: _can_authenticate(sim, path), 5, what="the connection slot to free up")


def _can_authenticate(sim: Simulator, path: str) -> bool:
    with ws(endpoint(sim, path)) as conn:
        recv_json(conn)
        conn.send(json.dumps({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
        return recv_json(conn)[0]["T"] == "success"


# ------------------------------------------------------------------ trade_updates handshake


def test_trade_stream_authentication(sim: Simulator) -> None:
    url = sim.urls["trading_stream"]
    with ws(url) as conn:
        conn.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        reply = recv_json(conn)
        assert reply["stream"] == "authorization" and reply["data"]["status"] == "unauthorized"
        conn.send(json.dumps({"action": "authenticate", "data": {"key_id": sim.api_key, "secret_key": "wrong"}}))
        reply = recv_json(conn)
        assert reply == {"stream": "authorization", "data": {"action": "authenticate", "status": "unauthorized"}}
        conn.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert recv_json(conn)["data"]["status"] == "unauthorized"
    with ws(url) as conn:
        conn.send(json.dumps({"action": "authenticate", "data": {"key_id": sim.api_key, "secret_key": sim.secret_key}}))
        assert recv_json(conn) == {
            "stream": "authorization",
            "data": {"action": "authenticate", "status": "authorized"},
        }
        conn.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert recv_json(conn) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
        conn.send("garbage")
        assert recv_json(conn)["stream"] == "error"
