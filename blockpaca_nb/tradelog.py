"""The trade log: blockpaca's CSV schema, an append-only writer and a pandas loader.

Every order event of a session becomes one CSV line. blockpaca 0.1.2's ten columns come
first, in its order, so its users' analysis code keeps working::

    type,client_order_id,ticker,executed_price,executed_qty,status,side,action,timestamp,raw_status
    execution,buy_long-7-2304b6b1,DIA,484.74,1.0,filled,buy,buy_long,1766515599.236655,OrderStatus.FILLED

As in blockpaca, ``executed_qty``/``executed_price`` are the order's *cumulative* filled quantity
and average fill price after the row's event (0.0 before anything filled), so an order's last row
says how much of it was executed, at what price. Our extra columns follow (:data:`EXTRA_COLUMNS`);
the last two, ``fill_qty``/``fill_price``, say what the row's own event executed (empty when it
executed nothing): sum ``fill_qty`` to count each fill once. The recorder is the only writer; every
line is written whole by one ``write`` call on a file opened for appending, and flushed to
the operating system at once, so a crash never leaves half a row and another process can
read the log while the session runs.
"""

from __future__ import annotations

import csv
import io
import os
import pathlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import IO, TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    import pandas

BLOCKPACA_COLUMNS: tuple[str, ...] = (
    "type",
    "client_order_id",
    "ticker",
    "executed_price",
    "executed_qty",
    "status",
    "side",
    "action",
    "timestamp",
    "raw_status",
)
"""blockpaca 0.1.2's columns, in its order."""

EXTRA_COLUMNS: tuple[str, ...] = (
    "event",
    "order_id",
    "order_type",
    "qty",
    "limit_price",
    "filled_qty",
    "filled_avg_price",
    "reason",
    "worker",
    "latency_ms",
    "fill_qty",
    "fill_price",
    "strategy",
)
"""Columns blockpaca_nb adds after blockpaca's ten: ``fill_qty``/``fill_price`` are the per-fill view,
``strategy`` the strategy that sent the order ("" for the session's own: a liquidation, an order
from a cell). A log written before ``strategy`` existed is upgraded when a session appends to it."""

COLUMNS: tuple[str, ...] = BLOCKPACA_COLUMNS + EXTRA_COLUMNS

FLOAT_COLUMNS: tuple[str, ...] = (
    "executed_price",
    "executed_qty",
    "timestamp",
    "qty",
    "limit_price",
    "filled_qty",
    "filled_avg_price",
    "latency_ms",
    "fill_qty",
    "fill_price",
)
_INT_COLUMNS: tuple[str, ...] = ("worker",)
COLUMN_TYPES: Mapping[str, str] = {
    **dict.fromkeys(COLUMNS, "str"),
    **dict.fromkeys(FLOAT_COLUMNS, "float64"),
    **dict.fromkeys(_INT_COLUMNS, "Int64"),
}
"""Each column's pandas type in a loaded trade log (text "" when empty, numbers NaN or <NA>)."""
_HEADER = ",".join(COLUMNS)
_HEADER_BEFORE_STRATEGIES = ",".join(COLUMNS[:-1])  # the layout of logs written before `strategy`
_MISSING_MARKS = ["", "nan", "NaN", "None"]
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


@dataclass
class TradeLogRow:
    """One line of the trade log.

    ``event`` is the trade_updates event (``new``, ``fill``, ``canceled`` ...) or one of
    ours (``submitted``, ``rejected``, ``validation_error`` ...); ``status`` the order's
    status after it; ``raw_status`` the broker's enum text (``OrderStatus.FILLED``).
    ``executed_qty``/``executed_price`` are the order's cumulative filled quantity and average
    price after the event (blockpaca's meaning; 0.0 before any fill), ``fill_qty``/``fill_price``
    what this event itself executed (None when nothing), ``qty`` the ordered quantity, ``reason``
    a rejection's explanation, ``strategy`` the strategy that sent the order.
    Optional numbers are left empty in the CSV when None.
    """

    type: str = "execution"
    client_order_id: str = ""
    ticker: str = ""
    executed_price: float = 0.0
    executed_qty: float = 0.0
    status: str = ""
    side: str = ""
    action: str = ""
    timestamp: float = field(default_factory=time.time)
    raw_status: str = ""
    event: str = ""
    order_id: str = ""
    order_type: str = ""
    qty: float | None = None
    limit_price: float | None = None
    filled_qty: float | None = None
    filled_avg_price: float | None = None
    reason: str = ""
    worker: int | None = None
    latency_ms: float | None = None
    fill_qty: float | None = None
    fill_price: float | None = None
    strategy: str = ""


_ROW_FIELDS = frozenset(f.name for f in fields(TradeLogRow))


def trade_log_path(directory: str | os.PathLike[str], name: str) -> pathlib.Path:
    """Return ``directory/name.csv``, where blockpaca keeps the log of the strategy ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"trade_log_name must be a non-empty string; got {name!r}")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigurationError(f"trade_log_name must be a file name, not a path; got {name!r}")
    file_name = name if name.lower().endswith(".csv") else f"{name}.csv"
    return pathlib.Path(directory).expanduser() / file_name


class TradeLogWriter:
    """Append rows to a CSV trade log, one whole flushed line per row.

    The file's directory must exist. A new or empty file gets the header; an existing one
    is appended to, provided its header is this schema's. ``fsync=True`` also forces every
    row to disk (slower; survives a power cut, not just a crash).
    """

    def __init__(self, path: str | os.PathLike[str], fsync: bool = False) -> None:
        self.path = pathlib.Path(path).expanduser()
        self._fsync = fsync
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self._fd: int | None = _open_for_append(self.path)
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def write(self, row: TradeLogRow | Mapping[str, object]) -> None:
        """Append one row (a :class:`TradeLogRow`, or a mapping of some of its columns)."""
        self.write_many([row])

    def write_many(self, rows: Sequence[TradeLogRow | Mapping[str, object]]) -> None:
        """Append rows in one write (a burst of order events costs one system call)."""
        self.append_lines([self.line(row) for row in rows])

    def line(self, row: TradeLogRow | Mapping[str, object]) -> str:
        """The CSV line of ``row``, not yet written: a row the schema cannot hold raises here."""
        return self._line(_values(row))

    def append_lines(self, lines: Sequence[str]) -> None:
        """Append lines made by :meth:`line`, in one write."""
        self._append("".join(lines))

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> TradeLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TradeLogWriter({str(self.path)!r}{', closed' if self._fd is None else ''})"

    def _prepare(self) -> None:
        """Write the header to a new file; check it (and end any cut-off line) in an old one."""
        size = os.fstat(self._require_open()).st_size
        if size == 0:
            self._append(_HEADER + "\n")
            return
        header, ends_with_newline = _read_header_and_end(self.path)
        if header == _HEADER_BEFORE_STRATEGIES:
            self._add_strategy_column()
            return
        if header != _HEADER:
            raise ConfigurationError(
                f"trade_log_path: {str(self.path)!r} already holds a log with other columns "
                f"({header[:120]!r}); choose another trade_log_name"
            )
        if not ends_with_newline:
            self._append("\n")

    def _add_strategy_column(self) -> None:
        """Upgrade a log written before the ``strategy`` column: a new file with an empty strategy on
        every row replaces it whole (readers see the old file or the new one, never half of each)."""
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        upgraded = [_HEADER] + [line + "," if line else line for line in lines[1:]]
        spare = self.path.with_name(self.path.name + ".upgrading")
        spare.write_text("\n".join(upgraded) + "\n", encoding="utf-8")
        os.replace(spare, self.path)
        os.close(self._require_open())
        self._fd = _open_for_append(self.path)

    def _line(self, values: list[object]) -> str:
        plain = _plain_line(values)
        if plain is not None:
            return plain
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._csv.writerow(list(map(cell, values)))
        return buffer.getvalue()

    def _append(self, text: str) -> None:
        fd = self._require_open()
        data = text.encode("utf-8")
        written = os.write(fd, data)
        while written < len(data):  # regular files write everything at once; just in case
            written += os.write(fd, data[written:])
        if self._fsync:
            os.fsync(fd)

    def _require_open(self) -> int:
        if self._fd is None:
            raise ValueError(f"trade log {str(self.path)!r} is closed")
        return self._fd


def csv_text(rows: Iterable[TradeLogRow | Mapping[str, object]]) -> str:
    """A whole trade log as CSV text, header first: byte for byte what a writer appends for `rows`
    (replay's trade log, which never touches a file unless saved)."""
    buffer = io.StringIO()
    buffer.write(_HEADER + "\n")
    csv.writer(buffer, lineterminator="\n").writerows(list(map(cell, _values(row))) for row in rows)
    return buffer.getvalue()


def load_trade_log(path_or_buffer: str | os.PathLike[str] | IO[str]) -> pandas.DataFrame:
    """Read a trade log (ours, or blockpaca 0.1.2's ten columns) into a DataFrame.

    Columns come in :data:`COLUMNS` order (extras missing from old logs are added empty),
    then any unknown columns, then ``time``: the timestamp as ``datetime64[ns, UTC]``.
    Numeric columns are floats (NaN when empty), ``worker`` a nullable integer, text
    columns strings ("" when empty).
    """
    import pandas as pd

    try:
        frame = pd.read_csv(
            path_or_buffer,
            dtype=dict(COLUMN_TYPES),
            keep_default_na=False,
            **_exact_floats(),
            na_values={column: _MISSING_MARKS for column in FLOAT_COLUMNS + _INT_COLUMNS},
        )
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame({column: [] for column in COLUMNS})
    return typed_trade_log(frame)


def _exact_floats() -> dict[str, str]:
    """Each number as written: pandas 2's default parser may miss by an ulp (pandas 3's is exact and
    deprecates the option)."""
    import pandas as pd

    return {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def typed_trade_log(frame: pandas.DataFrame) -> pandas.DataFrame:
    """Add missing columns with their types, order them, and append ``time``."""
    import pandas as pd

    types = COLUMN_TYPES
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series("" if types[column] == "str" else None, index=frame.index)
        frame[column] = frame[column].astype(types[column])
    unknown = [column for column in frame.columns if column not in types]
    # Float seconds carry microseconds at best: round there, so 0.236655 s reads as .236655.
    microseconds = (frame["timestamp"] * 1e6).round()
    time_column = pd.to_datetime(microseconds, unit="us", utc=True).astype("datetime64[ns, UTC]")
    return frame[list(COLUMNS) + unknown].assign(time=time_column)


def _open_for_append(path: pathlib.Path) -> int:
    directory = path.parent
    if not directory.is_dir():
        raise ConfigurationError(f"trade_log_path {str(directory)!r} is not an existing directory")
    if path.is_dir():
        raise ConfigurationError(f"trade_log_path: {str(path)!r} is a directory, not a log file")
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_BINARY, 0o644)
    except OSError as error:
        raise ConfigurationError(
            f"trade_log_path {str(directory)!r} is not writable: {error.strerror}"
        ) from None


def _read_header_and_end(path: pathlib.Path) -> tuple[str, bool]:
    with open(path, "rb") as file:
        header = file.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        file.seek(-1, os.SEEK_END)
        return header, file.read(1) == b"\n"


def _values(row: TradeLogRow | Mapping[str, object]) -> list[object]:
    if isinstance(row, TradeLogRow):
        return [getattr(row, column) for column in COLUMNS]
    if len(row) == len(COLUMNS) and row.keys() <= _ROW_FIELDS:  # a whole row (a recorder's): nothing to default
        return [row[column] for column in COLUMNS]
    record = _row_from_mapping(row)
    return [getattr(record, column) for column in COLUMNS]


_QUOTED = re.compile(r'[,"\r\n]')  # a cell holding one of these is quoted (or cleaned) by the csv path


def _plain_line(values: list[object]) -> str | None:
    """The CSV line of cells that need no quoting — None, plain text, ints and floats: what a
    recorder's rows nearly always hold — joined directly, exactly as the csv module writes them (a
    third of the recorder's time per row went to the csv writer); None when a cell needs it."""
    cells = []
    for value in values:
        if value is None:
            cells.append("")
        elif type(value) is str:
            if _QUOTED.search(value):
                return None
            cells.append(value)
        elif type(value) is float or type(value) is int:
            cells.append(repr(value))
        else:
            return None
    return ",".join(cells) + "\n"


def _row_from_mapping(row: Mapping[str, object]) -> TradeLogRow:
    unknown = [key for key in row if key not in _ROW_FIELDS]
    if unknown:
        raise ValueError(f"unknown trade-log columns {unknown}; allowed: {', '.join(COLUMNS)}")
    return TradeLogRow(**row)  # type: ignore[arg-type]


def cell(value: object) -> object:
    """Return a CSV cell: None is empty, text stays on one line."""
    if value is None:
        return ""
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return value


