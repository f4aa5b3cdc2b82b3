"""Orders: blockpaca's order schema, its side/action table, validation and client order ids.

A strategy returns (or passes to ``submit_order``) plain dicts in blockpaca's schema::

    {"ticker": "AAPL", "quantity": 10, "side": "buy", "order_type": "market"}

:func:`parse_orders` turns whatever the strategy produced into validated :class:`Order`
objects plus one :class:`~blockpaca_nb.errors.OrderValidationError` per bad order, so a
typo is reported with the field at fault *before* anything reaches the broker, and one
bad order never holds back the good ones of the same block.

The side/action table is blockpaca's:

=====  ==================  ======================================
side   action              result
=====  ==================  ======================================
buy    none / buy_long     open long
buy    buy_to_cover        close short
buy    cover_short         close short (used at end of session)
sell   none / sell_long    close long
sell   short_sell          open short
sell   liquidate           close long (used at end of session)
=====  ==================  ======================================

Exits travel with the order as Alpaca's order classes: ``take_profit`` (a limit price) and
``stop_loss`` (a stop price, or ``{"stop_price": …, "limit_price": …}``) together make a
``bracket``; one of them alone an ``oto``; ``order_class="oco"`` sends the two exits of a position
you hold as one limit order (its ``limit_price`` is the take profit). The broker holds a bracket's
exits until the entry fills, and the first exit to fill cancels the other.

Why one module over 500 lines: the schema, blockpaca's side/action table and the validation of
each field are one contract with the user; most of the length is the error texts that name the
field and its allowed values.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from .errors import OrderValidationError, show_value
from .scrub import scrub_text

MINIMUM_ORDER_VALUE = 1.0  # dollars: Alpaca refuses an order worth less ("cost basis must be >= minimal …")
SIDES: tuple[str, ...] = ("buy", "sell")
ORDER_TYPES: tuple[str, ...] = ("market", "limit", "stop", "stop_limit")
TIME_IN_FORCE: tuple[str, ...] = ("day", "gtc", "ioc", "fok", "opg", "cls")

ACTIONS_BY_SIDE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "buy": ("buy_long", "buy_to_cover", "cover_short"),
        "sell": ("sell_long", "short_sell", "liquidate"),
    }
)
"""The actions each side accepts; the first one is the default when no action is given."""

ACTION_RESULTS: Mapping[str, str] = MappingProxyType(
    {
        "buy_long": "open long",
        "buy_to_cover": "close short",
        "cover_short": "close short (end of session)",
        "sell_long": "close long",
        "short_sell": "open short",
        "liquidate": "close long (end of session)",
    }
)
"""What each action does to the position, in blockpaca's words."""

ORDER_KEYS: tuple[str, ...] = (
    "ticker",
    "quantity",
    "notional",
    "side",
    "order_type",
    "action",
    "limit_price",
    "stop_price",
    "time_in_force",
    "take_profit",
    "stop_loss",
    "order_class",
)
"""Every key an order dict may carry."""

ORDER_CLASSES: tuple[str, ...] = ("simple", "bracket", "oco", "oto")
"""Alpaca's order classes for stocks: a plain order, an entry with two exits, two exits, an entry with one."""
EXIT_TIME_IN_FORCE: tuple[str, ...] = ("day", "gtc")
"""The only time_in_force Alpaca takes for an order with exits."""

_KEY_SET = frozenset(ORDER_KEYS)
_PRICES_BY_TYPE: Mapping[str, tuple[str, ...]] = {
    "market": (),
    "limit": ("limit_price",),
    "stop": ("stop_price",),
    "stop_limit": ("limit_price", "stop_price"),
}
_POSITIVE = "a finite number > 0"
_HEX_DIGITS = frozenset("0123456789abcdef")
_SYMBOL_SHAPE = re.compile(r"[A-Z][A-Z0-9.]{0,9}")  # what a stock symbol looks like (BRK.B); no key is this short
STRATEGY_TAG = re.compile(r"[A-Za-z0-9_]{1,48}")
"""What a strategy's name may be: it travels in its orders' client order ids (Alpaca allows 128
characters; ours use at most 80)."""
_TICKERS_SHOWN = 10


def _quoted(values: Iterable[object]) -> str:
    return ", ".join(repr(value) for value in values)


_ALLOWED_KEYS_TEXT = _quoted(ORDER_KEYS)
_CHOICE_TEXT = {
    "side": _quoted(SIDES),
    "order_type": _quoted(ORDER_TYPES),
    "time_in_force": _quoted(TIME_IN_FORCE),
    "order_class": _quoted(ORDER_CLASSES),
}
_CHOICES = {"side": SIDES, "order_type": ORDER_TYPES, "time_in_force": TIME_IN_FORCE, "order_class": ORDER_CLASSES}
_TAKE_PROFIT_ALLOWED = f"{_POSITIVE} (the exit's limit price), or {{'limit_price': price}}"
_STOP_LOSS_ALLOWED = f"{_POSITIVE} (the exit's stop price), or {{'stop_price': price, 'limit_price': price}}"
_BLOCK_ALLOWED = (
    "None, one order dict, or a list/tuple of order dicts (for a DataFrame: df.to_dict('records'))"
)


@dataclass(frozen=True, slots=True)
class Order:
    """One validated order, ready to be sent.

    ``action`` is always filled in (``buy_long`` / ``sell_long`` when the strategy gave
    none), because it names the order's client id and its trade-log rows. Exactly one of
    ``quantity`` (shares, fractional allowed) and ``notional`` (dollars, market orders
    only) is set.
    """

    ticker: str
    side: str
    order_type: str
    action: str
    quantity: float | None = None
    notional: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: str = "day"
    order_class: str = "simple"
    take_profit: float | None = None
    stop_loss: float | None = None
    stop_loss_limit: float | None = None

    def to_alpaca(self, client_order_id: str) -> dict[str, object]:
        """Return the JSON body of Alpaca's ``POST /v2/orders`` for this order."""
        body: dict[str, object] = {"symbol": self.ticker}
        if self.quantity is not None:
            body["qty"] = self.quantity
        else:
            body["notional"] = self.notional
        body["side"] = self.side
        body["type"] = self.order_type
        body["time_in_force"] = self.time_in_force
        if self.limit_price is not None:
            body["limit_price"] = self.limit_price
        if self.stop_price is not None:
            body["stop_price"] = self.stop_price
        if self.order_class != "simple":
            body.update(self._exits())
        body["client_order_id"] = client_order_id
        return body

    def _exits(self) -> dict[str, object]:
        body: dict[str, object] = {"order_class": self.order_class}
        if self.take_profit is not None:
            body["take_profit"] = {"limit_price": self.take_profit}
        if self.stop_loss is not None:
            stop: dict[str, float] = {"stop_price": self.stop_loss}
            if self.stop_loss_limit is not None:
                stop["limit_price"] = self.stop_loss_limit
            body["stop_loss"] = stop
        return body


def validate_order(raw: object, tickers: Collection[str] | None = None, index: int | None = None) -> Order:
    """Check one order dict and return it as an :class:`Order`.

    Raises :class:`OrderValidationError` naming the first field at fault and the values
    it accepts. ``tickers``, when given, limits the symbols to the session's own (pass a
    set for speed); ``index`` is the order's position in its block, for the message.
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):
        problem = f"got {type(raw).__name__} {show_value(raw)}"
        raise OrderValidationError("order", raw, f"a dict with keys {_ALLOWED_KEYS_TEXT}", index, problem)
    if not raw.keys() <= _KEY_SET:
        _reject_unknown_key(raw, index)
    ticker = _ticker(raw.get("ticker"), tickers, index)
    side = _choice(raw, "side", index)
    action = _action(raw.get("action"), side, index)
    order_type = _choice(raw, "order_type", index)
    quantity, notional = _amount(raw, order_type, index)
    time_in_force = _choice(raw, "time_in_force", index, default="day")
    if notional is not None or (quantity is not None and quantity != int(quantity)):
        _check_fraction(quantity if notional is None else notional, time_in_force, action, index)
    if raw.get("take_profit") is None and raw.get("stop_loss") is None and raw.get("order_class") in (None, "simple"):
        limit_price = _price(raw, "limit_price", order_type, index)
        stop_price = _price(raw, "stop_price", order_type, index)
        return Order(ticker, side, order_type, action, quantity, notional, limit_price, stop_price, time_in_force)
    entry = Order(ticker, side, order_type, action, quantity, notional, time_in_force=time_in_force)
    return _with_exits(raw, entry, index)


def _check_fraction(amount: float, time_in_force: str, action: str, index: int | None) -> None:
    """Alpaca's rules for a fraction of a share (a notional order buys or sells one too), checked
    before sending: a day order, never sold short."""
    if time_in_force != "day":
        raise OrderValidationError("time_in_force", time_in_force, "'day' for a fractional or notional order", index)
    if action == "short_sell":
        allowed = "whole shares for a short sale (fractions cannot be sold short)"
        raise OrderValidationError("quantity", amount, allowed, index)


def _with_exits(raw: Mapping[str, object], order: Order, index: int | None) -> Order:
    """An order with exits (bracket / oto / oco), checked as Alpaca checks them, before sending."""
    take_profit = _exit_price(raw, "take_profit", "limit_price", _TAKE_PROFIT_ALLOWED, index)
    stop_loss, stop_limit = _stop_loss(raw, index)
    given = [name for name, value in (("take_profit", take_profit), ("stop_loss", stop_loss)) if value is not None]
    implied = "bracket" if len(given) == 2 else "oto"
    order_class = _choice(raw, "order_class", index, default=implied)
    _check_exit_shape(order_class, given, order, raw, index)
    limit_price = raw.get("limit_price") if order_class != "oco" else raw.get("limit_price", take_profit)
    prices = {**raw, "limit_price": limit_price}
    return Order(
        order.ticker, order.side, order.order_type, order.action, order.quantity, order.notional,
        _price(prices, "limit_price", order.order_type, index), _price(raw, "stop_price", order.order_type, index),
        order.time_in_force, order_class, take_profit, stop_loss, stop_limit,
    )  # fmt: skip


def _exit_price(raw: Mapping[str, object], field: str, key: str, allowed: str, index: int | None) -> float | None:
    """A take-profit or stop-loss price: a number, or a dict holding it under ``key``."""
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, Mapping):
        if set(value) - {key, "limit_price"} or key not in value:
            raise OrderValidationError(field, value, allowed, index)
        value = value[key]
    return _positive_as(value, field, allowed, index)


def _stop_loss(raw: Mapping[str, object], index: int | None) -> tuple[float | None, float | None]:
    """(stop price, limit price or None) of the stop-loss exit."""
    stop = _exit_price(raw, "stop_loss", "stop_price", _STOP_LOSS_ALLOWED, index)
    value = raw.get("stop_loss")
    limit = value.get("limit_price") if isinstance(value, Mapping) else None
    return stop, None if limit is None else _positive_as(limit, "stop_loss", _STOP_LOSS_ALLOWED, index)


def _positive_as(value: object, field: str, allowed: str, index: int | None) -> float:
    try:
        return _positive(value, field, index)
    except OrderValidationError as error:
        raise OrderValidationError(field, value, allowed, index, error.problem) from None


def _check_exit_shape(
    order_class: str, given: list[str], order: Order, raw: Mapping[str, object], index: int | None
) -> None:
    """What each order class needs: both exits (bracket, oco) or one (oto), whole shares, day or gtc."""
    need = {"simple": 0, "bracket": 2, "oco": 2, "oto": 1}[order_class]
    if len(given) != need:
        wants = {0: "neither take_profit nor stop_loss", 1: "exactly one of take_profit or stop_loss",
                 2: "both take_profit and stop_loss"}[need]  # fmt: skip
        problem = f"a {order_class!r} order needs {wants}; got {', '.join(given) or 'neither'}"
        raise OrderValidationError("order_class", order_class, _CHOICE_TEXT["order_class"], index, problem)
    if order.time_in_force not in EXIT_TIME_IN_FORCE:
        problem = f"got {order.time_in_force!r}; an order with exits takes 'day' or 'gtc'"
        raise OrderValidationError("time_in_force", order.time_in_force, _quoted(EXIT_TIME_IN_FORCE), index, problem)
    if order.quantity is None or order.quantity != int(order.quantity):
        problem = "an order with exits must be for whole shares (no 'notional', no fractions)"
        value = raw.get("quantity", raw.get("notional"))
        raise OrderValidationError("quantity", value, "a whole number > 0", index, problem)
    if order_class == "oco" and order.order_type != "limit":
        problem = f"got {order.order_type!r}; an oco order is a limit order (its limit_price is the take profit)"
        raise OrderValidationError("order_type", order.order_type, "'limit'", index, problem)
    if order_class == "oco":
        _check_oco_limit(raw, index)
    _check_exit_order(order_class, order.side, raw, index)


def _check_oco_limit(raw: Mapping[str, object], index: int | None) -> None:
    take = _exit_price(raw, "take_profit", "limit_price", _TAKE_PROFIT_ALLOWED, index)
    if raw.get("limit_price") is not None and _as_float(raw.get("limit_price")) != take:
        problem = f"an oco order's limit_price is its take profit ({show_value(take)}); leave it out"
        raise OrderValidationError("limit_price", raw.get("limit_price"), "leave it out", index, problem)


def _check_exit_order(order_class: str, side: str, raw: Mapping[str, object], index: int | None) -> None:
    """The take profit lies on the profitable side of the stop loss (above it for an exit that sells)."""
    take = _exit_price(raw, "take_profit", "limit_price", _TAKE_PROFIT_ALLOWED, index)
    stop = _exit_price(raw, "stop_loss", "stop_price", _STOP_LOSS_ALLOWED, index)
    if take is None or stop is None:
        return
    exit_sells = (side == "buy") != (order_class == "oco")
    if exit_sells and take <= stop:
        problem = f"take profit {take:g} must be above the stop loss {stop:g} for an exit that sells"
        raise OrderValidationError("take_profit", take, f"a price above stop_loss ({stop:g})", index, problem)
    if not exit_sells and take >= stop:
        problem = f"take profit {take:g} must be below the stop loss {stop:g} for an exit that buys"
        raise OrderValidationError("take_profit", take, f"a price below stop_loss ({stop:g})", index, problem)


def parse_orders(
    returned: object, tickers: Collection[str] | None = None
) -> tuple[list[Order], list[OrderValidationError]]:
    """Split what a strategy returned into valid orders and validation errors.

    ``None`` means no orders, a dict one order, a list or tuple of dicts a block. Every
    bad element yields its own error (with its index) and the good ones still go
    through. Anything else yields a single error that says what is accepted.
    """
    if returned is None:
        return [], []
    if isinstance(returned, Mapping):
        block: Iterable[tuple[int | None, object]] = ((None, returned),)
    elif isinstance(returned, list | tuple):
        block = enumerate(returned)
    else:
        problem = f"got {type(returned).__name__} {show_value(returned)}"
        return [], [OrderValidationError("orders", returned, _BLOCK_ALLOWED, None, problem)]
    lookup = _ticker_lookup(tickers)
    orders: list[Order] = []
    errors: list[OrderValidationError] = []
    for index, raw in block:
        try:
            orders.append(validate_order(raw, lookup, index))
        except OrderValidationError as error:
            errors.append(_noting_given(error, raw, lookup))
    return orders, errors


def _noting_given(error: OrderValidationError, raw: object, tickers: Collection[str] | None) -> OrderValidationError:
    """``error`` with the naming fields of the order it refused, each only when it is one of the
    values allowed there (buy/sell, an action, an order type) or, for the ticker, shaped like one
    (``APPL``: a typo is worth seeing): whatever else a strategy wrote — a secret pasted by mistake,
    longer than any symbol — never reaches a row or the dashboard."""
    allowed: dict[str, Collection[str]] = {"side": SIDES, "action": ACTION_RESULTS, "order_type": ORDER_TYPES}
    try:
        values = {key: raw.get(key) for key in ("ticker", *allowed)} if isinstance(raw, Mapping) else {}
    except Exception:  # a strange mapping: the row just names no order
        values = {}
    ticker = values.pop("ticker", None)
    error.given = {key: value for key, value in values.items() if type(value) is str and value in allowed[key]}
    if type(ticker) is str and (ticker in (tickers or ()) or _symbol_shaped(ticker)):
        error.given = {"ticker": ticker, **error.given}
    return error


def _symbol_shaped(text: str) -> bool:
    """Shaped like a stock symbol, and nothing the scrubber would blank (a secret that short)."""
    return _SYMBOL_SHAPE.fullmatch(text) is not None and scrub_text(text) == text


def new_client_order_id(action: str, worker: int, strategy: str = "", serial: str | None = None) -> str:
    """Return a fresh client order id ``{action}-{worker}-{8 hex}``, as blockpaca logs it, followed by
    ``-{strategy}`` for an order a strategy sent (``buy_long-2-9f1c02ab-momentum``).

    The strategy comes last so blockpaca's readers, which take the action and the worker from the
    first two dash-separated parts, keep working. The id is fixed before the first submission
    attempt, so a retried submission can be recognised by the broker as the same order. ``serial``
    replaces the 8 random hex digits where ids must repeat from run to run (replay).
    """
    base = f"{action}-{worker}-{serial or uuid.uuid4().hex[:8]}"
    return f"{base}-{strategy}" if strategy else base


def action_from_client_order_id(client_order_id: object) -> str | None:
    """Return the action encoded in one of our client order ids, or None if it is not ours."""
    parts = client_order_id_parts(client_order_id)
    return None if parts is None else parts[0]


def strategy_from_client_order_id(client_order_id: object) -> str:
    """Return the strategy that sent one of our orders ("" for the session's own: a liquidation, an
    order from a cell, one of blockpaca's)."""
    parts = client_order_id_parts(client_order_id)
    return "" if parts is None else parts[2]


def liquidation_orders(positions: Iterable[Mapping[str, object]]) -> list[Order]:
    """Return the market orders that flatten ``positions`` (blockpaca's position schema).

    Longs are sold with action ``liquidate``, shorts bought back with ``cover_short``;
    flat positions are skipped.
    """
    orders: list[Order] = []
    for position in positions:
        ticker = str(position["ticker"])
        quantity = float(position["quantity"])  # type: ignore[arg-type]
        if quantity > 0:
            orders.append(Order(ticker, "sell", "market", "liquidate", quantity=quantity))
        elif quantity < 0:
            orders.append(Order(ticker, "buy", "market", "cover_short", quantity=-quantity))
    return orders


def client_order_id_parts(client_order_id: object) -> tuple[str, int, str] | None:
    """The action, worker and strategy one of our client order ids carries (None if not ours)."""
    if not isinstance(client_order_id, str):
        return None
    return _split_text(client_order_id)


@functools.lru_cache(maxsize=4096)  # each of an order's trade-log rows, and its dashboard line, read its id
def _split_text(client_order_id: str) -> tuple[str, int, str] | None:
    parts = client_order_id.split("-", 3)
    if len(parts) < 3:
        return None
    action, worker, tag = parts[:3]
    if action not in ACTION_RESULTS or not (worker.isascii() and worker.isdigit()):
        return None
    if len(tag) != 8 or not _HEX_DIGITS.issuperset(tag):
        return None
    strategy = parts[3] if len(parts) == 4 else ""
    if len(parts) == 4 and not STRATEGY_TAG.fullmatch(strategy):
        return None
    return action, int(worker), strategy


def _ticker_lookup(tickers: Collection[str] | None) -> Collection[str] | None:
    """Return ``tickers`` in a form with fast membership tests (validated once per block)."""
    if tickers is None or isinstance(tickers, set | frozenset | dict):
        return tickers
    return frozenset(tickers)


def _reject_unknown_key(raw: Mapping[object, object], index: int | None) -> None:
    for key in raw:
        if key == "client_order_id":
            problem = "is assigned by the engine, not by the strategy"
            raise OrderValidationError(key, raw[key], "leave it out", index, problem)
        if key not in _KEY_SET:
            problem = f"unknown key {show_value(key)}"
            raise OrderValidationError(str(key), raw[key], _ALLOWED_KEYS_TEXT, index, problem)


def _ticker(value: object, tickers: Collection[str] | None, index: int | None) -> str:
    if not isinstance(value, str) or not value.strip():
        problem = "missing" if value is None else None
        raise OrderValidationError("ticker", value, _allowed_tickers(tickers), index, problem)
    if tickers is not None and value not in tickers:
        problem = f"got {show_value(value)}, which is not one of the session's tickers"
        raise OrderValidationError("ticker", value, _allowed_tickers(tickers), index, problem)
    return value


def _allowed_tickers(tickers: Collection[str] | None) -> str:
    if tickers is None:
        return "a ticker symbol such as 'AAPL'"
    names = sorted(tickers)
    shown = _quoted(names[:_TICKERS_SHOWN])
    hidden = len(names) - _TICKERS_SHOWN
    return f"{shown} … and {hidden} more" if hidden > 0 else shown


def _choice(raw: Mapping[str, object], field: str, index: int | None, default: str | None = None) -> str:
    """Return ``raw[field]`` as one of its allowed lower-case words (case-insensitive input)."""
    value = raw.get(field)
    allowed = _CHOICES[field]
    if value is None and default is not None:
        return default
    if isinstance(value, str):
        if value in allowed:
            return value
        lowered = value.lower()
        if lowered in allowed:
            return lowered
    problem = "missing" if value is None else None
    raise OrderValidationError(field, value, _CHOICE_TEXT[field], index, problem)


def _action(value: object, side: str, index: int | None) -> str:
    allowed = ACTIONS_BY_SIDE[side]
    if value is None:
        return allowed[0]
    if isinstance(value, str):
        if value in allowed or not value:
            return value or allowed[0]
        lowered = value.lower()
        if lowered in allowed:
            return lowered
    text = f"for side {side!r}: leave it out, or {_quoted(allowed)}"
    raise OrderValidationError("action", value, text, index)


def _amount(
    raw: Mapping[str, object], order_type: str, index: int | None
) -> tuple[float | None, float | None]:
    """Return (quantity, notional): exactly one is given; notional only for market orders."""
    quantity = raw.get("quantity")
    notional = raw.get("notional")
    if notional is None:
        if quantity is None:
            allowed = f"{_POSITIVE} (or 'notional' dollars for a market order)"
            raise OrderValidationError("quantity", None, allowed, index, "missing")
        return _positive(quantity, "quantity", index), None
    if order_type != "market":
        problem = f"got {show_value(notional)}, but a {order_type} order needs 'quantity'"
        raise OrderValidationError("notional", notional, "only with order_type 'market'", index, problem)
    if quantity is not None:
        allowed = "exactly one of 'quantity' or 'notional'"
        raise OrderValidationError("notional", notional, allowed, index, "given together with 'quantity'")
    dollars = _positive(notional, "notional", index)
    if dollars < MINIMUM_ORDER_VALUE:
        allowed = f"at least {MINIMUM_ORDER_VALUE:g} (dollars: Alpaca takes no order worth less)"
        raise OrderValidationError("notional", notional, allowed, index)
    return None, dollars


def _price(raw: Mapping[str, object], field: str, order_type: str, index: int | None) -> float | None:
    """Return the limit or stop price: required by the order types that use it, refused by the others."""
    value = raw.get(field)
    needed = field in _PRICES_BY_TYPE[order_type]
    if value is None:
        if needed:
            problem = f"missing; a {order_type} order needs it"
            raise OrderValidationError(field, None, _POSITIVE, index, problem)
        return None
    if not needed:
        users = _quoted(kind for kind, fields in _PRICES_BY_TYPE.items() if field in fields)
        problem = f"got {show_value(value)}, but a {order_type} order takes no {field}"
        raise OrderValidationError(field, value, f"leave it out, or use order_type {users}", index, problem)
    return _positive(value, field, index)


def _positive(value: object, field: str, index: int | None) -> float:
    """Return ``value`` as a finite float > 0; bools and strings are not numbers."""
    number = value if type(value) is float else _as_float(value)
    if number is None:
        problem = f"got {type(value).__name__} {show_value(value)}, not a number"
        raise OrderValidationError(field, value, _POSITIVE, index, problem)
    if not 0.0 < number < math.inf:
        raise OrderValidationError(field, value, _POSITIVE, index)
    return number


def _as_float(value: object) -> float | None:
    kind = type(value)
    exotic = kind is not float and kind is not int
    if exotic and (isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal)):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (OverflowError, ValueError):
        return None


def parse_block(orders: object, tickers: Sequence[str]) -> tuple[list[Order], list[OrderValidationError]]:
    """parse_orders, and if something in the block breaks validation itself (say a value whose repr
    raises), each element on its own: one unreadable order never takes the others down."""
    try:
        return parse_orders(orders, tickers)
    except Exception as err:
        if not isinstance(orders, list | tuple):
            return [], [_unreadable("orders", None, err)]
    known = frozenset(tickers)
    valid: list[Order] = []
    problems: list[OrderValidationError] = []
    for index, raw in enumerate(orders):
        try:
            valid.append(validate_order(raw, known, index))
        except OrderValidationError as problem:
            problems.append(_noting_given(problem, raw, known))
        except Exception as err:
            problems.append(_unreadable(_culprit(raw), index, err))
    return valid, problems


def _culprit(raw: object) -> str:
    """The key of a dict whose value cannot even be shown (its repr raises), else "order"."""
    if isinstance(raw, Mapping):
        for key, value in list(raw.items()):
            try:
                repr(value)
            except Exception:
                return key if isinstance(key, str) else "order"
    return "order"


def _unreadable(field_name: str, index: int | None, err: Exception) -> OrderValidationError:
    problem = f"could not be read ({type(err).__name__} while validating it)"
    return OrderValidationError(field_name, None, "plain str, numbers and None", index, problem)
