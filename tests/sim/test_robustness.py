"""Garbage in, Alpaca-style JSON errors out: never a 5xx, never a hang, and the server keeps serving."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import requests
from alpaca.trading.models import Order
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import raw_session, trading_client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from blockpaca_nb.sim import Simulator

TIMEOUT = 5  # seconds: an answer later than this counts as a hang
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

ORDER_FIELDS = [
    "symbol", "qty", "notional", "side", "type", "order_type", "time_in_force", "limit_price", "stop_price",
    "trail_price", "trail_percent", "extended_hours", "client_order_id", "order_class", "take_profit",
    "stop_loss", "position_intent", "legs",
]  # fmt: skip
GOOD_VALUES = {
    "symbol": ["AAPL", "msft", "NOSUCH", ""],
    "side": ["buy", "sell", "BUY"],
    "type": ["market", "limit", "stop", "stop_limit", "trailing_stop", "iceberg"],
    "time_in_force": ["day", "gtc", "opg", "cls", "ioc", "fok", "DAY"],
    "order_class": ["simple", "bracket", "oco", "oto", "mleg", ""],
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["1", "0", "-1", "1e400", "NaN", "0.000000001", "99999999999", "1.5", "abc"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def order_bodies(draw: st.DrawFn) -> Any:
    """Mostly order-shaped dicts with plausible and hostile values; sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    keys = draw(st.lists(st.sampled_from(ORDER_FIELDS) | st.text(max_size=10), max_size=10, unique=True))
    body = {}
    for key in keys:
        choices = GOOD_VALUES.get(key)
        if choices and draw(st.booleans()):
            body[key] = draw(st.sampled_from(choices))
        else:
            body[key] = draw(json_values)
    return body


garbage_text = st.text(max_size=40) | st.sampled_from(
    ["", "True", "False", "true", "0", "-5", "1e999", "NaN", "2024-13-01", "2024-01-01T25:00:00Z",
     "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9999-12-31", "0001-01-01",
     "AAPL,,MSFT", "*", "%00", "1Min", "99Hour", "1Week", "desc", "all", "a" * 500]
)  # fmt: skip


@pytest.fixture(scope="module")
def rsim() -> Iterator[Simulator]:
    with Simulator(seed=13, quotes_per_second=5, starting_cash=1_000_000) as s:
        yield s


@pytest.fixture(scope="module")
def http(rsim: Simulator) -> requests.Session:
    return raw_session(rsim)


def assert_alpaca_answer(response: requests.Response) -> None:
    """Below 500; an error is a JSON object with an integer code and a message."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("code"), int) and isinstance(body.get("message"), str), body


def assert_still_serving(sim: Simulator) -> None:
    client = trading_client(sim)
    assert client.get_clock().timestamp is not None
    assert client.get_account().status.value == "ACTIVE"


@FUZZ
@given(body=order_bodies())
def test_fuzzed_order_bodies(rsim: Simulator, http: requests.Session, body: Any) -> None:
    response = http.post(
        rsim.urls["trading"] + "/v2/orders",
        data=json.dumps(body),
        timeout=TIMEOUT,
        headers={"Content-Type": "application/json"},
    )
    assert_alpaca_answer(response)
    if response.status_code == 200:
        Order(**response.json())  # whatever it accepted is a valid alpaca-py Order


@FUZZ
@given(order_id=st.sampled_from(["open", "filled"]), body=order_bodies())
def test_fuzzed_replace_bodies(rsim: Simulator, http: requests.Session, order_id: str, body: Any) -> None:
    base = rsim.urls["trading"] + "/v2/orders"
    if order_id == "open":
        placed = http.post(
            base,
            json={"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "time_in_force": "gtc", "limit_price": 1},
            timeout=TIMEOUT,
        )
        target = placed.json()["id"]
    else:
        target = str(uuid.uuid4())
    response = http.patch(f"{base}/{target}", data=json.dumps(body), timeout=TIMEOUT)
    assert_alpaca_answer(response)


PATHS = [
    ("GET", "/v2/orders"),
    ("GET", "/v2/orders:by_client_order_id"),
    ("GET", "/v2/calendar"),
    ("GET", "/v2/assets"),
    ("GET", "/v2/account/portfolio/history"),
    ("GET", "/v2/stocks/bars"),
    ("GET", "/v2/stocks/quotes/latest"),
    ("GET", "/v2/stocks/trades/latest"),
    ("GET", "/v2/stocks/bars/latest"),
    ("GET", "/v2/stocks/snapshots"),
    ("DELETE", "/v2/positions"),
    ("DELETE", "/v2/positions/AAPL"),
    ("DELETE", "/v2/orders"),
]
PARAMS = [
    "status", "limit", "after", "until", "direction", "side", "symbols", "nested", "start", "end",
    "timeframe", "page_token", "sort", "feed", "client_order_id", "cancel_orders", "qty", "percentage",
    "period", "extended_hours", "date_end",
]  # fmt: skip


@FUZZ
@given(
    where=st.sampled_from(PATHS),
    params=st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=8), garbage_text, max_size=6),
)
def test_fuzzed_query_strings(rsim: Simulator, http: requests.Session, where: tuple[str, str], params: Any) -> None:
    method, path = where
    if path.startswith("/v2/stocks") and "symbols" not in params:
        params = {**params, "symbols": "AAPL"}
    response = http.request(method, rsim.urls["trading"] + path, params=params, timeout=TIMEOUT)
    assert_alpaca_answer(response)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    path=st.sampled_from(["/v2/orders/", "/v2/assets/", "/v2/positions/", "/v2/", "/", "/v2/stocks/"]),
    tail=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30),
)
def test_fuzzed_paths(rsim: Simulator, http: requests.Session, method: str, path: str, tail: str) -> None:
    url = rsim.urls["trading"] + path + requests.utils.quote(tail, safe="")
    response = http.request(method, url, timeout=TIMEOUT)
    assert_alpaca_answer(response)


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"not json at all", "application/json"),
        (b'{"symbol": "AAPL",', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"symbol=AAPL&qty=1", "application/x-www-form-urlencoded"),
        (b"<order><symbol>AAPL</symbol></order>", "application/xml"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b'"a string"', "application/json"),
        (b"1e999", "application/json"),
        (b'{"qty": NaN}', "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b'{"a": "' + b"x" * 2_000_000 + b'"}', "application/json"),  # beyond the 1 MiB body limit
    ],
)
def test_non_json_bodies(rsim: Simulator, http: requests.Session, payload: bytes, content_type: str) -> None:
    for method, path in [("POST", "/v2/orders"), ("PATCH", f"/v2/orders/{uuid.uuid4()}")]:
        response = http.request(
            method, rsim.urls["trading"] + path, data=payload, headers={"Content-Type": content_type}, timeout=TIMEOUT
        )
        assert_alpaca_answer(response)
        assert 400 <= response.status_code < 500


def _packed(value: Any) -> bytes:
    try:
        return msgpack.packb(value)
    except (OverflowError, ValueError, TypeError):
        return b"\xc1"  # never valid msgpack


protocol_like = st.fixed_dictionaries(
    {"action": st.sampled_from(["auth", "authenticate", "listen", "subscribe", "unsubscribe", "dance"])},
    optional={
        "data": json_values,
        "key": json_values,
        "secret": json_values,
        "quotes": json_values | st.lists(st.sampled_from(["AAPL", "*", "nosuch"]), max_size=3),
        "trades": json_values,
        "bars": json_values,
        "news": json_values,
    },
)
frame_values = json_values | protocol_like
# protocol-shaped frames are listed twice: hypothesis picks alternatives evenly
frames = st.lists(
    st.one_of(
        protocol_like.map(json.dumps),
        protocol_like.map(json.dumps),
        protocol_like.map(_packed),
        frame_values.map(json.dumps),
        st.binary(max_size=64),
        st.text(max_size=64),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(frames=frames, msgpack_mode=st.booleans(), authenticate=st.booleans())
def test_fuzzed_data_stream_frames(rsim: Simulator, frames: list[Any], msgpack_mode: bool, authenticate: bool) -> None:
    """Garbage frames get error messages (or, after a failed auth, a clean close); never a crash or hang."""
    url = rsim.urls["data_stream"].replace("/v2/iex", "/v2/test")
    headers = {"Content-Type": "application/msgpack"} if msgpack_mode else None

    def recv(conn: Any) -> Any:
        """The next control message (market data a fuzzed subscribe asked for is skipped)."""
        while True:
            frame = conn.recv(timeout=TIMEOUT)
            messages = msgpack.unpackb(frame) if msgpack_mode else json.loads(frame)
            if messages[0]["T"] not in ("q", "t", "b"):
                return messages

    with connect(url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=1) as conn:
        assert recv(conn)[0]["msg"] == "connected"
        if authenticate:
            auth = {"action": "auth", "key": rsim.api_key, "secret": rsim.secret_key}
            conn.send(_packed(auth) if msgpack_mode else json.dumps(auth))
            assert recv(conn)[0]["msg"] == "authenticated"
        for frame in frames:
            try:  # a failed auth (402) is answered, then the server hangs up, as Alpaca does
                conn.send(frame)
                reply = recv(conn)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1000  # a clean close
                break
            assert isinstance(reply, list) and reply[0]["T"] in ("error", "subscription", "success")


@FUZZ
@given(frames=frames, authenticate=st.booleans())
def test_fuzzed_trade_stream_frames(rsim: Simulator, frames: list[Any], authenticate: bool) -> None:
    """Every frame, however broken, gets exactly one JSON answer and the connection stays open."""
    with connect(rsim.urls["trading_stream"], open_timeout=TIMEOUT, close_timeout=1) as conn:
        if authenticate:
            conn.send(
                json.dumps({"action": "authenticate", "data": {"key_id": rsim.api_key, "secret_key": rsim.secret_key}})
            )
            assert json.loads(conn.recv(timeout=TIMEOUT))["data"]["status"] == "authorized"
        for frame in frames:
            conn.send(frame)
            reply = json.loads(conn.recv(timeout=TIMEOUT))
            if reply.get("stream") == "trade_updates":  # a listen succeeded and an order event came first
                continue
            assert isinstance(reply, dict) and "stream" in reply and "data" in reply


def test_server_still_serves_after_the_barrage(rsim: Simulator, http: requests.Session) -> None:
    assert_still_serving(rsim)
    latest = http.get(rsim.urls["data"] + "/v2/stocks/quotes/latest", params={"symbols": "AAPL"}, timeout=TIMEOUT)
    assert latest.status_code == 200 and latest.json()["quotes"]["AAPL"]["ap"] > 0
    for order in rsim.orders():
        Order(**order)
