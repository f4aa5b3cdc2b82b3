"""blockpaca 0.1.2's `run_trading(...)`, unchanged for its users, on top of `Session`.

A blockpaca script runs with only its import line changed. `use_alpaca=False` — blockpaca's
local mode — now means the embedded simulator, which speaks Alpaca's protocol end to end.
`use_alpaca=True` means Alpaca paper and nothing else: missing or half keys are a
ConfigurationError, never a quiet run on the simulator with a real-looking trade log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .broker import KEY_VARIABLES, read_keys
from .errors import ConfigurationError
from .scrub import scrub_error
from .session import Session

if TYPE_CHECKING:
    from .sim import Simulator


def run_trading(
    strategy_callable: Callable[[Any], Any],
    trade_log_name: str,
    trade_log_path: str | os.PathLike[str],
    api_key: str | None,
    secret_key: str | None,
    tickers: Sequence[str],
    frequency: float | str,
    run_seconds: float | str,
    total_allowed_per_min: int = 190,
    refill_interval_sec: int = 60,
    num_workers: int | None = None,
    use_alpaca: bool = True,
    eos_behavior: str = "liquidate",
    custom_shutdown_action: Callable[[Any], Any] | None = None,
    warm_up_period: float = 10,
    live_display: bool = False,
    display_refresh_rate: float = 0.5,
    max_trade_updates: int = 15,
    simulator: Simulator | Mapping[str, Any] | None = None,
) -> Session:
    """Run `strategy_callable` every `frequency` for `run_seconds`, then the EOS action; blocking.

    Same parameters and defaults as blockpaca 0.1.2. `total_allowed_per_min` per
    `refill_interval_sec` becomes the shared sliding-window rate limit. Returns the finished Session;
    raises what made the session fail (e.g. AuthenticationError for wrong keys).
    """
    session = Session(
        tickers=list(tickers),
        api_key=api_key if use_alpaca else None,
        secret_key=secret_key if use_alpaca else None,
        mode=_mode(use_alpaca, api_key, secret_key, simulator),
        simulator=simulator,
        frequency=frequency,
        run_seconds=run_seconds,
        warm_up_period=warm_up_period,
        eos_behavior=eos_behavior,
        custom_shutdown_action=custom_shutdown_action,
        trade_log_name=trade_log_name,
        trade_log_path=trade_log_path,
        num_workers=num_workers,
        max_orders_per_minute=total_allowed_per_min,
        rate_window_s=float(refill_interval_sec),
        display_refresh_rate=display_refresh_rate,
        max_trade_updates=max_trade_updates,
    )
    session.strategy(strategy_callable)
    session.start()
    try:
        if live_display:
            _live_display(session)
        session.wait()
    finally:
        session.stop(wait=True)
    if session.failure is not None:
        raise scrub_error(session.failure)  # a script must not exit 0 from a session that failed
    return session


def _mode(
    use_alpaca: bool, api_key: str | None, secret_key: str | None, simulator: Simulator | Mapping[str, Any] | None
) -> str:
    """blockpaca's use_alpaca as a mode: True is Alpaca paper, with both keys, or an error saying what is missing."""
    if not use_alpaca:
        return "sim"
    key, _secret = read_keys(api_key, secret_key)  # half a pair raises, naming the missing half
    if key is None:
        raise ConfigurationError(
            "use_alpaca=True needs api_key and secret_key (or the variables"
            f" {KEY_VARIABLES['api_key']} and {KEY_VARIABLES['secret_key']}); both are missing."
            " use_alpaca=False runs on the embedded simulator"
        )
    if simulator is not None:
        raise ConfigurationError("simulator= is only used with use_alpaca=False (the embedded simulator)")
    return "paper"


def _live_display(session: Session) -> None:
    """A rich terminal view of status, positions and the latest trade updates until the run ends."""
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table

    def render() -> Group:
        positions = Table(title="Positions", expand=True)
        for column in ("Ticker", "Qty", "Bought at", "Cost basis"):
            positions.add_column(column)
        for p in session.portfolio.as_blockpaca():
            positions.add_row(p["ticker"], f"{p['quantity']:g}", f"{p['bought_at']:.2f}", f"{p['cost_basis']:.2f}")
        updates = Table(title="Trade updates", expand=True)
        for column in ("Time", "Client order id", "Ticker", "Side", "Status", "Qty", "Price"):
            updates.add_column(column)
        for row in list(session.trade_updates)[::-1]:
            updates.add_row(
                time.strftime("%H:%M:%S", time.localtime(row.get("timestamp") or 0)),
                row.get("client_order_id") or "",
                row.get("ticker") or "",
                row.get("side") or "",
                row.get("status") or "",
                f"{row.get('executed_qty') or 0:g}",
                f"{row.get('executed_price') or 0:.2f}",
            )
        left = f"{max(0.0, session.ends_at - time.time()):.0f}s left" if session.ends_at else ""
        header = f"[bold]{session.mode.upper()}[/] {session.status} {left} — strategy {session.active_strategy}"
        return Group(header, positions, updates)

    with Live(render(), refresh_per_second=max(1, int(1 / session.display_refresh_rate))) as live:
        while not session.wait(session.display_refresh_rate):
            live.update(render())
        live.update(render())
