"""Alpaca's regulatory fees on one fill: what a live account pays, so the session's books carry it.

Alpaca passes three fees on to a live account (docs.alpaca.markets/docs/regulatory-fees; the rates
below are the ones it lists in 2026, and they change a few times a year): the SEC's transaction fee
(REG) on the principal of every sell, FINRA's Trading Activity Fee (TAF) per share sold, capped per
trade, and the Consolidated Audit Trail fee (CAT) per share bought or sold. Alpaca deducts the
accrued amounts from the balance as the day goes and charges the day's total, rounded up to the
cent, at its end. A paper account pays none of them (Alpaca's paper specification says so), and
neither does the simulator unless ``Simulator(regulatory_fees=True)`` asks it to charge like a live
account.

One schedule serves the simulator's broker and the session's books: what a book is charged for a
fill is what the account paid for it, so the books' P&L stays the account's to the cent (before the
day's rounding up, at most a cent per fee a day).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeeSchedule:
    """Regulatory fees per fill, in dollars, not rounded (Alpaca rounds the day's total)."""

    sec_per_dollar_sold: float = 0.0000278  # REG: $27.80 per $1 000 000 of principal sold
    taf_per_share_sold: float = 0.000166  # TAF: per share sold ...
    taf_max_per_trade: float = 8.30  # ... at most this per trade
    cat_per_share: float = 0.000046  # CAT: per share bought or sold

    def on_fill(self, side: str, quantity: float, price: float) -> float:
        """The fees one fill of ``quantity`` shares at ``price`` costs (``side``: "buy" or "sell")."""
        shares = abs(quantity)
        fee = self.cat_per_share * shares
        if side == "sell":
            fee += self.sec_per_dollar_sold * shares * price
            fee += min(self.taf_per_share_sold * shares, self.taf_max_per_trade)
        return fee


REGULATORY = FeeSchedule()
"""Alpaca's published rates (2026), the schedule a live account pays."""
