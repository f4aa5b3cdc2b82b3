"""Shared helpers of the reliability suite: polling, sessions against simulators, trade-log checks,
process trees, and the figures each test reports (printed at the end of the run)."""

from __future__ import annotations

import csv
import itertools
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import psutil
from waiting import wait_for

from blockpaca_nb import Session, Simulator
from blockpaca_nb.tradelog import COLUMNS, FLOAT_COLUMNS

T = TypeVar("T")
FINAL = frozenset({"filled", "canceled", "expired", "rejected", "failed", "replaced"})
FIGURES: dict[str, dict[str, Any]] = {}


def figure(test: str, **values: Any) -> None:
    """Keep a figure for the end-of-run summary (and print it now, for -s runs)."""
    FIGURES.setdefault(test, {}).update(values)
    print(f"[figures] {test}: {values}")


def env_float(name: str, default: float) -> float:
    """A duration the CI run keeps short and a long run can raise, e.g. BLOCKPACA_DROP_SECONDS=60."""
    return float(os.environ.get(name) or default)


# ------------------------------------------------------------------ sessions


def session_options(sim: Simulator, tmp_path: Path, paper: bool = False, **overrides: Any) -> dict[str, Any]:
    """Options of a session on ``sim``: as the simulator's owner (sim mode), or as an Alpaca paper
    account whose endpoints and keys happen to be the simulator's (paper mode, explicit urls)."""
    options: dict[str, Any] = {
        "tickers": list(sim.symbols[:3]),
        "frequency": 0.5,
        "warm_up_period": 0,
        "trade_log_path": tmp_path,
        "trade_log_name": "reliability",
        "num_workers": 2,
    }
    if paper:
        options.update(mode="paper", urls=sim.urls, api_key=sim.api_key, secret_key=sim.secret_key)
    else:
        options["simulator"] = sim
    options.update(overrides)
    return options


def running(session: Session, timeout: float = 60.0) -> Session:
    """Start a session and wait until its loop runs; a failure shows its reasons."""
    session.start()
    wait_for(lambda: session.status in ("running", "paused", "failed"), timeout, "the session to run")
    assert session.status != "failed", list(session.errors)
    return session


def settle(session: Session, cids: Iterable[str], timeout: float) -> list[str]:
    """Wait until these orders reached a final state in the session; return those that did not."""
    cids = list(cids)

    def pending() -> list[str]:
        return [c for c in cids if (session.orders.get(c) or {}).get("status") not in FINAL]

    deadline = time.monotonic() + timeout
    while (left := pending()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def positions_match(session: Session, sim: Simulator) -> bool:
    """Whether the session holds what the broker holds (a ticker at zero is no position)."""
    broker = {p["symbol"]: float(p["qty"]) for p in sim.positions()}
    ours = {p["ticker"]: p["quantity"] for p in session.get_current_data()[1]}
    return ours == {k: v for k, v in broker.items() if v}


def market(ticker: str, side: str = "buy", quantity: float = 1) -> dict[str, Any]:
    return {"ticker": ticker, "quantity": quantity, "side": side, "order_type": "market"}


# ------------------------------------------------------------------ the trade log


def raw_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a trade log, checked whole: the right number of cells, numbers where numbers go."""
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        assert next(reader) == list(COLUMNS), "the header is not the trade-log schema"
        rows = []
        for number, cells in enumerate(reader, start=2):
            assert len(cells) == len(COLUMNS), f"line {number} is torn: {cells}"
            row = dict(zip(COLUMNS, cells, strict=True))
            for column in FLOAT_COLUMNS:  # a torn line would not parse
                assert row[column] == "" or math.isfinite(float(row[column])), (number, column, row)
            rows.append(row)
    return rows


def duplicated_rows(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    """Rows that appear more than once (every column equal)."""
    counts = Counter(tuple(r.values()) for r in rows)
    return [row for row, n in counts.items() if n > 1]


def filled_rows_per_order(rows: list[dict[str, str]]) -> Counter[str]:
    return Counter(r["client_order_id"] for r in rows if r["type"] == "execution" and r["status"] == "filled")


def terminal_rows(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """Per client order id, its rows that end it: a final execution status, or a submission that
    was rejected or failed (with its reason)."""
    ends: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        final_execution = r["type"] == "execution" and r["status"] in FINAL
        refused = r["type"] == "submission" and r["status"] in ("rejected", "failed")
        if final_execution or refused:
            ends.setdefault(r["client_order_id"], []).append(r)
    return ends


# ------------------------------------------------------------------ processes


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def shm_files(pids: Iterable[int]) -> set[str]:
    """The /dev/shm files these processes have mapped (QuoteBook segments, semaphores …)."""
    found: set[str] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            path = fields[5] if len(fields) == 6 else ""
            if path.startswith("/dev/shm/") and not path.endswith(" (deleted)"):
                found.add(path)
    return found


def listening_ports(pids: Iterable[int]) -> set[int]:
    ports: set[int] = set()
    for pid in pids:
        try:
            ports |= {c.laddr.port for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"}
        except psutil.Error:
            continue
    return ports


def ports_still_listening(ports: set[int]) -> set[int]:
    return {c.laddr.port for c in psutil.net_connections("inet") if c.status == "LISTEN"} & ports


# ------------------------------------------------------------------ quotes


class QuoteWatch:
    """Samples the newest receive_time of a session's QuoteBook every few ms, in a thread: the gaps
    between new quotes, and the quote latency (receive time - quote time) as it goes."""

    def __init__(self, session: Session, every: float = 0.01) -> None:
        self.session, self.every = session, every
        self.updates: list[float] = []  # wall-clock time of each observed new quote
        self.latencies: list[tuple[float, float]] = []  # (when, median receive - quote time)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="quote-watch")
        self._thread.start()

    def _run(self) -> None:
        import numpy as np

        last = 0.0
        while not self._stop.wait(self.every):
            book = self.session._book
            if book is None:
                continue
            received = book.column("receive_time")
            newest = float(received.max())
            if newest > last:
                self.updates.append(time.time())
                last = newest
                quoted = book.column("quote_time")
                fresh = received > time.time() - 1
                if fresh.any():
                    self.latencies.append((time.time(), float(np.median((received - quoted)[fresh]))))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def gaps(self, since: float = 0.0) -> list[tuple[float, float]]:
        """(gap seconds, when it ended) between consecutive new quotes observed after ``since``."""
        times = [t for t in self.updates if t >= since]
        return [(b - a, b) for a, b in itertools.pairwise(times)]
