"""The QuoteBook: the latest quote of every ticker, in shared memory, readable from any process.

The quote-feed process is the single writer; the kernel's strategy thread (and anything
else that attaches) reads. The table has one row per ticker: a sequence number followed
by the :data:`FIELDS`, all 8 bytes wide::

    row i:  seq (uint64) | bid | ask | bid_size | ask_size | last_price | last_size
            | quote_time | receive_time

A seqlock keeps rows whole without ever making the writer wait: the writer makes the
row's sequence number odd, writes the fields, then makes it even again. A reader copies
the row between two reads of the sequence number and keeps the copy only if both reads
are equal and even; otherwise the writer was busy with that row and the reader simply
reads it again. Sequence numbers are stored through numpy as single aligned 8-byte
writes, so a reader never sees half of one.

The protocol relies on the processor keeping stores and loads in program order, as
x86-64 does. Stale data is never hidden: every row carries the time it was received, and
:meth:`Quote.age` says how old it is.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import TYPE_CHECKING

import numpy as np

from .errors import BlockpacaError, ConfigurationError

if TYPE_CHECKING:
    import pandas

FIELDS: tuple[str, ...] = (
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "last_price",
    "last_size",
    "quote_time",
    "receive_time",
)
"""The columns of a quote row, each a float64; times are epoch seconds."""

_WIDTH = 1 + len(FIELDS)  # the sequence number, then the fields
_CELL = 8  # bytes per value
# Offsets of the fields inside a row (the sequence number is at offset 0).
_BID, _ASK, _BID_SIZE, _ASK_SIZE, _LAST_PRICE, _LAST_SIZE, _QUOTE_TIME, _RECEIVE_TIME = range(1, _WIDTH)
_SETTLE_SECONDS = 0.25  # how long a reader waits for a row the writer left half-written
_SPINS_BEFORE_YIELD = 64
_register_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Quote:
    """One consistent row of the QuoteBook: the latest quote and trade of ``ticker``.

    Prices and sizes are NaN until the feed has written them; ``receive_time`` is 0 for a
    ticker never quoted.
    """

    ticker: str
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    last_price: float
    last_size: float
    quote_time: float
    receive_time: float

    @property
    def mid(self) -> float:
        """Midpoint of bid and ask (NaN when either side is missing)."""
        return (self.bid + self.ask) / 2.0

    @property
    def spread_bps(self) -> float:
        """Bid/ask spread in basis points of the mid (NaN without a positive mid)."""
        mid = self.mid
        return (self.ask - self.bid) / mid * 10_000.0 if mid > 0 else math.nan

    def age(self, now: float | None = None) -> float:
        """Seconds since the row was last received (inf if the ticker was never quoted)."""
        if not self.receive_time > 0:
            return math.inf
        return (time.time() if now is None else now) - self.receive_time


@dataclass(slots=True)
class _Views:
    """numpy views over the shared segment; dropped on close so the segment can be released."""

    cells: np.ndarray  # flat float64 view of the whole table: row r starts at r * _WIDTH
    seqs: np.ndarray  # flat uint64 view of the same bytes (only the sequence slots are used)
    seq_column: np.ndarray  # (n,) uint64, the sequence number of every row
    table: np.ndarray  # (n, _WIDTH) float64, whole rows, for bulk copies


class QuoteBook:
    """The latest quote of every ticker, shared between processes through a seqlocked table.

    Make one with :meth:`create` in the process that owns it (it alone may :meth:`unlink`
    it); other processes :meth:`attach` with ``book.meta``. A QuoteBook pickles as its
    ``meta``: unpickling it in another process attaches there.
    """

    def __init__(self, memory: SharedMemory, tickers: Sequence[str], owner: bool) -> None:
        """Wrap an opened segment; use :meth:`create` or :meth:`attach` instead."""
        self.tickers: tuple[str, ...] = tuple(tickers)
        self.meta: dict[str, object] = {"name": memory.name, "tickers": list(self.tickers)}
        self._memory = memory
        self._owner = owner
        self._unlinked = False
        self._rows = {ticker: row for row, ticker in enumerate(self.tickers)}
        self._views: _Views | None = _make_views(memory, len(self.tickers))

    @classmethod
    def create(cls, tickers: Sequence[str]) -> QuoteBook:
        """Allocate a new book for ``tickers``: prices NaN, times 0 (never quoted)."""
        names = _checked_tickers(tickers)
        memory = SharedMemory(create=True, size=len(names) * _WIDTH * _CELL)
        book = cls(memory, names, owner=True)
        table = book._open().table
        table[:, 1:] = math.nan
        table[:, _QUOTE_TIME] = 0.0
        table[:, _RECEIVE_TIME] = 0.0
        book._open().seq_column[:] = 0
        return book

    @classmethod
    def attach(cls, meta: Mapping[str, object]) -> QuoteBook:
        """Open, in this process, the book another process created (``meta`` is its ``book.meta``)."""
        name, tickers = _read_meta(meta)
        memory = _open_untracked(name)
        if memory.size < len(tickers) * _WIDTH * _CELL:
            memory.close()
            raise ConfigurationError(f"shm_meta: segment {name!r} is too small for {len(tickers)} tickers")
        return cls(memory, tickers, owner=False)

    # -- writer (the quote-feed process) ---------------------------------------------

    def write_quote(
        self,
        ticker: str,
        bid: float,
        ask: float,
        bid_size: float,
        ask_size: float,
        quote_time: float,
        receive_time: float,
    ) -> None:
        """Store a new bid/ask for ``ticker`` (the last trade is kept)."""
        views = self._open()
        base = self._row(ticker) * _WIDTH
        # Convert first: a bad value must raise before the row is marked busy, not during.
        values = (float(bid), float(ask), float(bid_size), float(ask_size), float(quote_time))
        received = float(receive_time)
        cells = views.cells
        sequence = self._begin_write(views.seqs, base)
        cells[base + _BID] = values[0]
        cells[base + _ASK] = values[1]
        cells[base + _BID_SIZE] = values[2]
        cells[base + _ASK_SIZE] = values[3]
        cells[base + _QUOTE_TIME] = values[4]
        cells[base + _RECEIVE_TIME] = received
        views.seqs[base] = sequence + 2

    def write_trade(self, ticker: str, price: float, size: float, receive_time: float) -> None:
        """Store the last trade of ``ticker`` (the bid/ask are kept)."""
        views = self._open()
        base = self._row(ticker) * _WIDTH
        price, size, received = float(price), float(size), float(receive_time)
        cells = views.cells
        sequence = self._begin_write(views.seqs, base)
        cells[base + _LAST_PRICE] = price
        cells[base + _LAST_SIZE] = size
        cells[base + _RECEIVE_TIME] = received
        views.seqs[base] = sequence + 2

    @staticmethod
    def _begin_write(seqs: np.ndarray, base: int) -> int:
        """Make the row's sequence number odd (row busy) and return its previous value."""
        sequence = int(seqs[base])
        seqs[base] = sequence + 1
        return sequence

    # -- readers -----------------------------------------------------------------------

    def quote(self, ticker: str) -> Quote:
        """Return the latest consistent quote of ``ticker``."""
        return Quote(ticker, *self._read_row(self._row(ticker)))

    def bid_ask(self) -> dict[str, dict[str, float]]:
        """Return blockpaca's quote schema ``{"AAPL": {"bid": 150.25, "ask": 150.30}, ...}``.

        Tickers never quoted are left out. One vectorised consistent copy of the table is
        taken, so this stays fast for hundreds of tickers.
        """
        table = self._consistent_table()
        bids = table[:, _BID]
        asks = table[:, _ASK]
        quoted = ~(np.isnan(bids) & np.isnan(asks))
        if quoted.all():
            tickers: Sequence[str] = self.tickers
        else:
            tickers = [self.tickers[row] for row in np.flatnonzero(quoted).tolist()]
            bids = bids[quoted]
            asks = asks[quoted]
        columns = zip(tickers, bids.tolist(), asks.tolist(), strict=True)
        return {ticker: {"bid": bid, "ask": ask} for ticker, bid, ask in columns}

    def column(self, field: str) -> np.ndarray:
        """One field for every ticker, in ticker order (a consistent copy), e.g. ``"quote_time"``."""
        if field not in FIELDS:
            raise ValueError(f"field {field!r} is not a quote field; allowed: {', '.join(FIELDS)}")
        return self._consistent_table()[:, 1 + FIELDS.index(field)]

    def snapshot(self) -> pandas.DataFrame:
        """Return one row per ticker: every field plus ``mid``, ``spread_bps`` and ``age`` (seconds)."""
        import pandas as pd

        table = self._consistent_table()
        frame = pd.DataFrame(table[:, 1:], index=pd.Index(self.tickers, name="ticker"), columns=list(FIELDS))
        bids = table[:, _BID]
        asks = table[:, _ASK]
        mid = (bids + asks) / 2.0
        received = table[:, _RECEIVE_TIME]
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["mid"] = mid
            frame["spread_bps"] = np.where(mid > 0, (asks - bids) / mid * 10_000.0, math.nan)
            frame["age"] = np.where(received > 0, time.time() - received, math.inf)
        return frame

    def _read_row(self, row: int) -> list[float]:
        """Copy one row's fields, retrying while the writer is busy with it."""
        views = self._open()
        seqs, cells = views.seqs, views.cells
        base = row * _WIDTH
        spins = 0
        deadline = 0.0
        while True:
            before = int(seqs[base])
            if not before & 1:
                values: list[float] = cells[base + 1 : base + _WIDTH].tolist()
                if int(seqs[base]) == before:
                    return values
            spins += 1
            if spins >= _SPINS_BEFORE_YIELD:
                deadline = self._wait_for_writer(row, deadline)

    def _wait_for_writer(self, row: int, deadline: float) -> float:
        """Yield the CPU to a writer busy with ``row``; give up if it never finishes."""
        now = time.monotonic()
        if not deadline:
            return now + _SETTLE_SECONDS
        if now > deadline:
            raise BlockpacaError(
                f"quote row of {self.tickers[row]!r} stayed half-written for {_SETTLE_SECONDS} s; "
                "did the quote-feed process die while writing?"
            )
        time.sleep(0)
        return deadline

    def _consistent_table(self) -> np.ndarray:
        """Copy the whole table; re-read one by one only the rows written during the copy."""
        views = self._open()
        before = views.seq_column.copy()
        table = views.table.copy()
        after = views.seq_column.copy()
        unsettled = (before ^ after) | (before & 1)
        if unsettled.any():
            for row in np.flatnonzero(unsettled).tolist():
                table[row, 1:] = self._read_row(row)
        return table

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Detach this process from the segment (the data stays for the other processes)."""
        if self._views is None:
            return
        self._views = None
        self._memory.close()

    def unlink(self) -> None:
        """Free the shared segment for good; only the creating process may do it. Idempotent."""
        if not self._owner:
            raise BlockpacaError("only the process that created a QuoteBook may unlink it; use close()")
        if self._unlinked:
            return
        self._unlinked = True
        try:
            self._memory.unlink()
        except FileNotFoundError:  # removed behind our back: stop the tracker from trying again
            _forget(self._memory)

    def __del__(self) -> None:
        # Drop the numpy views before the segment's own finaliser closes it.
        with suppress(Exception):
            self.close()

    def __enter__(self) -> QuoteBook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        if self._owner:
            self.unlink()

    def __reduce__(self) -> tuple[object, ...]:
        return (_attach, (self.meta,))

    def __repr__(self) -> str:
        role = "owner" if self._owner else "attached"
        state = "closed" if self._views is None else role
        return f"QuoteBook({len(self.tickers)} tickers, name={self.meta['name']!r}, {state})"

    def _open(self) -> _Views:
        views = self._views
        if views is None:
            raise BlockpacaError("this QuoteBook is closed")
        return views

    def _row(self, ticker: str) -> int:
        try:
            return self._rows[ticker]
        except KeyError:
            known = ", ".join(self.tickers)
            raise KeyError(f"{ticker!r} is not in this QuoteBook (tickers: {known})") from None


def _attach(meta: Mapping[str, object]) -> QuoteBook:
    return QuoteBook.attach(meta)


def _make_views(memory: SharedMemory, count: int) -> _Views:
    cells = np.ndarray((count * _WIDTH,), dtype=np.float64, buffer=memory.buf)
    seqs = np.ndarray((count * _WIDTH,), dtype=np.uint64, buffer=memory.buf)
    return _Views(cells=cells, seqs=seqs, seq_column=seqs[::_WIDTH], table=cells.reshape(count, _WIDTH))


def _forget(memory: SharedMemory) -> None:
    """Take a segment that no longer exists off this process's resource tracker (POSIX only)."""
    if os.name == "posix":
        with suppress(Exception):
            resource_tracker.unregister(memory._name, "shared_memory")  # type: ignore[attr-defined]


def _checked_tickers(tickers: Sequence[str]) -> list[str]:
    if isinstance(tickers, str):
        raise ConfigurationError(f"tickers must be a list of symbols, not the string {tickers!r}")
    names = list(tickers)
    if not names:
        raise ConfigurationError("tickers must name at least one symbol")
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ConfigurationError(f"tickers must be non-empty strings; got {bad[0]!r}")
    if len(set(names)) != len(names):
        doubles = sorted({name for name in names if names.count(name) > 1})
        raise ConfigurationError(f"tickers must be unique; repeated: {', '.join(doubles)}")
    return names


def _read_meta(meta: Mapping[str, object]) -> tuple[str, list[str]]:
    try:
        name, tickers = meta["name"], meta["tickers"]
    except (KeyError, TypeError):
        expected = "{'name': ..., 'tickers': [...]}"
        raise ConfigurationError(f"shm_meta must be a QuoteBook's meta: {expected}") from None
    if not isinstance(name, str) or not isinstance(tickers, list | tuple):
        raise ConfigurationError("shm_meta must hold a segment 'name' (str) and a 'tickers' list")
    return name, _checked_tickers(tickers)


def _open_untracked(name: str) -> SharedMemory:
    """Attach to an existing segment without handing it to this process's resource tracker.

    Otherwise the tracker would unlink the segment when this (non-owning) process exits.
    """
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    with _registration_skipped(name):
        return SharedMemory(name=name)


@contextmanager
def _registration_skipped(name: str) -> Iterator[None]:
    """Make ``resource_tracker.register`` ignore the segment ``name`` (Python 3.11 and 3.12).

    Registering then unregistering would not do: processes started by multiprocessing
    share their parent's tracker, so an unregister there would drop the owner's own
    registration (and the owner's later unlink would make the tracker print a KeyError).
    """
    original = resource_tracker.register

    def register(resource: str, kind: str) -> None:
        if kind == "shared_memory" and resource.lstrip("/") == name.lstrip("/"):
            return
        original(resource, kind)

    with _register_lock:
        resource_tracker.register = register
        try:
            yield
        finally:
            resource_tracker.register = original
