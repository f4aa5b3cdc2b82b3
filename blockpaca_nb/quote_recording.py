"""Record live, replay later: the quotes a session received, kept in a file replay can play back.

The feed process appends each quote it stores as one CSV line (its time, symbol, bid, ask and
sizes) and flushes once per frame, so recording costs the feed a formatted line per quote and no
heavy import. A restarted feed appends to the same file. When the session stops, the kernel turns
the file into Parquet next to the trade log (`{name}_quotes.parquet`); `replay(fn, tickers,
data=path)` plays either file back at tick resolution.
"""

from __future__ import annotations

import os
import pathlib
from typing import IO

HEADER = "timestamp,symbol,bid,ask,bid_size,ask_size\n"


class QuoteRecording:
    """The feed's end: CSV lines appended, written out once per frame."""

    def __init__(self, path: str) -> None:
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115 - kept open
        if new:
            self._file.write(HEADER)

    def quote(self, symbol: str, bid: float, ask: float, bid_size: float, ask_size: float, when: float) -> None:
        self._file.write(f"{when!r},{symbol},{bid!r},{ask!r},{bid_size!r},{ask_size!r}\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def recording_path(trade_log_file: pathlib.Path) -> pathlib.Path:
    """Where a session records its quotes while it runs: beside its trade log."""
    stem = trade_log_file.stem.removesuffix("_trade_log")
    return trade_log_file.with_name(f"{stem}_quotes.csv")


def to_parquet(csv_path: pathlib.Path) -> pathlib.Path | None:
    """The recording as Parquet (the CSV is removed once the Parquet file is whole); None if empty."""
    import pandas as pd

    if not csv_path.is_file() or csv_path.stat().st_size <= len(HEADER):
        return None
    frame = pd.read_csv(csv_path, on_bad_lines="skip")  # a line cut by a killed feed is dropped
    target = csv_path.with_suffix(".parquet")
    spare = target.with_name(target.name + ".part")
    frame.to_parquet(spare, index=False)
    spare.replace(target)
    csv_path.unlink()
    return target
