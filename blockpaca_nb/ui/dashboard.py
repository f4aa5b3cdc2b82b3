"""The live dashboard of a :class:`~blockpaca_nb.Session` (``s.dashboard``; ``s.start()`` as a cell's
last line shows it).

Layout, top to bottom: the header (mode, status, strategy, account, rate limit, feed, workers),
the controls, the strategies (each one's state, orders, P&L and limit use), quotes beside
positions, the trade updates, the errors, and the live chart (one P&L line per strategy). The data
panels are anywidgets (``table.js``, ``header.js``, ``chart.js`` and ``dashboard.css`` beside this
file; no build step); controls and layout are ipywidgets.

One pump thread (see :mod:`.pump`) reads the session and writes every widget; button handlers
only call the session's non-blocking methods (:mod:`.controls`). Outside a kernel the dashboard
still builds (the widgets have no front end) and the pump is not started; :meth:`Dashboard.refresh`
runs one update by hand.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import ipywidgets as widgets

from ..scrub import scrub_text
from ..statuses import ENDED_SESSION_STATES
from .chart import ChartPanel
from .controls import Controls, DashboardError
from .header import HeaderPanel, header_state
from .pump import Pump
from .session_view import SessionView
from .tables import TablePanel
from .views import (
    ERROR_COLUMNS,
    ERROR_FIELDS,
    POSITION_COLUMNS,
    POSITION_FIELDS,
    QUOTE_COLUMNS,
    QUOTE_FIELDS,
    STRATEGY_COLUMNS,
    STRATEGY_FIELDS,
    TRADE_COLUMNS,
    TRADE_FIELDS,
    AccountEstimate,
    DequeFollower,
    ErrorView,
    LifecycleKeys,
    QuoteView,
    fill_of,
    position_rows,
    strategy_table,
    trade_row,
)

CHART_PERIODS = 4  # the chart is updated every 4th refresh (1 s at the default 0.25 s)
WORKERS_PERIODS = 4  # worker health is read every 4th refresh (it takes the pool's lock)


def in_kernel() -> bool:
    """True inside a running Jupyter kernel (where widgets have a front end)."""
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return False
    return bool(Kernel.initialized())


class Dashboard(widgets.VBox):
    """The session's live dashboard widget."""

    def __init__(
        self, session: SessionView, *, refresh_rate: float | None = None, autostart: bool | None = None
    ) -> None:
        """Build the widgets for ``session``; inside a kernel (or with ``autostart=True``) start the pump.

        ``refresh_rate`` (seconds) defaults to the session's ``display_refresh_rate``.
        """
        self._session = session
        self._fixed_rate = refresh_rate
        self._pump = Pump(self.refresh, refresh_rate or session.display_refresh_rate)
        self.controls = Controls(session, self._pump.wake)
        self.header = HeaderPanel()
        self.strategies, self.quotes, self.positions, self.trades, self.errors = _tables(session.max_trade_updates)
        self._strategy_pnl: dict[str, float] = {}
        self.chart = ChartPanel(session.tickers)
        self.chart_ticker = _chart_selector(session.tickers)
        self.chart_ticker.observe(self._on_chart_ticker, names="value")
        super().__init__(children=self._layout())
        self.add_class("bp-dashboard")
        self._quote_view, self._account, self._error_view = QuoteView(), AccountEstimate(), ErrorView()
        self._trade_follower, self._error_follower = DequeFollower(), DequeFollower()
        self._trade_keys = LifecycleKeys()  # an order's events in lifecycle order, whatever their arrival
        self._refreshes, self._final_sent = 0, False
        self._workers: list[dict[str, Any]] = []
        self._chart_auto, self._chart_writer = True, 0
        self.own_errors: deque[BaseException] = deque(maxlen=50)
        if autostart if autostart is not None else in_kernel():
            self._pump.start()

    def _layout(self) -> list[widgets.Widget]:
        def row(*children: widgets.Widget) -> widgets.HBox:
            for child in children:
                child.layout.flex, child.layout.min_width = "1 1 420px", "0"
            box = widgets.HBox(list(children))
            box.add_class("bp-row")
            return box

        chart_box = widgets.VBox([self.chart_ticker, self.chart])
        chart_box.add_class("bp-chart-box")
        return [
            self.header,
            *self.controls.rows(),
            self.strategies,
            row(self.quotes, self.positions),
            self.trades,
            self.errors,
            chart_box,
        ]

    def __repr__(self) -> str:
        return f"<Dashboard of {self._session!r}; pump {'running' if self._pump.running else 'stopped'}>"

    # ------------------------------------------------------------------ public
    @property
    def session(self) -> Any:
        return self._session

    @property
    def pump(self) -> Pump:
        return self._pump

    def messages(self) -> dict[str, int]:
        """Messages each data panel has sent (the controls' are not counted here)."""
        panels = {
            "header": self.header,
            "strategies": self.strategies,
            "quotes": self.quotes,
            "positions": self.positions,
            "trades": self.trades,
            "errors": self.errors,
            "chart": self.chart,
        }
        return {name: panel.messages for name, panel in panels.items()}

    def start(self) -> None:
        """Start the pump thread (done by the constructor inside a kernel)."""
        self._final_sent = False
        self._pump.start()

    def close(self) -> None:
        """Stop the pump and close every widget of the dashboard."""
        self._pump.stop()
        for widget in self._all_widgets():
            widget.close()
        super().close()

    def _all_widgets(self) -> list[widgets.Widget]:
        panels = [self.header, self.strategies, self.quotes, self.positions, self.trades, self.errors, self.chart]
        panels.append(self.chart_ticker)
        return [*panels, *self.controls.all_widgets()]

    # ------------------------------------------------------------------ the pump's work
    def refresh(self) -> bool:
        """Read the session once and send each panel what changed; False once the session ended
        and its final state was sent (the pump then stops)."""
        session, now = self._session, time.time()
        status = session.status
        self._refreshes += 1
        if self._fixed_rate is None:  # follow the session's display_refresh_rate if the user changes it
            self._pump.interval = float(session.display_refresh_rate)
        positions = self._step("portfolio", session.portfolio.as_blockpaca) or []
        self._step("quotes", lambda: self.quotes.publish(self._quote_view.rows(self._snapshot()), now=now))
        mids = self._quote_view.mids
        changed = self._step("trades", lambda: self._publish_trades(now))
        self._step("account", lambda: self._account.update(session.account_info or {}, session.orders, changed))
        self._step("positions", lambda: self.positions.publish(*position_rows(positions, mids), now=now))
        self._step("strategies", lambda: self._publish_strategies(now))
        self._step("errors", lambda: self._publish_errors(now))
        equity = self._account.equity(positions, mids)
        self._step("header", lambda: self._publish_header(equity, now))
        due = self._refreshes % CHART_PERIODS == 1 or status in ENDED_SESSION_STATES
        if due or self.chart.pending():
            self._step("chart", lambda: self._publish_chart(equity, mids, now, sample=due))
        self._step("controls", self.controls.sync)
        return self._keep_going(status)

    def _keep_going(self, status: str) -> bool:
        if status not in ENDED_SESSION_STATES:
            return True
        done, self._final_sent = self._final_sent, True
        return not done  # one more refresh after the end, so nothing late is missed

    def _step(self, what: str, action: Any) -> Any:
        """Run one part of a refresh; a failure is shown in the errors panel once, and the rest goes on."""
        try:
            return action()
        except Exception as err:
            text = scrub_text(f"dashboard {what}: {type(err).__name__}: {err}")
            if not any(str(e) == text for e in self.own_errors):
                self.own_errors.append(DashboardError(text))
            return None

    def _snapshot(self) -> Any:
        book = self._session.quote_book
        return book.snapshot() if book is not None else None

    def _publish_trades(self, now: float) -> list[str] | None:
        """Send the trade updates; return the client order ids they touched (None if some may be
        missing: more events came in than the panel holds)."""
        current, new = self._trade_follower.look(self._session.trade_updates)
        for _key, row in new:
            fill = fill_of(row)
            if fill is not None:
                self.chart.history.add_fill(*fill)
        self.trades.publish({key: trade_row(row) for key, row in self._trade_keys.keyed(current)}, now=now)
        if self._trade_follower.missed:
            return None
        return [str(row.get("client_order_id")) for _key, row in new if row.get("client_order_id")]

    def _publish_strategies(self, now: float) -> None:
        rows = self._session.strategy_rows()
        self.strategies.publish(strategy_table(rows), now=now)
        books = {str(r["name"]): float(r.get("pnl") or 0.0) for r in rows if r.get("orders") or r.get("role") != "off"}
        self._strategy_pnl = books if len(books) > 1 else {}  # one line per strategy once there are two

    def _publish_errors(self, now: float) -> None:
        items = [*self._session.errors, *self.controls.notices, *self.own_errors]
        current, _new = self._error_follower.look(items)
        self._error_view.forget_missing(item for _key, item in current)
        self.errors.publish({key: self._error_view.row(item, now) for key, item in current}, now=now)

    def _publish_header(self, equity: float, now: float) -> None:
        session = self._session
        if self._refreshes % WORKERS_PERIODS == 1:
            self._workers = session.worker_health()
        errors = len(session.errors) + len(self.controls.notices) + len(self.own_errors)
        state = header_state(
            session,
            equity=equity,
            cash=self._account.cash(),
            start_equity=self._account.start_equity,
            last_receive=self._quote_view.last_receive,
            quoted=self._quote_view.quoted,
            workers=self._workers,
            errors=errors,
        )
        state["refresh_s"] = float(self._pump.interval)  # how often the page hears from the kernel at most
        self.header.publish(state, now)

    def _publish_chart(self, equity: float, mids: dict[str, float], now: float, sample: bool) -> None:
        pnl = equity - self._account.start_equity
        running = self._session.status in ("warming_up", "running", "paused", "stopping")
        if sample and (running or self.chart.history.size):
            self.chart.history.sample(now, pnl, mids, self._strategy_pnl)
        self._follow_first_fill()
        self.chart.publish(now)

    def _follow_first_fill(self) -> None:
        """Until the user picks a ticker, chart the first one that trades (pump thread)."""
        counts = self.chart.history.fill_counts
        if not self._chart_auto or not counts or counts.get(self.chart.ticker):
            return
        ticker = next(iter(counts))
        self.chart.select(ticker)
        self._chart_writer = threading.get_ident()
        if self.chart_ticker.value != ticker:
            self.chart_ticker.value = ticker

    def _on_chart_ticker(self, change: dict[str, Any]) -> None:
        """The user picked the chart's ticker (the pump's own write is not a choice)."""
        if threading.get_ident() == self._chart_writer:
            return
        self._chart_auto = False
        self.chart.select(str(change.get("new")))
        self._pump.wake()


def _tables(max_trade_updates: int) -> tuple[TablePanel, TablePanel, TablePanel, TablePanel, TablePanel]:
    """The strategies, quotes, positions, trade updates and errors panels."""
    strategies = _table(
        "strategies",
        "Strategies",
        STRATEGY_COLUMNS,
        STRATEGY_FIELDS,
        height=170,
        empty_text="no strategy registered yet: @s.strategy(every=...)",
        sort={"key": "key", "desc": False},
    )
    quotes = _table(
        "quotes", "Quotes", QUOTE_COLUMNS, QUOTE_FIELDS, height=330, empty_text="waiting for the first quotes"
    )
    positions = _table(
        "positions",
        "Positions",
        POSITION_COLUMNS,
        POSITION_FIELDS,
        height=330,
        empty_text="no positions",
        sort={"key": "key", "desc": False},
    )
    trades = _table(
        "trades",
        "Trade updates",
        TRADE_COLUMNS,
        TRADE_FIELDS,
        height=300,
        empty_text="no order events yet",
        sort={"key": "key", "desc": True},
        note=f"latest {max_trade_updates}",
    )
    errors = _table(
        "errors",
        "Errors",
        ERROR_COLUMNS,
        ERROR_FIELDS,
        height=200,
        empty_text="no errors",
        sort={"key": "key", "desc": True},
        note="click a row for its traceback",
    )
    return strategies, quotes, positions, trades, errors


def _chart_selector(tickers: list[str]) -> widgets.Dropdown:
    selector = widgets.Dropdown(
        description="Chart",
        options=list(tickers),
        layout=widgets.Layout(width="220px"),
        style={"description_width": "45px"},
    )
    selector.add_class("bp-chart-select")
    return selector


def _table(name: str, title: str, columns: Any, fields: Any, **options: Any) -> TablePanel:
    """A table panel; its element gets the class ``bp-panel-<name>`` (for styling and tests)."""
    panel = TablePanel(columns=columns, fields=fields, title=title, **options)
    panel.add_class(f"bp-panel-{name}")
    return panel
