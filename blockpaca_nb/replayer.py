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

import dataclasses
import gc
import inspect
import math
import numbers
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .books import CONTROL_TAG, SESSION_BOOK, Books
from .control import sliver_note
from .errors import ConfigurationError
from .events import error_event, order_refused
from .fees import REGULATORY, FeeSchedule
from .history import DEFAULT_SPREAD_BPS, Tape, frame_tape, sim_tape
from .lineup import strategy_name
from .orders import (
    MINIMUM_ORDER_VALUE,
    Order,
    liquidation_orders,
    new_client_order_id,
    parse_block,
    strategy_from_client_order_id,
)
from .refusals import with_advice
from .replay_records import Records, entry_of
from .sim.broker import PROFILES, ApiError, Broker, SimOrder
from .sim.calendar import EASTERN, session_on
from .sim.hours import MarketHours
from .sim.universe import check_in_universe, profile
from .strategy import Context, Strategy, StrategyError, check_feed, check_takes_context, parse_duration
from .tickers import normalize_tickers

if TYPE_CHECKING:
    import pandas as pd

    from .replay_bars import ReplayBars
    from .replay_result import ReplayResult

__all__ = ["replay"]

EOD_MARGIN_S = 30.0  # as live: a session that runs until "EOD" ends 30 s before the close
EOS_BEHAVIORS = ("liquidate", "hold", "custom")
MARKET_HOURS = ("nyse", "always")
ERRORS_KEPT = 1000  # a strategy failing (or refused) on every tick of a year keeps its first errors, counts the rest
PROGRESS_EVERY = 2048  # ticks between progress-bar updates (and garbage-collector freezes)
INFINITY = float("inf")
LIQUIDATION_ROUNDS = 1000  # matches of a liquidation at the last quotes before giving up on being flat


@dataclass(frozen=True)
class Costs:
    """What trading costs beyond the quote: slippage against the trader, commission, and (to see
    what a live account would pay) Alpaca's regulatory fees."""

    slippage_bps: float = 0.0
    commission_per_share: float = 0.0
    commission_per_order: float = 0.0
    regulatory_fees: FeeSchedule | None = None


class _TapeMarket:
    """What the simulator's broker reads of a market (touch arrays, symbol index, asset flags), at
    the tape's current tick; orders fill against these quotes, moved by the slippage."""

    def __init__(self, tape: Tape, seed: int, slippage_bps: float, simulated: bool) -> None:
        self.symbols = tape.symbols
        self.index = {s: i for i, s in enumerate(tape.symbols)}
        # the simulator's own assets keep its flags; real symbols may be shorted and traded in fractions
        flags = {} if simulated else {"shortable": True, "fractionable": True}
        self.profiles = {s: dataclasses.replace(profile(s, seed), **flags) for s in tape.symbols}
        slip = slippage_bps / 10_000
        self._bid, self._ask = (tape.bid * (1 - slip), tape.ask * (1 + slip)) if slip else (tape.bid, tape.ask)
        self._bid_size, self._ask_size = tape.bid_size, tape.ask_size
        self._tape = tape
        self.at(0)

    def quoted(self, symbol: str) -> tuple[float, float]:
        """The symbol's bid and ask as quoted, before the slippage (what Alpaca's rules read)."""
        i, j = self.quotes_version, self.index[symbol]
        return float(self._tape.bid[i, j]), float(self._tape.ask[i, j])

    def at(self, i: int) -> None:
        self.quotes_version = i  # the broker keeps its market values until the tick changes
        self.bid, self.ask = self._bid[i].tolist(), self._ask[i].tolist()  # lists: the broker reads them often
        self.bid_size, self.ask_size = self._bid_size[i].tolist(), self._ask_size[i].tolist()


class Replayer:
    """One replay run: the tape, the broker, the strategy's context, and the records of what happened."""

    def __init__(
        self,
        strategies: Sequence[tuple[str, Strategy]],
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
        simulated: bool = True,
    ) -> None:
        self.strategies = list(strategies)
        self.tape, self.every, self.costs = tape, every, costs
        self._bars: ReplayBars | None = None  # ctx.bars(): made at the first call (most strategies make none)
        self._costs_charged = bool(costs.commission_per_share or costs.commission_per_order or costs.regulatory_fees)
        self.name = ", ".join(name for name, _ in self.strategies)
        self.tickers = list(tape.symbols)
        self.eos_behavior, self.custom = eos_behavior, custom_shutdown_action
        self.market = _TapeMarket(tape, seed, costs.slippage_bps, simulated)
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
        self.records = Records()  # submissions and broker events in order, a mark per fill
        self.errors: list[Any] = []
        self.error_count = 0
        self.states: dict[str, dict[str, Any]] = {name: {} for name, _ in self.strategies}
        # several strategies: each has a book (positions, P&L) made of its own orders' fills, as live
        self.books = Books(costs.regulatory_fees) if len(self.strategies) > 1 else None
        self.pnl_samples: list[tuple[float, dict[str, float]]] = []
        self.commands: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closes, self.eos_times, self.final_eos = _session_bounds(tape.times, market_hours, daily_sessions)
        self.stopped_at = len(tape)  # the tick the run ended before
        self.interrupted = False
        self._freezing = False  # set aside what the run keeps from the garbage collector (see _checkpoint)
        self._quotes: dict[str, tuple[float, float, float, float]] = {}
        self._quotes_at, self._positions_at = -1, -1
        self._positions: list[dict[str, Any]] = []
        self.contexts = [(name, fn, self._context(name)) for name, fn in self.strategies]

    # ----------------------------------------------------------------- the loop
    def run(self, progress: bool = False) -> None:
        bar = _progress_bar(len(self.tape)) if progress else None
        self._freezing = _may_freeze()
        try:
            self._loop(bar)
        except KeyboardInterrupt:  # the cell was interrupted: keep what was done, up to this tick
            self.interrupted, self.stopped_at = True, self.i + 1
        finally:
            if self._freezing:
                gc.unfreeze()
            if bar is not None:
                bar.update(self.stopped_at - bar.n)
                bar.close()

    def _checkpoint(self, bar: Any, i: int) -> None:
        """Every few thousand ticks: the progress bar, and what the run has kept so far (orders,
        records) set aside from the garbage collector's full passes, which would otherwise read the
        whole history again and again (a busy year: 2.2 s of 22 s, the cost growing with length)."""
        if self._freezing:
            gc.freeze()
        if bar is not None:
            bar.update(i - bar.n)

    def _loop(self, bar: Any) -> None:
        times, broker, market = self.tape.times, self.broker, self.market
        closes, ends = self.closes, self.eos_times
        next_close = closes.pop(0) if closes else INFINITY
        next_end = ends.pop(0) if ends else INFINITY
        live, resume_after, next_due = True, 0.0, float(times[0])
        for i in range(len(times)):
            t = float(times[i])
            if t >= next_end:  # a session ends between two ticks: the last quote is the touch
                if live:
                    self._eos(self.eos_behavior, next_end, max(i - 1, 0))
                if next_end == self.final_eos:
                    self.stopped_at = i
                    return
                live, resume_after = False, next_close
                next_end = ends.pop(0) if ends else INFINITY
            self.i, self.now = i, t
            market.at(i)
            if t >= next_close:
                broker.expire_day_orders(next_close)
                next_close = closes.pop(0) if closes else INFINITY
            if broker.scheduled or broker.rematch:
                broker.run_due(t)
            if broker.open_orders:
                broker.on_market(t)
            if not live and t > resume_after and self.hours.phase(t) == "regular":
                live = True  # the next day's session begins
            if live and t >= next_due:
                next_due = t + self.every
                if not self._tick(t):  # a strategy asked for the session's end, and got it
                    if next_end in (self.final_eos, INFINITY):  # it was the last session
                        self.stopped_at = i + 1
                        return
                    live, resume_after = False, next_close
            if not i % PROGRESS_EVERY:
                self._checkpoint(bar, i)
        if live:  # the data ends inside a session: it ends at the last tick
            self._eos(self.eos_behavior, float(times[-1]), len(times) - 1)

    def _tick(self, t: float) -> bool:
        """Call each strategy and submit what it returned; False once one asked for the session's end."""
        for name, fn, ctx in self.contexts:
            try:
                returned = fn(ctx)
            except Exception as err:
                self._strategy_error(name, t, f"{type(err).__name__}: {err}")
                continue
            self.submit(returned, t, name)
        if self.books is not None:
            self._sample_pnl(t)
        return self._run_commands(t)

    def _sample_pnl(self, t: float) -> None:
        """Each strategy's P&L now (the session's own book too, once it traded: a custom EOS action)."""
        assert self.books is not None
        pnl = self.books.pnl(self._marks())
        session = self.books.book(SESSION_BOOK)
        if session is None or not (session.fills or session.fees):
            pnl.pop(SESSION_BOOK, None)
        self.pnl_samples.append((t, pnl))

    def _strategy_error(self, name: str, t: float, message: str) -> None:
        self._error(lambda: StrategyError(name, t, message, traceback.format_exc()))

    def _error(self, make: Callable[[], Any]) -> None:
        """What live puts in ``s.errors`` (a strategy's exception, an order refused by validation or
        by the broker): counted, and the first ``ERRORS_KEPT`` made and kept."""
        self.error_count += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(make())

    def _run_commands(self, t: float) -> bool:
        """blockpaca's command queue: an EOS action a strategy asked for ends the session now."""
        while not self.commands.empty():
            item = self.commands.get()
            command = item[0] if isinstance(item, tuple) else item
            if command in EOS_BEHAVIORS:
                self._eos(str(command), t, self.i)
                while not self.commands.empty():  # the session has ended: what else was asked ends with it
                    self.commands.get()
                return False
            self._strategy_error("command_queue", t, f"not a command: {item!r}; allowed: {EOS_BEHAVIORS}")
        return True

    # ----------------------------------------------------------------- orders
    def submit(self, orders: object, t: float, strategy: str) -> list[str]:
        """The live path: validate, then submit each valid order to the broker at `t`."""
        valid, problems = parse_block(orders, self.tickers)
        for problem in problems:
            problem.strategy = strategy
            self._error(lambda problem=problem: problem)  # type: ignore[misc]
            given = {**problem.given, "strategy": strategy}
            self.records.refused(self.records.reserve(), "validation_error", given, "", t, str(problem))
        return [self._send(order, t, strategy) for order in valid]

    def _send(self, order: Order, t: float, strategy: str) -> str:
        self._serial += 1
        cid = new_client_order_id(order.action, 0, strategy, serial=f"{self._serial:08x}")
        slot = self.records.reserve()  # the submission's row comes before the events the broker emits for it
        try:
            self.records.accepted(slot, self._to_broker(order, cid, t), t)
        except ApiError as err:
            message = err.message
            self.records.refused(slot, "rejected", order, cid, t, message)
            self._error(lambda: broker_refusal(order, cid, strategy, message, t))
        except KeyboardInterrupt:  # the cell interrupted inside the broker: the row says what it holds
            taken = self.broker.by_client_id.get(cid)
            if taken is None:
                self.records.unused(slot)
            else:
                self.records.accepted(slot, taken, t)
            raise
        return cid

    def _to_broker(self, order: Order, cid: str, t: float) -> Any:
        """A simple order goes to the broker's rules as typed fields (what its JSON body would parse
        to: a test holds the two the same); one with exits goes as Alpaca's body."""
        if order.order_class != "simple":
            return self.broker.submit(order.to_alpaca(cid), now=t)
        return self.broker.take(typed_order(self.broker, order, cid, t), [], t)

    def _on_event(self, event: str, order: Any, extra: Mapping[str, Any]) -> None:
        fill = extra.get("qty") if extra else None
        if fill is None:
            self.records.event(event, order)
            return
        position, price = float(extra["position_qty"] or 0.0), extra["price"]  # a fill's extra has both
        self.records.fill_event(event, order, fill, price, position)
        costs = self._charge(order, float(fill), float(price or 0.0)) if self._costs_charged else 0.0
        self.records.fill(self.i, self.market.index[order.symbol], position, self.broker.cash, costs)
        if self.books is not None:
            self._book(order, float(fill), price, self._commission(order, float(fill)))

    def _book(self, order: Any, qty: float, price: Any, commission: float) -> None:
        """The fill goes to the book of the strategy that sent the order (a bracket's exit: its entry's),
        and so do its commission and regulatory fees; a session liquidation's go to the books it
        closes, each by its shares, as live (see Books)."""
        cid = entry_of(order, self.broker.orders) or order.client_order_id
        strategy = strategy_from_client_order_id(cid)
        row = {"fill_qty": qty, "fill_price": price, "side": order.side, "ticker": order.symbol,
               "strategy": strategy, "client_order_id": cid}  # fmt: skip
        assert self.books is not None
        self.books.apply(row, ended=not order.is_open, commission=commission)

    def _charge(self, order: Any, qty: float, price: float) -> float:
        """Commission and regulatory fees, taken from cash at each fill; what was taken."""
        schedule = self.costs.regulatory_fees
        taken = self._commission(order, qty) + (schedule.on_fill(order.side, qty, price) if schedule else 0.0)
        self.broker.cash -= taken
        return taken

    def _commission(self, order: Any, qty: float) -> float:
        """Per share at each fill, and per order at its first."""
        costs = self.costs
        return qty * costs.commission_per_share + (costs.commission_per_order if order.filled_qty == qty else 0.0)

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
            if not self._worth_an_order(order, t):
                continue
            self._send(order, t, CONTROL_TAG)  # as live: the session's liquidation closes the books holding
        self._until_flat(self._settle(t))
        if self.books is not None:
            self.books.settle_flat(self._marks())
            self._sample_pnl(t)

    def _worth_an_order(self, order: Order, t: float) -> bool:
        """As live: a position worth less than Alpaca's $1 minimum order is left open, and said."""
        closing = SimOrder(order.ticker, order.side, order.order_type, order.time_in_force, "", order.quantity,
                           id="", created_at=t)  # valued only: it takes no id from the run's counter  # fmt: skip
        value = self.broker.cost_basis(closing)
        if value >= MINIMUM_ORDER_VALUE:
            return True
        qty = float(order.quantity or 0.0) * (1 if order.side == "sell" else -1)
        self._error(lambda: error_event("liquidate", sliver_note(order.ticker, qty, value, None)) | {"time": t})
        return False

    def _custom(self, t: float) -> None:
        if self.custom is None:
            return
        try:
            returned = self.custom(self._custom_context())
        except Exception as err:
            self._strategy_error("custom_shutdown_action", t, f"{type(err).__name__}: {err}")
            return
        self.submit(returned, t, "")

    def _until_flat(self, t: float) -> None:
        """A liquidation larger than the quote's size fills on at the same quotes (live, the 30 s
        before the close bring new ones) until the account is flat."""
        suffix = f"-{CONTROL_TAG}"
        for _ in range(LIQUIDATION_ROUNDS):
            left = [o for o in self.broker.open_orders.values() if o.client_order_id.endswith(suffix)]
            fills = self.broker._fills
            if not left:
                return
            t += 0.001
            self.now = t
            for order in left:
                self.broker.match_order(order, t)
            self.broker.run_due(t)
            if self.broker._fills == fills:  # nothing fills at these quotes: it stays open, as on paper
                return

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
    def _context(self, name: str, state: dict[str, Any] | None = None) -> Context:
        return Context(
            get_current_data=lambda: self.current_data(name),
            submit_order=lambda orders: self.submit(orders, self.now, name),
            shm_meta={},
            result_queue=None,
            command_queue=self.commands,
            state=self.states[name] if state is None else state,
            bars=self.bars,
            account=self.account,
            account_positions=self.account_positions,
            strategy=name,
            clock=lambda: self.now,
        )

    def _custom_context(self) -> Context:
        """The custom action's context, as live: the session's own — the account's positions (every
        strategy's together), its orders the session's; the first strategy's state."""
        context = self._context("", state=self.contexts[0][2].state)
        context["get_current_data"] = lambda: (self.current_data("")[0], self.account_positions())
        return context

    def _marks(self) -> dict[str, float]:
        return dict(zip(self.tickers, self.tape.mids_at(self.i), strict=True))

    def current_data(self, strategy: str) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
        """blockpaca's (quotes, positions) at the replayed tick — the strategy's own positions (its
        book's, when several strategies share the account) — in fresh dicts each call, as live."""
        if self._quotes_at != self.i:
            tape, i = self.tape, self.i
            rows = zip(self.tickers, tape.bid[i].tolist(), tape.ask[i].tolist(), tape.bid_size[i].tolist(),
                       tape.ask_size[i].tolist(), strict=True)  # fmt: skip
            self._quotes = {s: (b, a, bs, az) for s, b, a, bs, az in rows}
            self._quotes_at = i
        quotes = {s: {"bid": b, "ask": a, "bid_size": bs, "ask_size": az} for s, (b, a, bs, az) in self._quotes.items()}
        if self.books is not None:
            return quotes, self.books.blockpaca_positions(strategy)
        return quotes, self.account_positions()

    def account_positions(self) -> list[dict[str, Any]]:
        """The account's net positions (every strategy's), blockpaca's schema."""
        if self._positions_at != self.broker._fills:
            self._positions = [p.as_blockpaca() for p in self.broker.positions.values()]
            self._positions_at = self.broker._fills
        return [dict(p) for p in self._positions]

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

    def bars(
        self, symbols: str | Sequence[str], timeframe: str = "1Day", limit: int = 100, feed: str = "iex"
    ) -> pd.DataFrame:
        """Bars complete at the replayed moment, never later ones (no look-ahead); from the replay's
        own history, whichever `feed` (checked as live) is named."""
        check_feed(feed)
        if self._bars is None:
            from .replay_bars import ReplayBars

            self._bars = ReplayBars(self.tape)
        return self._bars.frame(symbols, timeframe, limit, self.now)


def broker_refusal(order: Order, cid: str, strategy: str, message: str, t: float) -> dict[str, Any]:
    """A broker's refusal as ``r.errors`` holds it: the keys live's ``s.errors`` rows for it share
    (``timestamp`` as theirs, ``time`` as a limit's refusal's)."""
    reason = with_advice(message, order.ticker, order.side)
    return {**order_refused("rejected", order, reason, strategy, t), "client_order_id": cid, "timestamp": t}


def typed_order(broker: Broker, order: Order, cid: str, t: float) -> SimOrder:
    """The broker's order for a validated simple order: the fields its JSON body parses to (the
    validated numbers are already floats), built by position: a busy year builds 600 000."""
    typed = SimOrder(order.ticker, order.side, order.order_type, order.time_in_force, cid, order.quantity,
                     order.notional, order.limit_price, order.stop_price, id=broker.new_id(), created_at=t)  # fmt: skip
    return broker.check_shape(typed)


def _session_bounds(times: np.ndarray, market_hours: str, daily: bool) -> tuple[list[float], list[float], float | None]:
    """The closes inside the tape (day orders expire there), when sessions end (EOS, 30 s before a
    close: each day's with daily sessions, else only the last day's), and the EOS of the tape's last
    day if the tape reaches it (the run ends there; otherwise at the last tick)."""
    if market_hours == "always":
        return [], [], None
    import pandas as pd

    days = sorted(set(pd.to_datetime(times, unit="s", utc=True).tz_convert(EASTERN).date))
    sessions = [s for s in (session_on(d) for d in days) if s is not None]
    closes = [s.close.timestamp() for s in sessions if times[0] < s.close.timestamp() <= times[-1]]
    ends = [s.close.timestamp() - EOD_MARGIN_S for s in sessions]
    ends = [e for e in ends if times[0] < e <= times[-1]]
    last = sessions[-1].close.timestamp() - EOD_MARGIN_S if sessions else INFINITY
    final = last if last <= times[-1] else None
    if daily:
        return closes, ends, final
    return closes, ([final] if final is not None else []), final


def _may_freeze() -> bool:
    """Whether a run may set aside what it keeps from the garbage collector (gc.freeze is the whole
    process's): on the main thread (a notebook cell, a sweep's worker), with the collector on, and
    when nothing is frozen already (by the caller, or by a replay this one runs inside)."""
    return gc.isenabled() and not gc.get_freeze_count() and threading.current_thread() is threading.main_thread()


def _progress_bar(total: int) -> Any:
    """tqdm.auto's bar (a widget in a notebook), shown only once the replay has run a second."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="tick", delay=1.0, mininterval=0.5)


# =============================================================================== the public function


def replay(
    fn: Strategy | Mapping[str, Strategy] | Sequence[Strategy],
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
    regulatory_fees: bool | FeeSchedule = False,
    spread_bps: float | None = None,
    warm_up_days: int = 30,
    as_of: str | date | None = None,
    progress: bool = True,
    name: str | None = None,
    **alpaca: Any,
) -> ReplayResult:
    """Run `fn` — the function you pass to `@s.strategy` — over history; see the README's Replay.
    Several strategies (a list, or a dict of name -> function) share the account as live, each with
    its own book: `r.positions_by_strategy`, `r.pnl_by_strategy`.

    ``data``: "sim" (the simulator's seeded minute bars, the last two years before ``as_of``, default
    today; no keys), "alpaca" (Alpaca's minute bars with your keys, cached on disk: api_key=,
    secret_key=, feed="iex", cache_dir=, urls=), a DataFrame of minute bars or quotes, or the path of
    a quote file a session recorded. ``frequency``: how often the strategy is called ("1m", "5m",
    "1h", seconds). ``warm_up_days``: bars before ``start`` that ``ctx.bars()`` already shows.
    ``run_seconds="EOD"``: every trading day is a session that ends 30 s before the close with
    ``eos_behavior``; otherwise the one session ends before the last close. ``regulatory_fees=True``
    charges the fees a live account pays at each fill (Alpaca paper charges none), as commissions are;
    a ``blockpaca_nb.fees.FeeSchedule`` charges its rates instead of the ones Alpaca listed.
    Interrupting the cell returns what was done so far.
    """
    from .replay_result import ReplayResult

    symbols = normalize_tickers(tickers)
    strategies = _strategies(fn, name)
    every = float(parse_duration(frequency, "frequency"))
    _check_session_end(eos_behavior, custom_shutdown_action, run_seconds)
    costs = Costs(
        _non_negative("slippage_bps", slippage_bps),
        _non_negative("commission_per_share", commission_per_share),
        _non_negative("commission_per_order", commission_per_order),
        _regulatory(regulatory_fees),
    )
    source = Source.of(data, seed, spread_bps, warm_up_days, as_of, market_hours, alpaca)
    tape = source.tape(symbols, start, end)
    runner = Replayer(
        strategies,
        tape,
        every=every,
        starting_cash=_non_negative("starting_cash", starting_cash, above_zero=True),  # returns are of it
        seed=source.seed,
        market_hours=source.market_hours,
        eos_behavior=eos_behavior,
        custom_shutdown_action=custom_shutdown_action,
        daily_sessions=run_seconds == "EOD",
        costs=costs,
        simulated=source.simulated,
    )
    _check_some_tick_in_session(runner, source.market_hours)
    started = time.perf_counter()
    runner.run(progress)
    return ReplayResult(runner, time.perf_counter() - started)


def _check_some_tick_in_session(runner: Replayer, market_hours: str) -> None:
    """Data with no tick in NYSE regular hours before the session's end (30 s before the last close)
    — quotes recorded after hours, or before the open — would replay nothing, or orders that wait
    `accepted` to the end: said now, not as an empty result."""
    if market_hours == "always":
        return
    end = runner.final_eos if runner.final_eos is not None else INFINITY
    for t in runner.tape.times.tolist():
        if t >= end:
            break
        if runner.hours.phase(t) == "regular":
            return
    import pandas as pd

    first, last = (pd.Timestamp(float(t), unit="s", tz="UTC").tz_convert(EASTERN) for t in runner.tape.times[[0, -1]])
    raise ConfigurationError(
        f"data= has no tick in NYSE regular hours before the session's end (30 s before the close): it runs from "
        f"{first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} New York; with market_hours={market_hours!r} nothing"
        " would trade. Allowed: data inside NYSE hours, or market_hours='always' for quotes recorded outside them"
    )


def _regulatory(charged: object) -> FeeSchedule | None:
    """``regulatory_fees=True``: charge what a live account pays at Alpaca's listed rates, or at the
    rates of a given FeeSchedule (Alpaca paper charges none)."""
    if isinstance(charged, FeeSchedule):
        return charged
    if not isinstance(charged, bool):
        raise ConfigurationError(
            f"regulatory_fees={charged!r} is not valid; allowed: True or False, or a blockpaca_nb.fees.FeeSchedule"
        )
    return REGULATORY if charged else None


def _check_session_end(eos_behavior: object, custom: object, run_seconds: object) -> None:
    if eos_behavior not in EOS_BEHAVIORS:
        raise ConfigurationError(f"eos_behavior={eos_behavior!r} is not valid; allowed: {', '.join(EOS_BEHAVIORS)}")
    if custom is not None:
        check_takes_context(custom, "custom_shutdown_action")
    if eos_behavior == "custom" and not callable(custom):
        raise ConfigurationError(
            'eos_behavior="custom" needs custom_shutdown_action; allowed: a function of the context returning orders'
        )
    if run_seconds not in (None, "EOD"):
        raise ConfigurationError(f"run_seconds={run_seconds!r} is not valid in a replay; allowed: None, 'EOD'")


def _strategies(
    fn: Strategy | Mapping[str, Strategy] | Sequence[Strategy], name: str | None
) -> list[tuple[str, Strategy]]:
    """(name, function) pairs, named as live (a function's name, letters, digits and '_'), unique."""
    if callable(fn):
        check_takes_context(fn, "fn")
        return [(strategy_name(fn, name), fn)]
    if not isinstance(fn, Mapping | Sequence) or isinstance(fn, str):
        raise ConfigurationError(
            f"fn={fn!r} is not valid; allowed: a strategy function, a list of them, or a dict name -> function"
        )
    if name is not None:
        raise ConfigurationError("name= names a single strategy; allowed for several: a dict of name -> function")
    pairs = list(fn.items()) if isinstance(fn, Mapping) else [(None, f) for f in fn]
    if not pairs or not all(callable(f) for _, f in pairs):
        raise ConfigurationError(
            f"fn={fn!r} is not valid; allowed: a strategy function, a list of them, or a dict name -> function"
        )
    for _, f in pairs:
        check_takes_context(f, "fn")
    named = [(strategy_name(f, given), f) for given, f in pairs]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"strategy names {names} are not unique; allowed: one name per strategy (a dict)")
    return named


def _non_negative(field: str, value: object, *, above_zero: bool = False) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not (number > 0 if above_zero else number >= 0) or not math.isfinite(number):
        raise ConfigurationError(f"{field}={value!r} is not valid; allowed: a number {'>' if above_zero else '>='} 0")
    return float(number)


ALPACA_OPTIONS = ("api_key", "secret_key", "feed", "cache_dir", "urls")


@dataclass(frozen=True)
class Source:
    """Where a replay's data comes from, with the options that shape it, checked before any work."""

    data: Any
    seed: int
    spread_bps: float | None
    warm_up_days: int
    as_of: date | None
    market_hours: str
    alpaca: Mapping[str, Any]

    @classmethod
    def of(
        cls,
        data: Any,
        seed: object,
        spread_bps: object,
        warm_up_days: object,
        as_of: object,
        market_hours: object,
        alpaca: Mapping[str, Any],
    ) -> Source:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ConfigurationError(f"seed={seed!r} is not valid; allowed: an integer")
        if as_of is not None and not (isinstance(data, str) and data == "sim"):
            raise ConfigurationError("as_of= pins the simulator's history; allowed only with data='sim'")
        if spread_bps is not None and (isinstance(spread_bps, bool) or not isinstance(spread_bps, int | float)
                                       or not spread_bps > 0):  # fmt: skip
            raise ConfigurationError(f"spread_bps={spread_bps!r} is not valid; allowed: None or a number > 0")
        if isinstance(warm_up_days, bool) or not isinstance(warm_up_days, int) or warm_up_days < 0:
            raise ConfigurationError(f"warm_up_days={warm_up_days!r} is not valid; allowed: an integer >= 0")
        hours = market_hours or "nyse"
        if hours not in MARKET_HOURS:
            raise ConfigurationError(f"market_hours={market_hours!r} is not valid; allowed: {', '.join(MARKET_HOURS)}")
        from_alpaca = isinstance(data, str) and data == "alpaca"
        unknown = sorted(set(alpaca) - set(ALPACA_OPTIONS)) if from_alpaca else sorted(alpaca)
        if unknown:
            allowed = "the arguments of replay()" + (f", and {', '.join(ALPACA_OPTIONS)}" if from_alpaca else "")
            raise ConfigurationError(f"replay() got unknown arguments {unknown}; allowed: {allowed}")
        day = None if as_of is None else _date("as_of", as_of)
        return cls(data, int(seed), None if spread_bps is None else float(spread_bps), warm_up_days, day, hours, alpaca)

    @property
    def simulated(self) -> bool:
        """The simulator's own history (its assets' flags apply), not real or given data."""
        return isinstance(self.data, str) and self.data == "sim"

    def tape(self, symbols: list[str], start: str | date | None, end: str | date | None) -> Tape:
        import pandas as pd

        data = self.data
        if isinstance(data, str) and data == "sim":
            check_in_universe(symbols, "A made-up symbol replays from its own bars or quotes: data=a DataFrame.")
            first, last = _date("start", start), _date("end", end)
            return sim_tapes.get(self.sim_key(symbols, first, last))
        if isinstance(data, str) and data == "alpaca":
            return self._alpaca(symbols, _date("start", start), _date("end", end))
        window = (None if start is None else _date("start", start), None if end is None else _date("end", end))
        if isinstance(data, pd.DataFrame):
            return _clip(frame_tape(data, symbols, self.spread_bps or DEFAULT_SPREAD_BPS, window), start, end)
        if isinstance(data, str | bytes) or hasattr(data, "__fspath__"):
            return _clip(frame_tape(_read_quote_file(data), symbols, window=window), start, end)
        shown = repr(data) if data is None or isinstance(data, int | float) else type(data).__name__
        raise ConfigurationError(
            f"data={shown} is not valid; allowed: 'sim', 'alpaca', a DataFrame, or a quote file's path"
        )

    def sim_key(self, symbols: Sequence[str], start: date, end: date) -> SimTapeKey:
        """What the simulator's tape for these symbols and dates is made from (its cache's key): the
        history as of `as_of` (None: today, resolved here so the key is a day)."""
        as_of = self.as_of or datetime.now(EASTERN).date()
        return SimTapeKey(tuple(symbols), start, end, self.seed, as_of, self.warm_up_days, self.spread_bps)

    def _alpaca(self, symbols: list[str], start: date, end: date) -> Tape:
        from .alpaca_history import alpaca_bars

        today = datetime.now(EASTERN).date()
        if end >= today:
            raise ConfigurationError(f"end={end} is not in the past; allowed: dates before {today} (days cached whole)")
        first = start - timedelta(days=self.warm_up_days)
        frame = alpaca_bars(symbols, first, end, **self.alpaca)
        return _clip(frame_tape(frame, symbols, self.spread_bps or DEFAULT_SPREAD_BPS, (start, end)), start, end)


class SimTapeKey(NamedTuple):
    symbols: tuple[str, ...]
    start: date
    end: date
    seed: int
    as_of: date
    warm_up_days: int
    spread_bps: float | None


class SimTapes:
    """The simulator's last tapes, kept for the next replay of the same range (a sweep's replays;
    a notebook's next cell); a pool's workers are handed the one their sweep replays."""

    KEPT = 2

    def __init__(self) -> None:
        self._tapes: dict[SimTapeKey, Tape] = {}

    def get(self, key: SimTapeKey) -> Tape:
        tape = self._tapes.pop(key, None)
        self.keep(key, sim_tape(*key) if tape is None else tape)
        return self._tapes[key]

    def keep(self, key: SimTapeKey, tape: Tape) -> None:
        self._tapes.pop(key, None)
        self._tapes[key] = tape  # the newest last
        while len(self._tapes) > self.KEPT:
            del self._tapes[next(iter(self._tapes))]


sim_tapes = SimTapes()


def sim_tape_for(**arguments: Any) -> tuple[SimTapeKey, Tape] | None:
    """The simulator's tape `replay(fn, **arguments)` replays (kept from an earlier replay, or loaded
    now) and its key, for a pool's workers; None for other data, which they load themselves. Bad
    arguments fail here as replay() would fail on them."""
    try:
        bound = inspect.signature(replay).bind(None, **arguments)
    except TypeError:
        return None  # (no tickers, say: replay() itself says what is missing)
    bound.apply_defaults()
    given = bound.arguments
    data = given["data"]
    if not (isinstance(data, str) and data == "sim"):
        return None
    source = Source.of(data, given["seed"], given["spread_bps"], given["warm_up_days"], given["as_of"],
                       given["market_hours"], given["alpaca"])  # fmt: skip
    symbols = normalize_tickers(given["tickers"])
    key = source.sim_key(symbols, _date("start", given["start"]), _date("end", given["end"]))
    return key, sim_tapes.get(key)


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
    bar_keep = tape.bar_end <= tape.times[hi - 1]  # bars before start stay: the past ctx.bars() shows
    return Tape(
        tape.symbols, tape.times[lo:hi], tape.bid[lo:hi], tape.ask[lo:hi], tape.bid_size[lo:hi],
        tape.ask_size[lo:hi], tape.bar_end[bar_keep], {f: v[bar_keep] for f, v in tape.bars.items()},
    )  # fmt: skip


def _date(field: str, value: str | date | None) -> date:
    """A whole day: a time of day in it would be dropped without a word (the replay starts at the open)."""
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise ConfigurationError(f"{field}={value!r} is not valid; allowed: a date like '2026-01-02' (whole days)")
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"{field}={value!r} is not valid; allowed: a date like '2026-01-02'") from None
