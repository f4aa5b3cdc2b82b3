"""The control path, judged by what the broker holds: EOS actions act at once, end on time, are
never overtaken or abandoned, touch only what the session owns, and refuse strategy orders after
they begin. Every session here trades on its own real simulator through the real alpaca-py clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import TICKERS, held, started
from engine_helpers import make_session as session_on
from waiting import wait_for

from blockpaca_nb import BlockpacaError, ConfigurationError, Session, Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(symbols=[*TICKERS, "TSLA"], seed=3, quotes_per_second=20, starting_cash=1e7) as simulator:
        yield simulator


def make_session(sim: Simulator, tmp_path: Path, **kwargs: Any) -> Session:
    return session_on(sim, tmp_path, "control", **kwargs)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def broker_orders(sim: Simulator, prefix: str = "") -> list[dict[str, Any]]:
    return [o for o in sim.orders() if o["client_order_id"].startswith(prefix)]


def buy_outside(sim: Simulator, ticker: str, qty: int) -> None:
    """An order of another program on the same account."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import MarketOrderRequest

    client = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
    client.submit_order(MarketOrderRequest(symbol=ticker, qty=qty, side="buy", time_in_force="day"))
    wait_for(lambda: held(sim, ticker) == qty, what=f"the outside {ticker} position")


def buying_once(qty: int = 3, ticker: str = "AAPL", orders: int = 1) -> Any:
    def strategy(ctx: Any) -> Any:
        if ctx.state.get("done"):
            return []
        ctx.state["done"] = True
        order = {"ticker": ticker, "side": "buy", "order_type": "market", "action": "buy_long", "quantity": qty}
        return [order] * orders

    return strategy


def test_a_liquidation_pressed_before_the_session_heard_a_fill_still_closes_it(
    sim: Simulator, tmp_path: Path
) -> None:
    """The broker fills an order a moment before the fill reaches the session (the trade stream, the
    recorder, the kernel). Pressed in that moment, a liquidation read the session's positions without
    it, found nothing to close and ended, leaving the position open at the broker. Here the moment is
    stretched: the session hears the fill 3 s late."""
    session = make_session(sim, tmp_path, frequency="1m")
    session.strategy(buying_once(3))
    hear = session._on_row
    late: list[threading.Timer] = []

    def hear_fills_late(row: dict[str, Any]) -> None:
        if row.get("event") == "fill" and not row.get("client_order_id", "").startswith("liquidate-"):
            late.append(threading.Timer(3.0, hear, (row,)))
            late[-1].start()
            return
        hear(row)

    session._on_row = hear_fills_late  # type: ignore[method-assign]
    started(session)
    try:
        wait_for(lambda: held(sim, "AAPL") == 3, what="the strategy's fill at the broker")
        assert session.positions.empty  # the premise: the session has not heard it yet
        session.liquidate()
        wait_for(lambda: held(sim, "AAPL") == 0, timeout=30, what="flat at the broker")
    finally:
        for timer in late:
            timer.join()
        session.stop(wait=True)
    assert [(o["qty"], o["status"]) for o in broker_orders(sim, "liquidate-")] == [("3", "filled")]


def test_a_liquidation_leaves_a_sliver_worth_under_a_dollar_open_and_says_so(sim: Simulator, tmp_path: Path) -> None:
    """Alpaca takes no order worth less than $1. A sliver of a share left by fractional trades can
    only be closed with the whole position; a liquidation that sent it was refused at every round and
    never ended. Now it ends, sends nothing for it, and says what is left and how to close it."""

    def sliver(ctx: Any) -> Any:
        ask = ctx.get_current_data()[0]["AAPL"]["ask"]
        step = ctx.state.setdefault("step", 0)
        ctx.state["step"] += 1
        if not ask or step > 1:
            return []
        bought = ctx.state.setdefault("bought", round(3 / ask, 6))  # about $3, then all but about $0.40
        side, qty = ("buy", bought) if step == 0 else ("sell", round(bought - 0.4 / ask, 6))
        return [{"ticker": "AAPL", "side": side, "order_type": "market", "quantity": qty}]

    session = make_session(sim, tmp_path)
    session.strategy(sliver)
    started(session, quotes=True)
    try:
        wait_for(lambda: 0 < held(sim, "AAPL") * session.quotes.loc["AAPL", "bid"] < 1, what="a sliver at the broker")
        wait_for(lambda: not session.positions.empty and session.positions["quantity"].sum() == held(sim, "AAPL"),
                 what="the session's own sliver")  # fmt: skip
        left = held(sim, "AAPL")
        session.liquidate()
        said = wait_for(lambda: [str(e) for e in session.errors if "left open" in str(e)], 30, "the liquidation's word")
        assert held(sim, "AAPL") == left and not broker_orders(sim, "liquidate-")  # nothing sent, nothing refused
        assert f"{left:g} AAPL ($0." in said[0] and "no order worth less than $1" in said[0], said
        assert "closing the whole position" in said[0]  # the account holds the sliver alone: that closes it
        session.resume()
        session.liquidate(scope="account")  # Flatten account: the sliver goes as a whole position (no minimum)
        wait_for(lambda: held(sim, "AAPL") == 0, 30, "the account flat")
        wait_for(lambda: session.status != "liquidating", 30, "the flatten to end")
        account = session.account_info or {}  # the broker's account read again at once (the dashboard values
        assert float(account["equity"]) == float(account["cash"])  # outside holdings at it: 30 s stale before)
    finally:
        session.stop(wait=True)


def test_hold_cancels_a_halted_liquidations_orders_still_working(tmp_path: Path) -> None:
    """After the close a liquidation's sell waits `accepted` for the open. Hold halts the liquidation
    and keeps the positions: its sell is cancelled at the broker (left there, it sold the position at
    the next open, with the session long stopped)."""
    with Simulator(symbols=TICKERS, seed=3, quotes_per_second=20, market_hours="nyse",
                   clock_start="2026-12-04T15:00:00-05:00") as nyse:  # fmt: skip
        session = make_session(nyse, tmp_path, frequency="1m")
        session.strategy(buying_once(2))
        started(session)
        try:
            wait_for(lambda: held(nyse, "AAPL") == 2, what="the strategy's fill before the close")
            nyse.set_clock("2026-12-04T16:05:00-05:00")  # after the close: a market order waits for the open
            session.liquidate()
            wait_for(lambda: [o["status"] for o in broker_orders(nyse, "liquidate-")] == ["accepted"],
                     what="the liquidation's sell waiting for the open")  # fmt: skip
            session.hold()
            wait_for(lambda: [o["status"] for o in broker_orders(nyse, "liquidate-")] == ["canceled"], 30,
                     "the halted liquidation's sell cancelled at the broker")  # fmt: skip
        finally:
            session.stop(eos="hold", wait=True)
        assert held(nyse, "AAPL") == 2  # Hold kept the position
        assert any("closing orders still working were cancelled" in str(e) for e in session.errors), session.errors


def test_liquidate_acts_at_once_whatever_the_tick_rate(sim: Simulator, tmp_path: Path) -> None:
    """frequency="1m": the button must not wait for the next tick."""
    session = make_session(sim, tmp_path, frequency="1m")
    session.strategy(buying_once(3))
    started(session)
    try:
        wait_for(lambda: held(sim, "AAPL") == 3, what="the strategy's fill")
        pressed = time.monotonic()
        session.liquidate()
        wait_for(lambda: held(sim, "AAPL") == 0, timeout=30, what="flat at the broker")  # the next tick: 60 s
        print(f"liquidate with a 1 min tick: flat at the broker after {time.monotonic() - pressed:.2f} s")
        wait_for(lambda: session.positions.empty, 30, "the liquidation's fill in the session's positions")
    finally:
        session.stop(wait=True)
    assert [(o["qty"], o["status"]) for o in broker_orders(sim, "liquidate-")] == [("3", "filled")]
    assert not [e for e in session.errors if "no longer at the broker" in str(e)]  # it closed them itself


def test_the_end_is_a_deadline_not_a_tick(sim: Simulator, tmp_path: Path) -> None:
    """run_seconds=6 with a 5 s tick: the EOS liquidation goes out at the end, not at the 10 s tick."""
    session = make_session(sim, tmp_path, frequency=5, run_seconds=6, eos_behavior="liquidate")
    session.strategy(buying_once(2))
    started(session)
    assert session.wait(60), "the session did not end"
    assert session.ends_at is not None
    closing = broker_orders(sim, "liquidate-")
    assert [o["status"] for o in closing] == ["filled"]
    late = epoch(closing[0]["created_at"]) - session.ends_at
    print(f"EOS liquidation reached the broker {late:.2f} s after the end")
    assert late < 3.0  # a tick-bound end would be 4 s late (the tick at 10 s)
    assert held(sim, "AAPL") == 0


def test_queued_strategy_orders_never_overtake_the_liquidation(sim: Simulator, tmp_path: Path) -> None:
    """40 strategy orders under a budget of 20 calls per 6 s, then stop(eos="liquidate"): the
    liquidation goes ahead of the queue, the queued orders are withdrawn, and it ends flat."""
    session = make_session(sim, tmp_path, max_orders_per_minute=20, rate_window_s=6.0)
    session.strategy(buying_once(1, orders=40))
    started(session)
    wait_for(lambda: held(sim, "AAPL") >= 1, what="the first strategy fills")
    stopped_at = time.time()
    session.stop(eos="liquidate")
    assert session.wait(120), f"the liquidation did not end: {session.activity!r} ({session.status})"
    assert held(sim, "AAPL") == 0
    strategy_orders = broker_orders(sim, "buy_long-")
    late = [o for o in strategy_orders if epoch(o["created_at"]) > stopped_at + 0.5]
    assert not late, f"{len(late)} strategy orders reached the broker after the liquidation began"
    assert len(strategy_orders) < 40  # the rest were withdrawn, each with its row in the trade log
    log = session.trade_log
    withdrawn = log[log["reason"].fillna("").str.contains("withdrawn by liquidate")]
    assert withdrawn["client_order_id"].nunique() == 40 - len(strategy_orders)
    assert session.status == "stopped"


def test_a_strategy_still_running_at_stop_cannot_reopen(sim: Simulator, tmp_path: Path) -> None:
    calls = []

    def slow_buyer(ctx: Any) -> Any:
        calls.append(time.time())
        time.sleep(2.0)
        return [{"ticker": "MSFT", "side": "buy", "order_type": "market", "action": "buy_long", "quantity": 5}]

    session = make_session(sim, tmp_path, frequency=10)
    session.strategy(slow_buyer)
    started(session)
    wait_for(lambda: calls, what="the strategy to start sleeping")
    session.stop(eos="liquidate")
    assert session.wait(60)
    assert not broker_orders(sim, "buy_long-") and held(sim, "MSFT") == 0
    assert any("refused" in str(getattr(e, "message", e)) for e in session.errors)


def test_liquidation_leaves_what_the_session_does_not_own(sim: Simulator, tmp_path: Path) -> None:
    buy_outside(sim, "TSLA", 4)
    session = make_session(sim, tmp_path, tickers=["TSLA"])
    session.strategy(buying_once(3, "TSLA"))
    started(session)
    try:
        wait_for(lambda: held(sim, "TSLA") == 7, what="the session's fill next to the outside position")
        wait_for(lambda: session.get_current_data()[1], what="the session's own position")
        assert [(p["ticker"], p["quantity"]) for p in session.get_current_data()[1]] == [("TSLA", 3.0)]
        assert list(session.account_positions["quantity"]) == [4.0]  # the account, as seen at start
        assert list(session.account_positions.columns) == list(session.positions.columns)
        bought_at = session.account_positions["bought_at"].iloc[0]
        assert session.account_positions["cost_basis"].iloc[0] == pytest.approx(4 * bought_at)
        session.liquidate()
        wait_for(lambda: session.status == "paused", what="the liquidation to end")
        assert session.activity == "" and session.positions.empty and held(sim, "TSLA") == 4  # the rest kept
        session.resume()
        session.liquidate(scope="account")
        wait_for(lambda: held(sim, "TSLA") == 0, what="the account flat")
    finally:
        session.stop(wait=True)
    assert [(o["qty"], o["status"]) for o in broker_orders(sim, "liquidate-")] == [("3", "filled"), ("4", "filled")]
    with pytest.raises(ConfigurationError, match=r"scope='everything'.*allowed: 'session', 'account'"):
        session.liquidate(scope="everything")


def test_orders_are_refused_after_a_control_action_until_resume(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path)
    started(session)
    try:
        wait_for(lambda: session.status == "running", what="running")
        session.hold()
        wait_for(lambda: session.status == "paused", what="hold to take effect")
        order = {"ticker": "AAPL", "side": "buy", "order_type": "market", "action": "buy_long", "quantity": 1}
        with pytest.raises(BlockpacaError, match=r"refused.*'hold'.*resume"):
            session.submit([order])
        session.resume()
        session.submit([order])
        wait_for(lambda: held(sim, "AAPL") == 1, what="the order after resume")
    finally:
        session.stop(wait=True)
    with pytest.raises(BlockpacaError, match="refused: the session is stopped"):
        session.submit([order])
    assert len(broker_orders(sim, "buy_long-")) == 1


@pytest.mark.parametrize("stopped_by", ["pause", "hold"])
def test_resume_ticks_again_at_once_not_at_the_next_reconciliation(
    sim: Simulator, tmp_path: Path, stopped_by: str
) -> None:
    """A paused session sleeps until its next reconciliation (every 30 s): resume() must wake it
    (the first tick came 25-28 s after resume, while the status already said running)."""
    calls: list[float] = []
    session = make_session(sim, tmp_path, frequency=1)
    session.strategy(lambda ctx: calls.append(time.monotonic()))
    planned: list[bool | None] = []  # what the tick loop's each wait was planned with: paused or not
    wait_until = session._wait_until
    session._wait_until = lambda due, version=None, paused=None: planned.append(paused) or wait_until(  # type: ignore[method-assign]
        due, version, paused
    )
    started(session)
    try:
        wait_for(lambda: len(calls) >= 2, what="ticks")
        getattr(session, stopped_by)()
        wait_for(lambda: planned[-1] is True, what="the tick loop asleep, paused")
        reconcile_at, resumed = session._next_reconcile, time.monotonic()
        session.resume()
        wait_for(lambda: calls[-1] >= resumed, timeout=60, what="a tick after resume")
        first = next(t for t in calls if t >= resumed)  # (a tick handed over before the pause is earlier)
        assert first < reconcile_at, f"the tick waited {first - resumed:.1f} s, for the reconciliation"
    finally:
        session.stop(wait=True)


def test_a_custom_action_sends_its_orders_says_when_they_are_answered_and_is_never_silently_skipped(
    sim: Simulator, tmp_path: Path
) -> None:
    session = make_session(sim, tmp_path)
    started(session)
    try:
        with pytest.raises(ConfigurationError, match=r'eos="custom" needs custom_shutdown_action'):
            session.stop(eos="custom")  # it once stopped without a word, nothing sent
        assert session.status == "running"
        session.run_custom_eos(lambda ctx: [{"ticker": "AAPL", "quantity": 2, "side": "buy", "order_type": "market"}])
        wait_for(lambda: held(sim, "AAPL") == 2, what="the custom action's order at the broker")
        wait_for(lambda: session.activity == "", what="the activity cleared once the order was answered")
        assert session.status == "paused"  # strategy orders refused until resume(), as after any control action
    finally:
        session.stop(wait=True, eos="hold")
    assert [o["status"] for o in broker_orders(sim)] == ["filled"]


def test_the_time_paused_is_no_tick_skipped(sim: Simulator, tmp_path: Path) -> None:
    """Skipped ticks count a strategy too busy for its clock; 4 s paused on a 0.25 s clock counted 15."""
    calls: list[float] = []
    session = make_session(sim, tmp_path, frequency=0.25)
    session.strategy(lambda ctx: calls.append(time.monotonic()))
    started(session)
    try:
        wait_for(lambda: len(calls) >= 2, what="ticks")
        session.pause("lambda")
        paused_at = time.monotonic()
        wait_for(lambda: time.monotonic() - paused_at > 4, what="4 s paused")
        skipped = session.skipped_ticks
        session.resume("lambda")
        wait_for(lambda: len([c for c in calls if c > paused_at + 4]) >= 3, what="ticks after resume")
        assert session.skipped_ticks - skipped < 8  # (16 before; a busy machine may still skip a few)
        session.pause()  # the session's own Pause
        paused_at = time.monotonic()
        row = next(r for r in session.strategy_rows() if r["name"] == "lambda")  # the dashboard's strategies panel
        assert (row["state"], row["reason"]) == ("paused", "the session is paused")  # it said running
        wait_for(lambda: time.monotonic() - paused_at > 4, what="4 s paused")
        skipped = session.skipped_ticks
        session.resume()
        wait_for(lambda: len([c for c in calls if c > paused_at + 4]) >= 3, what="ticks after resume")
        assert session.skipped_ticks - skipped < 8
    finally:
        session.stop(wait=True)
    row = next(r for r in session.strategy_rows() if r["name"] == "lambda")  # the dashboard's final frame
    assert (row["state"], row["reason"]) == ("stopped", "the session is stopped")


def test_the_time_a_strategy_was_not_the_main_one_is_no_tick_skipped() -> None:
    """Switched away from (select, the dashboard's picker) and back, a strategy counted the time it
    was off as skipped ticks (10 for 1 s on a 0.1 s clock)."""
    from blockpaca_nb.lineup import Lineup, Slot

    lineup = Lineup()
    lineup.register(Slot("a", lambda ctx: None), alongside=False)
    lineup.next_due(0.1)
    lineup.slots["a"].next_due = time.monotonic() - 1.0  # as if it were last due a second ago, then switched off
    lineup.register(Slot("b", lambda ctx: None), alongside=False)
    lineup.make_main("a")  # switched back
    assert [slot.name for slot in lineup.due_now(0.1)] == ["a"] and lineup.slots["a"].skipped == 0


def test_resume_is_refused_while_a_liquidation_runs(sim: Simulator, tmp_path: Path) -> None:
    """Resumed mid-liquidation, the strategies ticked (their orders accepted again) beside it, and the
    status said paused once it ended."""
    session = make_session(sim, tmp_path)
    session.strategy(buying_once(2))
    started(session)
    try:
        wait_for(lambda: held(sim, "AAPL") == 2, what="the strategy's fill")
        sim.set_faults(error_rate=1.0)  # the broker fails every call: the liquidation goes round again
        session.liquidate()
        wait_for(lambda: session.status == "liquidating", what="the liquidation running")
        with pytest.raises(BlockpacaError, match=r"cannot resume: the liquidation is still running \(Hold halts it\)"):
            session.resume()
        sim.set_faults(error_rate=0.0)
        wait_for(lambda: held(sim, "AAPL") == 0 and session.status == "paused", 60, "the liquidation done")
        session.resume()
        assert session.status == "running"
    finally:
        session.stop(wait=True, eos="hold")
    assert [o["status"] for o in broker_orders(sim, "liquidate-")] == ["filled"]


def test_stop_returns_at_once_and_wait_blocks_until_done(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path, max_orders_per_minute=5, rate_window_s=4.0)
    session.strategy(buying_once(1, orders=3))
    started(session)
    wait_for(lambda: held(sim, "AAPL") >= 1, what="a fill")
    asked = time.monotonic()
    session.stop(eos="liquidate")
    returned = time.monotonic() - asked
    assert session.status not in ("stopped", "failed")  # the liquidation still runs
    assert session.wait(60)
    print(f"stop() returned after {returned * 1000:.1f} ms; done after {time.monotonic() - asked:.1f} s")
    assert held(sim, "AAPL") == 0 and session.status == "stopped"


def test_a_failing_session_thread_still_runs_the_eos_action(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path, eos_behavior="liquidate")
    session.strategy(buying_once(2))
    started(session)
    wait_for(lambda: held(sim, "AAPL") == 2, what="the fill")

    def broken() -> None:
        raise RuntimeError("the session thread broke")

    session._reconcile_if_due = broken  # type: ignore[method-assign]  # the next tick raises in the thread
    assert session.wait(60)
    assert session.status == "failed" and "the session thread broke" in str(session.failure)
    assert held(sim, "AAPL") == 0
    assert [o["status"] for o in broker_orders(sim, "liquidate-")] == ["filled"]


def test_re_running_a_session_on_a_simulator_it_started_replaces_it_and_keeps_the_simulator(
    tmp_path: Path, capsys: Any
) -> None:
    """A notebook makes `sim = Simulator(...)` in one cell and the Session on it in the next; the
    first session starts the simulator. Re-running the Session cell replaced nothing (the account
    was named differently once the simulator ran): the old session traded on out of sight and held
    the data plan's one connection, so the new one never had a quote. Now it is replaced, and the
    simulator — which the old one would have stopped under the new one's feet — is the new one's."""
    simulator = Simulator(symbols=TICKERS, seed=3, quotes_per_second=20)
    first = make_session(simulator, tmp_path, trade_log_name="first")
    first.strategy(buying_once(2))
    started(first)
    second = third = None
    try:
        wait_for(lambda: held(simulator, "AAPL") == 2 and not first.positions.empty, what="the first session's fill")
        second = make_session(simulator, tmp_path, trade_log_name="second").start()
        third = make_session(simulator, tmp_path, trade_log_name="third")  # re-run again, the second still starting
        started(third, quotes=True)  # the old feeds gave up the data plan's one connection
        assert first.wait(30) and second.wait(30), "the earlier sessions were not stopped"
        assert "stopped the running session 'first' (hold)" in capsys.readouterr().out
        assert simulator.running and held(simulator, "AAPL") == 2  # hold: kept, on the same account still running
    finally:
        for session in (third, second, first):
            if session is not None:
                session.stop(wait=True)
    assert not simulator.running  # the session that took it over stopped it at its end
    simulator.stop()


def test_a_session_with_no_quote_says_why_the_feed_may_be_silent(sim: Simulator, tmp_path: Path) -> None:
    """Another program holds the free data plan's one connection: the session's feed is refused and
    no quote comes. The dashboard said "waiting for quotes" and nothing else; now s.errors says why."""
    import json

    from websockets.sync.client import connect

    other = connect(f"ws://127.0.0.1:{sim.port}/v2/iex", open_timeout=5, close_timeout=1)
    other.recv(timeout=5)  # connected
    other.send(json.dumps({"action": "auth", "key": sim.api_key, "secret": sim.secret_key}))
    other.recv(timeout=5)  # authenticated: the account's one data connection is this one
    session = make_session(sim, tmp_path)
    started(session)
    try:
        session._next_reconcile = 0.0  # the check runs with the reconciliation, every 30 s: now
        session._lineup.version += 1  # (the loop, asleep until then, looks again)
        session._wake.set()
        said = wait_for(lambda: [e for e in session.errors if e.get("where") == "feed"], 60, "the word on the feed")
        assert "one data connection per account" in said[0]["reason"] and session.quotes["bid"].isna().all()
    finally:
        other.close()
        session.stop(wait=True)


def test_a_new_session_stops_the_running_one(sim: Simulator, tmp_path: Path, capsys: Any) -> None:
    first = make_session(sim, tmp_path, trade_log_name="first")
    first.strategy(buying_once(2))
    started(first)
    wait_for(lambda: held(sim, "AAPL") == 2 and not first.positions.empty, what="the first session's fill")
    refusing = make_session(sim, tmp_path, trade_log_name="third", replace_running=False)
    with pytest.raises(BlockpacaError, match=r"another session \('first', running\)"):
        refusing.start()
    second = make_session(sim, tmp_path, trade_log_name="second")
    started(second)
    try:
        assert first.wait(30), "the first session was not stopped"
        assert "stopped the running session 'first' (hold): 1 positions kept" in capsys.readouterr().out
        wait_for(lambda: second.status == "running", what="the second session running")
        assert held(sim, "AAPL") == 2  # hold: kept
    finally:
        second.stop(wait=True)


def test_command_queue_items_are_run_or_reported(sim: Simulator, tmp_path: Path) -> None:
    def commander(ctx: Any) -> Any:
        ctx["command_queue"].put("nonsense")
        ctx["command_queue"].put("hold")
        return []

    session = make_session(sim, tmp_path)
    session.strategy(commander)
    started(session)
    try:
        wait_for(lambda: session.status == "paused", what="the queued hold")
        assert any("not a command: 'nonsense'" in str(e) for e in session.errors)
    finally:
        session.stop(wait=True)


def test_liquidation_cancels_the_exits_of_its_bracket_orders_first(sim: Simulator, tmp_path: Path) -> None:
    """On paper, a bracket's exits hold the shares: a sell before their cancels are confirmed gets
    403 "insufficient qty". The exits are the session's too (their ids are the broker's own)."""
    session = started(make_session(sim, tmp_path))
    try:
        bid = wait_for(lambda: session.get_current_data()[0].get("AAPL"), what="a quote for AAPL")["bid"]
        order = {"ticker": "AAPL", "side": "buy", "order_type": "market", "action": "buy_long", "quantity": 2,
                 "take_profit": round(bid * 1.5, 2), "stop_loss": round(bid * 0.5, 2)}  # fmt: skip
        session.submit([order])
        wait_for(lambda: held(sim, "AAPL") == 2, what="the bracket's entry fill")
        exits = wait_for(lambda: [o for o in sim.orders() if o["status"] == "new" and o["side"] == "sell"], 30,
                         "the exits to go live")  # fmt: skip
        session.liquidate()
        wait_for(lambda: session.status == "paused", 60, "the liquidation to end")
        assert held(sim, "AAPL") == 0
        by_id = {o["id"]: o for o in sim.orders()}
        assert {by_id[e["id"]]["status"] for e in exits} == {"canceled"}
        assert session.positions.empty
    finally:
        session.stop(wait=True)
