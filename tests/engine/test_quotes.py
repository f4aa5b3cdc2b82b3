"""QuoteBook: round trips, real child processes, torn-read hammering, segment ownership."""

from __future__ import annotations

import math
import multiprocessing
import os
import pathlib
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from blockpaca_nb.errors import BlockpacaError, ConfigurationError
from blockpaca_nb.quotes import FIELDS, Quote, QuoteBatch, QuoteBook, seals

TICKERS = ("AAPL", "TSLA", "NVDA", "DIA")
SPAWN = multiprocessing.get_context("spawn")
WRITER_CAP_S = 120.0  # a writer child stops by itself after this, should its reader never say stop
HAS_DEV_SHM = pathlib.Path("/dev/shm").is_dir()
needs_dev_shm = pytest.mark.skipif(not HAS_DEV_SHM, reason="POSIX shared memory in /dev/shm only")


@pytest.fixture
def book() -> Iterator[QuoteBook]:
    quote_book = QuoteBook.create(TICKERS)
    yield quote_book
    quote_book.close()
    quote_book.unlink()


def segment_exists(name: str) -> bool:
    return (pathlib.Path("/dev/shm") / name).exists()


# -- in one process ---------------------------------------------------------------------------


def test_new_book_is_empty_and_stale(book: QuoteBook) -> None:
    assert book.tickers == TICKERS
    assert book.meta == {"name": book.meta["name"], "tickers": list(TICKERS)}
    assert isinstance(book.meta["name"], str)
    assert book.bid_ask() == {}
    quote = book.quote("AAPL")
    assert math.isnan(quote.bid) and math.isnan(quote.ask) and math.isnan(quote.last_price)
    assert (quote.quote_time, quote.receive_time) == (0.0, 0.0)
    assert quote.age() == math.inf
    assert math.isnan(quote.mid) and math.isnan(quote.spread_bps)


def test_quote_round_trip(book: QuoteBook) -> None:
    book.write_quote("TSLA", 250.0, 250.5, 100, 200, 1000.0, 1000.25)
    expected = Quote("TSLA", 250.0, 250.5, 100.0, 200.0, math.nan, math.nan, 1000.0, 1000.25)
    assert _same(book.quote("TSLA"), expected)
    book.write_trade("TSLA", 250.2, 7, 1001.0)
    quote = book.quote("TSLA")
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (250.0, 250.5, 100.0, 200.0)
    assert (quote.last_price, quote.last_size) == (250.2, 7.0)
    assert (quote.quote_time, quote.receive_time) == (1000.0, 1001.0)
    assert quote.mid == 250.25
    assert quote.spread_bps == pytest.approx(0.5 / 250.25 * 10_000)
    assert quote.age(now=1003.5) == 2.5


def _same(left: Quote, right: Quote) -> bool:
    """Equality where NaN equals NaN."""
    pairs = zip((left.ticker, *_numbers(left)), (right.ticker, *_numbers(right)), strict=True)
    return all(a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)) for a, b in pairs)


def _numbers(quote: Quote) -> tuple[float, ...]:
    return tuple(getattr(quote, field) for field in FIELDS)


def test_bid_ask_uses_blockpacas_schema_and_omits_unquoted(book: QuoteBook) -> None:
    book.write_quote("AAPL", 150.25, 150.30, 1, 1, 1.0, 2.0)
    book.write_quote("NVDA", 900.0, 900.5, 1, 1, 1.0, 2.0)
    book.write_trade("DIA", 484.74, 1, 3.0)  # a trade alone is not a quote
    quotes = book.bid_ask()
    assert quotes == {"AAPL": {"bid": 150.25, "ask": 150.30}, "NVDA": {"bid": 900.0, "ask": 900.5}}
    assert list(quotes) == ["AAPL", "NVDA"]
    assert all(type(value) is float for sides in quotes.values() for value in sides.values())
    for ticker in TICKERS:
        book.write_quote(ticker, 1.0, 2.0, 1, 1, 1.0, 2.0)
    assert list(book.bid_ask()) == list(TICKERS)


def test_snapshot_has_every_field_and_derived_columns(book: QuoteBook) -> None:
    now = time.time()
    book.write_quote("AAPL", 99.0, 101.0, 3, 4, now - 2, now - 1)
    book.write_trade("AAPL", 100.5, 10, now - 1)
    frame = book.snapshot()
    assert list(frame.index) == list(TICKERS)
    assert frame.index.name == "ticker"
    assert list(frame.columns) == [*FIELDS, "mid", "spread_bps", "age"]
    row = frame.loc["AAPL"]
    assert (row["bid"], row["ask"], row["last_price"], row["mid"]) == (99.0, 101.0, 100.5, 100.0)
    assert row["spread_bps"] == pytest.approx(200.0)
    assert 0.9 < row["age"] < 30
    assert frame.loc["TSLA", "age"] == math.inf
    assert math.isnan(frame.loc["TSLA", "mid"])


def test_unknown_ticker_is_a_clear_key_error(book: QuoteBook) -> None:
    with pytest.raises(KeyError, match="'MSFT' is not in this QuoteBook"):
        book.quote("MSFT")
    with pytest.raises(KeyError, match="MSFT"):
        book.write_quote("MSFT", 1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(
    ("tickers", "fragment"),
    [([], "at least one"), (["AAPL", "AAPL"], "repeated: AAPL"), ("AAPL", "not the string"), (["", "X"], "non-empty")],
)
def test_bad_ticker_lists_are_configuration_errors(tickers: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        QuoteBook.create(tickers)


def test_the_book_uses_the_one_ticker_rule_strictly_where_the_session_reads_generously() -> None:
    from blockpaca_nb.tickers import normalize_tickers

    assert normalize_tickers(" aapl,MSFT,AAPL") == ["AAPL", "MSFT"]  # what a user types to a Session
    with pytest.raises(ConfigurationError, match="' aapl' is not written as a ticker; write 'AAPL'"):
        QuoteBook.create([" aapl"])  # a row name is used verbatim by every writer and reader
    with pytest.raises(ConfigurationError, match="'BRK B' is not a ticker"):
        QuoteBook.create(["BRK B"])


def test_bad_meta_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="shm_meta"):
        QuoteBook.attach({"tickers": ["AAPL"]})


def test_a_bad_value_is_refused_before_the_row_is_marked_busy(book: QuoteBook) -> None:
    book.write_quote("AAPL", 1.0, 2.0, 1, 1, 1.0, 1.0)
    with pytest.raises((TypeError, ValueError)):
        book.write_quote("AAPL", 3.0, "n/a", 1, 1, 1.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        book.write_trade("AAPL", None, 1, 1.0)  # type: ignore[arg-type]
    assert (book.quote("AAPL").bid, book.quote("AAPL").ask) == (1.0, 2.0)  # no wait, no half write


@pytest.mark.parametrize("others", [(), ("TSLA", "NVDA", "DIA")], ids=["one row", "a vectorised store"])
def test_a_batch_stores_the_latest_of_each_ticker_stamped_when_stored(book: QuoteBook, others: tuple[str, ...]) -> None:
    batch = QuoteBatch(book)
    batch.quote("AAPL", 1.0, 2.0, 3, 4, 5.0)
    batch.quote("AAPL", 1.5, 2.5, 3, 4, 6.0)  # the later quote of a ticker wins
    batch.trade("AAPL", 2.0, 7)
    for ticker in others:
        batch.quote(ticker, 10.0, 11.0, 1, 1, 5.0)
    with pytest.raises((TypeError, ValueError)):
        batch.quote("NVDA", 3.0, "n/a", 1, 1, 1.0)  # type: ignore[arg-type]  # refused as it is added
    assert book.quote("AAPL").receive_time == 0  # nothing is stored before the flush
    before = time.time()
    batch.flush()
    after = time.time()
    aapl = book.quote("AAPL")
    assert (aapl.bid, aapl.ask, aapl.bid_size, aapl.ask_size, aapl.quote_time) == (1.5, 2.5, 3.0, 4.0, 6.0)
    assert (aapl.last_price, aapl.last_size) == (2.0, 7.0)
    assert all(before <= book.quote(ticker).receive_time <= after for ticker in ("AAPL", *others))
    assert set(book.bid_ask()) == {"AAPL", *others} and len(batch) == 0


def test_closed_book_says_so(book: QuoteBook) -> None:
    other = QuoteBook.attach(book.meta)
    other.close()
    other.close()
    assert "closed" in repr(other)
    with pytest.raises(BlockpacaError, match="closed"):
        other.bid_ask()
    with pytest.raises(BlockpacaError, match="only the process that created"):
        other.unlink()


def test_pickled_book_attaches(book: QuoteBook) -> None:
    book.write_quote("DIA", 1.0, 2.0, 3, 4, 5.0, 6.0)
    copy = pickle.loads(pickle.dumps(book))
    try:
        assert copy.meta == book.meta
        assert copy.bid_ask() == {"DIA": {"bid": 1.0, "ask": 2.0}}
    finally:
        copy.close()


def test_bid_ask_for_500_tickers_reads_every_row() -> None:
    """Every row of a 500-ticker book, in one call (its speed is bench_quotebook.py's job)."""
    tickers = [f"T{i:03d}" for i in range(500)]
    with QuoteBook.create(tickers) as big:
        for i, ticker in enumerate(tickers):
            big.write_quote(ticker, 100.0 + i, 100.01 + i, 1, 1, 1.0, 1.0)
        quotes = big.bid_ask()
    assert list(quotes) == tickers
    wrong = [t for i, t in enumerate(tickers) if quotes[t] != {"bid": 100.0 + i, "ask": 100.01 + i}]
    assert not wrong, f"rows read wrong: {wrong[:5]}"


# -- the seqlock: busy rows are waited out, never returned half-written -----------------------

SEAL = len(FIELDS) + 1  # index of the seal word in a row


def _version(book: QuoteBook, ticker: str, value: float) -> np.ndarray:
    """A sealed next version of ``ticker``'s row with every field ``value`` (not stored yet)."""
    row = book.tickers.index(ticker)
    fresh = book._open().words[:, row].copy()
    fresh.view(np.float64)[1:SEAL] = value
    fresh[0] = int(fresh[0]) + 2
    fresh[SEAL] = seals(fresh[:, np.newaxis])[0]
    return fresh


def _store(book: QuoteBook, ticker: str, words: np.ndarray, which: Any = slice(None)) -> None:
    """Store some words of a row, in no protocol's order: what a reader on ARM64 may see."""
    book._open().words[which, book.tickers.index(ticker)] = words[which]


def test_reader_waits_for_a_busy_row_and_returns_the_finished_write(book: QuoteBook) -> None:
    book.write_quote("NVDA", 1.0, 1.0, 1, 1, 1.0, 1.0)

    def start_write() -> np.ndarray:
        fresh = _version(book, "NVDA", 7.0)
        _store(book, "NVDA", fresh - np.array([1] + [0] * SEAL, dtype=np.uint64), [0])  # odd: busy
        _store(book, "NVDA", np.full(SEAL + 1, 6.0).view(np.uint64), [1])  # half of a write never to be seen
        return fresh

    def finish_write(fresh: np.ndarray) -> None:
        time.sleep(0.05)
        _store(book, "NVDA", fresh)

    for read in (lambda: _numbers(book.quote("NVDA")), lambda: tuple(book.bid_ask()["NVDA"].values())):
        finisher = threading.Thread(target=finish_write, args=(start_write(),))
        finisher.start()
        values = read()
        finisher.join()
        assert set(values) == {7.0}, values


def test_a_writer_that_died_mid_write_is_reported(book: QuoteBook) -> None:
    book.write_quote("AAPL", 1.0, 2.0, 1, 1, 1.0, 1.0)
    book._open().words[0, 0] += 1
    start = time.monotonic()
    with pytest.raises(BlockpacaError, match="half-written"):
        book.quote("AAPL")
    assert 0.2 <= time.monotonic() - start < 5
    with pytest.raises(BlockpacaError, match="'AAPL'"):
        book.bid_ask()
    book._open().words[0, 0] -= 1  # the sealed version is whole again
    assert book.quote("AAPL").bid == 1.0


def test_the_next_writer_blanks_rows_left_busy_or_torn(book: QuoteBook) -> None:
    for ticker in TICKERS:
        book.write_quote(ticker, 1.0, 2.0, 1, 1, 1.0, 1.0)
    book._open().words[0, 0] += 1  # AAPL: busy
    _store(book, "TSLA", _version(book, "TSLA", 5.0), [0, 1, 2])  # TSLA: torn, with an even number
    assert book.repair_rows() == 2
    assert book.repair_rows() == 0
    assert sorted(book.bid_ask()) == ["DIA", "NVDA"]
    assert book.quote("AAPL").age() == math.inf and math.isnan(book.quote("TSLA").bid)
    book.write_quote("TSLA", 3.0, 4.0, 1, 1, 1.0, 1.0)
    assert book.bid_ask()["TSLA"] == {"bid": 3.0, "ask": 4.0}


# -- torn rows whatever the memory order (ARM64): the seal catches every mix ---------------------


def _torn_mixes(old: np.ndarray, new: np.ndarray) -> list[np.ndarray]:
    """Every row made of some words of ``old`` and the others of ``new``, other than the two."""
    mixes = []
    for mask in range(1, 2 ** len(old) - 1):
        picks = np.array([(mask >> word) & 1 for word in range(len(old))], dtype=bool)
        mix = np.where(picks, new, old)
        if not (np.array_equal(mix, old) or np.array_equal(mix, new)):
            mixes.append(mix)
    return mixes


def test_every_mix_of_two_versions_fails_the_seal(book: QuoteBook) -> None:
    book.write_quote("AAPL", 150.0, 150.5, 100, 100, 1.0, 1.0)
    old = book._open().words[:, 0].copy()
    book.write_quote("AAPL", 151.0, 151.5, 200, 200, 2.0, 2.0)  # both sizes change alike
    new = book._open().words[:, 0].copy()
    mixes = np.column_stack(_torn_mixes(old, new))
    assert mixes.shape[1] > 250
    assert (seals(mixes) != mixes[SEAL]).all()
    assert (seals(np.column_stack([old, new])) == np.array([old[SEAL], new[SEAL]])).all()


def test_a_torn_row_with_an_even_sequence_number_is_never_returned(book: QuoteBook) -> None:
    """What an ARM64 reader can see: the finished sequence number, but only some of the new fields."""
    book.write_quote("DIA", 1.0, 1.0, 1, 1, 1.0, 1.0)
    fresh = _version(book, "DIA", 9.0)
    _store(book, "DIA", fresh, [0, 1, 3, SEAL])  # seq and seal of the new version, bid and bid_size
    with pytest.raises(BlockpacaError, match="'DIA' stayed half-written"):
        book.quote("DIA")
    with pytest.raises(BlockpacaError, match="'DIA'"):
        book.snapshot()
    finisher = threading.Timer(0.05, _store, args=(book, "DIA", fresh))
    finisher.start()
    quote = book.quote("DIA")  # the reader retries until the rest of the write is visible
    finisher.join()
    assert set(_numbers(quote)) == {9.0}


# -- other processes --------------------------------------------------------------------------


def _child_reads_then_writes(meta: dict[str, object], results: Any) -> None:
    book = QuoteBook.attach(meta)
    results.put((book.bid_ask(), book.quote("AAPL")))
    book.write_quote("TSLA", 251.0, 251.5, 5, 6, 7.0, 8.0)
    book.write_trade("TSLA", 251.25, 9, 10.0)
    book.close()
    results.put("written")


def test_child_process_attaches_reads_and_writes(book: QuoteBook) -> None:
    book.write_quote("AAPL", 150.25, 150.30, 100, 200, 1.5, 2.5)
    results = SPAWN.Queue()
    child = SPAWN.Process(target=_child_reads_then_writes, args=(book.meta, results))
    child.start()
    quotes, aapl = results.get(timeout=60)
    assert results.get(timeout=60) == "written"
    child.join(timeout=60)
    assert child.exitcode == 0
    assert quotes == {"AAPL": {"bid": 150.25, "ask": 150.30}}
    assert _same(aapl, Quote("AAPL", 150.25, 150.30, 100.0, 200.0, math.nan, math.nan, 1.5, 2.5))
    tsla = book.quote("TSLA")
    assert _numbers(tsla) == (251.0, 251.5, 5.0, 6.0, 251.25, 9.0, 7.0, 10.0)
    if HAS_DEV_SHM:
        assert segment_exists(str(book.meta["name"]))


def _hammer(meta: dict[str, object], ready: Any, stop: Any, batched: bool = False) -> None:
    """Write rows whose values all equal the write's counter k: quotes on even k, trades on odd k;
    ``batched``: all rows of a k in one `write_many`, as the feed stores a frame."""
    book = QuoteBook.attach(meta)
    ready.set()
    tickers = book.tickers
    k = 1
    end = time.monotonic() + WRITER_CAP_S
    while not stop.is_set() and time.monotonic() < end:
        for _ in range(200):
            k += 1
            value = float(k)
            if batched:
                rows = {row: (value,) * (3 if k % 2 else 6) for row in range(len(tickers))}
                book.write_many({} if k % 2 else rows, rows if k % 2 else {}, received=value)
                continue
            for ticker in tickers:
                if k % 2:
                    book.write_trade(ticker, value, value, value)
                else:
                    book.write_quote(ticker, value, value, value, value, value, value)
    book.close()


def _check_row(values: tuple[float, ...]) -> None:
    bid, ask, bid_size, ask_size, last_price, last_size, quote_time, receive_time = values
    assert bid == ask == bid_size == ask_size == quote_time, values
    assert last_price == last_size, values
    assert receive_time == max(bid, last_price), values


@pytest.mark.slow
@pytest.mark.parametrize("batched", [False, True], ids=["row by row", "batched"])
def test_readers_never_see_a_torn_row_while_another_process_hammers(batched: bool) -> None:
    tickers = [f"S{i}" for i in range(8)]
    with QuoteBook.create(tickers) as book:
        for ticker in tickers:
            book.write_quote(ticker, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
            book.write_trade(ticker, 1.0, 1.0, 1.0)
        ready, stop = SPAWN.Event(), SPAWN.Event()
        writer = SPAWN.Process(target=_hammer, args=(book.meta, ready, stop, batched))
        writer.start()
        assert ready.wait(60)
        reads, seen = 0, set()
        deadline = time.monotonic() + WRITER_CAP_S / 2
        while (reads < 1000 or len(seen) < 100) and time.monotonic() < deadline:
            for ticker in tickers:
                quote = book.quote(ticker)
                _check_row(_numbers(quote))
                seen.add(quote.receive_time)
            for sides in book.bid_ask().values():
                assert sides["bid"] == sides["ask"], sides
            if reads % 64 == 0:
                table = book.snapshot()[list(FIELDS)].to_numpy()
                for values in table.tolist():
                    _check_row(tuple(values))
            reads += 1
        stop.set()
        writer.join(timeout=60)
        assert writer.exitcode == 0
    assert reads >= 1000, reads
    assert len(seen) >= 100, "the reader should have seen the writer make progress"


# -- who frees the segment ------------------------------------------------------------------------


@needs_dev_shm
def test_unlink_frees_the_segment_and_is_idempotent() -> None:
    book = QuoteBook.create(TICKERS)
    name = str(book.meta["name"])
    assert segment_exists(name)
    book.close()
    assert segment_exists(name), "close() only detaches"
    book.unlink()
    assert not segment_exists(name)
    book.unlink()
    with pytest.raises(FileNotFoundError):
        QuoteBook.attach(book.meta)


@needs_dev_shm
def test_context_manager_owner_unlinks_on_exit() -> None:
    with QuoteBook.create(TICKERS) as book:
        name = str(book.meta["name"])
        assert segment_exists(name)
    assert not segment_exists(name)


ATTACH_AND_EXIT = """
import sys
from blockpaca_nb.quotes import QuoteBook
book = QuoteBook.attach({"name": sys.argv[1], "tickers": sys.argv[2].split(",")})
print(book.quote("AAPL").bid)
"""


@needs_dev_shm
def test_attached_processes_exiting_leave_the_segment_alone(book: QuoteBook) -> None:
    book.write_quote("AAPL", 42.0, 43.0, 1, 1, 1.0, 1.0)
    name = str(book.meta["name"])
    for _ in range(2):  # separate interpreters, each with its own resource tracker
        child = subprocess.run(
            [sys.executable, "-c", ATTACH_AND_EXIT, name, ",".join(TICKERS)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "always"},
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "42.0"
        assert "leaked" not in child.stderr and "resource_tracker" not in child.stderr, child.stderr
        assert segment_exists(name)
    again = QuoteBook.attach(book.meta)
    assert again.quote("AAPL").bid == 42.0
    again.close()


def test_flat_layout_matches_the_documented_row() -> None:
    with QuoteBook.create(["AAPL", "TSLA"]) as book:
        book.write_quote("TSLA", 1.0, 2.0, 3.0, 4.0, 7.0, 8.0)
        book.write_trade("TSLA", 5.0, 6.0, 8.5)
        views = book._open()
        assert views.table[1:SEAL, 1].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5]
        assert int(views.seq_column[1]) == 4  # two writes, each +2
        assert views.words[SEAL].tolist() == seals(views.words).tolist()
        assert views.words.shape == (SEAL + 1, 2)


REMOVED_BEHIND_OUR_BACK = """
import os
from blockpaca_nb.quotes import QuoteBook
book = QuoteBook.create(["AAPL"])
os.unlink("/dev/shm/" + book.meta["name"])
book.close()
book.unlink()
print("ok")
"""


@needs_dev_shm
def test_owner_exits_quietly_when_the_segment_was_removed_by_someone_else() -> None:
    child = subprocess.run([sys.executable, "-c", REMOVED_BEHIND_OUR_BACK], capture_output=True, text=True, timeout=60)
    assert (child.returncode, child.stdout.strip(), child.stderr) == (0, "ok", "")


def _torn_writer(meta: dict[str, object], ready: Any, stop: Any) -> None:
    """Publish versions whose fields all equal k, storing each one's words in a shuffled order.

    No sequence-number protocol at all: the row always carries an even number, and readers see
    every partial state a CPU that reorders stores could show them.
    """
    import random

    book = QuoteBook.attach(meta)
    words = book._open().words
    ready.set()
    order = list(range(SEAL + 1))
    k, end = 1, time.monotonic() + WRITER_CAP_S
    while not stop.is_set() and time.monotonic() < end:
        k += 1
        row = k % len(book.tickers)
        fresh = words[:, row].copy()
        fresh.view(np.float64)[1:SEAL] = float(k)
        fresh[0] = int(fresh[0]) + 2
        fresh[SEAL] = seals(fresh[:, np.newaxis])[0]
        random.shuffle(order)
        for word in order:
            words[word, row] = fresh[word]
            if random.random() < 0.3:
                time.sleep(0)  # let a reader in between two stores
    book.close()


@pytest.mark.slow
def test_readers_never_see_a_row_torn_in_any_order_by_another_process() -> None:
    tickers = [f"S{i}" for i in range(4)]
    with QuoteBook.create(tickers) as book:
        for ticker in tickers:
            book.write_quote(ticker, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
            book.write_trade(ticker, 1.0, 1.0, 1.0)
        ready, stop = SPAWN.Event(), SPAWN.Event()
        writer = SPAWN.Process(target=_torn_writer, args=(book.meta, ready, stop))
        writer.start()
        assert ready.wait(60)
        reads, seen = 0, set()
        deadline = time.monotonic() + WRITER_CAP_S / 2
        while (reads < 1000 or len(seen) < 100) and time.monotonic() < deadline:
            for ticker in tickers:
                values = _numbers(book.quote(ticker))
                assert len(set(values)) == 1, values
                seen.add(values[0])
            table = book.snapshot()[list(FIELDS)].to_numpy()
            assert all(len(set(values)) == 1 for values in table.tolist()), table
            reads += 1
        stop.set()
        writer.join(timeout=60)
        assert writer.exitcode == 0
    assert reads >= 1000, reads
    assert len(seen) >= 100, "the reader should have seen the writer make progress"


# -- one-sided quotes: a side of 0, negative or NaN is "no quote" --------------------------------


@pytest.mark.parametrize("missing", [0.0, -1.0, math.nan, math.inf, 0])
def test_a_side_without_a_price_is_stored_as_missing(book: QuoteBook, missing: float) -> None:
    book.write_quote("AAPL", 150.0, 150.5, 100, 200, 1.0, 2.0)
    book.write_quote("AAPL", missing, 151.0, 0, 300, 3.0, 4.0)  # IEX: an empty bid side
    quote = book.quote("AAPL")
    assert math.isnan(quote.bid) and quote.ask == 151.0
    assert (quote.bid_size, quote.ask_size, quote.quote_time) == (0.0, 300.0, 3.0)
    assert math.isnan(quote.mid) and math.isnan(quote.spread_bps)
    book.write_quote("TSLA", 250.0, missing, 5, 0, 1.0, 2.0)
    assert math.isnan(book.quote("TSLA").ask) and book.quote("TSLA").bid == 250.0
    frame = book.snapshot()
    for ticker in ("AAPL", "TSLA"):
        assert math.isnan(frame.loc[ticker, "mid"]) and math.isnan(frame.loc[ticker, "spread_bps"])
    assert math.isnan(frame.loc["AAPL", "bid"]) and math.isnan(frame.loc["TSLA", "ask"])
    assert math.isnan(book.column("bid")[0])


def test_bid_ask_leaves_out_one_sided_tickers_until_both_sides_are_priced(book: QuoteBook) -> None:
    book.write_quote("AAPL", 0.0, 151.0, 0, 1, 1.0, 1.0)
    book.write_quote("TSLA", 250.0, 0.0, 1, 0, 1.0, 1.0)
    book.write_quote("NVDA", 900.0, 900.5, 1, 1, 1.0, 1.0)
    assert book.bid_ask() == {"NVDA": {"bid": 900.0, "ask": 900.5}}
    book.write_quote("AAPL", 150.9, 151.0, 1, 1, 2.0, 2.0)
    assert book.bid_ask() == {"AAPL": {"bid": 150.9, "ask": 151.0}, "NVDA": {"bid": 900.0, "ask": 900.5}}
    assert book.quote("AAPL").mid == pytest.approx(150.95)
