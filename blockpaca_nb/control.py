"""Liquidation that a trader can rely on: it ends flat, or it says exactly why it is still waiting.

On Alpaca, cancels are asynchronous: an order reads ``pending_cancel`` and keeps its shares held
for a while after ``DELETE /v2/orders/{id}`` answered, and a sell of those shares meanwhile is
refused (403 "insufficient qty available"). Orders also meet the rate limit, 429 pauses, 5xx and
after-hours queues. So a liquidation is a loop, not one burst: cancel the open orders in scope,
wait until the broker confirms each cancel (or the fill), read the positions again, send closing
orders in the rate limiter's priority lane, wait for their outcome — and go round again until
nothing in scope is left, or the user halts it (the Hold button).

Scope ``"session"`` (the default) touches only the session's own orders and the positions its
fills made (see :mod:`.ledger`): it brings the account back to what it held outside the session,
never further; ``"account"`` cancels every open order and closes every position of the account. A
liquidation of one strategy (``strategy=``) closes that strategy's book with orders that carry its
name, bringing the account to what the other strategies and the outside hold. No closing order
crosses zero (Alpaca refuses one that would flip a position): the account is closed to zero first,
the rest follows in the next round.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BlockpacaError, BrokerError, ConfigurationError
from .ledger import Ledger
from .orders import MINIMUM_ORDER_VALUE, Order, liquidation_orders
from .statuses import ENDED_ORDER_STATUSES

UNTAKEN = frozenset({"submitting", None})  # the broker has not answered (yet): not its order, as far as known

LIQUIDATION_SCOPES = ("session", "account")
CONFIRM_POLL_S = 0.25  # between looks at the broker's open orders while cancels settle
HEAR_POLL_S = 0.01  # between looks at the session's own view while an order's end is on its way
ROUND_PATIENCE_S = 10.0  # how long one round waits for its orders before looking again
MAX_PAUSE_S = 10.0  # the longest pause between rounds that made no progress
_FLAT = 1e-9


def sliver_note(ticker: str, quantity: float, value: float | None, held: float | None) -> str:
    """What a liquidation says of a sliver it left open (worth ``value``; the account holds ``held``)."""
    worth = "" if value is None else f" (${value:.2f})"
    how = ("closing the whole position (Alpaca's close position, or its dashboard) closes it"
           if held is None or abs(held) <= abs(quantity) + _FLAT else
           f"the account holds {held:g} {ticker}: it closes only with the rest of them")  # fmt: skip
    return (f"liquidation: {quantity:g} {ticker}{worth} left open: Alpaca takes no order worth less than "
            f"${MINIMUM_ORDER_VALUE:g}; {how}")  # fmt: skip


def check_scope(scope: object) -> str:
    if scope not in LIQUIDATION_SCOPES:
        raise ConfigurationError(f"scope={scope!r} is not valid; allowed: {', '.join(map(repr, LIQUIDATION_SCOPES))}")
    return str(scope)


def to_close(
    wanted: Mapping[str, float],
    account: Mapping[str, float],
    pending: Mapping[str, float],
    keep: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Signed quantity to close per ticker (signed like the position it closes): what brings the
    account to what it must ``keep`` (what it held outside the session, and the books not being
    closed), never more than is ``wanted`` closed, less what open closing orders (``pending``) already
    close. Never past zero in one order (Alpaca refuses an order that flips a position): the rest goes
    in the next round. With the account already where it must be (a manual trade closed it, say),
    nothing is sent: a liquidation never opens what the session cannot account for."""
    keep = keep or {}
    out: dict[str, float] = {}
    for ticker, quantity in wanted.items():
        after_pending = account.get(ticker, 0.0) - pending.get(ticker, 0.0)
        excess = after_pending - keep.get(ticker, 0.0)  # closing x moves the account by −x
        left = quantity - pending.get(ticker, 0.0)
        if excess * quantity <= 0 or left * quantity <= 0 or min(abs(excess), abs(left)) <= _FLAT:
            continue  # nothing of this side left to close (a billionth of a share is nothing, no less)
        amount = math.copysign(min(abs(excess), abs(left)), quantity)
        if after_pending * amount > 0 and abs(amount) > abs(after_pending):
            amount = after_pending  # to zero first; the rest opens the other side next round
        out[ticker] = round(amount, 9)
    return out


@dataclass
class Liquidation:
    """One liquidation, run on the session thread until flat or halted (see the module docstring).

    ``rest`` makes a REST call in the priority lane; ``send`` submits orders in the priority lane
    and returns their client order ids; ``status_of`` reads an order's latest status from the trade
    log; ``say`` shows what it is doing; ``halted`` is true once the user asked it to stop.
    """

    scope: str
    ledger: Ledger
    rest: Callable[[Callable[[Any], Any]], Any]
    send: Callable[[list[Order]], list[str]]
    status_of: Callable[[str], str | None]
    say: Callable[[str], None]
    halted: Callable[[], bool]
    report: Callable[[str], None]
    rate_wait: Callable[[], float]  # seconds until the rate limiter frees a slot
    keep: Callable[[], Mapping[str, float]] = dict  # what the account must keep (see to_close)
    strategy_of: Callable[[str], str] = str  # the strategy an order belongs to (exits: their entry's)
    reason_of: Callable[[str], str | None] = lambda cid: None  # why the broker refused an order
    withdraw: Callable[[], None] = lambda: None  # its closing orders still waiting for a rate-limit slot: not sent
    strategy: str = ""  # close only this strategy's book, with orders that carry its name
    sent: list[str] = field(default_factory=list)  # client order ids of the closing orders
    closing_orders: dict[str, Order] = field(default_factory=dict)
    rounds: int = 0
    refused: list[str] = field(default_factory=list)  # the last round's closing orders, when the broker refused each
    prices: dict[str, float] = field(default_factory=dict)  # the broker's last price of each position
    account: dict[str, float] = field(default_factory=dict)  # the account's positions when last read
    too_small: dict[str, float] = field(default_factory=dict)  # left open: worth less than an order may be
    below_minimum: set[str] = field(default_factory=set)  # tickers whose closing order the broker found too small
    closed_whole: set[str] = field(default_factory=set)  # (scope "account") slivers closed as whole positions

    def run(self) -> bool:
        """Returns True when nothing in scope is left, False when halted."""
        pause = refused_pause = 0.5
        while not self.halted():
            self.rounds += 1
            try:
                if self._round():
                    self.say("")
                    self._say_what_was_gone()
                    self._say_what_is_too_small()
                    return True
                pause, refused_pause = 0.5, self._after_refusals(refused_pause)
            except BrokerError as err:  # the broker had a bad moment: say so, go round again
                self.report(f"liquidation round {self.rounds}: {err}")
                self.say(f"liquidating: the broker failed ({err}); trying again in {pause:g} s")
                self._nap(pause)
                pause = min(MAX_PAUSE_S, pause * 2)
        self.say("")
        self.withdraw()
        self._cancel_working()
        return False

    def _after_refusals(self, pause: float) -> float:
        """A round whose every closing order the broker refused — a wash trade against another
        strategy's resting order, say — goes again after a pause that grows to MAX_PAUSE_S, saying
        why. Retried at once, four a second, it spent the account's request budget within a minute,
        and Hold and the kill switch then waited up to 45 s for a slot. The next pause to take."""
        if not self.refused:
            return 0.5
        reasons = sorted({self.reason_of(cid) or "refused" for cid in self.refused})
        whose = f" {self.strategy}" if self.strategy else ""
        self.say(f"liquidating{whose}: the broker refused {len(self.refused)} closing orders ({'; '.join(reasons)});"
                 f" trying again in {pause:g} s")  # fmt: skip
        self._nap(pause)
        return min(MAX_PAUSE_S, pause * 2)

    def _cancel_working(self) -> None:
        """Halted (Hold, or another action takes over): its closing orders still working at the broker
        are cancelled — Hold keeps the positions as they are. Left there, one accepted after the close
        sold the position at the next open, the session long stopped. Says what it could not cancel."""
        mine = set(self.sent)
        if not mine:
            return
        try:
            working = [o for o in self._account_open_orders() if str(o.client_order_id) in mine]
        except BrokerError as err:
            self.report(f"halted: could not look for its orders still working ({err}): see the broker's open orders")
            return
        failed = []
        for order in working:
            try:
                self.rest(lambda c, order_id=order.id: c.cancel_order_by_id(order_id))
            except BrokerError as err:  # filled meanwhile (422), or the broker failed: looked at below
                failed.append((order, err))
        left = [f"{o.client_order_id} ({err})" for o, err in failed if self._still_open(str(o.client_order_id))]
        if len(working) > len(left):
            done = len(working) - len(left)
            self.report(f"halted: its {done} closing orders still working were cancelled (or had ended)")
        if left:
            self.report(f"halted: {len(left)} closing orders could not be cancelled, may still fill: {', '.join(left)}")

    def _still_open(self, client_order_id: str) -> bool:
        """Whether the broker still lists the order as open (yes, when it cannot be asked)."""
        try:
            return client_order_id in {str(o.client_order_id) for o in self._account_open_orders()}
        except BrokerError:
            return True

    def _round(self) -> bool:
        """Cancel, confirm, hear how every order ended, re-read, close, wait. True when there was
        nothing left to do."""
        cancelled = self._cancel_open_orders()
        if cancelled:
            self._await_cancels(cancelled)
        if self.scope != "account":  # the account's positions are the broker's word: nothing to hear
            self._await_heard()
        keep = {} if self.scope == "account" else self.keep()
        self.account = self._account_positions()
        closing = self._worth_an_order(to_close(self._wanted(), self.account, self._pending(), keep))
        if not closing and not self._open_sent():
            return True
        ids: list[str] = []
        if closing and not self.halted():
            orders = liquidation_orders({"ticker": t, "quantity": q} for t, q in closing.items())
            ids = self.send(orders)
            self.sent += ids
            self.closing_orders.update(zip(ids, orders, strict=True))
        self._await_sent()
        self._note_refusals(ids)
        return False

    def _note_refusals(self, ids: list[str]) -> None:
        """A closing order refused as too small marks its ticker so (left open from now on, no pause);
        when the broker refused (or the workers gave up on) every other order of the round, the next
        round waits (see _after_refusals)."""
        ended = [cid for cid in ids if self.status_of(cid) in ("rejected", "failed")]
        small = [cid for cid in ended if "minimal amount of order" in (self.reason_of(cid) or "")]
        self.below_minimum.update(self.closing_orders[cid].ticker for cid in small)
        others = [cid for cid in ended if cid not in small]
        self.refused = others if others and len(ended) == len(ids) else []

    def _say_what_was_gone(self) -> None:
        """What the session held in scope of a symbol the account no longer holds at all (a manual
        trade closed it): nothing was sent for it. Said, so a position the session still shows is not
        taken for one left open at the broker."""
        if self.scope == "account":
            return
        account = self._account_positions()
        gone = {t: qty for t, qty in self._wanted().items() if abs(qty) > _FLAT and abs(account.get(t, 0.0)) <= _FLAT}
        if gone:
            held = ", ".join(f"{qty:g} {ticker}" for ticker, qty in sorted(gone.items()))
            whose = f"strategy {self.strategy}'s" if self.strategy else "the session's"
            self.report(f"liquidation: {whose} {held} no longer at the broker (closed outside the session): "
                        "nothing to close")  # fmt: skip

    def _worth_an_order(self, closing: dict[str, float]) -> dict[str, float]:
        """What may go as orders: Alpaca refuses one worth less than $1 (a sliver of a share left by
        fractional trading; valued at the position's price, or found so by a refusal). Sent, it was
        refused at every round and the liquidation never ended. Flattening the account closes such a
        sliver as a whole position (no minimum); any other scope leaves it open and says so."""
        sendable = {}
        for ticker, quantity in closing.items():
            price = self.prices.get(ticker)
            if ticker not in self.below_minimum and (price is None or abs(quantity) * price >= MINIMUM_ORDER_VALUE):
                self.too_small.pop(ticker, None)
                sendable[ticker] = quantity
            elif self.scope == "account":
                self._close_whole(ticker)
            else:
                self.too_small[ticker] = quantity
        return sendable

    def _close_whole(self, ticker: str) -> None:
        """Alpaca's close position (``DELETE /v2/positions/{symbol}``), once: the account's whole
        position; its order (the broker names it) is waited for as this liquidation's own."""
        if ticker not in self.closed_whole:
            self.closed_whole.add(ticker)
            order = self.rest(lambda c: c.close_position(ticker))
            self.sent.append(str(order.client_order_id))

    def _say_what_is_too_small(self) -> None:
        for ticker, qty in sorted(self.too_small.items()):
            price = self.prices.get(ticker)
            self.report(sliver_note(ticker, qty, None if price is None else abs(qty) * price, self.account.get(ticker)))

    # ----------------------------------------------------------------- the broker's view
    def _open_orders(self) -> list[Any]:
        orders = self._account_open_orders()
        if self.scope == "account":
            return list(orders)
        mine = [o for o in orders if self.ledger.owns(o.client_order_id)]
        if self.strategy:
            return [o for o in mine if self.strategy_of(str(o.client_order_id)) == self.strategy]
        return mine

    def _account_open_orders(self) -> list[Any]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=False)
        return list(self.rest(lambda c: c.get_orders(request)))

    def _cancel_open_orders(self) -> set[str]:
        """Ask the broker to cancel every open order in scope except this liquidation's own."""
        mine = set(self.sent)
        targets = [o for o in self._open_orders() if o.client_order_id not in mine]
        for order in targets:
            self.say(f"liquidating: cancelling {len(targets)} open orders")
            with contextlib.suppress(BrokerError):  # filled or cancelled meanwhile (422): confirmed below
                self.rest(lambda c, order_id=order.id: c.cancel_order_by_id(order_id))
        return {str(o.client_order_id) for o in targets}

    def _await_cancels(self, cancelled: set[str]) -> None:
        """Until the broker no longer lists those orders as open (cancel confirmed, or filled)."""
        self._patiently(
            lambda: [o for o in self._open_orders() if o.client_order_id in cancelled],
            lambda still: f"liquidating: waiting for the broker to confirm {len(still)} cancels",
            CONFIRM_POLL_S,
        )

    def _await_heard(self) -> None:
        """Until the session has heard how each of its orders in scope ended. The broker fills an
        order a moment before its fill reaches the session through the trade stream (the recorder,
        then the kernel); a liquidation pressed in that moment read the session's positions without
        it, found nothing to close and ended — leaving the fill open at the broker."""
        elsewhere = self._ended_elsewhere() if self.strategy else []
        self._patiently(
            lambda: self._unheard() + [cid for cid in elsewhere if self.status_of(cid) not in ENDED_ORDER_STATUSES],
            lambda unheard: f"liquidating: waiting to hear how {len(unheard)} orders ended",
            HEAR_POLL_S,
        )

    def _unheard(self) -> list[str]:
        """The session's orders in scope (not this liquidation's) whose end it has not heard. After
        the cancels are confirmed the broker holds none of them open: each is on its way."""
        ours = set(self.sent)
        return [
            cid
            for cid in self.ledger.owned()
            if cid not in ours
            and self.status_of(cid) not in ENDED_ORDER_STATUSES
            and (not self.strategy or self.strategy_of(cid) == self.strategy)
        ]

    def _ended_elsewhere(self) -> list[str]:
        """Other strategies' orders the broker had taken but holds open no more, their end not heard
        yet. What the other books keep — the account is closed down to it — waits for those fills (a
        book still counting shares its order just sold left this strategy's shares open). Those the
        broker had not answered yet are waited for first: only then can their state be told."""
        answering = [cid for cid in self.ledger.owned() if self._elsewhere(cid) and self.status_of(cid) in UNTAKEN]
        self._patiently(
            lambda: [cid for cid in answering if self.status_of(cid) in UNTAKEN],
            lambda waiting: f"liquidating: waiting for the broker's answer to {len(waiting)} other orders",
            HEAR_POLL_S,
        )
        taken = [
            cid
            for cid in self.ledger.owned()
            if self._elsewhere(cid) and self.status_of(cid) not in UNTAKEN | ENDED_ORDER_STATUSES
        ]
        if not taken:
            return []
        open_now = {str(o.client_order_id) for o in self._account_open_orders()}
        return [cid for cid in taken if cid not in open_now]

    def _elsewhere(self, cid: str) -> bool:
        """One of another strategy's orders (or the session's own), not this liquidation's."""
        return self.strategy_of(cid) != self.strategy and cid not in self.sent

    def _account_positions(self) -> dict[str, float]:
        positions = self.rest(lambda c: c.get_all_positions())
        self.prices.update({str(p.symbol): float(p.current_price) for p in positions if p.current_price})
        return {str(p.symbol): float(p.qty) for p in positions if float(p.qty)}

    def _wanted(self) -> dict[str, float]:
        if self.scope == "account":
            return self._account_positions()
        if self.strategy:
            return self.ledger.books.positions_of(self.strategy)
        return self.ledger.quantities()

    # ----------------------------------------------------------------- our closing orders
    def _open_sent(self) -> list[str]:
        return [cid for cid in self.sent if self.status_of(cid) not in ENDED_ORDER_STATUSES]

    def _pending(self) -> dict[str, float]:
        """Signed quantity our still-open closing orders will close, per ticker (known only from
        the orders themselves: a sell closes a long, a buy covers a short)."""
        pending: dict[str, float] = {}
        for cid in self._open_sent():
            order = self.closing_orders.get(cid)
            if order is not None:
                sign = 1.0 if order.side == "sell" else -1.0
                pending[order.ticker] = pending.get(order.ticker, 0.0) + sign * float(order.quantity or 0)
        return pending

    def _await_sent(self) -> None:
        """Wait for this round's orders to end (filled, rejected, ...), or until the round's patience
        runs out (e.g. accepted after hours: they stay open until the market opens)."""
        self._patiently(
            self._open_sent,
            lambda waiting: f"liquidating: {len(waiting)} orders{self._why_waiting(waiting)}",
            CONFIRM_POLL_S,
        )

    def _patiently(self, left: Callable[[], list[Any]], saying: Callable[[list[Any]], str], poll_s: float) -> None:
        """Look what is ``left`` every ``poll_s`` (saying what it waits for) until nothing is, the
        round's patience runs out, or the user halts the liquidation."""
        deadline = time.monotonic() + ROUND_PATIENCE_S
        while not self.halted() and time.monotonic() < deadline:
            items = left()
            if not items:
                return
            self.say(saying(items))
            self._nap(poll_s)

    def _why_waiting(self, waiting: list[str]) -> str:
        statuses = {self.status_of(cid) for cid in waiting}
        if statuses <= {None}:
            wait = self.rate_wait()
            return f", waiting for the rate limit ({wait:.0f} s)" if wait >= 1 else ", being sent"
        if "accepted" in statuses:
            return ", accepted: waiting for the market to open"
        return ", waiting for their fills"

    def _nap(self, seconds: float) -> None:
        """Wait, but never past a halt (a halted liquidation must stop at once: another takes over)."""
        deadline = time.monotonic() + seconds
        while not self.halted() and time.monotonic() < deadline:
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))


def refuse_while(action: str | None) -> None:
    """Strategy orders are refused from the moment a control action starts until resume()."""
    if action is not None:
        raise BlockpacaError(
            f"refused: the session is in its {action!r} action; strategy orders are not sent until you call resume()"
        )
