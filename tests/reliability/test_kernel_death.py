"""4. The kernel dies. A separate process owns a running Session (started with start_new_session=True,
so signals to its process group do not reach pytest) and is then

* SIGKILLed alone (the kernel crashed), or with its whole process group (a Jupyter kernel
  restart): within 5 s no child process, no /dev/shm file it had mapped (the QuoteBook) and no
  listening socket of the session remains;
* sent SIGINT to its process group (Jupyter's Interrupt button), once while the background processes
  are still starting and once while it runs: every process survives, the strategy keeps ticking and
  an order submitted afterwards fills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import alive, descendants, figure, listening_ports, ports_still_listening, shm_files, wait_for

OWNER = textwrap.dedent(
    """
    import json, sys, time
    from blockpaca_nb import Session

    def say(**values):
        print(json.dumps(values), flush=True)

    def until(predicate, timeout=90):
        deadline = time.monotonic() + timeout
        while True:  # an Interrupt may land on any line of the loop: every one is inside the try
            try:
                if time.monotonic() >= deadline:
                    break
                if predicate():
                    return
                time.sleep(0.05)
            except KeyboardInterrupt:
                say(interrupted=time.time())
        raise SystemExit("timed out")

    s = Session(tickers=["AAPL", "MSFT"], warm_up_period=0, trade_log_path=sys.argv[1], frequency=0.2, num_workers=2)
    ticks = []

    def count(ctx):
        ticks.append(time.time())

    s.strategy(count)
    s.start()
    say(started=time.time())
    until(lambda: s.status == "running" and len(s.get_current_data()[0]) == 2)
    until(lambda: all(w["alive"] for w in s.worker_health()))
    say(running=time.time(), shm=s._book.meta["name"], port=s.simulator.port)
    order = None
    while True:
        try:
            time.sleep(0.2)
            if order is None and sys.argv[2] == "order":
                order = s.submit({"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"})[0]
            say(ticks=len(ticks), status=s.status, order=(s.orders.get(order) or {}).get("status"),
                workers=[w["alive"] for w in s.worker_health()], restarts=s.restarts)
        except KeyboardInterrupt:
            say(interrupted=time.time())
    """
)


class Owner:
    """The owner process and the JSON lines it prints."""

    def __init__(self, tmp_path: Path) -> None:
        script = tmp_path / "owner.py"
        script.write_text(OWNER)
        self.tmp_path, self.script = tmp_path, script
        self.process: subprocess.Popen[str] | None = None

    def start(self, mode: str = "idle") -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(self.script), str(self.tmp_path), mode],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def read(self, key: str, timeout: float = 90) -> dict[str, Any]:
        """The next line that has ``key`` (earlier ones are skipped)."""
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the owner exited (code {self.process.poll()}) before saying {key!r}")
            message = json.loads(line)
            if key in message:
                return message
        raise AssertionError(f"the owner did not say {key!r} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@pytest.fixture
def owner(tmp_path: Path) -> Any:
    made = Owner(tmp_path)
    yield made
    made.stop()


@pytest.mark.parametrize("target", ["owner", "group"])
def test_nothing_survives_the_kernel(owner: Owner, target: str) -> None:
    owner.start()
    ready = owner.read("running")
    assert owner.process is not None
    pid = owner.process.pid
    children = [p.pid for p in descendants(pid)]
    mapped = shm_files([pid, *children])
    ports = listening_ports(children)
    assert len(children) >= 6, "simulator, janitor, feed, recorder, two workers (+ resource tracker)"
    assert f"/dev/shm/{ready['shm']}" in mapped and ready["port"] in ports
    killed = time.monotonic()
    if target == "group":
        os.killpg(pid, signal.SIGKILL)  # what a Jupyter kernel restart does
    else:
        os.kill(pid, signal.SIGKILL)
    owner.process.wait(5)

    def clean() -> bool:
        return not any(alive(c) for c in children) and not any(map(os.path.exists, mapped))

    wait_for(lambda: clean() and not ports_still_listening(ports), 5, "children, shared memory and sockets to go")
    figure(
        f"kernel_killed_{target}",
        children=len(children),
        shm_files=len(mapped),
        listening=len(ports),
        leftovers_after_5s=0,
        gone_after_s=round(time.monotonic() - killed, 2),
    )


def test_interrupt_leaves_the_session_running(owner: Owner) -> None:
    owner.start(mode="order")
    owner.read("started")
    assert owner.process is not None
    pid = owner.process.pid
    pressing = threading.Event()
    presses = threading.Thread(target=_press_interrupt, args=(pid, pressing), daemon=True)
    presses.start()  # Interrupt pressed again and again while the background processes start
    try:
        owner.read("running")
    finally:
        pressing.set()
        presses.join()
    children = [p.pid for p in descendants(pid)]
    before = owner.read("ticks")
    os.killpg(pid, signal.SIGINT)  # Jupyter's Interrupt button while the session runs
    owner.read("interrupted")
    time.sleep(1.0)
    after = wait_for(lambda: _filled(owner), 20, "the order sent after the interrupts to fill")
    figure("interrupt", children=len(children), survivors=sum(map(alive, children)), ticks_after=after["ticks"])
    assert all(alive(c) for c in children), "a background process died of the Interrupt"
    assert after["status"] == "running" and all(after["workers"]) and after["ticks"] > before["ticks"]
    assert after["restarts"] == {"feed": 0, "recorder": 0}


def _press_interrupt(pid: int, done: threading.Event) -> None:
    while not done.wait(0.15):
        os.killpg(pid, signal.SIGINT)


def _filled(owner: Owner) -> dict[str, Any] | None:
    line = owner.read("ticks")
    return line if line["order"] == "filled" else None
