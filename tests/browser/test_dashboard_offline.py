"""The dashboard without a browser or a kernel: what it computes, what it sends, how its buttons
behave. Runs everywhere (no Chromium needed); the real-browser half is test_dashboard.py."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any

import pytest
from comm_meter import CommMeter
from waiting import wait_for

from blockpaca_nb import BlockpacaError, OrderValidationError, Session
from blockpaca_nb.portfolio import Portfolio
from blockpaca_nb.quotes import QuoteBook
from blockpaca_nb.session import StrategyError
from blockpaca_nb.ui import Dashboard
from blockpaca_nb.ui.chart import ChartPanel, History
from blockpaca_nb.ui.tables import RowDiff
from blockpaca_nb.ui.views import (
    ANSWERED_RANK,
    ENDED_RANK,
    AccountEstimate,
    DequeFollower,
    LifecycleKeys,
    QuoteView,
    describe_error,
    lifecycle_rank,
    position_rows,
    trade_row,
)


class FakeSession:
    """The public face of a Session the dashboard reads, with a real QuoteBook and Portfolio."""

    def __init__(self, tickers: list[str], mode: str = "sim", status: str = "running") -> None:
        self.mode, self.status, self.tickers = mode, status, tickers
        self.activity = ""
        self.strategies = ["alpha", "beta"]
        self.active_strategy = "alpha"
        self.custom_shutdown_action = None
        self.started_at, self.ends_at = time.time(), None
        self.warm_up_period, self.frequency = 0.0, 1.0
        self.ticks = self.skipped_ticks = 0
        self.account_info: dict[str, Any] = {
            "cash": 1000.0,
            "equity": 1000.0,
            "buying_power": 2000.0,
            "last_equity": 1000.0,
        }
        self.rate_usage = (3, 200)
        self.portfolio = Portfolio()
        self.trade_updates: deque[dict[str, Any]] = deque(maxlen=20)
        self.errors: deque[Any] = deque(maxlen=200)
        self.orders: dict[str, dict[str, Any]] = {}
        self.display_refresh_rate, self.max_trade_updates = 0.05, 20
        self._book = QuoteBook.create(tickers)
        self.calls: list[str] = []
        self.rows: list[dict[str, Any]] = []  # what strategy_rows() answers

    def write_quotes(self, shift: float = 0.0) -> None:
        now = time.time()
        for i, ticker in enumerate(self.tickers):
            self._book.write_quote(ticker, 100 + i + shift, 100.02 + i + shift, 100, 100, now, now)

    @property
    def quote_book(self) -> QuoteBook:
        return self._book

    def worker_health(self) -> list[dict[str, Any]]:
        return [{"alive": True, "in_flight": 0, "restarts": 0}]

    def select(self, name: str) -> None:
        self.calls.append(f"select {name}")
        self.active_strategy = name

    def liquidate(self, scope: str = "session", *, strategy: str | None = None) -> None:
        if strategy is not None:
            self.calls.append(f"liquidate strategy {strategy}")
            return
        self.calls.append("liquidate" if scope == "session" else f"liquidate {scope}")

    def kill(self) -> None:
        self.calls.append("kill")

    def strategy_rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]

    def hold(self) -> None:
        self.calls.append("hold")

    def run_custom_eos(self) -> None:
        self.calls.append("custom")

    def pause(self, strategy: str | None = None) -> None:
        self.calls.append("pause" if strategy is None else f"pause {strategy}")

    def resume(self, strategy: str | None = None) -> None:
        self.calls.append("resume" if strategy is None else f"resume {strategy}")

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")  # returns at once; the end-of-session action takes a moment
        self.status = "stopping"
        threading.Timer(1.0, lambda: setattr(self, "status", "stopped")).start()

    def close(self) -> None:
        self._book.unlink()


@pytest.fixture
def fake() -> Any:
    session = FakeSession(["AAPL", "MSFT", "TSLA"])
    yield session
    session.close()


# --------------------------------------------------------------------------- construction, secrets


def test_dashboard_builds_outside_a_kernel(tmp_path: Any) -> None:
    session = Session(tickers=["AAPL", "MSFT"], trade_log_path=tmp_path)
    dashboard = session.dashboard
    assert isinstance(dashboard, Dashboard)
    assert not dashboard.pump.running  # no kernel, no front end: nothing to pump to
    assert dashboard.refresh() is True
    assert dashboard.header.state["mode"] == "SIM"
    assert dashboard.header.state["status"] == "created"
    assert dashboard.controls.start.disabled is False
    dashboard.close()


def test_secrets_never_reach_widget_state(tmp_path: Any) -> None:
    secret, key = "SECRETsecret0123456789abcdefSECRET", "AKEXAMPLEKEY0000"
    with CommMeter(keep=True) as meter:
        session = Session(tickers=["AAPL"], mode="paper", api_key=key, secret_key=secret, trade_log_path=tmp_path)
        session.account_info = {"cash": 5.0, "equity": 5.0, "account_number": "PA-ACCOUNT-NUMBER", "id": "acct-id"}
        dashboard = Dashboard(session, autostart=False)
        dashboard.refresh()
        states = [repr(w.get_state()) for w in dashboard._all_widgets()]
    sent = "\n".join(meter.payloads + states)
    assert dashboard.header.state["mode"] == "PAPER"
    for value in (secret, key, "PA-ACCOUNT-NUMBER", "acct-id"):
        assert value not in sent


def test_live_mode_is_shown_as_live(fake: FakeSession) -> None:
    fake.mode = "live"
    dashboard = Dashboard(fake, autostart=False)
    dashboard.refresh()
    assert dashboard.header.state["mode"] == "LIVE"


# --------------------------------------------------------------------------- diffs and rate budget


def test_row_diff_sends_only_what_changed() -> None:
    diff = RowDiff(keyframe_s=100)
    first = diff.patch({"a": (1,), "b": (2,)}, now=0)
    assert first is not None and first["reset"] and len(first["upsert"]) == 2
    assert diff.patch({"a": (1,), "b": (2,)}, now=1) is None
    second = diff.patch({"a": (1,), "b": (3,), "c": (4,)}, now=2)
    assert second is not None and not second["reset"] and second["base"] == first["seq"]
    assert second["upsert"] == [["b", [3]], ["c", [4]]] and second["remove"] == []
    third = diff.patch({"a": (1,)}, now=3)
    assert third is not None and third["remove"] == ["b", "c"] and third["upsert"] == []
    diff.request_full()
    assert diff.patch({"a": (1,)}, now=4)["reset"]  # type: ignore[index]
    assert diff.patch({"a": (1,)}, now=200)["reset"]  # type: ignore[index]  # keyframe


def test_message_budget_with_500_tickers() -> None:
    tickers = [f"T{i:03d}" for i in range(500)]
    session = FakeSession(tickers)
    try:
        with CommMeter() as meter:
            dashboard = Dashboard(session, autostart=False)
            session.write_quotes()
            dashboard.refresh()
            meter.reset()
            for round_ in range(40):
                session.write_quotes(shift=round_ * 0.01)  # every row changes every refresh: the worst case
                dashboard.refresh()
            per_refresh = meter.messages / 40
            meter.reset()
            dashboard.refresh()  # nothing changed
            idle = meter.messages
        assert per_refresh <= 40 * session.display_refresh_rate * 5, per_refresh  # well under 40/s at 0.25 s
        assert per_refresh <= 4, meter.by_class
        assert idle == 0, "a refresh with nothing new must send nothing"
    finally:
        session.close()


def test_pump_thread_updates_then_ends_with_the_session(fake: FakeSession) -> None:
    fake.write_quotes()
    dashboard = Dashboard(fake, autostart=True)
    wait_for(lambda: dashboard.quotes.patch.get("upsert"), 20, "the pump to send the quotes", every=0.02)
    assert {key for key, _row in dashboard.quotes.patch["upsert"]} == set(fake.tickers)
    fake.status = "stopped"
    wait_for(lambda: not dashboard.pump.running, 20, "the pump to end with the session", every=0.02)
    assert not dashboard.pump.running
    assert dashboard.header.state["status"] == "stopped"


# --------------------------------------------------------------------------- what the panels show


def test_quote_rows_carry_what_the_browser_derives_from() -> None:
    with QuoteBook.create(["AAPL", "MSFT"]) as book:
        view = QuoteView()
        assert view.rows(book.snapshot())["AAPL"] == (None, None, None, None)  # never quoted
        book.write_quote("AAPL", 10.0, 10.2, 1, 1, 5.0, 7.0)
        rows = view.rows(book.snapshot())
        assert rows["AAPL"] == (10.0, 10.2, 10.1, 7.0)
        assert view.quoted == 1 and view.last_receive == 7.0 and view.mids == {"AAPL": pytest.approx(10.1)}
        book.write_quote("AAPL", 11.0, 11.2, 1, 1, 8.0, 9.0)
        assert view.rows(book.snapshot())["AAPL"][2] == 10.1  # the base stays the first mid


def test_position_rows_mark_to_the_mid_with_totals() -> None:
    positions = [
        {"ticker": "AAPL", "quantity": 2.0, "bought_at": 10.0, "cost_basis": 20.0},
        {"ticker": "TSLA", "quantity": -1.0, "bought_at": 50.0, "cost_basis": -50.0},
    ]
    rows, footer = position_rows(positions, {"AAPL": 11.0, "TSLA": 45.0})
    assert rows["AAPL"] == (2.0, 10.0, 20.0, 11.0, 22.0, 2.0, 10.0)
    assert rows["TSLA"] == (-1.0, 50.0, -50.0, 45.0, -45.0, 5.0, 10.0)  # a short gains when the price falls
    assert footer["key"] == "Total (2)" and footer["upnl"] == 7.0 and footer["value"] == -23.0


def test_trade_rows_highlight_rejections_with_their_reason() -> None:
    fill = {
        "event": "fill",
        "executed_qty": 3.0,
        "executed_price": 10.5,
        "fill_qty": 3.0,
        "fill_price": 10.5,
        "qty": 3.0,
        "status": "filled",
        "client_order_id": "buy_long-0-abcdef12",
        "ticker": "AAPL",
        "side": "buy",
        "action": "buy_long",
        "timestamp": 100.0,
        "kind": "trade_update",
    }
    rejected = {
        "event": "rejected",
        "kind": "rejected",
        "status": "rejected",
        "qty": 1e6,
        "ticker": "TSLA",
        "side": "buy",
        "reason": "insufficient buying power",
        "timestamp": 101.0,
    }
    assert trade_row(fill)[7:] == (3.0, 10.5, "", False)
    row = trade_row(rejected)
    assert row[-2:] == ("insufficient buying power", True)


def test_every_kind_of_error_is_described() -> None:
    strategy = StrategyError("alpha", 5.0, "ZeroDivisionError: division by zero", "Traceback ...")
    assert describe_error(strategy) == ("strategy alpha", "ZeroDivisionError: division by zero", "Traceback ...", 5.0)
    source, message, _detail, _at = describe_error(OrderValidationError("side", "hold", "'buy', 'sell'"))
    assert source == "order validation" and "side" in message
    source, message, detail, at = describe_error(
        {
            "kind": "rejected",
            "side": "buy",
            "qty": 5,
            "ticker": "TSLA",
            "reason": "no",
            "client_order_id": "x",
            "timestamp": 3.0,
        }
    )
    assert (source, message, detail, at) == ("broker rejected", "order buy 5 TSLA: no", "client order id: x", 3.0)
    assert describe_error({"kind": "error", "where": "session", "reason": "boom"})[:2] == ("error (session)", "boom")


def test_deque_follower_sees_new_items_across_rollover() -> None:
    events: deque[dict[str, int]] = deque(maxlen=3)
    follower = DequeFollower()
    events.extend([{"n": 1}, {"n": 2}])
    current, new = follower.look(events)
    assert [i["n"] for _k, i in new] == [1, 2]
    events.extend([{"n": 3}, {"n": 4}])  # 1 falls out
    current, new = follower.look(events)
    assert [i["n"] for _k, i in new] == [3, 4] and [i["n"] for _k, i in current] == [2, 3, 4]
    assert follower.look(events)[1] == []


def order_event(cid: str, event: str, kind: str = "execution") -> dict[str, Any]:
    status = {"fill": "filled", "partial_fill": "partially_filled"}.get(event, event)
    return {"type": kind, "kind": event, "event": event, "status": status, "client_order_id": cid, "ticker": "AAPL"}


OUT_OF_ORDER = [  # as they arrive: each worker's answer lands after the stream's events
    order_event("A", "pending_new"),
    order_event("A", "new"),
    order_event("B", "new"),
    order_event("A", "partial_fill"),
    order_event("A", "fill"),
    order_event("A", "accepted", kind="submission"),
    order_event("B", "accepted", kind="submission"),
    order_event("C", "recovered") | {"status": "filled"},
    order_event("C", "accepted", kind="submission"),
]


def numeric_collation(key: str) -> list[Any]:
    """How the browser's table compares keys (localeCompare with numeric: digit runs as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.findall(r"\d+|\D+", key)]


def shown(keyed: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(order, event) newest first, as the panel sorts its keys (descending)."""
    keys = sorted(keyed, reverse=True)
    assert keys == sorted(keyed, key=numeric_collation, reverse=True)  # text and numeric order agree
    return [(keyed[k]["client_order_id"], keyed[k]["event"]) for k in keys]


EXPECTED = [  # each order's events in lifecycle order; orders in arrival order
    ("C", "recovered"), ("C", "accepted"),
    ("A", "fill"), ("A", "partial_fill"),
    ("B", "new"), ("B", "accepted"),
    ("A", "new"), ("A", "pending_new"), ("A", "accepted"),
]  # fmt: skip


def test_trade_panel_keys_put_each_orders_events_in_lifecycle_order() -> None:
    events: deque[dict[str, Any]] = deque(maxlen=20)
    follower, keys = DequeFollower(), LifecycleKeys()
    events.extend(OUT_OF_ORDER[:5])
    first = dict(keys.keyed(follower.look(events)[0]))
    events.extend(OUT_OF_ORDER[5:])
    keyed = dict(keys.keyed(follower.look(events)[0]))
    assert set(first) <= set(keyed)  # a row keeps its key while it is shown
    assert shown(keyed) == EXPECTED
    events.append(order_event("A", "accepted", kind="submission"))  # said twice (a restarted recorder)
    again = shown(dict(keys.keyed(follower.look(events)[0])))
    assert again[-2:] == [("A", "accepted"), ("A", "accepted")]


def test_an_answer_carrying_the_orders_fill_is_ranked_by_it() -> None:
    """A worker's answer logged after the stream's fill carries the order's status (filled): it is the
    latest word on the order, not its first stage."""
    answer = {"type": "submission", "event": "accepted", "status": "filled"}
    assert lifecycle_rank(answer) == ENDED_RANK
    assert lifecycle_rank({**answer, "status": "accepted"}) == ANSWERED_RANK
    new = {"type": "execution", "event": "new", "status": "new"}
    assert lifecycle_rank({**answer, "status": "partially_filled"}) > lifecycle_rank(new) > ANSWERED_RANK


def test_dashboard_sends_trade_rows_in_lifecycle_order(fake: FakeSession) -> None:
    dashboard = Dashboard(fake, autostart=False)
    fake.trade_updates.extend(OUT_OF_ORDER)
    refresh_on_a_thread(dashboard)
    index = {name: n for n, name in enumerate(dashboard.trades.fields)}
    rows = {key: {"client_order_id": row[index["order"]], "event": row[index["event"]]}
            for key, row in dashboard.trades.patch["upsert"]}  # fmt: skip
    assert shown(rows) == EXPECTED


def test_account_estimate_follows_fills_between_refreshes() -> None:
    estimate = AccountEstimate()
    account = {"cash": 1000.0}
    orders: dict[str, dict[str, Any]] = {}
    estimate.update(account, orders)
    orders["a"] = {"side": "buy", "filled_qty": 1.0, "filled_avg_price": 10.0}
    estimate.update(account, orders, changed=["a"])
    assert estimate.cash() == 990.0
    orders["a"] = {"side": "buy", "filled_qty": 2.0, "filled_avg_price": 10.0}  # the rest of the fill
    orders["b"] = {"side": "sell", "filled_qty": 1.0, "filled_avg_price": 99.0}  # not named: not read yet
    estimate.update(account, orders, changed=["a"])
    assert estimate.cash() == 980.0
    estimate.update(account, orders, changed=None)  # a full look finds b
    assert estimate.cash() == 1079.0
    del orders["b"]
    estimate.update(account, orders, changed=None)
    positions = [{"ticker": "AAPL", "quantity": 2.0, "bought_at": 10.0}]
    assert estimate.equity(positions, {"AAPL": 12.0}) == 1004.0
    estimate.update({"cash": 980.0}, orders)  # the broker's refresh already counts the fill
    assert estimate.cash() == 980.0


def test_account_estimate_counts_what_the_account_holds_outside_the_session() -> None:
    """10 XYZ kept from before the session (worth 500 at the broker's refresh) are in the equity: left
    out, the header showed them as a loss (equity 500 short, Day P&L −500)."""
    estimate = AccountEstimate()
    estimate.update({"cash": 1000.0, "equity": 1524.0}, {})  # the session's 2 AAPL at 12 + the outside 500
    positions = [{"ticker": "AAPL", "quantity": 2.0, "bought_at": 10.0}]
    assert estimate.equity(positions, {"AAPL": 12.0}) == 1524.0
    assert estimate.equity(positions, {"AAPL": 13.0}) == 1526.0  # the session's move, the outside as last valued
    estimate.update({"cash": 1000.0, "equity": 1530.0}, {})  # the next refresh values the outside again
    assert estimate.equity(positions, {"AAPL": 13.0}) == 1530.0


# --------------------------------------------------------------------------- controls


def test_live_liquidate_asks_first(fake: FakeSession) -> None:
    fake.mode = "live"
    dashboard = Dashboard(fake, autostart=False)
    dashboard.controls.request_liquidate()
    assert fake.calls == []
    dashboard.refresh()
    assert dashboard.controls.confirm_bar.layout.display == "flex"
    dashboard.controls._confirmed(True)
    assert fake.calls == ["liquidate"]
    dashboard.refresh()
    assert dashboard.controls.confirm_bar.layout.display == "none"


def test_flatten_account_always_asks_first(fake: FakeSession) -> None:
    dashboard = Dashboard(fake, autostart=False)  # a simulator session: Liquidate would not ask
    dashboard.controls.flatten.click()
    assert fake.calls == []
    dashboard.refresh()
    assert dashboard.controls.confirm_bar.layout.display == "flex"
    assert "whole account" in dashboard.controls.question.value
    assert dashboard.controls.yes.description == "Yes, flatten the account"
    dashboard.controls.no.click()
    assert fake.calls == [] and dashboard.controls.last_action == "flatten account cancelled"
    dashboard.controls.flatten.click()
    dashboard.controls.yes.click()
    assert fake.calls == ["liquidate account"]
    dashboard.controls.flatten.click()  # asked again, then Liquidate pressed instead: the question is withdrawn
    dashboard.controls.liquidate.click()
    dashboard.controls.yes.click()  # a "Yes" still on the page flattens nothing, and says why
    assert fake.calls == ["liquidate account", "liquidate"] and "withdrawn" in dashboard.controls.last_action
    dashboard.refresh()
    assert dashboard.controls.confirm_bar.layout.display == "none"


def test_sim_liquidate_and_hold_go_straight_through(fake: FakeSession) -> None:
    dashboard = Dashboard(fake, autostart=False)
    dashboard.controls.liquidate.click()
    dashboard.controls.hold.click()
    dashboard.controls.pause.click()
    dashboard.controls.resume.click()
    assert fake.calls == ["liquidate", "hold", "pause", "resume"]


def test_buttons_follow_the_status(fake: FakeSession) -> None:
    fake.status = "created"
    dashboard = Dashboard(fake, autostart=False)
    dashboard.refresh()
    c = dashboard.controls
    assert not c.start.disabled and c.pause.disabled and c.liquidate.disabled and c.custom.disabled
    c.start.click()
    assert fake.calls == ["start"]
    fake.status, fake.custom_shutdown_action = "paused", print
    dashboard.refresh()
    assert c.start.disabled and c.pause.disabled and not c.resume.disabled and not c.custom.disabled


def test_stop_button_never_blocks(fake: FakeSession) -> None:
    dashboard = Dashboard(fake, autostart=False)
    started = time.monotonic()
    dashboard.controls.stop.click()
    assert time.monotonic() - started < 0.2
    dashboard.refresh()
    assert dashboard.controls.stop.disabled  # no second press while stopping
    wait_for(lambda: fake.status == "stopped", 20, "the stop to finish", every=0.02)
    assert fake.calls == ["stop"] and fake.status == "stopped"


def test_a_failing_button_shows_in_the_errors_panel(fake: FakeSession) -> None:
    def refuse() -> None:
        raise BlockpacaError("cannot hold: the session is stopped")

    fake.hold = refuse  # type: ignore[method-assign]
    dashboard = Dashboard(fake, autostart=False)
    dashboard.controls.hold.click()
    dashboard.refresh()
    rows = [row for _key, row in dashboard.errors.patch["upsert"]]
    assert any(r[1] == "dashboard" and "cannot hold" in r[2] for r in rows)


def refresh_on_a_thread(dashboard: Dashboard) -> None:
    """One refresh on another thread, as the pump does (the test's thread plays the kernel's)."""
    runner = threading.Thread(target=dashboard.refresh)
    runner.start()
    runner.join()


def test_strategy_selector_hot_swaps_and_follows_the_session(fake: FakeSession) -> None:
    dashboard = Dashboard(fake, autostart=False)
    refresh_on_a_thread(dashboard)
    assert list(dashboard.controls.strategy.options) == ["alpha", "beta"]
    dashboard.controls.strategy.value = "beta"  # as the front end would
    assert fake.calls == ["select beta"] and fake.active_strategy == "beta"
    fake.active_strategy = "alpha"  # the user re-ran a strategy cell
    refresh_on_a_thread(dashboard)  # the pump's own write must not select again
    assert dashboard.controls.strategy.value == "alpha" and fake.calls == ["select beta"]


def test_the_strategies_panel_shows_each_ones_state_pnl_and_limit_use(fake: FakeSession) -> None:
    fake.rows = [
        {"name": "alpha", "role": "main", "every": 5.0, "state": "running", "orders": 3, "positions": 1,
         "pnl": 12.5, "usage": 0.42, "limit": "max_position"},
        {"name": "beta", "role": "alongside", "every": 60.0, "state": "halted", "reason": "max_daily_loss",
         "orders": 9, "positions": 0, "pnl": -501.0, "usage": 1.002, "limit": "max_daily_loss"},
    ]  # fmt: skip
    dashboard = Dashboard(fake, autostart=False)
    dashboard.refresh()
    rows = dict((key, row) for key, row in dashboard.strategies.patch["upsert"])
    assert rows["alpha"] == ["main", "5 s", "running", 3, 1, 12.5, 0.42, "max_position", False]
    assert rows["beta"] == ["alongside", "1 min", "halted", 9, 0, -501.0, 1.002, "max_daily_loss", True]
    fake.rows[1]["state"] = "running"
    dashboard.refresh()
    assert dashboard.strategies.patch["upsert"] == [["beta", ["alongside", "1 min", "running", 9, 0, -501.0, 1.002,
                                                             "max_daily_loss", False]]]  # fmt: skip


def test_kill_and_one_strategys_buttons_call_the_session(fake: FakeSession) -> None:
    dashboard = Dashboard(fake, autostart=False)
    refresh_on_a_thread(dashboard)
    c = dashboard.controls
    assert list(c.target.options) == ["alpha", "beta"]
    c.target.value = "beta"
    c.pause_one.click()
    c.resume_one.click()
    c.liquidate_one.click()
    c.kill.click()
    assert fake.calls == ["pause beta", "resume beta", "liquidate strategy beta", "kill"]
    fake.strategies.append("gamma")  # a cell registers another strategy: the pick stays (the Dropdown reset it to
    refresh_on_a_thread(dashboard)  # the first, and "Liquidate it" closed alpha's book instead of beta's)
    assert list(c.target.options) == ["alpha", "beta", "gamma"] and c.target.value == "beta"
    fake.calls = []
    c.liquidate_one.click()
    assert fake.calls == ["liquidate strategy beta"]
    fake.mode, fake.calls = "live", []
    c.kill.click()  # on a live account the kill switch asks first
    assert fake.calls == []
    c.yes.click()
    assert fake.calls == ["kill"]


def test_the_chart_draws_one_pnl_line_per_strategy_once_there_are_two(fake: FakeSession) -> None:
    fake.write_quotes()
    fake.rows = [{"name": "alpha", "role": "main", "orders": 1, "pnl": 1.0}]
    dashboard = Dashboard(fake, autostart=False)
    dashboard.refresh()
    assert dashboard.chart.patch["lines"] == {}
    fake.rows.append({"name": "beta", "role": "alongside", "orders": 2, "pnl": -2.0})
    for _ in range(4):  # the chart samples every 4th refresh
        dashboard.refresh()
    assert dashboard.chart.patch["lines"] == {"alpha": [1.0], "beta": [-2.0]}


# --------------------------------------------------------------------------- chart


def test_chart_follows_the_first_traded_ticker_until_the_user_picks(fake: FakeSession) -> None:
    fake.write_quotes()
    dashboard = Dashboard(fake, autostart=False)
    fake.trade_updates.append(
        {
            "event": "fill",
            "ticker": "TSLA",
            "side": "buy",
            "executed_qty": 1.0,
            "executed_price": 102.0,
            "fill_qty": 1.0,
            "fill_price": 102.0,
            "timestamp": time.time(),
        }
    )
    refresh_on_a_thread(dashboard)
    assert dashboard.chart.ticker == "TSLA" and dashboard.chart_ticker.value == "TSLA"
    dashboard.chart_ticker.value = "MSFT"  # the user's choice sticks
    refresh_on_a_thread(dashboard)
    assert dashboard.chart.ticker == "MSFT" and dashboard.chart.patch["ticker"] == "MSFT"


def test_chart_history_stays_bounded_and_sends_only_new_samples() -> None:
    history = History(["AAPL"], capacity=8)
    for i in range(20):
        history.sample(float(i), float(i), {"AAPL": 100.0 + i})
    assert history.size <= 8 and history.stride > 1 and history.compactions >= 1
    chart = ChartPanel(["AAPL", "MSFT"])
    chart.history.sample(1.0, 0.5, {"AAPL": 10.0})
    assert chart.publish(1.0) and chart.patch["reset"] and chart.patch["price"] == [10.0]
    chart.history.sample(2.0, 0.7, {"AAPL": 11.0})
    chart.history.add_fill("AAPL", 2.0, 11.0, 1.0, 1)
    assert chart.publish(2.0)
    assert not chart.patch["reset"] and chart.patch["t"] == [2.0] and chart.patch["fills"] == [[2.0, 11.0, 1.0, 1]]
    assert not chart.publish(3.0)  # nothing new
    chart.select("MSFT")
    assert chart.publish(4.0) and chart.patch["reset"] and chart.patch["ticker"] == "MSFT"


def test_the_header_is_sent_at_least_every_heartbeat_so_a_silent_kernel_shows() -> None:
    """Sent only when a value changed, a quiet session's header and a restarted kernel's looked the
    same on the page (the old one stayed green, "running"): now a heartbeat, which header.js misses."""
    from blockpaca_nb.ui.header import HEARTBEAT_S, HeaderPanel

    header = HeaderPanel()
    assert header.publish({"status": "running"}, now=100.0)
    assert not header.publish({"status": "running"}, now=100.0 + HEARTBEAT_S / 2)  # nothing new, soon after
    assert header.publish({"status": "running"}, now=100.0 + HEARTBEAT_S)  # nothing new, but a heartbeat
    assert header.state["now"] == 100.0 + HEARTBEAT_S


def test_the_header_says_when_the_main_strategy_does_not_run(fake: FakeSession) -> None:
    """After the kill switch and resume() the session runs while its strategies stay halted: the
    header said "running · next tick in …" with nothing to show that no strategy would trade."""
    dashboard = Dashboard(fake, autostart=False)
    dashboard.refresh()
    assert dashboard.header.state["strategy_state"] == ""  # a session without strategy_state(): nothing said
    fake.strategy_state = lambda name: "halted" if name == "alpha" else "running"  # type: ignore[attr-defined]
    dashboard.refresh()
    assert dashboard.header.state["strategy"] == "alpha" and dashboard.header.state["strategy_state"] == "halted"
