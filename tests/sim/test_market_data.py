"""Historical and latest market data through alpaca-py's StockHistoricalDataClient."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import pytest
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.models import Bar, BarSet, Quote, Snapshot, Trade
from alpaca.data.requests import (
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from alpaca.trading.requests import GetCalendarRequest
from sim_helpers import data_client, raw_session, trading_client

from blockpaca_nb.sim import Simulator
from blockpaca_nb.sim.calendar import EASTERN


def today_start() -> datetime:
    """Midnight US/Eastern today, as an aware datetime: today's (live) daily bar is stamped there."""
    now = datetime.now(EASTERN)
    return datetime.combine(now.date(), time(0), tzinfo=EASTERN)


def history_end() -> datetime:
    """The last instant before today: `end` is inclusive, so this leaves every live bar out."""
    return today_start() - timedelta(seconds=1)


def past_sessions(sim: Simulator, days: int) -> list[date]:
    """Trading dates of the last `days` calendar days before today, per the simulator's calendar."""
    end = today_start().date() - timedelta(days=1)
    sessions = trading_client(sim).get_calendar(GetCalendarRequest(start=end - timedelta(days=days), end=end))
    return [s.date for s in sessions]


def minutes_in(sim: Simulator, start: date, end: date) -> int:
    sessions = trading_client(sim).get_calendar(GetCalendarRequest(start=start, end=end))
    return sum(int((s.close - s.open).total_seconds() // 60) for s in sessions)


@pytest.fixture(scope="module")
def data(sim: Simulator) -> StockHistoricalDataClient:
    return data_client(sim)


def bars(data: StockHistoricalDataClient, **kw: object) -> dict[str, list[Bar]]:
    result = data.get_stock_bars(StockBarsRequest(**kw))
    assert isinstance(result, BarSet)
    return result.data


def assert_ascending(series: list[Bar]) -> None:
    stamps = [b.timestamp for b in series]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


# ------------------------------------------------------------------ bars


def test_daily_history_covers_more_than_60_sessions(sim: Simulator, data: StockHistoricalDataClient) -> None:
    start = today_start() - timedelta(days=120)
    daily = bars(data, symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame.Day, start=start, end=history_end())
    expected = past_sessions(sim, 119)
    assert len(expected) >= 60
    for symbol in ("AAPL", "MSFT"):
        series = daily[symbol]
        assert [b.timestamp.astimezone(EASTERN).date() for b in series] == expected
        assert_ascending(series)
        for b in series:
            assert b.symbol == symbol
            assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
            assert b.volume > 0 and b.trade_count and b.vwap
            assert b.timestamp.astimezone(EASTERN).time() == time(0)  # Alpaca stamps daily bars at midnight ET
    # a year of history is there too
    year = bars(data, symbol_or_symbols="SPY", timeframe=TimeFrame.Day, start=today_start() - timedelta(days=366))
    assert len(year["SPY"]) >= 240


def test_minute_bars_for_a_past_session_aggregate_to_its_daily_bar(
    sim: Simulator, data: StockHistoricalDataClient
) -> None:
    day = past_sessions(sim, 10)[-1]
    start = datetime.combine(day, time(0), tzinfo=EASTERN)
    end = start + timedelta(hours=23, minutes=59)
    minutes = bars(data, symbol_or_symbols="TSLA", timeframe=TimeFrame.Minute, start=start, end=end)["TSLA"]
    assert len(minutes) == minutes_in(sim, day, day)
    assert_ascending(minutes)
    assert minutes[0].timestamp.astimezone(EASTERN).time() == time(9, 30)
    assert all(b.timestamp - a.timestamp == timedelta(minutes=1) for a, b in pairwise(minutes))
    (daily,) = bars(data, symbol_or_symbols="TSLA", timeframe=TimeFrame.Day, start=start, end=end)["TSLA"]
    assert minutes[0].open == daily.open and minutes[-1].close == daily.close
    assert max(b.high for b in minutes) == daily.high and min(b.low for b in minutes) == daily.low
    assert sum(b.volume for b in minutes) == daily.volume

    hours = bars(data, symbol_or_symbols="TSLA", timeframe=TimeFrame.Hour, start=start, end=end)["TSLA"]
    assert_ascending(hours)
    assert all(h.timestamp.minute == 0 for h in hours)
    for hour in hours:
        inside = [m for m in minutes if hour.timestamp <= m.timestamp < hour.timestamp + timedelta(hours=1)]
        assert inside, hour
        assert hour.open == inside[0].open and hour.close == inside[-1].close
        assert hour.high == max(m.high for m in inside) and hour.low == min(m.low for m in inside)
        assert hour.volume == sum(m.volume for m in inside)
    assert sum(h.volume for h in hours) == daily.volume

    five = bars(data, symbol_or_symbols="TSLA", timeframe=TimeFrame(5, TimeFrameUnit.Minute), start=start, end=end)
    assert len(five["TSLA"]) == len(minutes) // 5


def test_start_end_limit_and_sort(sim: Simulator, data: StockHistoricalDataClient) -> None:
    day = past_sessions(sim, 10)[-1]
    start = datetime.combine(day, time(10, 0), tzinfo=EASTERN)
    end = datetime.combine(day, time(10, 29), tzinfo=EASTERN)
    window = bars(data, symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=start, end=end)["AAPL"]
    assert len(window) == 30  # both ends inclusive
    assert window[0].timestamp == start and window[-1].timestamp == end
    first = bars(data, symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=start, end=end, limit=7)["AAPL"]
    assert first == window[:7]
    newest = bars(
        data, symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, start=start, end=end, limit=5, sort="desc"
    )
    assert newest["AAPL"] == window[::-1][:5]
    # a window with no session in it is an empty result, not an error
    saturday = start + timedelta(days=(5 - start.weekday()) % 7 or 7)
    empty = data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL",
            timeframe=TimeFrame.Minute,
            start=saturday.replace(hour=10),
            end=saturday.replace(hour=11),
        )
    )
    assert empty.data == {}


def test_multi_symbol_pagination_returns_every_bar_in_order(sim: Simulator, data: StockHistoricalDataClient) -> None:
    symbols = ["AAPL", "MSFT", "NVDA"]
    start = today_start() - timedelta(days=30)
    end = history_end()
    expected = minutes_in(sim, start.date(), end.date())
    assert 3 * expected > 20_000  # at least three pages of 10 000

    # the raw server really pages: a token after 10 000 bars
    params = {
        "symbols": ",".join(symbols),
        "timeframe": "1Min",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "limit": 10_000,
    }
    page = raw_session(sim).get(sim.urls["data"] + "/v2/stocks/bars", params=params).json()
    assert sum(len(v) for v in page["bars"].values()) == 10_000
    assert page["next_page_token"]

    result = bars(data, symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, start=start, end=end, feed=DataFeed.IEX)
    assert sorted(result) == sorted(symbols)
    for symbol in symbols:
        series = result[symbol]
        assert len(series) == expected, symbol
        assert_ascending(series)
        assert all(b.symbol == symbol for b in series)
    # the same minutes for every symbol
    assert [b.timestamp for b in result["AAPL"]] == [b.timestamp for b in result["NVDA"]]

    # a user limit across pages stops exactly there
    limited = bars(data, symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, start=start, end=end, limit=12_345)
    assert sum(len(v) for v in limited.values()) == 12_345
    assert limited["AAPL"] == result["AAPL"][: len(limited["AAPL"])]


def test_live_minute_bars_follow_history(sim: Simulator, data: StockHistoricalDataClient) -> None:
    """Bars since the simulator started come after the historical ones, with no overlap."""
    series = bars(data, symbol_or_symbols="SPY", timeframe=TimeFrame.Minute, start=today_start() - timedelta(days=5))
    assert_ascending(series["SPY"])
    assert series["SPY"][-1].timestamp <= datetime.now(UTC)


# ------------------------------------------------------------------ latest and snapshots


def test_latest_quote_trade_and_bar(sim: Simulator, data: StockHistoricalDataClient) -> None:
    symbols = ["AAPL", "MSFT"]
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbols))
    trades = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=symbols))
    latest_bars = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols=symbols))
    now = datetime.now(UTC)
    for symbol in symbols:
        q = quotes[symbol]
        assert isinstance(q, Quote) and q.symbol == symbol
        assert 0 < q.bid_price < q.ask_price and q.bid_size > 0 and q.ask_size > 0
        assert abs((now - q.timestamp).total_seconds()) < 10
        t = trades[symbol]
        assert isinstance(t, Trade) and t.symbol == symbol and t.price > 0 and t.size > 0
        assert t.timestamp <= now + timedelta(seconds=1)
        b = latest_bars[symbol]
        assert isinstance(b, Bar) and b.symbol == symbol
        assert b.low <= b.open <= b.high and b.low <= b.close <= b.high
        assert b.timestamp.second == 0 and b.timestamp < now
    # the quote is the one prices are computed from: close to the last trade
    assert abs(trades["AAPL"].price / quotes["AAPL"].ask_price - 1) < 0.05


def test_snapshots(sim: Simulator, data: StockHistoricalDataClient) -> None:
    snaps = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols=["AAPL", "SPY"]))
    assert sorted(snaps) == ["AAPL", "SPY"]
    for symbol, snap in snaps.items():
        assert isinstance(snap, Snapshot) and snap.symbol == symbol
        assert snap.latest_quote.bid_price < snap.latest_quote.ask_price
        assert snap.latest_trade.price > 0
        assert snap.minute_bar is not None and snap.daily_bar is not None and snap.previous_daily_bar is not None
        assert snap.previous_daily_bar.timestamp < snap.daily_bar.timestamp
    # the previous daily bar is the last historical session
    day = past_sessions(sim, 10)[-1]
    start = datetime.combine(day, time(0), tzinfo=EASTERN)
    (last,) = bars(data, symbol_or_symbols="SPY", timeframe=TimeFrame.Day, start=start, end=start)["SPY"]
    spy = snaps["SPY"]
    assert last in (spy.previous_daily_bar, spy.daily_bar)
