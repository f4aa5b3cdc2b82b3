"""Several strategies in one session, judged by what the broker holds: each ticks on its own clock,
keeps its own book (the sum of the books is the broker's position, their P&L the account's), is held
to its limits before an order leaves the kernel, and the kill switch flattens the session.

Every session trades on its own real simulator (paper profile) through the real alpaca-py clients."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import TICKERS, held, make_session, started
from waiting import wait_for

from blockpaca_nb import BlockpacaError, ConfigurationError, Session, Simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(symbols=[*TICKERS, "TSLA"], seed=5, quotes_per_second=20, starting_cash=1e7) as simulator:
        yield simulator


def tagged(sim: Simulator, strategy: str) -> list[dict[str, Any]]:
    """The broker's orders a strategy sent (its name ends their client order id)."""
    return [o for o in sim.orders() if o["client_order_id"].endswith(f"-{strategy}")]


def book(session: Session, strategy: str) -> dict[str, float]:
    frame = session.positions_by_strategy
    rows = frame[(frame["strategy"] == strategy) & (frame["quantity"] != 0)]
    return dict(zip(rows["ticker"], rows["quantity"], strict=True))


def cash(sim: Simulator) -> Decimal:
    from alpaca.trading.client import TradingClient

    client = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
    return Decimal(str(client.get_account().cash))


def once(order: dict[str, Any], after: Any = None) -> Any:
    """A strategy that sends ``order`` once (when ``after(ctx)`` holds, if given), then nothing."""

    def strategy(ctx: Any) -> Any:
        if ctx.state.get("sent") or (after is not None and not after(ctx)):
            return None
        ctx.state["sent"] = True
        return order

    return strategy


def long_and_short(session: Session, lot: int = 1) -> None:
    """"longer" buys 10 AAPL; "shorter" sells 4 short once the account holds AAPL (Alpaca refuses a
    sell while a buy is open): books +10 and −4, the broker +6 (each times ``lot``)."""
    session.strategy(once(market("AAPL", "buy", 10 * lot)), alongside=True, name="longer")
    has_aapl = lambda ctx: any(p["ticker"] == "AAPL" for p in ctx.account_positions())  # noqa: E731
    short = market("AAPL", "sell", 4 * lot, "short_sell")
    session.strategy(once(short, after=has_aapl), alongside=True, name="shorter")


def idle(ctx: Any) -> None:
    return None


def market(ticker: str, side: str, quantity: float, action: str | None = None) -> dict[str, Any]:
    order = {"ticker": ticker, "side": side, "quantity": quantity, "order_type": "market"}
    return {**order, "action": action} if action else order


def risk_rows(session: Session, strategy: str) -> list[str]:
    log = session.trade_log
    rows = log[(log["type"] == "risk") & (log["strategy"] == strategy)]
    return list(rows["reason"])


# ----------------------------------------------------------------------------- clocks


def test_strategies_alongside_tick_on_their_own_clocks_and_a_stuck_one_delays_no_other(
    sim: Simulator, tmp_path: Path
) -> None:
    release = threading.Event()
    calls = {"fast": 0, "stuck": 0}

    def fast(ctx: Any) -> None:
        calls["fast"] += 1

    def stuck(ctx: Any) -> None:
        calls["stuck"] += 1
        release.wait(60)

    session = started(make_session(sim, tmp_path, "strategies", frequency=5), quotes=True)
    try:
        session.strategy(fast, every="200ms", alongside=True)
        session.strategy(stuck, every="200ms", alongside=True)
        assert session.active_strategies == ["fast", "stuck"] and session.active_strategy is None
        wait_for(lambda: calls["fast"] >= 8, 30, "eight calls of the fast strategy while the other is stuck")
        assert calls["stuck"] == 1  # its later ticks were skipped, not queued behind it
        wait_for(lambda: any("still running" in str(getattr(e, "message", "")) for e in session.errors), 10)
        session.deactivate("fast")
        assert session.strategy_state("fast") == "inactive" and session.strategy_state("stuck") == "running"
        seen = calls["fast"]
        release.set()
        wait_for(lambda: calls["stuck"] >= 3, 30, "the stuck strategy to tick again once released")
        assert calls["fast"] <= seen + 1  # a call already handed over may finish; no more after that
    finally:
        release.set()
        session.stop(wait=True, timeout=60)


def test_names_limits_and_budgets_are_checked_before_anything_runs(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path)
    with pytest.raises(ConfigurationError, match=r"max_postion.*allowed: max_position"):
        session.strategy(idle, alongside=True, limits={"max_postion": 5})
    with pytest.raises(ConfigurationError, match=r"on_breach='stop'.*allowed: reduce_only, halt"):
        session.strategy(idle, alongside=True, limits={"on_breach": "stop"})
    with pytest.raises(ConfigurationError, match=r"max_order_notional=-5.*a number > 0"):
        session.strategy(idle, limits={"max_order_notional": -5})
    with pytest.raises(ConfigurationError, match=r"budget=0.*dollars > 0"):
        session.strategy(idle, budget=0)
    with pytest.raises(ConfigurationError, match=r"alongside='yes' is not valid; allowed: True or False"):
        session.strategy(idle, alongside="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"name='my-idea'.*letters, digits or '_'"):
        session.strategy(idle, name="my-idea")
    with pytest.raises(ConfigurationError, match=r"limits: unknown limit"):
        make_session(sim, tmp_path, limits={"max_loss": 5})
    with pytest.raises(ConfigurationError, match=r"strategy <lambda>\(ctx, lookback\) is not valid; allowed: a fu"):
        session.swap(lambda ctx, lookback: None)  # it failed at every tick
    with pytest.raises(ConfigurationError, match=r"custom_shutdown_action <lambda>\(\) is not valid"):
        make_session(sim, tmp_path, eos_behavior="custom", custom_shutdown_action=lambda: [])
    assert session.strategies == []


# ----------------------------------------------------------------------------- books


def test_two_strategies_on_one_symbol_in_opposite_directions_keep_their_own_books(
    sim: Simulator, tmp_path: Path
) -> None:
    opposite_strategies_then_kill(sim, tmp_path, lot=1)


def test_the_books_carry_the_regulatory_fees_a_live_account_pays(tmp_path: Path) -> None:
    """On a simulator that charges a live account's fees (Alpaca paper charges none), each fill's
    fees go to the book of the strategy that traded: the books' P&L is still the account's, to the
    cent, and their fees are what the broker's fills cost by Alpaca's schedule."""
    from blockpaca_nb.fees import REGULATORY

    with Simulator(symbols=TICKERS, seed=5, quotes_per_second=20, starting_cash=1e7, regulatory_fees=True) as sim:
        session = opposite_strategies_then_kill(sim, tmp_path, lot=100)
        orders = [o for o in sim.orders() if float(o["filled_qty"] or 0)]
        paid = sum(REGULATORY.on_fill(o["side"], float(o["filled_qty"]), float(o["filled_avg_price"])) for o in orders)
        charged = sum(session.books.book(name).fees for name in ("longer", "shorter"))  # type: ignore[union-attr]
        assert paid > 1.0 and abs(charged - paid) < 1e-6, (charged, paid)
        assert session.books.book("shorter").fees > 0  # type: ignore[union-attr]


def opposite_strategies_then_kill(sim: Simulator, tmp_path: Path, lot: int) -> Session:
    """Two strategies trade AAPL in opposite directions, then the kill switch flattens the session:
    their books are right at each step, their sum is the broker's, their P&L the account's."""
    cash_before = cash(sim)
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        long_and_short(session, lot)
        wait_for(lambda: held(sim, "AAPL") == 6 * lot, 30, "the broker to hold 10 − 4 AAPL")
        wait_for(lambda: book(session, "shorter") == {"AAPL": -4.0 * lot}, 30, "the shorter's fill in its book")
        assert book(session, "longer") == {"AAPL": 10.0 * lot}
        assert sum(book(session, name).get("AAPL", 0.0) for name in ("longer", "shorter")) == held(sim, "AAPL")
        assert all(o["client_order_id"].endswith("-longer") for o in tagged(sim, "longer")) and tagged(sim, "shorter")
        log = session.trade_log
        fills = log[log["fill_qty"].notna()]
        assert set(fills["strategy"]) == {"longer", "shorter"}

        session.kill()
        wait_for(lambda: held(sim, "AAPL") == 0, 30, "the kill switch to flatten the session")
        wait_for(lambda: not book(session, "longer") and not book(session, "shorter"), 10, "every book flat")
        assert all(session.strategy_state(name) == "halted" for name in ("longer", "shorter"))
        wait_for(lambda: session.status != "liquidating", 30, "the kill's liquidation to end")
        settled = [e for e in session.errors if "inside the session at" in str(e)]
        assert len(settled) == 2 and session.activity == ""  # said once in s.errors; the activity: what runs now
        frame = session.positions_by_strategy
        fees = sum(session.books.book(name).fees for name in ("longer", "shorter"))  # type: ignore[union-attr]
        made = Decimal(str(round(frame["realized_pl"].sum() - fees, 6)))
        assert abs(made - (cash(sim) - cash_before)) < Decimal("0.01")  # the books' P&L is the account's
    finally:
        session.stop(wait=True, timeout=60)
    return session


def test_a_swap_hands_the_positions_over_and_a_strategy_sees_its_own(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    seen: dict[str, Any] = {}
    try:

        def accumulate(ctx: Any) -> Any:
            ctx.state["lineage"] = "main"
            return once(market("MSFT", "buy", 5))(ctx)

        session.strategy(accumulate)
        session.strategy(once(market("AAPL", "buy", 2)), alongside=True, name="other")
        wait_for(lambda: held(sim, "MSFT") == 5 and held(sim, "AAPL") == 2, 30, "both buys filled")
        wait_for(lambda: book(session, "accumulate") == {"MSFT": 5.0}, 30)

        def unwind(ctx: Any) -> None:
            seen["own"] = ctx.get_current_data()[1]
            seen["net"] = ctx.account_positions()

        session.swap(unwind)
        wait_for(lambda: "own" in seen, 30, "a call of the new main strategy")
        assert [(p["ticker"], p["quantity"]) for p in seen["own"]] == [("MSFT", 5.0)]  # taken over, not AAPL
        assert sorted((p["ticker"], p["quantity"]) for p in seen["net"]) == [("AAPL", 2.0), ("MSFT", 5.0)]
        assert book(session, "accumulate") == {} and book(session, "unwind") == {"MSFT": 5.0}
        assert session.active_strategies == ["unwind", "other"]
        session.select("other")  # one that ran alongside becomes the main one: it takes over the main's state
        assert session.active_strategy == "other" and session.state.get("lineage") == "main"
    finally:
        session.stop(wait=True, timeout=60)


# ----------------------------------------------------------------------------- limits


def test_each_limit_refuses_the_order_that_would_cross_it_and_nothing_else(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        price = float(session.quotes.loc["AAPL", "ask"])
        caps = {
            "order_cap": {"max_order_notional": price * 3.5},
            "position_cap": {"max_position": 5},
            "notional_cap": {"max_position_notional": price * 4.5},
            "gross_cap": {"max_gross_exposure": price * 6.5},
            "rate_cap": {"max_orders_per_minute": 3},
        }
        for name, limits in caps.items():
            session.strategy(idle, alongside=True, name=name, limits=limits)
        blocks = {
            "order_cap": [market("AAPL", "buy", 3), market("AAPL", "buy", 4)],
            "position_cap": [market("AAPL", "buy", 3), market("AAPL", "buy", 3), market("AAPL", "buy", 2)],
            "notional_cap": [market("AAPL", "buy", 4), market("AAPL", "buy", 1)],
            "gross_cap": [market("AAPL", "buy", 4), market("AAPL", "buy", 3), market("AAPL", "buy", 2)],
            "rate_cap": [market("AAPL", "buy", 1)] * 4,
        }
        allowed = {"order_cap": 1, "position_cap": 2, "notional_cap": 1, "gross_cap": 2, "rate_cap": 3}
        rules = {
            "order_cap": "max_order_notional",
            "position_cap": "max_position",
            "notional_cap": "max_position_notional",
            "gross_cap": "max_gross_exposure",
            "rate_cap": "max_orders_per_minute",
        }
        for name, block in blocks.items():
            sent = session.submit(block, strategy=name)
            assert len(sent) == allowed[name], name
        for name, count in allowed.items():
            wait_for(lambda n=name, c=count: len(tagged(sim, n)) == c, 30, f"{name}'s {count} orders at the broker")
            wait_for(lambda n=name: risk_rows(session, n), 30, f"{name}'s refusal in the trade log")
            reasons = risk_rows(session, name)
            assert len(reasons) == len(blocks[name]) - count
            assert all(f"limit {rules[name]}" in reason and f"strategy {name}" in reason for reason in reasons)
        wait_for(lambda: held(sim, "AAPL") == 3 + (3 + 2) + 4 + (4 + 2) + 3, 30, "every order that passed filled")
    finally:
        session.stop(wait=True, timeout=60)


def test_a_budget_caps_what_a_strategys_positions_may_cost(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        price = float(session.quotes.loc["MSFT", "ask"])
        session.strategy(idle, alongside=True, name="small", budget=price * 2.5)
        assert len(session.submit([market("MSFT", "buy", 2), market("MSFT", "buy", 1)], strategy="small")) == 1
        wait_for(lambda: len(tagged(sim, "small")) == 1 and risk_rows(session, "small"), 30)
        assert "budget" in risk_rows(session, "small")[0]
        wait_for(lambda: book(session, "small") == {"MSFT": 2.0}, 30, "the first buy in its book")
        session.strategy(idle, alongside=True, name="small", budget=price * 5.5)  # re-run with a larger budget
        assert len(session.submit([market("MSFT", "buy", 2)], strategy="small")) == 1  # 4 of 5.5: within it
        wait_for(lambda: book(session, "small") == {"MSFT": 4.0}, 30, "the second buy, under the new budget")
        session.strategy(idle, alongside=True, name="small")  # re-run without one: none, and said so
        assert any("small re-registered without its budget: it has none now" in str(e) for e in session.errors)
        assert len(session.submit([market("MSFT", "buy", 3)], strategy="small")) == 1
        wait_for(lambda: book(session, "small") == {"MSFT": 7.0}, 30, "a buy no budget caps")
        assert len(risk_rows(session, "small")) == 1  # the first refusal only
    finally:
        session.stop(wait=True, timeout=60)


def test_the_daily_loss_limit_halts_the_strategy(sim: Simulator, tmp_path: Path) -> None:
    """A buy at the ask is marked at the mid: half the spread is lost at once, over a $0.01 limit."""
    calls = {"n": 0}

    def loser(ctx: Any) -> Any:
        calls["n"] += 1
        return market("AAPL", "buy", 10) if calls["n"] == 1 else market("AAPL", "buy", 1)

    session = started(make_session(sim, tmp_path, "strategies", frequency=5), quotes=True)
    try:
        session.strategy(loser, every="300ms", alongside=True, limits={"max_daily_loss": 0.01, "on_breach": "halt"})
        wait_for(lambda: session.strategy_state("loser") == "halted", 30, "the loss limit to halt the strategy")
        stopped_at = calls["n"]
        wait_for(lambda: any("max_daily_loss" in str(e) for e in session.errors), 10, "the breach in errors")
        bought = len(tagged(sim, "loser"))
        session.submit(market("AAPL", "buy", 1), strategy="loser")  # what its thread would still send
        wait_for(lambda: any("halted" in r for r in risk_rows(session, "loser")), 30, "the refusal row")
        assert len(tagged(sim, "loser")) == bought
        assert calls["n"] <= stopped_at + 1  # no more ticks (one may have been under way)
    finally:
        session.stop(wait=True, timeout=60)


def test_reduce_only_lets_a_position_shrink_and_nothing_grow(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        session.strategy(idle, alongside=True, name="careful", limits={"max_daily_loss": 0.01})
        session.submit(market("AAPL", "buy", 10), strategy="careful")
        wait_for(lambda: session.strategy_state("careful") == "reduce_only", 30, "reduce-only after the loss")
        assert session.submit(market("AAPL", "buy", 1), strategy="careful") == []
        assert len(session.submit(market("AAPL", "sell", 4), strategy="careful")) == 1
        assert session.submit(market("AAPL", "sell", 7), strategy="careful") == []  # would flip it short
        wait_for(lambda: held(sim, "AAPL") == 6, 30, "the shrinking sell filled")
        wait_for(lambda: book(session, "careful") == {"AAPL": 6.0}, 30, "the sell's fill in the book")
    finally:
        session.stop(wait=True, timeout=60)


def test_session_limits_hold_every_strategy_together(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies", limits={"max_position": 5}), quotes=True)
    try:
        session.strategy(idle, alongside=True, name="one")
        session.strategy(idle, alongside=True, name="two")
        assert len(session.submit(market("AAPL", "buy", 3), strategy="one")) == 1
        assert session.submit(market("AAPL", "buy", 3), strategy="two") == []  # 3 + 3 > 5 for the session
        wait_for(lambda: risk_rows(session, "two"), 30)
        assert "(session)" in risk_rows(session, "two")[0]
    finally:
        session.stop(wait=True, timeout=60)


def test_liquidating_one_strategy_closes_its_book_and_leaves_the_others(sim: Simulator, tmp_path: Path) -> None:
    """The longer's 10 against the account's 6: 6 are sold first, then 4 more once the account holds
    none (one order may not flip it), leaving the account with exactly the shorter's −4."""
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        long_and_short(session)
        wait_for(lambda: held(sim, "AAPL") == 6 and book(session, "shorter") == {"AAPL": -4.0}, 30, "both filled")
        session.liquidate(strategy="longer")
        wait_for(lambda: held(sim, "AAPL") == -4, 30, "the broker to hold only the shorter's short")
        wait_for(lambda: book(session, "longer") == {}, 10, "the longer's book flat")
        assert book(session, "shorter") == {"AAPL": -4.0}
        wait_for(lambda: session.strategy_state("longer") == "paused", 30, "the liquidation to end, paused")
        assert session.strategy_state("shorter") == "running"
        closing = [o for o in tagged(sim, "longer") if o["side"] == "sell"]
        assert sorted(float(o["qty"]) for o in closing) == [4.0, 6.0]  # never one order that flips the account
    finally:
        session.stop(wait=True, timeout=60)


def test_liquidating_a_strategy_never_opens_what_a_manual_trade_already_closed(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        session.strategy(once(market("AAPL", "buy", 10)), alongside=True, name="alone")
        wait_for(lambda: book(session, "alone") == {"AAPL": 10.0}, 30, "the buy in the book")
        from alpaca.trading.client import TradingClient
        from alpaca.trading.requests import MarketOrderRequest

        manual = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
        manual.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side="sell", time_in_force="day"))
        wait_for(lambda: held(sim, "AAPL") == 0, 30, "the manual sell")
        session.liquidate(strategy="alone")
        wait_for(lambda: "liquidate alone" in str(list(session.errors)) or session.activity == "", 30)
        wait_for(lambda: not session._strategy_liquidations["alone"][0].is_alive(), 30, "the liquidation to end")
        assert held(sim, "AAPL") == 0  # nothing sold short on the strategy's behalf
        assert [o for o in tagged(sim, "alone") if o["side"] == "sell"] == []
        said = [str(getattr(e, "reason", e)) for e in session.errors]
        assert any("strategy alone's 10 AAPL no longer at the broker" in text for text in said), said
    finally:
        session.stop(wait=True, timeout=60)


def test_liquidating_a_strategy_waits_for_the_other_books_fills_the_session_has_not_heard(
    sim: Simulator, tmp_path: Path
) -> None:
    """Two books hold 10 AAPL each; the second's sell of its 10 has filled at the broker but its rows
    reach the session 3 s late (in their order, as a slow stream delivers them). Its book still
    counting 10, the account's 10 looked like exactly what the other books keep: the first's
    liquidation closed nothing and ended, its 10 left open."""
    session = make_session(sim, tmp_path, "strategies")
    hear, late = session._on_row, queue.Queue[tuple[float, dict[str, Any]] | None]()

    def hear_late() -> None:
        while (item := late.get()) is not None:
            time.sleep(max(0.0, item[0] + 3.0 - time.monotonic()))  # the stream's delay, not a wait for a condition
            hear(item[1])

    def hear_the_sell_late(row: dict[str, Any]) -> None:
        if row.get("client_order_id", "").startswith("sell_long-"):
            late.put((time.monotonic(), row))
            return
        hear(row)

    listener = threading.Thread(target=hear_late, daemon=True)
    listener.start()
    session._on_row = hear_the_sell_late  # type: ignore[method-assign]
    started(session, quotes=True)
    try:
        session.strategy(once(market("AAPL", "buy", 10)), alongside=True, name="first")
        session.strategy(once(market("AAPL", "buy", 10)), alongside=True, name="second")
        wait_for(lambda: book(session, "first") == book(session, "second") == {"AAPL": 10.0}, 30, "both books")
        session.submit(market("AAPL", "sell", 10), strategy="second")
        wait_for(lambda: held(sim, "AAPL") == 10, 30, "the second's sell filled at the broker")
        assert book(session, "second") == {"AAPL": 10.0}  # the premise: the session has not heard it
        session.liquidate(strategy="first")
        wait_for(lambda: held(sim, "AAPL") == 0, 30, "the first's 10 closed at the broker")
        wait_for(lambda: session.strategy_state("first") == "paused", 30, "the liquidation to end")
    finally:
        late.put(None)
        listener.join()
        session.stop(wait=True, timeout=60)
    assert held(sim, "AAPL") == 0 and [float(o["qty"]) for o in tagged(sim, "first") if o["side"] == "sell"] == [10.0]


def test_liquidating_a_strategy_cancels_its_brackets_exits_and_works_while_the_session_is_held(
    sim: Simulator, tmp_path: Path
) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        bid = float(session.quotes.loc["AAPL", "bid"])
        entry = {**market("AAPL", "buy", 10), "take_profit": round(bid * 1.5, 2), "stop_loss": round(bid * 0.5, 2)}
        session.strategy(once(entry), alongside=True, name="bracketed")
        wait_for(lambda: book(session, "bracketed") == {"AAPL": 10.0}, 30, "the entry filled")
        wait_for(lambda: len([o for o in sim.orders() if o["status"] in ("new", "held")]) == 2, 30, "the exits")
        session.hold()
        wait_for(lambda: session.status == "paused", 30, "the hold in force")
        session.liquidate(strategy="bracketed")  # no resume first: that would let every strategy trade again
        wait_for(lambda: held(sim, "AAPL") == 0, 30, "the strategy's position closed")
        wait_for(lambda: book(session, "bracketed") == {}, 30, "its book flat")
        assert not [o for o in sim.orders() if o["status"] in ("new", "held", "accepted", "pending_cancel")]
        assert session.status == "paused"  # still held: strategy orders refused until resume()
        with pytest.raises(BlockpacaError, match="hold"):
            session.submit([market("AAPL", "buy", 1)], strategy="bracketed")
    finally:
        session.stop(wait=True, timeout=60)


def test_a_strategys_liquidation_the_broker_refuses_backs_off_and_hold_halts_it_at_once(
    sim: Simulator, tmp_path: Path
) -> None:
    """Another strategy's resting buy makes every sell of this strategy's liquidation a potential wash
    trade (Alpaca refuses it; the other book's order is not this liquidation's to cancel). Retried at
    once, four a second, it spent the account's request budget and Hold then waited 30-40 s for a
    slot. Now each round waits twice as long as the last, saying why, and Hold halts it at once."""
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        bid = float(session.quotes.loc["AAPL", "bid"])
        session.strategy(once(market("AAPL", "buy", 10)), alongside=True, name="longer")
        wait_for(lambda: book(session, "longer") == {"AAPL": 10.0}, 30, "the longer's fill")
        resting = {**market("AAPL", "buy", 4), "order_type": "limit", "limit_price": round(bid * 0.9, 2),
                   "time_in_force": "gtc"}  # fmt: skip
        session.strategy(once(resting), alongside=True, name="bidder")
        wait_for(lambda: [o["status"] for o in tagged(sim, "bidder")] == ["new"], 30, "the bidder's resting buy")
        session.liquidate(strategy="longer")
        wait_for(lambda: "trying again in 4 s" in session.activity, 60, "the fourth refused round")
        refused = lambda: [o for o in session.errors if "wash trade" in str(o.get("reason")) and "-longer" in str(o)]  # noqa: E731
        wait_for(lambda: len(refused()) == 4, 30, "four refusals: one closing order a round, not four a second")
        assert session.rate_usage[0] < 40  # the request budget (200 a minute) is the account's: kept for others
        session.hold()
        wait_for(lambda: session.strategy_state("longer") != "liquidating", 30, "Hold to halt the liquidation")
    finally:
        session.stop(eos="hold", wait=True, timeout=60)
    assert held(sim, "AAPL") == 10 and [o["status"] for o in tagged(sim, "bidder")] == ["new"]  # nothing else touched


def close_what_it_sees(ctx: Any) -> list[dict[str, Any]]:
    """blockpaca's custom shutdown: close every position ``get_current_data()`` lists."""
    return [{"ticker": p["ticker"], "quantity": abs(p["quantity"]), "side": "sell" if p["quantity"] > 0 else "buy",
             "order_type": "market"} for p in ctx.get_current_data()[1]]  # fmt: skip


def test_a_custom_end_sees_every_strategys_positions_as_the_sessions(sim: Simulator, tmp_path: Path) -> None:
    """The custom action is the session's: its context lists the positions of every strategy (it saw
    the main one's book alone, or with strategies only alongside the empty session book: the
    others' positions stayed open); its orders, returned or passed to submit_order, are the session's."""
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        session.strategy(once(market("AAPL", "buy", 5)), name="main_one")
        session.strategy(once(market("MSFT", "buy", 3)), alongside=True, name="beside")
        wait_for(lambda: held(sim, "AAPL") == 5 and held(sim, "MSFT") == 3, 30, "both strategies' fills")
        wait_for(lambda: len(session.positions) == 2, 30, "the session to hear both")

        def through_submit(ctx: Any) -> None:
            ctx.submit_order(close_what_it_sees(ctx))

        session.run_custom_eos(through_submit)
        wait_for(lambda: held(sim, "AAPL") == 0 and held(sim, "MSFT") == 0, 30, "the custom action closing both")
    finally:
        session.stop(eos="hold", wait=True, timeout=60)
    closing = [o for o in sim.orders() if o["side"] == "sell"]
    assert sorted((o["symbol"], o["qty"]) for o in closing) == [("AAPL", "5"), ("MSFT", "3")]
    assert not [o for o in closing if o["client_order_id"].endswith(("-main_one", "-beside"))]  # the session's


def test_a_loss_limit_never_restarts_a_strategy_the_user_paused(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        session.strategy(idle, alongside=True, name="paused_one", limits={"max_daily_loss": 0.01})
        session.pause("paused_one")
        session.submit(market("AAPL", "buy", 10), strategy="paused_one")  # its last call's order, still sent
        wait_for(lambda: any("max_daily_loss" in str(e) for e in session.errors), 30, "the breach")
        assert session.strategy_state("paused_one") == "paused"
        assert session.submit(market("AAPL", "buy", 1), strategy="paused_one") == []  # the breach still holds
    finally:
        session.stop(wait=True, timeout=60)


def test_two_threads_never_pass_one_session_limit_together(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies", limits={"max_position": 100}), quotes=True)
    try:
        for name in ("one", "two"):
            session.strategy(idle, alongside=True, name=name)
        start = threading.Barrier(2)
        sent: dict[str, list[str]] = {}

        def send(name: str) -> None:
            start.wait()
            sent[name] = session.submit([market("AAPL", "buy", 80)], strategy=name)

        threads = [threading.Thread(target=send, args=(name,)) for name in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(len(ids) for ids in sent.values()) == [0, 1]
        wait_for(lambda: held(sim, "AAPL") == 80, 30, "only one block at the broker")
    finally:
        session.stop(wait=True, timeout=60)


def test_liquidations_never_reopen_what_a_manual_trade_closed_even_after_reconciliation(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import blockpaca_nb.session as session_module

    monkeypatch.setattr(session_module, "RECONCILE_EVERY_S", 0.5)
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        session.strategy(once(market("AAPL", "buy", 10)), alongside=True, name="alone")
        wait_for(lambda: book(session, "alone") == {"AAPL": 10.0}, 30, "the buy in the book")
        from alpaca.trading.client import TradingClient
        from alpaca.trading.requests import MarketOrderRequest

        manual = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
        manual.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side="sell", time_in_force="day"))
        wait_for(lambda: any("AAPL" in str(e) and "reconcile" in str(e) for e in session.errors), 30, "reported")
        session.liquidate(strategy="alone")
        wait_for(lambda: session.strategy_state("alone") == "paused", 30, "the strategy's liquidation to end")
        session.liquidate()
        wait_for(lambda: session.status != "liquidating" and session.activity == "", 30, "the session's to end")
        assert held(sim, "AAPL") == 0  # the manual sell stands; nothing sold short on the session's behalf
    finally:
        session.stop(wait=True, timeout=60)


def test_a_strategys_liquidation_refuses_what_its_running_call_returns_later(sim: Simulator, tmp_path: Path) -> None:
    release, calls = threading.Event(), []

    def slow(ctx: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return market("AAPL", "buy", 10)
        release.wait(30)  # still running when the liquidation begins
        return market("AAPL", "buy", 5)

    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    try:
        session.strategy(slow, every="200ms", alongside=True)
        wait_for(lambda: book(session, "slow") == {"AAPL": 10.0} and len(calls) >= 2, 30, "a buy, a call under way")
        session.liquidate(strategy="slow")
        with pytest.raises(BlockpacaError, match="liquidation is still running"):
            session.resume("slow")
        wait_for(lambda: held(sim, "AAPL") == 0, 30, "the position closed")
        release.set()
        wait_for(lambda: session.strategy_state("slow") == "paused", 30, "the liquidation to end")
        wait_for(lambda: any("is liquidating" in r for r in risk_rows(session, "slow")), 30, "the late order refused")
        assert held(sim, "AAPL") == 0 and book(session, "slow") == {}
        session.kill()
        wait_for(lambda: session.status == "paused" and session.activity == "", 30, "the kill switch to end")
        session.liquidate(strategy="slow")  # once it ended, a book may be closed without resume(): nothing left here
        wait_for(lambda: session.strategy_state("slow") in ("paused", "halted"), 30, "that liquidation to end")
        session._acting = "liquidate"  # while the session's own action runs, it owns the positions
        with pytest.raises(BlockpacaError, match="the session's liquidate action is running"):
            session.liquidate(strategy="slow")
        session._acting = None
    finally:
        release.set()
        session.stop(wait=True, timeout=60)


def test_re_registering_strategies_while_orders_are_sent_never_deadlocks(sim: Simulator, tmp_path: Path) -> None:
    session = started(make_session(sim, tmp_path, "strategies"), quotes=True)
    done = threading.Event()
    try:
        session.strategy(idle, alongside=True, name="sender", limits={"max_position": 10**6})

        def send() -> None:
            for _ in range(40):
                session.submit([market("AAPL", "buy", 1)], strategy="sender")
            done.set()

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        for number in range(40):
            session.strategy(idle, alongside=True, name=f"again_{number % 3}", limits={"max_position": 5})
        wait_for(done.is_set, 60, "every submit to return while strategies were registered")
    finally:
        session.stop(wait=True, timeout=60)
