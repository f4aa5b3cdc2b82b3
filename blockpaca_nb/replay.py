"""Replay: the very function a session runs live, run over history on a virtual clock.

What makes a replay worth trusting is that nothing in it is a second implementation. The strategy
gets the live `Context` (quotes and its positions, `state`, `bars()` up to the replayed moment only,
`account()`, `now`); what it returns goes through the live validation (`parse_block`), gets a
client order id in the live format, and is submitted to the simulator's own `Broker` — Alpaca paper's
rules (wash-trade guard, one direction in flight, no flip in one order, market hours on the NYSE
calendar, asynchronous cancels, partial fills) — in this process, on the tape's clock. Every event
of that broker becomes a trade-log row in the live schema. The same data, seed and strategy give the
same trade log, byte for byte.

Speed is what makes it usable from a notebook: the loop does per tick only what the tick needs (the
broker matches only when orders are open, quotes are built only when the strategy asks), and the
equity curve and the trade log are built from compact records once the run is over
(replay_result.py).
"""

from __future__ import annotations

import functools
import queue
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigurationError
from .history import Tape, frame_tape, sim_tape
from .orders import Order, liquidation_orders, new_client_order_id, parse_block
from .sim.broker import ApiError, Broker
from .sim.calendar import EASTERN, session_on
from .sim.hours import MarketHours
from .sim.process import PROFILES
from .sim.universe import profile
from .strategy import Context, Strategy, StrategyError, parse_duration
from .tickers import normalize_tickers

if TYPE_CHECKING:
    import pandas as pd

    from .replay_result import ReplayResult

__all__ = ["replay"]

EOD_MARGIN_S = 30.0  # as live: a session that runs until "EOD" ends 30 s before the close
EOS_BEHAVIORS = ("liquidate", "hold", "custom")
MARKET_HOURS = ("nyse", "always")
ERRORS_KEPT = 1000  # a strategy failing on every tick of a year keeps its first errors, counts the rest
PROGRESS_EVERY = 2048  # ticks between progress-bar updates


@dataclass(frozen=True)
class Costs:
    """What trading costs beyond the quote: slippage against the trader, commission."""

    slippage_bps: float = 0.0
    commission_per_share: float = 0.0
    commission_per_order: float = 0.0


class _TapeMarket:
    """What the simulator's broker reads of a market (touch arrays, symbol index, asset flags), at
    the tape's current tick; orders fill against these quotes, moved by the slippage."""

    def __init__(self, tape: Tape, seed: int, slippage_bps: float) -> None:
        self.symbols = tape.symbols
        self.index = {s: i for i, s in enumerate(tape.symbols)}
        self.profiles = {s: profile(s, seed) for s in tape.symbols}
        slip = slippage_bps / 10_000
        self._bid, self._ask = (tape.bid * (1 - slip), tape.ask * (1 + slip)) if slip else (tape.bid, tape.ask)
        self._bid_size, self._ask_size = tape.bid_size, tape.ask_size
        self.at(0)

    def at(self, i: int) -> None:
        self.quotes_version = i  # the broker keeps its market values until the tick changes
        self.bid, self.ask = self._bid[i], self._ask[i]
        self.bid_size, self.ask_size = self._bid_size[i], self._ask_size[i]


class Replayer:
    """One replay run: the tape, the broker, the strategy's context, and the records of what happened."""

    def __init__(
        self,
        fn: Strategy,
        tape: Tape,
        *,
        every: float,
        starting_cash: float,
        seed: int,
        market_hours: str,
        eos_behavior: str,
        custom_shutdown_action: Strategy | None,
        daily_sessions: bool,
        costs: Costs,
        name: str,
    ) -> None:
        self.fn, self.tape, self.every, self.name, self.costs = fn, tape, every, name, costs
        self.tickers = list(tape.symbols)
        self.eos_behavior, self.custom = eos_behavior, custom_shutdown_action
        self.market = _TapeMarket(tape, seed, costs.slippage_bps)
        self.hours = MarketHours(market_hours)
        self.broker = Broker(
            self.market,  # type: ignore[arg-type]  # the broker reads only the touch, index and profiles
            starting_cash,
            self._on_event,
            hours=self.hours,
            rules=dict(PROFILES["paper"]),
            strict=True,
            seed=seed,
            new_id=self._new_id,
        )
        self.now, self.i, self._ids, self._serial = float(tape.times[0]), 0, 0, 0
        self.log: list[Any] = []  # ("result", dict) and ("event", ...) records, in order
        self.marks: list[tuple[int, int, float, float]] = []  # (tick, symbol, position after, cash after)
        self.fees: list[tuple[float, str, float]] = []  # (time, symbol, fee)
        self.errors: list[Any] = []
        self.error_count = 0
        self.state: dict[str, Any] = {}
        self.commands: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closes, self.eos_times = _session_bounds(tape.times, market_hours, daily_sessions)
        self.stopped_at = len(tape)  # the tick the run ended before
        self.interrupted = False
        self._quotes: dict[str, tuple[float, float, float, float]] = {}
        self._quotes_at, self._positions_at = -1, -1
        self._positions: list[dict[str, Any]] = []
        self.ctx = self._context()

    # ----------------------------------------------------------------- the loop
    def run(self, progress: bool = False) -> None:
        bar = _progress_bar(len(self.tape)) if progress else None
        try:
            self._loop(bar)
        except KeyboardInterrupt:  # the cell was interrupted: keep what was done, up to this tick
            self.interrupted, self.stopped_at = True, self.i + 1
        finally:
            if bar is not None:
                bar.update(self.stopped_at - bar.n)
                bar.close()

    def _loop(self, bar: Any) -> None:
        times, broker, market, hours = self.tape.times, self.broker, self.market, self.hours
        closes, eos_times = self.closes, self.eos_times
        next_close = closes.pop(0) if closes else float("inf")
        next_eos = eos_times.pop(0) if eos_times else float("inf")
        live, next_due = True, float(times[0])
        for i in range(len(times)):
            t = float(times[i])
            if t >= next_eos:  # a session ends between two ticks: the last quote is the touch
                self._eos(self.eos_behavior, next_eos, max(i - 1, 0))
                if not eos_times:
                    self.stopped_at = i
                    return
                next_eos, live = eos_times.pop(0), False
            self.i, self.now = i, t
            market.at(i)
            if t >= next_close:
                broker.expire_day_orders(next_close)
                next_close = closes.pop(0) if closes else float("inf")
            if broker.scheduled or broker.rematch:
                broker.run_due(t)
            if broker.open_orders:
                broker.on_market(t)
            if not live and hours.phase(t) == "regular":
                live = True  # the next day's session
            if live and t >= next_due:
                next_due = t + self.every
                if not self._tick(t):  # the strategy asked for its session's end (and got it)
                    if not eos_times or next_eos == float("inf"):
                        self.stopped_at = i + 1
                        return
                    live = False
            if bar is not None and not i % PROGRESS_EVERY:
                bar.update(i - bar.n)
        self._eos(self.eos_behavior, float(times[-1]), len(times) - 1)

    def _tick(self, t: float) -> bool:
        """Call the strategy and submit what it returned; False once it asked for the session's end."""
        try:
            returned = self.fn(self.ctx)
        except Exception as err:
            self._strategy_error(t, f"{type(err).__name__}: {err}")
            return True
        self.submit(returned, t)
        return self._run_commands(t)

    def _strategy_error(self, t: float, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(StrategyError(self.name, t, message, traceback.format_exc()))

    def _run_commands(self, t: float) -> bool:
        """blockpaca's command queue: an EOS action a strategy asked for ends the session now."""
        while not self.commands.empty():
            item = self.commands.get()
            command = item[0] if isinstance(item, tuple) else item
            if command in EOS_BEHAVIORS:
                self._eos(str(command), t, self.i)
                return False
            self._strategy_error(t, f"not a command: {item!r}; allowed: {EOS_BEHAVIORS}")
        return True

    # ----------------------------------------------------------------- orders
    def submit(self, orders: object, t: float, strategy: str | None = None) -> list[str]:
        """The live path: validate, then submit each valid order to the broker at `t`."""
        valid, problems = parse_block(orders, self.tickers)
        for problem in problems:
            self.errors.append(problem)
            self.log.append(("result", "validation_error", None, "", t, str(problem)))
        return [self._send(order, t, self.name if strategy is None else strategy) for order in valid]

    def _send(self, order: Order, t: float, strategy: str) -> str:
        self._serial += 1
        cid = new_client_order_id(order.action, 0, strategy, serial=f"{self._serial:08x}")
        slot = len(self.log)
        self.log.append(None)  # the submission's row comes before the events the broker emits for it
        try:
            placed = self.broker.submit(order.to_alpaca(cid), now=t)
            self.log[slot] = ("result", "accepted", order, cid, t, placed.id)
        except ApiError as err:
            self.log[slot] = ("result", "rejected", order, cid, t, err.message)
        return cid

    def _on_event(self, event: str, order: Any, extra: Mapping[str, Any]) -> None:
        fill = extra.get("qty") if extra else None
        if fill is None:
            self.log.append(("event", event, order, order.status, order.filled_qty, order.filled_notional,
                             order.updated_at, None, None, None))  # fmt: skip
            return
        position = float(extra.get("position_qty") or 0.0)
        self.log.append(("event", event, order, order.status, order.filled_qty, order.filled_notional,
                         order.updated_at, fill, extra.get("price"), position))  # fmt: skip
        self._charge(order, float(fill))
        self.marks.append((self.i, self.market.index[order.symbol], position, self.broker.cash))

    def _charge(self, order: Any, qty: float) -> None:
        """Commission, taken from cash at each fill (per order at its first)."""
        costs = self.costs
        fee = qty * costs.commission_per_share + (costs.commission_per_order if order.filled_qty == qty else 0.0)
        if fee:
            self.broker.cash -= fee
            self.fees.append((order.updated_at, order.symbol, fee))

    def _new_id(self) -> str:
        """Order and execution ids shaped like Alpaca's UUIDs, counted (so a rerun repeats them)."""
        self._ids += 1
        return f"00000000-0000-4000-8000-{self._ids:012x}"

    # ----------------------------------------------------------------- the end of a session
    def _eos(self, action: str, t: float, i: int) -> None:
        """The EOS action at `t`, against the quotes of tick `i`: liquidate cancels the open orders
        first (cancels take their latency, as on paper), then closes every position."""
        self.i, self.now = i, t
        self.market.at(i)
        if action == "hold":
            return
        if action == "custom":
            self._custom(t)
            return
        self.broker.cancel_all(t)
        t = self._settle(t)
        for order in liquidation_orders(p.as_blockpaca() for p in self.broker.positions.values()):
            self._send(order, t, "")
        self._settle(t)

    def _custom(self, t: float) -> None:
        if self.custom is None:
            return
        try:
            returned = self.custom(self.ctx)
        except Exception as err:
            self._strategy_error(t, f"{type(err).__name__}: {err}")
            return
        self.submit(returned, t, "")

    def _settle(self, t: float) -> float:
        """Let pending cancels take effect and partly filled orders fill on at the same quotes."""
        latency = float(self.broker.rules.get("cancel_latency_ms") or 0.0) / 1000
        for _ in range(100):
            if not (self.broker.scheduled or self.broker.rematch):
                break
            t += latency or 0.001
            self.now = t
            self.broker.run_due(t)
        return t

    # ----------------------------------------------------------------- the strategy's context
    def _context(self) -> Context:
        return Context(
            get_current_data=self.current_data,
            submit_order=lambda orders: self.submit(orders, self.now),
            shm_meta={},
            result_queue=None,
            command_queue=self.commands,
            state=self.state,
            bars=self.bars,
            account=self.account,
            strategy=self.name,
            clock=lambda: self.now,
        )

    def current_data(self) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
        """blockpaca's (quotes, positions) at the replayed tick; fresh dicts each call, as live."""
        if self._quotes_at != self.i:
            tape, i = self.tape, self.i
            rows = zip(self.tickers, tape.bid[i].tolist(), tape.ask[i].tolist(), tape.bid_size[i].tolist(),
                       tape.ask_size[i].tolist(), strict=True)  # fmt: skip
            self._quotes = {s: (b, a, bs, az) for s, b, a, bs, az in rows}
            self._quotes_at = i
        if self._positions_at != self.broker._fills:
            self._positions = [p.as_blockpaca() for p in self.broker.positions.values()]
            self._positions_at = self.broker._fills
        quotes = {s: {"bid": b, "ask": a, "bid_size": bs, "ask_size": az} for s, (b, a, bs, az) in self._quotes.items()}
        return quotes, [dict(p) for p in self._positions]

    def account(self) -> dict[str, Any]:
        broker = self.broker
        long_mv, short_mv = broker.market_values()
        equity = broker.cash + long_mv + short_mv
        return {
            "cash": broker.cash,
            "equity": equity,
            "portfolio_value": equity,
            "buying_power": broker.buying_power(),
            "long_market_value": long_mv,
            "short_market_value": short_mv,
            "status": "ACTIVE",
            "currency": "USD",
        }

    def bars(self, symbols: str | Sequence[str], timeframe: str = "1Day", limit: int = 100) -> pd.DataFrame:
        """Bars complete at the replayed moment, never later ones (no look-ahead)."""
        from .replay_result import bars_frame

        return bars_frame(self.tape, symbols, timeframe, limit, self.now)


def _session_bounds(times: np.ndarray, market_hours: str, daily: bool) -> tuple[list[float], list[float]]:
    """The closes inside the tape (day orders expire there) and when sessions end (EOS): 30 s before
    each close with daily sessions, else before the last one only (or at the tape's end)."""
    if market_hours == "always":
        return [], []
    import pandas as pd

    days = sorted(set(pd.to_datetime(times, unit="s", utc=True).tz_convert(EASTERN).date))
    sessions = [s for s in (session_on(d) for d in days) if s is not None]
    closes = [s.close.timestamp() for s in sessions if times[0] < s.close.timestamp() <= times[-1]]
    ends = [s.close.timestamp() - EOD_MARGIN_S for s in sessions]
    ends = [e for e in ends if times[0] < e <= times[-1]]
    return closes, (ends if daily else ends[-1:])


def _progress_bar(total: int) -> Any:
    """tqdm.auto's bar (a widget in a notebook), shown only once the replay has run a second."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="tick", delay=1.0, mininterval=0.5)


# =============================================================================== the public function


def replay(
    fn: Strategy,
    tickers: Sequence[str] | str,
    start: str | date | None = None,
    end: str | date | None = None,
    frequency: str | float = "1m",
    *,
    data: Any = "sim",
    starting_cash: float = 100_000.0,
    seed: int = 0,
    eos_behavior: str = "liquidate",
    custom_shutdown_action: Strategy | None = None,
    run_seconds: str | None = None,
    market_hours: str | None = None,
    slippage_bps: float = 0.0,
    commission_per_share: float = 0.0,
    commission_per_order: float = 0.0,
    spread_bps: float | None = None,
    progress: bool = True,
    name: str | None = None,
    **alpaca: Any,
) -> ReplayResult:
    """Run `fn` — the function you pass to `@s.strategy` — over history; see the README's Replay.

    ``data``: "sim" (the simulator's seeded minute bars, the last two years, no keys), "alpaca"
    (Alpaca's minute bars with your keys, cached on disk: api_key=, secret_key=, feed="iex",
    cache_dir=, urls=), a DataFrame of bars or quotes, or the path of a quote file a session recorded.
    ``frequency``: how often the strategy is called ("1m", "5m", "1h", seconds). ``run_seconds="EOD"``:
    every trading day is a session that ends 30 s before the close with ``eos_behavior``; otherwise
    the one session ends before the last close. Interrupting the cell returns what was done so far.
    """
    from .replay_result import ReplayResult

    symbols = normalize_tickers(tickers)
    every = float(parse_duration(frequency, "frequency"))
    if eos_behavior not in EOS_BEHAVIORS:
        raise ConfigurationError(f"eos_behavior={eos_behavior!r} is not valid; allowed: {', '.join(EOS_BEHAVIORS)}")
    if run_seconds not in (None, "EOD"):
        raise ConfigurationError(f"run_seconds={run_seconds!r} is not valid in a replay; allowed: None, 'EOD'")
    costs = Costs(
        _non_negative("slippage_bps", slippage_bps),
        _non_negative("commission_per_share", commission_per_share),
        _non_negative("commission_per_order", commission_per_order),
    )
    cash = _non_negative("starting_cash", starting_cash)
    tape, hours = load_tape(data, symbols, start, end, seed, spread_bps, market_hours, alpaca)
    runner = Replayer(
        fn,
        tape,
        every=every,
        starting_cash=cash,
        seed=int(seed),
        market_hours=hours,
        eos_behavior=eos_behavior,
        custom_shutdown_action=custom_shutdown_action,
        daily_sessions=run_seconds == "EOD",
        costs=costs,
        name=name if name is not None else _strategy_name(fn),
    )
    started = time.perf_counter()
    runner.run(progress)
    return ReplayResult.of(runner, time.perf_counter() - started)


def _strategy_name(fn: object) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_]", "_", str(getattr(fn, "__name__", "") or "strategy"))[:48]
    return "strategy" if name in ("", "session", "_lambda_") else name


def _non_negative(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"{field}={value!r} is not valid; allowed: a number >= 0")
    return float(value)


def load_tape(
    data: Any,
    symbols: list[str],
    start: str | date | None,
    end: str | date | None,
    seed: int,
    spread_bps: float | None,
    market_hours: str | None,
    alpaca: Mapping[str, Any],
) -> tuple[Tape, str]:
    """The tape for `data`, and the market hours it replays under ("nyse" unless told otherwise)."""
    import pandas as pd

    hours = market_hours or "nyse"
    if hours not in MARKET_HOURS:
        raise ConfigurationError(f"market_hours={market_hours!r} is not valid; allowed: {', '.join(MARKET_HOURS)}")
    if isinstance(data, str) and data == "sim":
        return _sim_tape(tuple(symbols), _date("start", start), _date("end", end), seed), hours
    if isinstance(data, str) and data == "alpaca":
        from .alpaca_history import alpaca_bars

        frame = alpaca_bars(symbols, _date("start", start), _date("end", end), **alpaca)
        return frame_tape(frame, symbols, spread_bps or 2.0), hours
    if isinstance(data, pd.DataFrame):
        return _clip(frame_tape(data, symbols, spread_bps or 2.0), start, end), hours
    if isinstance(data, str | bytes) or hasattr(data, "__fspath__"):
        return _clip(frame_tape(_read_quote_file(data), symbols), start, end), hours
    raise ConfigurationError(
        f"data={type(data).__name__} is not valid; allowed: 'sim', 'alpaca', a DataFrame, or a quote file's path"
    )


@functools.lru_cache(maxsize=2)
def _sim_tape(symbols: tuple[str, ...], start: date, end: date, seed: int) -> Tape:
    """The simulator's history, kept for the next replay of the same range (a sweep's worker runs many)."""
    return sim_tape(symbols, start, end, seed)


def _read_quote_file(path: Any) -> pd.DataFrame:
    import pathlib

    import pandas as pd

    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigurationError(
            f"data={str(path)!r} is not valid; allowed: 'sim', 'alpaca', a DataFrame, or a quote file that exists"
        )
    return pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)


def _clip(tape: Tape, start: str | date | None, end: str | date | None) -> Tape:
    """The part of a tape between `start` and `end` (dates in New York, both included)."""
    if start is None and end is None:
        return tape
    import pandas as pd

    days = pd.to_datetime(tape.times, unit="s", utc=True).tz_convert(EASTERN).date
    keep = np.ones(len(tape), dtype=bool)
    if start is not None:
        keep &= days >= _date("start", start)
    if end is not None:
        keep &= days <= _date("end", end)
    if not keep.any():
        raise ConfigurationError(f"the data has no ticks between start={start} and end={end}")
    lo, hi = int(keep.argmax()), len(keep) - int(keep[::-1].argmax())
    bar_keep = (tape.bar_end >= tape.times[lo]) & (tape.bar_end <= tape.times[hi - 1])
    return Tape(
        tape.symbols, tape.times[lo:hi], tape.bid[lo:hi], tape.ask[lo:hi], tape.bid_size[lo:hi],
        tape.ask_size[lo:hi], tape.bar_end[bar_keep], {f: v[bar_keep] for f, v in tape.bars.items()},
    )  # fmt: skip


def _date(field: str, value: str | date | None) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"{field}={value!r} is not valid; allowed: a date like '2026-01-02'") from None
