"""Each fault knob, observed doing what it says, at start-up and changed at run time by set_faults."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from sim_helpers import MarketData, TradeUpdates, raw_session, trading_client, wait_for

from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.sim import Simulator

Factory = Callable[..., Simulator]
FROZEN = {"quotes_per_second": 0.001}


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_latency(make_sim: Factory) -> None:
    s = make_sim(latency_ms=250, **FROZEN)
    client = trading_client(s)
    assert min(timed(client.get_clock) for _ in range(3)) >= 0.25
    assert timed(lambda: raw_session(s).get(s.urls["data"] + "/v2/stocks/quotes/latest?symbols=AAPL")) >= 0.25
    s.set_faults(latency_ms=0)
    assert min(timed(client.get_clock) for _ in range(3)) < 0.2
    s.set_faults(latency_ms=120)
    assert timed(client.get_account) >= 0.12


def error_statuses(s: Simulator, n: int) -> list[int]:
    session = raw_session(s)
    return [session.get(s.urls["trading"] + "/v2/clock").status_code for _ in range(n)]


def test_error_rate(make_sim: Factory) -> None:
    s = make_sim(seed=3, error_rate=0.25, **FROZEN)
    statuses = error_statuses(s, 200)
    assert set(statuses) == {200, 500}
    share = statuses.count(500) / len(statuses)
    assert 0.15 <= share <= 0.35, share
    # seeded: a second simulator with the same seed fails the same requests
    twin = make_sim(seed=3, error_rate=0.25, **FROZEN)
    assert error_statuses(twin, 200) == statuses

    # alpaca-py raises the 500 as an APIError with a JSON body (it does not retry 500s)
    client = trading_client(s)
    errors = []
    for _ in range(60):
        try:
            client.get_clock()
        except APIError as err:
            errors.append(err)
    assert errors
    assert {e.status_code for e in errors} == {500}
    assert all(isinstance(e.code, int) and e.message for e in errors)

    s.set_faults(error_rate=0.0)
    assert set(error_statuses(s, 50)) == {200}
    s.set_faults(error_rate=1.0)
    assert set(error_statuses(s, 20)) == {500}
    # the simulator's own ground truth is never faulted
    assert s.orders() == []


def test_timeout_after_accept(make_sim: Factory) -> None:
    s = make_sim(timeout_after_accept_rate=1.0, **FROZEN)
    client = trading_client(s)
    order = MarketOrderRequest(
        symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id="lost-answer"
    )
    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit_order(order)
    held = s.orders()
    assert [o["client_order_id"] for o in held] == ["lost-answer"]
    assert held[0]["status"] == "filled"
    # a retry with the same client_order_id is refused: no duplicate order
    with pytest.raises((requests.exceptions.ConnectionError, APIError)):
        client.submit_order(order)
    assert len(s.orders()) == 1
    # only order submission is affected
    assert client.get_order_by_client_id("lost-answer").status == "filled"
    s.set_faults(timeout_after_accept_rate=0.0)
    with pytest.raises(APIError) as err:
        client.submit_order(order)
    assert err.value.status_code == 422 and err.value.message == "client_order_id must be unique"
    assert client.submit_order(order.model_copy(update={"client_order_id": "fine"})).client_order_id == "fine"


def rate_headers(response: requests.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


def test_rate_limit(make_sim: Factory) -> None:
    s = make_sim(rate_limit_per_min=5, **FROZEN)
    session = raw_session(s)
    base = s.urls["trading"]
    answers = [
        session.get(base + "/v2/clock"),
        session.get(base + "/v2/account"),
        session.get(base + "/v2/orders/not-a-uuid"),  # an error answer still counts and carries headers
        session.get(base + "/v2/assets/NOSUCH"),
        session.post(base + "/v2/orders", json={}),
    ]
    assert [r.status_code for r in answers] == [200, 200, 422, 404, 422]
    now = time.time()
    for used, response in enumerate(answers, start=1):
        limit, remaining, reset = rate_headers(response)
        assert limit == 5 and remaining == 5 - used
        assert now - 1 <= reset <= math.ceil(now) + 61
    refused = session.get(base + "/v2/clock")
    assert refused.status_code == 429
    assert refused.json()["code"] and refused.json()["message"]
    assert rate_headers(refused)[:2] == (5, 0)
    assert session.get(base + "/v2/account").status_code == 429

    # market data has its own budget
    data = session.get(s.urls["data"] + "/v2/stocks/quotes/latest", params={"symbols": "AAPL"})
    assert data.status_code == 200 and rate_headers(data)[:2] == (5, 4)

    # raising the limit at run time lets requests through again; removing it drops the headers
    s.set_faults(rate_limit_per_min=100)
    again = session.get(base + "/v2/clock")
    assert again.status_code == 200 and rate_headers(again)[0] == 100
    s.set_faults(rate_limit_per_min=None)
    free = session.get(base + "/v2/clock")
    assert free.status_code == 200 and "X-RateLimit-Limit" not in free.headers


def test_no_rate_limit_headers_by_default(sim: Simulator) -> None:
    response = raw_session(sim).get(sim.urls["trading"] + "/v2/clock")
    assert response.status_code == 200 and "X-RateLimit-Remaining" not in response.headers


def test_websocket_drops_and_alpaca_py_reconnects(
    make_sim: Factory,
    trade_updates: Callable[[Simulator], TradeUpdates],
    market_data: Callable[..., MarketData],
) -> None:
    s = make_sim(quotes_per_second=20, ws_drop_every_s=1.0)
    orders = trade_updates(s)
    quotes = market_data(s, quotes=("AAPL",))
    # both sockets get dropped, and alpaca-py connects, authenticates and subscribes again
    wait_for(lambda: quotes.stream.subscriptions >= 2, 10, what="a data-stream reconnect")
    orders.wait_listening(2, timeout=10)
    s.set_faults(ws_drop_every_s=None)

    # quotes resume after the reconnect
    count = len(quotes.quotes)
    wait_for(lambda: len(quotes.quotes) > count + 10, 10, what="quotes after the reconnect")
    # trade updates resume too (an update sent while a socket is down is lost, as on Alpaca)
    client = trading_client(s)

    def an_order_reaches_the_stream() -> bool:
        order = client.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if "fill" in orders.events(order.id):
                return True
            time.sleep(0.02)
        return False

    wait_for(an_order_reaches_the_stream, 15, what="a trade update after the reconnect")

    # and switching the fault on again at run time drops them again
    subscriptions = quotes.stream.subscriptions
    s.set_faults(ws_drop_every_s=0.5)
    wait_for(lambda: quotes.stream.subscriptions > subscriptions, 10, what="another reconnect")
    s.set_faults(ws_drop_every_s=None)


@pytest.mark.parametrize(
    ("faults", "named"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"timeout_after_accept_rate": "often"}, "timeout_after_accept_rate"),
        ({"rate_limit_per_min": 0}, "rate_limit_per_min"),
        ({"ws_drop_every_s": 0}, "ws_drop_every_s"),
        ({"chaos": 1}, "chaos"),
    ],
)
def test_set_faults_validates(sim: Simulator, faults: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        sim.set_faults(**faults)
    assert raw_session(sim).get(sim.urls["trading"] + "/v2/clock").status_code == 200  # nothing changed
