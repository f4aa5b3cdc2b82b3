"""End-to-end sessions against the embedded simulator: real processes, real shared memory, real
alpaca-py streams, the real trade log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import TICKERS
from engine_helpers import make_session as session_on
from waiting import wait_for

from blockpaca_nb import ConfigurationError, OrderValidationError, Session, Simulator, load_trade_log
from blockpaca_nb.tradelog import BLOCKPACA_COLUMNS


@pytest.fixture(scope="module")
def sim() -> Simulator:
    with Simulator(symbols=[*TICKERS, "TSLA"], seed=11, quotes_per_second=20, starting_cash=1e7) as simulator:
        yield simulator


def make_session(sim: Simulator, tmp_path: Path, **kwargs: Any) -> Session:
    return session_on(sim, tmp_path, "test", **kwargs)


def sim_orders(sim: Simulator, cids: set[str]) -> list[dict[str, Any]]:
    return [o for o in sim.orders() if o["client_order_id"] in cids]


def test_session_trades_and_liquidates_flat(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path)
    sent: list[str] = []

    def buy_once(ctx: Any) -> Any:
        if ctx.state.get("bought"):
            return None
        quotes, _positions = ctx["get_current_data"]()
        if set(quotes) != set(TICKERS):
            return None  # wait for the first quotes
        ctx.state["bought"] = True
        return [
            {"ticker": "AAPL", "quantity": 3, "side": "buy", "order_type": "market"},
            {"ticker": "MSFT", "quantity": 2, "side": "sell", "order_type": "market", "action": "short_sell"},
        ]

    session.strategy(buy_once)
    assert session.start() is session
    assert session.status in ("starting", "warming_up")  # start() returned before the machinery is up
    try:
        wait_for(
            lambda: {p["ticker"]: p["quantity"] for p in session.get_current_data()[1]} == {"AAPL": 3, "MSFT": -2},
            what="the positions to show the fills",
        )
        positions = {p["ticker"]: p for p in session.get_current_data()[1]}
        assert positions["AAPL"]["bought_at"] > 0 and positions["MSFT"]["cost_basis"] < 0
        sent = list(session.orders)
        session.stop(eos="liquidate", wait=True)
    finally:
        session.stop(wait=True)
    assert session.status == "stopped"
    ours = sim_orders(sim, set(session.orders))
    assert len(ours) == len({o["client_order_id"] for o in ours})  # nothing doubled
    actions = sorted(o["client_order_id"].split("-")[0] for o in ours)
    assert actions == ["buy_long", "cover_short", "liquidate", "short_sell"]
    assert all(o["status"] == "filled" for o in ours)
    assert not [p for p in sim.positions() if p["symbol"] in TICKERS]
    log = load_trade_log(session.trade_log_file)
    assert list(log.columns[:10]) == list(BLOCKPACA_COLUMNS)
    fills = log[(log["type"] == "execution") & (log["status"] == "filled")]
    assert sorted(fills["action"]) == actions
    assert set(sent) <= set(log["client_order_id"])


def test_hot_swap_keeps_state_and_runs_the_new_function(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path)
    calls: list[str] = []

    def first(ctx: Any) -> None:
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        calls.append("first")

    def second(ctx: Any) -> None:
        ctx.state["count"] += 1
        calls.append("second")

    session.strategy(first)
    session.start()
    try:
        wait_for(lambda: calls.count("first") >= 2, what="two ticks of the first strategy")
        session.swap(second)
        wait_for(lambda: calls.count("second") >= 2, what="the swapped strategy to run")
        assert calls.index("second") > calls.index("first")
        assert "first" not in calls[calls.index("second") :]
        assert session.state["count"] == len(calls)  # state carried across the swap
        assert session.strategies == ["first", "second"] and session.active_strategy == "second"
    finally:
        session.stop(wait=True)


def test_bad_orders_and_exceptions_are_reported_and_the_loop_goes_on(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path)
    ticks: list[int] = []

    def clumsy(ctx: Any) -> Any:
        ticks.append(1)
        if len(ticks) == 1:
            return [{"ticker": "AAPL", "quantity": -1, "side": "buy", "order_type": "market"}]
        if len(ticks) == 2:
            raise RuntimeError("strategy bug")
        return None

    session.strategy(clumsy)
    session.start()
    try:
        wait_for(lambda: len(ticks) >= 4, what="the loop to go on")
        messages = [str(getattr(e, "message", e)) for e in session.errors]
        assert any("quantity" in m for m in messages)
        strategy_errors = [e for e in session.errors if getattr(e, "traceback", None)]
        assert strategy_errors and "RuntimeError: strategy bug" in strategy_errors[0].message
        assert "clumsy" in strategy_errors[0].traceback
        wait_for(lambda: (session.trade_log["type"] == "validation").any(), what="the validation row")
    finally:
        session.stop(wait=True)
    row = session.trade_log.query("type == 'validation'").iloc[0]
    assert row["status"] == "rejected" and "quantity" in row["reason"]
    assert (row["ticker"], row["side"], row["order_type"]) == ("AAPL", "buy", "market")  # which order it was
    assert row["strategy"] == "clumsy"  # and which strategy sent it
    assert [e.strategy for e in session.errors if isinstance(e, OrderValidationError)] == ["clumsy"]


def test_broker_rejection_is_logged_with_its_reason(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path)
    session.start()
    try:
        wait_for(lambda: session.status == "running", what="running")
        cid = session.submit({"ticker": "AAPL", "quantity": 10_000_000, "side": "buy", "order_type": "market"})[0]
        wait_for(lambda: session.orders.get(cid, {}).get("status") == "rejected", what="the rejection")
        assert "buying power" in session.orders[cid]["reason"]
    finally:
        session.stop(wait=True)
    log = session.trade_log
    assert (log[log["client_order_id"] == cid]["status"] == "rejected").any()


def test_run_seconds_ends_with_the_eos_behaviour(sim: Simulator, tmp_path: Path) -> None:
    def buy(ctx: Any) -> Any:
        if not ctx.state.get("done") and ctx.get_current_data()[0]:
            ctx.state["done"] = True
            return {"ticker": "MSFT", "quantity": 1, "side": "buy", "order_type": "market"}
        return None

    session = make_session(sim, tmp_path, run_seconds=2, eos_behavior="liquidate")
    session.strategy(buy)
    session.start()
    assert session.wait(timeout=30)
    assert session.status == "stopped"
    ours = sim_orders(sim, set(session.orders))
    assert sorted(o["client_order_id"].split("-")[0] for o in ours) == ["buy_long", "liquidate"]
    assert not [p for p in sim.positions() if p["symbol"] == "MSFT"]


def test_configuration_errors_name_the_field(tmp_path: Path) -> None:
    cases = [
        ({"tickers": []}, "tickers"),
        ({"frequency": "often"}, "frequency"),
        ({"run_seconds": -5}, "run_seconds"),
        ({"eos_behavior": "panic"}, "eos_behavior"),
        ({"eos_behavior": "custom"}, "custom_shutdown_action"),
        ({"trade_log_path": tmp_path / "missing"}, "trade_log_path"),
        ({"mode": "live"}, "mode='live' needs api_key"),
        ({"urls": {"trading": "http://127.0.0.1:9"}}, "urls= .a broker's endpoints. needs api_key and secret_key"),
        ({"mode": "demo"}, "mode"),
        ({"max_retries": -1}, "max_retries"),
        ({"simulator": {"symbols": ["AAPL"]}, "tickers": ["AAPL", "ZZZZ"]}, "tickers"),
        ({"simulator": {"sede": 1}}, r"simulator options \['sede'\] are not valid; allowed: symbols, seed, port"),
        ({"tickers": ["APPL", "MSFT"]}, "tickers \\['APPL'\\] are not in the simulator's universe.*AAPL"),
    ]
    for overrides, needle in cases:
        options: dict[str, Any] = {"tickers": ["AAPL"], "trade_log_path": tmp_path, **overrides}
        with pytest.raises(ConfigurationError, match=needle.replace("(", r"\(")):
            Session(**options)


def test_modes_and_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = "SUPER-SECRET-do-not-print-123"
    monkeypatch.setenv("APCA_API_KEY_ID", "PKTESTKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", secret)
    paper = Session(tickers=["AAPL"], trade_log_path=tmp_path)  # keys found: paper, and no network yet
    assert paper.mode == "paper"
    live = Session(tickers=["AAPL"], trade_log_path=tmp_path, mode="live")
    assert live.mode == "live"
    for shown in (repr(paper), str(paper), repr(live), repr(paper._target), repr(paper.context)):
        assert secret not in shown
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    assert Session(tickers=["AAPL"], trade_log_path=tmp_path).mode == "sim"


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _mapped_segments(pid: int) -> set[str]:
    """The /dev/shm segments a process has mapped (only ours, whatever else runs on the machine)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return set()
    return {line.split("/dev/shm/")[1].split()[0] for line in lines if "/dev/shm/psm_" in line}


def test_children_exit_when_the_owner_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from blockpaca_nb import Session
            s = Session(tickers=["AAPL"], warm_up_period=0, trade_log_path=sys.argv[1], frequency=1)
            s.start()
            while s.status != "running":
                time.sleep(0.05)
            print("running", flush=True)
            time.sleep(600)
            """
        )
    )
    owner = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "running"
        descendants = set()
        frontier = {owner.pid}
        while frontier:
            pid = frontier.pop()
            kids = _children(pid)
            descendants |= kids
            frontier |= kids
        assert len(descendants) >= 4  # simulator, feed, recorder, workers (+ resource tracker)
        ours = {seg for pid in descendants | {owner.pid} for seg in _mapped_segments(pid)}
        assert ours, "the session's shared memory was not found"
        owner.send_signal(signal.SIGKILL)
        owner.wait(5)
        wait_for(lambda: not any(_alive(p) for p in descendants), timeout=5, what="every child to exit")
        wait_for(lambda: not (ours & set(os.listdir("/dev/shm"))), timeout=5, what="shared memory to be freed")
    finally:
        if owner.poll() is None:
            owner.kill()


def test_run_trading_runs_a_blockpaca_script(tmp_path: Path) -> None:
    script = tmp_path / "blockpaca_script.py"
    script.write_text(
        textwrap.dedent(
            """
            from blockpaca_nb import run_trading   # the only line changed from a blockpaca 0.1.2 script

            TICKERS = ["AAPL", "TSLA"]

            def custom_strategy(context):
                quotes, positions = context["get_current_data"]()
                if quotes and not positions:
                    return [{"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"}]
                return None

            if __name__ == "__main__":
                s = run_trading(
                    strategy_callable=custom_strategy,
                    trade_log_name="custom_strat_name",
                    trade_log_path=LOG_DIR,
                    api_key=None,
                    secret_key=None,
                    tickers=TICKERS,
                    frequency=0.5,
                    run_seconds=3,
                    use_alpaca=False,
                    eos_behavior="liquidate",
                    warm_up_period=1,
                    live_display=False,
                )
                print("status", s.status)
            """
        ).replace("LOG_DIR", repr(str(tmp_path)))
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "status stopped" in done.stdout
    log = load_trade_log(tmp_path / "custom_strat_name.csv")
    filled = log[(log["type"] == "execution") & (log["status"] == "filled")]
    assert list(filled["action"]) == ["buy_long", "liquidate"]


def test_interrupt_does_not_stop_the_session(sim: Simulator, tmp_path: Path) -> None:
    """Jupyter's Interrupt sends SIGINT: the background processes must ignore it."""
    session = make_session(sim, tmp_path)
    session.start()
    try:
        wait_for(lambda: session.status == "running", what="running")
        named = {f"{name} {c.pid}": c.pid for name, c in session._children.items()}
        named.update({f"worker {w['pid']}": w["pid"] for w in session.worker_health()})
        for pid in named.values():
            os.kill(pid, signal.SIGINT)
        time.sleep(0.5)  # give a (wrongly) dying process the time to die
        dead = [name for name, pid in named.items() if not _alive(pid)]
        assert not dead, f"SIGINT killed {dead}"
        cid = session.submit({"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"})[0]
        wait_for(lambda: session.orders.get(cid, {}).get("status") == "filled", what="an order after SIGINT")
    finally:
        session.stop(eos="liquidate", wait=True)


def test_run_seconds_eod_ends_before_the_close(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path, run_seconds="EOD")
    session.start()
    try:
        wait_for(lambda: session.ends_at is not None, what="the end time")
        from alpaca.trading.client import TradingClient

        close = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"]).get_clock().next_close
        assert session.ends_at == pytest.approx(close.timestamp() - 30, abs=1)
    finally:
        session.stop(wait=True)


def test_every_given_after_start_sets_the_tick_rate(sim: Simulator, tmp_path: Path) -> None:
    session = make_session(sim, tmp_path, frequency=30)
    session.start()
    try:
        wait_for(lambda: session.status == "running", what="running")
        calls: list[float] = []

        @session.strategy(every="0.2s")
        def fast(ctx: Any) -> None:
            calls.append(time.monotonic())

        wait_for(lambda: len(calls) >= 4, timeout=10, what="ticks at the new rate")
        assert calls[-1] - calls[0] < 3
    finally:
        session.stop(wait=True)


def test_a_stopped_session_cannot_be_started_again(sim: Simulator, tmp_path: Path) -> None:
    from blockpaca_nb import BlockpacaError

    session = make_session(sim, tmp_path)
    session.start()
    session.stop(wait=True)
    with pytest.raises(BlockpacaError, match="create a new Session"):
        session.start()


def test_run_trading_raises_what_made_the_session_fail(tmp_path: Path) -> None:
    import socket

    from blockpaca_nb import run_trading

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="could not start"):
            run_trading(
                strategy_callable=lambda ctx: None,
                trade_log_name="failing",
                trade_log_path=str(tmp_path),
                api_key=None,
                secret_key=None,
                tickers=["AAPL"],
                frequency=1,
                run_seconds=2,
                use_alpaca=False,
                warm_up_period=0,
                simulator={"symbols": ["AAPL"], "port": taken.getsockname()[1]},
            )
