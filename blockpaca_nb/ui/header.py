"""The dashboard's header: mode, status, strategy, account, rate limit, feed and workers.

The state is one small dict sent whole, when a value in it changed and at least every
HEARTBEAT_S (so the page can tell a silent kernel — restarted, or dead — from a quiet session).
Clocks are not in it: the browser counts down the warm-up, the time left and the next tick, and
ages the last quote, from the times sent here (with the kernel's clock at sending, to correct for
skew).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import anywidget
import traitlets

from .tables import HERE, clean, front_end

MODE_LABELS = {"sim": "SIM", "paper": "PAPER", "live": "LIVE"}
HEARTBEAT_S = 5.0  # the longest the header stays silent; header.js's SILENT_S is a few of these


class HeaderPanel(anywidget.AnyWidget):
    """The header strip; ``state`` is set by the pump only when something in it changed."""

    _esm = front_end("header.js")
    _css = HERE / "dashboard.css"

    state = traitlets.Dict().tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last: dict[str, Any] = {}
        self._sent_at = -math.inf
        self._lock = threading.Lock()
        self.messages = 0

    def publish(self, state: Mapping[str, Any], now: float) -> bool:
        """Send ``state`` (plus the kernel's clock) if it differs from the last one sent, or if
        HEARTBEAT_S passed since: the page tells a kernel gone silent (restarted, dead) from a
        quiet session by the clock it last heard (header.js)."""
        with self._lock:
            if state == self._last and 0.0 <= now - self._sent_at < HEARTBEAT_S:  # (a clock set back: send)
                return False
            self._last, self._sent_at = dict(state), now
            self.state = {**state, "now": round(now, 3)}
            self.messages += 1
            return True


def header_state(
    session: Any,
    *,
    equity: float,
    cash: float,
    start_equity: float,
    last_receive: float,
    quoted: int,
    workers: list[Mapping[str, Any]],
    errors: int,
) -> dict[str, Any]:
    """The header's values; the session is only read (all public attributes)."""
    account = session.account_info or {}
    used, limit = session.rate_usage
    last_equity = _number(account.get("last_equity"))
    return {
        "mode": MODE_LABELS.get(session.mode, str(session.mode).upper()),
        "status": session.status,
        "activity": session.activity,  # what a control action waits for, e.g. "liquidating: 3 orders, ..."
        "strategy": session.active_strategy,
        "strategy_state": _stopped_state(session),  # "halted" after the kill switch, say; "" while it runs
        "strategies": len(session.strategies),
        "equity": clean(equity, 2),
        "cash": clean(cash, 2),
        "buying_power": clean(_number(account.get("buying_power")), 2),
        "day_pnl": clean(equity - last_equity, 2),
        "day_pnl_pct": clean((equity / last_equity - 1.0) * 100.0 if last_equity else math.nan, 3),
        "session_pnl": clean(equity - start_equity, 2),
        "rate_used": int(used),
        "rate_limit": int(limit),
        "last_quote": clean(last_receive, 3) if last_receive else None,
        "quoted": quoted,
        "feed_restarts": int((getattr(session, "restarts", None) or {}).get("feed", 0)),
        "tickers": len(session.tickers),
        "workers": len(workers),
        "workers_alive": sum(1 for w in workers if w.get("alive")),
        "in_flight": sum(int(w.get("in_flight") or 0) for w in workers),
        "waiting": len(getattr(session, "waiting", ())),
        "restarts": sum(int(w.get("restarts") or 0) for w in workers),
        "started_at": clean(session.started_at, 3),
        "warm_up": float(session.warm_up_period),
        "ends_at": clean(session.ends_at, 3),
        "frequency": float(session.frequency),
        "ticks": int(session.ticks),
        "skipped": int(session.skipped_ticks),
        "errors": errors,
    }


def _stopped_state(session: Any) -> str:
    """The main strategy's state when it is not running (the session may run while it is halted)."""
    name = session.active_strategy
    state = getattr(session, "strategy_state", None)
    if not name or state is None:
        return ""
    shown = str(state(name))
    return "" if shown == "running" else shown


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
