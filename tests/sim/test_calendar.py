"""Tests for the NYSE session calendar and the Alpaca-compatible clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from blockpaca_nb.sim.calendar import (
    EASTERN,
    Clock,
    clock,
    is_trading_day,
    previous_sessions,
    session_on,
    sessions,
)


def et(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """Shorthand for an Eastern-time instant."""
    return datetime(y, mo, d, h, mi, tzinfo=EASTERN)


# ------------------------------------------------------------------ holidays


@pytest.mark.parametrize(
    "closed",
    [
        date(2024, 1, 1),  # New Year's Day
        date(2023, 1, 2),  # New Year's Day (Sunday) observed Monday
        date(2024, 1, 15),  # MLK Day
        date(2024, 2, 19),  # Washington's Birthday
        date(2024, 3, 29),  # Good Friday
        date(2025, 4, 18),  # Good Friday
        date(2000, 4, 21),  # Good Friday (Easter 2000-04-23)
        date(2024, 5, 27),  # Memorial Day
        date(2022, 6, 20),  # Juneteenth (Sunday) observed Monday
        date(2027, 6, 18),  # Juneteenth (Saturday) observed Friday
        date(2024, 7, 4),  # Independence Day
        date(2026, 7, 3),  # Independence Day (Saturday) observed Friday
        date(2021, 7, 5),  # Independence Day (Sunday) observed Monday
        date(2024, 9, 2),  # Labor Day
        date(2024, 11, 28),  # Thanksgiving
        date(2024, 12, 25),  # Christmas
        date(2027, 12, 24),  # Christmas (Saturday) observed Friday
        date(2022, 12, 26),  # Christmas (Sunday) observed Monday
    ],
)
def test_holidays_are_closed(closed: date) -> None:
    assert closed.weekday() < 5
    assert not is_trading_day(closed)
    assert session_on(closed) is None


@pytest.mark.parametrize(
    "open_day",
    [
        date(2021, 12, 31),  # New Year's 2022 falls on Saturday: NYSE does not observe it on Friday
        date(2022, 12, 30),  # Friday before New Year's 2023 (Sunday → observed Monday)
        date(2021, 6, 18),  # Juneteenth not yet an NYSE holiday in 2021
        date(1997, 1, 20),  # MLK Day not an NYSE holiday before 1998
        date(2024, 3, 28),  # day before Good Friday
        date(2024, 11, 29),  # day after Thanksgiving trades (early close)
        date(2026, 7, 6),  # Monday after observed Independence Day
    ],
)
def test_regular_weekdays_trade(open_day: date) -> None:
    assert is_trading_day(open_day)
    assert session_on(open_day) is not None


def test_weekends_do_not_trade() -> None:
    assert not is_trading_day(date(2022, 12, 31))  # Saturday
    assert not is_trading_day(date(2024, 11, 30))  # Saturday
    assert not is_trading_day(date(2024, 12, 1))  # Sunday


def test_holiday_count_per_year_is_stable_across_range() -> None:
    """Every year 1998–2100 has 9 or 10 weekday closures (10 from 2022 with Juneteenth)."""
    for year in range(1998, 2101):
        year_days = sessions(date(year, 1, 1), date(year, 12, 31))
        weekdays = sum(
            1
            for n in range((date(year, 12, 31) - date(year, 1, 1)).days + 1)
            if (date(year, 1, 1) + timedelta(days=n)).weekday() < 5
        )
        closures = weekdays - len(year_days)
        expected = {9, 10} if year >= 2022 else {8, 9}
        assert closures in expected, (year, closures)


# ------------------------------------------------------------------ sessions


def test_regular_session_hours() -> None:
    s = session_on(date(2024, 11, 26))
    assert s is not None
    assert s.open == et(2024, 11, 26, 9, 30)
    assert s.close == et(2024, 11, 26, 16)
    assert s.open.utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 11, 29),  # day after Thanksgiving
        date(2024, 12, 24),  # Christmas Eve
        date(2018, 12, 24),  # Christmas Eve on a Monday
        date(2024, 7, 3),  # July 3 (Wednesday)
        date(2023, 7, 3),  # July 3 (Monday)
        date(2017, 7, 3),  # July 3 (Monday)
    ],
)
def test_early_closes_at_one_pm(day: date) -> None:
    s = session_on(day)
    assert s is not None
    assert s.close.timetz().replace(tzinfo=None) == time(13, 0)
    assert s.close.tzinfo is EASTERN


def test_friday_before_monday_independence_day_closes_normally() -> None:
    # 2022-07-04 was a Monday, so July 3 was a Sunday and no early close applies.
    s = session_on(date(2022, 7, 1))
    assert s is not None and s.close == et(2022, 7, 1, 16)


def test_sessions_inclusive_range_skips_holidays() -> None:
    got = sessions(date(2024, 12, 23), date(2024, 12, 27))
    assert [s.date for s in got] == [date(2024, 12, d) for d in (23, 24, 26, 27)]
    assert [s.close.hour for s in got] == [16, 13, 16, 16]
    assert sessions(date(2024, 12, 27), date(2024, 12, 23)) == []


def test_previous_sessions_sixty_before_date() -> None:
    got = previous_sessions(date(2026, 11, 21), 60)
    assert len(got) == 60
    assert all(is_trading_day(s.date) for s in got)
    assert [s.date for s in got] == sorted({s.date for s in got})
    assert got[-1].date == date(2026, 11, 20)
    assert got == sessions(got[0].date, date(2026, 11, 20))


def test_previous_sessions_is_strictly_before_and_validates_count() -> None:
    assert [s.date for s in previous_sessions(date(2024, 12, 26), 2)] == [
        date(2024, 12, 23),
        date(2024, 12, 24),
    ]
    assert previous_sessions(date(2024, 12, 26), 0) == []
    with pytest.raises(ValueError, match="count"):
        previous_sessions(date(2024, 12, 26), -1)


# ------------------------------------------------------------------ clock: nyse


def test_nyse_clock_before_open() -> None:
    c = clock(et(2024, 11, 26, 8), "nyse")
    assert c == Clock(et(2024, 11, 26, 8), False, et(2024, 11, 26, 9, 30), et(2024, 11, 26, 16))


def test_nyse_clock_during_session() -> None:
    c = clock(et(2024, 11, 26, 10), "nyse")
    assert c.is_open
    assert c.next_close == et(2024, 11, 26, 16)
    assert c.next_open == et(2024, 11, 27, 9, 30)


def test_nyse_clock_boundaries_are_half_open() -> None:
    assert clock(et(2024, 11, 26, 9, 30), "nyse").is_open
    at_close = clock(et(2024, 11, 26, 16), "nyse")
    assert not at_close.is_open
    assert at_close.next_close == et(2024, 11, 27, 16)


def test_nyse_clock_after_close_skips_holiday_to_early_close() -> None:
    c = clock(et(2024, 11, 27, 16, 30), "nyse")
    assert not c.is_open
    assert c.next_open == et(2024, 11, 29, 9, 30)
    assert c.next_close == et(2024, 11, 29, 13)


def test_nyse_clock_after_early_close() -> None:
    c = clock(et(2024, 11, 29, 14), "nyse")
    assert not c.is_open
    assert c.next_open == et(2024, 12, 2, 9, 30)


def test_nyse_clock_on_weekend() -> None:
    c = clock(et(2024, 11, 30, 12), "nyse")
    assert not c.is_open
    assert c.next_open == et(2024, 12, 2, 9, 30)
    assert c.next_close == et(2024, 12, 2, 16)


def test_naive_now_is_utc_and_timestamp_is_eastern() -> None:
    c = clock(datetime(2024, 11, 26, 15, 0), "nyse")  # 10:00 EST
    assert c.is_open
    assert c.timestamp == et(2024, 11, 26, 10)
    assert c.timestamp.tzinfo is EASTERN


def test_nyse_clock_follows_daylight_saving() -> None:
    # 13:45 UTC is 08:45 EST on Friday 2024-03-08 but 09:45 EDT on Monday 2024-03-11.
    assert not clock(datetime(2024, 3, 8, 13, 45, tzinfo=UTC), "nyse").is_open
    assert clock(datetime(2024, 3, 11, 13, 45, tzinfo=UTC), "nyse").is_open


# ------------------------------------------------------------------ clock: always


def test_always_clock_open_on_weekend_with_real_next_times() -> None:
    c = clock(et(2024, 11, 30, 3), "always")
    assert c.is_open
    assert c.next_open == et(2024, 12, 2, 9, 30)
    assert c.next_close == et(2024, 12, 2, 16)


def test_always_clock_during_and_around_session() -> None:
    before = clock(et(2024, 11, 26, 7), "always")
    assert before.is_open
    assert (before.next_open, before.next_close) == (et(2024, 11, 26, 9, 30), et(2024, 11, 26, 16))
    during = clock(et(2024, 11, 26, 12), "always")
    assert (during.next_open, during.next_close) == (et(2024, 11, 27, 9, 30), et(2024, 11, 26, 16))
    evening = clock(et(2024, 11, 26, 20), "always")
    assert evening.is_open
    assert evening.next_close == et(2024, 11, 27, 16)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("bad", ["NYSE", "", "24/7", "extended"])
def test_unknown_market_hours_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="market_hours") as info:
        clock(et(2024, 11, 26, 10), bad)
    message = str(info.value)
    assert "'always'" in message
    assert "'nyse'" in message
