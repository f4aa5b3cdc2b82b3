"""When an order may be accepted, when it waits for the open, and when it may fill.

Alpaca paper does not refuse a plain order after the close: it answers `accepted` and fills it at
the next open. Orders flagged `extended_hours` must be limit orders and fill from 04:00 to 20:00 ET;
`opg` and `cls` orders have submission windows. With `market_hours="always"` (the default, so demos
work on weekends) every order may fill at any time; with `"nyse"` this module applies Alpaca's
rules on the simulator's clock. The broker asks three questions: `check`, `waits`, `may_fill`.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from . import calendar

if TYPE_CHECKING:
    from .broker import SimOrder

__all__ = ["EXTENDED_HOURS_TIF", "MarketHours"]

PRE_MARKET_OPEN = time(4, 0)
AFTER_HOURS_CLOSE = time(20, 0)
AUCTION_ORDERS_REOPEN = time(19, 0)  # opg/cls orders for the next session are taken again from 19:00
OPG_CUTOFF = time(9, 28)
CLS_CUTOFF = time(15, 50)
AUCTION_MINUTE = timedelta(minutes=1)  # the opening/closing auction, modelled as the first/last minute
EXTENDED_HOURS_TYPES = frozenset({"limit"})  # the only order type Alpaca takes with extended_hours
EXTENDED_HOURS_TIF = frozenset({"day", "gtc"})  # what Alpaca's message allows with extended_hours

REGULAR, EXTENDED, CLOSED = "regular", "extended", "closed"


class MarketHours:
    """Alpaca's hours rules for one simulator: `"always"` open, or NYSE hours on the simulator clock."""

    def __init__(self, market_hours: str = "always") -> None:
        if market_hours not in calendar.MARKET_HOURS_VALUES:
            allowed = ", ".join(map(repr, calendar.MARKET_HOURS_VALUES))
            raise ValueError(f"market_hours must be one of {allowed}; got {market_hours!r}")
        self.market_hours = market_hours
        self._last: tuple[float, str] = (float("nan"), CLOSED)  # the phase last asked for: a tick asks often

    def phase(self, now: float) -> str:
        """Regular hours, extended hours (04:00–20:00 ET outside them) or closed."""
        if self.market_hours == "always":
            return REGULAR
        if now == self._last[0]:
            return self._last[1]
        phase = self._phase(now)
        self._last = (now, phase)
        return phase

    def _phase(self, now: float) -> str:
        moment = datetime.fromtimestamp(now, calendar.EASTERN)
        day = calendar.session_on(moment.date())
        if day is None:
            return CLOSED
        if day.open <= moment < day.close:
            return REGULAR
        return EXTENDED if PRE_MARKET_OPEN <= moment.time() < AFTER_HOURS_CLOSE else CLOSED

    def check(self, order: SimOrder, now: float) -> None:
        """Refuse, as Alpaca does, an extended-hours order of the wrong kind or an auction order
        outside its submission window."""
        if order.extended_hours and (
            order.type not in EXTENDED_HOURS_TYPES or order.time_in_force not in EXTENDED_HOURS_TIF
        ):
            raise _refusal(422, 42210000, "extended hours order must be DAY or GTC limit orders")
        if self.market_hours == "always" or order.time_in_force not in ("opg", "cls"):
            return
        cutoff = OPG_CUTOFF if order.time_in_force == "opg" else CLS_CUTOFF
        moment = datetime.fromtimestamp(now, calendar.EASTERN)
        trading_day = calendar.session_on(moment.date()) is not None
        if trading_day and cutoff <= moment.time() < AUCTION_ORDERS_REOPEN:
            until = "9:28am" if order.time_in_force == "opg" else "3:50pm"
            raise _refusal(
                403, 40310000, f"{order.time_in_force} orders must be submitted after 7:00pm and before {until}"
            )

    def waits(self, order: SimOrder, now: float) -> bool:
        """True when the order is only `accepted` now and released later (at the open, or at 04:00)."""
        phase = self.phase(now)
        return phase != REGULAR and not (order.extended_hours and phase == EXTENDED)

    def may_fill(self, order: SimOrder, now: float) -> bool:
        """True when the order may trade at `now`: regular hours, its extended window, its auction."""
        if self.market_hours == "always":
            return True
        phase = self.phase(now)
        if order.time_in_force in ("opg", "cls"):
            return phase == REGULAR and self._in_auction(order.time_in_force, now)
        return phase == REGULAR or (order.extended_hours and phase == EXTENDED)

    @staticmethod
    def _in_auction(tif: str, now: float) -> bool:
        moment = datetime.fromtimestamp(now, calendar.EASTERN)
        day = calendar.session_on(moment.date())
        if day is None:
            return False
        if tif == "opg":
            return moment < day.open + AUCTION_MINUTE
        return moment >= day.close - AUCTION_MINUTE


def _refusal(status: int, code: int, message: str) -> Exception:
    from .broker import ApiError  # broker imports this module: imported only when an order is refused

    return ApiError(status, code, message)
