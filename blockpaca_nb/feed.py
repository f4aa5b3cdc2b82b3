"""The quote feed: one process streaming market data into the shared-memory QuoteBook.

alpaca-py's `StockDataStream` runs in raw mode (no model object per message on the hot path) and
reconnects by itself; each quote and trade is one seqlocked row write. The session restarts a feed
that died; the new one first repairs any row its predecessor left half-written (an odd sequence
number), so readers are not held up by it and the seqlock stays in step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .broker import Connection
from .processes import SpawnProcess, configure_child_logging, start_child
from .quotes import QuoteBook

RECONNECT_MIN_BACKOFF_S = 0.25
"""First wait before reconnecting a dropped market-data stream (alpaca-py's default is 1 s)."""


def start_feed(connection: Connection, book_meta: Mapping[str, Any]) -> SpawnProcess:
    return start_child(run_feed, connection, dict(book_meta), name="blockpaca-feed")


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


def run_feed(connection: Connection, book_meta: Mapping[str, Any]) -> None:
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

    async def on_quote(q: dict[str, Any]) -> None:
        book.write_quote(q["S"], q["bp"], q["ap"], q["bs"], q["as"], _epoch(q.get("t")), time.time())

    async def on_trade(t: dict[str, Any]) -> None:
        book.write_trade(t["S"], t["p"], t["s"], time.time())

    stream.subscribe_quotes(on_quote, *book.tickers)
    stream.subscribe_trades(on_trade, *book.tickers)
    stream.run()
