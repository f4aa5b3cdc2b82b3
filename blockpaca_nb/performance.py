"""Performance statistics of an equity curve and its fills, computed here (no third-party package).

A trader comparing two replays wants the usual numbers, defined the usual way, so they can be
checked by hand: returns are daily (the last equity of each New York trading day), annualised over
252 trading days, with no risk-free rate. A round trip ("trade") runs from a flat position in a
symbol to flat again (a flip closes one and opens the next); its P&L is what it realised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

TRADING_DAYS = 252
SECONDS_PER_YEAR = 365.25 * 86_400
MIN_CAGR_YEARS = 25 * 86_400 / SECONDS_PER_YEAR  # a month of trading days, at least


@dataclass
class RoundTrip:
    """One trade: from flat to flat in one symbol."""

    symbol: str
    opened: float
    closed: float
    pnl: float


def performance(
    equity: pd.Series, starting: float, fills: pd.DataFrame, exposure: np.ndarray, orders: int, fees: float
) -> pd.Series:
    """The statistics of a run that started with `starting` (cash): returns, risk, drawdown, exposure,
    turnover and trades."""
    import pandas as pd

    if equity.empty:
        return pd.Series(dtype=object)
    daily = _daily_returns(equity, starting)
    drawdown = _max_drawdown(equity, starting)
    trips = round_trips(fills)
    wins = [t.pnl > 0 for t in trips]
    traded = float((fills["qty"].abs() * fills["price"]).sum()) if len(fills) else 0.0
    held = [t.closed - t.opened for t in trips]
    return pd.Series(
        {
            "start": equity.index[0],
            "end": equity.index[-1],
            "starting_equity": starting,
            "final_equity": float(equity.iloc[-1]),
            "total_return": _total_return(equity, starting),
            "cagr": _cagr(equity, starting),
            "volatility": float(daily.std() * math.sqrt(TRADING_DAYS)) if len(daily) > 1 else math.nan,
            "sharpe": _sharpe(daily),
            "sortino": _sortino(daily),
            **drawdown,
            "exposure": float(np.mean(exposure > 0)) if len(exposure) else 0.0,
            "average_gross_exposure": float(np.mean(exposure / equity.to_numpy())) if len(exposure) else 0.0,
            "turnover": traded / float(equity.mean()) if float(equity.mean()) else math.nan,
            "orders": orders,
            "fills": len(fills),
            "trades": len(trips),
            "win_rate": float(np.mean(wins)) if wins else math.nan,
            "average_holding_time": pd.Timedelta(seconds=float(np.mean(held))) if held else pd.NaT,
            "fees": fees,
        },
        dtype=object,
    )


def _daily_returns(equity: pd.Series, starting: float) -> pd.Series:
    """Each day's return on the day before's last equity; the first day's on the starting cash."""
    closes = equity.groupby(equity.index.tz_convert("America/New_York").date).last().to_numpy(float)
    before = np.concatenate([[starting], closes[:-1]])
    import pandas as pd

    return pd.Series(closes / before - 1 if starting else np.full(len(closes), math.nan))


def _total_return(equity: pd.Series, starting: float) -> float:
    return float(equity.iloc[-1]) / starting - 1 if starting else math.nan


def _cagr(equity: pd.Series, starting: float) -> float:
    """The yearly rate that compounds to the total return; NaN under 25 days (it would mean nothing)."""
    years = (equity.index[-1] - equity.index[0]).total_seconds() / SECONDS_PER_YEAR
    growth = 1 + _total_return(equity, starting)
    if years < MIN_CAGR_YEARS or not growth > 0:
        return math.nan
    try:
        return float(growth ** (1 / years) - 1)
    except OverflowError:
        return math.inf


def _sharpe(daily: pd.Series) -> float:
    spread = float(daily.std()) if len(daily) > 1 else 0.0
    return float(daily.mean()) / spread * math.sqrt(TRADING_DAYS) if spread else math.nan


def _sortino(daily: pd.Series) -> float:
    if len(daily) < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(daily.to_numpy(), 0.0) ** 2)))
    return float(daily.mean()) / downside * math.sqrt(TRADING_DAYS) if downside else math.nan


def _max_drawdown(equity: pd.Series, starting: float) -> dict[str, object]:
    """The deepest fall from a peak (the starting cash the first), when the peak was, when the bottom
    was, and when it recovered."""
    import pandas as pd

    values = equity.to_numpy()
    peaks = np.maximum(np.maximum.accumulate(values), starting)
    falls = values / peaks - 1
    bottom = int(np.argmin(falls))
    peak = int(np.argmax(values[: bottom + 1]))
    top = max(float(values[peak]), starting)
    after = np.nonzero(values[bottom:] >= top)[0]
    recovered = equity.index[bottom + int(after[0])] if falls[bottom] < 0 and len(after) else pd.NaT
    return {
        "max_drawdown": float(falls[bottom]),
        "max_drawdown_peak": equity.index[peak],
        "max_drawdown_bottom": equity.index[bottom],
        "max_drawdown_recovered": recovered,
    }


def round_trips(fills: pd.DataFrame) -> list[RoundTrip]:
    """Flat-to-flat trades per symbol from fills (time, symbol, signed qty, price[, fee]), in time
    order; a trip's P&L is net of the fees of its fills."""
    trips: list[RoundTrip] = []
    book: dict[str, list[float]] = {}  # symbol -> [position, average price, opened at, realised]
    fees = fills["fee"] if "fee" in fills else np.zeros(len(fills))
    rows = zip(fills["time"], fills["symbol"], fills["qty"], fills["price"], fees, strict=True)
    for when, symbol, qty, price, fee in rows:
        position, average, opened, realised = book.get(symbol) or [0.0, 0.0, float(when), 0.0]
        if position == 0:
            average, opened, realised = price, float(when), 0.0
        realised -= fee
        after = round(position + qty, 9)
        if position and (after == 0 or (after > 0) != (position > 0)):
            realised += position * (price - average)  # all of it closes (a flip opens the rest anew)
            trips.append(RoundTrip(symbol, opened, float(when), realised))
            average, opened, realised = price, float(when), 0.0
        elif position and (qty > 0) != (position > 0):
            realised += -qty * (price - average)
        elif after:
            average = (position * average + qty * price) / after
        book[symbol] = [after, average, opened, realised]
    return trips
