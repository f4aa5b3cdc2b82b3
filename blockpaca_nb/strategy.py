"""Strategies: durations ("10s", "1m", "EOD") and the context a strategy receives (clocks: lineup.py).

A strategy is a plain function `strategy(ctx)` returning orders (or calling `ctx.submit_order`).
The context is blockpaca's dict (`ctx["get_current_data"]()`) and an object
(`ctx.get_current_data()`) at once, plus `state`, `bars`, `account` and `now`.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError
from .scrub import scrub_text

Strategy = Callable[["Context"], Any]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DURATION_HELP = 'a number of seconds, or a number and a unit ms, s, m, h or d ("500ms", "10s", "15m", "2h")'


CONTEXT_CALLABLE = "a function of one argument, the context (def strategy(ctx): ...)"


def check_takes_context(fn: object, field: str) -> None:
    """`fn` must be callable with the context alone (more arguments only with defaults): refused
    here, before it runs, rather than failing at every tick."""
    if not callable(fn):
        raise ConfigurationError(f"{field}={fn!r} is not valid; allowed: {CONTEXT_CALLABLE}")
    try:  # the function called, not the one a decorator wraps (functools.wraps): it may supply more
        signature = inspect.signature(fn, follow_wrapped=False)
    except (TypeError, ValueError):  # a callable Python cannot look into (a builtin): it will tell when called
        return
    try:
        signature.bind(None)
    except TypeError:
        name = getattr(fn, "__name__", type(fn).__name__)
        bare = [p.replace(annotation=p.empty, default=p.default) for p in signature.parameters.values()]
        shown = signature.replace(parameters=bare, return_annotation=signature.empty)
        raise ConfigurationError(f"{field} {name}{shown} is not valid; allowed: {CONTEXT_CALLABLE}") from None


BAR_FEEDS = {"iex": "any data plan", "sip": "a paid plan"}  # Alpaca's stock bar feeds


def check_feed(feed: object) -> str:
    """A bar feed Alpaca serves, else a ConfigurationError naming those it does."""
    if not isinstance(feed, str) or feed not in BAR_FEEDS:
        allowed = ", ".join(f"{name!r} ({plan})" for name, plan in BAR_FEEDS.items())
        raise ConfigurationError(f"feed={feed!r} is not valid; allowed: {allowed}")
    return str(feed)


def parse_duration(value: object, field: str, *, allow_eod: bool = False) -> float | str:
    """Seconds from a number or "10s"/"1m"/"2h"; "EOD" stays "EOD" where allowed."""
    if allow_eod and isinstance(value, str) and value.strip().upper() == "EOD":
        return "EOD"
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNIT[unit]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        allowed = DURATION_HELP + (' or "EOD"' if allow_eod else "")
        raise ConfigurationError(f"{field}={value!r} is not valid; allowed: {allowed}")
    return seconds


class Context(dict[str, Any]):
    """What a strategy receives: blockpaca's context dict, also usable with attributes.

    Keys (blockpaca's): get_current_data, submit_order, shm_meta, result_queue, command_queue.
    Attributes: state (a dict kept across ticks and hot swaps), bars(), account(), account_positions(),
    now, strategy (its name).
    """

    def __init__(
        self,
        *,
        get_current_data: Callable[[], tuple[dict[str, dict[str, float]], list[dict[str, Any]]]],
        submit_order: Callable[[Any], Any],
        shm_meta: Mapping[str, Any],
        result_queue: Any,
        command_queue: Any,
        state: dict[str, Any],
        bars: Callable[..., Any],
        account: Callable[[], dict[str, Any]],
        account_positions: Callable[[], list[dict[str, Any]]] | None = None,
        strategy: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            get_current_data=get_current_data,
            submit_order=submit_order,
            shm_meta=shm_meta,
            result_queue=result_queue,
            command_queue=command_queue,
        )
        self.state = state
        self._bars = bars
        self._account = account
        self._account_positions = account_positions
        self.strategy = strategy  # the name of the strategy this context was made for
        self._clock = clock  # the wall clock live, the replay's clock in replay

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"<Context keys={sorted(self)} state_keys={sorted(self.state)[:10]}>"

    @property
    def now(self) -> float:
        """The time of this call, epoch seconds: the wall clock live, the replayed moment in replay."""
        return self._clock()

    def bars(self, symbols: str | Sequence[str], timeframe: str = "1Day", limit: int = 100, feed: str = "iex") -> Any:
        """Historical bars as a DataFrame indexed by (symbol, timestamp): the last `limit` per symbol.
        `feed`: "iex" (every data plan) or "sip" (a paid one); a replay reads its own history."""
        return self._bars(symbols, timeframe, limit, feed)  # checked there: s.bars is called directly too

    def account(self) -> dict[str, Any]:
        """The broker's account (cash, equity, buying power …) as a dict of numbers."""
        return self._account()

    def account_positions(self) -> list[dict[str, Any]]:
        """The account's net positions in blockpaca's schema — every strategy's, plus what the account
        held outside the session — while ``get_current_data()`` gives this strategy's own."""
        return self._account_positions() if self._account_positions is not None else self.get_current_data()[1]


@dataclass
class StrategyError:
    """An exception a strategy raised, kept with its traceback (the loop goes on)."""

    strategy: str
    time: float
    message: str
    traceback: str

    def __post_init__(self) -> None:
        """A strategy's exception may quote a secret (its own request's header): blanked here, once."""
        self.message, self.traceback = scrub_text(self.message), scrub_text(self.traceback)
