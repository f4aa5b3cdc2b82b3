"""5. Bad input. Hypothesis generates order dicts and whole strategy return values — wrong types,
missing keys, NaN/inf/negative/huge amounts, unknown tickers and actions, side/action mismatches,
nested junk — and feeds them to a running session's `submit` (what the strategy loop does with a
return value, and what `ctx.submit_order` does). Each element is either a valid order, sent once
(checked at the broker), or refused before sending with an error that names its field.

Misbehaving strategies — raising, hanging past their tick, returning garbage (huge lists, values
whose repr raises), calling submit_order from other threads — are reported and the loop goes on.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import FINAL, figure, market, running, session_options, settle, wait_for

from blockpaca_nb import BlockpacaError, OrderValidationError, Session, Simulator
from blockpaca_nb.orders import ACTIONS_BY_SIDE, ORDER_KEYS

TICKERS = ["AAPL", "MSFT", "TSLA"]
SENT: dict[str, Any] = {}  # client order id -> the element it came from
REFUSED: Counter[str] = Counter()  # field named by each refusal
ANSWERED = FINAL | {"new", "partially_filled"}  # limit orders may rest


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(symbols=[*TICKERS, "NVDA"], seed=5, starting_cash=1e12, quotes_per_second=5) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def session(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    path = tmp_path_factory.mktemp("bad_input")
    made = running(Session(**session_options(sim, path, tickers=TICKERS, max_orders_per_minute=20_000)))
    yield made
    made.stop(wait=True)


# ------------------------------------------------------------------ generators

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2.5, 1e-9, 1e300, True, False, Decimal("NaN"), Decimal("sNaN"), Decimal("3")]),
    st.text(max_size=5),
    st.none(),
)
words = st.one_of(
    st.sampled_from(["buy", "sell", "BUY", "Sell", "hold", "", "market", "limit", "stop", "stop_limit", "day",
                     "gtc", "ioc", "xyz", *TICKERS, "aapl", "NVDA", "ZZZZ", *sum(ACTIONS_BY_SIDE.values(), ())]),
    st.text(max_size=8),
    st.none(),
    st.integers(),
)
junk_value = st.recursive(st.one_of(numbers, words), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=4), inner, max_size=3), max_leaves=6)
junk_order = st.dictionaries(
    st.one_of(st.sampled_from([*ORDER_KEYS, "client_order_id", "qty", "symbol"]), st.text(max_size=6)),
    st.one_of(numbers, words, junk_value),
    max_size=8,
)


@st.composite
def valid_order(draw: st.DrawFn) -> dict[str, Any]:
    """Orders that must be accepted (and fill or rest at the broker)."""
    side = draw(st.sampled_from(["buy", "sell"]))
    order: dict[str, Any] = {"ticker": draw(st.sampled_from(TICKERS)), "side": side}
    kind = draw(st.sampled_from(["market", "limit"]))
    order["order_type"] = kind
    order["quantity"] = draw(st.integers(1, 5) | st.floats(0.5, 5.0))
    if kind == "limit":
        order["limit_price"] = draw(st.sampled_from([1.0, 5.0]) if side == "buy" else st.sampled_from([1e6]))
    if draw(st.booleans()):
        order["action"] = draw(st.sampled_from(ACTIONS_BY_SIDE[side]))
    return order


element = st.one_of(valid_order(), junk_order, junk_value)
returned = st.one_of(
    st.none(),
    valid_order(),
    junk_order,
    st.lists(element, max_size=40),
    st.tuples(element, element),
    junk_value,
    st.sets(st.integers(), max_size=3),
)


# ------------------------------------------------------------------ the property


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(value=returned)
def test_each_element_is_sent_once_or_refused_naming_its_field(session: Session, value: Any) -> None:
    session.errors.clear()
    cids = session.submit(value)
    problems = [e for e in session.errors if isinstance(e, OrderValidationError)]
    elements = _elements(value)
    refused_at = {p.index for p in problems}
    if elements is None:  # not None, a dict nor a list: one error about the whole value
        assert not cids and len(problems) == 1 and problems[0].field == "orders", problems
        REFUSED["orders"] += 1
        return
    assert len(cids) + len(problems) == len(elements), (value, cids, problems)
    accepted = [e for i, e in enumerate(elements) if (i if isinstance(value, list | tuple) else None) not in refused_at]
    for cid, raw in zip(cids, accepted, strict=True):
        assert _plausible(raw), f"sent an order that is not valid: {raw!r}"
        SENT[cid] = raw
    for problem in problems:
        raw = elements[problem.index or 0]
        named = problem.field in {"order", *ORDER_KEYS} or (isinstance(raw, Mapping) and problem.field in map(str, raw))
        shown = str(problem).startswith("order") if problem.field == "order" else repr(problem.field) in str(problem)
        assert named and shown, (problem, raw)
        REFUSED[problem.field] += 1


def _elements(value: Any) -> list[Any] | None:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    return None


def _plausible(raw: Any) -> bool:
    """What any accepted element must satisfy (independently of the validator's code)."""
    if not isinstance(raw, Mapping) or not set(raw) <= set(ORDER_KEYS):
        return False
    side = str(raw.get("side", "")).lower()
    action = raw.get("action")
    amounts = [raw.get(k) for k in ("quantity", "notional") if raw.get(k) is not None]
    return (
        raw.get("ticker") in TICKERS
        and side in ACTIONS_BY_SIDE
        and (action in (None, "") or str(action).lower() in ACTIONS_BY_SIDE[side])
        and len(amounts) == 1
        and all(_positive(v) for v in amounts + [raw.get(k) for k in ("limit_price", "stop_price") if k in raw])
    )


def _positive(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (OverflowError, ValueError):
        return False


def test_every_accepted_element_reached_the_broker_once(session: Session, sim: Simulator) -> None:
    """Runs after the property: everything it sent was answered; each is at the broker exactly once,
    as generated, or was refused by the broker with its reason (say, a fractional short sale)."""
    assert SENT, "the property sent nothing"

    def answered() -> bool:
        return all((session.orders.get(c) or {}).get("status") in ANSWERED for c in SENT)

    wait_for(answered, 60, "every order sent to be answered")
    counts: Counter[str] = Counter()
    at_broker = {}
    for order in sim.orders():
        counts[order["client_order_id"]] += 1
        at_broker[order["client_order_id"]] = order
    refused = [c for c in SENT if not counts[c]]
    figure("bad_input", generated_orders_sent=len(SENT), at_broker_once=sum(counts[c] == 1 for c in SENT),
           refused_by_broker=len(refused), refusals_by_field=dict(REFUSED.most_common(6)))
    assert all(counts[c] <= 1 for c in SENT)
    for cid in refused:
        assert session.orders[cid]["status"] == "rejected" and session.orders[cid]["reason"], session.orders[cid]
    for cid, raw in SENT.items():
        if counts[cid]:
            order = at_broker[cid]
            assert order["symbol"] == raw["ticker"] and order["side"] == str(raw["side"]).lower()


# ------------------------------------------------------------------ misbehaving strategies


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparisons either")

    __hash__ = object.__hash__


def garbage_returns() -> list[Any]:
    huge = [{"ticker": "AAPL", "quantity": float("nan"), "side": "buy", "order_type": "market"}] * 20_000
    huge[7] = market("MSFT")
    return [  # the huge one first: the session keeps the last 200 errors
        huge,
        {"ticker": "AAPL", "quantity": math.inf, "side": "buy", "order_type": "market"},
        {"ticker": "AAPL", "quantity": 1, "side": "sell", "order_type": "market", "action": "buy_to_cover"},
        "buy AAPL",
        (x for x in range(3)),
        [[market("AAPL")]],
        [market("TSLA"), {"ticker": "TSLA", "quantity": 1, "side": Unprintable(), "order_type": "market"}],
        Unprintable(),
        [market("AAPL", quantity=2)],
    ]


def test_garbage_returns_are_reported_and_the_loop_goes_on(session: Session) -> None:
    queue = garbage_returns()
    sent_by_garbage: list[str] = []
    ticks: list[float] = []

    def garbage(ctx: Any) -> Any:
        ticks.append(time.time())
        if not queue:
            return None
        value = queue.pop(0)
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            sent_by_garbage.extend(ctx.submit_order(value))  # the last one, through submit_order
            return None
        return value

    session.errors.clear()
    before = set(session.orders)
    session.swap(garbage)
    wait_for(lambda: not queue and len(ticks) >= 12, 60, "the loop to go past the garbage")
    problems = [e for e in session.errors if isinstance(e, OrderValidationError)]
    fields = Counter(p.field for p in problems)
    figure("garbage_returns", ticks=len(ticks), validation_errors=len(problems), fields=dict(fields))
    assert fields["quantity"] >= 2 and fields["action"] >= 1 and fields["orders"] >= 3 and fields["order"] >= 1
    assert fields["side"] >= 1  # the unprintable side: refused by field, the valid order beside it sent
    assert len(sent_by_garbage) == 1 and settle(session, sent_by_garbage, 30) == []
    huge_sent = [c for c, row in session.orders.items() if row.get("ticker") == "MSFT" and c not in before]
    assert len(huge_sent) == 1  # the one valid order of the 20 000
    assert not [e for e in session.errors if getattr(e, "traceback", "")], "garbage must not crash the loop"


def test_raising_and_hanging_strategies_are_reported(session: Session) -> None:
    calls: list[str] = []
    release = threading.Event()

    def raising(ctx: Any) -> Any:
        calls.append("raise")
        raise ValueError("strategy bug")

    def hanging(ctx: Any) -> Any:
        calls.append("hang")
        release.wait(10)
        return market("AAPL")

    session.errors.clear()
    session.swap(raising)
    wait_for(lambda: calls.count("raise") >= 3, 20, "the raising strategy to be called again")
    session.swap(hanging)
    wait_for(lambda: any("still running after" in str(getattr(e, "message", "")) for e in session.errors), 20,
             "the overrun to be reported")
    skipped_before = session.skipped_ticks
    wait_for(lambda: session.skipped_ticks > skipped_before, 20, "ticks to be skipped while the strategy hangs")
    release.set()
    wait_for(lambda: calls.count("hang") >= 2, 20, "the strategy to run again once it returned")
    session.swap(lambda ctx: None)
    errors = [e for e in session.errors if getattr(e, "strategy", None) in ("raising", "hanging")]
    raised = [e for e in errors if e.strategy == "raising"]
    figure("misbehaving_strategies", raised_reports=len(raised), skipped_ticks=session.skipped_ticks - skipped_before)
    assert raised and "ValueError: strategy bug" in raised[0].message and "raising" in raised[0].traceback
    assert session.skipped_ticks > skipped_before
    assert len([e for e in errors if e.strategy == "hanging"]) == 1  # said once per overrun, not per tick


def flatten(sim: Simulator) -> None:
    """No open order and no position at the broker. The fuzzed orders above leave resting sells and
    shorts; on Alpaca paper's rules a market buy against them is a wash trade or a flip, refused."""
    from alpaca.trading.client import TradingClient

    client = TradingClient(sim.api_key, sim.secret_key, url_override=sim.urls["trading"])
    client.cancel_orders()
    wait_for(lambda: not [o for o in sim.orders() if o["status"] not in FINAL], 30, "the cancels confirmed")
    client.close_all_positions()
    wait_for(lambda: not sim.positions(), 30, "flat at the broker")


def test_submit_order_from_other_threads(session: Session, sim: Simulator) -> None:
    sent: list[str] = []
    lock = threading.Lock()
    flatten(sim)

    def worker(n: int) -> None:
        for i in range(25):
            cids = session.context.submit_order(market(TICKERS[(n + i) % 3]))
            with lock:
                sent.extend(cids)

    def spawning(ctx: Any) -> None:
        if not ctx.state.get("spawned"):
            ctx.state["spawned"] = True
            for n in range(4):
                threading.Thread(target=worker, args=(n,), daemon=True).start()

    session.swap(spawning)
    wait_for(lambda: len(sent) == 100, 30, "the threads to submit 100 orders")
    session.swap(lambda ctx: None)
    assert not settle(session, sent, 60)
    counts = Counter(o["client_order_id"] for o in sim.orders())
    figure("other_threads", orders=len(sent), at_broker_once=sum(counts[c] == 1 for c in sent))
    assert len(set(sent)) == 100 and {counts[c] for c in sent} == {1}
    assert all(session.orders[c]["status"] in FINAL for c in sent)


def test_submit_after_stop_is_refused_clearly(tmp_path: Path) -> None:
    with Simulator(symbols=TICKERS, seed=6) as own:  # one market-data connection per account
        made = running(Session(**session_options(own, tmp_path, tickers=TICKERS)))
        context = made.context
        made.stop(wait=True)
    with pytest.raises(BlockpacaError, match="stopped"):
        context.submit_order(market("AAPL"))
