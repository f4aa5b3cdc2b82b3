"""Fixtures for the simulator tests: shared and per-test simulators, stream recorders, and the check
that no simulator process outlives the run. The helpers they use live in sim_helpers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sim_helpers import MarketData, TradeUpdates, simulator_children, wait_for

from blockpaca_nb.sim import Simulator

# ------------------------------------------------------------------ simulators


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    """A shared simulator for tests that only read (market data, clock, assets, error answers)."""
    with Simulator(seed=7, quotes_per_second=10) as shared:
        yield shared


@pytest.fixture(scope="session")
def minute_bar_watch(sim: Simulator) -> Iterator[MarketData]:
    """A StockDataStream subscribed to every symbol's minute bars on the shared simulator.

    Minute bars only exist at minute boundaries, so this starts with the first test of the run (see
    `_start_minute_bar_watch_early`) and the test that checks it usually finds bars already there.
    It uses the `/v2/test` endpoint, leaving `/v2/iex` free for the other stream tests.
    """
    recorder = MarketData(sim, bars=("*",), url=sim.urls["data_stream"].replace("/v2/iex", "/v2/test"))
    yield recorder
    recorder.stop()


@pytest.fixture(scope="session", autouse=True)
def _start_minute_bar_watch_early(request: pytest.FixtureRequest, no_simulator_left_behind: None) -> None:
    if any("minute_bar_watch" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("minute_bar_watch")


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Start simulators with any settings; every one is stopped when the test ends."""
    started: list[Simulator] = []

    def make(*args: Any, **kwargs: Any) -> Simulator:
        simulator = Simulator(*args, **kwargs).start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        simulator.stop()


@pytest.fixture
def trade_updates() -> Iterator[Callable[[Simulator], TradeUpdates]]:
    """Open alpaca-py TradingStreams on simulators; each is stopped when the test ends."""
    opened: list[TradeUpdates] = []

    def open_(simulator: Simulator) -> TradeUpdates:
        recorder = TradeUpdates(simulator)
        opened.append(recorder)
        return recorder

    yield open_
    for recorder in opened:
        recorder.stop()


@pytest.fixture
def market_data() -> Iterator[Callable[..., MarketData]]:
    """Open alpaca-py StockDataStreams on simulators; each is stopped when the test ends."""
    opened: list[MarketData] = []

    def open_(simulator: Simulator, **kwargs: Any) -> MarketData:
        recorder = MarketData(simulator, **kwargs)
        opened.append(recorder)
        return recorder

    yield open_
    for recorder in opened:
        recorder.stop()


@pytest.fixture(scope="session", autouse=True)
def no_simulator_left_behind() -> Iterator[None]:
    """After the whole run, no simulator process may remain."""
    yield
    wait_for(lambda: not simulator_children(), 10, what="every simulator process to exit")
