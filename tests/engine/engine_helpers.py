"""What the engine's session tests share: a session on a test's own simulator, started and up, and
the broker's ground truth for one ticker. Imported as ``from engine_helpers import ...`` (pytest puts
this folder on ``sys.path``; a module name of its own, so no other folder's helpers shadow it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from waiting import wait_for

from blockpaca_nb import Session, Simulator

TICKERS = ["AAPL", "MSFT"]


def make_session(sim: Simulator, tmp_path: Path, name: str = "test", **kwargs: Any) -> Session:
    """A Session on ``sim`` trading TICKERS every 0.2 s with no warm-up, its log in ``tmp_path``."""
    options: dict[str, Any] = {
        "tickers": TICKERS,
        "simulator": sim,
        "frequency": 0.2,
        "warm_up_period": 0,
        "trade_log_path": tmp_path,
        "trade_log_name": name,
        "num_workers": 2,
    }
    options.update(kwargs)
    return Session(**options)


def started(session: Session, quotes: bool = False) -> Session:
    """Start and wait until it is up (bring-up takes seconds on a busy machine: budgets start here);
    ``quotes=True`` also waits for a two-sided quote of every ticker (limits value orders by them)."""
    session.start()
    wait_for(lambda: session.status in ("running", "paused", "stopped", "failed"), 120, "the session to be up")
    if quotes:
        wait_for(lambda: (session.quotes["bid"] > 0).all() and (session.quotes["ask"] > 0).all(), 60, "quotes")
    return session


def held(sim: Simulator, ticker: str) -> float:
    """The account's position in ``ticker`` at the broker."""
    return sum(float(p["qty"]) for p in sim.positions() if p["symbol"] == ticker)
