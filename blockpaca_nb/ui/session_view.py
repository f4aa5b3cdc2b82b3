"""What the dashboard reads and calls on a session: a small Protocol, not `Any` and private names.

The dashboard is a view: it must never reach into a session's internals, so that a session can
change shape without breaking it, and tests can drive the dashboard with a stand-in that has only
these members (see tests/browser/test_dashboard_offline.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..portfolio import Portfolio
from ..quotes import QuoteBook


class SessionView(Protocol):
    """The members of :class:`~blockpaca_nb.Session` the dashboard uses."""

    mode: str
    status: str
    activity: str  # what a control action waits for ("" when none runs)
    tickers: Sequence[str]
    strategies: Sequence[str]
    active_strategy: str | None
    custom_shutdown_action: Callable[..., Any] | None
    account_info: Mapping[str, Any]
    errors: Iterable[Any]
    trade_updates: Iterable[Mapping[str, Any]]
    orders: Mapping[str, Mapping[str, Any]]
    portfolio: Portfolio
    display_refresh_rate: float
    max_trade_updates: int
    warm_up_period: float
    frequency: float
    started_at: float | None
    ends_at: float | None
    ticks: int
    skipped_ticks: int

    @property
    def quote_book(self) -> QuoteBook | None: ...

    @property
    def rate_usage(self) -> tuple[int, int]: ...

    def worker_health(self) -> list[dict[str, Any]]: ...

    def start(self) -> Any: ...

    def pause(self, strategy: str | None = None) -> None: ...

    def resume(self, strategy: str | None = None) -> None: ...

    def stop(self) -> None: ...

    def liquidate(self, scope: str = "session", *, strategy: str | None = None) -> None: ...

    def hold(self) -> None: ...

    def run_custom_eos(self) -> None: ...

    def select(self, name: str) -> None: ...

    def strategy_rows(self) -> list[dict[str, Any]]: ...

    def kill(self) -> None: ...
