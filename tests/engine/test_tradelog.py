"""Trade log: blockpaca's columns first, append-only whole lines, and the pandas loader."""

from __future__ import annotations

import dataclasses
import io
import math
import pathlib
import threading

import pandas as pd
import pytest

from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.tradelog import (
    BLOCKPACA_COLUMNS,
    COLUMNS,
    EXTRA_COLUMNS,
    TradeLogRow,
    TradeLogWriter,
    load_trade_log,
    trade_log_path,
)

BLOCKPACA_LOG = """\
type,client_order_id,ticker,executed_price,executed_qty,status,side,action,timestamp,raw_status
execution,buy_long-7-2304b6b1,DIA,0.0,0.0,pending_new,buy,buy_long,1766515599.059126,OrderStatus.PENDING_NEW
execution,buy_long-7-2304b6b1,DIA,0.0,0.0,new,buy,buy_long,1766515599.067043,OrderStatus.NEW
execution,buy_long-7-2304b6b1,DIA,484.74,1.0,filled,buy,buy_long,1766515599.236655,OrderStatus.FILLED
"""

FILLED = TradeLogRow(
    client_order_id="buy_long-7-2304b6b1",
    ticker="DIA",
    executed_price=484.74,
    executed_qty=1.0,
    status="filled",
    side="buy",
    action="buy_long",
    timestamp=1766515599.236655,
    raw_status="OrderStatus.FILLED",
    event="fill",
    order_id="61e69015-8549-4bfd-b9c3-01e75843f47d",
    order_type="market",
    qty=1.0,
    filled_qty=1.0,
    filled_avg_price=484.74,
    worker=7,
    latency_ms=12.5,
    fill_qty=1.0,
    fill_price=484.74,
)


def lines(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines()


def test_columns_start_with_blockpacas_ten_in_order() -> None:
    assert BLOCKPACA_COLUMNS == (
        "type", "client_order_id", "ticker", "executed_price", "executed_qty",
        "status", "side", "action", "timestamp", "raw_status",
    )
    assert COLUMNS[:10] == BLOCKPACA_COLUMNS
    assert COLUMNS[10:] == EXTRA_COLUMNS == (
        "event", "order_id", "order_type", "qty", "limit_price",
        "filled_qty", "filled_avg_price", "reason", "worker", "latency_ms", "fill_qty", "fill_price", "strategy",
    )
    assert tuple(field.name for field in dataclasses.fields(TradeLogRow)) == COLUMNS


def test_row_defaults() -> None:
    row = TradeLogRow()
    assert (row.type, row.executed_price, row.executed_qty, row.qty, row.worker) == ("execution", 0.0, 0.0, None, None)
    assert row.timestamp > 1.7e9


def test_new_log_gets_the_header_and_blockpaca_shaped_rows(tmp_path: pathlib.Path) -> None:
    path = trade_log_path(tmp_path, "momentum")
    with TradeLogWriter(path) as writer:
        writer.write(FILLED)
    header, row = lines(path)
    assert header == ",".join(COLUMNS)
    assert row.startswith(
        "execution,buy_long-7-2304b6b1,DIA,484.74,1.0,filled,buy,buy_long,1766515599.236655,OrderStatus.FILLED,"
    )
    # ends with an empty strategy: the session's own order
    assert row.endswith(",fill,61e69015-8549-4bfd-b9c3-01e75843f47d,market,1.0,,1.0,484.74,,7,12.5,1.0,484.74,")


def test_rows_are_readable_by_another_reader_before_close(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "live.csv"
    writer = TradeLogWriter(path)
    writer.write(FILLED)
    with open(path) as reader:
        assert len(reader.read().splitlines()) == 2
    writer.write({"client_order_id": "sell_long-1-0badf00d", "status": "new", "timestamp": 2.0})
    assert len(load_trade_log(path)) == 2
    writer.close()
    writer.close()


def test_second_writer_appends_without_a_second_header(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "log.csv"
    with TradeLogWriter(path) as first:
        first.write(FILLED)
        first.write(dataclasses.replace(FILLED, status="new", event="new"))
    with TradeLogWriter(path) as second:
        second.write(dataclasses.replace(FILLED, ticker="AAPL"))
    text = lines(path)
    assert len(text) == 4
    assert text.count(",".join(COLUMNS)) == 1
    assert list(load_trade_log(path)["ticker"]) == ["DIA", "DIA", "AAPL"]


def test_empty_existing_file_gets_the_header(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    TradeLogWriter(path).close()
    assert lines(path) == [",".join(COLUMNS)]


def test_existing_file_with_other_columns_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text(BLOCKPACA_LOG)
    with pytest.raises(ConfigurationError, match=r"trade_log_path.*other columns"):
        TradeLogWriter(path)
    assert path.read_text() == BLOCKPACA_LOG


def test_a_log_from_before_the_strategy_column_is_upgraded_when_appended_to(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "old.csv"
    old_columns = COLUMNS[:-1]
    values = [getattr(FILLED, column) for column in old_columns]  # FILLED as the old layout wrote it
    path.write_text(",".join(old_columns) + "\n" + ",".join("" if v is None else str(v) for v in values) + "\n")
    with TradeLogWriter(path) as writer:
        writer.write(dataclasses.replace(FILLED, client_order_id="sell_long-1-0badcafe-momentum", strategy="momentum"))
    assert lines(path)[0] == ",".join(COLUMNS)
    frame = load_trade_log(path)
    assert list(frame["client_order_id"]) == ["buy_long-7-2304b6b1", "sell_long-1-0badcafe-momentum"]
    assert list(frame["strategy"]) == ["", "momentum"]
    assert list(frame["fill_price"]) == [484.74, 484.74]  # the old row's columns did not shift
    assert not list(tmp_path.glob("*.upgrading"))


def test_a_cut_off_last_line_is_ended_before_appending(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "crashed.csv"
    path.write_text(",".join(COLUMNS) + "\nexecution,buy_long-1-")
    with TradeLogWriter(path) as writer:
        writer.write(FILLED)
    assert lines(path)[-1].startswith("execution,buy_long-7-2304b6b1,DIA,484.74")


def test_text_with_commas_and_newlines_stays_on_one_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "rejected.csv"
    reason = 'insufficient buying power,\nneed "1000.00"\r\navailable 10'
    with TradeLogWriter(path) as writer:
        writer.write(TradeLogRow(status="rejected", event="rejected", reason=reason, timestamp=5.0))
    assert len(lines(path)) == 2
    assert load_trade_log(path)["reason"].tolist() == ['insufficient buying power, need "1000.00" available 10']


def test_unknown_mapping_keys_are_refused(tmp_path: pathlib.Path) -> None:
    with TradeLogWriter(tmp_path / "x.csv") as writer, pytest.raises(ValueError, match="colour"):
        writer.write({"colour": "red"})


def test_concurrent_writers_never_tear_lines(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "busy.csv"
    TradeLogWriter(path).close()

    def write_many(worker: int) -> None:
        with TradeLogWriter(path) as writer:
            for i in range(500):
                writer.write(dataclasses.replace(FILLED, worker=worker, reason="x" * (i % 300), timestamp=i))

    threads = [threading.Thread(target=write_many, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frame = load_trade_log(path)
    assert len(frame) == 2000
    assert sorted(frame["worker"].value_counts().tolist()) == [500] * 4
    assert (frame["ticker"] == "DIA").all()


def test_fsync_option(tmp_path: pathlib.Path) -> None:
    with TradeLogWriter(tmp_path / "durable.csv", fsync=True) as writer:
        writer.write(FILLED)
    assert len(load_trade_log(tmp_path / "durable.csv")) == 1


# -- paths ------------------------------------------------------------------------------------


def test_trade_log_path_adds_csv_once(tmp_path: pathlib.Path) -> None:
    assert trade_log_path(tmp_path, "custom_strat_name") == tmp_path / "custom_strat_name.csv"
    assert trade_log_path(str(tmp_path), "custom_strat_name.csv") == tmp_path / "custom_strat_name.csv"


@pytest.mark.parametrize("name", ["", "  ", "../escape", "a/b", ".."])
def test_trade_log_name_must_be_a_file_name(tmp_path: pathlib.Path, name: str) -> None:
    with pytest.raises(ConfigurationError, match="trade_log_name"):
        trade_log_path(tmp_path, name)


def test_missing_directory_names_trade_log_path(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(ConfigurationError, match="trade_log_path") as caught:
        TradeLogWriter(missing / "log.csv")
    assert str(missing) in str(caught.value)
    assert not missing.exists()


def test_a_file_in_place_of_the_directory_names_trade_log_path(tmp_path: pathlib.Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    with pytest.raises(ConfigurationError, match="trade_log_path"):
        TradeLogWriter(trade_log_path(not_a_directory, "log"))
    with pytest.raises(ConfigurationError, match="trade_log_path"):
        TradeLogWriter(tmp_path)


# -- loading ----------------------------------------------------------------------------------


def test_blockpaca_log_loads_with_types_and_time(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "custom_strat_name.csv"
    path.write_text(BLOCKPACA_LOG)
    frame = load_trade_log(path)
    assert list(frame.columns) == [*COLUMNS, "time"]
    assert len(frame) == 3
    assert frame["status"].tolist() == ["pending_new", "new", "filled"]
    assert frame["raw_status"].iloc[-1] == "OrderStatus.FILLED"
    assert frame["executed_price"].tolist() == [0.0, 0.0, 484.74]
    assert frame["timestamp"].iloc[-1] == 1766515599.236655
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert frame["time"].iloc[-1] == pd.Timestamp("2025-12-23 18:46:39.236655", tz="UTC")
    for column in ("executed_price", "executed_qty", "timestamp", "qty", "limit_price", "filled_qty",
                   "filled_avg_price", "latency_ms"):
        assert frame[column].dtype == "float64", column
    assert frame["qty"].isna().all()
    assert frame["event"].tolist() == ["", "", ""]
    assert frame["worker"].isna().all()


def test_our_log_round_trips(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ours.csv"
    with TradeLogWriter(path) as writer:
        writer.write(FILLED)
        writer.write(TradeLogRow(status="rejected", event="validation_error", reason="order #0 field 'side'",
                                 timestamp=1766515600.5))
    frame = load_trade_log(path)
    first = frame.iloc[0]
    assert first["filled_avg_price"] == 484.74 and first["latency_ms"] == 12.5 and first["worker"] == 7
    assert math.isnan(first["limit_price"])
    second = frame.iloc[1]
    assert (second["event"], second["client_order_id"], second["executed_price"]) == ("validation_error", "", 0.0)
    assert pd.isna(second["worker"])
    assert str(frame["worker"].dtype) == "Int64"


def test_header_only_and_empty_files_load_as_empty_frames(tmp_path: pathlib.Path) -> None:
    header_only = tmp_path / "header.csv"
    TradeLogWriter(header_only).close()
    for source in (header_only, io.StringIO(""), io.StringIO(",".join(BLOCKPACA_COLUMNS) + "\n")):
        frame = load_trade_log(source)
        assert frame.empty
        assert list(frame.columns) == [*COLUMNS, "time"]
        assert frame["executed_price"].dtype == "float64"
        assert str(frame["time"].dtype) == "datetime64[ns, UTC]"


def test_loader_reads_buffers_and_keeps_unknown_columns() -> None:
    text = BLOCKPACA_LOG.replace("raw_status\n", "raw_status,note\n").replace("NEW\n", "NEW,hi\n")
    frame = load_trade_log(io.StringIO(text.replace("FILLED\n", "FILLED,\n")))
    assert list(frame.columns) == [*COLUMNS, "note", "time"]
    assert frame["note"].tolist() == ["hi", "hi", ""]


def test_every_line_is_what_the_csv_module_writes_whatever_the_cells(tmp_path: pathlib.Path) -> None:
    """The writer joins plain cells itself (the recorder's hot path) and leaves anything that needs
    quoting, cleaning or converting to the csv module: either way the line is the csv module's."""
    import csv

    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from blockpaca_nb.tradelog import COLUMNS, TradeLogWriter
    from blockpaca_nb.tradelog import cell as csv_cell

    cell = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
        st.text(alphabet=st.sampled_from(list('ab ,"\r\n\t-.é0')), max_size=8),
        st.floats(allow_nan=False, width=32).map(np.float32), st.integers(-5, 5).map(np.int64),
    )  # fmt: skip

    def expected(values: list[object]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(list(map(csv_cell, values)))
        return buffer.getvalue()

    with TradeLogWriter(tmp_path / "lines.csv") as writer:

        plain_row = ["execution", "buy_long-0-705b1494", "AAPL", 231.45, 1.0, None, 0, *[""] * (len(COLUMNS) - 7)]

        @settings(max_examples=500, deadline=None)
        @given(cell, st.integers(0, len(COLUMNS) - 1), st.lists(cell, min_size=len(COLUMNS), max_size=len(COLUMNS)))
        def check(value: object, where: int, anything: list[object]) -> None:
            one_odd = [*plain_row[:where], value, *plain_row[where + 1 :]]  # the cell alone decides the path
            assert writer._line(one_odd) == expected(one_odd)
            assert writer._line(anything) == expected(anything)

        check()
