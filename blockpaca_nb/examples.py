"""Example strategies, as in the quickstart notebook: ready to run, and short enough to read."""

from __future__ import annotations

from typing import Any

from .strategy import Context

MAX_SHARES = 5


def momentum(ctx: Context) -> list[dict[str, Any]]:
    """Buy a share of what ticked up (up to MAX_SHARES); sell everything of what ticked down."""
    quotes, positions = ctx.get_current_data()
    held = {p["ticker"]: p["quantity"] for p in positions}
    last = ctx.state.setdefault("last_mid", {})
    orders = []
    for ticker, q in quotes.items():
        mid = (q["bid"] + q["ask"]) / 2
        previous, last[ticker] = last.get(ticker), mid
        if previous is None:
            continue
        if mid > previous and held.get(ticker, 0) < MAX_SHARES:
            orders.append({"ticker": ticker, "quantity": 1, "side": "buy", "order_type": "market"})
        elif mid < previous and held.get(ticker, 0) > 0:
            orders.append({"ticker": ticker, "quantity": held[ticker], "side": "sell", "order_type": "market"})
    return orders
