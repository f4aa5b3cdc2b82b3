"""The simulator tests' helpers: deadline polling, clients, stream recorders (the fixtures are in conftest.py).

Tests import these by name (`from sim_helpers import trading_client`); a module called `conftest` is
not importable reliably, since every test folder has one.

Every stream is driven by the real, unmodified alpaca-py client running in a background thread. The
recorders subclass the clients only to *observe* control messages (the `listening` and `subscription`
acknowledgements), which alpaca-py reads but does not hand to user handlers; the protocol behaviour is
the client's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psutil
import requests
import waiting
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar, Quote, Trade
from alpaca.trading.client import TradingClient
from alpaca.trading.models import TradeUpdate
from alpaca.trading.stream import TradingStream

from blockpaca_nb.sim import Simulator

T = TypeVar("T")

CHILD_MODULE = "blockpaca_nb.sim.child"


# ------------------------------------------------------------------ polling


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "") -> T:
    """The suite's shared wait (tests/waiting.py), under the name and ``interval=`` these tests use."""
    return waiting.wait_for(predicate, timeout, what, every=interval)


# ------------------------------------------------------------------ clients


def trading_client(sim: Simulator, secret: str | None = None) -> TradingClient:
    return TradingClient(sim.api_key, secret or sim.secret_key, url_override=sim.urls["trading"])


def data_client(sim: Simulator) -> StockHistoricalDataClient:
    return StockHistoricalDataClient(sim.api_key, sim.secret_key, url_override=sim.urls["data"])


def raw_session(sim: Simulator) -> requests.Session:
    """A plain `requests` session with the simulator's credentials (sees headers, never retries)."""
    session = requests.Session()
    session.headers.update({"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key})
    return session


# ------------------------------------------------------------------ stream recorders


class _ObservedTradingStream(TradingStream):
    """alpaca-py's TradingStream, noting each `listening` acknowledgement (one per connection)."""

    listening = 0

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("stream") == "listening":
            self.listening += 1
        await super()._dispatch(msg)


class _ObservedDataStream(StockDataStream):
    """alpaca-py's StockDataStream, noting each `subscription` acknowledgement (one per connection)."""

    subscriptions = 0

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("T") == "subscription":
            self.subscriptions += 1
        await super()._dispatch(msg)


def _stop_stream(stream: TradingStream | StockDataStream, thread: threading.Thread) -> None:
    """Stop an alpaca-py stream running in `thread` without waiting for its 5 s receive poll."""
    loop = stream._loop
    if loop is not None and loop.is_running():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stream.stop_ws(), loop).result(5)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stream.close(), loop).result(5)
    thread.join(10)
    assert not thread.is_alive(), "the alpaca-py stream thread did not stop"


class TradeUpdates:
    """Runs alpaca-py's TradingStream against a simulator and records every parsed TradeUpdate."""

    def __init__(self, sim: Simulator) -> None:
        self.updates: list[TradeUpdate] = []
        self.stream = _ObservedTradingStream(sim.api_key, sim.secret_key, url_override=sim.urls["trading_stream"])

        async def on_update(update: TradeUpdate) -> None:
            self.updates.append(update)

        self.stream.subscribe_trade_updates(on_update)
        self.thread = threading.Thread(target=self.stream.run, name="trading-stream", daemon=True)
        self.thread.start()
        try:
            self.wait_listening(1)
        except AssertionError:
            self.stop()
            raise

    def wait_listening(self, connections: int, timeout: float = 10.0) -> None:
        wait_for(lambda: self.stream.listening >= connections, timeout, what="the trade_updates listen ack")

    def events(self, order_id: Any) -> list[str]:
        return [u.event for u in self.updates if str(u.order.id) == str(order_id)]

    def of(self, order_id: Any) -> list[TradeUpdate]:
        return [u for u in self.updates if str(u.order.id) == str(order_id)]

    def wait_event(self, order_id: Any, event: str, timeout: float = 10.0) -> TradeUpdate:
        def found() -> TradeUpdate | None:
            return next((u for u in self.of(order_id) if u.event == event), None)

        return wait_for(found, timeout, what=f"{event!r} for order {order_id}")

    def stop(self) -> None:
        _stop_stream(self.stream, self.thread)


class MarketData:
    """Runs alpaca-py's StockDataStream (msgpack, parsed mode) and records what it delivers."""

    def __init__(
        self,
        sim: Simulator,
        quotes: tuple[str, ...] = (),
        trades: tuple[str, ...] = (),
        bars: tuple[str, ...] = (),
        url: str | None = None,
    ) -> None:
        self.quotes: list[Quote] = []
        self.trades: list[Trade] = []
        self.bars: list[Bar] = []
        self.stream = _ObservedDataStream(sim.api_key, sim.secret_key, url_override=url or sim.urls["data_stream"])

        async def on_quote(q: Quote) -> None:
            self.quotes.append(q)

        async def on_trade(t: Trade) -> None:
            self.trades.append(t)

        async def on_bar(b: Bar) -> None:
            self.bars.append(b)

        if quotes:
            self.stream.subscribe_quotes(on_quote, *quotes)
        if trades:
            self.stream.subscribe_trades(on_trade, *trades)
        if bars:
            self.stream.subscribe_bars(on_bar, *bars)
        self.thread = threading.Thread(target=self.stream.run, name="data-stream", daemon=True)
        self.thread.start()
        try:
            wait_for(lambda: self.stream.subscriptions >= 1, 10, what="the market-data subscription ack")
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        _stop_stream(self.stream, self.thread)


def simulator_children() -> list[psutil.Process]:
    """Simulator processes started (directly or not) by this test process and still alive."""
    found = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if CHILD_MODULE in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
    return found
