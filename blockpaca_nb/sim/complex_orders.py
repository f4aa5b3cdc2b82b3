"""Alpaca's order classes beyond `simple`: bracket, oco and oto, as legs hanging off one order.

A bracket is an entry with two exits (a take-profit limit and a stop loss); an oto is an entry with
one exit; an oco is the two exits alone. Exits of a bracket/oto are `held` until the entry fills;
the two exits of a bracket or an oco are one-cancels-other: the first to fill cancels its sibling.
This module reads the legs from an order body and builds them; the broker runs their lifecycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import broker  # the broker imports this module too: names are looked up at call time

if TYPE_CHECKING:
    from .broker import SimOrder

# The order classes Alpaca serves for equities (mleg is options only).
ORDER_CLASSES = frozenset({"simple", "bracket", "oco", "oto"})
# Classes whose exits wait (status `held`) for the entry to fill.
ENTRY_CLASSES = frozenset({"bracket", "oto"})
# Classes whose two exits cancel each other.
PAIRED_CLASSES = frozenset({"bracket", "oco"})


def order_class(body: Mapping[str, Any]) -> str:
    value = body.get("order_class") or "simple"
    if not isinstance(value, str) or value not in ORDER_CLASSES:
        raise broker.invalid(f"invalid order_class: {str(value)[:40]!r}; allowed: {', '.join(sorted(ORDER_CLASSES))}")
    return str(value)


def _leg_prices(body: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    take_profit, stop_loss = body.get("take_profit") or {}, body.get("stop_loss") or {}
    if not isinstance(take_profit, Mapping) or not isinstance(stop_loss, Mapping):
        raise broker.invalid("take_profit and stop_loss must be objects")
    return (
        broker.parse_number(take_profit, "limit_price"),
        broker.parse_number(stop_loss, "stop_price"),
        broker.parse_number(stop_loss, "limit_price"),
    )


def build_legs(body: Mapping[str, Any], parent: SimOrder, base_price: float) -> list[SimOrder]:
    """The exits of a bracket / oto / oco order, checked like Alpaca checks them (`base_price`: what
    the entry is expected to fill at — its limit or stop price, else the quote it would meet)."""
    if parent.order_class == "simple":
        return []
    take, stop, stop_limit = _leg_prices(body)
    _check_class_shape(parent, take, stop)
    if parent.order_class == "oco":
        return [_leg(parent, parent.side, "stop", stop, stop_limit)] if stop is not None else []
    _check_base_price(parent.side == "buy", take, stop, base_price)
    exit_side = "sell" if parent.side == "buy" else "buy"
    legs = []
    if take is not None:
        legs.append(_leg(parent, exit_side, "limit", None, take))
    if stop is not None:
        legs.append(_leg(parent, exit_side, "stop", stop, stop_limit))
    return legs


def _check_class_shape(parent: SimOrder, take: float | None, stop: float | None) -> None:
    kind = parent.order_class
    if kind in PAIRED_CLASSES and (take is None or stop is None):
        raise broker.invalid(f"{kind} orders require both take_profit.limit_price and stop_loss.stop_price")
    if kind == "oto" and (take is None) == (stop is None):
        raise broker.invalid("oto orders require exactly one of take_profit or stop_loss")
    if parent.time_in_force not in ("day", "gtc"):
        raise broker.invalid(f"{kind} orders must be day or gtc orders")
    if parent.notional is not None or (parent.qty or 0) != int(parent.qty or 0):
        raise broker.invalid(f"{kind} orders must be whole-share qty orders")
    if kind == "oco" and (parent.type != "limit" or parent.limit_price != take):
        raise broker.invalid("oco orders must be limit orders whose limit_price is take_profit.limit_price")
    if take is not None and stop is not None:
        exit_sells = (parent.side == "buy") != (kind == "oco")
        if exit_sells and take <= stop:
            raise broker.invalid("take_profit.limit_price must be above stop_loss.stop_price for an exit that sells")
        if not exit_sells and take >= stop:
            raise broker.invalid("take_profit.limit_price must be below stop_loss.stop_price for an exit that buys")


def _check_base_price(exit_sells: bool, take: float | None, stop: float | None, base: float) -> None:
    """Alpaca's 422s for exits on the wrong side of the entry: a take profit a cent beyond its price
    at least, a stop loss a cent short of it (else the exit would fill the moment the entry did)."""
    cent = 0.01 - 1e-9
    if take is not None and (take - base < cent if exit_sells else base - take < cent):
        relation = ">= base_price + 0.01" if exit_sells else "<= base_price - 0.01"
        raise broker.invalid(f"take_profit.limit_price must be {relation} (base_price {base:g})")
    if stop is not None and (base - stop < cent if exit_sells else stop - base < cent):
        relation = "<= base_price - 0.01" if exit_sells else ">= base_price + 0.01"
        raise broker.invalid(f"stop_loss.stop_price must be {relation} (base_price {base:g})")


def _leg(parent: SimOrder, side: str, kind: str, stop: float | None, limit: float | None) -> SimOrder:
    order_type = "stop_limit" if kind == "stop" and limit is not None else kind
    return broker.SimOrder(
        symbol=parent.symbol,
        side=side,
        type=order_type,
        time_in_force=parent.time_in_force,
        client_order_id=str(uuid.uuid4()),
        qty=parent.qty,
        limit_price=limit,
        stop_price=stop,
        order_class=parent.order_class,
        parent_id=parent.id,
        status="held",
    )


def pair(orders: list[SimOrder]) -> None:
    """Link two exits so the first to fill cancels the other; only one of them counts as holding."""
    if len(orders) == 2:
        first, second = orders
        first.sibling, second.sibling = second, first
        second.shares_shared = True
