"""`Simulator`: the embedded Alpaca-compatible server, run in its own process.

The caller (often a Jupyter kernel) stays free: the server's event loop, market and matching run in
a child process (`python -m blockpaca_nb.sim.child`, so no `__main__` guard is needed in the
caller's script). The configuration, secret included, travels on the child's stdin, never on its
command line. The child exits when its stdin closes — on `stop()`, on garbage collection, or when
the caller dies — or when its parent process changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import select
import subprocess
import sys
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import event_loop
from ..errors import ConfigurationError
from ..tickers import normalize_tickers
from . import simclock
from .broker import PROFILES, TRIGGERED_EVENTS
from .calendar import MARKET_HOURS_VALUES
from .data import DATA_PLANS
from .server import FAULT_FIELDS, SimConfig
from .universe import UNIVERSE

START_TIMEOUT_S = 30.0


def _validated(**values: Any) -> dict[str, Any]:
    """Check every keyword before anything starts; errors name the field and what is allowed."""

    def need(ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise ConfigurationError(f"Simulator {name}={values[name]!r} is not valid; allowed: {allowed}")

    def number(name: str, low: float, high: float | None = None, optional: bool = False) -> None:
        value = values[name]
        if optional and value is None:
            return
        good = isinstance(value, int | float) and not isinstance(value, bool)
        good = good and value >= low and (high is None or value <= high)
        span = f"a number >= {low}" + (f" and <= {high}" if high is not None else "")
        need(good, name, span + (" or None" if optional else ""))

    number("seed", 0)
    need(isinstance(values["seed"], int), "seed", "a non-negative integer")
    number("port", 0, 65535)
    need(isinstance(values["port"], int), "port", "an integer port, 0 for a free one")
    number("quotes_per_second", 0.001, 10_000)
    number("latency_ms", 0, 60_000)
    need(
        values["market_hours"] in MARKET_HOURS_VALUES,
        "market_hours",
        ", ".join(map(repr, MARKET_HOURS_VALUES)),
    )
    number("starting_cash", 0)
    number("error_rate", 0, 1)
    number("timeout_after_accept_rate", 0, 1)
    number("rate_limit_per_min", 1, optional=True)
    number("rate_limit_window_s", 0.1, 3600)
    number("ws_drop_every_s", 0.1, optional=True)
    for flag in ("trade_stream_silent", "regulatory_fees"):
        if flag in values:
            need(isinstance(values[flag], bool), flag, "True or False")
    number("cancel_latency_ms", 0, 60_000)
    number("partial_fill_rate", 0, 1)
    need(values["data_plan"] in DATA_PLANS, "data_plan", ", ".join(map(repr, DATA_PLANS)))
    if values["clock_start"] is not None:
        try:
            simclock.parse_instant(values["clock_start"])
        except ValueError:
            need(False, "clock_start", "an ISO time with its zone, e.g. '2026-12-04T15:59:00-05:00', or None")
    return values


def _profile(profile: str, **overrides: float | None) -> dict[str, float]:
    """The profile's rule settings, with any keyword the caller gave instead."""
    if profile not in PROFILES:
        raise ConfigurationError(
            f"Simulator profile={profile!r} is not valid; allowed: {', '.join(map(repr, PROFILES))}"
        )
    return {name: PROFILES[profile][name] if value is None else value for name, value in overrides.items()}


def _symbols(symbols: Iterable[str] | None) -> tuple[str, ...]:
    """The symbols to serve: the built-in universe, or the caller's tickers read as the session reads them."""
    return UNIVERSE if symbols is None else tuple(normalize_tickers(symbols, "Simulator symbols"))


class Simulator:
    """An Alpaca-compatible broker and market on 127.0.0.1, for the real alpaca-py clients.

    >>> with Simulator(symbols=["AAPL", "MSFT"], seed=7) as sim:
    ...     TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
    """

    def __init__(
        self,
        symbols: Iterable[str] | None = ("AAPL", "MSFT", "TSLA", "NVDA", "SPY"),
        *,
        seed: int = 0,
        port: int = 0,
        quotes_per_second: float = 2.0,
        latency_ms: float = 0.0,
        market_hours: str = "always",
        starting_cash: float = 100_000.0,
        error_rate: float = 0.0,
        timeout_after_accept_rate: float = 0.0,
        rate_limit_per_min: int | None = None,
        ws_drop_every_s: float | None = None,
        rate_limit_window_s: float = 60.0,
        profile: str = "paper",
        cancel_latency_ms: float | None = None,
        partial_fill_rate: float | None = None,
        clock_start: str | None = None,
        data_plan: str = "basic",
        regulatory_fees: bool = False,
    ) -> None:
        event_loop.loop_name()  # an unknown BLOCKPACA_EVENT_LOOP stops here, not in the child
        rules = _profile(profile, cancel_latency_ms=cancel_latency_ms, partial_fill_rate=partial_fill_rate)
        settings = _validated(
            **rules,
            seed=seed,
            port=port,
            quotes_per_second=quotes_per_second,
            latency_ms=latency_ms,
            market_hours=market_hours,
            starting_cash=starting_cash,
            error_rate=error_rate,
            timeout_after_accept_rate=timeout_after_accept_rate,
            rate_limit_per_min=rate_limit_per_min,
            ws_drop_every_s=ws_drop_every_s,
            rate_limit_window_s=rate_limit_window_s,
            clock_start=clock_start,
            data_plan=data_plan,
            regulatory_fees=regulatory_fees,
        )
        self.api_key = "SIM" + secrets.token_hex(8).upper()
        self._secret = secrets.token_urlsafe(24)
        self._config = SimConfig(
            symbols=_symbols(symbols),
            host="127.0.0.1",
            api_key=self.api_key,
            secret_key=self._secret,
            profile=profile,
            **settings,
        )
        self._process: subprocess.Popen[str] | None = None
        self._port: int | None = None
        self._finalizer: weakref.finalize | None = None

    # ----------------------------------------------------------------- identity
    @property
    def secret_key(self) -> str:
        return self._secret

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._config.symbols

    @property
    def seed(self) -> int:
        return self._config.seed

    @property
    def profile(self) -> str:
        return self._config.profile

    @property
    def regulatory_fees(self) -> bool:
        """Whether fills pay a live account's regulatory fees (see :mod:`blockpaca_nb.fees`)."""
        return self._config.regulatory_fees

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not serving yet: call start() first")
        return self._port

    @property
    def urls(self) -> dict[str, str]:
        """What each alpaca-py client takes as `url_override` (REST: no /v2, streams: full URL)."""
        base = f"127.0.0.1:{self.port}"
        return {
            "trading": f"http://{base}",
            "trading_stream": f"ws://{base}/stream",
            "data": f"http://{base}",
            "data_stream": f"ws://{base}/v2/iex",
        }

    def __repr__(self) -> str:
        where = f"serving on 127.0.0.1:{self._port}" if self.running else "not serving"
        shown = ",".join(self.symbols[:5]) + (
            f",… ({len(self.symbols)} symbols)" if len(self.symbols) > 5 else ""
        )
        return f"<Simulator {where} symbols={shown} seed={self.seed} profile={self.profile}>"

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Simulator:
        """Start serving; returns once the server accepts connections."""
        if self.running:
            return self
        process = subprocess.Popen(
            [sys.executable, "-m", "blockpaca_nb.sim.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            text=True,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(dataclasses.asdict(self._config)) + "\n")
        process.stdin.flush()
        ready = _read_line(process, START_TIMEOUT_S)
        if not ready.get("port"):
            _shutdown(process)
            reason = ready.get("error") or f"exit code {process.returncode}"
            raise RuntimeError(f"the simulator could not start: {reason}")
        self._process, self._port = process, int(ready["port"])
        self._finalizer = weakref.finalize(self, _shutdown, process)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the process to exit (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        self._process = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- ground truth and faults
    def orders(self) -> list[dict[str, Any]]:
        """Every order the simulator holds, as Alpaca order dicts, oldest first (bypasses faults)."""
        return self._internal("GET", "orders")

    def positions(self) -> list[dict[str, Any]]:
        """Every open position, as Alpaca position dicts (bypasses faults)."""
        return self._internal("GET", "positions")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault settings while serving, e.g. `sim.set_faults(error_rate=0.1)`.
        `trade_stream_silent=True` makes the trade_updates connections lose every message while
        they stay open (a half-open socket); setting it back to False closes them."""
        unknown = set(faults) - set(FAULT_FIELDS)
        if unknown:
            raise ConfigurationError(
                f"unknown fault setting(s) {sorted(unknown)}; allowed: {', '.join(FAULT_FIELDS)}"
            )
        current = {name: getattr(self._config, name) for name in FAULT_FIELDS}
        current.update(faults)
        fixed = {
            "seed": 0,
            "port": 0,
            "quotes_per_second": 1,
            "market_hours": "always",
            "starting_cash": 0,
            "clock_start": None,
            "data_plan": "basic",
        }
        _validated(**fixed, rate_limit_window_s=self._config.rate_limit_window_s, **current)
        return self._internal("POST", "faults", faults)

    def trigger_event(self, order_id: str, event: str) -> dict[str, Any]:
        """Make the broker send a trade_updates event the simulated market never causes by itself:
        `done_for_day` (the order stops for today), `restated` (Alpaca restates the order unchanged)
        `expired` (as at the close) or `accepted`. Returns the order as Alpaca JSON."""
        if event not in TRIGGERED_EVENTS:
            raise ConfigurationError(
                f"Simulator.trigger_event event={event!r} is not valid; allowed: {', '.join(sorted(TRIGGERED_EVENTS))}"
            )
        return self._internal("POST", f"orders/{order_id}/event", {"event": event})

    def set_clock(self, when: str) -> dict[str, Any]:
        """Jump the simulator's clock to `when` (an ISO time with its zone) while serving; it runs on
        at wall speed from there. Returns what `/v2/clock` now answers, e.g. to cross the close:
        `sim.set_clock("2026-12-04T15:59:58-05:00")`."""
        try:
            simclock.parse_instant(when)
        except ValueError as err:
            raise ConfigurationError(f"Simulator set_clock: {err}") from None
        try:
            return self._internal("POST", "clock", {"time": when})
        except urllib.error.HTTPError as err:
            message = json.loads(err.read() or b"{}").get("message", str(err))
            raise ConfigurationError(f"Simulator set_clock: {message}") from None

    def _internal(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_sim/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "APCA-API-KEY-ID": self.api_key,
                "APCA-API-SECRET-KEY": self._secret,
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def _child_env() -> dict[str, str]:
    """The caller's environment, with this package importable even when it is not installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}  # the user's keys stay home
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _read_line(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The child's one-line JSON report, or an error if it says nothing in time."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    try:
        return json.loads(line) if line else {"error": "no answer from the simulator process"}
    except ValueError:
        return {"error": f"unexpected output from the simulator process: {line[:200]!r}"}


def _shutdown(process: subprocess.Popen[str]) -> None:
    """Ask the child to stop by closing its stdin; kill it if it lingers."""
    with contextlib.suppress(OSError, ValueError):
        if process.stdin:
            process.stdin.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout:
        process.stdout.close()
