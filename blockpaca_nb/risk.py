"""Risk limits: checked on every order before it leaves the kernel, per strategy and per session.

A limit is a promise the trader made to themself ("never more than 100 shares of anything", "stop
this idea after losing $500"), so it is kept before the broker sees anything: an order that would
cross one is refused with the rule and the numbers that refused it, and the other orders of the
same block go on. Crossing the daily-loss limit moves the strategy (or, for the session's limits,
every strategy) to ``reduce_only`` (only orders that shrink a position pass) or ``halted``.

Prices for the notional limits come from the shared-memory quotes (the ask for a buy, the bid for a
sell; a limit order's own price when it has one), never from the network; with no quote to value an
order against a notional limit the order is refused rather than guessed at.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .books import Books, BookView, marks_from, trading_day
from .errors import ConfigurationError, show_value
from .orders import Order

ON_BREACH = ("reduce_only", "halt")
WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    """The limits of a strategy (``@s.strategy(limits={...})``) or a session (``Session(limits=...)``).
    Every one is optional; amounts in dollars, positions in shares."""

    max_position: float | None = None  # shares of one symbol, long or short, orders still open included
    max_position_notional: float | None = None  # dollars in one symbol
    max_order_notional: float | None = None  # dollars in one order
    max_gross_exposure: float | None = None  # dollars over every symbol, longs plus shorts
    max_orders_per_minute: int | None = None  # orders sent in any 60 s (a share of Alpaca's 200 calls)
    max_daily_loss: float | None = None  # dollars lost today (realised + unrealised) before on_breach
    on_breach: str = "reduce_only"  # or "halt"

    @classmethod
    def from_mapping(cls, value: object, where: str = "limits") -> Limits | None:
        """Validated limits from a dict (None stays None); unknown keys and bad values are named."""
        if value is None or isinstance(value, Limits):
            return value
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{where} must be a dict of limits; got {type(value).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in value if key not in allowed)
        if unknown:
            raise ConfigurationError(f"{where}: unknown limit(s) {unknown}; allowed: {', '.join(allowed)}")
        checked = {str(key): _checked(str(key), item, where) for key, item in value.items()}
        return cls(**checked)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _checked(key: str, value: object, where: str) -> Any:
    if key == "on_breach":
        if value not in ON_BREACH:
            raise ConfigurationError(
                f"{where}: on_breach={show_value(value)} is not valid; allowed: {', '.join(ON_BREACH)}"
            )
        return value
    if value is None:
        return None
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{where}: {key}={show_value(value)} is not valid; allowed: a number > 0")
    if key == "max_orders_per_minute" and int(number) != number:
        raise ConfigurationError(f"{where}: {key}={show_value(value)} is not valid; allowed: a whole number > 0")
    return int(number) if key == "max_orders_per_minute" else float(number)


class Exposure:
    """What a book (a strategy's, or the session's net) holds and has on its way, to check an order
    against. Open orders count on their own side only, as if every one on that side filled and none
    on the other: the worst case for the order checked. Valued at the marks once per block and kept
    up to date order by order, so checking an order costs the same however many positions are held."""

    def __init__(self, view: BookView, marks: Mapping[str, float], name: str = "") -> None:
        self.positions = dict(view.positions)
        self.buys, self.sells = dict(view.working_buys), dict(view.working_sells)
        self.marks = marks
        self.pnl_today, self.name, self.equity = view.pnl, name, view.equity
        tickers = set(self.positions) | set(self.buys) | set(self.sells)
        self.worst = {t: self._worst(t) for t in tickers}  # the largest each position can get, in shares
        self.unpriced = {t for t, shares in self.worst.items() if shares and t not in marks}
        self.gross = sum(shares * marks[t] for t, shares in self.worst.items() if t in marks)

    def held(self, ticker: str, signed_qty: float) -> float:
        """The position if every open order on the side of ``signed_qty`` filled."""
        side = self.buys if signed_qty > 0 else self.sells
        return self.positions.get(ticker, 0.0) + side.get(ticker, 0.0)

    def _worst(self, ticker: str, extra: float = 0.0) -> float:
        """The largest the position in ``ticker`` can get, in shares, with ``extra`` more on its way."""
        position = self.positions.get(ticker, 0.0)
        buys = self.buys.get(ticker, 0.0) + max(extra, 0.0)
        sells = self.sells.get(ticker, 0.0) + min(extra, 0.0)
        return max(abs(position + buys), abs(position + sells))

    def gross_after(self, item: Priced) -> float | None:
        """Longs plus shorts in dollars (each symbol at its worst) with ``item`` on its way too, its
        symbol at the order's price; None when a position has no quote to value it by."""
        ticker = item.order.ticker
        if self.unpriced - {ticker}:
            return None
        price = item.price or self.marks.get(ticker)
        worst = self._worst(ticker, item.signed_qty)
        if price is None:
            return None if worst else self.gross
        return self.gross - self.worst.get(ticker, 0.0) * self.marks.get(ticker, 0.0) + worst * price

    def add(self, item: Priced) -> None:
        """``item`` passed: it counts as on its way for the orders after it."""
        ticker = item.order.ticker
        before = self.worst.get(ticker, 0.0)
        side = self.buys if item.signed_qty > 0 else self.sells
        side[ticker] = side.get(ticker, 0.0) + item.signed_qty
        after = self.worst[ticker] = self._worst(ticker)
        mark = self.marks.get(ticker)
        if mark is None:
            (self.unpriced.add if after else self.unpriced.discard)(ticker)
        else:
            self.gross += (after - before) * mark


@dataclass(frozen=True)
class Priced:
    """An order with the quantity and price its limits are measured in."""

    order: Order
    signed_qty: float  # + buy, − sell (shares)
    price: float | None  # dollars per share, None with nothing to value it by

    @property
    def notional(self) -> float | None:
        return None if self.price is None else abs(self.signed_qty) * self.price


def priced(order: Order, quote: Mapping[str, float] | None) -> Priced:
    """The order's shares and the price its notional limits use: the higher of its own price (limit or
    stop) and the touch it would take — a sell limit far below the bid is worth the bid, not its limit."""
    touch = None
    if quote:
        touch = quote.get("ask" if order.side == "buy" else "bid") or quote.get("bid" if order.side == "buy" else "ask")
    own = order.limit_price or order.stop_price
    price = max(own or 0.0, touch or 0.0) or None
    if order.quantity is not None:
        shares = float(order.quantity)
    elif order.notional is not None and price:
        shares = float(order.notional) / price
    else:
        shares = 0.0
    sign = 1.0 if order.side == "buy" else -1.0
    return Priced(order, sign * shares, float(price) if price else None)


def reduces(position: float, signed_qty: float) -> bool:
    """Whether an order only shrinks a position (never opens, adds to or flips it)."""
    return position != 0 and signed_qty != 0 and (position > 0) != (signed_qty > 0) and abs(signed_qty) <= abs(position)


class RiskGate:
    """One scope's limits (a strategy's or the session's), with its own count of recent orders."""

    def __init__(self, scope: str, limits: Limits) -> None:
        self.scope = scope
        self.limits = limits
        self._sent: deque[float] = deque()
        self.breached = ""  # the breach that changed this scope's state, once it happened

    def refusal(self, item: Priced, exposure: Exposure, marks: Mapping[str, float], *, reduce_only: bool) -> str:
        """Why ``item`` may not go ("" when it may): the first rule it would break. Once the daily loss
        crossed its limit, only orders that shrink a position pass, whatever the strategy's state."""
        if _shrinks(item, exposure):  # an exit is never refused by a size limit, only by the rate
            rules: tuple[Any, ...] = (self._rate,)
        elif reduce_only or self.breached:
            why = self.breached or "a limit was crossed"
            mode = "halted" if self.breached and self.limits.on_breach == "halt" else "reduce-only"
            return f"{self.scope} is {mode} ({why}): only orders that shrink a position pass"
        else:  # the size rules below see only orders that open or grow a position
            rules = (self._order_notional, self._position, self._position_notional, self._gross, self._rate)
        for rule in rules:
            why = rule(item, exposure, marks)
            if why:
                return f"limit {why} ({self.scope})"
        return ""

    def passed(self, now: float | None = None) -> None:
        """An order passed: it counts toward max_orders_per_minute."""
        self._sent.append(time.monotonic() if now is None else now)

    def loss_breach(self, pnl_today: float) -> str:
        """The daily-loss rule's verdict on today's P&L ("" while within it)."""
        cap = self.limits.max_daily_loss
        if cap is None or pnl_today > -cap:
            return ""
        return f"max_daily_loss: lost {-pnl_today:,.2f} today > {cap:,.2f}"

    # ----------------------------------------------------------------- the rules
    def _order_notional(self, item: Priced, exposure: Exposure, marks: Mapping[str, float]) -> str:
        cap = self.limits.max_order_notional
        if cap is None:
            return ""
        if item.notional is None:
            return f"max_order_notional: no quote for {item.order.ticker} to value the order by"
        return f"max_order_notional: {item.notional:,.2f} > {cap:,.2f}" if item.notional > cap else ""

    def _position(self, item: Priced, exposure: Exposure, marks: Mapping[str, float]) -> str:
        cap = self.limits.max_position
        after = exposure.held(item.order.ticker, item.signed_qty) + item.signed_qty
        if cap is None or abs(after) <= cap + 1e-9:
            return ""
        return f"max_position: {item.order.ticker} would be {after:g} shares > {cap:g}"

    def _position_notional(self, item: Priced, exposure: Exposure, marks: Mapping[str, float]) -> str:
        cap = self.limits.max_position_notional
        if cap is None:
            return ""
        price = item.price or marks.get(item.order.ticker)
        if price is None:
            return f"max_position_notional: no quote for {item.order.ticker} to value the order by"
        value = abs(exposure.held(item.order.ticker, item.signed_qty) + item.signed_qty) * price
        return (
            f"max_position_notional: {item.order.ticker} would be {value:,.2f} > {cap:,.2f}"
            if value > cap + 1e-6
            else ""
        )

    def _gross(self, item: Priced, exposure: Exposure, marks: Mapping[str, float]) -> str:
        cap = self.limits.max_gross_exposure
        if cap is None:
            return ""
        total = exposure.gross_after(item)
        if total is None:
            return "max_gross_exposure: a position has no quote to value it by"
        return f"max_gross_exposure: would be {total:,.2f} > {cap:,.2f}" if total > cap + 1e-6 else ""

    def _rate(self, item: Priced, exposure: Exposure, marks: Mapping[str, float]) -> str:
        cap = self.limits.max_orders_per_minute
        if cap is None:
            return ""
        now = time.monotonic()
        while self._sent and self._sent[0] <= now - WINDOW_S:
            self._sent.popleft()
        return (
            f"max_orders_per_minute: {len(self._sent)} sent in the last 60 s, the limit is {cap}"
            if len(self._sent) >= cap
            else ""
        )


def _shrinks(item: Priced, exposure: Exposure) -> bool:
    """An order that only reduces the position it trades, even if every open order on its side
    filled first: never refused by a size limit."""
    return reduces(exposure.held(item.order.ticker, item.signed_qty), item.signed_qty)


@dataclass
class Screened:
    """A block after the limits: the orders that go, and each refused one with its reason."""

    passed: list[Order]
    refused: list[tuple[Order, str]]


class RiskDesk:
    """Every limit of the session: one gate per strategy that has limits or a budget, one for the session."""

    def __init__(self, books: Books, session_limits: Limits | None = None) -> None:
        self.books = books
        self.session = RiskGate("session", session_limits) if session_limits else None
        self.gates: dict[str, RiskGate] = {}
        self.budgets: dict[str, float] = {}
        self.lock = threading.RLock()  # one block's check, and the caller's send, at a time

    def set(self, strategy: str, limits: Limits | None, budget: float | None) -> None:
        """A strategy's limits and budget (re-registering it replaces them; its order count stays)."""
        with self.lock:
            self._set(strategy, limits, budget)

    def _set(self, strategy: str, limits: Limits | None, budget: float | None) -> None:
        old = self.gates.pop(strategy, None)
        if limits is not None:
            gate = self.gates[strategy] = RiskGate(f"strategy {strategy}", limits)
            if old is not None:
                gate._sent, gate.breached = old._sent, old.breached
        if budget is None:
            self.budgets.pop(strategy, None)  # re-registered without one: none (limits are replaced so too)
        else:
            self.budgets[strategy] = budget
        self.books.open(strategy, budget)

    def forgive(self, strategy: str) -> None:
        """The user resumed a strategy a limit stopped: its daily-loss limit is watched afresh."""
        gate = self.gates.get(strategy)
        if gate is not None:
            gate.breached = ""

    def screen(
        self, orders: list[Order], book: str, quotes: Mapping[str, Mapping[str, float]], *, reduce_only: bool
    ) -> Screened:
        """Check each order against its strategy's limits and budget, then the session's; the orders
        earlier in the block count as working for the later ones. The caller holds :attr:`lock` until
        the orders that passed are recorded as on their way (or two blocks could pass one limit)."""
        gate, session = self.gates.get(book), self.session
        if gate is None and session is None and book not in self.budgets:
            return Screened(list(orders), [])
        marks = marks_from(quotes, quotes)  # every quoted symbol: open orders are valued too
        own = self._exposure(book, marks)
        net = self._exposure(None, marks) if session is not None else None
        screened = Screened([], [])
        for order in orders:
            item = priced(order, quotes.get(order.ticker))
            why = self._verdict(item, gate, own, net, marks, reduce_only=reduce_only)
            if why:
                screened.refused.append((order, why))
                continue
            for passing in (gate, session):
                if passing is not None:
                    passing.passed()
            own.add(item)
            if net is not None:
                net.add(item)
            screened.passed.append(order)
        return screened

    def _verdict(
        self,
        item: Priced,
        gate: RiskGate | None,
        own: Exposure,
        net: Exposure | None,
        marks: Mapping[str, float],
        *,
        reduce_only: bool,
    ) -> str:
        if gate is not None:
            why = gate.refusal(item, own, marks, reduce_only=reduce_only)
            if why:
                return why
        elif reduce_only and not _shrinks(item, own):
            return "the strategy is reduce-only: only orders that shrink a position pass"
        why = self._budget(item, own)
        if why:
            return why
        if self.session is not None and net is not None:
            session_reduce_only = bool(self.session.breached) and self.session.limits.on_breach == "reduce_only"
            return self.session.refusal(item, net, marks, reduce_only=session_reduce_only)
        return ""

    def _budget(self, item: Priced, own: Exposure) -> str:
        """A budget caps what a strategy's positions may cost: its open positions and orders, valued at
        their prices, stay within its equity (budget + P&L)."""
        budget = self.budgets.get(own.name)
        if budget is None or own.equity is None or _shrinks(item, own):
            return ""
        total = own.gross_after(item)
        if total is None:
            return "budget: a position has no quote to value it by"
        if total > own.equity + 1e-6:
            return f"budget: positions would cost {total:,.2f} > its equity {own.equity:,.2f} (budget {budget:,.2f})"
        return ""

    def _exposure(self, book: str | None, marks: Mapping[str, float]) -> Exposure:
        return Exposure(self.books.view(book, marks), marks, book or "")

    def usage(self, strategy: str, marks: Mapping[str, float]) -> tuple[float | None, str]:
        """How close a strategy is to its nearest limit (1.0: at it) and which limit that is; (None, "")
        without limits. For the dashboard's bars: positions and open orders as they stand now."""
        gate, budget = self.gates.get(strategy), self.budgets.get(strategy)
        if gate is None and budget is None:
            return None, ""
        own = self._exposure(strategy, marks)
        shares = own.worst
        values = {t: q * marks.get(t, 0.0) for t, q in shares.items()}
        found: list[tuple[float, str]] = []
        if budget is not None:
            found.append((sum(values.values()) / max(own.equity or budget, 1e-9), "budget"))
        if gate is not None:
            found.extend(_usages(gate, shares, values, own.pnl_today))
        return max(found) if found else (None, "")

    def loss_breaches(self, marks: Mapping[str, float]) -> list[tuple[str | None, str, str]]:
        """The daily-loss limits crossed now and not reported before: (strategy or None for the
        session, what happened, the new state: "reduce_only" or "halted")."""
        found: list[tuple[str | None, str, str]] = []
        with self.lock:
            gates = [(name, gate) for name, gate in self.gates.items() if _watches_loss(gate)]
        session = self.session if self.session is not None and _watches_loss(self.session) else None
        today = trading_day()
        if not gates and session is None:  # no daily-loss limit left to watch: every fill asks, no P&L to work out
            self.books.start_day(marks, today)
            return found
        pnl = self.books.today(marks, today)
        for name, gate in gates:
            why = gate.loss_breach(pnl.get(name, 0.0))
            if why:
                gate.breached = why
                found.append((name, why, _state_after(gate.limits)))
        if session is not None:
            why = session.loss_breach(sum(pnl.values()))
            if why:
                session.breached = why
                found.append((None, why, _state_after(session.limits)))
        return found


def _watches_loss(gate: RiskGate) -> bool:
    """A daily-loss limit set and not yet crossed today."""
    return gate.limits.max_daily_loss is not None and not gate.breached


def _usages(
    gate: RiskGate, shares: Mapping[str, float], values: Mapping[str, float], pnl: float
) -> list[tuple[float, str]]:
    limits, found = gate.limits, []
    if limits.max_position:
        found.append((max((abs(q) for q in shares.values()), default=0.0) / limits.max_position, "max_position"))
    if limits.max_position_notional:
        found.append((max(values.values(), default=0.0) / limits.max_position_notional, "max_position_notional"))
    if limits.max_gross_exposure:
        found.append((sum(values.values()) / limits.max_gross_exposure, "max_gross_exposure"))
    if limits.max_orders_per_minute:
        recent = sum(1 for t in list(gate._sent) if t > time.monotonic() - WINDOW_S)
        found.append((recent / limits.max_orders_per_minute, "max_orders_per_minute"))
    if limits.max_daily_loss:
        found.append((max(0.0, -pnl) / limits.max_daily_loss, "max_daily_loss"))
    return found


def _state_after(limits: Limits) -> str:
    return "halted" if limits.on_breach == "halt" else "reduce_only"
