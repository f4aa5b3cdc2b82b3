"""What a ticker is, said once: the session, the quote book, the plots and the simulator all use it.

A ticker is a symbol as Alpaca writes it: letters and digits, with "." or "/" inside (BRK.B,
BTC/USD), upper case. Users type " aapl" or "AAPL,MSFT"; both are read the obvious way. Code that
keys a table by ticker (the QuoteBook) asks for ``exact=True``: there a name is used verbatim by
every writer and reader, so a lone string, a repeat or a name not already in normal form is a
mistake to report, not something to fix up silently.
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


def normalize_tickers(values: object, field: str = "tickers", *, exact: bool = False) -> list[str]:
    """A list of at least one ticker, normalized, repeats dropped (first one kept). One string is read
    as one ticker or a comma-separated list ("AAPL,MSFT").

    With ``exact=True`` the names must already be a list of distinct tickers in normal form:
    a string, a repeat or a name such as ``" aapl"`` raises instead of being read generously.
    """
    if isinstance(values, str):
        values = _split(values, field, exact)
    if not isinstance(values, Iterable) or isinstance(values, bytes | dict):
        raise ConfigurationError(f"{field}={values!r} is not valid; allowed: a list of at least one of {ALLOWED}")
    names = list(values)
    if not names:
        raise ConfigurationError(f"{field}=[] is not valid; allowed: a list of at least one of {ALLOWED}")
    clean = [normalize_ticker(value, field) for value in names]
    if exact:
        _check_exact(names, clean, field)
    return list(dict.fromkeys(clean))


def _split(text: str, field: str, exact: bool) -> list[str]:
    if exact:
        raise ConfigurationError(f"{field} must be a list of tickers, not the string {text!r}; e.g. [{text!r}]")
    return [part for part in text.split(",") if part.strip()]


def _check_exact(names: list[object], clean: list[str], field: str) -> None:
    loose = [(name, ticker) for name, ticker in zip(names, clean, strict=True) if name != ticker]
    if loose:
        name, ticker = loose[0]
        raise ConfigurationError(f"{field}: {name!r} is not written as a ticker; write {ticker!r}")
    doubles = sorted({name for name in clean if clean.count(name) > 1})
    if doubles:
        raise ConfigurationError(f"{field} must be distinct; repeated: {', '.join(doubles)}")
