"""What a ticker is, said once: the session, the quote book, the plots and the simulator all use it.

A ticker is a symbol as Alpaca writes it: letters and digits, with "." or "/" inside (BRK.B,
BTC/USD), upper case. Users type " aapl" or "AAPL,MSFT"; both are read the obvious way.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigurationError

ALLOWED = "strings like 'AAPL' or 'BRK.B' (letters, digits, '.' and '/'), non-empty"


def normalize_ticker(value: object, field: str = "tickers") -> str:
    """One ticker, stripped and upper-cased; ConfigurationError naming ``field`` if it is not one."""
    text = value.strip().upper() if isinstance(value, str) else ""
    if not text or not text.replace(".", "").replace("/", "").isalnum():
        raise ConfigurationError(f"{field}: {value!r} is not a ticker; allowed: {ALLOWED}")
    return text


def normalize_tickers(values: object, field: str = "tickers") -> list[str]:
    """A non-empty list of tickers, normalized, repeats dropped (first one kept). One string is read
    as one ticker or a comma-separated list ("AAPL,MSFT")."""
    if isinstance(values, str):
        values = [part for part in values.split(",") if part.strip()]
    if not isinstance(values, Iterable) or isinstance(values, bytes | dict):
        raise ConfigurationError(f"{field}={values!r} is not valid; allowed: a non-empty list of {ALLOWED}")
    clean = [normalize_ticker(value, field) for value in values]
    if not clean:
        raise ConfigurationError(f"{field}=[] is not valid; allowed: a non-empty list of {ALLOWED}")
    return list(dict.fromkeys(clean))
