"""Alpaca's regulatory fees on one fill: what a live account pays, so the session's books carry it.

Alpaca passes three fees on to a live account (docs.alpaca.markets/docs/regulatory-fees): the SEC's
transaction fee (REG) on the principal of every sell, FINRA's Trading Activity Fee (TAF) per share
sold, capped per trade, and the Consolidated Audit Trail fee (CAT) per executed share, bought or
sold, counted in whole shares rounded up. Alpaca deducts the accrued amounts from the balance as
the day goes and charges the day's total, rounded up to the cent, at its end. A paper account pays
none of them (Alpaca's paper specification says so), and neither does the simulator unless
``Simulator(regulatory_fees=True)`` asks it to charge like a live account.

The rates change a few times a year (the SEC resets its rate each fiscal year and mid-year; Alpaca's
own pages have quoted different CAT rates): :data:`REGULATORY` holds the ones Alpaca's rate table
listed when this was written (:attr:`FeeSchedule.as_of`), and ``replay(regulatory_fees=...)`` takes a
:class:`FeeSchedule` with today's. Where Alpaca does not say how it applies a cap, the choice is
written here: the TAF cap and the CAT rounding apply to each fill (each execution is a trade).

One schedule serves the simulator's broker, the session's books and replay: what a book is charged
for a fill is what the simulated account paid for it, to the cent before the day's rounding up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FeeSchedule:
    """Regulatory fees per fill, in dollars, not rounded (Alpaca rounds the day's total)."""

    sec_per_dollar_sold: float = 0.0000278  # REG: $27.80 per $1 000 000 of principal sold
    taf_per_share_sold: float = 0.000166  # TAF: per share sold ...
    taf_max_per_trade: float = 8.30  # ... at most this per fill
    cat_per_share: float = 0.000046  # CAT: per share bought or sold, whole shares rounded up
    as_of: str = "2026-12"  # when these rates were read off Alpaca's table

    def on_fill(self, side: str, quantity: float, price: float) -> float:
        """The fees one fill of ``quantity`` shares at ``price`` costs; ``side`` is "buy" or "sell"."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side={side!r} is not valid; allowed: 'buy', 'sell'")
        shares = abs(quantity)
        fee = self.cat_per_share * math.ceil(shares - 1e-9)
        if side == "sell":
            fee += self.sec_per_dollar_sold * shares * price
            fee += min(self.taf_per_share_sold * shares, self.taf_max_per_trade)
        return fee


REGULATORY = FeeSchedule()
"""Alpaca's rates as its table listed them (:attr:`FeeSchedule.as_of`): the schedule a live account pays."""
