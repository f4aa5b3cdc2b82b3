"""8. Long run / load (the CI-sized version of soak.py): 500 symbols x 10 quotes/s with a strategy
trading every second for BLOCKPACA_LOAD_SECONDS (default 30). The memory of the kernel and of each
child grows only by a bounded amount, no file descriptor leaks, and the quote latency does not
drift (the feed keeps up instead of falling behind).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from load import run_load
from reliability_helpers import env_float, figure

SECONDS = env_float("BLOCKPACA_LOAD_SECONDS", 30)
MAX_GROWTH_MB = {"kernel": 40.0}
CHILD_GROWTH_MB = 25.0


@pytest.mark.timeout(SECONDS + 150)
def test_500_symbols_for_a_while(tmp_path: Path) -> None:
    report = run_load(SECONDS, tmp_path)
    print("\n".join(report.lines()))
    growth, fds = report.growth_mb(), report.fd_change()
    first, last = report.latency("first"), report.latency("last")
    start, end = report.samples[0], report.samples[-1]
    figure("load", seconds=SECONDS, quotebook_writes_per_s=report.writes_per_second(), orders=report.orders,
           filled=report.filled,
           rss_start_mb={k: round(v / 2**20) for k, v in start.rss.items()},
           rss_end_mb={k: round(v / 2**20) for k, v in end.rss.items()},
           fd_change=fds, latency_first_ms=round(first * 1000, 1), latency_last_ms=round(last * 1000, 1))
    assert report.writes_per_second() >= 0.8 * report.symbols * report.quotes_per_second, "the load is not there"
    assert report.orders >= SECONDS, "the strategy did not trade every second"
    assert report.filled >= report.orders * 0.9
    assert not report.errors, report.errors[:3]
    for name, grew in growth.items():
        assert grew <= MAX_GROWTH_MB.get(name, CHILD_GROWTH_MB), f"{name} grew by {grew} MB"
    assert all(abs(change) <= 3 for change in fds.values()), f"file descriptors changed: {fds}"
    assert last < 0.5 and last - first < 0.2, f"quote latency drifted: {first:.3f} s -> {last:.3f} s"
