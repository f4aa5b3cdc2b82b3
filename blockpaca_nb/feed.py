"""The quote feed: one process streaming market data into the shared-memory QuoteBook.

alpaca-py's `StockDataStream` runs in raw mode (no model object per message on the hot path) and
reconnects by itself; the quotes and trades of one frame are one seqlocked store (`FrameBatch`).
The session restarts a feed that died; the new one first repairs any row its predecessor left
half-written (an odd sequence number), so readers are not held up by it and the seqlock stays
in step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from .broker import Connection
from .processes import SpawnProcess, configure_child_logging, start_child
from .quote_recording import QuoteRecording
from .quotes import QuoteBatch, QuoteBook

RECONNECT_MIN_BACKOFF_S = 0.25
"""First wait before reconnecting a dropped market-data stream (alpaca-py's default is 1 s)."""


def start_feed(connection: Connection, book_meta: Mapping[str, Any], record_to: str | None = None) -> SpawnProcess:
    """The feed process; ``record_to``: a file it appends every quote to (Session(record_quotes=True))."""
    return start_child(run_feed, connection, dict(book_meta), record_to, name="blockpaca-feed")


def _epoch(stamp: Any) -> float:
    """A msgpack Timestamp (alpaca-py raw mode) or datetime/str as epoch seconds."""
    if hasattr(stamp, "to_unix"):
        return float(stamp.to_unix())
    if hasattr(stamp, "timestamp"):
        return float(stamp.timestamp())
    return time.time()


def repair_rows(book: QuoteBook) -> int:
    """Blank the rows a dead writer left busy or half-written (see QuoteBook.repair_rows); returns how many."""
    return book.repair_rows()


class FrameBatch:
    """Quotes that arrive together are stored together. alpaca-py hands over a frame's messages one
    by one without waiting in between, so the first one schedules a flush for when the loop next
    waits for the network: the frame is then one vectorised store (a row's seal costs microseconds
    in Python), and no quote waits longer than its frame takes to read. A long burst is cut every
    ``MAX_ROWS`` rows."""

    MAX_ROWS = 256

    def __init__(self, writes: QuoteBatch, recording: QuoteRecording | None = None) -> None:
        self.writes = writes
        self.recording = recording
        self.scheduled = False

    def added(self) -> None:
        if len(self.writes) >= self.MAX_ROWS:
            self.writes.flush()
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        self.writes.flush()
        if self.recording is not None:
            self.recording.flush()


def run_feed(connection: Connection, book_meta: Mapping[str, Any], record_to: str | None = None) -> None:
    """Child entry point: subscribe to quotes and trades of every ticker in the book, forever."""
    from alpaca.data.enums import DataFeed
    from alpaca.data.live import StockDataStream

    configure_child_logging(connection.credentials.secret_key)
    book = QuoteBook.attach(book_meta)
    repair_rows(book)
    stream = StockDataStream(
        connection.credentials.api_key,
        connection.credentials.secret_key,
        raw_data=True,
        feed=DataFeed.IEX,
        url_override=connection.endpoints.data_stream,
    )
    stream._reconnect_min_backoff = RECONNECT_MIN_BACKOFF_S  # no public knob; the default is 1 s

    recording = QuoteRecording(record_to) if record_to else None
    batch = FrameBatch(QuoteBatch(book), recording)

    async def on_quote(q: dict[str, Any]) -> None:
        when = _epoch(q.get("t"))
        batch.writes.quote(q["S"], q["bp"], q["ap"], q["bs"], q["as"], when)
        if recording is not None:
            recording.quote(q["S"], q["bp"], q["ap"], q["bs"], q["as"], when)
        batch.added()

    async def on_trade(t: dict[str, Any]) -> None:
        batch.writes.trade(t["S"], t["p"], t["s"])
        batch.added()

    stream.subscribe_quotes(on_quote, *book.tickers)
    stream.subscribe_trades(on_trade, *book.tickers)
    stream.run()
