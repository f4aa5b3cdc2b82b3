"""NYSE trading sessions and an Alpaca-compatible market clock.

The simulator needs to know which days the exchange trades, when each session opens
and closes, and what Alpaca's ``/v2/clock`` endpoint would answer at any instant. All
holidays are derived from the exchange's published rules (no per-year tables and no
network access), so the calendar works offline for any year from 1990 to 2100.

Historical one-off closures (national days of mourning, 9/11, Hurricane Sandy) are not
rules and are therefore not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "EASTERN",
    "MARKET_HOURS_VALUES",
    "Clock",
    "TradingDay",
    "clock",
    "is_trading_day",
    "previous_sessions",
    "session_on",
    "sessions",
]

EASTERN = ZoneInfo("America/New_York")
MARKET_HOURS_VALUES: tuple[str, ...] = ("always", "nyse")

_OPEN = time(9, 30)
_CLOSE = time(16, 0)
_EARLY_CLOSE = time(13, 0)
_MON, _THU, _FRI, _SAT, _SUN = 0, 3, 4, 5, 6
_ONE_DAY = timedelta(days=1)
_MLK_FIRST_YEAR = 1998  # NYSE first closed for Martin Luther King Jr. Day in 1998.
_JUNETEENTH_FIRST_YEAR = 2022  # NYSE first closed for Juneteenth in 2022.
_MAX_SCAN_DAYS = 31  # No rule ever produces more than a few consecutive closed days.


@dataclass(frozen=True)
class TradingDay:
    """One NYSE trading day with its regular-hours open and close (Eastern time)."""

    date: date
    open: datetime
    close: datetime


@dataclass(frozen=True)
class Clock:
    """The answer Alpaca's ``/v2/clock`` would give at ``timestamp`` (all Eastern time)."""

    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


# --------------------------------------------------------------------------- holiday rules


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """Return the ``n``-th (1-based) ``weekday`` of a month, e.g. the 3rd Monday of January."""
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    """Return the last ``weekday`` of a month, e.g. the last Monday of May."""
    next_month = date(year + month // 12, month % 12 + 1, 1)
    last = next_month - _ONE_DAY
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _easter(year: int) -> date:
    """Return Western Easter Sunday using the anonymous Gregorian (Meeus/Jones/Butcher) algorithm."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _observed(d: date) -> date:
    """Shift a fixed-date holiday off the weekend: Saturday → Friday, Sunday → Monday."""
    if d.weekday() == _SAT:
        return d - _ONE_DAY
    if d.weekday() == _SUN:
        return d + _ONE_DAY
    return d


def _new_years_observed(year: int) -> date | None:
    """New Year's Day; on a Saturday NYSE does not close the preceding Friday (Dec 31)."""
    new_year = date(year, 1, 1)
    return None if new_year.weekday() == _SAT else _observed(new_year)


@lru_cache(maxsize=256)
def _holidays(year: int) -> frozenset[date]:
    """All full-day NYSE closures (as observed) that fall in ``year``."""
    days = {
        _nth_weekday(year, 2, _MON, 3),  # Washington's Birthday
        _easter(year) - timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, _MON),  # Memorial Day
        _observed(date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, _MON, 1),  # Labor Day
        _nth_weekday(year, 11, _THU, 4),  # Thanksgiving
        _observed(date(year, 12, 25)),  # Christmas
    }
    new_year = _new_years_observed(year)
    if new_year is not None:
        days.add(new_year)
    if year >= _MLK_FIRST_YEAR:
        days.add(_nth_weekday(year, 1, _MON, 3))
    if year >= _JUNETEENTH_FIRST_YEAR:
        days.add(_observed(date(year, 6, 19)))
    return frozenset(days)


@lru_cache(maxsize=256)
def _early_closes(year: int) -> frozenset[date]:
    """Trading days of ``year`` on which NYSE closes at 13:00 Eastern."""
    candidates = (
        _nth_weekday(year, 11, _THU, 4) + _ONE_DAY,  # day after Thanksgiving
        date(year, 12, 24),  # Christmas Eve
        date(year, 7, 3),  # eve of Independence Day
    )
    return frozenset(d for d in candidates if is_trading_day(d))


# --------------------------------------------------------------------------- sessions


def is_trading_day(d: date) -> bool:
    """True if NYSE holds a regular session on ``d`` (a weekday that is not a holiday)."""
    return d.weekday() < _SAT and d not in _holidays(d.year)


@lru_cache(maxsize=8192)
def session_on(d: date) -> TradingDay | None:
    """The session held on ``d``, or ``None`` on weekends and holidays (cached: it is hot)."""
    if not is_trading_day(d):
        return None
    close = _EARLY_CLOSE if d in _early_closes(d.year) else _CLOSE
    return TradingDay(
        date=d,
        open=datetime.combine(d, _OPEN, tzinfo=EASTERN),
        close=datetime.combine(d, close, tzinfo=EASTERN),
    )


def sessions(start: date, end: date) -> list[TradingDay]:
    """All sessions from ``start`` to ``end`` inclusive, oldest first (empty if end < start)."""
    found: list[TradingDay] = []
    day = start
    while day <= end:
        session = session_on(day)
        if session is not None:
            found.append(session)
        day += _ONE_DAY
    return found


def previous_sessions(before: date, count: int) -> list[TradingDay]:
    """The ``count`` sessions strictly before ``before``, oldest first (for warm-up history)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    found: list[TradingDay] = []
    day = before
    while len(found) < count:
        day -= _ONE_DAY
        session = session_on(day)
        if session is not None:
            found.append(session)
    found.reverse()
    return found


def _first_session_after(d: date) -> TradingDay:
    """The first session on a date strictly later than ``d``."""
    day = d
    for _ in range(_MAX_SCAN_DAYS):
        day += _ONE_DAY
        session = session_on(day)
        if session is not None:
            return session
    raise RuntimeError(f"no NYSE session within {_MAX_SCAN_DAYS} days after {d}")  # pragma: no cover


# --------------------------------------------------------------------------- clock


def _to_eastern(now: datetime) -> datetime:
    """Convert ``now`` to Eastern time, reading a naive datetime as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(EASTERN)


def _nyse_clock(now: datetime) -> Clock:
    """Alpaca's clock for regular NYSE hours."""
    today = session_on(now.date())
    if today is not None and now < today.close:
        is_open = now >= today.open
        upcoming_open = _first_session_after(today.date).open if is_open else today.open
        return Clock(timestamp=now, is_open=is_open, next_open=upcoming_open, next_close=today.close)
    upcoming = _first_session_after(now.date())
    return Clock(timestamp=now, is_open=False, next_open=upcoming.open, next_close=upcoming.close)


def _always_clock(now: datetime) -> Clock:
    """A clock that is always open but still reports real NYSE open/close times."""
    today = session_on(now.date())
    upcoming = _first_session_after(now.date())
    if today is None:
        return Clock(timestamp=now, is_open=True, next_open=upcoming.open, next_close=upcoming.close)
    next_open = today.open if now < today.open else upcoming.open
    next_close = today.close if now <= today.close else upcoming.close
    return Clock(timestamp=now, is_open=True, next_open=next_open, next_close=next_close)


def clock(now: datetime, market_hours: str) -> Clock:
    """What ``/v2/clock`` reports at ``now`` under the simulator's ``market_hours`` setting.

    ``"nyse"`` follows the real exchange schedule; ``"always"`` keeps the market open around
    the clock (handy for testing strategies at night) while ``next_open``/``next_close``
    still point at real NYSE session times so "run until the close" keeps a meaning.
    A naive ``now`` is interpreted as UTC.
    """
    if market_hours not in MARKET_HOURS_VALUES:
        allowed = ", ".join(repr(v) for v in MARKET_HOURS_VALUES)
        raise ValueError(f"market_hours must be one of {allowed}; got {market_hours!r}")
    eastern_now = _to_eastern(now)
    if market_hours == "nyse":
        return _nyse_clock(eastern_now)
    return _always_clock(eastern_now)
