"""The live chart: session P&L over time (and each strategy's, once there are two), and the mid of
one chosen ticker with its fills.

Drawn by ``chart.js`` as SVG (lighter than a plotly FigureWidget, which would resend whole
arrays): each update carries only the samples and fills added since the previous one. The
history is sampled every chart period into fixed-size numpy buffers, one column per ticker;
when a buffer is full every other sample is dropped and sampling slows down by two, so memory
stays bounded (:data:`CAPACITY` samples) however long the session runs and the chart still
spans all of it.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets

from .tables import HERE, clean, front_end

CAPACITY = 2000
FILLS_PER_TICKER = 2000


class History:
    """Sampled session P&L and every ticker's mid, plus the fills per ticker."""

    def __init__(self, tickers: Sequence[str], capacity: int = CAPACITY) -> None:
        self.tickers = list(tickers)
        self.column = {t: i for i, t in enumerate(self.tickers)}
        self.capacity = capacity
        self.times = np.zeros(capacity)
        self.pnl = np.full(capacity, np.nan)
        self.mids = np.full((capacity, len(self.tickers)), np.nan, dtype=np.float32)
        self.size = 0
        self.stride = 1
        self.compactions = 0
        self._calls = 0
        self.fills: dict[str, deque[tuple[float, float, float, int]]] = {}
        self.fill_counts: dict[str, int] = {}  # fills ever added per ticker (the deques drop old ones)
        self.lines: dict[str, np.ndarray] = {}  # each strategy's P&L, aligned with ``times`` (NaN before it)

    def sample(
        self, now: float, pnl: float, mids: Mapping[str, float], lines: Mapping[str, float] | None = None
    ) -> bool:
        """Record one sample (every ``stride``-th call); True if one was recorded. ``lines``: each
        strategy's P&L now."""
        self._calls += 1
        if self._calls % self.stride:
            return False
        if self.size == self.capacity:
            self._compact()
        row = np.full(len(self.tickers), np.nan, dtype=np.float32)
        for ticker, mid in mids.items():
            column = self.column.get(ticker)
            if column is not None:
                row[column] = mid
        self.times[self.size], self.pnl[self.size], self.mids[self.size] = now, pnl, row
        for name, value in (lines or {}).items():
            self.lines.setdefault(name, np.full(self.capacity, np.nan))[self.size] = value
        self.size += 1
        return True

    def _compact(self) -> None:
        keep = self.size // 2
        self.times[:keep] = self.times[: self.size : 2][:keep]
        self.pnl[:keep] = self.pnl[: self.size : 2][:keep]
        self.mids[:keep] = self.mids[: self.size : 2][:keep]
        for line in self.lines.values():
            line[:keep] = line[: self.size : 2][:keep]
            line[keep:] = np.nan
        self.size = keep
        self.stride *= 2
        self.compactions += 1

    def add_fill(self, ticker: str, when: float, price: float, qty: float, side: int) -> None:
        fills = self.fills.setdefault(ticker, deque(maxlen=FILLS_PER_TICKER))
        fills.append((when, price, qty, side))
        self.fill_counts[ticker] = self.fill_counts.get(ticker, 0) + 1


class ChartPanel(anywidget.AnyWidget):
    """The SVG chart; ``patch`` carries new samples (or all of them, on ``reset``)."""

    _esm = front_end("chart.js")
    _css = HERE / "dashboard.css"

    uid = traitlets.Unicode().tag(sync=True)
    patch = traitlets.Dict().tag(sync=True)

    def __init__(self, tickers: Sequence[str], **kwargs: Any) -> None:
        super().__init__(uid=uuid.uuid4().hex, **kwargs)
        self.history = History(tickers)
        self.ticker = tickers[0] if tickers else ""
        self._sent_ticker: str | None = None
        self._sent_size = 0
        self._sent_fills = 0
        self._sent_compactions = 0
        self._seq = 0
        self._full_due = True
        self._lock = threading.Lock()
        self.messages = 0
        self.on_msg(self._on_front_end_message)

    def select(self, ticker: str) -> None:
        """Show ``ticker``'s price from the next update on (any thread)."""
        if ticker in self.history.column:
            self.ticker = ticker

    def pending(self) -> bool:
        """True when the browser waits for something outside the chart's cadence (a new ticker, a resync)."""
        return self._full_due or self.ticker != self._sent_ticker

    def publish(self, now: float) -> bool:
        """Send the samples and fills added since the last update (a full copy when needed)."""
        with self._lock:
            history, ticker = self.history, self.ticker
            fills = list(history.fills.get(ticker, ()))
            count = history.fill_counts.get(ticker, 0)
            full = (
                self._full_due
                or ticker != self._sent_ticker
                or history.compactions != self._sent_compactions
                or count - self._sent_fills > len(fills)
            )
            start, new_fills = (0, len(fills)) if full else (self._sent_size, count - self._sent_fills)
            if not full and start == history.size and not new_fills:
                return False
            self.patch = self._patch(full, start, fills[len(fills) - new_fills :], now)
            self._full_due = False
            self._sent_ticker, self._sent_size = ticker, history.size
            self._sent_fills, self._sent_compactions = count, history.compactions
            self.messages += 1
            return True

    def _patch(self, full: bool, start: int, fills: list[tuple[float, float, float, int]], now: float) -> dict:
        history = self.history
        end = history.size
        column = history.column.get(self.ticker)
        prices = history.mids[start:end, column].tolist() if column is not None else []
        self._seq += 1
        return {
            "seq": self._seq,
            "base": self._seq - 1,
            "reset": full,
            "ticker": self.ticker,
            "t": [round(t, 3) for t in history.times[start:end].tolist()],
            "pnl": [clean(v, 2) for v in history.pnl[start:end].tolist()],
            "price": [clean(v, 4) for v in prices],
            "lines": {name: [clean(v, 2) for v in line[start:end].tolist()] for name, line in history.lines.items()},
            "fills": [[round(t, 3), clean(p, 4), clean(q), s] for t, p, q, s in fills],
            "now": round(now, 3),
        }

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            self._full_due = True
