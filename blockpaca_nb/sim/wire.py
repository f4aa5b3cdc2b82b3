"""Alpaca's JSON shapes: the broker's objects as the real API sends them.

The rules that bite (see the protocol reference): money and quantities are JSON strings, timestamps
are RFC-3339, assets say `class`, calendar times are `HH:MM`, bars carry `n` and `vw`.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any

from . import calendar
from .broker import Broker, Position, SimOrder, asset_id
from .broker import invalid as error_invalid
from .market import Bar
from .universe import Profile


def num(x: float | None) -> str | None:
    """A quantity or price as Alpaca writes it: a string without float noise ("1", "105.8988475")."""
    if x is None:
        return None
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def money(x: float) -> str:
    return f"{x:.2f}"


def ts(epoch: float | None) -> str | None:
    """RFC-3339 in UTC with microseconds, as `2024-01-02T15:04:05.123456Z`."""
    if epoch is None:
        return None
    whole = int(epoch // 1)
    return f"{_second(whole)}.{int((epoch - whole) * 1e6):06d}Z"


@functools.lru_cache(maxsize=4096)
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def order_json(order: SimOrder) -> dict[str, Any]:
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "created_at": ts(order.created_at),
        "updated_at": ts(order.updated_at),
        "submitted_at": ts(order.created_at),
        "filled_at": ts(order.filled_at),
        "expired_at": ts(order.expired_at),
        "canceled_at": ts(order.canceled_at),
        "failed_at": ts(order.failed_at),
        "replaced_at": ts(order.replaced_at),
        "replaced_by": order.replaced_by,
        "replaces": order.replaces,
        "asset_id": asset_id(order.symbol),
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": num(order.notional),
        "qty": num(order.shown_qty),
        "filled_qty": num(order.filled_qty),
        "filled_avg_price": num(order.filled_avg_price),
        "order_class": "" if order.order_class == "simple" else order.order_class,
        "order_type": order.type,
        "type": order.type,
        "side": order.side,
        "position_intent": order.position_intent,
        "time_in_force": order.time_in_force,
        "limit_price": num(order.limit_price),
        "stop_price": num(order.stop_price),
        "status": order.status,
        "extended_hours": order.extended_hours,
        "legs": [order_json(leg) for leg in order.legs] or None,
        "trail_percent": num(order.trail_percent),
        "trail_price": num(order.trail_price),
        "hwm": num(order.hwm),
        "subtag": None,
        "source": "blockpaca_nb.sim",
    }


def accepted_order_json(order: SimOrder) -> dict[str, Any]:
    """The order as a submit/replace/close answer reports it: just accepted, nothing filled or closed.

    Matching may already have filled (or, for ioc/fok, canceled) the order by the time the answer is
    written; as on Alpaca, those transitions reach the client on the trade_updates stream instead.
    """
    body = order_json(order)
    body.update(
        status="accepted" if order.status == "accepted" else "pending_new",  # after hours: waits
        updated_at=body["created_at"],
        filled_qty="0",
        filled_avg_price=None,
        filled_at=None,
        canceled_at=None,
        expired_at=None,
    )
    if order.type == "trailing_stop":
        body.update(stop_price=None, hwm=None)  # set by the first quote the order watches
    return body


def position_json(broker: Broker, pos: Position) -> dict[str, Any]:
    profile = broker.market.profiles[pos.ticker]
    price = broker.price(pos.ticker)
    lastday = float(broker.market.open_price[broker.market.index[pos.ticker]])
    value = pos.quantity * price
    held = broker.held_for_orders(pos.ticker, "sell" if pos.quantity > 0 else "buy")
    pl = value - pos.cost_basis
    intraday = value - pos.quantity * lastday
    return {
        "asset_id": asset_id(pos.ticker),
        "symbol": pos.ticker,
        "exchange": profile.exchange,
        "asset_class": "us_equity",
        "asset_marginable": True,
        "avg_entry_price": num(round(pos.bought_at, 6)),
        "qty": num(pos.quantity),
        "qty_available": num(math.copysign(abs(pos.quantity) - held, pos.quantity)),
        "side": "long" if pos.quantity > 0 else "short",
        "market_value": money(value),
        "cost_basis": money(pos.cost_basis),
        "unrealized_pl": money(pl),
        "unrealized_plpc": num(round(pl / abs(pos.cost_basis), 6) if pos.cost_basis else 0.0),
        "unrealized_intraday_pl": money(intraday),
        "unrealized_intraday_plpc": num(round(intraday / abs(pos.quantity * lastday), 6) if lastday else 0.0),
        "current_price": num(price),
        "lastday_price": num(lastday),
        "change_today": num(round(price / lastday - 1, 6) if lastday else 0.0),
    }


def account_json(broker: Broker) -> dict[str, Any]:
    long_mv, short_mv = broker.market_values()
    equity = broker.cash + long_mv + short_mv
    buying_power = broker.buying_power()
    return {
        "id": broker.account_id,
        "account_number": "SIM" + broker.account_id[:8].upper(),
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "currency": "USD",
        "buying_power": money(buying_power),
        "regt_buying_power": money(buying_power),
        "non_marginable_buying_power": money(max(0.0, broker.cash)),
        "options_buying_power": money(max(0.0, broker.cash)),
        "cash": money(broker.cash),
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "portfolio_value": money(equity),
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "created_at": ts(broker.created_at),
        "trade_suspended_by_user": False,
        "multiplier": f"{broker.multiplier():g}",
        "shorting_enabled": broker.shorting_enabled(),
        "equity": money(equity),
        "last_equity": money(broker.starting_cash),
        "long_market_value": money(long_mv),
        "short_market_value": money(short_mv),
        "initial_margin": money((long_mv - short_mv) / 2),
        "maintenance_margin": money((long_mv - short_mv) * 0.3),
        "last_maintenance_margin": "0",
        "sma": "0",
        "options_approved_level": 0,
        "options_trading_level": 0,
    }


CONFIGURATION_VALUES: dict[str, tuple[Any, ...]] = {
    "dtbp_check": ("both", "entry", "exit"),
    "pdt_check": ("both", "entry", "exit"),
    "trade_confirm_email": ("all", "none"),
    "max_margin_multiplier": ("1", "2", "4"),
    "suspend_trade": (True, False),
    "no_shorting": (True, False),
    "fractional_trading": (True, False),
    "ptp_no_exception_entry": (True, False),
}


def configure(broker: Broker, changes: dict[str, Any]) -> dict[str, Any]:
    """PATCH /v2/account/configurations: alpaca-py sends every field, nulls meaning "unchanged"."""
    for name, value in changes.items():
        if value is None or name == "max_options_trading_level":
            continue
        allowed = CONFIGURATION_VALUES.get(name)
        if allowed is None:
            raise error_invalid(f"unknown configuration {name!r}")
        value = str(value) if name == "max_margin_multiplier" else value
        if value not in allowed:
            raise error_invalid(f"invalid {name}: allowed {', '.join(map(str, allowed))}")
        broker.configuration[name] = value
    return broker.configuration


def asset_json(profile: Profile) -> dict[str, Any]:
    return {
        "id": asset_id(profile.symbol),
        "class": "us_equity",
        "exchange": profile.exchange,
        "symbol": profile.symbol,
        "name": profile.name,
        "status": "active",
        "tradable": True,
        "marginable": True,
        "shortable": profile.shortable,
        "easy_to_borrow": profile.shortable,
        "borrow_status": "easy_to_borrow" if profile.shortable else "hard_to_borrow",
        "fractionable": profile.fractionable,
        "maintenance_margin_requirement": 30,
        "attributes": [],
    }


def clock_json(clock: calendar.Clock) -> dict[str, Any]:
    return {
        "timestamp": clock.timestamp.isoformat(),
        "is_open": clock.is_open,
        "next_open": clock.next_open.isoformat(),
        "next_close": clock.next_close.isoformat(),
    }


def calendar_json(session: calendar.TradingDay) -> dict[str, Any]:
    return {
        "date": session.date.isoformat(),
        "open": session.open.strftime("%H:%M"),
        "close": session.close.strftime("%H:%M"),
        "session_open": "0400",
        "session_close": "2000",
        "settlement_date": session.date.isoformat(),
    }


def bar_json(bar: Bar) -> dict[str, Any]:
    return {
        "t": datetime.fromtimestamp(bar.t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "o": bar.o,
        "h": bar.h,
        "l": bar.l,
        "c": bar.c,
        "v": bar.v,
        "n": bar.n,
        "vw": bar.vw,
    }
