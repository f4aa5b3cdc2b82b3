"""A trade log as a DataFrame, checked: the input checks and column readers that the plots, the
P&L accounting and the order statistics share.

Kept apart from :mod:`.tradelog` (the schema and the writer) because it needs numpy and pandas at
import, and the recorder process, which writes the log, should not pay for them.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd

from .errors import ConfigurationError, show_value
from .tickers import normalize_tickers
from .tradelog import BLOCKPACA_COLUMNS, load_trade_log

REQUIRED_COLUMNS: tuple[str, ...] = BLOCKPACA_COLUMNS
"""Columns a DataFrame (or CSV) must have to be plotted: blockpaca 0.1.2's ten."""


def wanted_tickers(tickers: object) -> list[str] | None:
    """None (all tickers), one symbol, or a list of symbols (see :mod:`.tickers`)."""
    return None if tickers is None else normalize_tickers(tickers)


def read_source(source: object) -> pd.DataFrame:
    """Return the trade log ``source`` names (a path) or is (a DataFrame), checked."""
    if isinstance(source, pd.DataFrame):
        return _checked_frame(source)
    if isinstance(source, str | os.PathLike):
        return _read(pathlib.Path(source).expanduser())
    raise ConfigurationError(
        f"source={show_value(source)} is not valid; allowed: a trade-log CSV path or a pandas DataFrame"
    )


def _read(path: pathlib.Path) -> pd.DataFrame:
    """Load the CSV at ``path`` once its header shows it is a trade log."""
    if not path.is_file():
        what = "a directory, not a trade-log file" if path.is_dir() else "not an existing file"
        raise ConfigurationError(f"source: {str(path)!r} is {what}")
    with open(path, encoding="utf-8", errors="replace") as file:
        header = file.readline().strip()
    if header:
        _require_columns(set(header.split(",")), f"source: {str(path)!r}")
    try:
        return load_trade_log(path)
    except (ValueError, pd.errors.ParserError) as error:
        raise ConfigurationError(f"source: {str(path)!r} is not a readable trade log ({error})") from None


def _checked_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a DataFrame's columns; coerce numbers given as text (without touching the caller's frame)."""
    _require_columns(set(frame.columns), "source: the DataFrame")
    numeric = ("executed_price", "executed_qty", "timestamp", "latency_ms")
    wrong = [c for c in numeric if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])]
    if not wrong:
        return frame
    return frame.assign(**{column: pd.to_numeric(frame[column], errors="coerce") for column in wrong})


def _require_columns(present: set[str], what: str) -> None:
    missing = [column for column in REQUIRED_COLUMNS if column not in present]
    if missing:
        names = ", ".join(repr(column) for column in missing)
        raise ConfigurationError(
            f"{what} is missing trade-log column(s) {names}; required: {', '.join(REQUIRED_COLUMNS)}"
        )


def ticker_rows(frame: pd.DataFrame, tickers: list[str] | None) -> np.ndarray | None:
    """Rows of the wanted tickers, or None for all rows (saves a million-row mask)."""
    if tickers is None:
        return None
    return frame["ticker"].isin(tickers).to_numpy()


def text_column(frame: pd.DataFrame, column: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A text column as an object array (rows selected), without copying a whole column.

    Missing values stay as they are (NaN, None): cleaning a million rows costs more than
    the comparisons that read them; :func:`as_text` blanks a selection when it matters.
    """
    values = frame[column].to_numpy(dtype=object)
    return values if rows is None else values[rows]


def as_text(values: np.ndarray) -> np.ndarray:
    """Missing values as "" and everything as text (for hover labels and group keys).

    A loaded log is text already and is returned as it is; only a caller's odd DataFrame
    (numbers or None in a text column) pays for the conversion.
    """
    if pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty"):
        return values
    return np.where(pd.isna(values), "", values).astype(str).astype(object)


def number_column(frame: pd.DataFrame, column: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A numeric column as float64 (rows selected), NaN for missing values or a missing column."""
    if column not in frame.columns:
        return np.full(len(frame) if rows is None else len(rows), np.nan)
    values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values if rows is None else values[rows]


def row_indices(mask: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """Indices where ``mask`` (and ``keep``, when filtering tickers) hold."""
    return np.flatnonzero(mask if keep is None else mask & keep)
