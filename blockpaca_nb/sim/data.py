"""Historical market data as Alpaca's `/v2/stocks/...` endpoints serve it: bars with pagination,
latest quotes, trades and bars, and snapshots — all drawn from the simulated market."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import calendar
from .broker import invalid
from .market import Bar, Market
from .wire import bar_json, ts

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT_SECONDS = {"Min": 60, "T": 60, "Hour": 3600, "H": 3600}
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
_CALENDAR_SPAN = (date(1970, 1, 1), date(2100, 12, 31))  # the years the session rules cover


@dataclass(frozen=True)
class Timeframe:
    """A bar size: n minutes or hours (aggregated from minute bars) or one day."""

    seconds: int  # 0 means daily

    @classmethod
    def parse(cls, text: str | None) -> Timeframe:
        match = _TIMEFRAME.match(text or "")
        if not match:
            raise invalid(f"invalid timeframe: {str(text)[:20]!r}")
        amount, unit = int(match.group(1)), match.group(2)
        if unit in ("Day", "D") and amount == 1:
            return cls(0)
        if unit in _UNIT_SECONDS and 1 <= amount <= (59 if unit in ("Min", "T") else 23):
            return cls(amount * _UNIT_SECONDS[unit])
        raise invalid(f"timeframe {text!r} is not supported by the simulator (use nMin, nHour or 1Day)")


def parse_time(value: str | None, name: str) -> float | None:
    """An RFC-3339 timestamp or a YYYY-MM-DD date from a query string, as epoch seconds."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"invalid {name}: {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC if "T" in value else calendar.EASTERN)
    # keep far-off instants (years 1 or 9999 with an offset) convertible to any time zone
    return min(max(moment.timestamp(), _EARLIEST), _LATEST)


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise invalid(f"invalid limit: {value[:20]!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def symbols_of(query: Mapping[str, str], market: Market) -> list[str]:
    raw = query.get("symbols", "")
    symbols = [s.strip().upper() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise invalid("symbols is required")
    unknown = [s for s in symbols if s not in market.index]
    if unknown:
        raise invalid(f"unknown symbols: {', '.join(unknown[:10])}")
    return symbols


def _today_start() -> float:
    now = datetime.now(calendar.EASTERN)
    return datetime(now.year, now.month, now.day, tzinfo=calendar.EASTERN).timestamp()


def _aggregate(bars: list[Bar], seconds: int) -> list[Bar]:
    """Minute bars into n-second buckets aligned to the clock (as Alpaca aligns hour bars)."""
    out: list[Bar] = []
    group: list[Bar] = []
    for bar in bars:
        if group and bar.t - bar.t % seconds != group[0].t - group[0].t % seconds:
            out.append(_merge(group, seconds))
            group = []
        group.append(bar)
    if group:
        out.append(_merge(group, seconds))
    return out


def _merge(group: list[Bar], seconds: int) -> Bar:
    volume = sum(b.v for b in group)
    vwap = sum(b.vw * b.v for b in group) / volume if volume else group[-1].c
    start = group[0].t - group[0].t % seconds
    return Bar(
        start,
        group[0].o,
        max(b.h for b in group),
        min(b.l for b in group),
        group[-1].c,
        volume,
        sum(b.n for b in group),
        round(vwap, 4),
    )


def bars_between(market: Market, symbol: str, timeframe: Timeframe, start: float, end: float) -> list[Bar]:
    """Every bar of `symbol` that starts in [start, end]: past sessions, then the live ones."""
    history = market.history(symbol)
    if timeframe.seconds == 0:
        bars = [b for b in history.daily if start <= b.t <= end]
        today = market.today_bar(symbol, _today_start())
        if today and start <= today.t <= end:
            bars.append(today)
        return bars
    first, last = (datetime.fromtimestamp(t, calendar.EASTERN).date() for t in (start, end))
    minutes: list[Bar] = []
    for session in history.sessions:
        if first <= session.date <= last:
            minutes.extend(history.minute_bars(session.date))
    minutes.extend(market.live_bars(symbol))
    if timeframe.seconds > 60:
        minutes = _aggregate(minutes, timeframe.seconds)
    return [b for b in minutes if start <= b.t <= end]


def _token(symbol_index: int, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{symbol_index}:{offset}".encode()).decode()


def _untoken(token: str) -> tuple[int, int]:
    try:
        symbol_index, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        position = int(symbol_index), int(offset)
    except (ValueError, UnicodeDecodeError):
        raise invalid("invalid page_token") from None
    if min(position) < 0:
        raise invalid("invalid page_token")
    return position


def bars_page(market: Market, query: Mapping[str, str]) -> dict[str, Any]:
    """GET /v2/stocks/bars: the limit counts bars across all symbols; the token resumes a page."""
    symbols = symbols_of(query, market)
    timeframe = Timeframe.parse(query.get("timeframe"))
    start = parse_time(query.get("start"), "start") or _today_start()
    end = parse_time(query.get("end"), "end") or datetime.now(UTC).timestamp()
    limit = parse_limit(query.get("limit"))
    sort = query.get("sort", "asc").lower()
    if sort not in ("asc", "desc"):
        raise invalid("sort must be asc or desc")
    descending = sort == "desc"
    first_symbol, offset = _untoken(query["page_token"]) if query.get("page_token") else (0, 0)
    result: dict[str, list[dict[str, Any]]] = {}
    for index in range(first_symbol, len(symbols)):
        bars = bars_between(market, symbols[index], timeframe, start, end)
        if descending:
            bars.reverse()
        page = bars[offset : offset + limit]
        if page:
            result[symbols[index]] = [bar_json(b) for b in page]
        limit -= len(page)
        if limit == 0:
            following = offset + len(page)
            if following < len(bars):
                return {"bars": result, "next_page_token": _token(index, following)}
            more = index + 1 < len(symbols)
            return {"bars": result, "next_page_token": _token(index + 1, 0) if more else None}
        offset = 0
    return {"bars": result, "next_page_token": None}


def _quote(market: Market, i: int) -> dict[str, Any]:
    return {
        "t": ts(market.quote_time or None) or ts(datetime.now(UTC).timestamp()),
        "ax": "V",
        "ap": float(market.ask[i]),
        "as": float(market.ask_size[i]),
        "bx": "V",
        "bp": float(market.bid[i]),
        "bs": float(market.bid_size[i]),
        "c": ["R"],
        "z": "C",
    }


def _trade(market: Market, i: int) -> dict[str, Any]:
    when = float(market.last_trade_time[i]) or market.quote_time or datetime.now(UTC).timestamp()
    return {
        "t": ts(when),
        "x": "V",
        "p": float(market.last_price[i]),
        "s": float(market.last_size[i]),
        "c": ["@"],
        "i": market.steps,
        "z": "C",
    }


def latest(market: Market, kind: str, query: Mapping[str, str]) -> dict[str, Any]:
    """GET /v2/stocks/{quotes,trades,bars}/latest."""
    symbols = symbols_of(query, market)
    if kind == "quotes":
        return {"quotes": {s: _quote(market, market.index[s]) for s in symbols}}
    if kind == "trades":
        return {"trades": {s: _trade(market, market.index[s]) for s in symbols}}
    bars = {}
    for s in symbols:
        last = _last_minute_bar(market, s)
        if last:
            bars[s] = bar_json(last)
    return {"bars": bars}


def _last_minute_bar(market: Market, symbol: str) -> Bar | None:
    live = market.live_bars(symbol)
    if live:
        return live[-1]
    history = market.history(symbol)
    return history.minute_bars(history.sessions[-1].date)[-1]


def snapshots(market: Market, query: Mapping[str, str]) -> dict[str, Any]:
    """GET /v2/stocks/snapshots: a top-level map, one snapshot per symbol."""
    out: dict[str, Any] = {}
    for s in symbols_of(query, market):
        i = market.index[s]
        history = market.history(s)
        today = market.today_bar(s, _today_start())
        minute = _last_minute_bar(market, s)
        out[s] = {
            "latestTrade": _trade(market, i),
            "latestQuote": _quote(market, i),
            "minuteBar": bar_json(minute) if minute else None,
            "dailyBar": bar_json(today) if today else bar_json(history.daily[-1]),
            "prevDailyBar": bar_json(history.daily[-1] if today else history.daily[-2]),
        }
    return out


def calendar_range(query: Mapping[str, str]) -> tuple[date, date]:
    today = datetime.now(calendar.EASTERN).date()
    try:
        start = date.fromisoformat(query["start"][:10]) if query.get("start") else today - timedelta(days=30)
        end = date.fromisoformat(query["end"][:10]) if query.get("end") else today + timedelta(days=30)
    except ValueError:
        raise invalid("start and end must be dates (YYYY-MM-DD)") from None
    if (end - start).days > 3660:
        raise invalid("calendar range is limited to ten years")
    first, last = _CALENDAR_SPAN
    return max(start, first), min(end, last)
