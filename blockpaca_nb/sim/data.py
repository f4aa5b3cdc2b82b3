"""Historical market data as Alpaca's `/v2/stocks/...` endpoints serve it: bars, trades and quotes
with pagination, latest quotes, trades and bars, and snapshots — all drawn from the simulated market,
under the limits of the account's data plan (a free plan may not query the last 15 minutes of SIP).

Past sessions' trades and quotes are derived from their minute bars (four prints a minute that
aggregate exactly to the bar); since the simulator started, they are the very prints it streamed."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import calendar, simclock
from .broker import ApiError, invalid
from .market import Bar, Market, Quote, Trade, _rng
from .wire import bar_json, ts

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT_SECONDS = {"Min": 60, "T": 60, "Hour": 3600, "H": 3600}
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
_CALENDAR_SPAN = (date(1970, 1, 1), date(2100, 12, 31))  # the years the session rules cover
DATA_PLANS: tuple[str, ...] = ("basic", "sip")  # Alpaca's free plan, and the paid one with SIP
FEEDS = frozenset({"iex", "sip", "delayed_sip"})  # the stock feeds the simulator serves
BASIC_STREAM_SYMBOLS = 30  # free plan: trades + quotes symbols per connection (bars unlimited)
RECENT_SIP_S = 15 * 60  # free plan: SIP data newer than this is refused
_PRINTS_PER_MINUTE = 4  # derived trades per past minute bar: open, high/low, low/high, close


def plan_limits(data_plan: str) -> int | None:
    """How many trade/quote symbols one stream connection may hold (None: no limit)."""
    return BASIC_STREAM_SYMBOLS if data_plan == "basic" else None


def check_feed(query: Mapping[str, str], data_plan: str, now: float) -> None:
    """Alpaca's answer to a feed the plan does not cover: 403 for SIP data of the last 15 minutes."""
    feed = query.get("feed") or ("sip" if data_plan == "sip" else "iex")
    if feed not in FEEDS:
        raise invalid(f"invalid feed: {feed[:20]!r}")
    if feed != "sip" or data_plan == "sip":
        return
    end = parse_time(query.get("end"), "end") or now
    if end > now - RECENT_SIP_S:
        raise ApiError(403, 40310000, "subscription does not permit querying recent SIP data")


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
    now = datetime.fromtimestamp(simclock.time(), calendar.EASTERN)
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


def _past_trades(market: Market, symbol: str, day: date) -> list[Trade]:
    """Prints of one past session: four per minute bar (open, high/low, low/high, close), sizes adding
    up to the bar's volume, so they aggregate exactly to the bars served for that session."""
    bars = market.history(symbol).minute_bars(day)
    coin = _rng(market.seed, symbol, "prints", day.isoformat()).random(len(bars))
    trades: list[Trade] = []
    for m, bar in enumerate(bars):
        middle = (bar.h, bar.l) if coin[m] < 0.5 else (bar.l, bar.h)
        size = int(bar.v // _PRINTS_PER_MINUTE)
        sizes = [size] * (_PRINTS_PER_MINUTE - 1) + [bar.v - size * (_PRINTS_PER_MINUTE - 1)]
        for k, price in enumerate((bar.o, *middle, bar.c)):
            when = bar.t + 60 * k / _PRINTS_PER_MINUTE + 1
            trades.append(Trade(when, price, float(sizes[k]), m * _PRINTS_PER_MINUTE + k + 1))
    return trades


def _past_quotes(market: Market, symbol: str, day: date) -> list[Quote]:
    """A quote just before each past print, the print at its ask or bid, with the symbol's spread."""
    spread_of = market.profiles[symbol].spread_bps / 1e4
    quotes: list[Quote] = []
    for k, trade in enumerate(_past_trades(market, symbol, day)):
        spread = max(0.01, round(trade.p * spread_of, 2))
        bid = round(trade.p - (spread if k % 2 else 0.0), 2)
        quotes.append(Quote(trade.t - 0.5, bid, 100.0, round(bid + spread, 2), 100.0))
    return quotes


def ticks_between(market: Market, kind: str, symbol: str, start: float, end: float) -> list[Any]:
    """Trades or quotes of `symbol` in [start, end]: derived for past sessions, recorded since."""
    history = market.history(symbol)
    first, last = (datetime.fromtimestamp(t, calendar.EASTERN).date() for t in (start, end))
    derive = _past_trades if kind == "trades" else _past_quotes
    items: list[Any] = []
    for session in history.sessions:
        if first <= session.date <= last:
            items.extend(derive(market, symbol, session.date))
    if kind == "trades":
        items.extend(market.live_trades[market.index[symbol]])
    else:
        items.extend(market.quotes_since_start(symbol))
    return [x for x in items if start <= x.t <= end]


def _trade_json(trade: Trade) -> dict[str, Any]:
    return {"t": ts(trade.t), "x": "V", "p": trade.p, "s": trade.s, "c": ["@"], "i": trade.i, "z": "C"}


def _quote_json(quote: Quote) -> dict[str, Any]:
    return {
        "t": ts(quote.t), "ax": "V", "ap": quote.ap, "as": quote.as_, "bx": "V", "bp": quote.bp,
        "bs": quote.bs, "c": ["R"], "z": "C",
    }


def history_page(market: Market, kind: str, query: Mapping[str, str]) -> dict[str, Any]:
    """GET /v2/stocks/{bars,trades,quotes}: one page, the limit counting items across symbols."""
    symbols = symbols_of(query, market)
    start = parse_time(query.get("start"), "start") or _today_start()
    end = parse_time(query.get("end"), "end") or simclock.time()
    if kind == "bars":
        timeframe = Timeframe.parse(query.get("timeframe"))
        return _page(kind, symbols, query, lambda s: bars_between(market, s, timeframe, start, end), bar_json)
    shape = _trade_json if kind == "trades" else _quote_json
    return _page(kind, symbols, query, lambda s: ticks_between(market, kind, s, start, end), shape)


def _page(
    kind: str,
    symbols: list[str],
    query: Mapping[str, str],
    items_of: Any,
    shape: Any,
) -> dict[str, Any]:
    """Alpaca's pagination: the limit counts items across all symbols; the token resumes a page."""
    limit = parse_limit(query.get("limit"))
    sort = query.get("sort", "asc").lower()
    if sort not in ("asc", "desc"):
        raise invalid("sort must be asc or desc")
    descending = sort == "desc"
    first_symbol, offset = _untoken(query["page_token"]) if query.get("page_token") else (0, 0)
    result: dict[str, list[dict[str, Any]]] = {}
    for index in range(first_symbol, len(symbols)):
        items = items_of(symbols[index])
        if descending:
            items.reverse()
        page = items[offset : offset + limit]
        if page:
            result[symbols[index]] = [shape(x) for x in page]
        limit -= len(page)
        if limit == 0:
            following = offset + len(page)
            if following < len(items):
                return {kind: result, "next_page_token": _token(index, following)}
            more = index + 1 < len(symbols)
            return {kind: result, "next_page_token": _token(index + 1, 0) if more else None}
        offset = 0
    return {kind: result, "next_page_token": None}


def _quote(market: Market, i: int) -> dict[str, Any]:
    return {
        "t": ts(market.quote_time or simclock.time()),
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
    when = float(market.last_trade_time[i]) or market.quote_time or simclock.time()
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
    today = simclock.today()
    try:
        start = date.fromisoformat(query["start"][:10]) if query.get("start") else today - timedelta(days=30)
        end = date.fromisoformat(query["end"][:10]) if query.get("end") else today + timedelta(days=30)
    except ValueError:
        raise invalid("start and end must be dates (YYYY-MM-DD)") from None
    if (end - start).days > 3660:
        raise invalid("calendar range is limited to ten years")
    first, last = _CALENDAR_SPAN
    return max(start, first), min(end, last)
