"""The shared sliding-window rate limiter: never over the limit in any window, across processes;
waiters served in order; pauses after a 429; the broker's limit adopted unless the user fixed one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from multiprocessing.reduction import ForkingPickler
from multiprocessing.synchronize import Barrier

import pytest
from rate_windows import max_in_any_window
from waiting import wait_for

from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.ratelimit import ARRIVAL_GRACE_S, GRANTED, SPAWN, RateLimiter, per_window

HAMMER_S = 2.0  # how long every process takes slots, counted from the moment all of them are up
BOOT_S = 90.0  # spawning takes ~1 s on a quiet machine and much longer on a loaded one


def _hammer(limiter: RateLimiter, start: Barrier, name: str, out: object) -> None:
    """Child process: once every process is up, take slots as fast as the limiter allows for HAMMER_S."""
    start.wait(BOOT_S)
    until = time.monotonic() + HAMMER_S
    taken = 0
    while time.monotonic() < until:
        try:
            limiter.acquire(timeout=max(0.01, until - time.monotonic()))
        except TimeoutError:
            break
        taken += 1
    out.put((name, taken))  # type: ignore[attr-defined]


def _wait_for_a_slot(limiter: RateLimiter) -> None:
    """Child process: join the line and wait (it is killed while waiting)."""
    limiter.acquire()


# ------------------------------------------------------------------ the window


def test_never_more_than_the_limit_in_any_window_across_processes() -> None:
    limit, window = 20, 0.5
    limiter = RateLimiter(limit, window)
    out = SPAWN.SimpleQueue()
    start = SPAWN.Barrier(4)  # three children and the kernel side: the budget starts when all are up
    children = [SPAWN.Process(target=_hammer, args=(limiter, start, f"p{i}", out)) for i in range(3)]
    for child in children:
        child.start()
    try:
        start.wait(BOOT_S)
    except threading.BrokenBarrierError:
        pytest.fail(f"the {len(children)} processes were not all up within {BOOT_S:g} s")
    until = time.monotonic() + HAMMER_S
    with contextlib.suppress(TimeoutError):
        while time.monotonic() < until:  # the kernel side hammers too
            limiter.acquire(timeout=max(0.01, until - time.monotonic()))
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    taken = dict(out.get() for _ in children)
    grants = limiter.grants()
    assert max_in_any_window(grants, window) <= limit
    assert all(count > 0 for count in taken.values()), taken  # every process got slots
    # busy the whole time: close to `limit` per window (the margin makes it a little less)
    busy_windows = (grants[-1] - grants[0]) / window
    assert len(grants) >= limit * busy_windows * 0.9


def test_used_counts_the_calls_in_the_current_window() -> None:
    limiter = RateLimiter(10, 0.3)
    for _ in range(4):
        limiter.acquire()
    assert limiter.used() == 4
    wait_for(lambda: limiter.used() == 0, 2.0, "the window to empty")
    assert len(limiter.grants()) == 4


def test_max_in_any_window_counts_half_open_windows() -> None:
    assert max_in_any_window([], 1.0) == 0
    assert max_in_any_window([0.0, 0.5, 1.0, 1.5], 1.0) == 2
    assert max_in_any_window([0.0, 0.1, 0.2, 5.0], 1.0) == 3


# ------------------------------------------------------------------ order of service


def _take_a_slot(limiter: RateLimiter, served: list[int], label: int, place: int | None = None) -> None:
    limiter.acquire(10, place=place)
    served.append(label)


def _serve_one_by_one(limiter: RateLimiter, waiters: int, served: list[int]) -> None:
    """Open one more slot at a time (the window is a minute long) and wait for it to be taken."""
    for opened in range(1, waiters + 1):
        limiter.set_limit(1 + opened)
        wait_for(lambda n=opened: len(served) == n, 5.0, f"waiter number {opened} to be served")


def test_waiters_are_served_in_arrival_order() -> None:
    limiter = RateLimiter(1, 60.0)
    limiter.acquire()  # the window is full for a minute
    served: list[int] = []
    threads = []
    for number in range(5):
        thread = threading.Thread(target=_take_a_slot, args=(limiter, served, number))
        thread.start()
        threads.append(thread)
        wait_for(lambda n=number: limiter.waiting() == n + 1, 5.0, f"waiter {number} in line")
    _serve_one_by_one(limiter, 5, served)
    for thread in threads:
        thread.join(5)
    assert served == [0, 1, 2, 3, 4]


def test_reserved_places_are_served_in_reservation_order_whatever_the_arrival() -> None:
    limiter = RateLimiter(1, 60.0)
    places = limiter.reserve(4)  # as the execution pool does at submit time
    limiter.acquire()  # a later caller without a reservation fills the window
    served: list[int] = []
    threads = []
    for place in reversed(places):  # they arrive latest place first
        thread = threading.Thread(target=_take_a_slot, args=(limiter, served, place, place))
        thread.start()
        threads.append(thread)
    wait_for(lambda: limiter.waiting() == 4, 5.0, "all four in line")
    _serve_one_by_one(limiter, 4, served)
    for thread in threads:
        thread.join(5)
    assert served == list(places)


def test_an_announced_earlier_place_is_not_overtaken_while_it_is_on_its_way() -> None:
    limiter = RateLimiter(5, 60.0)
    early, late = limiter.reserve(2)
    limiter.expect([early, late])  # both handed to workers; the later one happens to arrive first
    served: list[int] = []
    overtaker = threading.Thread(target=_take_a_slot, args=(limiter, served, late, late))
    overtaker.start()
    wait_for(lambda: limiter.waiting() == 1, 2.0, "the later place in line")
    time.sleep(0.05)  # a free slot, but the earlier place is on its way: the later one waits
    assert served == []
    limiter.acquire(1.0, place=early)
    served.append(early)
    overtaker.join(2)
    assert served[0] == early and set(served) == {early, late}


def test_an_announced_place_that_never_comes_holds_the_line_only_briefly() -> None:
    limiter = RateLimiter(5, 60.0)
    lost, later = limiter.reserve(2)
    limiter.expect([lost])  # its worker dies before it arrives
    waited = limiter.acquire(2.0, place=later)
    assert waited <= ARRIVAL_GRACE_S + 0.1


def _announce(limiter: RateLimiter, place: int) -> None:
    limiter.expect([place], hold_s=600)


def test_a_held_announcement_outlasts_the_grace_until_it_is_forgotten() -> None:
    """A worker whose tickets wait for an in-flight permit holds their places longer than the
    arrival grace (a busy machine may not schedule it for a while); `forget` ends the hold."""
    limiter = RateLimiter(5, 60.0)
    held, later = limiter.reserve(2)
    limiter.expect([held], hold_s=600)
    served: list[int] = []
    overtaker = threading.Thread(target=_take_a_slot, args=(limiter, served, later, later))
    overtaker.start()
    wait_for(lambda: limiter.waiting() == 1, 2.0, "the later place in line")
    time.sleep(ARRIVAL_GRACE_S * 3)  # well past the default grace: the held place still comes first
    assert served == []
    limiter.forget([held])  # its ticket ended unsent
    overtaker.join(10)
    assert served == [later]


def test_the_announcements_of_a_dead_process_are_dropped() -> None:
    limiter = RateLimiter(5, 60.0)
    lost, later = limiter.reserve(2)
    announcer = SPAWN.Process(target=_announce, args=(limiter, lost))
    announcer.start()
    announcer.join(60)
    assert announcer.exitcode == 0
    limiter.acquire(30.0, place=later)  # the 600 s hold went with its process
    assert limiter.waiting() == 0


def test_async_waiters_share_the_limit_without_blocking_the_loop() -> None:
    limiter = RateLimiter(5, 0.3)

    async def main() -> tuple[list[float], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        waited = await asyncio.gather(*(limiter.acquire_async() for _ in range(12)))
        stop.set()
        await ticking
        return waited, ticks

    waited, ticks = asyncio.run(main())
    grants = sorted(limiter.grants())
    assert max_in_any_window(grants, 0.3) <= 5
    assert sorted(waited)[:5] == pytest.approx([0.0] * 5, abs=0.05)
    # the third batch of five came two windows after the first grant (each waiter's own wait starts
    # when gather reached it, later on a busy machine, so the grants are what is compared)
    assert grants[-1] - grants[0] >= 0.6
    assert ticks >= 10  # the loop kept running while they waited (a blocked loop ticks once or twice)


def test_cancelled_async_waiter_leaves_the_line() -> None:
    limiter = RateLimiter(1, 5.0)
    limiter.acquire()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire_async(), 0.1)

    asyncio.run(main())
    assert limiter.waiting() == 0


def test_timeout_raises_and_gives_up_the_place() -> None:
    limiter = RateLimiter(1, 5.0)
    limiter.acquire()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no rate-limit slot"):
        limiter.acquire(timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 1.0
    assert limiter.waiting() == 0


def test_a_waiter_whose_process_died_does_not_take_the_next_slot() -> None:
    limiter = RateLimiter(1, 60.0)
    limiter.acquire()  # full for a minute
    child = SPAWN.Process(target=_wait_for_a_slot, args=(limiter,))
    child.start()
    wait_for(lambda: limiter.waiting() == 1, 10.0, "the child in line")
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(5)
    limiter.set_limit(2)  # one slot frees: it must go to us, not to the dead child ahead of us
    assert limiter.acquire(timeout=1.0) < 1.0
    assert limiter.waiting() == 0
    assert len(limiter.grants()) == 2


# ------------------------------------------------------------------ pause and limit


def test_pause_until_holds_everyone_back() -> None:
    limiter = RateLimiter(100, 1.0)
    limiter.acquire()
    limiter.pause_until(time.time() + 0.4)
    started = time.monotonic()
    limiter.acquire(timeout=5)
    assert 0.35 <= time.monotonic() - started < 1.0
    limiter.acquire(timeout=0.05)  # the pause is over


def test_a_pause_further_than_one_window_is_capped() -> None:
    limiter = RateLimiter(100, 0.2)
    limiter.pause_until(time.time() + 3600)  # a broker clock far ahead of ours
    started = time.monotonic()
    limiter.acquire(timeout=5)
    assert time.monotonic() - started < 1.5


def test_set_limit_changes_the_limit_unless_the_user_fixed_it() -> None:
    limiter = RateLimiter(2, 60.0)
    limiter.acquire()
    limiter.acquire()
    with pytest.raises(TimeoutError):
        limiter.acquire(timeout=0.05)
    limiter.set_limit(3)
    assert limiter.limit == 3
    limiter.acquire(timeout=0.05)
    limiter.override = True
    limiter.set_limit(10)
    assert limiter.limit == 3
    fixed = RateLimiter(5, 60.0, override=True)
    fixed.set_limit(200)
    assert fixed.limit == 5


def test_the_brokers_per_minute_limit_is_shared_out_to_shorter_windows() -> None:
    assert per_window(200, 60.0) == 200
    assert per_window(200, 5.0) == 16
    assert per_window(200, 120.0) == 200  # stricter than the broker: safe
    assert per_window(3, 1.0) == 1


def test_bad_settings_are_refused_with_the_allowed_values() -> None:
    with pytest.raises(ConfigurationError, match="limit=0"):
        RateLimiter(0)
    with pytest.raises(ConfigurationError, match="window_s"):
        RateLimiter(10, 0)
    with pytest.raises(ConfigurationError, match="allowed"):
        RateLimiter(10).set_limit(-1)


def test_shared_state_only_travels_to_spawned_children() -> None:
    with pytest.raises(RuntimeError, match="inheritance"):
        ForkingPickler.dumps(RateLimiter(10))  # what multiprocessing queues use


# ------------------------------------------------------------------ a batch's places in one go


def test_seat_many_grants_in_place_order_up_to_the_limit_and_the_rest_wait_seated() -> None:
    limiter = RateLimiter(5, 60.0)
    places = list(limiter.reserve(8))
    seats = limiter.seat_many(places)
    assert seats[:5] == [GRANTED] * 5
    assert all(isinstance(seat, int) and seat >= 0 for seat in seats[5:])
    assert len(limiter.grants()) == 5 and limiter.waiting() == 3
    for seat in seats[5:]:
        limiter.leave(seat)
    assert limiter.waiting() == 0 and len(limiter.grants()) == 5


def test_seat_many_serves_an_earlier_announced_batch_first() -> None:
    """A later batch that arrives first waits for the earlier one on its way; when that arrives, the
    slots go in place order and a seat granted meanwhile is collected at once."""
    limiter = RateLimiter(3, 60.0)
    early, late = list(limiter.reserve(2)), list(limiter.reserve(3))
    limiter.expect(early + late)
    late_seats = limiter.seat_many(late)
    assert GRANTED not in late_seats and not limiter.grants()  # held back: the earlier places are on the way
    assert limiter.seat_many(early) == [GRANTED, GRANTED]
    assert len(limiter.grants()) == 3  # the third slot went to the first late place, seated
    assert asyncio.run(asyncio.wait_for(limiter.acquire_async(late[0], seat=late_seats[0]), 1.0)) >= 0
    for seat in late_seats[1:]:
        limiter.leave(seat)
    assert limiter.waiting() == 0
