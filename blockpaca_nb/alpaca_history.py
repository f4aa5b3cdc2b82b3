"""Alpaca's historical minute bars for replay, fetched once through alpaca-py and cached on disk.

A replay is run again and again while a strategy is tuned, and a year of minute bars is many
requests, so each request's answer is kept as a Parquet file whose name is the request (feed,
timeframe, dates, symbols): the second replay of the same range reads the file and never touches
the network. `feed="iex"` by default, because every data plan (the free one included) may read it.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from .broker import read_keys
from .errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

FEEDS = ("iex", "sip")
DATA_URL = "https://data.alpaca.markets"


def cache_directory(given: str | os.PathLike[str] | None) -> pathlib.Path:
    """Where cached bars live: `cache_dir`, else $BLOCKPACA_CACHE, else ~/.cache/blockpaca_nb/bars."""
    base = given or os.environ.get("BLOCKPACA_CACHE") or pathlib.Path.home() / ".cache" / "blockpaca_nb"
    folder = pathlib.Path(base).expanduser() / "bars"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_name(symbols: list[str], start: date, end: date, feed: str) -> str:
    """The request in a file name (symbols hashed when there are many)."""
    names = "_".join(symbols)
    if len(names) > 60:
        names = f"{len(symbols)}symbols-{hashlib.sha256(names.encode()).hexdigest()[:12]}"
    return f"alpaca-{feed}-1Min-{start.isoformat()}-{end.isoformat()}-{names}.parquet"


def alpaca_bars(
    symbols: list[str],
    start: date,
    end: date,
    *,
    api_key: str | None = None,
    secret_key: str | None = None,
    feed: str = "iex",
    cache_dir: str | os.PathLike[str] | None = None,
    urls: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Minute bars from `start` to `end` (New York dates, both included), from the cache or Alpaca."""
    import pandas as pd

    if feed not in FEEDS:
        raise ConfigurationError(f"feed={feed!r} is not valid; allowed: 'iex' (any data plan), 'sip' (paid plan)")
    if end < start:
        raise ConfigurationError(f"end={end} is before start={start}")
    path = cache_directory(cache_dir) / cache_name(symbols, start, end, feed)
    if path.is_file():
        return pd.read_parquet(path)
    frame = _fetch(symbols, start, end, feed, api_key, secret_key, (urls or {}).get("data") or DATA_URL)
    spare = path.with_name(path.name + ".part")
    frame.to_parquet(spare)
    spare.replace(path)  # a cache file is whole or absent
    return frame


def _fetch(
    symbols: list[str], start: date, end: date, feed: str, api_key: str | None, secret_key: str | None, url: str
) -> pd.DataFrame:
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    key, secret = read_keys(api_key, secret_key)
    if not (key and secret):
        raise ConfigurationError(
            'data="alpaca" needs api_key and secret_key (or APCA_API_KEY_ID / APCA_API_SECRET_KEY);'
            ' without keys use data="sim"'
        )
    client = StockHistoricalDataClient(key, secret, url_override=url)
    request = StockBarsRequest(
        symbol_or_symbols=symbols,
        timeframe=TimeFrame.Minute,
        start=datetime.combine(start, time(0), tzinfo=UTC),
        end=datetime.combine(end + timedelta(days=1), time(4), tzinfo=UTC),
        feed=DataFeed.IEX if feed == "iex" else DataFeed.SIP,
    )
    frame: Any = client.get_stock_bars(request).df
    if frame.empty:
        raise ConfigurationError(f"Alpaca has no {feed} minute bars for {symbols} from {start} to {end}")
    return _regular_hours(frame)


def _regular_hours(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the bars of regular sessions: replay's ticks follow the NYSE calendar."""
    from .sim.calendar import session_on

    local = frame.index.get_level_values("timestamp").tz_convert("America/New_York")
    keep = [
        (day := session_on(moment.date())) is not None and day.open <= moment < day.close for moment in local
    ]
    return frame[keep]
