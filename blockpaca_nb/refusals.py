"""What to do about a broker's refusal: Alpaca's message, followed by the next step in plain words.

Alpaca paper refuses orders for reasons a trader coming from a kinder broker does not expect: an
opposite order still open ("potential wash trade detected"), two directions in flight, shares held
by orders whose cancel is not yet confirmed. Its messages are terse; the trade log, ``s.errors``
and the dashboard show them verbatim (they are what a search finds) and add what to do next.
"""

from __future__ import annotations

import re

OTHER_SIDE = {"buy": "sell", "sell": "buy"}


def _wash_trade(ticker: str, side: str) -> str:
    other = OTHER_SIDE.get(side, "opposite")
    return (
        f"an open {other} order for {ticker} could trade against this {side}; cancel it first and wait for"
        " the cancel to be confirmed, or send both sides as one bracket/oco order"
    )


def _two_directions(ticker: str, side: str) -> str:
    other = OTHER_SIDE.get(side, "opposite")
    return f"an open {other} order for {ticker} goes the other way; wait for it to fill, or cancel it first"


def _held_shares(ticker: str, side: str) -> str:
    return (
        f"this {side} is larger than the {ticker} shares free to trade: the position is smaller, or open orders"
        f" (or cancels not yet confirmed) hold some of it; {side} at most what is left, or wait until those"
        " orders are canceled or filled"
    )


def _buying_power(ticker: str, side: str) -> str:
    return "the order costs more than the account's buying power; send a smaller quantity"


def _not_shortable(ticker: str, side: str) -> str:
    return f"{ticker} cannot be sold short at this broker now; only sell shares you hold"


def _fractional_short(ticker: str, side: str) -> str:
    return "short sales must be whole shares; round the quantity down"


def _no_shorting(ticker: str, side: str) -> str:
    return "shorting is switched off for this account (account configuration no_shorting, or equity under $2 000)"


ADVICE = (
    (re.compile(r"potential wash trade"), _wash_trade),
    (re.compile(r"cannot open a (long buy|short sell) while"), _two_directions),
    (re.compile(r"insufficient qty available"), _held_shares),
    (re.compile(r"insufficient buying power"), _buying_power),
    (re.compile(r"fractional orders cannot be sold short"), _fractional_short),
    (re.compile(r"cannot be sold short"), _not_shortable),
    (re.compile(r"not allowed to short"), _no_shorting),
)
"""Alpaca's refusal messages (as its users' threads and the simulator show them) and their advice;
the first pattern that matches wins."""


def advice(message: str, ticker: str, side: str) -> str:
    """What to do after the broker refused an order with ``message`` ("" when we have no advice)."""
    text = message.lower()
    for pattern, explain in ADVICE:
        if pattern.search(text):
            return explain(ticker or "this symbol", side)
    return ""


def with_advice(message: str, ticker: str, side: str) -> str:
    """``message``, then what to do about it when we know: "<Alpaca's words> — <next step>"."""
    extra = advice(message, ticker, side)
    return f"{message} — {extra}" if extra and extra not in message else message
