"""plots: average-cost P&L, the trade-log figure, decimation, statuses, latency, errors.

Every log here is a real CSV file: written with TradeLogWriter (our schema) or by hand with
blockpaca 0.1.2's ten columns, then read back by the code under test.
"""

from __future__ import annotations

import itertools
import json
import math
import pathlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from blockpaca_nb.errors import ConfigurationError
from blockpaca_nb.orders import strategy_from_client_order_id
from blockpaca_nb.plots import PNL_COLUMNS, decimate, plot_trade_log, pnl_frame
from blockpaca_nb.tradelog import COLUMNS, TradeLogRow, TradeLogWriter, load_trade_log

T0 = 1_766_515_599.0
BLOCKPACA_HEADER = "type,client_order_id,ticker,executed_price,executed_qty,status,side,action,timestamp,raw_status"


# ----------------------------------------------------------------------------- helpers


_ORDER_NUMBERS = itertools.count(1)


def fill(ticker: str, side: str, qty: float, price: float, at: float, cid: str = "", **extra: object) -> TradeLogRow:
    """A fill event as the recorder writes it: ``qty`` at ``price`` in the fill columns, and the order's
    cumulative total in blockpaca's ``executed_*`` (the same for a first fill; ``extra`` overrides any column)."""
    action = "buy_long" if side == "buy" else "sell_long"
    cid = cid or f"{action}-1-{next(_ORDER_NUMBERS):08x}"
    columns: dict[str, object] = {
        "client_order_id": cid,
        "strategy": strategy_from_client_order_id(cid),  # as the recorder names it (an exit: its entry's)
        "ticker": ticker,
        "executed_price": price,
        "executed_qty": qty,
        "fill_price": price,
        "fill_qty": qty,
        "status": "filled",
        "side": side,
        "action": action,
        "timestamp": T0 + at,
        "raw_status": "OrderStatus.FILLED",
        "event": "fill",
    }
    return TradeLogRow(**{**columns, **extra})  # type: ignore[arg-type]


def event(
    cid: str, status: str, at: float, kind: str = "execution", ticker: str = "AAA", **extra: object
) -> TradeLogRow:
    """A non-fill row (trade update, submission result or validation error)."""
    return TradeLogRow(
        type=kind,
        client_order_id=cid,
        ticker=ticker,
        status=status,
        side="buy",
        action="buy_long",
        timestamp=T0 + at,
        event=status,
        **extra,  # type: ignore[arg-type]
    )


def write_log(path: pathlib.Path, rows: Iterable[TradeLogRow]) -> pathlib.Path:
    with TradeLogWriter(path) as writer:
        for row in rows:
            writer.write(row)
    return path


def trace(figure: go.Figure, name: str) -> go.Scattergl:
    matches = [t for t in figure.data if t.name == name]
    assert len(matches) == 1, [t.name for t in figure.data]
    return matches[0]


def annotations(figure: go.Figure) -> list[str]:
    return [a.text for a in figure.layout.annotations]


def reference_pnl(fills: list[tuple[str, int, float, float]]) -> list[tuple[float, float, float]]:
    """Average-cost accounting, one fill at a time: (position, realized, unrealized) after each."""
    state: dict[str, list[float]] = {}
    out = []
    for ticker, sign, qty, price in fills:
        position, avg, realized = state.setdefault(ticker, [0.0, 0.0, 0.0])
        change = sign * qty
        if position == 0 or (position > 0) == (change > 0):
            avg = (abs(position) * avg + qty * price) / (abs(position) + qty)
        else:
            closed = min(qty, abs(position))
            realized += closed * (price - avg) * (1 if position > 0 else -1)
            if qty > abs(position):
                avg = price
        position = round(position + change, 9)
        state[ticker] = [position, avg, realized]
        out.append((position, realized, position * (price - avg)))
    return out


# ----------------------------------------------------------------------------- P&L


def test_average_cost_long_partial_close(tmp_path: pathlib.Path) -> None:
    path = write_log(
        tmp_path / "log.csv",
        [fill("AAA", "buy", 10, 100, 1), fill("AAA", "buy", 10, 110, 2), fill("AAA", "sell", 15, 120, 3)],
    )
    pnl = pnl_frame(path)
    assert list(pnl.columns) == list(PNL_COLUMNS)
    assert pnl["position"].tolist() == [10, 20, 5]
    assert pnl["avg_cost"].tolist() == [100, 105, 105]
    assert pnl["realized"].tolist() == [0, 0, 225]  # 15 × (120 − 105)
    assert pnl["unrealized"].tolist() == [0, 100, 75]  # 20 × (110 − 105); 5 × (120 − 105)
    assert pnl["total"].tolist() == [0, 100, 300]


def test_short_then_cover(tmp_path: pathlib.Path) -> None:
    path = write_log(tmp_path / "log.csv", [fill("BBB", "sell", 5, 50, 1), fill("BBB", "buy", 5, 40, 2)])
    pnl = pnl_frame(path)
    assert pnl["position"].tolist() == [-5, 0]
    assert pnl["realized"].tolist() == [0, 50]
    assert pnl["unrealized"].tolist() == [0, 0]
    assert not any(math.copysign(1, value) < 0 for value in pnl["unrealized"])  # no -0.0
    assert math.isnan(pnl["avg_cost"].iloc[1])  # flat: no average cost


def test_position_crossing_zero_both_ways(tmp_path: pathlib.Path) -> None:
    path = write_log(
        tmp_path / "log.csv",
        [
            fill("CCC", "buy", 10, 10, 1),  # long 10 @ 10
            fill("CCC", "sell", 25, 12, 2),  # close 10: +20; short 15 @ 12
            fill("CCC", "sell", 5, 16, 3),  # short 20 @ 13
            fill("CCC", "buy", 30, 11, 4),  # cover 20: +40; long 10 @ 11
            fill("CCC", "sell", 10, 9, 5),  # close 10: −20
        ],
    )
    pnl = pnl_frame(path)
    assert pnl["position"].tolist() == [10, -15, -20, 10, 0]
    assert pnl["avg_cost"].tolist()[:4] == pytest.approx([10, 12, 13, 11])
    assert pnl["realized"].tolist() == pytest.approx([0, 20, 20, 60, 40])
    assert pnl["unrealized"].tolist() == pytest.approx([0, 0, -60, 0, 0])  # −20 × (16 − 13)


def test_tickers_are_accounted_separately_and_in_time_order(tmp_path: pathlib.Path) -> None:
    rows = [
        fill("AAA", "buy", 10, 100, 1),
        fill("BBB", "sell", 5, 50, 2),
        fill("AAA", "buy", 10, 110, 3),
        fill("BBB", "buy", 5, 40, 4),
        fill("AAA", "sell", 15, 120, 5),
    ]
    pnl = pnl_frame(write_log(tmp_path / "log.csv", rows))
    assert pnl["ticker"].tolist() == ["AAA", "BBB", "AAA", "BBB", "AAA"]
    assert pnl["realized"].tolist() == [0, 0, 0, 50, 225]
    assert pnl["time"].is_monotonic_increasing
    assert str(pnl["time"].dtype) == "datetime64[ns, UTC]"
    assert pnl_frame(tmp_path / "log.csv", tickers=["BBB"])["realized"].tolist() == [0, 50]


def test_fractional_quantities_close_exactly(tmp_path: pathlib.Path) -> None:
    rows = [fill("AAA", "buy", 0.1, 10, 1), fill("AAA", "buy", 0.2, 10, 2), fill("AAA", "sell", 0.3, 11, 3)]
    pnl = pnl_frame(write_log(tmp_path / "log.csv", rows))
    assert pnl["position"].iloc[-1] == 0.0  # 0.1 + 0.2 − 0.3 is exactly flat, not 5.6e-17
    assert pnl["realized"].iloc[-1] == pytest.approx(0.3)


def test_accounting_matches_a_fill_by_fill_loop(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(3)
    count = 3000
    tickers = rng.choice(["AAA", "BBB", "CCC", "DDD"], count)
    signs = rng.choice([1, -1], count)
    qty = rng.integers(1, 40, count).astype(float)
    price = np.round(rng.uniform(10, 20, count), 2)
    rows = [
        fill(str(tickers[i]), "buy" if signs[i] > 0 else "sell", float(qty[i]), float(price[i]), i * 0.01)
        for i in range(count)
    ]
    pnl = pnl_frame(write_log(tmp_path / "log.csv", rows))
    expected = np.array(reference_pnl([(str(tickers[i]), int(signs[i]), qty[i], price[i]) for i in range(count)]))
    assert np.array_equal(pnl["position"].to_numpy(), expected[:, 0])
    np.testing.assert_allclose(pnl["realized"], expected[:, 1], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(pnl["unrealized"], expected[:, 2], rtol=1e-9, atol=1e-6)


def test_side_falls_back_to_the_action(tmp_path: pathlib.Path) -> None:
    rows = [fill("AAA", "buy", 2, 10, 1), fill("AAA", "sell", 2, 12, 2)]
    rows[0].side, rows[1].side, rows[1].action = "", "OrderSide.SELL", "short_sell"
    rows[0].action = "buy_to_cover"
    pnl = pnl_frame(write_log(tmp_path / "log.csv", rows))
    assert pnl["side"].tolist() == ["buy", "sell"]
    assert pnl["realized"].tolist() == [0, 4]


# ----------------------------------------------------------------------------- the figure


def sample_log(path: pathlib.Path) -> pathlib.Path:
    """Two tickers, a partial fill, a cancel, a rejection, a failure, a validation error, an open order."""
    rows = [
        event("buy_long-1-aaaaaaa1", "pending_new", 0.001),
        event("buy_long-1-aaaaaaa1", "new", 0.002),
        fill("AAA", "buy", 4, 100, 0.010, "buy_long-1-aaaaaaa1", status="partially_filled", event="partial_fill"),
        fill("AAA", "buy", 6, 101, 0.020, "buy_long-1-aaaaaaa1", executed_qty=10, executed_price=100.6),
        # the worker's answer lands after the fill: the order still counts as filled
        event("buy_long-1-aaaaaaa1", "accepted", 0.030, kind="submission", latency_ms=25.0),
        fill("AAA", "sell", 3, 105, 1.0, "sell_long-2-aaaaaaa2"),
        event("sell_long-2-aaaaaaa2", "accepted", 1.01, kind="submission", latency_ms=10.0),
        fill("BBB", "sell", 5, 50, 2.0, "short_sell-3-aaaaaaa3"),
        event("short_sell-3-aaaaaaa3", "accepted", 2.01, kind="submission", latency_ms=12.0),
        event("buy_long-4-aaaaaaa4", "new", 3.0, ticker="BBB"),
        event("buy_long-4-aaaaaaa4", "accepted", 3.01, kind="submission", ticker="BBB", latency_ms=14.0),
        event("buy_long-4-aaaaaaa4", "canceled", 4.0, ticker="BBB"),
        event("buy_long-5-aaaaaaa5", "rejected", 5.0, kind="submission", reason="insufficient", latency_ms=30.0),
        event("buy_long-6-aaaaaaa6", "failed", 6.0, kind="submission", reason="timeout", latency_ms=5000.0),
        event("", "rejected", 7.0, kind="validation", reason="order field 'quantity': got 0"),
        event("buy_long-7-aaaaaaa7", "new", 8.0),
        event("buy_long-7-aaaaaaa7", "accepted", 8.01, kind="submission", latency_ms=11.0),
    ]
    return write_log(path, rows)


def test_figure_traces_are_webgl_with_one_marker_per_fill(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"))
    series = [t for t in figure.data if t.type not in ("bar", "histogram")]
    assert series and all(isinstance(t, go.Scattergl) for t in series)
    assert [t.name for t in series] == [
        "AAA",
        "AAA buy",
        "AAA sell",
        "AAA P&L",
        "AAA position",
        "BBB",
        "BBB buy",
        "BBB sell",
        "BBB P&L",
        "BBB position",
        "total P&L",
        "realized P&L",
    ]
    assert len(trace(figure, "AAA buy").x) == 2  # a partial fill and the rest: two executions
    assert len(trace(figure, "AAA sell").x) == 1
    assert len(trace(figure, "BBB buy").x) == 0
    assert len(trace(figure, "BBB sell").x) == 1
    assert list(trace(figure, "AAA").y) == [100, 101, 105]
    assert list(trace(figure, "AAA position").y) == [4, 10, 7]
    assert list(trace(figure, "BBB position").y) == [-5]
    assert trace(figure, "AAA P&L").visible == "legendonly"


def test_markers_show_side_size_and_hover(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"))
    buys, sells = trace(figure, "AAA buy"), trace(figure, "AAA sell")
    assert buys.marker.symbol == "triangle-up" and sells.marker.symbol == "triangle-down"
    assert buys.marker.color == "#2ca02c" and sells.marker.color == "#d62728"
    assert buys.marker.size[1] > buys.marker.size[0]  # 6 shares draw bigger than 4
    assert list(buys.customdata) == [4, 6]
    assert buys.text[0] == "buy_long-1-aaaaaaa1<br>buy_long"
    assert "%{customdata" in buys.hovertemplate and "%{y" in buys.hovertemplate and "%{text}" in buys.hovertemplate
    assert list(buys.x) == pytest.approx([(T0 + 0.010) * 1000, (T0 + 0.020) * 1000])  # ms since the epoch
    assert figure.layout.xaxis.type == "date"


def test_total_pnl_sums_tickers_marked_to_their_latest_fill(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"))
    # AAA: 4 @ 100 then 6 @ 101 (avg 100.6, marked at 101: +4); sells 3 @ 105: realized 3 × 4.4,
    # the 7 left marked at 105; then BBB opens a short at its own price: adds 0
    total, realized = trace(figure, "total P&L"), trace(figure, "realized P&L")
    assert list(realized.y) == pytest.approx([0, 0, 13.2, 13.2])
    assert list(total.y) == pytest.approx([0, 4, 13.2 + 7 * 4.4, 13.2 + 7 * 4.4])


def test_pnl_is_split_by_strategy_once_the_log_has_two(tmp_path: pathlib.Path) -> None:
    """momentum buys 10 @ 100 and sells them @ 103: +30. mean_rev shorts 5 @ 101 (its open short is
    marked at its own price: 0). The session's liquidation buys 5 @ 102 (the session's own order: a
    lone buy marked at its own price, 0). One strategy alone gets no lines of its own."""
    rows = [
        fill("AAA", "buy", 10, 100.0, 1, cid="buy_long-1-0000000a-momentum"),
        fill("AAA", "sell", 5, 101.0, 2, cid="short_sell-1-0000000b-mean_rev", action="short_sell"),
        fill("AAA", "sell", 10, 103.0, 3, cid="sell_long-1-0000000c-momentum"),
        fill("AAA", "buy", 5, 102.0, 4, cid="cover_short-1-0000000d", action="cover_short"),
    ]
    figure = plot_trade_log(write_log(tmp_path / "log.csv", rows))
    assert list(trace(figure, "momentum P&L").y) == pytest.approx([0, 30])
    assert sorted(t.name for t in figure.data if t.name.endswith(" P&L") and t.line.dash == "dash") == [
        "mean_rev P&L", "momentum P&L", "session P&L"]  # fmt: skip
    assert list(trace(figure, "mean_rev P&L").y) == pytest.approx([0])
    assert list(trace(figure, "session P&L").y) == pytest.approx([0])
    alone = plot_trade_log(write_log(tmp_path / "alone.csv", [rows[0], rows[2]]))
    assert not [t.name for t in alone.data if t.name == "momentum P&L"]


def test_a_bracket_exit_counts_for_its_entrys_strategy(tmp_path: pathlib.Path) -> None:
    """An exit has an id of the broker's (a UUID), not one of ours: its strategy is the log's column,
    its entry's. It once made a "strategy" of its own, named after the id's last parts."""
    rows = [
        fill("AAA", "buy", 10, 100.0, 1, cid="buy_long-1-0000000a-momentum"),
        fill("AAA", "sell", 10, 104.0, 2, cid="6f1c2d3e-0000-4000-8000-000000000005", action="sell_long",
             strategy="momentum"),
        fill("BBB", "buy", 1, 50.0, 3, cid="buy_long-1-0000000b-mean_rev"),
    ]  # fmt: skip
    figure = plot_trade_log(write_log(tmp_path / "log.csv", rows))
    lines = sorted(t.name for t in figure.data if t.name.endswith(" P&L") and t.line.dash == "dash")
    assert lines == ["mean_rev P&L", "momentum P&L"]
    assert list(trace(figure, "momentum P&L").y) == pytest.approx([0, 40])


def test_status_counts_each_order_once_by_final_status(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"))
    bar = next(t for t in figure.data if t.type == "bar")
    assert dict(zip(bar.x, bar.y, strict=True)) == {
        "filled": 3,
        "canceled": 1,
        "rejected": 1,
        "invalid": 1,
        "failed": 1,
        "new": 1,  # still open: the broker's "new" tells more than the worker's later "accepted"
    }
    assert list(bar.x)[:2] == ["filled", "canceled"]


def test_worker_answer_is_the_status_of_an_order_the_stream_never_reported(tmp_path: pathlib.Path) -> None:
    path = write_log(
        tmp_path / "log.csv",
        [
            event("buy_long-1-00000001", "accepted", 1, kind="submission", latency_ms=9.0),
            event("buy_long-1-00000002", "accepted", 2, kind="submission", latency_ms=9.0),
            event("buy_long-1-00000002", "partially_filled", 1.5),
        ],
    )
    bar = next(t for t in plot_trade_log(path).data if t.type == "bar")
    assert dict(zip(bar.x, bar.y, strict=True)) == {"partially_filled": 1, "accepted": 1}


def test_latency_histogram_from_submission_rows(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"))
    histogram = next(t for t in figure.data if t.type == "histogram")
    assert histogram.histfunc == "sum"
    assert sum(histogram.y) == 7  # every submission row with a latency, the 5 s outlier in the last bin
    assert histogram.name == "latency (n=7, p50 14 ms, p95 3.51 s, p99 4.7 s)"
    assert annotations(figure)[4] == "Latency (n=7, p50 14 ms, p95 3.51 s, p99 4.7 s)"
    assert "broker answer" in figure.layout.xaxis5.title.text


def test_downsampling_keeps_ends_and_extremes(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(1)
    prices = 100 + np.cumsum(rng.normal(0, 1, 400))
    prices[137], prices[251] = 500, 1  # extremes to keep
    rows = [fill("AAA", "buy" if i % 2 else "sell", 1, float(p), i) for i, p in enumerate(prices)]
    path = write_log(tmp_path / "log.csv", rows)
    figure = plot_trade_log(path, max_points=20)
    for t in figure.data:
        if t.type == "scattergl":
            assert len(t.x) <= 20, t.name
    line = trace(figure, "AAA")
    assert line.y[0] == prices[0] and line.y[-1] == prices[-1]
    assert max(line.y) == 500 and min(line.y) == 1
    sells = trace(figure, "AAA sell")
    expected = decimate(prices[0::2], 20)
    assert list(sells.y) == list(prices[0::2][expected])
    assert len(plot_trade_log(path).data[1].x) == 200  # under the default limit: every fill


def test_decimate_bounds_and_keeps_first_last_min_max() -> None:
    values = np.sin(np.linspace(0, 30, 10_001))
    values[4321] = 7.0
    for limit in (4, 5, 100, 999):
        kept = decimate(values, limit)
        assert len(kept) <= limit
        assert np.all(np.diff(kept) > 0)
        assert {0, 10_000, int(values.argmin()), 4321} <= set(kept.tolist())
    assert decimate(values[:50], 50).tolist() == list(range(50))
    assert decimate(np.empty(0), 10).tolist() == []


def test_blockpaca_0_1_2_log_plots(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "blockpaca.csv"
    lines = [BLOCKPACA_HEADER]
    for number, (ticker, side, price, at) in enumerate(
        [("DIA", "buy", 484.74, 0.0), ("DIA", "sell", 486.0, 10.0), ("SPY", "buy", 600.0, 20.0)]
    ):
        cid = f"{'buy_long' if side == 'buy' else 'sell_long'}-7-{number:08x}"
        action = cid.split("-")[0]
        for status, offset, qty in (("pending_new", 0.0, 0.0), ("new", 0.008, 0.0), ("filled", 0.150, 2.0)):
            executed = price if qty else 0.0
            lines.append(
                f"execution,{cid},{ticker},{executed},{qty},{status},{side},{action},"
                f"{T0 + at + offset:.6f},OrderStatus.{status.upper()}"
            )
    path.write_text("\n".join(lines) + "\n")
    figure = plot_trade_log(path)
    pnl = pnl_frame(path)
    assert pnl["ticker"].tolist() == ["DIA", "DIA", "SPY"]
    assert pnl["realized"].tolist() == pytest.approx([0, 2 * (486.0 - 484.74), 0])
    assert pnl["position"].tolist() == [2, 0, 2]
    bar = next(t for t in figure.data if t.type == "bar")
    assert dict(zip(bar.x, bar.y, strict=True)) == {"filled": 3}
    histogram = next(t for t in figure.data if t.type == "histogram")
    assert sum(histogram.y) == 3  # pending_new → fill per order, from the timestamps
    assert histogram.x[0] == pytest.approx(150.0, abs=1.0)
    assert "pending_new → first fill" in figure.layout.xaxis5.title.text


def test_blockpaca_cumulative_rows_count_each_fill_once(tmp_path: pathlib.Path) -> None:
    """blockpaca's executed_qty/executed_price are the order's running total and average: a partial
    fill then the rest (and a cancel row repeating the total) are two fills, not three or more."""
    path = tmp_path / "blockpaca.csv"
    rows = [  # (client order id, status, cumulative qty, average price, seconds)
        ("buy_long-7-00000001", "new", 0.0, 0.0, 0.0),
        ("buy_long-7-00000001", "partially_filled", 4.0, 100.0, 1.0),
        ("buy_long-7-00000001", "filled", 10.0, 100.6, 2.0),  # 6 more at 101
        ("sell_long-7-00000002", "partially_filled", 3.0, 105.0, 3.0),
        ("sell_long-7-00000002", "canceled", 3.0, 105.0, 4.0),  # the total again: no new fill
    ]
    lines = [BLOCKPACA_HEADER] + [
        f"execution,{cid},DIA,{avg},{qty},{status},{'buy' if cid[0] == 'b' else 'sell'},{cid.split('-')[0]},"
        f"{T0 + at},OrderStatus.{status.upper()}"
        for cid, status, qty, avg, at in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    pnl = pnl_frame(path)
    assert list(zip(pnl["side"], pnl["qty"], pnl["price"], strict=True)) == [
        ("buy", 4.0, 100.0), ("buy", 6.0, pytest.approx(101.0)), ("sell", 3.0, 105.0)
    ]
    assert pnl["position"].tolist() == [4.0, 10.0, 7.0]
    assert pnl["realized"].iloc[-1] == pytest.approx(3 * (105.0 - 100.6))


def test_our_log_counts_fill_columns_not_running_totals(tmp_path: pathlib.Path) -> None:
    """In our log the same order has the running total in executed_* and each fill in fill_*: the
    P&L is the same as blockpaca's reading, and a final row without a fill adds nothing."""
    cid = "buy_long-1-0000abcd"
    path = write_log(tmp_path / "log.csv", [
        fill("AAA", "buy", 4, 100, 1.0, cid, status="partially_filled", event="partial_fill"),
        fill("AAA", "buy", 6, 101, 2.0, cid, executed_qty=10, executed_price=100.6),
        event(cid, "filled", 3.0, executed_qty=10.0, executed_price=100.6),  # e.g. a later order_cancel_rejected
    ])
    pnl = pnl_frame(path)
    assert pnl["qty"].tolist() == [4.0, 6.0] and pnl["price"].tolist() == [100.0, 101.0]
    assert pnl["position"].tolist() == [4.0, 10.0]


def test_blank_status_reads_raw_status(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text(
        BLOCKPACA_HEADER + "\n"
        f"execution,buy_long-1-00000001,DIA,0.0,0.0,,buy,buy_long,{T0},OrderStatus.NEW\n"
        f"execution,buy_long-1-00000001,DIA,0.0,0.0,,buy,buy_long,{T0 + 1},OrderStatus.CANCELED\n"
    )
    bar = next(t for t in plot_trade_log(path).data if t.type == "bar")
    assert dict(zip(bar.x, bar.y, strict=True)) == {"canceled": 1}


def test_dataframe_and_path_give_the_same_figure(tmp_path: pathlib.Path) -> None:
    path = sample_log(tmp_path / "log.csv")
    frame = load_trade_log(path)
    before = frame.copy()
    assert plot_trade_log(frame).to_json() == plot_trade_log(path).to_json()
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched


def test_tickers_limit_everything(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"), tickers=["BBB"])
    assert {t.name for t in figure.data if t.type == "scattergl"} == {
        "BBB",
        "BBB buy",
        "BBB sell",
        "BBB P&L",
        "BBB position",
        "total P&L",
        "realized P&L",
    }
    bar = next(t for t in figure.data if t.type == "bar")
    assert dict(zip(bar.x, bar.y, strict=True)) == {"filled": 1, "canceled": 1}
    assert plot_trade_log(tmp_path / "log.csv", tickers="BBB").to_json() == figure.to_json()


def test_figure_serializes_to_json(tmp_path: pathlib.Path) -> None:
    data = json.loads(plot_trade_log(sample_log(tmp_path / "log.csv")).to_json())
    assert {trace["type"] for trace in data["data"]} == {"scattergl", "bar", "histogram"}


# ----------------------------------------------------------------------------- empty logs


def test_empty_log_says_no_fills_yet(tmp_path: pathlib.Path) -> None:
    header_only = write_log(tmp_path / "log.csv", [])
    for source in (header_only, load_trade_log(header_only), pd.DataFrame(columns=list(COLUMNS))):
        figure = plot_trade_log(source)
        assert "no fills yet" in annotations(figure)
        assert len(figure.data) == 0
        assert pnl_frame(source).empty
    empty_file = tmp_path / "empty.csv"
    empty_file.write_text("")
    assert "no fills yet" in annotations(plot_trade_log(empty_file))


def test_orders_without_fills_still_show_statuses(tmp_path: pathlib.Path) -> None:
    path = write_log(
        tmp_path / "log.csv",
        [event("buy_long-1-00000001", "rejected", 1, kind="submission", reason="no", latency_ms=3.0)],
    )
    figure = plot_trade_log(path)
    assert "no fills yet" in annotations(figure)
    bar = next(t for t in figure.data if t.type == "bar")
    assert dict(zip(bar.x, bar.y, strict=True)) == {"rejected": 1}


def test_unknown_ticker_gives_an_empty_figure(tmp_path: pathlib.Path) -> None:
    figure = plot_trade_log(sample_log(tmp_path / "log.csv"), tickers=["ZZZ"])
    assert annotations(figure) == ["no fills yet for ZZZ"]


# ----------------------------------------------------------------------------- errors


def test_missing_path_names_the_argument(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match=r"source: .*nope\.csv.* not an existing file"):
        plot_trade_log(tmp_path / "nope.csv")
    with pytest.raises(ConfigurationError, match=r"source: .* is a directory"):
        plot_trade_log(tmp_path)
    with pytest.raises(ConfigurationError, match="source=42 is not valid"):
        plot_trade_log(42)  # type: ignore[arg-type]


def test_missing_columns_are_named(tmp_path: pathlib.Path) -> None:
    frame = load_trade_log(sample_log(tmp_path / "log.csv")).drop(columns=["executed_price", "side"])
    with pytest.raises(ConfigurationError, match=r"missing trade-log column.*'executed_price', 'side'"):
        plot_trade_log(frame)
    with pytest.raises(ConfigurationError, match="'executed_price'"):
        pnl_frame(frame)
    other = tmp_path / "other.csv"
    other.write_text("date,close\n2024-01-02,10\n")
    with pytest.raises(ConfigurationError, match=r"source: .*other\.csv.*missing trade-log column.*'type'"):
        plot_trade_log(other)


def test_bad_options_are_named(tmp_path: pathlib.Path) -> None:
    path = sample_log(tmp_path / "log.csv")
    for bad in (3, 0, 2.5, True, "100"):
        with pytest.raises(ConfigurationError, match="max_points"):
            plot_trade_log(path, max_points=bad)  # type: ignore[arg-type]
    for tickers in ([], [""], [3], 7):
        with pytest.raises(ConfigurationError, match="tickers"):
            plot_trade_log(path, tickers=tickers)  # type: ignore[arg-type]


def test_numbers_given_as_text_are_read(tmp_path: pathlib.Path) -> None:
    path = sample_log(tmp_path / "log.csv")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert pnl_frame(frame)["realized"].tolist() == pnl_frame(path)["realized"].tolist()


def test_odd_text_cells_in_a_dataframe_are_tolerated(tmp_path: pathlib.Path) -> None:
    frame = load_trade_log(sample_log(tmp_path / "log.csv")).astype({"client_order_id": object, "action": object})
    frame.loc[frame["executed_qty"] > 0, "client_order_id"] = [None, 17, "x", "y"]
    frame.loc[frame["executed_qty"] > 0, "action"] = np.nan
    figure = plot_trade_log(frame)
    assert list(trace(figure, "AAA buy").text) == ["<br>", "17<br>"]
