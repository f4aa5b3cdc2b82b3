"""6. Bad configuration: each mistake gives a clear message — a ConfigurationError at construction,
or Session.status == "failed" within seconds with the reason in session.errors — and leaves
nothing running. Broker-side mistakes are found before any background process is spawned.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import alive, figure

from blockpaca_nb import ConfigurationError, Session, Simulator
from blockpaca_nb.tradelog import TradeLogWriter

TICKERS = ["AAPL", "MSFT"]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    from blockpaca_nb.sim.universe import UNIVERSE

    with Simulator(symbols=UNIVERSE[:12], seed=3) as simulator:
        yield simulator


def paper(sim: Simulator, tmp_path: Path, **overrides: Any) -> Session:
    """A paper-mode session pointed at the simulator's endpoints (explicit urls and keys)."""
    options: dict[str, Any] = {
        "tickers": ["AAPL"],
        "mode": "paper",
        "urls": sim.urls,
        "api_key": sim.api_key,
        "secret_key": sim.secret_key,
        "warm_up_period": 0,
        "trade_log_path": tmp_path,
        "num_workers": 1,
    }
    options.update(overrides)
    return Session(**options)


def fails(session: Session, within: float) -> tuple[str, float]:
    """Start the session; it must fail within ``within`` seconds; returns its reason and the time."""
    started = time.monotonic()
    session.start()
    assert session.wait(within + 10), "the session hung"
    took = time.monotonic() - started
    assert session.status == "failed", (session.status, list(session.errors))
    assert took < within, f"failed only after {took:.1f} s"
    assert all(not alive(child.pid) for child in session._children.values() if child.pid)
    return " ".join(str(e.get("reason") if isinstance(e, dict) else e) for e in session.errors), took


def test_wrong_keys_fail_at_once_without_retrying(sim: Simulator, tmp_path: Path) -> None:
    session = paper(sim, tmp_path, secret_key="not-the-secret")
    reason, took = fails(session, within=5)
    calls = len(session._limiter.grants()) if session._limiter else 0
    figure("wrong_keys", failed_after_s=round(took, 2), rest_calls=calls, reason=reason[:90])
    assert "AuthenticationError" in reason and "refused the API keys" in reason and "not authorized" in reason
    assert calls == 1, "a refused key must not be retried"
    assert not session._children, "nothing should have been spawned"


def test_unreachable_endpoint_fails_within_seconds(sim: Simulator, tmp_path: Path) -> None:
    refused = {k: v.replace(f":{sim.port}", ":1") for k, v in sim.urls.items()}
    reason, took = fails(paper(sim, tmp_path, urls=refused), within=5)
    figure("endpoint_refused", failed_after_s=round(took, 2), reason=reason[:90])
    assert "cannot reach the broker at http://127.0.0.1:1" in reason and "refused" in reason


def test_silent_endpoint_fails_within_seconds(sim: Simulator, tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        urls = {k: v.replace(f":{sim.port}", f":{port}") for k, v in sim.urls.items()}
        reason, took = fails(paper(sim, tmp_path, urls=urls), within=15)
    figure("endpoint_silent", failed_after_s=round(took, 2), reason=reason[:90])
    assert f"no answer from the broker at http://127.0.0.1:{port}" in reason


def test_run_seconds_past_the_close(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alpaca.trading.client import TradingClient
    from alpaca.trading.models import Clock

    now = datetime.now(UTC)
    closing = Clock(timestamp=now, is_open=True, next_open=now + timedelta(hours=17),
                    next_close=now + timedelta(seconds=60))
    monkeypatch.setattr(TradingClient, "get_clock", lambda self: closing)  # the broker: "we close in a minute"
    reason, _took = fails(paper(sim, tmp_path, run_seconds=3600), within=5)
    figure("run_past_close", reason=reason[:110])
    assert "run_seconds=3600 runs past the market close" in reason and "EOD" in reason


def test_unknown_tickers(sim: Simulator, tmp_path: Path) -> None:
    few, _ = fails(paper(sim, tmp_path, tickers=["AAPL", "ZZZZ"]), within=5)
    many, _ = fails(paper(sim, tmp_path, tickers=[*sim.symbols[:11], "QQQQQ"]), within=5)
    figure("unknown_tickers", reason=few[:100])
    assert "tickers ['ZZZZ'] are not tradable" in few and "tickers ['QQQQQ'] are not tradable" in many
    with pytest.raises(ConfigurationError, match="not simulated"):
        Session(tickers=["AAPL", "ZZZZ"], simulator={"symbols": ["AAPL"]}, trade_log_path=tmp_path)


def test_trade_log_that_cannot_be_written(sim: Simulator, tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    cases = {"/sys": "not writable", str(tmp_path / "missing"): "not an existing directory"}
    for directory, needle in cases.items():
        with pytest.raises(ConfigurationError, match=needle):
            paper(sim, Path(directory))
    with pytest.raises(ConfigurationError, match="is a directory"):
        paper(sim, tmp_path, trade_log_name="folder")
    other = tmp_path / "other.csv"
    other.write_text("date,price\n2024-01-02,1.0\n")  # someone else's CSV: the recorder refuses it
    reason, took = fails(paper(sim, tmp_path, trade_log_name="other"), within=15)
    figure("trade_log_taken", failed_after_s=round(took, 2), reason=reason[:100])
    assert "already holds a log with other columns" in reason
    TradeLogWriter(tmp_path / "fine.csv").close()  # a log of ours is appended to, not refused
    assert paper(sim, tmp_path, trade_log_name="fine").trade_log_file.name == "fine.csv"


def test_live_needs_keys_and_is_never_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="mode='live' needs api_key and secret_key"):
        Session(tickers=TICKERS, mode="live", trade_log_path=tmp_path)
    assert Session(tickers=TICKERS, api_key="k", secret_key="s", trade_log_path=tmp_path).mode == "paper"
