"""Books: one per strategy — its positions, cash and P&L, made by the fills of its own orders only.

Several strategies share one account, and the broker knows only the account. Every order carries the
strategy that sent it in its client order id (see :func:`.orders.new_client_order_id`) and so in its
trade-log rows, so each fill lands in the book of the strategy that sent the order. The session's own
orders (one sent from a cell with ``s.submit``) go to the book named ``session``. The session's
positions are the sum of the books, which reconciliation compares with the broker.

Three moves are not fills of a strategy's own orders, and each keeps the sum of the books equal to
what the broker holds and their P&L equal to the account's, to the cent:

- a **liquidation's fill** (the session's control orders, tagged ``session`` in their client order
  ids, which trade the net position) closes the books that hold the position, in name order;
- **settling**: when the session is flat in a symbol but two books are not (one long, one short: the
  account holds nothing), both are closed against each other at one price; their cash moves sum to 0;
- **hand-over**: a new main strategy (a swap) takes over the old one's positions at the current price
  (the old one keeps the P&L it made up to the swap), and the fills of the old one's orders still on
  their way land in the new one's book from then on.

P&L is average-cost, as :mod:`.pnl` computes it from a trade log: realised on what a fill closes,
unrealised on what is open, marked to the quotes' mid price.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .fees import FeeSchedule

SESSION_BOOK = "session"  # the book of the session's own orders from cells (no strategy's name can be this)
CONTROL_TAG = "session"  # what a session liquidation's (and the kill switch's) orders carry in their ids
HISTORY_POINTS = 20_000
BOOK_COLUMNS = ("strategy", "ticker", "quantity", "avg_price", "realized_pl", "unrealized_pl", "fees")  # Books.rows()
_NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Holding:
    """A signed position in one symbol (negative: short) and its average entry price."""

    quantity: float = 0.0
    avg_price: float = 0.0


@dataclass
class Book:
    """One strategy's virtual sub-account. ``cash`` starts at its budget (0 without one) and moves by
    every fill; ``realized`` is what closed positions made."""

    name: str
    budget: float | None = None
    holdings: dict[str, Holding] = field(default_factory=dict)
    cash: float = 0.0
    realized_by: dict[str, float] = field(default_factory=dict)  # realised P&L per ticker
    fees: float = 0.0
    fees_by: dict[str, float] = field(default_factory=dict)  # fees (commissions, regulatory) per ticker
    fills: int = 0
    orders: int = 0  # orders sent
    day_start_pnl: float = 0.0  # the P&L when today began (the daily-loss limit counts from here)
    day: str = ""

    def __post_init__(self) -> None:
        self.cash = float(self.budget or 0.0)
        self.day = self.day or trading_day()  # a new book starts the day at a P&L of 0

    def fill(self, ticker: str, signed_qty: float, price: float) -> None:
        """Move the book by one fill: realise what it closes, average in what it opens."""
        holding = self.holdings.setdefault(ticker, Holding())
        before = holding.quantity
        after = round(before + signed_qty, 9) + 0.0
        if before and (before > 0) != (signed_qty > 0):
            closed = min(abs(signed_qty), abs(before))
            made = closed * (price - holding.avg_price) * (1 if before > 0 else -1)
            self.realized_by[ticker] = self.realized_by.get(ticker, 0.0) + made
            if after and (after > 0) != (before > 0):
                holding.avg_price = price  # crossed flat: the rest opens at this price
        elif after:
            holding.avg_price = (before * holding.avg_price + signed_qty * price) / after
        holding.quantity = after
        if not after:
            del self.holdings[ticker]
        self.cash -= signed_qty * price
        self.fills += 1

    @property
    def realized(self) -> float:
        return sum(self.realized_by.values())

    def positions(self) -> dict[str, float]:
        return {ticker: h.quantity for ticker, h in self.holdings.items()}

    def unrealized(self, marks: Mapping[str, float]) -> float:
        return sum(h.quantity * (marks.get(t, h.avg_price) - h.avg_price) for t, h in self.holdings.items())

    def pay(self, ticker: str, fee: float) -> None:
        """A fee for a fill of ``ticker``: out of the book's cash and its P&L."""
        self.fees += fee
        self.fees_by[ticker] = self.fees_by.get(ticker, 0.0) + fee
        self.cash -= fee

    def pnl(self, marks: Mapping[str, float]) -> float:
        """Realised + unrealised − fees."""
        return self.realized + self.unrealized(marks) - self.fees

    def equity(self, marks: Mapping[str, float]) -> float:
        """Cash plus what the positions are worth: the budget plus the P&L."""
        return self.cash + sum(h.quantity * marks.get(t, h.avg_price) for t, h in self.holdings.items())

    def as_blockpaca(self) -> list[dict[str, Any]]:
        """The book's positions in blockpaca's schema, as ``ctx.get_current_data()`` returns them."""
        return [
            {
                "ticker": t,
                "quantity": h.quantity,
                "bought_at": round(h.avg_price, 6),
                "cost_basis": round(h.quantity * h.avg_price, 6),
            }
            for t, h in self.holdings.items()
        ]


class Books:
    """Every strategy's book; safe to read from any thread while fills arrive."""

    def __init__(self, fee_schedule: FeeSchedule | None = None) -> None:
        self.fee_schedule = fee_schedule  # the regulatory fees the account pays per fill (live); None: none
        self._books: dict[str, Book] = {SESSION_BOOK: Book(SESSION_BOOK)}
        self._lock = threading.Lock()
        self._working: dict[str, tuple[str, str, float]] = {}  # client order id -> (book, ticker, signed open qty)
        self._forward: dict[str, str] = {}  # a book that handed over -> the book that took over
        self.history: deque[tuple[float, str, float]] = deque(maxlen=HISTORY_POINTS)  # (time, book, P&L)

    def open(self, name: str, budget: float | None = None) -> Book:
        """The book of ``name`` (made on first use) with ``budget``: re-registering a strategy with
        another moves its cash by the difference (its P&L stays), without one its book has none."""
        with self._lock:
            book = self._books.get(name)
            if book is None:
                book = self._books[name] = Book(name, budget)
            else:
                book.cash += float(budget or 0.0) - float(book.budget or 0.0)
                book.budget = None if budget is None else float(budget)
            return book

    def positions_of(self, name: str) -> dict[str, float]:
        """One book's signed shares per ticker (a copy)."""
        with self._lock:
            book = self._books.get(name)
            return book.positions() if book is not None else {}

    def blockpaca_positions(self, name: str) -> list[dict[str, Any]]:
        """One book's positions in blockpaca's schema (a copy), as ``ctx.get_current_data()`` gives them."""
        with self._lock:
            book = self._books.get(name)
            return book.as_blockpaca() if book is not None else []

    def view(self, name: str | None, marks: Mapping[str, float]) -> BookView:
        """One book (or, with None, the session's net over every book) as the limits check it: read in
        one go under the lock, so a fill arriving meanwhile never tears it."""
        with self._lock:
            working = self._working_by_side(name)
            if name is None:
                positions: dict[str, float] = {}
                for book in self._books.values():
                    for ticker, holding in book.holdings.items():
                        positions[ticker] = positions.get(ticker, 0.0) + holding.quantity
                pnl = sum(book.pnl(marks) for book in self._books.values())
                return BookView(positions, *working, pnl, None)
            book = self._books.get(name)
            if book is None:
                return BookView({}, *working, 0.0, None)
            equity = book.equity(marks) if book.budget is not None else None
            return BookView(book.positions(), *working, book.pnl(marks), equity)

    def _working_by_side(self, name: str | None) -> tuple[dict[str, float], dict[str, float]]:
        buys: dict[str, float] = {}
        sells: dict[str, float] = {}
        for book, ticker, qty in self._working.values():
            if name is None or self._resolve(book) == name:
                side = buys if qty > 0 else sells
                side[ticker] = side.get(ticker, 0.0) + qty
        return buys, sells

    def summary(self, name: str) -> tuple[int, int] | None:
        """(orders sent, symbols held) of a book, or None without one."""
        with self._lock:
            book = self._books.get(name)
            return None if book is None else (book.orders, len(book.holdings))

    def book(self, name: str) -> Book | None:
        """The live book (for tests and single-threaded use; threads read through the methods above)."""
        return self._books.get(name)

    # ----------------------------------------------------------------- orders on their way
    def sent(self, client_order_id: str, book: str, ticker: str, signed_qty: float) -> None:
        """An order left for the broker: until it ends, it counts toward its book's limits."""
        with self._lock:
            self._working[client_order_id] = (book, ticker, signed_qty)
            self._book_for(book).orders += 1

    def _order_moved(self, row: Mapping[str, Any], ended: bool) -> None:
        cid = str(row.get("client_order_id") or "")
        entry = self._working.get(cid)
        if entry is None:
            return
        if ended:
            del self._working[cid]
            return
        quantity = row.get("fill_qty")
        if quantity:
            book, ticker, qty = entry
            left = qty - float(quantity) if qty > 0 else qty + float(quantity)
            self._working[cid] = (book, ticker, left if (left > 0) == (qty > 0) else 0.0)

    # ----------------------------------------------------------------- fills
    def apply(
        self, row: Mapping[str, Any], *, ended: bool, marks: Mapping[str, float] | None = None, commission: float = 0.0
    ) -> None:
        """Book the fill in a trade-log row of one of the session's orders (rows without one only end
        or shrink the order's open quantity). ``commission``: what the fill cost besides the
        regulatory fees (replay's commission option), paid as they are, by the books it moved."""
        quantity, price = row.get("fill_qty"), row.get("fill_price")
        with self._lock:
            self._order_moved(row, ended)
            if not quantity or price is None:
                return
            side = str(row.get("side"))
            signed = float(quantity) if side == "buy" else -float(quantity)
            ticker, strategy = str(row.get("ticker")), str(row.get("strategy") or "")
            if strategy == CONTROL_TAG:
                moved = self._close_books(ticker, signed, float(price))
            else:
                book = self._book_for(strategy)
                book.fill(ticker, signed, float(price))
                moved = [(book, signed)]
            self._charge_fees(moved, ticker, side, float(quantity), float(price), commission)
            if marks is not None:
                self._sample(marks)

    def _resolve(self, name: str) -> str:
        """The book that now answers for ``name`` (a main strategy that was swapped out forwards to
        the one that took over its positions)."""
        seen = {name}
        while name in self._forward and self._forward[name] not in seen:
            name = self._forward[name]
            seen.add(name)
        return name

    def _book_for(self, name: str) -> Book:
        name = self._resolve(name or SESSION_BOOK)
        if name not in self._books:
            self._books[name] = Book(name)
        return self._books[name]

    def _close_books(self, ticker: str, signed_qty: float, price: float) -> list[tuple[Book, float]]:
        """A liquidation's fill closes the books holding the other side, in name order; anything
        beyond (a position the account held outside the session) moves no book. Returns what each
        book took."""
        left, moved = signed_qty, []
        for name in sorted(self._books):
            held = self._books[name].holdings.get(ticker)
            if not left or held is None or (held.quantity > 0) == (left > 0):
                continue
            take = min(abs(left), abs(held.quantity)) * (1 if left > 0 else -1)
            self._books[name].fill(ticker, take, price)
            moved.append((self._books[name], take))
            left = round(left - take, 9)
        return moved

    def _charge_fees(
        self, moved: list[tuple[Book, float]], ticker: str, side: str, quantity: float, price: float, commission: float
    ) -> None:
        """A fill's regulatory fees and commission, out of the books it moved, each by its share of the
        shares (a liquidation's, by the shares it closed in each; the share of a position held outside
        the session is the account's, no book's)."""
        fee = commission + (self.fee_schedule.on_fill(side, quantity, price) if self.fee_schedule is not None else 0.0)
        if not fee or not quantity:
            return
        for book, shares in moved:
            book.pay(ticker, fee * abs(shares) / quantity)

    def unforward(self, name: str) -> None:
        """``name`` runs on its own again (alongside): its fills are its own from now on."""
        with self._lock:
            self._forward.pop(name, None)

    def close_all(self, marks: Mapping[str, float]) -> list[tuple[str, str, float]]:
        """The account is flat (flattened whole): positions books still hold were closed outside the
        session; close them at the mark (their average price without one). Returns (book, ticker, qty)."""
        closed = []
        with self._lock:
            for name, book in self._books.items():
                for ticker, holding in list(book.holdings.items()):
                    closed.append((name, ticker, holding.quantity))
                    book.fill(ticker, -holding.quantity, marks.get(ticker, holding.avg_price))
        return closed

    def settle_flat(self, marks: Mapping[str, float]) -> list[tuple[str, str, float, float]]:
        """Every symbol the session is flat in while books are not: settle it (see :meth:`settle`) at
        its mark, or at the first holder's average price. Returns (book, ticker, quantity, price)."""
        with self._lock:
            held: dict[str, list[Holding]] = {}
            for book in self._books.values():
                for ticker, holding in book.holdings.items():
                    held.setdefault(ticker, []).append(holding)
        done = []
        for ticker, holdings in held.items():
            if abs(sum(h.quantity for h in holdings)) > 1e-9:
                continue
            price = marks.get(ticker, holdings[0].avg_price)
            done += [(name, ticker, quantity, price) for name, quantity in self.settle(ticker, price)]
        return done

    def settle(self, ticker: str, price: float) -> list[tuple[str, float]]:
        """The session is flat in ``ticker`` but books are not (they net to zero): close each at
        ``price``. Returns the (book, quantity) closed; nothing when the books do not net to zero."""
        with self._lock:
            holders = [(n, b.holdings[ticker].quantity) for n, b in self._books.items() if ticker in b.holdings]
            if not holders or abs(sum(q for _, q in holders)) > 1e-9:
                return []
            for name, quantity in holders:
                self._books[name].fill(ticker, -quantity, price)
            return holders

    def hand_over(self, old: str, new: str, marks: Mapping[str, float]) -> None:
        """``new`` takes over ``old``'s positions at the current mark (its average price without one),
        and the fills of ``old``'s orders still on their way from now on."""
        with self._lock:
            self._forward.pop(new, None)  # a strategy that becomes main again answers for itself
            source, target = self._book_for(old), self._book_for(new)
            self._forward[old] = new
            for ticker, holding in list(source.holdings.items()):
                price = marks.get(ticker, holding.avg_price)
                quantity = holding.quantity
                source.fill(ticker, -quantity, price)
                target.fill(ticker, quantity, price)

    # ----------------------------------------------------------------- views
    def net(self, without: str | None = None) -> dict[str, float]:
        """The session's position per ticker: the sum over the books (all, or all but one)."""
        totals: dict[str, float] = {}
        with self._lock:
            for name, book in self._books.items():
                if name == without:
                    continue
                for ticker, holding in book.holdings.items():
                    totals[ticker] = round(totals.get(ticker, 0.0) + holding.quantity, 9)
        return {ticker: quantity for ticker, quantity in totals.items() if quantity}

    def held_tickers(self) -> set[str]:
        with self._lock:
            return {ticker for book in self._books.values() for ticker in book.holdings}

    def rows(self, marks: Mapping[str, float]) -> list[dict[str, Any]]:
        """One row per book and ticker it holds or has traded."""
        rows: list[dict[str, Any]] = []
        with self._lock:
            for name, book in self._books.items():
                for ticker in sorted(set(book.holdings) | set(book.realized_by) | set(book.fees_by)):
                    h = book.holdings.get(ticker) or Holding()
                    unrealized = h.quantity * (marks.get(ticker, h.avg_price) - h.avg_price)
                    paid = (book.realized_by.get(ticker, 0.0), unrealized, book.fees_by.get(ticker, 0.0))
                    rows.append(_row(name, ticker, h.quantity, h.avg_price, *paid))
        return rows

    def pnl(self, marks: Mapping[str, float]) -> dict[str, float]:
        with self._lock:
            return {name: book.pnl(marks) for name, book in self._books.items()}

    def today(self, marks: Mapping[str, float], day: str) -> dict[str, float]:
        """Each book's P&L since ``day`` began (its first look on a new day sets the starting point)."""
        with self._lock:
            self._start_day(marks, day)
            return {name: book.pnl(marks) - book.day_start_pnl for name, book in self._books.items()}

    def start_day(self, marks: Mapping[str, float], day: str) -> None:
        """What `today` sets on a book's first look on a new day, and nothing else (cheap on the
        same day): a daily-loss limit set later in the day still counts from the day's start."""
        with self._lock:
            self._start_day(marks, day)

    def _start_day(self, marks: Mapping[str, float], day: str) -> None:
        for book in self._books.values():
            if book.day != day:
                book.day, book.day_start_pnl = day, book.pnl(marks)

    def sample(self, marks: Mapping[str, float], now: float | None = None) -> None:
        with self._lock:
            self._sample(marks, now)

    def _sample(self, marks: Mapping[str, float], now: float | None = None) -> None:
        stamp = time.time() if now is None else now
        for name, book in self._books.items():
            if book.fills or name != SESSION_BOOK:
                self.history.append((stamp, name, book.pnl(marks)))


@dataclass(frozen=True)
class BookView:
    """A book as the limits read it: positions, open orders by side, P&L and (with a budget) equity."""

    positions: dict[str, float]
    working_buys: dict[str, float]
    working_sells: dict[str, float]
    pnl: float
    equity: float | None


def _row(
    strategy: str, ticker: str, quantity: float, avg: float, realized: float, unrealized: float, fees: float
) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "ticker": ticker,
        "quantity": quantity,
        "avg_price": round(avg, 6),
        "realized_pl": round(realized, 6),
        "unrealized_pl": round(unrealized, 6),
        "fees": round(fees, 6),
    }


def trading_day() -> str:
    """Today's date in New York (the exchange's day), e.g. "2026-12-03"."""
    return datetime.now(_NEW_YORK).date().isoformat()


def marks_from(quotes: Mapping[str, Mapping[str, float]], tickers: Iterable[str]) -> dict[str, float]:
    """Mid prices from ``bid_ask()`` quotes for ``tickers`` (those with a two-sided quote)."""
    marks: dict[str, float] = {}
    for ticker in tickers:
        quote = quotes.get(ticker) or {}
        bid, ask = quote.get("bid") or 0.0, quote.get("ask") or 0.0
        if bid > 0 and ask > 0:
            marks[ticker] = (bid + ask) / 2
        elif bid > 0 or ask > 0:
            marks[ticker] = bid or ask
    return marks
