"""`SessionConfig`: every setting of a session, validated once, before anything starts.

A trader's typo must fail in the cell that made it, naming the argument and what is allowed — not
minutes later in a background thread (``num_workers=True`` used to pass until a worker tripped on it).
So `Session(...)` builds one frozen `SessionConfig`; each field is checked here, in one style, and
documented once (the `Session` docstring repeats these descriptions for Shift-Tab in Jupyter).

The keys are not part of it: they go straight to :func:`.broker.resolve`, which keeps them out of
every repr.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tradelog
from .errors import ConfigurationError
from .running import REPLACE_CHOICES
from .statuses import EOS_ACTIONS
from .strategy import Strategy, check_takes_context, parse_duration
from .tickers import normalize_tickers

MAX_ORDERS_PER_MINUTE = 1_000_000
"""The highest rate limit a session accepts: Alpaca grants 200 a minute (some plans 1 000), but the
simulator takes far more, and load tests use 20 000."""
MAX_WORKERS = 64


@dataclass(frozen=True)
class SessionConfig:
    """The validated settings of one `Session` (see its docstring for each field's meaning)."""

    tickers: tuple[str, ...]
    frequency: float = 10.0
    run_seconds: float | str | None = None
    warm_up_period: float = 5.0
    eos_behavior: str = "hold"
    custom_shutdown_action: Strategy | None = None
    trade_log_file: Path = Path("session_trade_log.csv")
    num_workers: int | None = None
    max_orders_per_minute: int | None = None
    max_retries: int = 3
    display_refresh_rate: float = 0.25
    max_trade_updates: int = 20
    rate_window_s: float = 60.0
    replace_running: bool | str = True

    @classmethod
    def from_arguments(
        cls,
        *,
        tickers: object,
        frequency: object = 10,
        run_seconds: object = None,
        warm_up_period: object = 5,
        eos_behavior: object = "hold",
        custom_shutdown_action: object = None,
        trade_log_name: object = "session",
        trade_log_path: object = ".",
        num_workers: object = None,
        max_orders_per_minute: object = None,
        max_retries: object = 3,
        display_refresh_rate: object = 0.25,
        max_trade_updates: object = 20,
        rate_window_s: object = 60.0,
        replace_running: object = True,
    ) -> SessionConfig:
        """Check every argument as a user typed it; raise ConfigurationError naming the first bad one."""
        return cls(
            tickers=tuple(normalize_tickers(tickers, "tickers")),
            frequency=float(parse_duration(frequency, "frequency")),
            run_seconds=None if run_seconds is None else parse_duration(run_seconds, "run_seconds", allow_eod=True),
            warm_up_period=seconds("warm_up_period", warm_up_period, allow_zero=True),
            eos_behavior=eos_action("eos_behavior", eos_behavior),
            custom_shutdown_action=_custom_action(eos_behavior, custom_shutdown_action),
            trade_log_file=writable_trade_log(trade_log_path, trade_log_name),
            num_workers=count("num_workers", num_workers, 1, MAX_WORKERS, optional=True),
            max_orders_per_minute=count(
                "max_orders_per_minute", max_orders_per_minute, 1, MAX_ORDERS_PER_MINUTE, optional=True
            ),
            max_retries=count("max_retries", max_retries, 0, 100),
            display_refresh_rate=float(parse_duration(display_refresh_rate, "display_refresh_rate")),
            max_trade_updates=count("max_trade_updates", max_trade_updates, 1, 10_000),
            rate_window_s=seconds("rate_window_s", rate_window_s),
            replace_running=_replace_choice(replace_running),
        )


def count(name: str, value: object, low: int, high: int, *, optional: bool = False) -> Any:
    """A whole number in [low, high] (``True`` is not a number here); None where optional."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        allowed = f"{'None or ' if optional else ''}an integer from {low} to {high}"
        raise ConfigurationError(f"{name}={value!r} is not valid; allowed: {allowed}")
    return value


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A plain number of seconds: > 0, or >= 0 where zero means "none"."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN fails
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):  # type: ignore[operator]
        raise ConfigurationError(f"{name}={value!r} is not valid; allowed: seconds {'>=' if allow_zero else '>'} 0")
    return float(value)  # type: ignore[arg-type]


def eos_action(name: str, value: object) -> str:
    if value not in EOS_ACTIONS:
        raise ConfigurationError(f"{name}={value!r} is not valid; allowed: {', '.join(EOS_ACTIONS)}")
    return str(value)


def _custom_action(eos_behavior: object, action: object) -> Callable[..., Any] | None:
    if action is not None:
        check_takes_context(action, "custom_shutdown_action")
    if eos_behavior == "custom" and action is None:
        raise ConfigurationError('eos_behavior="custom" needs custom_shutdown_action, a callable taking the context')
    return action  # type: ignore[return-value]


def writable_trade_log(directory: object, name: object) -> Path:
    """The trade log's path, once it is known that a row can be appended there (no file is made)."""
    if not isinstance(directory, str | os.PathLike):
        raise ConfigurationError(f"trade_log_path={directory!r} is not valid; allowed: a directory path")
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"trade_log_name={name!r} is not valid; allowed: a non-empty string")
    path = tradelog.trade_log_path(directory, name)
    folder = path.parent
    if not folder.is_dir():
        raise ConfigurationError(f"trade_log_path={str(folder)!r} is not an existing directory")
    if path.is_dir():
        raise ConfigurationError(f"trade_log_name: {str(path)!r} is a directory, not a log file; choose another name")
    try:
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        else:
            tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise ConfigurationError(f"trade_log_path={str(folder)!r} is not writable: {err.strerror}") from None
    return path



def _replace_choice(value: object) -> bool | str:
    if not any(value is choice or (isinstance(choice, str) and value == choice) for choice in REPLACE_CHOICES):
        allowed = "True (stop it with eos='hold'), False (refuse), 'hold' or 'liquidate'"
        raise ConfigurationError(f"replace_running={value!r} is not valid; allowed: {allowed}")
    return value  # type: ignore[return-value]
