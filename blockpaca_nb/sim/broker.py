"""The simulated broker: Alpaca's order lifecycle, matching against the simulated market, accounting.

One account. Orders move pending_new → new → partially_filled / filled, or canceled, expired,
replaced, rejected; every transition is reported through `on_event` exactly as Alpaca's
trade_updates stream reports it. Errors are raised as `ApiError` carrying Alpaca's status, code
and message, so the server can answer them verbatim.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..portfolio import Position
from . import simclock as time  # the simulator's clock: every time.time() here reads simulated time
from .hours import MarketHours
from .market import Market

ASSET_NAMESPACE = uuid.UUID("6f1b3c1e-2b7a-4a53-9a62-8e1c0f6d1b11")
ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
OPEN_STATUSES = frozenset({"new", "partially_filled", "pending_new", "accepted", "held", "pending_replace"})
MAX_CLIENT_ORDER_ID = 128
MARGIN_MULTIPLIER = 2.0

EventSink = Callable[[str, "SimOrder", Mapping[str, Any]], None]


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


@dataclass
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
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
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

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> float:
        return max(0.0, (self.qty or 0.0) - self.filled_qty)

    @property
    def filled_avg_price(self) -> float | None:
        return self.filled_notional / self.filled_qty if self.filled_qty else None


def _clean(x: float) -> float:
    """Round away float dust from fractional share arithmetic."""
    return round(x, 9) + 0.0


def _sub_penny(price: float | None) -> bool:
    """Alpaca prices in cents from $1 up, in hundredths of a cent below."""
    if price is None:
        return False
    places = 2 if price >= 1 else 4
    return abs(price * 10**places - round(price * 10**places)) > 1e-6


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
    ) -> None:
        self.market = market
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

    # ----------------------------------------------------------------- prices and accounting
    def touch(self, symbol: str) -> tuple[float, float, float, float]:
        i = self.market.index[symbol]
        m = self.market
        return float(m.bid[i]), float(m.ask[i]), float(m.bid_size[i]), float(m.ask_size[i])

    def price(self, symbol: str) -> float:
        bid, ask, _, _ = self.touch(symbol)
        return round((bid + ask) / 2, 4)

    def market_values(self) -> tuple[float, float]:
        long_mv = short_mv = 0.0
        for pos in self.positions.values():
            value = pos.quantity * self.price(pos.ticker)
            if value > 0:
                long_mv += value
            else:
                short_mv += value
        return long_mv, short_mv

    def equity(self) -> float:
        long_mv, short_mv = self.market_values()
        return self.cash + long_mv + short_mv

    def buying_power(self) -> float:
        """Reg T style: twice the equity left after the initial margin of open positions."""
        long_mv, short_mv = self.market_values()
        equity = self.cash + long_mv + short_mv
        initial_margin = (long_mv - short_mv) / MARGIN_MULTIPLIER
        return max(0.0, (equity - initial_margin) * MARGIN_MULTIPLIER)

    def _reserved(self, excluding: SimOrder | None = None) -> float:
        """Buying power held by open orders that would add exposure."""
        total = 0.0
        for order in self.open_orders.values():
            if order is not excluding:
                total += self._exposure_added(order.symbol, order.side, order.remaining) * self._reference_price(order)
        return total

    def _exposure_added(self, symbol: str, side: str, qty: float) -> float:
        """How much of `qty` opens or extends a position (what closes one needs no buying power)."""
        held = self.positions.get(symbol, Position(symbol)).quantity
        closable = max(0.0, -held) if side == "buy" else max(0.0, held)
        return max(0.0, qty - closable)

    def _reference_price(self, order: SimOrder) -> float:
        bid, ask, _, _ = self.touch(order.symbol)
        return order.limit_price or order.stop_price or (ask if order.side == "buy" else bid)

    # ----------------------------------------------------------------- submitting
    def submit(self, body: Mapping[str, Any], now: float | None = None) -> SimOrder:
        now = now or time.time()
        order = self._parse(body)
        self.hours.check(order, now)
        self._check_funds(order)
        self._accept(order, now)
        return order

    def _parse(self, body: Mapping[str, Any]) -> SimOrder:
        order_class = body.get("order_class") or "simple"
        if order_class != "simple":
            raise invalid(f"order_class {order_class!r} is not supported by the simulator")
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
        cid = body.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(cid, str) or len(cid) > MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be a string of at most {MAX_CLIENT_ORDER_ID} characters")
        if cid in self.by_client_id:
            raise invalid("client_order_id must be unique")
        order = SimOrder(
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
        )
        self._check_shape(order)
        return order

    def _check_shape(self, order: SimOrder) -> None:
        if (order.qty is None) == (order.notional is None):
            raise invalid(
                "qty or notional is required" if order.qty is None else "only one of qty or notional"
            )
        if order.notional is not None and (order.type != "market" or order.time_in_force != "day"):
            raise invalid("notional orders must be market orders with time_in_force day")
        if order.qty is not None and order.qty != int(order.qty) and order.time_in_force != "day":
            raise invalid("fractional orders must be DAY orders")
        needs = {
            "limit": ("limit_price",),
            "stop": ("stop_price",),
            "stop_limit": ("stop_price", "limit_price"),
        }
        for name in needs.get(order.type, ()):
            if getattr(order, name) is None:
                raise invalid(f"{name} is required for {order.type} orders")
        allowed = set(needs.get(order.type, ()))
        for name in ("limit_price", "stop_price"):
            if getattr(order, name) is not None and name not in allowed:
                raise invalid(f"{name} is not allowed for {order.type} orders")
        trails = [order.trail_price, order.trail_percent]
        if order.type == "trailing_stop" and sum(t is not None for t in trails) != 1:
            raise invalid("exactly one of trail_price or trail_percent is required for trailing_stop orders")
        if order.type != "trailing_stop" and any(t is not None for t in trails):
            raise invalid("trail_price and trail_percent are only allowed for trailing_stop orders")
        for name in ("limit_price", "stop_price"):
            if _sub_penny(getattr(order, name)):
                raise ApiError(422, 42210000, "sub-penny increment does not fulfill minimum pricing criteria")
        fractional = order.notional is not None or (order.qty is not None and order.qty != int(order.qty))
        if fractional and not self.market.profiles[order.symbol].fractionable:
            raise ApiError(422, 40010001, f"asset {order.symbol} is not fractionable")

    def _check_funds(self, order: SimOrder, replacing: SimOrder | None = None) -> None:
        """Alpaca's 403s: not enough shares to sell, not shortable, not enough buying power.

        `replacing` is an order about to be replaced: what it holds counts as free.
        """
        bid, ask, _, _ = self.touch(order.symbol)
        if order.notional is not None:
            order.qty = _clean(order.notional / ask) if order.side == "buy" else _clean(order.notional / bid)
        qty = order.qty or 0.0
        held = self.positions.get(order.symbol, Position(order.symbol)).quantity
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
        if order.side == "sell":
            profile = self.market.profiles[order.symbol]
            if not profile.shortable:
                raise ApiError(403, 40310000, f"asset {order.symbol} cannot be sold short")
            if qty != int(qty):
                raise ApiError(403, 40310000, "fractional orders cannot be sold short")
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

    def held_for_orders(self, symbol: str, side: str, excluding: SimOrder | None = None) -> float:
        return sum(
            o.remaining
            for o in self.open_orders.values()
            if o.symbol == symbol and o.side == side and o is not excluding
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

    def _transition(self, order: SimOrder, status: str, now: float, **extra: Any) -> None:
        order.status = status
        order.updated_at = now
        if status not in OPEN_STATUSES:
            self.open_orders.pop(order.id, None)
        event = {"partially_filled": "partial_fill", "filled": "fill"}.get(status, status)
        self.on_event(event, order, extra)

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
        if not self._triggered(order, bid, ask):
            return
        limit = order.limit_price
        if limit is not None and (touch_price > limit if order.side == "buy" else touch_price < limit):
            if order.time_in_force in ("ioc", "fok"):
                self._cancel(order, now)
            return
        if order.time_in_force == "fok" and touch_size < order.remaining:
            self._cancel(order, now)
            return
        self._fill(order, min(order.remaining, touch_size), touch_price, now)
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

    def _fill(self, order: SimOrder, qty: float, price: float, now: float) -> None:
        qty = _clean(qty)
        signed = qty if order.side == "buy" else -qty
        position = self.positions.setdefault(order.symbol, Position(order.symbol))
        position.apply_fill(signed, price)
        if not position.quantity:
            del self.positions[order.symbol]
        self.cash -= signed * price
        order.filled_qty = _clean(order.filled_qty + qty)
        order.filled_notional += qty * price
        done = order.remaining <= 1e-9
        if done:
            order.filled_at = now
        self._transition(
            order,
            "filled" if done else "partially_filled",
            now,
            price=price,
            qty=qty,
            position_qty=position.quantity,
            execution_id=str(uuid.uuid4()),
        )

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
        if not order.is_open:
            raise ApiError(422, 42210000, f"order is not cancelable (status: {order.status})")
        self._cancel(order, now or time.time())

    def _cancel(self, order: SimOrder, now: float) -> None:
        order.canceled_at = now
        self._transition(order, "canceled", now)

    def cancel_all(self, now: float | None = None) -> list[SimOrder]:
        now = now or time.time()
        canceled = list(self.open_orders.values())
        for order in canceled:
            self._cancel(order, now)
        return canceled

    def replace(self, order_id: str, body: Mapping[str, Any], now: float | None = None) -> SimOrder:
        now = now or time.time()
        old = self.get(order_id)
        if not old.is_open:
            raise ApiError(422, 42210000, f"order is not replaceable (status: {old.status})")
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
            "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
            "extended_hours": old.extended_hours,
        }
        if old.type == "trailing_stop":
            trail = body.get("trail")
            fields["stop_price"] = None
            key = "trail_price" if old.trail_price is not None else "trail_percent"
            fields[key] = trail if trail is not None else getattr(old, key)
        new = self._parse(fields)
        self._check_funds(new, replacing=old)
        new.replaces = old.id
        old.replaced_by, old.replaced_at = new.id, now
        self._transition(old, "replaced", now)
        self._accept(new, now)
        return new

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
        return self.submit(body)

    def close_all(self, cancel_orders: bool) -> list[tuple[str, int, dict[str, Any] | SimOrder]]:
        if cancel_orders:
            self.cancel_all()
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
    ) -> list[SimOrder]:
        wanted = {s.upper() for s in symbols} if symbols else None
        chosen = [
            o
            for o in self.orders.values()
            if (status == "all" or (status == "open") == o.is_open)
            and (after is None or o.created_at > after)
            and (until is None or o.created_at < until)
            and (side is None or o.side == side)
            and (wanted is None or o.symbol in wanted)
        ]
        if direction == "desc":
            chosen.reverse()
        return chosen[:limit]

    def record_equity(self, now: float) -> None:
        self.equity_history.append((now, self.equity()))
