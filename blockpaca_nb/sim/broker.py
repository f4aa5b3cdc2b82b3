"""The simulated broker: Alpaca's order lifecycle, matching against the simulated market, accounting.

One account. Orders move pending_new → new → partially_filled / filled, or canceled, expired,
replaced, rejected; every transition is reported through `on_event` exactly as Alpaca's
trade_updates stream reports it. Errors are raised as `ApiError` carrying Alpaca's status, code
and message, so the server can answer them verbatim.

On the `paper` profile (`strict=True`) the broker also plays by Alpaca paper's rules, because what
passes here must pass there: cancels and replaces take effect after `cancel_latency_ms` (the order
reads pending_cancel / pending_replace meanwhile, keeps its hold and may still fill), a share of
marketable orders arrives as a partial fill first, the wash-trade guard and the one-direction rule
refuse conflicting orders, and an order may not flip a position. See docs/simulator-rules.md.

Why one module over 500 lines: these are Alpaca's broker rules, one set shared by the simulator and
replay; the checks (funds, conflicts, hours) and the matching must agree on every order's holds, so
they are read and changed together.
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..fees import FeeSchedule
from ..orders import MINIMUM_ORDER_VALUE
from ..portfolio import Position
from . import complex_orders
from . import simclock as time  # the simulator's clock: every time.time() here reads simulated time
from .hours import MarketHours
from .market import Market

ASSET_NAMESPACE = uuid.UUID("6f1b3c1e-2b7a-4a53-9a62-8e1c0f6d1b11")
ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
# The prices each order type must carry (and the only ones it may carry, of limit and stop).
PRICES_NEEDED: Mapping[str, tuple[str, ...]] = {
    "limit": ("limit_price",),
    "stop": ("stop_price",),
    "stop_limit": ("stop_price", "limit_price"),
}
# Each profile's numbers for the rules that have one (see docs/simulator-rules.md): `paper` plays by
# Alpaca paper's rules, `frictionless` keeps the instant, always-kind broker for benchmarks.
PROFILES: dict[str, dict[str, float]] = {
    "paper": {"cancel_latency_ms": 150.0, "partial_fill_rate": 0.1},
    "frictionless": {"cancel_latency_ms": 0.0, "partial_fill_rate": 0.0},
}
# Orders still working at the broker: matched, holding shares or buying power, listed as `open`.
OPEN_STATUSES = frozenset(
    {"new", "partially_filled", "pending_new", "accepted", "held", "pending_replace", "pending_cancel"}
)
# Orders whose cancel or replace was asked for and has not taken effect yet (they may still fill).
PENDING_CHANGE = frozenset({"pending_cancel", "pending_replace"})
# Open orders not yet live at the venue (an order sent after hours waits `accepted`): no replace yet.
NOT_LIVE_YET = frozenset({"accepted", "pending_new"})
EVENT_OF_STATUS = {"partially_filled": "partial_fill", "filled": "fill"}  # the stream's event where it differs
# Order types that execute at any price once live: they could cross any opposite order (wash-trade guard).
ANY_PRICE_TYPES = frozenset({"market", "stop", "trailing_stop"})
# Events the simulator can only produce on request (`Simulator.trigger_event`): Alpaca sends them
# for broker-side situations the simulated market does not have (a venue's day end, a correction).
TRIGGERED_EVENTS = frozenset({"done_for_day", "restated", "accepted", "expired"})
MAX_CLIENT_ORDER_ID = 128
MARGIN_MULTIPLIER = 2.0
MARGIN_MIN_EQUITY = 2000.0  # below this equity Alpaca gives multiplier 1 and no shorting
SHORT_PRICE_BUFFER = 1.03  # a short holds buying power at max(limit, 1.03 × ask)
DEFAULT_RULES: Mapping[str, Any] = {"cancel_latency_ms": 0.0, "partial_fill_rate": 0.0}

EventSink = Callable[[str, "SimOrder", Mapping[str, Any]], None]


_ID_BITS = random.Random().getrandbits  # seeded from the OS once; uuid4 per id cost more than a fill


def random_id() -> str:
    """A fresh order or execution id shaped as Alpaca makes them, a version-4 UUID (replay passes a
    counter instead). Not for secrets: the simulator's ids need only be unique."""
    h = f"{_ID_BITS(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class ApiError(Exception):
    """An error answer in Alpaca's shape: HTTP status, 8-digit code, message and extra fields."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


def invalid(message: str) -> ApiError:
    return ApiError(422, 40010001, message)


@functools.lru_cache(maxsize=8192)
def asset_id(symbol: str) -> str:
    return str(uuid.uuid5(ASSET_NAMESPACE, symbol))


@dataclass(slots=True)
class SimOrder:
    """An order as the broker holds it; `wire.order_json` turns it into Alpaca's JSON."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    client_order_id: str
    qty: float | None = None
    notional: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    trail_price: float | None = None
    trail_percent: float | None = None
    extended_hours: bool = False
    id: str = field(default_factory=random_id)
    status: str = "pending_new"
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    filled_qty: float = 0.0
    filled_notional: float = 0.0
    filled_at: float | None = None
    canceled_at: float | None = None
    expired_at: float | None = None
    replaced_at: float | None = None
    failed_at: float | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    hwm: float | None = None
    triggered: bool = False
    position_intent: str | None = None
    first_fill_drawn: bool = False  # the partial-fill draw happens once, at the first match
    order_class: str = "simple"
    legs: Sequence[SimOrder] = ()  # a bracket/oto/oco order's exits (most orders: none, and no list for them)
    parent_id: str | None = None  # set on a leg
    sibling: SimOrder | None = field(default=None, repr=False)  # the other exit: one cancels the other
    shares_shared: bool = False  # the second exit of a pair holds no shares of its own

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def shown_qty(self) -> float | None:
        """The quantity Alpaca shows for the order: none for a notional one (the shares it buys are
        worked out at the quote; its fills say how many)."""
        return self.qty if self.notional is None else None

    @property
    def remaining(self) -> float:
        return max(0.0, (self.qty or 0.0) - self.filled_qty)

    @property
    def filled_avg_price(self) -> float | None:
        return self.filled_notional / self.filled_qty if self.filled_qty else None


ACCOUNT_CONFIGURATION: Mapping[str, Any] = {
    "dtbp_check": "entry",
    "trade_confirm_email": "all",
    "suspend_trade": False,
    "no_shorting": False,
    "fractional_trading": True,
    "max_margin_multiplier": "2",
    "max_options_trading_level": None,
    "pdt_check": "entry",
    "ptp_no_exception_entry": False,
}


def _check_changeable(order: SimOrder) -> None:
    """Only a working order can be canceled or replaced, and only once (422 like Alpaca)."""
    if not order.is_open or order.status in PENDING_CHANGE:
        raise ApiError(422, 42210000, f'order is already in "{order.status}" state')


def _check_replaceable(order: SimOrder, body: Mapping[str, Any]) -> None:
    """Alpaca's replace rules beyond an order's being open: not before it is live, never a notional
    order, and whole shares only — the quantity of a fractional order may not change at all."""
    if order.status in NOT_LIVE_YET:
        raise ApiError(422, 42210000, f"cannot replace order in {order.status} status")
    if order.notional is not None:
        raise ApiError(422, 42210000, "notional orders cannot be replaced: cancel it and submit a new one")
    qty = parse_number(body, "qty")
    if qty is None or qty == order.qty:  # its own qty again (with a new price, say): no change
        return
    if order.qty is not None and order.qty != int(order.qty):
        raise ApiError(422, 42210000, "the qty of a fractional order cannot be changed")
    if qty != int(qty):
        raise invalid("qty must be a whole number of shares to replace an order")


def _same_terms(old: SimOrder, new: SimOrder) -> bool:
    """A replace must change something: quantity, prices, trail or time in force."""
    names = ["qty", "limit_price", "trail_price", "trail_percent", "time_in_force"]
    if old.type != "trailing_stop":  # a trailing stop's stop price moves by itself
        names.append("stop_price")
    return all(getattr(old, n) == getattr(new, n) for n in names)


def _could_cross(new: SimOrder, other: SimOrder) -> bool:
    """Could these opposite orders execute against each other? Market and stop orders could cross
    anything; two limits only when the buy's limit reaches the sell's."""
    if new.type in ANY_PRICE_TYPES or other.type in ANY_PRICE_TYPES:
        return True
    buy, sell = (new, other) if new.side == "buy" else (other, new)
    return (buy.limit_price or 0.0) >= (sell.limit_price or 0.0)


def _shares_counted(order: SimOrder) -> bool:
    """The second exit of a pair sells the same shares as the first while both are live."""
    return order.shares_shared and order.sibling is not None and order.sibling.is_open


def _long_and_short(values: Iterable[float]) -> tuple[float, float]:
    long_mv = short_mv = 0.0
    for value in values:
        if value > 0:
            long_mv += value
        else:
            short_mv += value
    return long_mv, short_mv


def _shrunk(order: SimOrder, filled: float) -> bool:
    """Take ``filled`` off what ``order`` may still trade; False when nothing is left to it."""
    order.qty = max(order.filled_qty, _clean((order.qty or 0.0) - filled))
    return order.remaining > 1e-9


def _clean(x: float) -> float:
    """Round away float dust from fractional share arithmetic (whole numbers, the most, as they are)."""
    return x + 0.0 if x % 1 == 0 else round(x, 9) + 0.0


def _sub_penny(price: float | None) -> bool:
    """Alpaca prices in cents from $1 up, in hundredths of a cent below."""
    if price is None:
        return False
    places = 2 if price >= 1 else 4
    return abs(price * 10**places - round(price * 10**places)) > 1e-6


def _check_amount(order: SimOrder) -> None:
    """Exactly one of qty and notional; notional only for a day market order, fractions only by the day."""
    if (order.qty is None) == (order.notional is None):
        raise invalid("qty or notional is required" if order.qty is None else "only one of qty or notional")
    if order.notional is not None and (order.type != "market" or order.time_in_force != "day"):
        raise invalid("notional orders must be market orders with time_in_force day")
    if order.qty is not None and order.qty != int(order.qty) and order.time_in_force != "day":
        raise invalid("fractional orders must be DAY orders")


def _check_prices(order: SimOrder) -> None:
    """The prices the order's type needs, none it does not, and no sub-penny increments."""
    needs = PRICES_NEEDED.get(order.type, ())
    for name in needs:
        if getattr(order, name) is None:
            raise invalid(f"{name} is required for {order.type} orders")
    limit, stop = order.limit_price, order.stop_price
    for name, price in (("limit_price", limit), ("stop_price", stop)):
        if price is not None and name not in needs:
            raise invalid(f"{name} is not allowed for {order.type} orders")
    trails = (order.trail_price is not None) + (order.trail_percent is not None)
    if order.type == "trailing_stop" and trails != 1:
        raise invalid("exactly one of trail_price or trail_percent is required for trailing_stop orders")
    if order.type != "trailing_stop" and trails:
        raise invalid("trail_price and trail_percent are only allowed for trailing_stop orders")
    if _sub_penny(limit) or _sub_penny(stop):
        raise ApiError(422, 42210000, "sub-penny increment does not fulfill minimum pricing criteria")


def parse_number(body: Mapping[str, Any], key: str) -> float | None:
    """A JSON number or numeric string from a body or query string, as Alpaca accepts both."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise invalid(f"{key} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise invalid(f"invalid {key}: {str(value)[:40]!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise invalid(f"{key} must be > 0")
    return number


class Broker:
    """Holds the account, its orders and positions, and matches orders against the market."""

    def __init__(
        self,
        market: Market,
        starting_cash: float,
        on_event: EventSink,
        hours: MarketHours | None = None,
        rules: Mapping[str, Any] = DEFAULT_RULES,
        strict: bool = False,
        seed: int = 0,
        new_id: Callable[[], str] = random_id,
        fee_schedule: FeeSchedule | None = None,
    ) -> None:
        self.market = market
        self.fee_schedule = fee_schedule  # regulatory fees out of cash at each fill, as live; None: paper
        self.new_id = new_id  # order and execution ids: random live, a counter in replay (deterministic)
        self.rules = rules  # live settings (the server's fault dict): cancel_latency_ms, partial_fill_rate
        self.strict = strict
        self.random = random.Random(seed * 7919 + 17)  # partial-fill draws, apart from the market's
        self.scheduled: list[tuple[float, SimOrder]] = []  # cancels and replaces waiting to take effect
        self.replacements: dict[str, SimOrder] = {}  # old order id → its replacement while pending
        self.rematch: list[SimOrder] = []  # partly filled on purpose: the rest fills next tick
        self.configuration: dict[str, Any] = dict(ACCOUNT_CONFIGURATION)
        self.cash = starting_cash
        self.starting_cash = starting_cash
        self.on_event = on_event
        self.hours = hours or MarketHours("always")
        self.orders: dict[str, SimOrder] = {}
        self.open_orders: dict[str, SimOrder] = {}  # the ones matching and funds checks look at
        self.by_client_id: dict[str, SimOrder] = {}
        self.positions: dict[str, Position] = {}
        self.account_id = str(uuid.uuid5(ASSET_NAMESPACE, "account"))
        self.created_at = time.time()
        self.equity_history: list[tuple[float, float]] = []
        self._fills = 0  # fills so far: positions change only with one
        self._parts: dict[str, float] = {}  # each position's value at the quotes of _parts_version
        self._parts_version: object = None

    # ----------------------------------------------------------------- prices and accounting
    def touch(self, symbol: str) -> tuple[float, float, float, float]:
        i = self.market.index[symbol]
        m = self.market
        return float(m.bid[i]), float(m.ask[i]), float(m.bid_size[i]), float(m.ask_size[i])

    def price(self, symbol: str) -> float:
        m = self.market
        i = m.index[symbol]
        return round((float(m.bid[i]) + float(m.ask[i])) / 2, 4)

    def market_values(self) -> tuple[float, float]:
        """The account's long and short market value at the mid. A market that says when its quotes
        last changed (`quotes_version`: replay's tape) lets each position's value be kept until its
        quotes change, a fill re-valuing only its own symbol (replay asks before every buy)."""
        version = getattr(self.market, "quotes_version", None)
        if version is None:
            return self._market_values()
        if self._parts_version != version:
            self._parts = {t: p.quantity * self.price(t) for t, p in self.positions.items()}
            self._parts_version = version
        return _long_and_short(self._parts.values())

    def _revalue(self, symbol: str) -> None:
        """After a fill: its symbol's part of the kept values (see market_values)."""
        if self._parts_version is None or self._parts_version != getattr(self.market, "quotes_version", None):
            return
        position = self.positions.get(symbol)
        self._parts[symbol] = position.quantity * self.price(symbol) if position is not None else 0.0

    def _market_values(self) -> tuple[float, float]:
        price = self.price
        return _long_and_short(pos.quantity * price(pos.ticker) for pos in self.positions.values())

    def equity(self) -> float:
        long_mv, short_mv = self.market_values()
        return self.cash + long_mv + short_mv

    def multiplier(self, equity: float | None = None) -> float:
        """Alpaca's margin multiplier: 2 (Reg T), 1 under $2 000 equity or when configured so."""
        if (self.equity() if equity is None else equity) < MARGIN_MIN_EQUITY:
            return 1.0
        return min(MARGIN_MULTIPLIER, float(self.configuration.get("max_margin_multiplier") or MARGIN_MULTIPLIER))

    def shorting_enabled(self) -> bool:
        return self.multiplier() > 1 and not self.configuration.get("no_shorting")

    def buying_power(self) -> float:
        """Reg T style: the multiplier times the equity left after the initial margin of positions."""
        long_mv, short_mv = self.market_values()
        equity = self.cash + long_mv + short_mv
        multiplier = self.multiplier(equity)
        initial_margin = (long_mv - short_mv) / multiplier
        return max(0.0, (equity - initial_margin) * multiplier)

    def held(self, symbol: str) -> float:
        """Shares of `symbol` held: negative when short, 0 with no position."""
        position = self.positions.get(symbol)
        return position.quantity if position is not None else 0.0

    def _reserved(self, excluding: SimOrder | None = None) -> float:
        """Buying power held by open orders that would add exposure."""
        total = 0.0
        for order in self.open_orders.values():
            if order is not excluding:
                total += self._exposure_added(order.symbol, order.side, order.remaining) * self._reference_price(order)
        return total

    def _exposure_added(self, symbol: str, side: str, qty: float) -> float:
        """How much of `qty` opens or extends a position (what closes one needs no buying power)."""
        held = self.held(symbol)
        closable = max(0.0, -held) if side == "buy" else max(0.0, held)
        return max(0.0, qty - closable)

    def _reference_price(self, order: SimOrder) -> float:
        """Alpaca's cost basis for buying power: buys at their limit (or the far side), shorts at
        max(limit, 1.03 × ask)."""
        _, ask, _, _ = self.touch(order.symbol)
        if order.side == "buy":
            return order.limit_price or order.stop_price or ask
        return max(order.limit_price or 0.0, SHORT_PRICE_BUFFER * ask)

    # ----------------------------------------------------------------- submitting
    def submit(self, body: Mapping[str, Any], now: float | None = None, *, closing: bool = False) -> SimOrder:
        """An order as Alpaca's JSON body (the server's path): parsed, then `take`n. ``closing``: the
        broker's own order closing a position (``DELETE /v2/positions``), which has no minimum."""
        order = self._parse(body)
        legs = complex_orders.build_legs(body, order, self._base_price(order))
        return self.take(order, legs, now or time.time(), closing=closing)

    def _base_price(self, order: SimOrder) -> float:
        """What an entry is expected to fill at: its limit (or stop) price, else the quote it meets."""
        if order.limit_price is not None or order.stop_price is not None:
            return float(order.limit_price if order.limit_price is not None else order.stop_price)  # type: ignore[arg-type]
        quoted = getattr(self.market, "quoted", None)  # replay's touch is moved by its slippage: not Alpaca's
        bid, ask = quoted(order.symbol) if quoted is not None else self.touch(order.symbol)[:2]
        return ask if order.side == "buy" else bid

    def take(self, order: SimOrder, legs: list[SimOrder], now: float, *, closing: bool = False) -> SimOrder:
        """An order already parsed — from a JSON body, or built by replay from a validated order
        (a simple one, no legs) — through every rule of the account, then accepted."""
        if order.order_class != "simple" and not legs:
            raise invalid(f"{order.order_class} orders need their exits (take_profit, stop_loss)")
        if not closing:
            self._check_minimum(order)
        self.hours.check(order, now)
        self._check_conflicts(order)
        self._check_funds(order)
        self._check_unique(order)
        self._attach_legs(order, legs, now)
        self._accept(order, now)
        if order.order_class == "oco":
            for leg in legs:
                self._activate(leg, now)
        return order

    def _check_minimum(self, order: SimOrder) -> None:
        """Alpaca takes no order worth less than $1 (403, Alpaca's text)."""
        if self.cost_basis(order) < MINIMUM_ORDER_VALUE:
            raise ApiError(403, 40310000, "cost basis must be >= minimal amount of order 1")

    def cost_basis(self, order: SimOrder) -> float:
        """What Alpaca values an order at for its minimum: the notional, else the qty at the limit (or
        stop) price, or at the quote it meets (a sell the bid, a buy the ask)."""
        if order.notional is not None:
            return order.notional
        price = order.limit_price or order.stop_price
        if price is None:
            bid, ask, _, _ = self.touch(order.symbol)
            price = ask if order.side == "buy" else bid
        return (order.qty or 0.0) * price

    def _check_unique(self, order: SimOrder) -> None:
        """A client order id is found taken last, after the account's checks, as a unique constraint
        on insert would find it: so the retry of an order whose first copy got through (its answer
        lost) may be refused for what that copy holds — "insufficient qty" — rather than as a duplicate.
        A client that was not told whether its first attempt arrived must look the order up."""
        if order.client_order_id in self.by_client_id:
            raise invalid("client_order_id must be unique")

    def _attach_legs(self, order: SimOrder, legs: list[SimOrder], now: float) -> None:
        """Register a complex order's exits: held until the entry fills (an oco's are live at once)."""
        if not legs:
            return  # a simple order (or an oco without its stop) keeps no list
        order.legs = legs
        for leg in legs:
            leg.id, leg.client_order_id = self.new_id(), self.new_id()
            leg.created_at = leg.updated_at = now
            self.orders[leg.id] = leg
            self.by_client_id[leg.client_order_id] = leg
        if order.order_class == "bracket":
            complex_orders.pair(legs)
        elif order.order_class == "oco":
            complex_orders.pair([order, *legs])

    def _activate(self, leg: SimOrder, now: float) -> None:
        self._release(leg, now)
        self.match_order(leg, now)

    def _release(self, leg: SimOrder, now: float) -> None:
        """An exit goes live (or waits for the open): it may trade and its sibling may cancel it."""
        self.open_orders[leg.id] = leg
        self._transition(leg, "accepted" if self.hours.waits(leg, now) else "new", now)

    def _on_closed(self, order: SimOrder, now: float) -> None:
        """A complex order's consequences: the entry's fill releases its exits, its cancel (or
        expiry) cancels them; an exit's fill cancels its sibling."""
        held = [leg for leg in order.legs if leg.status == "held"]
        if order.status == "filled":
            for leg in held:  # both exits live before either trades: the first fill cancels the other
                self._release(leg, now)
            for leg in held:
                self.match_order(leg, now)
        elif order.status in ("canceled", "expired", "rejected"):
            for leg in held:
                leg.canceled_at = now
                self._transition(leg, "canceled", now)
        sibling = order.sibling
        if order.status == "filled" and sibling is not None and sibling.is_open and sibling.status != "held":
            self._cancel(sibling, now)

    def _parse(self, body: Mapping[str, Any]) -> SimOrder:
        order_class = complex_orders.order_class(body)
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise invalid("symbol is required")
        symbol = symbol.upper()
        if symbol not in self.market.index:
            raise invalid(f'asset "{symbol}" not found')
        side, order_type = body.get("side"), body.get("type") or body.get("order_type")
        if side not in ("buy", "sell"):
            raise invalid("side must be buy or sell")
        if order_type not in ORDER_TYPES:
            raise invalid(f"invalid order type: {str(order_type)[:40]!r}")
        tif = body.get("time_in_force")
        if tif not in TIME_IN_FORCE:
            raise invalid(f"invalid time_in_force: {str(tif)[:40]!r}")
        cid = body.get("client_order_id") or self.new_id()
        if not isinstance(cid, str) or len(cid) > MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be a string of at most {MAX_CLIENT_ORDER_ID} characters")
        return self.order(
            symbol=symbol,
            side=side,
            type=order_type,
            time_in_force=tif,
            client_order_id=cid,
            qty=parse_number(body, "qty"),
            notional=parse_number(body, "notional"),
            limit_price=parse_number(body, "limit_price"),
            stop_price=parse_number(body, "stop_price"),
            trail_price=parse_number(body, "trail_price"),
            trail_percent=parse_number(body, "trail_percent"),
            extended_hours=str(body.get("extended_hours", False)).lower() == "true",
            position_intent=body.get("position_intent"),
            order_class=order_class,
        )

    def order(self, **fields: Any) -> SimOrder:
        """A new order from typed fields (a parsed body's, or replay's validated order's), given an
        id and checked for its shape as Alpaca checks a body; `take` submits it."""
        return self.check_shape(SimOrder(id=self.new_id(), **fields))

    def check_shape(self, order: SimOrder) -> SimOrder:
        """Alpaca's 422s for a body whose fields do not fit together; the order, when they do."""
        _check_amount(order)
        _check_prices(order)
        fractional = order.notional is not None or (order.qty is not None and order.qty != int(order.qty))
        if fractional and not self.market.profiles[order.symbol].fractionable:
            raise ApiError(422, 40010001, f"asset {order.symbol} is not fractionable")
        return order

    def _check_funds(self, order: SimOrder, replacing: SimOrder | None = None) -> None:
        """Alpaca's 403s: not enough shares to sell, not shortable, not enough buying power.

        `replacing` is an order about to be replaced: what it holds counts as free.
        """
        bid, ask, _, _ = self.touch(order.symbol)
        if order.notional is not None:
            order.qty = _clean(order.notional / ask) if order.side == "buy" else _clean(order.notional / bid)
        qty = order.qty or 0.0
        held = self.held(order.symbol)
        if order.side == "sell" and held > 0:
            available = held - self.held_for_orders(order.symbol, "sell", excluding=replacing)
            if qty > available + 1e-9:
                raise ApiError(
                    403,
                    40310000,
                    "insufficient qty available for order"
                    f" (requested: {qty:g}, available: {max(available, 0):g})",
                    available=f"{max(available, 0):g}",
                    existing_qty=f"{held:g}",
                    held_for_orders=f"{held - available:g}",
                    symbol=order.symbol,
                )
            return
        if order.side == "buy" and held < 0 and self.strict:
            self._check_no_flip(order, qty, held, replacing)
        if order.side == "sell":
            self._check_short(order, qty)
        added = self._exposure_added(order.symbol, order.side, qty)
        if added:
            cost = added * self._reference_price(order)
            power = self.buying_power() - self._reserved(excluding=replacing)
            if cost > power:
                raise ApiError(
                    403,
                    40310000,
                    "insufficient buying power",
                    buying_power=f"{max(power, 0):.2f}",
                    cost_basis=f"{cost:.2f}",
                )

    def _check_no_flip(self, order: SimOrder, qty: float, held: float, replacing: SimOrder | None) -> None:
        """Paper: a buy may cover a short but not turn it into a long (Alpaca refuses the flip)."""
        available = -held - self.held_for_orders(order.symbol, "buy", excluding=replacing)
        if qty > available + 1e-9:
            raise ApiError(
                403,
                40310000,
                f"insufficient qty available for order (requested: {qty:g}, available: {max(available, 0):g})",
                available=f"{max(available, 0):g}",
                existing_qty=f"{held:g}",
                held_for_orders=f"{-held - available:g}",
                symbol=order.symbol,
            )

    def _check_short(self, order: SimOrder, qty: float) -> None:
        """A sell that opens or extends a short: the asset, the quantity and the account must allow it."""
        if not self.market.profiles[order.symbol].shortable:
            raise ApiError(422, 42210000, f"asset {order.symbol} cannot be sold short")
        if qty != int(qty):
            raise ApiError(422, 42210000, "fractional orders cannot be sold short")
        if not self.shorting_enabled():
            raise ApiError(403, 40310000, "account is not allowed to short")

    def _check_conflicts(self, order: SimOrder, replacing: SimOrder | None = None) -> None:
        """Paper: Alpaca's wash-trade guard and its one-direction-at-a-time rule.

        An opposite open order that could execute against this one is a potential wash trade; with
        no position, any opposite open order means two directions in flight.
        """
        if not self.strict or not self.open_orders:  # (most orders, in a busy replay: none open)
            return
        opposite = [
            o
            for o in self.open_orders.values()
            if o.symbol == order.symbol and o.side != order.side and o is not replacing
        ]
        if not opposite:
            return
        if any(_could_cross(order, other) for other in opposite):
            raise ApiError(403, 40310000, "potential wash trade detected. use complex orders")
        if not self.held(order.symbol):
            raise ApiError(
                403,
                40310000,
                "cannot open a long buy while a short sell order is open"
                if order.side == "buy"
                else "cannot open a short sell while a long buy order is open",
            )

    def held_for_orders(self, symbol: str, side: str, excluding: SimOrder | None = None) -> float:
        """Shares (or short shares) open orders hold; `excluding` an order being replaced, whose
        one-cancels-other sibling holds the same shares."""
        if not self.open_orders:
            return 0.0
        skipped = {id(excluding), id(excluding.sibling)} if excluding is not None else set()
        return sum(
            o.remaining
            for o in self.open_orders.values()
            if o.symbol == symbol and o.side == side and id(o) not in skipped and not _shares_counted(o)
        )

    def _accept(self, order: SimOrder, now: float) -> None:
        order.created_at = order.updated_at = now
        self.orders[order.id] = order
        self.open_orders[order.id] = order
        self.by_client_id[order.client_order_id] = order
        if self.hours.waits(order, now):  # after hours: only accepted, released when it may trade
            self._transition(order, "accepted", now)
            return
        self.on_event("pending_new", order, {})
        self._transition(order, "new", now)
        self.match_order(order, now)

    def _transition(
        self, order: SimOrder, status: str, now: float, event: str | None = None, **extra: Any
    ) -> None:
        order.status = status
        order.updated_at = now
        if status not in OPEN_STATUSES:
            self.open_orders.pop(order.id, None)
        event = event or EVENT_OF_STATUS.get(status, status)
        self.on_event(event, order, extra)
        if status not in OPEN_STATUSES and (order.legs or order.sibling is not None):
            self._on_closed(order, now)

    # ----------------------------------------------------------------- matching
    def on_market(self, now: float) -> None:
        """Match every resting order against the latest quotes (after each market step)."""
        for order in list(self.open_orders.values()):
            self.match_order(order, now)

    def match_order(self, order: SimOrder, now: float) -> None:
        if not order.is_open or not self.hours.may_fill(order, now):
            return
        if order.status == "accepted":
            self._transition(order, "new", now)
        bid, ask, bid_size, ask_size = self.touch(order.symbol)
        touch_price, touch_size = (ask, ask_size) if order.side == "buy" else (bid, bid_size)
        if touch_size <= 0 or not self._triggered(order, bid, ask):
            return  # nothing offered on that side: nothing fills
        limit = order.limit_price
        if limit is not None and (touch_price > limit if order.side == "buy" else touch_price < limit):
            if order.time_in_force in ("ioc", "fok"):
                self._cancel(order, now)
            return
        if order.time_in_force == "fok" and touch_size < order.remaining:
            self._cancel(order, now)
            return
        self._fill(order, self._first_fill_size(order, min(order.remaining, touch_size)), touch_price, now)
        if order.time_in_force == "ioc" and order.is_open:
            self._cancel(order, now)

    def _triggered(self, order: SimOrder, bid: float, ask: float) -> bool:
        if order.type in ("market", "limit") or order.triggered:
            return True
        if order.type == "trailing_stop":
            watch = bid if order.side == "sell" else ask
            better = max if order.side == "sell" else min
            order.hwm = watch if order.hwm is None else better(order.hwm, watch)
            order.stop_price = self._trail_stop(order)
        stop = order.stop_price or 0.0
        order.triggered = ask >= stop if order.side == "buy" else bid <= stop
        return order.triggered

    @staticmethod
    def _trail_stop(order: SimOrder) -> float:
        hwm, sign = order.hwm or 0.0, (-1 if order.side == "sell" else 1)
        if order.trail_price is not None:
            return round(hwm + sign * order.trail_price, 2)
        return round(hwm * (1 + sign * (order.trail_percent or 0.0) / 100), 2)

    def _first_fill_size(self, order: SimOrder, qty: float) -> float:
        """Paper fills: a seeded share of marketable orders first fills a random part only."""
        if order.first_fill_drawn or order.time_in_force in ("ioc", "fok"):
            return qty
        order.first_fill_drawn = True
        rate = self.rules.get("partial_fill_rate") or 0.0
        if not rate or self.random.random() >= rate:
            return qty
        if qty == int(qty) and qty < 2:
            return qty
        self.rematch.append(order)
        if qty == int(qty):
            return float(self.random.randint(1, int(qty) - 1))
        return _clean(qty * self.random.uniform(0.1, 0.9))

    def _fill(self, order: SimOrder, qty: float, price: float, now: float) -> None:
        qty = _clean(qty)
        pending = order.status if order.status in PENDING_CHANGE else None
        signed = qty if order.side == "buy" else -qty
        position = self.positions.get(order.symbol)
        if position is None:
            position = self.positions[order.symbol] = Position(order.symbol)
        position.apply_fill(signed, price)
        self._fills += 1
        if not position.quantity:
            del self.positions[order.symbol]
        self._revalue(order.symbol)
        self.cash -= signed * price
        if self.fee_schedule is not None:
            self.cash -= self.fee_schedule.on_fill(order.side, qty, price)
        order.filled_qty = _clean(order.filled_qty + qty)
        order.filled_notional += qty * price
        done = order.remaining <= 1e-9
        if done:
            order.filled_at = now
        elif order.sibling is not None:
            self._shrink_sibling(order.sibling, qty, now)
        self._transition(
            order,
            "filled" if done else pending or "partially_filled",
            now,
            event="fill" if done else "partial_fill",
            price=price,
            qty=qty,
            position_qty=position.quantity,
            execution_id=self.new_id(),
        )
        if done and pending:
            self._change_lost(order, pending, now)

    def _shrink_sibling(self, sibling: SimOrder, filled: float, now: float) -> None:
        """One exit filled in part: its sibling (and a replacement waiting to take its place) may
        close only what is still held — an exit pair never closes more than its entry opened, so
        never turns a long into a short. Alpaca documents one-cancels-other but not this case;
        brokers' OCO orders reduce the sibling so. A sibling left nothing is canceled."""
        replacement = self.replacements.get(sibling.id)
        if replacement is not None:
            _shrunk(replacement, filled)
        if sibling.is_open and not _shrunk(sibling, filled):
            self._cancel(sibling, now)

    def _change_lost(self, order: SimOrder, pending: str, now: float) -> None:
        """The order filled before its cancel or replace took effect: Alpaca rejects the change."""
        event = "order_cancel_rejected" if pending == "pending_cancel" else "order_replace_rejected"
        self.on_event(event, order, {})
        self._drop_replacement(order, now)

    def _drop_replacement(self, order: SimOrder, now: float) -> None:
        """A replacement that will never take effect is rejected (its id was already answered)."""
        new = self.replacements.pop(order.id, None)
        if new is not None:
            new.failed_at = now
            self._transition(new, "rejected", now)

    # ----------------------------------------------------------------- cancel, replace, expire
    def get(self, order_id: str) -> SimOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise ApiError(404, 40410000, "order not found")
        return order

    def get_by_client_id(self, client_order_id: str) -> SimOrder:
        order = self.by_client_id.get(client_order_id)
        if order is None:
            raise ApiError(404, 40410000, "order not found")
        return order

    def cancel(self, order_id: str, now: float | None = None) -> None:
        order = self.get(order_id)
        _check_changeable(order)
        self.request_cancel(order, now or time.time())

    def request_cancel(self, order: SimOrder, now: float) -> None:
        """Cancel now (frictionless) or after `cancel_latency_ms`, reading pending_cancel meanwhile."""
        latency = self.rules.get("cancel_latency_ms") or 0.0
        self._drop_replacement(order, now)
        if not latency:
            self._cancel(order, now)
            return
        self._transition(order, "pending_cancel", now)
        self.scheduled.append((now + latency / 1000, order))

    def _cancel(self, order: SimOrder, now: float) -> None:
        order.canceled_at = now
        self._drop_replacement(order, now)
        self._transition(order, "canceled", now)

    def cancel_all(self, now: float | None = None) -> list[SimOrder]:
        """DELETE /v2/orders: every open order not already being canceled gets a cancel request."""
        now = now or time.time()
        chosen = [o for o in self.open_orders.values() if o.status != "pending_cancel"]
        for order in chosen:
            self.request_cancel(order, now)
        return chosen

    def run_due(self, now: float) -> None:
        """Let the cancels and replaces whose latency has passed take effect, and fill the rest of
        orders partly filled on purpose (called every tick, even when quotes stand still)."""
        if self.rematch:
            rematch, self.rematch = self.rematch, []
            for order in rematch:
                self.match_order(order, now)
        if not self.scheduled or self.scheduled[0][0] > now:
            return
        due = [item for item in self.scheduled if item[0] <= now]
        self.scheduled = [item for item in self.scheduled if item[0] > now]
        for _, order in due:
            if order.status == "pending_cancel":
                self._cancel(order, now)
            elif order.status == "pending_replace" and order.id in self.replacements:
                self._complete_replace(order, self.replacements.pop(order.id), now)

    def replace(self, order_id: str, body: Mapping[str, Any], now: float | None = None) -> SimOrder:
        now = now or time.time()
        old = self.get(order_id)
        _check_changeable(old)
        _check_replaceable(old, body)
        fields = {
            "symbol": old.symbol,
            "side": old.side,
            "type": old.type,
            "time_in_force": body.get("time_in_force") or old.time_in_force,
            "qty": body.get("qty") if body.get("qty") is not None else old.qty,
            "limit_price": body.get("limit_price")
            if body.get("limit_price") is not None
            else old.limit_price,
            "stop_price": body.get("stop_price") if body.get("stop_price") is not None else old.stop_price,
            "client_order_id": body.get("client_order_id") or self.new_id(),
            "extended_hours": old.extended_hours,
        }
        if old.type == "trailing_stop":
            trail = body.get("trail")
            fields["stop_price"] = None
            key = "trail_price" if old.trail_price is not None else "trail_percent"
            fields[key] = trail if trail is not None else getattr(old, key)
        new = self._parse(fields)
        if _same_terms(old, new):
            raise ApiError(403, 40310000, "order parameters are not changed")
        self._check_minimum(new)
        self._check_conflicts(new, replacing=old)
        self._check_funds(new, replacing=old)
        self._check_unique(new)
        return self._request_replace(old, new, now)

    def _request_replace(self, old: SimOrder, new: SimOrder, now: float) -> SimOrder:
        """Replace now (frictionless) or after `cancel_latency_ms`, the old order reading
        pending_replace meanwhile; the replacement is known (by id) from the start."""
        latency = self.rules.get("cancel_latency_ms") or 0.0
        if not latency:
            self._complete_replace(old, new, now)
            return new
        new.replaces, new.created_at, new.updated_at = old.id, now, now
        self.orders[new.id] = new
        self.by_client_id[new.client_order_id] = new
        self.replacements[old.id] = new
        self._transition(old, "pending_replace", now)
        self.scheduled.append((now + latency / 1000, old))
        return new

    def _complete_replace(self, old: SimOrder, new: SimOrder, now: float) -> None:
        new.replaces = old.id
        new.order_class, new.legs, old.legs = old.order_class, old.legs, ()  # a bracket keeps its exits
        new.parent_id, new.shares_shared = old.parent_id, old.shares_shared
        if old.sibling is not None:
            new.sibling, old.sibling.sibling, old.sibling = old.sibling, new, None
        old.replaced_by, old.replaced_at = new.id, now
        self._transition(old, "replaced", now)
        self._accept(new, now)

    def trigger_event(self, order_id: str, event: str, now: float | None = None) -> SimOrder:
        """Produce one of the events the simulated market never causes by itself (for tests)."""
        if event not in TRIGGERED_EVENTS:
            raise invalid(f"event must be one of: {', '.join(sorted(TRIGGERED_EVENTS))}")
        order = self.get(order_id)
        now = now or time.time()
        if event == "done_for_day":
            self._transition(order, "done_for_day", now)
        elif event == "expired":
            order.expired_at = now
            self._transition(order, "expired", now)
        elif event == "accepted":
            self._transition(order, "accepted", now)
        else:
            self.on_event(event, order, {})
        return order

    def expire_day_orders(self, now: float) -> None:
        """At the close: day orders still open expire (only when the market has hours)."""
        for order in [
            o for o in self.open_orders.values() if o.time_in_force in ("day", "opg", "cls")
        ]:
            order.expired_at = now
            self._transition(order, "expired", now)

    # ----------------------------------------------------------------- positions
    def position(self, symbol_or_id: str) -> Position:
        for pos in self.positions.values():
            if symbol_or_id.upper() == pos.ticker or symbol_or_id == asset_id(pos.ticker):
                return pos
        raise ApiError(404, 40410000, "position does not exist")

    def close_position(
        self, symbol_or_id: str, qty: float | None = None, percentage: float | None = None
    ) -> SimOrder:
        pos = self.position(symbol_or_id)
        amount = abs(pos.quantity)
        if qty is not None:
            amount = min(amount, qty)
        elif percentage is not None:
            amount = _clean(amount * min(percentage, 100.0) / 100)
        body = {
            "symbol": pos.ticker,
            "qty": amount,
            "side": "sell" if pos.quantity > 0 else "buy",
            "type": "market",
            "time_in_force": "day",
        }
        return self.submit(body, closing=True)

    def close_all(self, cancel_orders: bool) -> list[tuple[str, int, dict[str, Any] | SimOrder]]:
        """DELETE /v2/positions: with cancel_orders, Alpaca cancels the open orders itself before it
        liquidates (one server-side step: the cancels are confirmed before the closing orders)."""
        if cancel_orders:
            now = time.time()
            for order in list(self.open_orders.values()):
                if self.rules.get("cancel_latency_ms") and order.status != "pending_cancel":
                    self._transition(order, "pending_cancel", now)
                self._cancel(order, now)
        results: list[tuple[str, int, dict[str, Any] | SimOrder]] = []
        for symbol in list(self.positions):
            try:
                results.append((symbol, 200, self.close_position(symbol)))
            except ApiError as err:
                results.append((symbol, err.status, err.body()))
        return results

    # ----------------------------------------------------------------- listing
    def list_orders(
        self,
        status: str = "open",
        limit: int = 50,
        after: float | None = None,
        until: float | None = None,
        direction: str = "desc",
        side: str | None = None,
        symbols: Iterable[str] | None = None,
        nested: bool = False,
    ) -> list[SimOrder]:
        """Alpaca's order listing; `nested` rolls each complex order's legs up under it."""
        wanted = {s.upper() for s in symbols} if symbols else None
        chosen = [
            o
            for o in self.orders.values()
            if (status == "all" or (status == "open") == o.is_open)
            and (after is None or o.created_at > after)
            and (until is None or o.created_at < until)
            and (side is None or o.side == side)
            and (wanted is None or o.symbol in wanted)
            and not (nested and o.parent_id)
        ]
        if direction == "desc":
            chosen.reverse()
        return chosen[:limit]

    def record_equity(self, now: float) -> None:
        self.equity_history.append((now, self.equity()))
