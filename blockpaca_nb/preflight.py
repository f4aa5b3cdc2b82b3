"""Checks made before anything is spawned: the keys, the endpoint, the tickers, the market hours.

A bad configuration should fail within seconds, in the cell that started the session, with its
reason — not after the quote feed, the recorder and the workers are up and trading on half a plan.
Each check makes as few REST calls as it can (up to ``PER_TICKER_CHECK`` tickers one by one, more
with one asset list) through a :class:`BrokerCalls` that does not spend long on an unreachable host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .broker import FREE_PLAN_STREAM_SYMBOLS
from .broker_calls import BrokerCalls
from .errors import BrokerError, ConfigurationError

PROBE_TIMEOUT = (3.05, 5.0)  # connect and read seconds of the checks made before anything starts
PER_TICKER_CHECK = 10  # up to this many tickers are checked one by one, more with one asset list


@dataclass(frozen=True)
class Plan:
    """What the session is about to do, as far as the broker can judge it."""

    tickers: Sequence[str]
    mode: str
    run_seconds: float | str | None
    warm_up_period: float
    always_open: bool


def check_broker(probe: BrokerCalls, plan: Plan) -> dict[str, Any]:
    """Run every check; return the account (as numbers) or raise with the reason."""
    account = probe(lambda c: account_dict(c.get_account()))
    check_tickers(probe, plan)
    check_close(probe, plan)
    return account


def check_tickers(probe: BrokerCalls, plan: Plan) -> None:
    """Every ticker is a tradable asset at the broker."""
    if len(plan.tickers) <= PER_TICKER_CHECK:
        unknown = [t for t in plan.tickers if not _tradable(probe, t)]
    else:
        from alpaca.trading.enums import AssetStatus
        from alpaca.trading.requests import GetAssetsRequest

        listed = probe(lambda c: c.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE)))
        known = {a.symbol for a in listed if a.tradable}
        unknown = [t for t in plan.tickers if t not in known]
    if unknown:
        raise ConfigurationError(
            f"tickers {unknown} are not tradable assets at the broker ({plan.mode} mode); check the symbols"
        )


def check_close(probe: BrokerCalls, plan: Plan) -> None:
    """A numeric run_seconds must end before the market closes (an always-open simulator never does)."""
    if not isinstance(plan.run_seconds, int | float) or plan.always_open:
        return
    clock = probe(lambda c: c.get_clock())
    left = clock.next_close.timestamp() - time.time()
    if clock.is_open and plan.warm_up_period + float(plan.run_seconds) > left:
        raise ConfigurationError(
            f"run_seconds={plan.run_seconds:g} runs past the market close at {clock.next_close:%H:%M %Z}"
            f" ({left:.0f} s from now, warm-up included); use run_seconds=\"EOD\" or a shorter run"
        )


def _tradable(probe: BrokerCalls, ticker: str) -> bool:
    """Whether the broker lists ``ticker`` as a tradable asset (a 404 means it does not know it)."""
    try:
        return bool(probe(lambda c: c.get_asset(ticker)).tradable)
    except BrokerError as err:
        if err.status in (404, 422):
            return False
        raise


def account_dict(account: Any) -> dict[str, Any]:
    """alpaca-py's Account as a plain dict, its numbers (sent as strings) as floats."""
    out: dict[str, Any] = {}
    for key, value in account.model_dump(mode="json").items():
        try:
            out[key] = float(value) if isinstance(value, str) and key != "account_number" else value
        except ValueError:
            out[key] = value
    return out


def data_plan_warning(tickers: Sequence[str], data_stream: str, simulator_plan: str | None) -> str | None:
    """A warning when the quote stream will refuse the session's tickers: more than a free data plan
    streams (Alpaca answers error 405 "symbol limit exceeded" and no quotes arrive). A simulator's
    plan is known; Alpaca's is not, so an IEX stream (the free plan's) with too many tickers warns."""
    if len(tickers) <= FREE_PLAN_STREAM_SYMBOLS or simulator_plan == "sip":
        return None
    if simulator_plan is not None:
        return (
            f"{len(tickers)} tickers: the simulator's data_plan={simulator_plan!r} streams at most"
            f" {FREE_PLAN_STREAM_SYMBOLS} symbols, like Alpaca's free plan; the quote stream will be refused"
            " (error 405 symbol limit exceeded). Trade 30 tickers or fewer, or start the Simulator with"
            " data_plan='sip'."
        )
    if not data_stream.rstrip("/").endswith("/iex"):
        return None
    return (
        f"{len(tickers)} tickers: Alpaca's free data plan streams {FREE_PLAN_STREAM_SYMBOLS} symbols per"
        " connection and refuses more (error 405 symbol limit exceeded), so no quotes would arrive. Trade"
        " 30 tickers or fewer, or with a paid plan (Algo Trader Plus) pass"
        " urls={'data_stream': 'wss://stream.data.alpaca.markets/v2/sip'}."
    )
