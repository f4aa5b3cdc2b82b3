"""The reliability suite: the fault matrix against started simulators (see each module's docstring).

Durations a long run may raise (environment variables): BLOCKPACA_DROP_SECONDS (25) and
BLOCKPACA_DROP_EVERY (5) for dropped connections, BLOCKPACA_LOAD_SECONDS (30) for the load test.
Every figure a test measures is printed in the terminal summary.
"""

from __future__ import annotations

from typing import Any

from reliability_helpers import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, values in FIGURES.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{test}: {shown}")
