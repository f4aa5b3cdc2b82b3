"""`ctx.bars()` in a replay: the bars complete at the replayed moment, hour and day bars rolled up once.

A strategy reading 20 daily bars at every minute's tick had pandas resample the window's minute
bars on each call: 8 ms for three symbols, some 13 minutes over a year of minutes. Here the tape's
minute bars are rolled up once per timeframe: for every minute, the bar of its hour or its day so
far (the first open, the running high and low, the last close, the running volume). A call picks
rows — each earlier bar at its last minute, the current one at the replayed minute — and makes one
frame. Only minutes complete at `now` are read: no look-ahead (tests/engine/test_replay.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

    from .history import Tape

NEW_YORK = "America/New_York"
MINUTES = {"1Min": 1, "1Hour": 60, "1Day": 390}  # a timeframe's minutes (a regular session's day)


@dataclass(frozen=True)
class _RolledUp:
    """A timeframe's bars, rolled up from the minute bars (m minutes, p bars)."""

    fields: dict[str, np.ndarray]  # (m, k): each minute, its bar so far
    bar_of: np.ndarray  # (m,): each minute's bar
    last: np.ndarray  # (p,): each bar's last minute
    start: np.ndarray  # (p,): each bar's start, epoch seconds

    def rows(self, done: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The minutes whose rolled-up bars are the last `limit` bars once `done` minutes are complete
        (the last one so far), and those bars' starts."""
        if not done:
            return np.empty(0, dtype=np.intp), np.empty(0)
        current = int(self.bar_of[done - 1])
        first = max(0, current - limit + 1)
        return np.append(self.last[first:current], done - 1), self.start[first : current + 1]


class ReplayBars:
    """`ctx.bars()` over one tape: checks its arguments as live does, then reads the rolled-up bars."""

    def __init__(self, tape: Tape) -> None:
        self.tape = tape
        self._rolled: dict[str, _RolledUp] = {}

    def frame(self, symbols: str | Sequence[str], timeframe: str, limit: int, now: float) -> pd.DataFrame:
        """The last `limit` bars per symbol that were complete at `now` (the current hour's or day's so
        far), indexed by (symbol, timestamp) as alpaca-py's `.df`."""
        wanted = self._check(symbols, timeframe, limit)
        tape = self.tape
        done = int(np.searchsorted(tape.bar_end, now, side="right"))
        if timeframe == "1Min":
            rows = np.arange(max(0, done - limit), done)
            return _frame(tape, tape.bars, wanted, rows, tape.bar_end[rows] - 60, drop_empty=False)
        rolled = self._rolled.get(timeframe) or self._roll(timeframe)
        rows, starts = rolled.rows(done, limit)
        return _frame(tape, rolled.fields, wanted, rows, starts, drop_empty=True)

    def _check(self, symbols: str | Sequence[str], timeframe: str, limit: int) -> list[str]:
        if timeframe not in MINUTES:
            raise ConfigurationError(f"timeframe={timeframe!r} is not valid; allowed: {', '.join(MINUTES)}")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigurationError(f"limit={limit!r} is not valid; allowed: an integer >= 1")
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        unknown = [s for s in wanted if s not in self.tape.symbols]
        if unknown:
            allowed = ", ".join(self.tape.symbols)
            raise ConfigurationError(f"symbols {unknown} are not in this replay; allowed: {allowed}")
        return wanted

    def _roll(self, timeframe: str) -> _RolledUp:
        starts = _bar_starts(self.tape.bar_end - 60, timeframe)
        first = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
        bar_of = np.cumsum(np.r_[False, starts[1:] != starts[:-1]])
        last = np.r_[first[1:] - 1, len(starts) - 1]
        rolled = _RolledUp(_rolled_fields(self.tape.bars, bar_of), bar_of, last, starts[first])
        self._rolled[timeframe] = rolled
        return rolled


def _bar_starts(minute_starts: np.ndarray, timeframe: str) -> np.ndarray:
    """Each minute's hour or day bar's start (epoch seconds): New York's hours are whole UTC hours,
    its days begin at its midnight."""
    if timeframe == "1Hour":
        return minute_starts // 3600 * 3600
    import pandas as pd

    local = pd.to_datetime(minute_starts, unit="s", utc=True).tz_convert(NEW_YORK).normalize()
    return local.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[s]").astype(float)


def _rolled_fields(bars: dict[str, np.ndarray], bar_of: np.ndarray) -> dict[str, np.ndarray]:
    """For each minute, its bar so far: the first open, running high and low, last close, running volume
    (a minute without a value leaves the bar as it was)."""
    import pandas as pd

    def grouped(field: str) -> pd.core.groupby.DataFrameGroupBy:
        return pd.DataFrame(bars[field]).groupby(bar_of)

    seen = pd.DataFrame(np.isfinite(bars["open"]).astype(int)).groupby(bar_of).cumsum() > 0
    rolled = {
        "open": grouped("open").transform("first").where(seen),  # the bar's first open, once it has one
        "high": grouped("high").cummax(),
        "low": grouped("low").cummin(),
        "close": grouped("close").ffill(),
        "volume": grouped("volume").cumsum(),
    }
    filled = {name: frame.groupby(bar_of).ffill() if name in ("high", "low", "volume") else frame
              for name, frame in rolled.items()}  # fmt: skip
    return {name: filled[name].to_numpy(dtype=float) for name in bars if name in filled}


def _frame(
    tape: Tape, fields: dict[str, np.ndarray], wanted: list[str], rows: np.ndarray, starts: np.ndarray, drop_empty: bool
) -> pd.DataFrame:
    """One frame for the symbols `wanted`: their values at `rows`, each bar labelled with its start."""
    import pandas as pd

    columns = [tape.symbols.index(symbol) for symbol in wanted]
    times = pd.to_datetime(starts, unit="s", utc=True)
    n, m = len(rows), len(wanted)  # each level's values once, each row's place in them: no factorizing
    codes = [np.repeat(np.arange(m), n), np.tile(np.arange(n), m)]
    index = pd.MultiIndex(levels=[pd.Index(wanted), times], codes=codes, names=["symbol", "timestamp"])
    data = {name: values[rows][:, columns].T.ravel() for name, values in fields.items()}
    frame = pd.DataFrame(data, index=index)
    return frame[frame["close"].notna()] if drop_empty else frame
