"""The QuoteBook: the latest quote of every ticker, in shared memory, readable from any process.

The quote-feed process is the single writer; the kernel's strategy thread (and anything
else that attaches) reads. Each ticker has a row of 8-byte words: a sequence number, the
:data:`FIELDS`, and a seal. The table is stored column by column (each kind of word for every
ticker, contiguous), so that checking every row's seal is a few long vectorised operations::

    row i:  seq (uint64) | bid | ask | bid_size | ask_size | last_price | last_size
            | quote_time | receive_time | seal (uint64)
    memory: seq[0..n) | bid[0..n) | ask[0..n) | ... | seal[0..n)

Why a seal, and why it is correct on every CPU. A classic seqlock (make ``seq`` odd, write
the fields, make it even; the reader keeps a copy only when ``seq`` was even and unchanged
around it) is only correct if stores become visible, and loads are performed, in program
order. x86-64 guarantees that; ARM64 (Apple Silicon, Graviton) does not: without barriers
— which neither numpy nor Python can issue — a reader may see the new ``seq`` with old
fields, or half the new fields. So the reader does not trust the order of anything: the
writer stores with every version a seal, a 64-bit hash of that version's sequence number
and fields, and a reader keeps a copy only when the seal it read is the hash of the words it
read. A copy that mixes two versions (in any order, even with one 8-byte word itself torn)
fails the check and is read again:

* the hash is a sum of one bijective mix per word (multiply by an odd constant, xor-shift,
  multiply, xor-shift), so a copy that differs from a real version in a single word can
  never pass; one that differs in several words passes with probability about 2**-64;
* the sequence number is hashed too, so an odd (busy) sequence number never passes, and a
  version's seal is never taken for another's;
* nothing depends on when the other words became visible, only on what was read, so no
  memory-ordering guarantee is needed; 8-byte aligned loads and stores are not even
  assumed to be atomic. What remains is what every CPU gives: the single writer sees its
  own stores in order, and once it stops writing a row every reader soon sees that row's
  last version (cache coherence), so a retry ends.

The odd/even sequence number stays as well: it counts the writes, and a busy row's odd
number can never pass the seal (which was made with the even one). Readers stay lock-free:
the whole table is copied with one vectorised copy, every seal checked with a few numpy
operations, and only failing rows are read again one by one. A row that never passes (the
writer died mid-write) is reported after :data:`_SETTLE_SECONDS`. Stale data is never
hidden: every row carries the time it was received, and :meth:`Quote.age` says how old it is.

The feed writes a stream frame's quotes as one vectorised store (:meth:`QuoteBook.write_many`, fed by
:class:`QuoteBatch`): sealing a row costs microseconds in Python and almost nothing in numpy.

Why one module of ~500 lines: the layout, the seal, the writers and the reader's retry are one
invariant (no torn row is ever returned); split across files, a change to one side could silently
break the other.

A side priced 0, negative, infinite or NaN is "no quote" (IEX sends 0 for an empty side):
it is stored as NaN, so the mid and the spread are NaN, and :meth:`QuoteBook.bid_ask` leaves
the ticker out until both sides are priced again, as blockpaca did.
"""

from __future__ import annotations

import math
import os
import struct
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
from .tickers import normalize_tickers

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

_WIDTH = 2 + len(FIELDS)  # the sequence number, the fields, the seal
_SEAL = _WIDTH - 1  # offset of the seal, the hash of the words before it
_CELL = 8  # bytes per value
# Offsets of the fields inside a row (the sequence number is at offset 0, the seal last).
_BID, _ASK, _BID_SIZE, _ASK_SIZE, _LAST_PRICE, _LAST_SIZE, _QUOTE_TIME, _RECEIVE_TIME = range(1, _SEAL)
_QUOTE_SLOTS = [_BID, _ASK, _BID_SIZE, _ASK_SIZE, _QUOTE_TIME, _RECEIVE_TIME]  # what write_quote sets
_TRADE_SLOTS = [_LAST_PRICE, _LAST_SIZE, _RECEIVE_TIME]  # what write_trade sets
# How long a reader waits for a half-written row: a loaded machine can pause the writer mid-row
# for a few hundred ms, and a false alarm would fail the strategy's tick.
_SETTLE_SECONDS = 2.0
_SPINS_BEFORE_YIELD = 64
_FEW_ROWS = 3  # write_many stores this many rows one by one (below it, numpy's fixed cost loses)
_register_lock = threading.Lock()
# One odd multiplier per sealed word (seq and the 8 fields), so equal changes in two words
# (bid_size and ask_size both 100 -> 200) do not cancel out; then a murmur-style finaliser.
_SEAL_MULTIPLIERS = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
        0x2545F4914F6CDD1D,
    ],
    dtype=np.uint64,
)[:, np.newaxis]
_SEAL_MIX = np.uint64(0xFF51AFD7ED558CCD)
_SHIFT_A, _SHIFT_B = np.uint64(33), np.uint64(29)
# The same constants as Python ints, for one row at a time.
_SEAL_FACTORS = tuple(int(factor) for factor in _SEAL_MULTIPLIERS[:, 0])
_SEAL_MIX_INT, _SHIFT_A_INT, _SHIFT_B_INT = int(_SEAL_MIX), int(_SHIFT_A), int(_SHIFT_B)
_MASK = (1 << 64) - 1
_AS_WORDS = struct.Struct(f"={len(FIELDS)}Q")  # the fields' raw bits
_AS_FLOATS = struct.Struct(f"={len(FIELDS)}d")  # the same bytes as floats


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

    words: np.ndarray  # (_WIDTH, n) uint64: words[k, i] is word k of ticker i's row
    table: np.ndarray  # the same bytes as float64, for the fields
    seq_column: np.ndarray  # (n,) uint64, the sequence number of every row (words[0])


class QuoteBook:
    """The latest quote of every ticker, shared between processes through a sealed seqlocked table.

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
        words = book._open().words
        words[:] = _blank_rows(len(names))
        words[_SEAL] = seals(words)
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
        """Store a new bid/ask for ``ticker`` (the last trade is kept); a side <= 0 or NaN is stored as NaN."""
        row = self._row(ticker)
        # Convert first: a bad value must raise before the row is marked busy, not during.
        values = (_price(bid), _price(ask), float(bid_size), float(ask_size), float(quote_time), float(receive_time))
        self._write(row, _QUOTE_SLOTS, values)

    def write_trade(self, ticker: str, price: float, size: float, receive_time: float) -> None:
        """Store the last trade of ``ticker`` (the bid/ask are kept)."""
        row = self._row(ticker)
        self._write(row, _TRADE_SLOTS, (float(price), float(size), float(receive_time)))

    def write_many(
        self,
        quotes: Mapping[int, Sequence[float]],
        trades: Mapping[int, Sequence[float]] | None = None,
        received: float | None = None,
    ) -> None:
        """Publish many rows at once: ``quotes`` maps a row to its six quote values (the order of
        :meth:`write_quote`'s), ``trades`` to its three trade values (:meth:`write_trade`'s);
        ``received``, if given, is every row's receive_time. :class:`QuoteBatch` builds them. One
        vectorised seqlocked store for them all: a row's seal costs microseconds in Python and
        almost nothing in numpy."""
        trades = trades or {}
        if len(quotes) + len(trades) <= _FEW_ROWS:  # numpy's fixed cost is more than a row's
            for slots, values in ((_QUOTE_SLOTS, quotes), (_TRADE_SLOTS, trades)):
                for row, fields in values.items():
                    stamped = fields if received is None else (*fields[:-1], received)
                    self._write(row, slots, tuple(stamped))
            return
        words = self._open().words
        rows = np.array(sorted(quotes.keys() | trades.keys()), dtype=np.intp)
        fresh = words[:, rows]  # a copy; the writer alone writes, so its own read is whole
        table = fresh.view(np.float64)
        for slots, values in ((_QUOTE_SLOTS, quotes), (_TRADE_SLOTS, trades)):
            if values:
                where = np.searchsorted(rows, np.fromiter(values, dtype=np.intp, count=len(values)))
                table[np.ix_(slots, where)] = np.array(list(values.values()), dtype=np.float64).T
        if received is not None:
            table[_RECEIVE_TIME] = received
        fresh[0] += np.uint64(2)
        fresh[_SEAL] = seals(fresh)
        words[0, rows] = fresh[0] - np.uint64(1)  # busy
        words[1:, rows] = fresh[1:]
        words[0, rows] = fresh[0]

    def repair_rows(self) -> int:
        """Blank the rows a dead writer left busy or half-written; returns how many.

        Only the single writer may call this, before it writes anything: the previous writer is
        gone, so nobody else can be in the middle of those rows. Their values may mix two
        quotes, so they are not kept: the ticker reads as never quoted until its next quote.
        """
        words = self._open().words
        broken = np.flatnonzero(_unsealed(words)).tolist()
        for row in broken:
            fresh = _blank_rows(1)[:_SEAL, 0].tolist()
            fresh[0] = (int(words[0, row]) | 1) + 1
            _store(words, row, fresh)
        return len(broken)

    def _write(self, row: int, slots: list[int], values: tuple[float, ...]) -> None:
        """Publish a new version of ``row`` with ``values`` at ``slots``, sealed."""
        words = self._open().words
        old = words[:, row].tolist()  # the writer alone writes, so its own read of the row is whole
        fields = list(_AS_FLOATS.unpack(_AS_WORDS.pack(*old[1:_SEAL])))
        for slot, value in zip(slots, values, strict=True):
            fields[slot - 1] = value
        _store(words, row, [old[0] + 2, *_AS_WORDS.unpack(_AS_FLOATS.pack(*fields))])

    # -- readers -----------------------------------------------------------------------

    def quote(self, ticker: str) -> Quote:
        """Return the latest consistent quote of ``ticker``."""
        return Quote(ticker, *_AS_FLOATS.unpack(_AS_WORDS.pack(*self._read_row(self._row(ticker))[1:_SEAL])))

    def bid_ask(self) -> dict[str, dict[str, float]]:
        """Return blockpaca's quote schema ``{"AAPL": {"bid": 150.25, "ask": 150.30}, ...}``.

        Only tickers quoted on both sides are in it (blockpaca required both sides > 0): a
        ticker never quoted, or whose bid or ask is missing, is left out. One vectorised
        consistent copy of the table is taken, so this stays fast for hundreds of tickers.
        """
        table = self._consistent_table()
        bids = table[_BID]
        asks = table[_ASK]
        quoted = ~(np.isnan(bids) | np.isnan(asks))
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
        return self._consistent_table()[1 + FIELDS.index(field)]

    def snapshot(self) -> pandas.DataFrame:
        """Return one row per ticker: every field plus ``mid``, ``spread_bps`` and ``age`` (seconds).

        A missing side is NaN, and so are the ``mid`` and ``spread_bps`` made from it.
        """
        import pandas as pd

        table = self._consistent_table()
        index = pd.Index(self.tickers, name="ticker")
        frame = pd.DataFrame(table[1:_SEAL].T, index=index, columns=list(FIELDS))
        bids = table[_BID]
        asks = table[_ASK]
        mid = (bids + asks) / 2.0
        received = table[_RECEIVE_TIME]
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["mid"] = mid
            frame["spread_bps"] = np.where(mid > 0, (asks - bids) / mid * 10_000.0, math.nan)
            frame["age"] = np.where(received > 0, time.time() - received, math.inf)
        return frame

    def _read_row(self, row: int) -> list[int]:
        """Copy one whole row (its words) whose seal matches, retrying while it does not."""
        words = self._open().words
        spins = 0
        deadline = 0.0
        while True:
            copy = words[:, row].tolist()  # one read of each word, as Python ints
            if not copy[0] & 1 and _seal_of(copy) == copy[_SEAL]:
                return copy
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
        """Copy the whole table (float64, one column per row); re-read one by one the rows whose seal fails."""
        words = self._open().words.copy()
        for row in np.flatnonzero(seals(words) != words[_SEAL]).tolist():
            words[:, row] = self._read_row(row)
        return words.view(np.float64)

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


class QuoteBatch:
    """The feed's writes gathered into one :meth:`QuoteBook.write_many`: a frame of quotes from the
    stream becomes one store, the latest values of each ticker winning, and every row's
    ``receive_time`` is the moment of that store (when readers can see it). Values are checked as
    they are added, so a bad one raises before anything is marked busy."""

    def __init__(self, book: QuoteBook) -> None:
        self.book = book
        self.quotes: dict[int, tuple[float, ...]] = {}
        self.trades: dict[int, tuple[float, ...]] = {}

    def __len__(self) -> int:
        return len(self.quotes) + len(self.trades)

    def quote(self, ticker: str, bid: float, ask: float, bid_size: float, ask_size: float, quote_time: float) -> None:
        """As :meth:`QuoteBook.write_quote`, at the next :meth:`flush`."""
        values = (_price(bid), _price(ask), float(bid_size), float(ask_size), float(quote_time), 0.0)
        self.quotes[self.book._row(ticker)] = values

    def trade(self, ticker: str, price: float, size: float) -> None:
        """As :meth:`QuoteBook.write_trade`, at the next :meth:`flush`."""
        self.trades[self.book._row(ticker)] = (float(price), float(size), 0.0)

    def flush(self) -> None:
        quotes, trades = self.quotes, self.trades
        self.quotes, self.trades = {}, {}
        self.book.write_many(quotes, trades, received=time.time())


def _attach(meta: Mapping[str, object]) -> QuoteBook:
    return QuoteBook.attach(meta)


def _make_views(memory: SharedMemory, count: int) -> _Views:
    words = np.ndarray((_WIDTH, count), dtype=np.uint64, buffer=memory.buf)
    return _Views(words=words, table=words.view(np.float64), seq_column=words[0])


def seals(words: np.ndarray) -> np.ndarray:
    """The seal of each row in ``words`` (uint64, shape (>= _SEAL, n), one column per row).

    A hash of the row's first _SEAL words: each word gets its own bijective mix and the mixes
    are summed (mod 2**64), so a row that differs from a sealed version in one word always
    fails, in several words with odds of about 2**-64.
    """
    mixed = words[:_SEAL] * _SEAL_MULTIPLIERS
    mixed ^= mixed >> _SHIFT_A
    mixed *= _SEAL_MIX
    mixed ^= mixed >> _SHIFT_B
    return mixed.sum(axis=0, dtype=np.uint64)


def _seal_of(row: Sequence[int]) -> int:
    """:func:`seals` of one row given as Python ints (no numpy call: a single row is faster so)."""
    total = 0
    for word, factor in zip(row[:_SEAL], _SEAL_FACTORS, strict=True):
        mixed = word * factor & _MASK
        mixed ^= mixed >> _SHIFT_A_INT
        mixed = mixed * _SEAL_MIX_INT & _MASK
        total += mixed ^ (mixed >> _SHIFT_B_INT)
    return total & _MASK


def _store(words: np.ndarray, row: int, fresh: list[int]) -> None:
    """Seal the row ``fresh`` and copy it over ``row``: sequence number odd, the other words, then even."""
    fresh.append(_seal_of(fresh))
    sequence = fresh[0]
    words[0, row] = sequence - 1  # busy; on CPUs that reorder stores, the seal is what protects
    words[1:, row] = fresh[1:]
    words[0, row] = sequence


def _unsealed(words: np.ndarray) -> np.ndarray:
    """True for each row that is busy (odd sequence number) or whose seal does not match its words.

    The seal alone would do (an odd number was never sealed); the parity test says it plainly.
    """
    return (seals(words) != words[_SEAL]) | (words[0] & np.uint64(1)).astype(bool)


def _blank_rows(count: int) -> np.ndarray:
    """``count`` rows (columns) of a never-quoted ticker: sequence 0, prices NaN, times 0; unsealed."""
    words = np.zeros((_WIDTH, count), dtype=np.uint64)
    table = words.view(np.float64)
    table[1:_SEAL] = math.nan
    table[_QUOTE_TIME] = 0.0
    table[_RECEIVE_TIME] = 0.0
    return words


def _price(value: float) -> float:
    """A bid or ask as stored: a positive finite price, or NaN for "no quote" (0, negative, NaN)."""
    price = float(value)
    return price if 0.0 < price < math.inf else math.nan


def _forget(memory: SharedMemory) -> None:
    """Take a segment that no longer exists off this process's resource tracker (POSIX only)."""
    if os.name == "posix":
        with suppress(Exception):
            resource_tracker.unregister(memory._name, "shared_memory")  # type: ignore[attr-defined]


def _checked_tickers(tickers: object) -> list[str]:
    """The book's row names: a list of distinct tickers in normal form (the rule of tickers.py)."""
    return normalize_tickers(tickers, "tickers", exact=True)


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
