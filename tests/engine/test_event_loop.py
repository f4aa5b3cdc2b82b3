"""The children's event loop: uvloop where installed, asyncio's when asked for by name."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from blockpaca_nb import event_loop

PROBE = (
    "import asyncio; from blockpaca_nb import event_loop\n"
    "async def kind(): return type(asyncio.get_running_loop()).__module__.split('.')[0]\n"
    "print(event_loop.loop_name(), event_loop.run(kind()))"
)


def probe(env_value: str | None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if env_value is None:
        monkeypatch.delenv(event_loop.CHOICE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(event_loop.CHOICE_VARIABLE, env_value)
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()


def test_the_default_is_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    assert probe(None, monkeypatch) == ["uvloop", "uvloop"]


def test_asyncio_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe("asyncio", monkeypatch) == ["asyncio", "asyncio"]


def test_an_unknown_choice_stops_a_session_and_a_simulator_before_any_child(monkeypatch: pytest.MonkeyPatch) -> None:
    from blockpaca_nb import ConfigurationError, Session, Simulator

    monkeypatch.setenv(event_loop.CHOICE_VARIABLE, "uvlop")
    allowed = r"BLOCKPACA_EVENT_LOOP='uvlop' is not valid; allowed: 'uvloop', 'asyncio'"
    with pytest.raises(ConfigurationError, match=allowed):
        Simulator(["AAPL"])
    with pytest.raises(ConfigurationError, match=allowed):
        Session(tickers=["AAPL"])
    monkeypatch.setenv(event_loop.CHOICE_VARIABLE, " AsyncIO ")
    assert event_loop.loop_name() == "asyncio"


def test_run_returns_the_coroutine_result_and_new_loop_is_usable() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert event_loop.run(answer()) == 42
    loop = event_loop.new_loop()
    try:
        assert loop.run_until_complete(answer()) == 42
    finally:
        loop.close()
