"""Starting, stopping and losing simulators: no process, port or secret is left where it should not be."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
from sim_helpers import simulator_children, trading_client, wait_for

import blockpaca_nb.sim
from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.sim import Simulator

PACKAGE_ROOT = Path(blockpaca_nb.sim.__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_context_manager_starts_and_stops() -> None:
    before = {p.pid for p in simulator_children()}
    sim = Simulator(quotes_per_second=0.001)
    assert not sim.running
    with pytest.raises(RuntimeError):
        sim.port  # noqa: B018 - not serving yet
    with sim as running:
        assert running is sim and sim.running
        port = sim.port
        (child,) = [p for p in simulator_children() if p.pid not in before]
        assert port_open(port)
        assert trading_client(sim).get_clock().is_open
        assert sim.start() is sim  # starting again is a no-op
        assert sim.port == port
    assert not sim.running
    assert not port_open(port)
    assert wait_for(lambda: gone(child.pid), 5, what="the simulator process to exit")


def test_stop_is_idempotent() -> None:
    never_started = Simulator()
    never_started.stop()
    never_started.stop()
    sim = Simulator(quotes_per_second=0.001).start()
    port, pid = sim.port, sim._process.pid if sim._process else -1
    sim.stop()
    sim.stop()
    with sim:  # and it can serve again afterwards
        assert trading_client(sim).get_clock() is not None
    sim.stop()
    assert not port_open(port) and gone(pid)


def test_garbage_collected_simulator_stops_its_process() -> None:
    sim = Simulator(quotes_per_second=0.001).start()
    port = sim.port
    assert sim._process is not None
    pid = sim._process.pid
    del sim
    gc.collect()
    assert wait_for(lambda: gone(pid), 5, what="the process of a collected Simulator to exit")
    assert not port_open(port)


def test_killing_the_parent_ends_the_simulator() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from blockpaca_nb.sim import Simulator
        sim = Simulator(quotes_per_second=0.001).start()
        print(sim._process.pid, sim.port, flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        child_pid, port = (int(x) for x in line.split())
        assert psutil.pid_exists(child_pid) and port_open(port)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert wait_for(lambda: gone(child_pid), 5, what="the orphaned simulator to exit")
        assert not port_open(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        if parent.stdout:
            parent.stdout.close()


def test_secret_stays_secret() -> None:
    with Simulator(quotes_per_second=0.001) as sim:
        secret = sim.secret_key
        assert len(secret) >= 16
        assert secret not in repr(sim) and secret not in str(sim)
        assert sim._process is not None
        pid = sim._process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert b"blockpaca_nb.sim.child" in cmdline
        assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        # two simulators never share credentials
        with Simulator(quotes_per_second=0.001) as other:
            assert other.secret_key != secret and other.api_key != sim.api_key


def test_explicit_port_and_port_in_use() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match="could not start"):
            Simulator(port=busy).start()
    with socket.socket() as finder:
        finder.bind(("127.0.0.1", 0))
        free = finder.getsockname()[1]
    with Simulator(port=free, quotes_per_second=0.001) as sim:
        assert sim.port == free
        assert sim.urls == {
            "trading": f"http://127.0.0.1:{free}",
            "trading_stream": f"ws://127.0.0.1:{free}/stream",
            "data": f"http://127.0.0.1:{free}",
            "data_stream": f"ws://127.0.0.1:{free}/v2/iex",
        }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quotes_per_second": -1}, "quotes_per_second"),
        ({"quotes_per_second": 0}, "quotes_per_second"),
        ({"quotes_per_second": "fast"}, "quotes_per_second"),
        ({"latency_ms": -5}, "latency_ms"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"timeout_after_accept_rate": -0.1}, "timeout_after_accept_rate"),
        ({"rate_limit_per_min": 0}, "rate_limit_per_min"),
        ({"ws_drop_every_s": 0}, "ws_drop_every_s"),
        ({"market_hours": "sometimes"}, "market_hours"),
        ({"port": 70_000}, "port"),
        ({"port": 80.5}, "port"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"starting_cash": -100}, "starting_cash"),
        ({"symbols": []}, "symbols"),
        ({"symbols": ["AAPL", "NOT A TICKER"]}, "symbols"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    before = len(simulator_children())
    with pytest.raises(ConfigurationError, match=field):
        Simulator(**kwargs)
    assert len(simulator_children()) == before  # nothing was started
