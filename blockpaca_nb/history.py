"""Replay's market data: every symbol's quote at every tick of a stretch of history, as arrays.

Replay must be fast and deterministic, so the history a strategy is replayed over is loaded once
into a `Tape`: the tick times and, at each tick, every symbol's bid, ask and sizes (what
`ctx.get_current_data()` shows and what orders fill against), plus the minute bars the quotes were
made from (what `ctx.bars()` shows: only bars complete at the tick). Bars become quotes as the
issue of a bar-only history demands: a tick at each session's open (the first bar's open), then one
at each bar's end (its close), with bid and ask around that price at the symbol's spread.

Sources: the simulator's seeded history (`sim_tape`), bars or quotes in a DataFrame (`frame_tape`,
which Alpaca's bars and a recorded session's quote file also go through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigurationError, DataWarning

if TYPE_CHECKING:
    import pandas as pd

    from .sim.calendar import TradingDay
    from .sim.market import History

BAR_FIELDS = ("open", "high", "low", "close", "volume")
QUOTE_FIELDS = ("bid", "ask", "bid_size", "ask_size")
DEFAULT_SPREAD_BPS = 2.0  # a liquid stock's spread, for bars that come without quotes
SIZE_FLOOR = 100.0  # the smallest quote size a bar becomes (one round lot)


@dataclass(frozen=True)
class Tape:
    """Quotes of `symbols` at each of `times` (epoch seconds), and the minute bars they came from."""

    symbols: tuple[str, ...]
    times: np.ndarray  # (n,) tick times
    bid: np.ndarray  # (n, k)
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    bar_end: np.ndarray  # (m,) when each minute bar was complete
    bars: dict[str, np.ndarray]  # BAR_FIELDS → (m, k)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def mid(self) -> np.ndarray:
        """Every tick's mids (made on each call: a whole tape's worth)."""
        return (self.bid + self.ask) / 2

    def mids_at(self, i: int) -> list[float]:
        """The symbols' mids at tick `i`."""
        return ((self.bid[i] + self.ask[i]) / 2).tolist()


def quotes_from_prices(
    price: np.ndarray, volume: np.ndarray, spread_bps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bid and ask a whole cent apart at least, around `price` at each symbol's spread; a size
    from the bar's volume (a tenth of it in round lots, one lot at least)."""
    half = price * spread_bps / 20_000
    bid = np.floor((price - half) * 100 + 1e-9) / 100
    ask = np.maximum(np.ceil((price + half) * 100 - 1e-9) / 100, bid + 0.01)
    size = np.maximum(SIZE_FLOOR, np.floor(np.nan_to_num(volume) / 1000) * 100)
    return bid, np.round(ask, 2), size


def tape_from_bars(
    symbols: Sequence[str], start: np.ndarray, bars: dict[str, np.ndarray], spread_bps: np.ndarray
) -> Tape:
    """Ticks from minute bars starting at `start` (m,): each session's open, then every bar's close."""
    day = _new_york_days(start)
    first = np.ones(len(start), dtype=bool)
    first[1:] = day[1:] != day[:-1]
    at_close = np.arange(len(start)) + np.cumsum(first)  # where each bar's close tick goes
    at_open = at_close[first] - 1
    n = len(start) + int(first.sum())
    times = np.empty(n)
    times[at_close], times[at_open] = start + 60, start[first]
    price = np.empty((n, len(symbols)))
    price[at_close], price[at_open] = bars["close"], bars["open"][first]
    volume = np.empty_like(price)
    volume[at_close], volume[at_open] = bars["volume"], bars["volume"][first]
    bid, ask, size = quotes_from_prices(price, volume, spread_bps)
    return Tape(tuple(symbols), times, bid, ask, size, size.copy(), start + 60, bars)


def _new_york_days(epoch: np.ndarray) -> np.ndarray:
    """The New York calendar day of each instant, as a day number (to group ticks by session)."""
    import pandas as pd

    local = pd.to_datetime(epoch, unit="s", utc=True).tz_convert("America/New_York").tz_localize(None)
    return np.asarray(local.values.astype("datetime64[D]").astype(np.int64))


# =============================================================================== the simulator's history


def sim_tape(
    symbols: Sequence[str],
    start: date,
    end: date,
    seed: int,
    as_of: date | None = None,
    warm_up_days: int = 0,
    spread_bps: float | None = None,
) -> Tape:
    """The simulator's seeded minute bars from `start` to `end` (both included): the history its bars
    endpoint serves on `as_of` (default today), which ends where its live prices begin that day — the
    same `as_of` gives the same prices whatever day it runs. Bars from `warm_up_days` before `start`
    are there for `ctx.bars()`; ticks begin at `start`."""
    from .sim import calendar
    from .sim.market import _history
    from .sim.universe import profile

    today = as_of or datetime.now(calendar.EASTERN).date()
    histories = [_history(symbol, seed, today) for symbol in symbols]
    first = start - timedelta(days=warm_up_days)
    in_range = [s.date for s in histories[0].sessions if start <= s.date <= end]
    _check_sim_range(start, end, histories[0].sessions[0].date, today, in_range)
    bar_start, bars = _minute_bars_of(histories, [s for s in histories[0].sessions if first <= s.date <= end])
    spread = np.array([spread_bps or profile(s, seed).spread_bps for s in symbols])
    tape = tape_from_bars(symbols, bar_start, bars, spread)
    return starting_at(tape, _open_of(in_range[0])) if warm_up_days else tape


def _minute_bars_of(
    histories: Sequence[History], days: Sequence[TradingDay]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every symbol's minute bars of these sessions, written day by day into one array per field (a
    year of 10 symbols is 40 MB of bars: made without a second copy, nor a heap of day-sized pieces
    left behind), and when each bar starts."""
    from .sim.market import minute_arrays

    sizes = [int((day.close - day.open) / timedelta(minutes=1)) for day in days]
    bar_start = np.empty(sum(sizes))
    bars = {f: np.empty((len(bar_start), len(histories))) for f in BAR_FIELDS}
    for j, hist in enumerate(histories):
        row = 0
        for day, size in zip(days, sizes, strict=True):
            arrays = minute_arrays(hist, day.date)
            if arrays is None or len(arrays.start) != size:  # every symbol trades the same sessions
                raise RuntimeError(f"the simulator's history of {hist.symbol} has no full session on {day.date}")
            for f in BAR_FIELDS:
                bars[f][row : row + size, j] = getattr(arrays, f[0])
            bar_start[row : row + size] = arrays.start
            row += size
    return bar_start, bars


def _open_of(day: date) -> float:
    from .sim.calendar import session_on

    session = session_on(day)
    assert session is not None
    return session.open.timestamp()


def starting_at(tape: Tape, moment: float) -> Tape:
    """The tape's ticks from `moment` on; its bars are all kept (earlier ones are the past)."""
    lo = int(np.searchsorted(tape.times, moment, side="left"))
    return Tape(
        tape.symbols, tape.times[lo:], tape.bid[lo:], tape.ask[lo:], tape.bid_size[lo:], tape.ask_size[lo:],
        tape.bar_end, tape.bars,
    )  # fmt: skip


def _check_sim_range(start: date, end: date, first: date, today: date, sessions: list[date]) -> None:
    allowed = f"dates from {first} to the last session before {today} (as_of)"
    if start < first:
        raise ConfigurationError(f"start={start} is before the simulator's history; allowed: {allowed}")
    if end >= today:
        raise ConfigurationError(f"end={end} is not in the past; allowed: {allowed}")
    if start > end:
        raise ConfigurationError(f"start={start} is after end={end}; allowed: start on or before end")
    if not sessions:
        raise ConfigurationError(f"no trading session between start={start} and end={end}; allowed: {allowed}")


# =============================================================================== DataFrames


Window = tuple[date | None, date | None]  # the days replayed (New York), either end open


def frame_tape(
    frame: pd.DataFrame, symbols: Sequence[str], spread_bps: float = DEFAULT_SPREAD_BPS, window: Window = (None, None)
) -> Tape:
    """A tape from bars (open, high, low, close, volume) or quotes (bid, ask, bid_size, ask_size),
    one row per symbol and time: a (symbol, timestamp) index as alpaca-py's `.df` gives, or
    `symbol` and `timestamp` columns. Bars are minute bars stamped with their start. What it cannot
    use as given is said (a DataWarning) for the days of ``window``, the ones replayed."""
    long = _long_form(frame)
    missing = sorted(set(symbols) - set(long["symbol"]))
    if missing:
        raise ConfigurationError(f"data has no rows for {', '.join(missing)}; it has: {sorted(set(long['symbol']))}")
    mine = _with_days(long[long["symbol"].isin(symbols)])
    _warn_of_missing_days(mine, window)
    if {"bid", "ask"} <= set(long.columns):
        _warn_of_crossed(mine[_in_window(mine["day"], window)])
        return _quote_tape(long, symbols)
    if not set(BAR_FIELDS) - {"volume"} <= set(long.columns):
        raise ConfigurationError(
            f"data's columns {sorted(long.columns)} are neither bars nor quotes; allowed: "
            "open, high, low, close[, volume] or bid, ask[, bid_size, ask_size]"
        )
    _check_one_bar_each(long)
    wide = _wide(long, symbols, [f for f in BAR_FIELDS if f in long.columns])
    start = _epoch_seconds(wide.index)
    _check_minute_bars(start)
    bars = {f: wide[f].to_numpy(float) if f in wide else np.zeros((len(wide), len(symbols))) for f in BAR_FIELDS}
    return tape_from_bars(symbols, start, bars, np.full(len(symbols), float(spread_bps)))


def _with_days(long: pd.DataFrame) -> pd.DataFrame:
    """The rows with their New York day (midnight, as a Timestamp)."""
    from .sim.calendar import EASTERN

    return long.assign(day=long["timestamp"].dt.tz_convert(EASTERN).dt.normalize())


def _in_window(days: pd.Series | pd.DatetimeIndex, window: Window) -> np.ndarray:
    """Which of ``days`` are in ``window`` (New York dates, both included; None: open)."""
    import pandas as pd

    from .sim.calendar import EASTERN

    keep = np.ones(len(days), dtype=bool)
    if window[0] is not None:
        keep &= np.asarray(days >= pd.Timestamp(window[0], tz=EASTERN))
    if window[1] is not None:
        keep &= np.asarray(days <= pd.Timestamp(window[1], tz=EASTERN))
    return keep


def _warn_of_missing_days(long: pd.DataFrame, window: Window) -> None:
    """Say which symbols have no rows on a replayed day the data has others': before a symbol's first
    day the replay cannot start (nothing is filled backwards), after it the last price is carried
    through the day — orders fill at it. A quiet minute is no gap (minute bars skip minutes with no
    trade). A symbol's first day is its first in the whole data: one before ``start`` carries in."""
    import warnings

    import pandas as pd

    pairs = long[["symbol", "day"]].drop_duplicates()  # one row per symbol and day: millions of quotes are few days
    held = {symbol: set(group) for symbol, group in pairs["day"].groupby(pairs["symbol"].to_numpy())}
    every = sorted(pairs["day"].unique())
    replayed = {d for d, keep in zip(every, _in_window(pd.DatetimeIndex(every), window), strict=True) if keep}
    for symbol, its in sorted(held.items()):
        first = min(its)
        late = sorted(d for d in replayed if d < first)
        gaps = sorted(d for d in replayed - its if d > first)
        if late:
            warnings.warn(f"data= has no {symbol} rows before {first:%Y-%m-%d}: the replay starts there "
                          f"({len(late)} days of the others left out)", DataWarning, stacklevel=4)  # fmt: skip
        if gaps:
            shown = ", ".join(f"{d:%Y-%m-%d}" for d in gaps[:5]) + (" …" if len(gaps) > 5 else "")
            warnings.warn(f"data= has no {symbol} rows on {shown}: its last price is carried through "
                          f"{'that day' if len(gaps) == 1 else 'those days'}, and orders fill at it",
                          DataWarning, stacklevel=4)  # fmt: skip


def _check_one_bar_each(long: pd.DataFrame) -> None:
    """One bar per symbol and minute: of two, which one the replay used hung on their order."""
    twice = long.duplicated(["symbol", "timestamp"], keep=False)
    if twice.any():
        first = long[twice].iloc[0]
        raise ConfigurationError(
            f"data= has {int(twice.sum())} rows that share a symbol and a time (the first: {first['symbol']} at "
            f"{first['timestamp']}); allowed: one bar per symbol and minute — "
            "frame.drop_duplicates(['symbol', 'timestamp'], keep='last') keeps the last of each"
        )


def _check_minute_bars(start: np.ndarray) -> None:
    """Bars must be minute bars: a daily bar stamped at midnight would show its close all day long."""
    gaps = np.diff(start)
    step = float(np.min(gaps)) if len(gaps) else 60.0
    if step != 60.0:
        raise ConfigurationError(
            f"data= bars are {step:g} s apart; allowed: 1-minute bars (open, high, low, close[, volume]) stamped"
            " with their start, or quotes"
        )


def _long_form(frame: pd.DataFrame) -> pd.DataFrame:
    """symbol and timestamp as columns (UTC), whatever the frame had them as."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ConfigurationError("data= must be a non-empty DataFrame of bars or quotes")
    long = frame.reset_index() if isinstance(frame.index, pd.MultiIndex) else frame.copy()
    long = long.rename(columns={"bid_price": "bid", "ask_price": "ask", "time": "timestamp"})
    if not {"symbol", "timestamp"} <= set(long.columns):
        raise ConfigurationError(
            "data= needs a symbol and a timestamp for each row (columns or a (symbol, timestamp) index)"
        )
    for side in ("bid", "ask"):  # a side quoted at 0 or for 0 shares (IEX does that) is no quote
        if side in long.columns:
            values = pd.to_numeric(long[side], errors="coerce")
            quoted = np.isfinite(values) & (values > 0)
            size = f"{side}_size"
            if size in long.columns:
                sizes = pd.to_numeric(long[size], errors="coerce")
                quoted &= np.isfinite(sizes) & (sizes > 0)
                long[size] = sizes.where(quoted)  # carried forward with its price, never a size of 0
            long[side] = values.where(quoted)
    long["timestamp"] = _utc(long["timestamp"])
    return long


# A time of day followed by its zone: Z, +05:30, -0500 or -05 (as PostgreSQL writes it); a date alone is no time.
ZONED = r"\d\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


def _utc(stamps: pd.Series) -> pd.Series:
    """Timestamps in UTC: epoch seconds, or times with their zone. Times without one are refused, not
    guessed: read as UTC, a New York export replayed five hours early, trading before the open."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(stamps):
        return pd.to_datetime(stamps, unit="s", utc=True)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(stamps):
        zoned = np.zeros(len(stamps), dtype=bool)
    else:  # text or datetime objects, perhaps some with a zone and some without
        zoned = stamps.astype(str).str.contains(ZONED, regex=True).to_numpy()
    naive = ~zoned & stamps.notna().to_numpy()
    if naive.any():
        first = stamps[naive].iloc[0]
        raise ConfigurationError(
            f"data='s timestamps have no time zone (the first: {str(first)[:40]!r}); allowed: times with their zone or"
            " epoch seconds — say which zone, e.g. frame['timestamp'] = frame['timestamp'].dt.tz_localize("
            "'America/New_York') (or 'UTC'; alpaca-py's bars are in UTC)"
        )
    return pd.to_datetime(stamps, utc=True)


def _wide(long: pd.DataFrame, symbols: Sequence[str], fields: list[str]) -> pd.DataFrame:
    """One row per time, a (field, symbol) column each, carried forward over a symbol's gaps, from
    the first time every symbol has a value (nothing is filled backwards: that would look ahead)."""
    wide = long.pivot_table(index="timestamp", columns="symbol", values=fields, aggfunc="last")
    wide = wide.reindex(columns=[(f, s) for f in fields for s in symbols]).sort_index().ffill()
    complete = wide.notna().all(axis=1)
    if not complete.any():
        raise ConfigurationError("data= never has a value for every symbol at once")
    return wide[complete.to_numpy().argmax():]


def _quote_tape(long: pd.DataFrame, symbols: Sequence[str]) -> Tape:
    """A tick per quote time; minute bars of the mids, for `ctx.bars()`."""
    fields = [f for f in QUOTE_FIELDS if f in long.columns]
    wide = _wide(long, symbols, fields)
    times = _epoch_seconds(wide.index)
    bid, ask = wide["bid"].to_numpy(float), wide["ask"].to_numpy(float)
    sizes = {
        f: wide[f].to_numpy(float) if f in wide else np.full_like(bid, SIZE_FLOOR) for f in ("bid_size", "ask_size")
    }
    bar_end, bars = _mid_bars(wide.index, (bid + ask) / 2)
    return Tape(tuple(symbols), times, bid, ask, sizes["bid_size"], sizes["ask_size"], bar_end, bars)


def _warn_of_crossed(long: pd.DataFrame) -> None:
    """Quotes whose bid is above their ask: a buy fills under the price it could sell at at once."""
    import warnings

    crossed = long[(long["bid"] > long["ask"]).to_numpy()]
    if len(crossed):
        first = crossed.iloc[0]
        warnings.warn(f"data= has {len(crossed)} crossed quotes (bid above ask; the first: {first['symbol']} at "
                      f"{first['timestamp']}, {first['bid']:g} / {first['ask']:g}): orders fill at them as given",
                      DataWarning, stacklevel=4)  # fmt: skip


def _mid_bars(index: pd.DatetimeIndex, mid: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import pandas as pd

    frame = pd.DataFrame(mid, index=index).resample("1min")
    ohlc = {"open": frame.first(), "high": frame.max(), "low": frame.min(), "close": frame.last()}
    keep = ohlc["close"].notna().all(axis=1).to_numpy()
    bars = {f: v.to_numpy(float)[keep] for f, v in ohlc.items()}
    bars["volume"] = np.zeros_like(bars["close"])
    return _epoch_seconds(ohlc["close"].index)[keep] + 60, bars


def _epoch_seconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Epoch seconds of a DatetimeIndex, whatever its resolution (pandas 2 keeps s, ms, us or ns)."""
    return np.asarray(index.tz_convert("UTC").tz_localize(None).values.astype("datetime64[ns]").astype(np.int64)) / 1e9
