"""The simulated market: a seeded price process per symbol, its quotes and trades, and bar history.

Every random draw comes from a generator seeded by (seed, symbol), so the same seed gives the same
prices for a symbol whatever other symbols are simulated and however the ticks fall in time.
History (daily and minute bars for past sessions) is generated backwards from each symbol's start
price, so the live process continues exactly where the history ends.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy as np

from . import calendar, simclock
from .universe import Profile, profile

HISTORY_SESSIONS = 520  # about two years of daily bars (replay's "sim" data); minute bars for them on demand
_SECONDS_PER_SESSION = 23_400.0
_BUFFER = 512  # random draws pre-generated per symbol
LIVE_TRADES_KEPT = 200_000  # per symbol: live trades served by /v2/stocks/trades
LIVE_QUOTES_KEPT = 1_000_000  # quote cells (steps × symbols) served by /v2/stocks/quotes


def _rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator that depends only on the seed and the given parts (stable across processes)."""
    digest = hashlib.blake2b(":".join(map(str, (seed, *parts))).encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; `t` is the bar's start as epoch seconds (UTC)."""

    t: float
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's own short key
    c: float
    v: float
    n: int
    vw: float


@dataclass(frozen=True, slots=True)
class Trade:
    """One print: epoch seconds, price, size and its sequence number."""

    t: float
    p: float
    s: float
    i: int


@dataclass(frozen=True, slots=True)
class Quote:
    """One top-of-book quote: epoch seconds, bid and ask with their sizes."""

    t: float
    bp: float
    bs: float
    ap: float
    as_: float


@dataclass(slots=True)
class QuoteTick:
    """The quotes and trades one market step produced (arrays: steps × symbols)."""

    time: float
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    trade_mask: np.ndarray
    trade_price: np.ndarray
    trade_size: np.ndarray


@dataclass(slots=True)
class _MinuteBar:
    start: float
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float = 0.0
    n: int = 0
    notional: float = 0.0

    def add(self, price: float, size: float) -> None:
        self.h = max(self.h, price)
        self.l = min(self.l, price)
        self.c = price
        self.v += size
        self.n += 1
        self.notional += price * size

    def freeze(self) -> Bar:
        vw = self.notional / self.v if self.v else self.c
        return Bar(self.start, self.o, self.h, self.l, self.c, self.v, self.n, round(vw, 4))


def _cents_floor(x: np.ndarray) -> np.ndarray:
    return np.floor(x * 100.0 + 1e-9) / 100.0


@dataclass
class Market:
    """Live state of every symbol, advanced in whole quote steps by `step()`."""

    symbols: tuple[str, ...]
    seed: int
    quotes_per_second: float
    profiles: dict[str, Profile] = field(init=False)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.profiles = {s: profile(s, self.seed) for s in self.symbols}
        self.index = {s: i for i, s in enumerate(self.symbols)}
        n = len(self.symbols)
        self.mid = np.array([self.profiles[s].start_price for s in self.symbols], dtype=np.float64)
        self.open_price = self.mid.copy()
        vol = np.array([self.profiles[s].daily_vol for s in self.symbols])
        self._step_sigma = vol * math.sqrt(1.0 / (self.quotes_per_second * _SECONDS_PER_SESSION))
        self._spread = np.array([self.profiles[s].spread_bps for s in self.symbols]) / 1e4
        self._rngs = [_rng(self.seed, s, "live") for s in self.symbols]
        self._z = np.empty((n, _BUFFER))
        self._u = np.empty((3, n, _BUFFER))  # bid size, ask size, trade (chance and size)
        self._cursor = _BUFFER
        self.steps = 0
        self.bid, self.ask = self._touch(self.mid)
        self.bid_size = np.full(n, 100.0)
        self.ask_size = np.full(n, 100.0)
        self.last_price = self.mid.round(2)
        self.last_size = np.full(n, 100.0)
        self.quote_time = 0.0
        self.last_trade_time = np.zeros(n)
        self._minute: list[_MinuteBar | None] = [None] * n
        self.minute_bars: list[list[Bar]] = [[] for _ in range(n)]
        self.day_high = self.mid.copy()
        self.day_low = self.mid.copy()
        self.day_volume = np.zeros(n)
        self.today = simclock.today()  # history ends the day before; live bars continue from here
        self.live_trades: list[deque[Trade]] = [deque(maxlen=LIVE_TRADES_KEPT) for _ in range(n)]
        self.live_quotes: deque[QuoteTick] = deque()
        self._quote_cells = 0
        self._trade_seq = 0

    def _touch(self, mid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask around `mid` (symbols, or symbols × steps): each symbol's own spread."""
        relative = self._spread if mid.ndim == 1 else self._spread[:, None]
        spread = np.maximum(0.01, np.round(mid * relative, 2))
        bid = _cents_floor(mid - spread / 2)
        return bid, np.round(bid + spread, 2)

    def _draws(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The next k normal and uniform draws of every symbol (symbols × k)."""
        zs, us = [], []
        while k:
            if self._cursor == _BUFFER:
                for i, rng in enumerate(self._rngs):
                    self._z[i] = rng.standard_normal(_BUFFER)
                    self._u[:, i] = rng.random((3, _BUFFER))
                self._cursor = 0
            take = min(k, _BUFFER - self._cursor)
            # copies: a later refill in this same call overwrites the buffers in place
            zs.append(self._z[:, self._cursor : self._cursor + take].copy())
            us.append(self._u[:, :, self._cursor : self._cursor + take].copy())
            self._cursor += take
            k -= take
        return np.concatenate(zs, axis=1), np.concatenate(us, axis=2)

    def step(self, k: int, now: float) -> QuoteTick:
        """Advance every symbol by k quotes; return them, newest last (shape k × symbols)."""
        z, u = self._draws(k)
        paths = self.mid[:, None] * np.exp(np.cumsum(self._step_sigma[:, None] * z, axis=1))
        self.mid = paths[:, -1].copy()
        bid, ask = self._touch(paths)
        bid_size = np.floor(1 + u[0] * 20) * 100
        ask_size = np.floor(1 + u[1] * 20) * 100
        trade_mask = u[2] < 0.3  # about one quote in three comes with a trade
        trade_price = np.where(z > 0, ask, bid)
        trade_size = np.floor(1 + u[2] / 0.3 * 5) * 100
        self.bid, self.ask = bid[:, -1].copy(), ask[:, -1].copy()
        self.bid_size, self.ask_size = bid_size[:, -1].copy(), ask_size[:, -1].copy()
        self.quote_time = now
        self.steps += k
        self._record_trades(trade_mask, trade_price, trade_size, now)
        tick = QuoteTick(now, bid.T, ask.T, bid_size.T, ask_size.T, trade_mask.T, trade_price.T, trade_size.T)
        self._keep_quotes(tick)
        return tick

    def _keep_quotes(self, tick: QuoteTick) -> None:
        """Remember recent quotes for the historical endpoint, dropping the oldest beyond the cap."""
        self.live_quotes.append(tick)
        self._quote_cells += tick.bid.size
        while self._quote_cells > LIVE_QUOTES_KEPT and len(self.live_quotes) > 1:
            self._quote_cells -= self.live_quotes.popleft().bid.size

    def quotes_since_start(self, symbol: str) -> list[Quote]:
        """The live quotes still kept for `symbol`, oldest first."""
        j = self.index[symbol]
        return [
            Quote(tick.time, float(tick.bid[k, j]), float(tick.bid_size[k, j]), float(tick.ask[k, j]),
                  float(tick.ask_size[k, j]))
            for tick in self.live_quotes
            for k in range(tick.bid.shape[0])
        ]

    def _record_trades(self, mask: np.ndarray, price: np.ndarray, size: np.ndarray, now: float) -> None:
        minute = now - now % 60
        for i, j in zip(*np.nonzero(mask), strict=True):
            p, s = float(price[i, j]), float(size[i, j])
            bar = self._minute[i]
            if bar is None or bar.start != minute:
                if bar is not None:
                    self.minute_bars[i].append(bar.freeze())
                bar = self._minute[i] = _MinuteBar(minute, p, p, p, p)
            bar.add(p, s)
            self.last_price[i], self.last_size[i], self.last_trade_time[i] = p, s, now
            self._trade_seq += 1
            self.live_trades[i].append(Trade(now, p, s, self._trade_seq))
            self.day_high[i] = max(self.day_high[i], p)
            self.day_low[i] = min(self.day_low[i], p)
            self.day_volume[i] += s

    def close_minute(self, now: float) -> list[tuple[str, Bar]]:
        """Finish every minute bar that started before the current minute; return the new bars."""
        minute = now - now % 60
        done = []
        for i, bar in enumerate(self._minute):
            if bar is not None and bar.start < minute:
                frozen = bar.freeze()
                self.minute_bars[i].append(frozen)
                self._minute[i] = None
                done.append((self.symbols[i], frozen))
        return done

    def live_bars(self, symbol: str) -> list[Bar]:
        """Completed minute bars since the simulator started."""
        return self.minute_bars[self.index[symbol]]

    def today_bar(self, symbol: str, day_start: float) -> Bar | None:
        """Today's daily bar from the live process (None before the first trade)."""
        i = self.index[symbol]
        if not self.day_volume[i]:
            return None
        o = float(self.open_price[i])
        c = float(self.last_price[i])
        h, low = max(o, float(self.day_high[i])), min(o, float(self.day_low[i]))
        return Bar(day_start, o, h, low, c, float(self.day_volume[i]), int(self.day_volume[i] // 100), c)

    def history(self, symbol: str) -> History:
        return _history(symbol, self.seed, self.today)


@dataclass(frozen=True, eq=False)
class History:
    """Daily bars of the sessions before today, ending at the symbol's start price. Compared and
    hashed by identity (one per symbol, seed and day, from a cache): hashing its 520 sessions and
    bars on every minute-bar lookup cost more than making the bars."""

    symbol: str
    seed: int
    sessions: tuple[calendar.TradingDay, ...]
    daily: tuple[Bar, ...]

    def minute_bars(self, day: date) -> list[Bar]:
        return _minute_bars(self, day)


@lru_cache(maxsize=4096)
def _history(symbol: str, seed: int, today: date | None = None) -> History:
    today = today or simclock.today()
    sessions = tuple(calendar.previous_sessions(today, HISTORY_SESSIONS))
    prof = profile(symbol, seed)
    rng = _rng(seed, symbol, "daily")
    n = len(sessions)
    returns = rng.normal(0.0003, prof.daily_vol, n)
    gaps = rng.normal(0.0, prof.daily_vol * 0.3, n)
    wicks = np.abs(rng.normal(0.0, prof.daily_vol * 0.5, (n, 2)))
    volumes = np.round(rng.lognormal(math.log(2e6 * 100 / max(prof.start_price, 5)), 0.35, n), -2)
    later_returns = np.concatenate([np.cumsum(returns[::-1])[::-1][1:], [0.0]])
    closes = prof.start_price / np.exp(later_returns)  # the last close is the live start price
    bars = []
    for i, session in enumerate(sessions):
        c = round(float(closes[i]), 2)
        o = round(float((closes[i - 1] if i else c / math.exp(returns[0])) * math.exp(gaps[i])), 2)
        h = round(max(o, c) * math.exp(wicks[i, 0]), 2)
        low = round(min(o, c) * math.exp(-wicks[i, 1]), 2)
        v = float(volumes[i])
        midnight = datetime(session.date.year, session.date.month, session.date.day, tzinfo=calendar.EASTERN)
        bars.append(
            Bar(midnight.timestamp(), o, h, low, c, v, int(v // 150), round((o + h + low + c) / 4, 4))
        )
    return History(symbol, seed, sessions, tuple(bars))


@lru_cache(maxsize=4096)
def _session_index(hist: History) -> dict[date, int]:
    return {s.date: i for i, s in enumerate(hist.sessions)}


@dataclass(frozen=True)
class MinuteArrays:
    """One past session's minute bars as arrays (replay reads these; the bars endpoint, `Bar`s)."""

    start: np.ndarray  # each bar's start, epoch seconds
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - Alpaca's own short key
    c: np.ndarray
    v: np.ndarray
    vw: np.ndarray


def minute_arrays(hist: History, day: date) -> MinuteArrays | None:
    """Minute bars of one past session, aggregating exactly to that session's daily bar (None: no session)."""
    idx = _session_index(hist).get(day)
    if idx is None:
        return None
    session, daily = hist.sessions[idx], hist.daily[idx]
    minutes = int((session.close - session.open) / timedelta(minutes=1))
    rng = _rng(hist.seed, hist.symbol, "minutes", day.isoformat())
    walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(minutes))])
    bridge = walk - np.linspace(0, 1, minutes + 1) * walk[-1]
    span = max(daily.h - daily.l, 0.01)
    path = np.linspace(daily.o, daily.c, minutes + 1) + bridge / (np.ptp(bridge) or 1.0) * span * 0.8
    path = np.clip(path, daily.l, daily.h)
    path[0], path[-1] = daily.o, daily.c
    opens, closes = path[:-1], path[1:]
    hi = np.minimum(np.maximum(opens, closes) + np.abs(rng.normal(0, span * 0.02, minutes)), daily.h)
    lo = np.maximum(np.minimum(opens, closes) - np.abs(rng.normal(0, span * 0.02, minutes)), daily.l)
    hi[int(np.argmax(hi))] = daily.h
    lo[int(np.argmin(lo))] = daily.l
    weights = rng.gamma(2.0, 1.0, minutes) * (1 + 2 * np.abs(np.linspace(-1, 1, minutes)) ** 2)
    vols = np.floor(weights / weights.sum() * daily.v)
    vols[-1] += daily.v - vols.sum()
    start = session.open.timestamp() + 60.0 * np.arange(minutes)
    vwap = np.round((hi + lo + closes) / 3, 4)
    return MinuteArrays(start, np.round(opens, 2), np.round(hi, 2), np.round(lo, 2), np.round(closes, 2), vols, vwap)


@lru_cache(maxsize=8192)
def _minute_bars(hist: History, day: date) -> list[Bar]:
    """Minute bars of one past session, as the bars endpoint serves them."""
    bars = minute_arrays(hist, day)
    if bars is None:
        return []
    return [
        Bar(float(t), float(o), float(h), float(lo), float(c), float(v), max(1, int(v // 150)), float(vw))
        for t, o, h, lo, c, v, vw in zip(bars.start, bars.o, bars.h, bars.l, bars.c, bars.v, bars.vw, strict=True)
    ]
