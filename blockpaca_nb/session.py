"""`Session`: the one object a trader touches — start, strategies and hot swap, EOS actions, stop.

Nothing here blocks the kernel on the network: `start()` hands the slow work (the simulator,
the background processes, the first broker calls) to a starter thread and returns; strategies run
in their own thread; button presses and EOS actions only enqueue commands.

Bring-up checks the broker before anything is spawned — the keys, the endpoint, the tickers, and
that `run_seconds` ends before the market closes — so a bad configuration fails within seconds
with its reason in `errors`. A supervisor thread restarts the quote feed or the recorder when one
dies (the recorder link re-sends what the dead one had not acknowledged).

Why this module is longer than the others: `Session` is the facade, and most of its lines are its
public methods' docstrings (what Shift-Tab shows in Jupyter) and one-line delegations. The jobs
behind them live in their own modules: config (arguments), preflight (broker checks), supervision
(restarts), strategy (registry, clock, context), ledger (ownership), control (liquidation until
flat), running (one session per kernel), execution and recorder_link (the processes).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import math
import os
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import broker as broker_mod
from . import event_loop, running
from .books import BOOK_COLUMNS, CONTROL_TAG, SESSION_BOOK, marks_from
from .broker_calls import BrokerCalls
from .config import SessionConfig, eos_action
from .control import Liquidation, check_scope, refuse_while
from .errors import BlockpacaError, BrokerError, ConfigurationError, OrderValidationError
from .events import ErrorEvent, error_event, order_refused
from .execution import ExecutionPool
from .feed import start_feed
from .fees import REGULATORY, FeeSchedule
from .ledger import Ledger
from .lineup import Lineup, Slot, strategy_name
from .orders import Order, parse_block, strategy_from_client_order_id
from .portfolio import Position
from .preflight import PROBE_TIMEOUT, Plan, account_dict, check_broker, data_plan_warning
from .processes import SpawnProcess, sigint_blocked, start_janitor, stop_child, stop_janitor
from .quote_recording import recording_path, to_parquet
from .quotes import QuoteBook
from .ratelimit import RateLimiter
from .reconcile import Reconciler
from .recorder import READY_TIMEOUT_S
from .recorder_link import RecorderLink
from .risk import Limits, RiskDesk
from .scrub import ScrubbedDeque, scrub_error, scrub_text, scrubbed_logger
from .statuses import ENDED_SESSION_STATES, EOS_ACTIONS, SENDING_STATES, SESSION_STATES, WAITING_STATUSES
from .strategy import Context, Strategy, StrategyError, check_feed, check_takes_context, parse_duration
from .supervision import Supervisor
from .tradelog import csv_text, load_trade_log

if TYPE_CHECKING:
    import pandas as pd

    from .sim import Simulator

log = scrubbed_logger(__name__)
EOD_MARGIN_S = 30.0
RECONCILE_EVERY_S = 30.0
STRATEGY_GRACE_S = 5.0  # how long the end lets a running strategy call finish (its orders are refused)
REPLACE_WAIT_S = 120.0  # how long a new session waits for the one it replaced to stop
MARKS_MAX_AGE_S = 0.1  # how old the mid prices used for the books' P&L may be

__all__ = ["Session", "StrategyError"]


class Session:
    """An interactive trading session: quotes in shared memory, parallel execution, a trade log.

    ``Session(tickers=["AAPL", "TSLA"]).start()`` returns at once and shows the live dashboard; with
    no keys it trades on the embedded simulator. Register a strategy with ``@s.strategy(every="10s")``
    (re-running the cell swaps it); end with ``s.stop()`` or the dashboard's buttons.

    Parameters
    ----------
    tickers:
        The symbols to stream quotes for and trade: a list ("AAPL", "MSFT"), or one string
        ("AAPL" or "AAPL,MSFT"). Upper-cased; repeats dropped.
    api_key, secret_key:
        Alpaca keys. Default: the variables ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``; with none
        set, the embedded simulator. Never shown in any output.
    mode:
        ``"sim"``, ``"paper"`` or ``"live"``. Default: ``"paper"`` with keys, ``"sim"`` without.
        Live trading only when asked for by name.
    simulator:
        A running :class:`~blockpaca_nb.sim.Simulator` to trade on, or a dict of Simulator settings
        for the one the session starts (e.g. ``{"seed": 7, "latency_ms": 25}``).
    urls:
        Endpoint overrides (``trading``, ``data``, ``data_stream``, ``trading_stream``), e.g. a proxy.
    frequency:
        Seconds between strategy ticks, or ``"500ms"``, ``"10s"``, ``"1m"``, ``"1h"``. Default 10 s.
    run_seconds:
        How long the session trades after warm-up (seconds or a duration string), ``"EOD"`` for
        30 s before the market closes, or None (default) to run until :meth:`stop`.
    warm_up_period:
        Seconds to let quotes arrive before the first tick (default 5; 0 for none).
    eos_behavior:
        What happens at the end: ``"hold"`` (default: keep positions), ``"liquidate"`` (close the
        session's positions) or ``"custom"`` (send the orders of ``custom_shutdown_action``).
    custom_shutdown_action:
        A function of the context returning orders, for ``eos_behavior="custom"`` or the Custom button.
    trade_log_name, trade_log_path:
        The CSV trade log is ``{trade_log_path}/{trade_log_name}_trade_log.csv`` (appended to when it
        exists). The folder must exist and be writable.
    num_workers:
        Execution worker processes (default: 2 to 4, by the cores it may use; 1 on one core).
    max_orders_per_minute:
        The REST rate limit to keep (every call counts, not only orders). Default: the broker's
        (Alpaca: 200 a minute, read from its headers).
    max_retries:
        How often a call that may be a passing fault (timeout, 5xx) is retried (default 3).
    display_refresh_rate:
        Seconds between dashboard refreshes (default 0.25).
    max_trade_updates:
        How many recent order events the dashboard and ``trade_updates`` keep (default 20).
    rate_window_s:
        The rate limit's window in seconds (default 60, Alpaca's; shorter only for tests).
    replace_running:
        What :meth:`start` does when another session is running in this kernel on the same account
        (re-running the cell that made it): ``True`` (default) stops it with ``eos="hold"`` and says
        so; ``"liquidate"`` stops it liquidating its positions; ``False`` refuses to start.
    limits:
        Risk limits for the whole session (the keys of ``strategy(limits=...)``).
    record_quotes:
        Keep every quote the feed receives in ``{trade_log_name}_quotes.csv`` beside the trade log,
        turned into ``.parquet`` when the session stops (:attr:`quote_file`), for
        ``replay(fn, tickers, data=s.quote_file)``.
    """

    def __init__(
        self,
        tickers: Sequence[str] | str,
        api_key: str | None = None,
        secret_key: str | None = None,
        mode: str | None = None,
        simulator: Simulator | Mapping[str, Any] | None = None,
        urls: Mapping[str, str] | None = None,
        frequency: float | str = 10,
        run_seconds: float | str | None = None,
        warm_up_period: float = 5,
        eos_behavior: str = "hold",
        custom_shutdown_action: Strategy | None = None,
        trade_log_name: str = "session",
        trade_log_path: str | os.PathLike[str] = ".",
        num_workers: int | None = None,
        max_orders_per_minute: int | None = None,
        max_retries: int = 3,
        display_refresh_rate: float = 0.25,
        max_trade_updates: int = 20,
        rate_window_s: float = 60.0,
        replace_running: bool | str = True,
        limits: Mapping[str, Any] | None = None,
        record_quotes: bool = False,
    ) -> None:
        self.config = config = SessionConfig.from_arguments(
            tickers=tickers,
            frequency=frequency,
            run_seconds=run_seconds,
            warm_up_period=warm_up_period,
            eos_behavior=eos_behavior,
            custom_shutdown_action=custom_shutdown_action,
            trade_log_name=trade_log_name,
            trade_log_path=trade_log_path,
            num_workers=num_workers,
            max_orders_per_minute=max_orders_per_minute,
            max_retries=max_retries,
            display_refresh_rate=display_refresh_rate,
            max_trade_updates=max_trade_updates,
            rate_window_s=rate_window_s,
            replace_running=replace_running,
        )
        self.tickers = list(config.tickers)
        self.frequency = config.frequency  # changes when a strategy is registered with every=
        self.run_seconds = config.run_seconds
        self.warm_up_period = config.warm_up_period
        self.eos_behavior = config.eos_behavior
        self.custom_shutdown_action = config.custom_shutdown_action
        self.trade_log_file = config.trade_log_file
        if not isinstance(record_quotes, bool):
            raise ConfigurationError(f"record_quotes={record_quotes!r} is not valid; allowed: True, False")
        # the quotes the feed received: a CSV while the session runs, Parquet once it stopped
        self.quote_file: Path | None = recording_path(self.trade_log_file) if record_quotes else None
        self.display_refresh_rate = config.display_refresh_rate
        self.max_trade_updates = config.max_trade_updates
        self.num_workers, self.max_retries = config.num_workers, config.max_retries
        self.max_orders_per_minute = config.max_orders_per_minute
        event_loop.loop_name()  # an unknown BLOCKPACA_EVENT_LOOP stops here, not in a child
        self._target = broker_mod.resolve(mode, api_key, secret_key, simulator, urls, self.tickers)
        self.mode = self._target.mode
        self._lineup = Lineup()  # the strategies: the main one, the ones alongside, their clocks
        self.ledger = Ledger(_fees_paid(self._target))  # the session's orders and the positions their fills made
        self.books = self.ledger.books  # the same, by strategy
        self.limits = Limits.from_mapping(limits, "limits")
        self._risk = RiskDesk(self.books, self.limits)
        self._counts = threading.Lock()  # strategy threads count their ticks under it
        self._last_sample = 0.0
        self._marked: dict[str, float] = {}  # the last mid prices read (see _marks)
        self._marks_at = -1.0
        self._strategy_liquidations: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._outside_at_start: dict[str, float] = {}  # the account's positions before the session
        self.portfolio = self.ledger.positions
        self.account_positions_seen: list[dict[str, Any]] = []  # the account's, at the last look
        self._reconciler = Reconciler()  # the ledger against the broker (see reconcile.py)
        self.activity = ""  # what a running control action waits for, e.g. "liquidating: 3 orders, ..."
        self.trade_updates: deque[dict[str, Any]] = deque(maxlen=max_trade_updates)
        self.errors: deque[StrategyError | BlockpacaError | dict[str, Any]] = ScrubbedDeque(maxlen=200)
        self.orders: dict[str, dict[str, Any]] = {}  # client order id -> latest row
        self.status = "created"
        self.started_at: float | None = None
        self.account_info: dict[str, Any] = {}
        self.failure: BaseException | None = None  # why the session failed, when it did
        self.ends_at: float | None = None
        self.skipped_ticks = 0
        self.ticks = 0  # strategy calls started
        self.ticks_done = 0  # strategy calls that returned (their ctx.state changes are visible)
        self.fills = 0  # fill and partial_fill events seen
        self._waiting: set[str] = set()  # client order ids the broker holds without working them yet
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set to stop, or to take a new tick rate
        self._paused = threading.Event()
        self._done = threading.Event()
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._control: str | None = None  # the control action that began: strategy orders are refused
        self._halt = threading.Event()  # Hold: a running liquidation stops where it is
        self._connection: broker_mod.Connection | None = None
        self._book: QuoteBook | None = None
        self._pool: ExecutionPool | None = None
        self._limiter: RateLimiter | None = None
        self._calls: BrokerCalls | None = None
        self._control_calls: BrokerCalls | None = None  # the rate limiter's priority lane
        self._data_calls: BrokerCalls | None = None
        self._recorder: RecorderLink | None = None
        self._inbox: RecorderLink | None = None  # where validation errors go (the recorder's inbox)
        self._janitor: Any = None
        self._children: dict[str, SpawnProcess] = {}  # name -> current process (the supervisor's view)
        self._supervisor = Supervisor(self._children, self._report_restart)
        self.restarts = self._supervisor.restarts
        self._closing = threading.Event()  # teardown began: the supervisor restarts nothing more
        self._threads: list[threading.Thread] = []
        self._recorder_ready = threading.Event()
        self._recorder_problem: str | None = None
        self._acting: str | None = None  # the control action running on the session thread now, if any
        self._quote_heard = False  # a quote came (or the lack of one was said): see _say_if_no_quote
        self._started_simulator = False  # this session stops the simulator at its end (it started it, or took it over)
        self._adopted_simulator = False
        self._handed_over = False  # a session replacing this one stops the simulator instead
        self._stop_eos: str | None = None
        self._next_reconcile = time.monotonic() + RECONCILE_EVERY_S
        self.overruns = 0
        self._dashboard: Any = None
        self._account = ""  # the account's key among this kernel's running sessions (see running.py)
        self._replaced: Session | None = None  # the session this one stopped when it started

    # ----------------------------------------------------------------- strategies
    def strategy(
        self,
        fn: Strategy | None = None,
        *,
        every: float | str | None = None,
        alongside: bool = False,
        budget: float | None = None,
        limits: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Any:
        """Register a strategy and start it (as a decorator, with or without arguments).

        Without ``alongside`` it becomes *the* main strategy: re-running the cell that defines it
        replaces it from the next tick on, and a different function takes over the old one's
        positions and ``ctx.state``. ``every`` is then the session's tick rate. With ``alongside=True``
        it runs next to the others on its own clock (``every``, default the session's) in its own
        thread. ``budget``: dollars its positions may cost (a virtual sub-account); ``limits``: its
        risk limits (see :class:`~blockpaca_nb.risk.Limits`); ``name``: default the function's name.
        """
        seconds = None if every is None else float(parse_duration(every, "every"))
        checked = Limits.from_mapping(limits, "strategy limits")
        _check_budget(budget)
        if not isinstance(alongside, bool):
            raise ConfigurationError(f"alongside={alongside!r} is not valid; allowed: True or False")

        def register(f: Strategy) -> Strategy:
            check_takes_context(f, "strategy")
            slot = Slot(strategy_name(f, name), f, every=seconds if alongside else None, budget=budget, limits=checked)
            self._register(slot, alongside=alongside, rate=None if alongside else seconds)
            return f

        return register(fn) if fn is not None else register

    def _register(self, slot: Slot, *, alongside: bool, rate: float | None = None) -> None:
        self._say_what_it_drops(slot)
        self._risk.set(slot.name, slot.limits, slot.budget)  # and its book; before self._lock (submit: the other way)
        if alongside:
            self.books.unforward(slot.name)  # a former main strategy's fills are its own again
        with self._lock:
            replaced, slot = self._lineup.register(slot, alongside=alongside)
            if rate is not None and rate != self.frequency:
                self.frequency = rate  # a new rate: the main strategy's clock starts again, now
                slot.next_due = None
            if replaced is not None:
                self._hand_over(replaced, slot.name)
        self._wake.set()  # the tick loop sees the change now, not at the old clock's next tick

    def _say_what_it_drops(self, slot: Slot) -> None:
        """Re-registered (its cell re-run, a swap) without the budget or limits it had: it has none
        now — said in s.errors, as a risk control removed without a word would not be noticed."""
        old = self._lineup.slots.get(slot.name)
        if old is None:
            return
        pairs = (("budget", old.budget, slot.budget), ("limits", old.limits, slot.limits))
        dropped = [what for what, had, has in pairs if had and not has]
        if dropped:
            self.errors.append(error_event("strategy", f"{slot.name} re-registered without its "
                                           f"{' and '.join(dropped)}: it has none now"))  # fmt: skip

    def _hand_over(self, old: str, new: str) -> None:
        """A new main strategy takes over the old one's positions at the current prices."""
        self.books.hand_over(old, new, self._marks())

    def swap(self, fn: Strategy) -> None:
        """Make `fn` the main strategy from the next tick on (`ctx.state` and the positions carry over)."""
        self.strategy(fn)

    def select(self, name: str) -> None:
        """Make a registered strategy the main one, by name (it takes over the positions, as a swap)."""
        with self._lock:
            replaced = self._lineup.make_main(name)
            if replaced is not None:
                self._hand_over(replaced, name)
        self._wake.set()

    def activate(self, name: str) -> None:
        """Run a registered strategy alongside the active ones, from now on its own clock."""
        with self._lock:
            self._lineup.activate(name)
        self.books.unforward(name)
        self._wake.set()

    def deactivate(self, name: str) -> None:
        """Stop calling a strategy; what its orders hold stays in its book (and the account)."""
        with self._lock:
            self._lineup.deactivate(name)
        self._wake.set()

    @property
    def state(self) -> dict[str, Any]:
        """The main strategy's ``ctx.state`` (it carries over swaps; a strategy alongside has its own)."""
        main = self._lineup.main
        return self._lineup.slots[main].context_state if main else self._lineup.first_state

    @property
    def strategies(self) -> list[str]:
        """Every registered strategy's name."""
        return list(self._lineup.slots)

    @property
    def active_strategy(self) -> str | None:
        """The main strategy (None when none runs)."""
        return self._lineup.main

    @property
    def active_strategies(self) -> list[str]:
        """Every strategy that runs: the main one first, then the ones alongside."""
        return [slot.name for slot in self._lineup.active()]

    def strategy_state(self, name: str) -> str:
        """running, inactive (registered, not called: see activate), paused, reduce_only (a limit was
        crossed) or halted — what the dashboard's strategies panel shows."""
        slot = self._lineup.require(name)
        return _shown_state(slot.state, slot.name in self.active_strategies)

    def strategy_rows(self) -> list[dict[str, Any]]:
        """One row per strategy (and the session's own orders, once it sent any), for the dashboard:
        name, role (main, alongside, off; "session" for its own orders), every (seconds), state
        ("inactive" when off) and why, orders sent, positions held, P&L now, and how close it is to
        its nearest limit (``usage``, 1.0 = at it; ``limit``)."""
        marks = self._marks()
        pnl = self.books.pnl(marks)
        main, alongside = self._lineup.main, set(self._lineup.alongside)
        rows = []
        for slot in list(self._lineup.slots.values()):
            role = "main" if slot.name == main else "alongside" if slot.name in alongside else "off"
            usage, limit = self._risk.usage(slot.name, marks)
            every = slot.every or self.frequency
            counts = self.books.summary(slot.name) or (0, 0)
            state = _shown_state(slot.state, role != "off")
            reason = slot.state_reason
            if state == "running" and self.status != "running":  # it does not tick, whatever its own state
                state, reason = _NOT_TICKING.get(self.status, "paused"), f"the session is {self.status}"
            rows.append(_strategy_row(slot.name, role, every, state, reason, counts))
            rows[-1].update(pnl=pnl.get(slot.name, 0.0), usage=usage, limit=limit)
        own = self.books.summary(SESSION_BOOK)
        if own is not None and own[0]:
            row = _strategy_row(SESSION_BOOK, "session", None, "", "", own)  # orders from cells, liquidations
            rows.append({**row, "pnl": pnl.get(SESSION_BOOK, 0.0)})
        return rows

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Session:
        """Start the background machinery and return at once; the strategy loop follows warm-up.
        A session already running in this kernel on the same account is stopped first (see
        `replace_running`)."""
        with self._lock:
            if self.status in ("stopping", "stopped", "failed"):
                raise BlockpacaError(f"this session is {self.status}; create a new Session to trade again")
            if self.status != "created":
                return self  # already started
            self._account = running.account_key(self._target)
            self._replaced = running.take_over(self._account, self, self.config.replace_running, self._adopt_simulator)
            self.status = "starting"
        if self._replaced is not None:
            print(self._replacement_notice(self._replaced))
        self._spawn_thread(self._start_and_run, "blockpaca-session")
        return self

    def _adopt_simulator(self, old: Session) -> None:
        """Replacing a session on the same Simulator (its cell re-run), this one stops it at the end:
        the old one, which started it (or took it over, or is about to start it), would have stopped
        it under this one's feet. A Simulator the user started stays the user's."""
        sim = self._target.simulator
        if sim is None or old._target.simulator is not sim:
            return
        owner = old._started_simulator or old._adopted_simulator or (old.status == "starting" and not sim.running)
        if owner:
            old._handed_over, old._started_simulator, self._adopted_simulator = True, False, True

    def _replacement_notice(self, old: Session) -> str:
        how = "hold" if self.config.replace_running is True else str(self.config.replace_running)
        held = len(old.portfolio.as_blockpaca())
        kept = f"{held} positions kept" if how == "hold" else f"liquidating {held} positions"
        return f"stopped the running session {old.name!r} ({how}): {kept}"

    @property
    def name(self) -> str:
        """The session's name: its trade log's name."""
        return self.config.trade_log_file.stem.removesuffix("_trade_log")

    def _spawn_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _start_and_run(self) -> None:
        """The session thread: it alone brings everything up, runs the loop, the EOS action, tears down.
        The EOS action runs even when the loop failed: whatever the session holds is not left behind."""
        try:
            try:
                if self._replaced is not None:
                    self._replaced.wait(REPLACE_WAIT_S)  # never two sessions trading at once
                self._bring_up()
                self._warm_up()
                self._run_loop()
            except Exception as err:
                self._fail("session", err)
            if self._pool is not None:
                self._finish(self._stop_eos or self.eos_behavior)
        except Exception as err:
            self._fail("end of session", err)
        finally:
            self._tear_down()
            self._done.set()

    def _fail(self, where: str, err: BaseException) -> None:
        """Loud: the status, `failure`, `errors` and the log all say what went wrong."""
        self.status = "failed"
        self.failure = self.failure or scrub_error(err)  # what the user sees, raises (run_trading) and prints
        self.errors.append(_error(where, err))
        log.error("session failed: %s (in the %s)", self.failure, where)

    def _bring_up(self) -> None:
        running_now = self._target.simulator is None or self._target.simulator.running
        self._started_simulator = not self._handed_over and (self._adopted_simulator or not running_now)
        with sigint_blocked():  # the simulator process must not die of an early Interrupt either
            self._connection = connection = self._target.connect()
        self._limiter = RateLimiter(self.max_orders_per_minute or 200, self.config.rate_window_s)
        if self.max_orders_per_minute:
            self._limiter.override = True
        self._calls = BrokerCalls(connection, self._limiter, max_retries=self.max_retries)
        self._control_calls = BrokerCalls(connection, self._limiter, max_retries=self.max_retries, urgent=True)
        self._check_broker(connection)
        self._warn_about_data_plan(connection)
        self._book = QuoteBook.create(self.tickers)
        self._janitor = start_janitor([str(self._book.meta["name"])])
        self._recorder = self._inbox = RecorderLink(connection, self.trade_log_file, self._limiter)
        # the workers first: they boot while the recorder and the feed do, and the first tick's orders
        # do not wait for them (their results queue in the link until the recorder is up)
        self._pool = ExecutionPool(
            connection, self._limiter, self._recorder, num_workers=self.num_workers, max_retries=self.max_retries
        )
        self._pool.start()
        self._supervisor.watch("recorder", self._recorder.start(), self._restart_recorder)
        self._supervisor.watch("feed", self._start_feed(), self._restart_feed)
        self._spawn_thread(self._consume_events, "blockpaca-events")
        # supervised from here on: a recorder may die while it starts
        self._spawn_thread(lambda: self._supervisor.run(self._closing), "blockpaca-supervisor")
        self._look_at_account_positions()
        self._reconciler.start(self.account_positions_seen)  # the account before the session's first order
        self._outside_at_start = dict(self._reconciler.outside or {})
        self._next_reconcile = time.monotonic() + RECONCILE_EVERY_S
        self._await_recorder()
        self._pool.wait_ready(READY_TIMEOUT_S)  # a worker still booting holds the first block back

    def _say_if_no_quote(self) -> None:
        """Once, if no quote has come since the session started: the dashboard said "waiting for
        quotes" and nothing else, while the data stream refused the connection."""
        if self._quote_heard or self._book is None:
            return
        self._quote_heard = True  # looked once: a quote came, or its absence is said now
        if self._book.bid_ask():
            return
        self.errors.append({"kind": "warning", "where": "feed", "time": time.time(), "reason": (
            f"no quote of {len(self.tickers)} tickers since the session started: outside market hours a quiet"
            " feed is normal; otherwise the data stream may refuse the connection — Alpaca's free plan takes one"
            " data connection per account, and another session or program may hold it")})  # fmt: skip

    def _check_broker(self, connection: broker_mod.Connection) -> None:
        """Before anything is spawned: the keys, the endpoint, the tickers, the close (see preflight)."""
        probe = BrokerCalls(
            connection, self._limiter, max_retries=self.max_retries, timeout=PROBE_TIMEOUT, max_unanswered=1
        )
        plan = Plan(self.tickers, self.mode, self.run_seconds, self.warm_up_period, self._always_open())
        self.account_info = check_broker(probe, plan)

    def _warn_about_data_plan(self, connection: broker_mod.Connection) -> None:
        """More tickers than a free data plan streams: say so before the quotes fail to come."""
        plan = getattr(getattr(self._target.simulator, "_config", None), "data_plan", None)
        warning = data_plan_warning(self.tickers, connection.endpoints.data_stream, plan)
        if warning:
            log.warning("%s", warning)
            self.errors.append({"kind": "warning", "where": "data plan", "reason": warning, "time": time.time()})

    def _always_open(self) -> bool:
        config = getattr(self._target.simulator, "_config", None)
        return getattr(config, "market_hours", None) == "always"

    def _await_recorder(self) -> None:
        """The recorder writes the log and listens to the trade stream, or the session fails."""
        if not self._recorder_ready.wait(READY_TIMEOUT_S + 15):
            raise BlockpacaError("the recorder did not start within 45 s")
        if self._recorder_problem:
            raise BlockpacaError(f"the recorder cannot run: {self._recorder_problem}")

    def _rest(self, call: Callable[[Any], Any]) -> Any:
        """One REST call through alpaca-py's TradingClient: counted by the shared rate limiter, with a
        timeout, transient failures retried (see BrokerCalls)."""
        assert self._calls is not None
        return self._calls(call)

    # ----------------------------------------------------------------- supervision
    def _restart_feed(self) -> SpawnProcess:
        return self._start_feed()

    def _start_feed(self) -> SpawnProcess:
        assert self._connection is not None and self._book is not None
        return start_feed(self._connection, self._book.meta, str(self.quote_file) if self.quote_file else None)

    def _restart_recorder(self) -> SpawnProcess | None:
        """A new recorder, which first re-reads what the dead one had not acknowledged."""
        assert self._recorder is not None
        if not self._recorder.restart_if_dead():
            return None
        return self._recorder.process

    def _report_restart(self, where: str, reason: str) -> None:
        self.errors.append(error_event(where, reason))

    def _warm_up(self) -> None:
        """Let quotes arrive; a command (a button) is run at once, not after the warm-up."""
        self.status = "warming_up"
        self.started_at = time.time()
        until = time.monotonic() + self.warm_up_period
        while (why := self._wait_until(until)) == "command":
            self._run_commands()
        if why == "stop":
            return
        self.ends_at = self._end_time()
        self.status = "paused" if self._paused.is_set() else "running"

    def _end_time(self) -> float | None:
        if self.run_seconds is None:
            return None
        if self.run_seconds == "EOD":
            clock = self._rest(lambda c: c.get_clock())
            end = clock.next_close.timestamp() - EOD_MARGIN_S
            if end <= time.time():
                raise ConfigurationError('run_seconds="EOD": the market closes in less than 30 s')
            return end
        return time.time() + float(self.run_seconds)

    def _run_loop(self) -> None:
        """Tick each running strategy on its own absolute times until stopped or the end (a
        deadline, not a tick: the thread wakes at `ends_at`). A command wakes it at once and runs
        between ticks; a change of the strategies (a new one, a new rate) makes it look again."""
        while True:
            version, paused = self._lineup.version, self._paused.is_set()
            due = self._next_reconcile if paused else self._lineup.next_due(self.frequency)
            why = self._wait_until(min(due, self._next_reconcile), version, paused)
            if why == "command":
                self._run_commands()
            if why in ("stop", "end"):
                return
            if why != "due":
                continue
            self._reconcile_if_due()
            self._look_at_risk()
            if not self._paused.is_set():
                for slot in self._lineup.due_now(self.frequency):
                    self._tick(slot)
            self.skipped_ticks = sum(slot.skipped + slot.overruns for slot in list(self._lineup.slots.values()))

    def _wait_until(self, due: float, version: int | None = None, paused: bool | None = None) -> str:
        """Sleep until monotonic time `due`; say why it woke: "due", "stop", "command" (one is
        queued), "end" (`ends_at` passed) or "changed" (the strategies or their clocks changed, or
        the session was paused or resumed: a paused one sleeps until its next reconciliation)."""
        while True:
            self._wake.clear()
            if self._stop.is_set():
                return "stop"
            if not self._commands.empty():
                return "command"
            if self.ends_at is not None and time.time() >= self.ends_at:
                return "end"
            if version is not None and self._lineup.version != version:
                return "changed"
            if paused is not None and self._paused.is_set() != paused:
                return "changed"
            now = time.monotonic()
            if now >= due:
                return "due"
            end_in = float("inf") if self.ends_at is None else self.ends_at - time.time()
            self._wake.wait(min(due - now, end_in, 3600.0))

    def _tick(self, slot: Slot) -> None:
        """Hand a strategy to its own thread; skip its tick if it is still busy with the last one."""
        if slot.busy():
            slot.overruns += 1
            self.overruns += 1
            self._report_overrun(slot)
            return
        slot.overrun_reported = False
        slot.ticks += 1
        self.ticks += 1
        slot.run(self._run_strategy, slot)

    def _report_overrun(self, slot: Slot) -> None:
        """Say once per overrun that a strategy call outlived its tick (its ticks are skipped)."""
        if slot.overrun_reported:
            return
        slot.overrun_reported = True
        message = f"still running after its {slot.every or self.frequency:g} s tick: ticks are skipped until it returns"
        self.errors.append(StrategyError(slot.name, time.time(), message, ""))

    def _run_strategy(self, slot: Slot) -> list[str]:
        """Call a strategy; keep its exception with the traceback; send what it returned."""
        try:
            returned = slot.fn(self._context_for(slot))
        except Exception as err:
            self.errors.append(
                StrategyError(slot.name, time.time(), f"{type(err).__name__}: {err}", traceback.format_exc())
            )
            return []
        finally:
            with self._counts:
                slot.ticks_done += 1
                self.ticks_done += 1
        try:
            return self.submit(returned, strategy=slot.name)
        except Exception as err:  # e.g. the session stopped meanwhile: reported, the loop goes on
            message = f"what it returned could not be sent: {type(err).__name__}: {err}"
            self.errors.append(StrategyError(slot.name, time.time(), message, traceback.format_exc()))
            return []

    def _reconcile_if_due(self) -> None:
        """Now and then refresh the account and its positions, and compare the session's ledger with
        them at a point where they must agree (nothing of the session in transit, no fill while the
        snapshot was taken: see reconcile.py); every difference is reported in `errors`."""
        if time.monotonic() < self._next_reconcile:
            return
        self._next_reconcile = time.monotonic() + RECONCILE_EVERY_S
        self._say_if_no_quote()
        try:
            self.account_info = self._rest(lambda c: account_dict(c.get_account()))

            def account_positions() -> list[dict[str, Any]]:
                self._look_at_account_positions()
                return self.account_positions_seen

            found = self._reconciler.check(
                self.portfolio, account_positions, self.orders, self._pool, self._recorder, self.ledger.owns
            )
            self.errors.extend(difference.as_error() for difference in found or ())
        except BrokerError as err:  # the broker had a bad moment: try again at the next reconcile
            self.errors.append(_error("reconcile", err))

    def _look_at_account_positions(self) -> None:
        positions = self._rest(lambda c: c.get_all_positions())
        self.account_positions_seen = [p.model_dump(mode="json") for p in positions]

    def _run_commands(self) -> None:
        """Run every queued control action. Items a strategy put on ctx["command_queue"] itself
        (blockpaca's queue) may be anything: a name ("liquidate") is run, the rest reported."""
        while True:
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return
            command, argument = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
            if command not in EOS_ACTIONS:
                self.errors.append(error_event("command_queue", f"not a command: {item!r}; allowed: {EOS_ACTIONS}"))
                continue
            try:
                self._eos_now(command, argument)
            except Exception as err:  # loud, and the session goes on (paused, orders refused)
                self.errors.append(_error(command, err))
                log.error("%s failed: %s", command, err)

    # ----------------------------------------------------------------- orders
    def submit(self, orders: object, *, strategy: str = "") -> list[str]:
        """Validate and send orders (blockpaca's schema); invalid ones are logged and shown, not sent.
        Each order is checked against the limits (the strategy's, then the session's); a refused one
        is a rejection row naming the limit. ``strategy``: the strategy the orders belong to (what
        ``ctx.submit_order`` passes); "" for the session's own. Refused (BlockpacaError) once the
        session ends, and from the moment a control action (liquidate, hold, custom) starts until resume()."""
        if self.status in ENDED_SESSION_STATES or self._stop.is_set():
            raise BlockpacaError(f"refused: the session is {self.status}; its orders are no longer sent")
        refuse_while(self._control)
        valid, problems = parse_block(orders, self.tickers)
        for problem in problems:
            self._validation_error(problem, strategy)
        slot = self._lineup.slots.get(strategy) if strategy else None
        if slot is not None and slot.state not in SENDING_STATES:
            why = f"strategy {strategy} is {slot.state}: {slot.state_reason or 'its orders are refused'}"
            for order in valid:
                self._refused(order, why, strategy)
            return []
        quotes = self._book.bid_ask() if self._book else {}
        reduce_only = slot is not None and slot.state == "reduce_only"
        with self._risk.lock:  # checked and recorded as on its way together: two blocks never pass one limit
            screened = self._risk.screen(valid, strategy or SESSION_BOOK, quotes, reduce_only=reduce_only)
            sent = self._send(screened.passed, strategy=strategy)
        for order, why in screened.refused:
            self._refused(order, why, strategy)
        return sent

    def _send(self, orders: list[Order], *, urgent: bool = False, strategy: str = "") -> list[str]:
        """Hand orders to the pool; their client ids become the session's (and count toward their
        book's limits) before any can be sent."""
        if not orders:
            return []
        if self._pool is None:
            raise BlockpacaError("the session is not started: call start() before submitting orders")

        marks = self._marks() if any(order.quantity is None for order in orders) else {}

        def claim(client_order_ids: list[str]) -> None:
            self.ledger.claim(client_order_ids)
            for cid, order in zip(client_order_ids, orders, strict=True):
                shares = _shares(order, marks)
                self.books.sent(cid, strategy or SESSION_BOOK, order.ticker, shares if order.side == "buy" else -shares)

        with self._lock:
            if not urgent:
                refuse_while(self._control)
            tickets = self._pool.submit(orders, urgent=urgent, claim=claim, strategy=strategy)
        return [t.client_order_id for t in tickets]

    def _validation_error(self, problem: OrderValidationError, strategy: str = "") -> None:
        problem.strategy = strategy
        self.errors.append(problem)
        if self._inbox is not None:
            row = {"kind": "validation_error", "reason": str(problem), "time": time.time(), "strategy": strategy}
            self._inbox.put({**row, **problem.given})

    def _refused(self, order: Order, reason: str, strategy: str) -> None:
        """An order a limit (or its strategy's state) kept in the kernel: a rejection row, an error."""
        row = order_refused("limit_refused", order, reason, strategy, time.time())
        self.errors.append(row)
        if self._inbox is not None:
            self._inbox.put(row)

    @property
    def context(self) -> Context:
        """The context of the main strategy (or, with none, of the session's own orders)."""
        main = self._lineup.main
        return self._context_for(self._lineup.slots[main] if main else None)

    def _context_for(self, slot: Slot | None) -> Context:
        name = slot.name if slot is not None else ""
        return Context(
            get_current_data=lambda: self._current_data(name),
            submit_order=lambda orders: self.submit(orders, strategy=name),
            shm_meta=self._book.meta if self._book else {},
            result_queue=None,  # results reach the session, the log and the dashboard by themselves
            command_queue=self._commands,
            state=slot.context_state if slot is not None else self._lineup.first_state,
            bars=self.bars,
            account=lambda: self._rest(lambda c: account_dict(c.get_account())),
            account_positions=self._account_net_positions,
            strategy=name,
        )

    def _current_data(self, strategy: str) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
        """blockpaca's (quotes, positions): the strategy's own positions (its book's)."""
        quotes = self._book.bid_ask() if self._book else {}
        return quotes, self.books.blockpaca_positions(strategy or SESSION_BOOK)

    def _account_net_positions(self) -> list[dict[str, Any]]:
        """The session's positions plus what the account held outside the session, from the kernel."""
        totals = {p["ticker"]: dict(p) for p in self.portfolio.as_blockpaca()}
        for ticker, quantity in (self._reconciler.outside or {}).items():
            mine = totals.setdefault(ticker, {"ticker": ticker, "quantity": 0.0, "bought_at": 0.0, "cost_basis": 0.0})
            mine["quantity"] = round(float(mine["quantity"]) + quantity, 9)
        return [p for p in totals.values() if p["quantity"]]

    def get_current_data(self) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
        """blockpaca's (quotes, positions), from shared memory and the kernel — no network."""
        quotes = self._book.bid_ask() if self._book else {}
        return quotes, self.portfolio.as_blockpaca()

    def bars(
        self, symbols: str | Sequence[str], timeframe: str = "1Day", limit: int = 100, feed: str = "iex"
    ) -> pd.DataFrame:
        """The last `limit` historical bars per symbol (1Min, 1Hour or 1Day) as a DataFrame. `feed`:
        "iex" (default; every data plan, the free one included) or "sip" (a paid plan)."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        frames = {"1Min": (TimeFrame.Minute, 1 / 390), "1Hour": (TimeFrame.Hour, 1 / 7), "1Day": (TimeFrame.Day, 1)}
        if timeframe not in frames:
            raise ConfigurationError(f"timeframe={timeframe!r} is not valid; allowed: {', '.join(frames)}")
        if not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit={limit!r} is not valid; allowed: an integer >= 1")
        feeds = {"iex": DataFeed.IEX, "sip": DataFeed.SIP}
        feed = check_feed(feed)
        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        tf, days_per_bar = frames[timeframe]
        start = datetime.now(UTC) - timedelta(days=limit * days_per_bar * 1.5 + 7)
        assert self._connection is not None and self._limiter is not None
        if self._data_calls is None:
            make = broker_mod.Connection.data_client
            self._data_calls = BrokerCalls(self._connection, self._limiter, max_retries=self.max_retries, make=make)
        request = StockBarsRequest(symbol_or_symbols=symbols, timeframe=tf, start=start, feed=feeds[feed])
        frame = self._data_calls(lambda c: c.get_stock_bars(request)).df
        return frame.groupby(level=0, group_keys=False).tail(limit) if len(frame) else frame

    # ----------------------------------------------------------------- events from the recorder
    def _consume_events(self) -> None:
        assert self._recorder is not None
        while (event := self._recorder.get()) is not None:
            kind = event.get("kind")
            if kind in ("recorder_ready", "recorder_failed"):
                self._on_recorder_status(event)
            elif kind != "submitting":
                self._on_row(event)

    def _on_recorder_status(self, event: dict[str, Any]) -> None:
        """A recorder (the first, or one that replaced a dead one) is up, or cannot run."""
        if event["kind"] == "recorder_failed":
            problem: str | None = str(event.get("reason"))
        else:
            problem = None if event.get("listening") else "the trade_updates stream did not connect within 30 s"
        if problem:
            self._recorder_problem = problem
            self.errors.append(error_event("recorder", problem))
        self._recorder_ready.set()

    def _on_row(self, row: dict[str, Any]) -> None:
        cid = row.get("client_order_id") or ""
        if self.ledger.owns(row.get("leg_of")):  # an exit of the session's bracket/oco order is the session's
            self.ledger.claim([cid])
        filled = bool(row.get("fill_qty"))
        marks = self._marks() if filled else None
        self.ledger.apply(row, marks)  # first: whoever sees the order final sees its fill in the positions
        if filled:
            try:
                self._look_at_risk(marks)
            except Exception as err:  # loud; the rows keep coming
                self.errors.append(_error("limits", err))
        known = self.orders.get(cid)
        if cid and not (row.get("type") == "submission" and known and known.get("type") == "execution"):
            self.orders[cid] = row  # a submit answer never overrides what the stream already said
        if cid and row.get("type") == "execution":  # the broker's word: waiting (e.g. for the open) or not
            (self._waiting.add if row.get("status") in WAITING_STATUSES else self._waiting.discard)(cid)
        self.trade_updates.append(row)
        if row.get("event") in ("fill", "partial_fill"):
            self.fills += 1
        if row.get("kind") in ("rejected", "failed"):
            self.errors.append(row)

    # ----------------------------------------------------------------- end of session
    def liquidate(self, scope: str = "session", *, strategy: str | None = None) -> None:
        """Cancel the session's open orders and close the positions its fills made — now, ahead of
        every queued strategy order, retrying until flat (see `activity`). Strategy orders are
        refused until resume(). ``scope="account"`` cancels every open order of the account and
        closes every position it holds, the session's or not. ``strategy="name"``: only that
        strategy — it is paused, its open orders cancelled and its book closed (in its own thread:
        the other strategies go on)."""
        check_scope(scope)
        if strategy is None:
            self._command("liquidate", scope)
            return
        if self.status in ("created", "liquidating", "stopping", *ENDED_SESSION_STATES):
            raise BlockpacaError(f"cannot liquidate {strategy}: the session is {self.status}")
        if self._acting is not None:  # the session's own action owns the positions while it runs
            raise BlockpacaError(f"cannot liquidate {strategy}: the session's {self._acting} action is running;"
                                 " once it ends (Hold ends a liquidation) its book can be closed")  # fmt: skip
        self._lineup.require(strategy)
        self._halt_strategy_liquidations(strategy, wait_s=2.0)  # a second press replaces the first
        self._set_state(strategy, "liquidating", "liquidated by the user")
        if self._pool is not None:
            self._pool.withdraw_unsent(f"liquidate {strategy}", strategy)
        stop = threading.Event()
        thread = threading.Thread(target=self._liquidate_strategy, args=(strategy, stop), daemon=True)
        with self._lock:
            self._strategy_liquidations[strategy] = (thread, stop)
        thread.start()

    def _halt_strategy_liquidations(self, only: str | None = None, wait_s: float = 0.0) -> None:
        """Halt running liquidations of single strategies (all, or one): Hold halts them, and the kill
        switch and the end of the session take over from them."""
        running = [(name, thread, stop) for name, (thread, stop) in list(self._strategy_liquidations.items())]
        running = [item for item in running if only is None or item[0] == only]
        for _name, _thread, stop in running:
            stop.set()  # every one at once, then one deadline for all
        deadline = time.monotonic() + wait_s
        for _name, thread, _stop in running:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def hold(self) -> None:
        """Keep every position as it is; strategy orders are refused until resume(). Also halts a
        running liquidation where it is (and any of a single strategy)."""
        self._halt.set()
        self._halt_strategy_liquidations()
        self._command("hold")

    def run_custom_eos(self, fn: Strategy | None = None) -> None:
        """Send the orders of `fn(ctx)` (default: custom_shutdown_action) ahead of queued strategy
        orders; strategy orders are refused until resume()."""
        fn = fn or self.custom_shutdown_action
        if fn is None:
            raise ConfigurationError("run_custom_eos needs fn or custom_shutdown_action, a callable taking the context")
        check_takes_context(fn, "fn")
        self._command("custom", fn)

    def pause(self, strategy: str | None = None) -> None:
        """Stop ticking: every strategy, or the one named (its orders already sent go on)."""
        if strategy is not None:
            self._set_state(strategy, "paused", "paused by the user")
            return
        self._paused.set()
        self._wake.set()
        if self.status == "running":
            self.status = "paused"

    def resume(self, strategy: str | None = None) -> None:
        """Tick again, and accept strategy orders again after a control action. With a name: that
        strategy runs again, also after a limit or the kill switch stopped it (a loss limit still
        crossed stops it again at once)."""
        if strategy is not None:
            liquidation = self._strategy_liquidations.get(strategy)
            if liquidation is not None and liquidation[0].is_alive():
                raise BlockpacaError(f"cannot resume {strategy}: its liquidation is still running (Hold halts it)")
            self._risk.forgive(strategy)
            self._lineup.restart_clocks(strategy)
            self._set_state(strategy, "running", "")
            return
        if self.status == "liquidating":
            raise BlockpacaError("cannot resume: the liquidation is still running (Hold halts it)")
        with self._lock:
            self._control = None
            self._lineup.restart_clocks()
        self._paused.clear()
        self._wake.set()  # the tick loop slept until its next reconciliation: it ticks at once
        if self.status == "paused":
            self.status = "running"

    def kill(self) -> None:
        """The kill switch: halt every strategy, cancel the session's open orders and close its
        positions — in one step, now, ahead of every queued order, retrying until flat (see
        `liquidate`). Strategies stay halted until ``resume(name)``."""
        for name in list(self._lineup.slots):
            self._set_state(name, "halted", "the kill switch")
        self._command("liquidate", "session")

    def _set_state(self, strategy: str, state: str, reason: str) -> None:
        slot = self._lineup.require(strategy)
        slot.state, slot.state_reason = state, reason
        self._lineup.version += 1
        self._wake.set()

    def _look_at_risk(self, marks: Mapping[str, float] | None = None) -> None:
        """Daily-loss limits against the books' P&L now; a crossed one moves its strategy (or, for the
        session's, every strategy) to reduce-only or halted, and says so. Also records the P&L."""
        marks = self._marks() if marks is None else marks
        for strategy, why, state in self._risk.loss_breaches(marks):
            names = [strategy] if strategy else list(self._lineup.slots)
            for name in names:
                slot = self._lineup.slots.get(name)
                # a limit only ever stops a strategy further: never restarts one the user paused
                further = {"running"} if state == "reduce_only" else {"running", "reduce_only", "paused"}
                if slot is not None and slot.state in further:
                    self._set_state(name, state, why)
            scope = f"strategy {strategy}" if strategy else "session"
            self.errors.append(error_event("limits", f"{scope}: {why}; now {state.replace('_', '-')}"))
        if time.monotonic() - self._last_sample >= 1.0:
            self._last_sample = time.monotonic()
            self.books.sample(marks)

    def _marks(self) -> dict[str, float]:
        """Mid prices from the shared-memory quotes, at most 0.1 s old (a block's fills, one after
        another, share one read of the quote book)."""
        now = time.monotonic()
        if now - self._marks_at > MARKS_MAX_AGE_S:
            quotes = self._book.bid_ask() if self._book else {}
            self._marked, self._marks_at = marks_from(quotes, quotes), now
        return self._marked

    def _command(self, name: str, argument: Any = None) -> None:
        """Queue a control action and wake the session thread: it runs at once, whatever the tick
        rate; pressing a button never waits on the network."""
        if self.status in ("created", *ENDED_SESSION_STATES):
            raise BlockpacaError(f"cannot {name}: the session is {self.status}")
        self._commands.put((name, argument))
        self._wake.set()

    def _eos_now(self, name: str, argument: Any = None) -> None:
        """Run a control action on the session thread: strategy orders are refused from here on
        (until resume()), and the ones still waiting for a rate-limit slot are withdrawn."""
        self._begin_control(name)
        self._acting = name
        try:
            if name == "liquidate":
                self._liquidate(argument or "session")
            elif name == "custom":
                self._run_custom(argument or self.custom_shutdown_action)
        finally:
            self._acting = None

    def _begin_control(self, name: str) -> None:
        with self._lock:
            self._control = name
            self._paused.set()
            if self.status == "running":
                self.status = "paused"
            if name != "hold":
                self._halt.clear()
        if self._pool is not None:
            self._pool.withdraw_unsent(name)
        if name != "hold":  # hold() halted them when pressed (not one started after it)
            self._halt_strategy_liquidations(wait_s=5.0)  # this action takes over: never two at once

    def _liquidate(self, scope: str) -> None:
        before, self.status = self.status, "liquidating"
        keep = self._outside
        flat = self._liquidation(scope, self._halt.is_set, keep, CONTROL_TAG, "liquidate").run()
        if not flat:
            self.errors.append(error_event("liquidate", "halted by Hold before the session was flat"))
        elif scope == "account":  # the account is flat: nothing is outside the session, nor in it
            self.ledger.positions.reset([])
            self._reconciler.start([])
            self._outside_at_start = {}
            for name, ticker, quantity in self.books.close_all(self._marks()):
                note = f"{name}'s {quantity:g} {ticker} were closed outside the session: closed at the mid"
                self.errors.append(error_event("liquidate", note))
        else:
            self._settle_books()
        self._refresh_account()
        if self.status == "liquidating":
            self.status = before

    def _refresh_account(self) -> None:
        """The broker's account now (the dashboard's equity values what the account holds outside the
        session at each refresh: after a Flatten sold it, the old value showed as a gain for 30 s)."""
        try:
            self.account_info = self._rest(lambda c: account_dict(c.get_account()))
        except BrokerError as err:  # the next reconciliation refreshes it
            self.errors.append(_error("account", err))

    def _liquidation(
        self, scope: str, halted: Callable[[], bool], keep: Callable[[], Mapping[str, float]], tag: str, where: str
    ) -> Liquidation:
        """A liquidation in the priority lane; its orders carry ``tag`` (the strategy whose book it
        closes, or the session's control tag)."""
        assert self._control_calls is not None and self._limiter is not None
        return Liquidation(
            scope=scope,
            strategy="" if tag == CONTROL_TAG else tag,
            keep=keep,
            strategy_of=lambda cid: (self.orders.get(cid) or {}).get("strategy") or strategy_from_client_order_id(cid),
            ledger=self.ledger,
            rest=self._control_calls,
            send=lambda orders: self._send(orders, urgent=True, strategy=tag),
            status_of=lambda cid: (self.orders.get(cid) or {}).get("status"),
            reason_of=lambda cid: (self.orders.get(cid) or {}).get("reason"),
            withdraw=lambda: self._pool.withdraw_unsent(f"{where} halted", tag, urgent=True) if self._pool else None,
            say=self._say,
            halted=halted,
            report=lambda reason: self.errors.append(error_event(where, reason)),
            rate_wait=self._limiter.free_in,
        )

    def _outside(self) -> dict[str, float]:
        """What the account held outside the session when it started. Not reconciliation's running
        figure: that one also absorbs manual trades in the session's symbols (a liquidation aiming at
        it would reopen what the user closed by hand)."""
        return dict(self._outside_at_start)

    def _liquidate_strategy(self, name: str, stop: threading.Event) -> None:
        """Close one strategy's book (its own thread), in the priority lane, until flat or halted: the
        account goes to what the other strategies and the outside hold, never further."""

        def keep() -> dict[str, float]:
            kept = self._outside()
            for ticker, quantity in self.books.net(without=name).items():
                kept[ticker] = kept.get(ticker, 0.0) + quantity
            return kept

        halted = lambda: stop.is_set() or self._closing.is_set()  # noqa: E731
        try:
            flat = self._liquidation("session", halted, keep, name, f"liquidate {name}").run()
            slot = self._lineup.slots.get(name)
            if flat and slot is not None and slot.call is not None:
                # a call under way when it began sends nothing now (liquidating refuses it); wait for it
                with contextlib.suppress(concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                    slot.call.result(timeout=STRATEGY_GRACE_S)
        except Exception as err:  # loud; the strategy stays stopped
            self.errors.append(_error(f"liquidate {name}", err))
            flat = False
        if not flat:
            self.errors.append(error_event(f"liquidate {name}", "halted before the strategy was flat"))
        slot = self._lineup.slots.get(name)
        if slot is not None and slot.state == "liquidating":
            self._set_state(name, "paused", "liquidated" if flat else "its liquidation was halted")

    def _settle_books(self) -> None:
        """The session is flat; books that still hold opposite positions in a symbol (one strategy
        long, another short: the account holds nothing) are closed against each other."""
        for name, ticker, quantity, price in self.books.settle_flat(self._marks()):  # said once, in s.errors: the
            self.errors.append(error_event("liquidate", f"settled {quantity:g} {ticker} of {name} inside the session"
                                           f" at {price:.2f}"))  # fmt: skip  # activity is what runs now

    def _say(self, text: str) -> None:
        self.activity = text

    def _run_custom(self, fn: Strategy | None) -> None:
        """The custom action's orders go in the priority lane; wait until the broker answered each."""
        if fn is None:
            return
        sent: list[str] = []
        try:
            returned = fn(self._custom_context(sent))
        except Exception as err:
            name = getattr(fn, "__name__", "custom_shutdown_action")
            self.errors.append(StrategyError(name, time.time(), f"{type(err).__name__}: {err}", traceback.format_exc()))
            returned = None
        self._await_answers(sent + self._custom_orders(returned))

    def _custom_context(self, sent: list[str]) -> Context:
        """The custom action's context: the session's own. Its positions are every strategy's together
        (what ``s.get_current_data()`` gives: with several strategies, the main one's book alone left
        the others' positions open), its orders — returned or passed to ``submit_order`` — go as the
        session's, in the priority lane; its state is the main strategy's."""
        def submit_order(orders: object) -> list[str]:
            ids = self._custom_orders(orders)
            sent.extend(ids)
            return ids

        context = self._context_for(None)
        context["get_current_data"], context["submit_order"] = self.get_current_data, submit_order
        context.state = self.state
        return context

    def _custom_orders(self, orders: object) -> list[str]:
        valid, problems = parse_block(orders, self.tickers)
        for problem in problems:
            self._validation_error(problem)
        return self._send(valid, urgent=True)

    def _await_answers(self, client_order_ids: list[str]) -> None:
        """Until the broker answered every one of these orders (accepted, rejected, ...), or Hold."""
        try:
            while not self._halt.is_set():
                waiting = [cid for cid in client_order_ids if cid not in self.orders]
                if not waiting:
                    return
                self._say(f"{len(waiting)} orders of the custom action on their way")
                self._halt.wait(0.05)
        finally:
            self._say("")  # answered (or halted): nothing left on its way

    def _finish(self, eos: str) -> None:
        """The end: queued commands, then the EOS action at once (strategy orders refused from the
        first moment), then everything stops. A liquidation runs until flat."""
        if self.status != "failed":
            self.status = "stopping"
        self._run_commands()
        self._halt_strategy_liquidations(wait_s=5.0)  # the end-of-session action takes over (Hold too)
        self._eos_now(eos)
        deadline = time.monotonic() + STRATEGY_GRACE_S
        for slot in self._lineup.slots.values():
            if slot.call is not None:
                with contextlib.suppress(concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                    slot.call.result(timeout=max(0.0, deadline - time.monotonic()))

    def wait_for(
        self,
        *,
        ticks: int | None = None,
        fills: int | None = None,
        status: str | None = None,
        until: Callable[[], object] | None = None,
        timeout: float = 30.0,
    ) -> Session:
        """Block until the session has run `ticks` strategy calls, seen `fills` fills, reached
        `status` (counts are totals since start), and/or `until()` returns something true (e.g.
        ``until=lambda: s.strategy_state("scalper") == "halted"``). For notebooks and scripts: wait
        for what you want to see, never for a fixed time. Raises TimeoutError saying what was missing."""
        wanted = {"ticks": ticks, "fills": fills}
        for name, value in wanted.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigurationError(f"{name}={value!r} is not valid; allowed: None or an integer >= 0")
        if status is not None and status not in SESSION_STATES:
            raise ConfigurationError(f"status={status!r} is not valid; allowed: {', '.join(SESSION_STATES)}")
        if until is not None and not callable(until):
            raise ConfigurationError(f"until={until!r} is not valid; allowed: None or a function of no arguments")

        def missing() -> list[str]:
            have = {"ticks": self.ticks_done, "fills": self.fills}
            out = [f"{k}={v} (now {have[k]})" for k, v in wanted.items() if v is not None and have[k] < v]
            if status is not None and self.status != status:
                out.append(f"status={status!r} (now {self.status!r})")
            if until is not None and not until():
                out.append(f"until={getattr(until, '__name__', 'until')}() to be true")
            return out

        deadline = time.monotonic() + timeout
        while missing():
            if self.status in ENDED_SESSION_STATES and status not in ENDED_SESSION_STATES:
                raise BlockpacaError(f"the session is {self.status} while waiting for {', '.join(missing())}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"after {timeout:g} s still waiting for {', '.join(missing())}")
            time.sleep(0.02)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session ended (run_seconds or stop(), and its EOS action, are done);
        False if `timeout` seconds passed first. For scripts and tests."""
        return self._done.wait(timeout)

    def stop(self, eos: str | None = None, *, wait: bool = False, timeout: float | None = None) -> None:
        """End the session: run the EOS action (`eos`, else eos_behavior) and stop everything.
        Returns at once; ``wait=True`` blocks until it is done (or `timeout`), like :meth:`wait`.
        Strategy orders are refused from this moment. Idempotent: the first stop's `eos` stands,
        except that ``eos="hold"`` halts a liquidation already running."""
        if eos is not None:
            eos_action("eos", eos)
        if eos == "custom" and self.custom_shutdown_action is None:
            raise ConfigurationError('eos="custom" needs custom_shutdown_action, a callable taking the context')
        with self._lock:
            if self.status == "created":
                self.status = "stopped"
                self._done.set()
                return
            if eos == "hold":
                self._halt.set()
            if not self._stop.is_set():
                self._stop_eos = eos
                self._stop.set()
                self._wake.set()
        if wait and threading.current_thread() not in self._threads[:1]:
            self._done.wait(timeout)

    def _tear_down(self) -> None:
        self._closing.set()
        self._halt_strategy_liquidations(wait_s=5.0)
        self._lineup.shut()
        for thread in self._threads:
            if thread.name == "blockpaca-supervisor":
                thread.join(5)
        if self._pool is not None:
            self._pool.stop()
        if self._recorder is not None:
            self._recorder.stop(10)  # after the pool: the last results are logged first
        stop_child(self._children.get("feed"))
        if self.quote_file is not None and self.quote_file.suffix == ".csv":
            self.quote_file = to_parquet(self.quote_file) or self.quote_file
        if self._book is not None:
            self._book.unlink()
        stop_janitor(self._janitor)
        if self._started_simulator and self._target.simulator is not None:
            self._target.simulator.stop()
        running.release(self._account, self)
        if self.status != "failed":
            self.status = "stopped"

    # ----------------------------------------------------------------- views
    @property
    def quotes(self) -> pd.DataFrame:
        import pandas as pd

        return self._book.snapshot() if self._book else pd.DataFrame()

    @property
    def quote_book(self) -> QuoteBook | None:
        """The shared-memory quote book (None before start)."""
        return self._book

    @property
    def positions(self) -> pd.DataFrame:
        """The session's positions: what the fills of its own orders made (blockpaca's schema)."""
        import pandas as pd

        return pd.DataFrame(self.portfolio.as_blockpaca(), columns=["ticker", "quantity", "bought_at", "cost_basis"])

    @property
    def positions_by_strategy(self) -> pd.DataFrame:
        """Each strategy's positions and P&L (its book): strategy, ticker, quantity, avg_price,
        realized_pl, unrealized_pl (marked to the quotes' mid). The session's own orders (from a cell)
        are the strategy "session". Their quantities add up to :attr:`positions`."""
        import pandas as pd

        return pd.DataFrame(self.books.rows(self._marks()), columns=list(BOOK_COLUMNS))

    @property
    def pnl_by_strategy(self) -> pd.DataFrame:
        """Each strategy's P&L (realised + unrealised) over time: one column per strategy, indexed by
        time (UTC), recorded at every fill and at most once a second while ticking."""
        import pandas as pd

        frame = pd.DataFrame(list(self.books.history), columns=["time", "strategy", "pnl"])
        if frame.empty:
            return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        table = frame.pivot_table(index="time", columns="strategy", values="pnl", aggfunc="last").ffill()
        table.columns.name = None
        return table

    @property
    def account_positions(self) -> pd.DataFrame:
        """Every position of the account as the broker reported it at the last look (at start, then
        every 30 s): the session's, other sessions' and holdings from before; the columns of
        :attr:`positions`."""
        import pandas as pd

        rows = [Position(p["symbol"], float(p["qty"]), float(p["avg_entry_price"])).as_blockpaca()
                for p in self.account_positions_seen]  # fmt: skip
        return pd.DataFrame(rows, columns=["ticker", "quantity", "bought_at", "cost_basis"])

    @property
    def trade_log(self) -> pd.DataFrame:
        """The trade log as `load_trade_log` reads it: the CSV's columns, typed, then ``time`` (the
        timestamp as a UTC datetime); the same columns before the first row is written."""
        if self.trade_log_file.exists():
            return load_trade_log(self.trade_log_file)
        return load_trade_log(io.StringIO(csv_text([])))

    @property
    def dashboard(self) -> Any:
        """The live dashboard widget of this session (one per session, made on first use)."""
        if self._dashboard is None:
            from .ui import Dashboard

            self._dashboard = Dashboard(self)
        return self._dashboard

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.dashboard)

    def plot(self, **options: Any) -> Any:
        """The trade log so far as a plotly figure: fills over price, P&L, positions, statuses, latency."""
        from .plots import plot_trade_log

        return plot_trade_log(self.trade_log, **options)

    @property
    def waiting(self) -> list[dict[str, Any]]:
        """Orders the broker holds without working them yet: `accepted` outside market hours (they
        fill from the next open), a bracket's exits `held` until the entry fills. Not lost, not failed."""
        return [self.orders[cid] for cid in list(self._waiting) if cid in self.orders]

    @property
    def rate_usage(self) -> tuple[int, int]:
        """REST calls in the current rate window and the limit, e.g. (37, 200)."""
        if self._limiter is None:
            return 0, self.max_orders_per_minute or 200
        return self._limiter.used(), self._limiter.limit

    def worker_health(self) -> list[dict[str, Any]]:
        """Per execution worker: alive, pid, orders in flight, sent, restarts."""
        return self._pool.health() if self._pool is not None else []

    @property
    def simulator(self) -> Simulator | None:
        return self._target.simulator

    def __repr__(self) -> str:
        return (
            f"<Session {self.mode} {self.status} tickers={self.tickers[:5]}"
            f"{'…' if len(self.tickers) > 5 else ''} strategies={self.active_strategies!r}>"
        )


def _fees_paid(target: broker_mod.Target) -> FeeSchedule | None:
    """The regulatory fees the account pays per fill, which the books then carry: a live account's
    (Alpaca paper charges none), or the simulator's when it was asked to charge them."""
    charged = target.mode == "live" or bool(getattr(target.simulator, "regulatory_fees", False))
    return REGULATORY if charged else None


# What a running strategy is shown as while the session is not running (paused, liquidating, stopping: "paused").
_NOT_TICKING = {"created": "waiting", "starting": "waiting", "warming_up": "waiting", "stopped": "stopped",
                "failed": "stopped"}  # fmt: skip


def _shown_state(state: str, active: bool) -> str:
    """A strategy's state as users read it: a running one nobody calls is "inactive"."""
    return "inactive" if state == "running" and not active else state


def _error(where: str, err: BaseException) -> ErrorEvent:
    return error_event(where, scrub_text(f"{type(err).__name__}: {err}"))


def _strategy_row(
    name: str, role: str, every: float | None, state: str, reason: str, counts: tuple[int, int]
) -> dict[str, Any]:
    return {
        "name": name,
        "role": role,
        "every": every,
        "state": state,
        "reason": reason,
        "orders": counts[0],
        "positions": counts[1],
        "pnl": 0.0,
        "usage": None,
        "limit": "",
    }


def _shares(order: Order, marks: Mapping[str, float]) -> float:
    """The shares an order is for: its quantity, or its notional at the mid (0 without a quote)."""
    if order.quantity is not None:
        return float(order.quantity)
    mark = marks.get(order.ticker)
    return float(order.notional or 0.0) / mark if mark else 0.0


def _check_budget(budget: object) -> None:
    if budget is None:
        return
    ok = isinstance(budget, int | float) and not isinstance(budget, bool) and math.isfinite(budget) and budget > 0
    if not ok:
        raise ConfigurationError(f"budget={budget!r} is not valid; allowed: None or a number of dollars > 0")
