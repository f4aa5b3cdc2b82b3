"""1. Broker faults: 1 000 orders across a session while the broker answers 10 % of requests with a
500, drops 5 % of accepted orders' answers (the order is taken, the client hears nothing), and
throttles with real 429s. Ground truth is the simulator's own order book.

Every order is at the broker exactly once or, if every attempt failed, logged as failed with the
reason and absent from the broker; every order has a terminal row in the trade log; the session's
rate limiter never granted more than the limit in any window.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    FINAL,
    figure,
    filled_rows_per_order,
    market,
    raw_rows,
    running,
    session_options,
    settle,
    terminal_rows,
    wait_for,
)

from blockpaca_nb import ConfigurationError, Session, Simulator
from blockpaca_nb.ratelimit import max_in_any_window

TICKERS = ["AAPL", "MSFT", "TSLA"]
ORDERS, BLOCK = 1000, 100
LIMIT, WINDOW_S = 150, 3.0  # the session's budget: 150 calls per 3 s window
BROKER_LIMIT = 120  # the broker allows less than the session believes, so 429s happen for sure


def test_thousand_orders_under_errors_timeouts_and_429s(tmp_path: Path) -> None:
    with Simulator(
        symbols=TICKERS,
        seed=21,
        starting_cash=1e9,
        error_rate=0.10,
        timeout_after_accept_rate=0.05,
        rate_limit_per_min=BROKER_LIMIT,
        rate_limit_window_s=WINDOW_S,
    ) as sim:
        session = Session(
            **session_options(
                sim, tmp_path, frequency=0.3, max_orders_per_minute=LIMIT, rate_window_s=WINDOW_S, num_workers=2
            )
        )
        sent: list[str] = []

        def blocks(ctx: Any) -> None:
            if len(sent) < ORDERS:
                sent.extend(ctx.submit_order([market(TICKERS[i % 3]) for i in range(BLOCK)]))

        session.strategy(blocks)
        started = time.monotonic()
        try:
            running(session)
            wait_for(lambda: len(sent) >= ORDERS, 60, "the strategy to send its 1 000 orders")
            unsettled = settle(session, sent, timeout=100)
        finally:
            session.stop()
        elapsed = time.monotonic() - started
        assert session.status == "stopped", list(session.errors)
        assert not unsettled, f"{len(unsettled)} orders never reached a final state, e.g. {unsettled[:3]}"
        at_broker = Counter(o["client_order_id"] for o in sim.orders())
        check_every_order(sent, at_broker, raw_rows(session.trade_log_file), elapsed)
        check_rate_limit(session)


def check_every_order(sent: list[str], at_broker: Counter[str], rows: list[dict[str, str]], elapsed: float) -> None:
    assert len(sent) == ORDERS and len(set(sent)) == ORDERS
    ends = terminal_rows(rows)
    failed = {c for c, r in ends.items() if any(x["status"] == "failed" for x in r)}
    doubled = [c for c in sent if at_broker[c] > 1]
    lost = [c for c in sent if at_broker[c] == 0 and c not in failed]
    strays = set(at_broker) - set(sent)
    figure(
        "broker_faults",
        orders_sent=len(sent),
        accepted_once=sum(at_broker[c] == 1 for c in sent),
        failed_after_retries=len(failed),
        lost=len(lost),
        duplicated=len(doubled),
        seconds=round(elapsed, 1),
    )
    assert not doubled, f"sent twice: {doubled[:5]}"
    assert not lost, f"neither at the broker nor logged as failed: {lost[:5]}"
    assert not strays, f"orders at the broker that the session never sent: {sorted(strays)[:5]}"
    for cid in failed:  # given up: said so, with the reason, and truly not at the broker
        assert at_broker[cid] == 0
        assert all("not at the broker" in r["reason"] for r in ends[cid] if r["status"] == "failed"), ends[cid]
    missing_end = [c for c in sent if c not in ends]
    assert not missing_end, f"no terminal row in the trade log: {missing_end[:5]}"
    assert all(r["reason"] for c in sent for r in ends[c] if r["status"] in ("rejected", "failed"))
    filled = filled_rows_per_order(rows)
    assert {filled[c] for c in sent if at_broker[c]} == {1}, "every filled order has exactly one filled row"


def check_rate_limit(session: Session) -> None:
    limiter = session._limiter
    assert limiter is not None
    grants = limiter.grants()
    busiest = max_in_any_window(grants, WINDOW_S)
    throttled = float(limiter._paused[0]) > 0  # a 429's reset time was set: the broker did throttle
    figure("broker_faults", rest_calls=len(grants), most_calls_in_a_window=busiest, limit=LIMIT, saw_429=throttled)
    assert busiest <= LIMIT
    assert throttled, "no 429 happened: the test did not exercise the broker's rate limit"
    assert len(grants) > ORDERS  # retries and look-ups took their slots too


def test_the_simulator_rate_window_knob() -> None:
    """The simulator's `rate_limit_window_s` (default 60 s like Alpaca) shortens its budget window."""
    with pytest.raises(ConfigurationError, match="rate_limit_window_s"):
        Simulator(rate_limit_window_s=0)
    with Simulator(symbols=["AAPL"], rate_limit_per_min=3, rate_limit_window_s=1.0) as sim:
        statuses = [_clock_status(sim) for _ in range(4)]
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
        time.sleep(1.1)
        assert _clock_status(sim) == 200


def _clock_status(sim: Simulator) -> int:
    request = urllib.request.Request(
        sim.urls["trading"] + "/v2/clock",
        headers={"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


assert FINAL  # the helpers' notion of a final status is the session's
