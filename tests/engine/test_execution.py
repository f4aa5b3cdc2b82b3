"""The execution pool against the embedded simulator, over loopback, with real worker processes.

Invariant 1 (no order sent twice, none lost) is checked against the simulator's ground truth
(`Simulator.orders()`, which bypasses faults) under error injection, timeouts after acceptance,
429s and a worker killed with SIGKILL in the middle of a block.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil
import pytest
from waiting import wait_for

from blockpaca_nb import worker
from blockpaca_nb.broker import Connection, Credentials, Endpoints
from blockpaca_nb.errors import BlockpacaError, ConfigurationError
from blockpaca_nb.events import LOGGED_ORDER_FIELDS
from blockpaca_nb.events import accepted as accepted_result
from blockpaca_nb.execution import ExecutionPool
from blockpaca_nb.orders import ACTION_RESULTS, Order, new_client_order_id
from blockpaca_nb.ratelimit import SPAWN, RateLimiter
from blockpaca_nb.recorder import legs_of, submission_row
from blockpaca_nb.sim import Simulator
from blockpaca_nb.worker import NOT_SENT, Ticket

TICKERS = ["AAPL", "MSFT", "TSLA"]
TERMINAL = ("accepted", "rejected", "failed")
CLIENT_ORDER_ID = re.compile(rf"^({'|'.join(ACTION_RESULTS)})-\d+-[0-9a-f]{{8}}$")
THROTTLE_PER_MIN = 20
THROTTLE_WINDOW_S = 12.0  # Alpaca's is a minute; a shorter one keeps the test short
BIG_LIMIT = 10_000  # tests that are not about the rate limit must not wait for it


# ------------------------------------------------------------------ helpers


def connect(sim: Simulator) -> Connection:
    return Connection("sim", Endpoints.from_mapping(sim.urls), Credentials(sim.api_key, sim.secret_key))


def block(count: int) -> list[Order]:
    """A mixed block: market by quantity, market by notional, limit orders that rest."""
    makers: list[Callable[[int], Order]] = [
        lambda i: Order(TICKERS[i % 3], "buy", "market", "buy_long", quantity=1),
        lambda i: Order(TICKERS[i % 3], "buy", "market", "buy_to_cover", notional=50.0),
        lambda i: Order(TICKERS[i % 3], "buy", "limit", "buy_long", quantity=2, limit_price=1.0),
    ]
    return [makers[i % len(makers)](i) for i in range(count)]


class Collector:
    """Drains a pool's results queue into per-ticket event lists."""

    def __init__(self, results: queue.Queue[dict[str, Any]]) -> None:
        self.results = results
        self.events: dict[int, list[dict[str, Any]]] = defaultdict(list)

    def pump(self, wait: float = 0.02) -> None:
        try:
            event = self.results.get(timeout=wait)
            while True:
                self.events[event["seq"]].append(event)
                event = self.results.get_nowait()
        except queue.Empty:
            pass

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Wait for ``predicate``, draining results between checks (the drain itself is the pause)."""
        wait_for(lambda: predicate() or self.pump(), timeout, what, every=0)

    def finals(self, ticket: Ticket) -> list[dict[str, Any]]:
        return [e for e in self.events[ticket.seq] if e["kind"] in TERMINAL]

    def final(self, ticket: Ticket) -> dict[str, Any]:
        (event,) = self.finals(ticket)
        return event

    def wait_all(self, tickets: Iterable[Ticket], timeout: float) -> None:
        tickets = list(tickets)
        self.wait_for(lambda: all(self.finals(t) for t in tickets), timeout, "every ticket's final result")
        self.pump(0.2)  # anything extra would arrive now

    def all_events(self) -> Iterator[dict[str, Any]]:
        for events in self.events.values():
            yield from events


def counts_at_broker(sim: Simulator, tickets: Iterable[Ticket]) -> dict[str, int]:
    held = Counter(order["client_order_id"] for order in sim.orders())
    return {ticket.client_order_id: held[ticket.client_order_id] for ticket in tickets}


def assert_one_final_result_each(collector: Collector, tickets: list[Ticket]) -> None:
    for ticket in tickets:
        events = collector.events[ticket.seq]
        assert len(collector.finals(ticket)) == 1, events
        kinds = [e["kind"] for e in events]
        assert kinds.count("submitting") <= 1, kinds
        if "submitting" in kinds:
            assert kinds[0] == "submitting", kinds


def assert_accepted_exactly_once(sim: Simulator, collector: Collector, tickets: list[Ticket]) -> None:
    assert_one_final_result_each(collector, tickets)
    finals = Counter(collector.final(t)["kind"] for t in tickets)
    assert finals == {"accepted": len(tickets)}, [
        collector.final(t) for t in tickets if collector.final(t)["kind"] != "accepted"
    ]
    assert set(counts_at_broker(sim, tickets).values()) == {1}
    for ticket in tickets:
        assert collector.final(ticket)["order"]["client_order_id"] == ticket.client_order_id


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _own_a_pool(urls: dict[str, str], key: str, secret: str, out: Any) -> None:
    """Child process: start a pool, report its workers' pids, then wait to be killed."""
    connection = Connection("sim", Endpoints.from_mapping(urls), Credentials(key, secret))
    pool = ExecutionPool(connection, RateLimiter(BIG_LIMIT), queue.Queue()).start()
    out.put([worker["pid"] for worker in pool.health()])
    time.sleep(120)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def throttled_sim() -> Iterator[Simulator]:
    """A simulator whose limit is THROTTLE_PER_MIN calls in a sliding window of THROTTLE_WINDOW_S."""
    sim = Simulator(
        symbols=TICKERS,
        seed=5,
        starting_cash=1e9,
        rate_limit_per_min=THROTTLE_PER_MIN,
        rate_limit_window_s=THROTTLE_WINDOW_S,
    ).start()
    yield sim
    sim.stop()


def post_order(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    """POST an order as a worker does; the broker's order JSON."""
    request = urllib.request.Request(
        f"{sim.urls['trading']}/v2/orders",
        data=json.dumps(body).encode(),
        headers={"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def another_client_calls(sim: Simulator, count: int) -> None:
    """Another client on the same account makes ``count`` REST calls (they count against its limit)."""
    for _ in range(count):
        request = urllib.request.Request(
            f"{sim.urls['trading']}/v2/clock",
            headers={"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": sim.secret_key},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            json.loads(response.read())


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(symbols=TICKERS, seed=3, starting_cash=1e9) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def shared_pool(sim: Simulator) -> Iterator[tuple[ExecutionPool, Collector]]:
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    pool = ExecutionPool(connect(sim), RateLimiter(BIG_LIMIT), results, num_workers=2).start()
    yield pool, Collector(results)
    pool.stop()


# ------------------------------------------------------------------ the happy path


def test_a_block_of_200_orders_is_accepted_exactly_once(sim: Simulator, shared_pool: Any) -> None:
    pool, collector = shared_pool
    started = time.monotonic()
    tickets = pool.submit(block(200))
    assert time.monotonic() - started < 0.2  # submit never waits for the network
    collector.wait_all(tickets, 30)
    assert_accepted_exactly_once(sim, collector, tickets)
    assert [t.seq for t in tickets] == sorted(t.seq for t in tickets)
    assert len({t.client_order_id for t in tickets}) == 200
    by_client_id = {order["client_order_id"]: order for order in sim.orders()}
    for ticket in tickets:
        assert CLIENT_ORDER_ID.match(ticket.client_order_id), ticket.client_order_id
        assert ticket.client_order_id.split("-")[1] == str(ticket.worker)
        submitting, accepted = collector.events[ticket.seq]
        assert submitting["kind"] == "submitting" and accepted["attempts"] == 1
        for event in (submitting, accepted):
            assert event["client_order_id"] == ticket.client_order_id
            assert event["ticker"] == ticket.order.ticker and event["action"] == ticket.order.action
            assert event["worker"] == ticket.worker and event["time"] > 0
        at_broker = by_client_id[ticket.client_order_id]
        assert accepted["latency_ms"] >= 0 and accepted["order"]["id"] == at_broker["id"]
        assert set(accepted["order"]) <= set(LOGGED_ORDER_FIELDS)  # what the log uses, not the whole JSON
    assert Counter(t.worker for t in tickets) == {0: 100, 1: 100}  # least-loaded dispatch
    assert sum(worker["sent"] for worker in pool.health()) >= 200
    assert all(worker["in_flight"] == 0 for worker in pool.health())


def test_rejections_carry_the_brokers_status_code_and_message(sim: Simulator, shared_pool: Any) -> None:
    pool, collector = shared_pool
    too_big, unknown = pool.submit(
        [
            Order("AAPL", "buy", "market", "buy_long", quantity=1e9),
            Order("ZZZZ", "buy", "market", "buy_long", quantity=1),
        ]
    )
    collector.wait_all([too_big, unknown], 20)
    assert_one_final_result_each(collector, [too_big, unknown])
    poor = collector.final(too_big)
    assert (poor["kind"], poor["status"], poor["code"]) == ("rejected", 403, 40310000)
    assert poor["reason"] == "insufficient buying power" and poor["attempts"] == 1
    missing = collector.final(unknown)
    assert (missing["kind"], missing["status"], missing["code"]) == ("rejected", 422, 40010001)
    assert missing["reason"] == 'asset "ZZZZ" not found'
    assert set(counts_at_broker(sim, [too_big, unknown]).values()) == {0}


def test_secrets_stay_out_of_results_reprs_and_health(sim: Simulator, shared_pool: Any) -> None:
    pool, collector = shared_pool
    (ticket,) = pool.submit([Order("MSFT", "buy", "market", "buy_long", quantity=1)])
    collector.wait_all([ticket], 20)
    texts = [repr(event) for event in collector.all_events()]
    texts += [repr(pool), repr(pool._limiter), repr(pool.health()), repr(ticket), repr(connect(sim))]
    assert all(sim.secret_key not in text for text in texts)
    assert all(sim.secret_key[:8] not in text for text in texts)


# ------------------------------------------------------------------ faults


def test_faults_never_double_or_lose_an_order() -> None:
    with Simulator(symbols=TICKERS, seed=11, starting_cash=1e9, error_rate=0.2, timeout_after_accept_rate=0.3) as sim:
        results: queue.Queue[dict[str, Any]] = queue.Queue()
        collector = Collector(results)
        # 8 retries: the chance that all 9 attempts of one order hit a 500 is 0.2^9
        with ExecutionPool(connect(sim), RateLimiter(BIG_LIMIT), results, max_retries=8) as pool:
            tickets = pool.submit(block(200))
            collector.wait_all(tickets, 45)
        assert_accepted_exactly_once(sim, collector, tickets)
        finals = [collector.final(t) for t in tickets]
        assert any(f["attempts"] > 1 for f in finals)  # 500s were retried ...
        assert any(f["looked_up"] for f in finals)  # ... and answers lost after acceptance recovered
        assert all(sim.secret_key not in repr(f) for f in finals)


def test_a_refusal_after_an_attempt_whose_answer_was_lost_is_looked_up_before_it_is_reported() -> None:
    """A sell of every share held: the first attempt is accepted but its answer is lost; the retry
    (same client order id) is refused 403 "insufficient qty" for the shares that first copy holds.
    The worker looks the order up and reports it accepted, once — not rejected while it rests."""
    with Simulator(symbols=TICKERS, seed=11, starting_cash=1e6) as sim:
        results: queue.Queue[dict[str, Any]] = queue.Queue()
        collector = Collector(results)
        with ExecutionPool(connect(sim), RateLimiter(BIG_LIMIT), results, num_workers=1) as pool:
            bought = pool.submit([Order("AAPL", "buy", "market", "buy_long", quantity=5)])
            collector.wait_all(bought, 20)
            wait_for(lambda: [(p["symbol"], p["qty"]) for p in sim.positions()] == [("AAPL", "5")], 10, "5 AAPL")
            sim.set_faults(timeout_after_accept_rate=1.0)
            sell = pool.submit([Order("AAPL", "sell", "limit", "sell_long", quantity=5, limit_price=99_999.0)])
            collector.wait_all(sell, 30)
        final = collector.final(sell[0])
        print("EVENTS", [(e["kind"], e["time"], e.get("worker")) for e in collector.events[sell[0].seq]])
        assert (final["kind"], final["looked_up"]) == ("accepted", True), final
        assert final["attempts"] >= 2
        at_broker = [o for o in sim.orders() if o["client_order_id"] == sell[0].client_order_id]
        assert [o["status"] for o in at_broker] == ["new"]


def test_a_killed_worker_is_replaced_and_its_orders_neither_lost_nor_doubled() -> None:
    with Simulator(symbols=TICKERS, seed=13, starting_cash=1e9, latency_ms=50) as sim:
        results: queue.Queue[dict[str, Any]] = queue.Queue()
        collector = Collector(results)
        pool = ExecutionPool(connect(sim), RateLimiter(BIG_LIMIT), results, num_workers=2).start()
        try:
            tickets = pool.submit(block(200))
            victim = pool.health()[0]
            collector.wait_for(
                lambda: any(e["kind"] == "submitting" and e["worker"] == 0 for e in collector.all_events()),
                30,
                "worker 0 to send its first order",
            )
            holding = pool.health()[0]["in_flight"]
            dead = pool._slots[0].process
            os.kill(victim["pid"], signal.SIGKILL)
            collector.wait_all(tickets, 45)
            pool._worker_gone(pool._slots[0], dead)  # noticed once more (exit status): no second restart
            health = pool.health()[0]
        finally:
            pool.stop()
        assert holding > 0  # it died with orders in its hands
        assert health["restarts"] == 1 and health["alive"] and health["pid"] != victim["pid"]
        assert_accepted_exactly_once(sim, collector, tickets)
        assert all(process_gone(worker["pid"]) for worker in pool.health())


def test_a_dead_workers_sell_sent_again_and_refused_for_its_own_shares_is_looked_up() -> None:
    """A sell of every share held reaches the broker, but its answer is lost; its worker dies before
    it hears more. The ticket goes to the other worker, whose POST is refused 403 "insufficient
    qty" — the shares are held by that first copy. The ticket was handed on, so the refusal is looked
    up: accepted once, resting at the broker, never reported rejected."""
    with Simulator(symbols=TICKERS, seed=13, starting_cash=1e9, latency_ms=400) as sim:
        results: queue.Queue[dict[str, Any]] = queue.Queue()
        collector = Collector(results)
        pool = ExecutionPool(connect(sim), RateLimiter(BIG_LIMIT), results, num_workers=2).start()
        try:
            bought = pool.submit([Order("AAPL", "buy", "market", "buy_long", quantity=20)])
            collector.wait_all(bought, 30)
            wait_for(lambda: [(p["symbol"], p["qty"]) for p in sim.positions()] == [("AAPL", "20")], 10, "20 AAPL")
            sim.set_faults(timeout_after_accept_rate=1.0)  # the broker takes it; the answer never comes
            (sell,) = pool.submit([Order("AAPL", "sell", "limit", "sell_long", quantity=20, limit_price=99_999.0)])
            wait_for(lambda: counts_at_broker(sim, [sell])[sell.client_order_id], 30, "the sell at the broker")
            os.kill(pool.health()[sell.worker]["pid"], signal.SIGKILL)  # in its retry's 400 ms, before any answer
            collector.wait_all([sell], 45)
        finally:
            pool.stop()
        final = collector.final(sell)
        assert (final["kind"], final["looked_up"]) == ("accepted", True), final
        assert pool.health()[sell.worker]["restarts"] == 1
        at_broker = [o for o in sim.orders() if o["client_order_id"] == sell.client_order_id]
        assert [o["status"] for o in at_broker] == ["new"]


# ------------------------------------------------------------------ stopping


def test_stop_ends_unsent_orders_as_failed_and_leaves_no_process(sim: Simulator) -> None:
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    collector = Collector(results)
    limiter = RateLimiter(5, 60.0, override=True)  # only 5 can go out this minute
    pool = ExecutionPool(connect(sim), limiter, results, num_workers=2).start()
    tickets = pool.submit(block(30))
    collector.wait_for(
        lambda: sum(e["kind"] == "accepted" for e in collector.all_events()) == 5, 30, "the first five accepted"
    )
    pids = [worker["pid"] for worker in pool.health()]
    started = time.monotonic()
    pool.stop(timeout=5)
    assert time.monotonic() - started < 5
    collector.wait_all(tickets, 5)
    assert_one_final_result_each(collector, tickets)
    finals = [collector.final(t) for t in tickets]
    assert Counter(f["kind"] for f in finals) == {"accepted": 5, "failed": 25}
    unsent = [t for t, f in zip(tickets, finals, strict=True) if f["kind"] == "failed"]
    for ticket in unsent:
        assert collector.events[ticket.seq] == [collector.final(ticket)]  # never announced
        assert collector.final(ticket)["reason"] == NOT_SENT and collector.final(ticket)["attempts"] == 0
    assert set(counts_at_broker(sim, unsent).values()) == {0}
    assert all(process_gone(pid) for pid in pids)
    assert not any(worker["alive"] for worker in pool.health())
    pool.stop()  # idempotent
    with pytest.raises(BlockpacaError, match="stopped"):
        pool.submit(block(1))


def test_workers_exit_when_their_parent_dies(sim: Simulator) -> None:
    out = SPAWN.SimpleQueue()
    owner = SPAWN.Process(target=_own_a_pool, args=(sim.urls, sim.api_key, sim.secret_key, out))
    owner.start()
    pids = out.get()
    os.kill(owner.pid, signal.SIGKILL)  # type: ignore[arg-type]
    owner.join(5)
    wait_for(lambda: all(process_gone(pid) for pid in pids), 10, "the orphaned workers to exit")


def test_submit_before_start_and_bad_settings_are_refused(sim: Simulator) -> None:
    pool = ExecutionPool(connect(sim), RateLimiter(), queue.Queue())
    with pytest.raises(BlockpacaError, match="not started"):
        pool.submit(block(1))
    pool.stop()  # stopping a pool that never started is fine
    for bad in ({"num_workers": 0}, {"max_retries": -1}, {"max_in_flight": 0}, {"request_timeout_s": 0}):
        with pytest.raises(ConfigurationError, match="allowed"):
            ExecutionPool(connect(sim), RateLimiter(), queue.Queue(), **bad)


# ------------------------------------------------------------------ 429s (last: needs the minute to pass)


@pytest.mark.slow
def test_429s_pause_everyone_until_the_reset_and_no_order_is_doubled(throttled_sim: Simulator) -> None:
    sim = throttled_sim
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    collector = Collector(results)
    limiter = RateLimiter(THROTTLE_PER_MIN, 60.0)  # the broker's limit; another client used most of it
    with ExecutionPool(connect(sim), limiter, results, num_workers=2) as pool:
        another_client_calls(sim, THROTTLE_PER_MIN - 3)  # the broker's window is nearly full
        tickets = pool.submit(block(10))
        collector.wait_all(tickets, 75)
    assert_accepted_exactly_once(sim, collector, tickets)
    finals = [collector.final(t) for t in tickets]
    throttled = [f for f in finals if f["attempts"] > 1]
    assert throttled  # the broker's window was full: some got a 429 first ...
    assert all(f["attempts"] <= 3 for f in finals)  # ... and waited for the reset instead of hammering
    first_try = min(e["time"] for e in collector.all_events() if e["kind"] == "submitting")
    assert all(f["time"] - first_try > 1.0 for f in throttled)
    assert limiter.limit == THROTTLE_PER_MIN
    assert pool.health()[0]["restarts"] == 0


# ------------------------------------------------------------------ order of slots across workers


def test_orders_waiting_for_an_in_flight_permit_keep_their_place_in_line() -> None:
    """Each worker holds a contiguous run of the block but may have only 2 orders in flight, each
    answered after 0.3 s (longer than the limiter's arrival grace): the other worker's later orders
    must not take the free slots ahead of them — nor may a worker whose batch left first (its sender
    thread ran before the other's) take them ahead of earlier orders still on their way. First tries
    follow submission order; the limit is never exceeded."""
    from rate_windows import max_in_any_window

    results: queue.Queue[dict[str, Any]] = queue.Queue()
    collector = Collector(results)
    limiter = RateLimiter(8, 3.0)
    with Simulator(symbols=TICKERS, seed=5, latency_ms=300, starting_cash=1e9) as sim:
        with ExecutionPool(connect(sim), limiter, results, num_workers=2, max_in_flight=2) as pool:
            tickets = pool.submit(Order("AAPL", "buy", "market", "buy_long", quantity=1) for _ in range(12))
            collector.wait_all(tickets, 60)
        assert_accepted_exactly_once(sim, collector, tickets)
    first_try = [next(e["time"] for e in collector.events[t.seq] if e["kind"] == "submitting") for t in tickets]
    late = [i for i in range(1, len(first_try)) if first_try[i] + 0.05 < max(first_try[:i])]
    assert not late, f"orders {late} got their first try after a later-submitted order: {first_try}"
    assert max_in_any_window(limiter.grants(), 3.0) <= 8


def test_an_accepted_result_keeps_all_the_trade_log_reads_of_the_order(sim: Simulator) -> None:
    """A worker sends the recorder only part of the broker's order JSON: the submission row and the
    exits it names come out as from the whole order (a bracket: the richest one)."""
    entry = Order("AAPL", "buy", "limit", "buy_long", quantity=1, limit_price=1.0,
                  order_class="bracket", take_profit=2.0, stop_loss=0.5)  # fmt: skip
    whole = post_order(sim, entry.to_alpaca(new_client_order_id("buy_long", 0)))
    assert len(whole["legs"]) == 2
    kept = accepted_result(whole, 1, looked_up=False)["order"]
    assert set(kept) < set(whole)
    result = {"kind": "accepted", "client_order_id": whole["client_order_id"], "ticker": "AAPL", "side": "buy",
              "action": "buy_long", "order_type": "limit", "qty": 1.0, "limit_price": 1.0, "time": 1.0}  # fmt: skip
    assert submission_row({**result, "order": kept}) == submission_row({**result, "order": whole})
    assert legs_of(kept) == legs_of(whole) and len(legs_of(whole)) == 2


def test_a_workers_reports_leave_in_few_messages_and_submittings_at_once(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``submitting`` reports leave at the end of the loop iteration that made them (the pool must
    know at once a ticket may be at the broker); final results made within the window leave together
    (the window is stretched to a second here, so a busy machine cannot split them)."""
    monkeypatch.setattr(worker, "RESULTS_WINDOW_S", 1.0)
    sent: list[list[dict[str, Any]]] = []

    async def emit_a_block() -> None:
        second = asyncio.Event()

        class Outbox:
            def send(self, reports: list[dict[str, Any]]) -> None:
                sent.append(reports)
                if len(sent) == 2:
                    second.set()

        submitter = worker._Submitter(0, connect(sim), RateLimiter(100), Outbox(), worker.Settings(1, 10, 5.0))
        for seq in (1, 2):
            submitter._emit({"kind": "submitting", "seq": seq}, soon=True)
        await asyncio.sleep(0)
        assert [[r["kind"] for r in reports] for reports in sent] == [["submitting", "submitting"]]
        for seq in (1, 2):
            submitter._emit({"kind": "accepted", "seq": seq})
            await asyncio.sleep(0)  # the next result comes in a later loop iteration
        assert len(sent) == 1  # held for the window
        await asyncio.wait_for(second.wait(), 10)

    asyncio.run(emit_a_block())
    kinds = [[r["kind"] for r in reports] for reports in sent]
    assert kinds == [["submitting", "submitting"], ["accepted", "accepted"]]
