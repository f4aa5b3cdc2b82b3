"""Benchmark: plot_trade_log on trade logs of 10⁴, 10⁵ and 10⁶ rows.

    python tests/benchmarks/bench_plots.py [--sizes 10000 100000 1000000] [--runs 3]

Each log is generated with a realistic mix (5 to 50 tickers; pending_new/new/fill rows, some
partial fills, cancels, rejections, failures and validation errors; submission rows with
latency), written to CSV, then timed: ``load_trade_log``, ``plot_trade_log`` on the loaded
DataFrame, both together from the path, and ``fig.to_json()`` (what a notebook sends to the
browser). Medians of ``--runs`` runs. The baseline, in the same run, is the naive figure:
plotly express scatter of every raw row, without downsampling, on the 10⁵-row log.

A measurement, not a test: it exits 0 either way and says FAIL where the target is missed
(plot_trade_log ≤ 3 s for 10⁶ rows on an already-loaded DataFrame).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px

from blockpaca_nb.plots import plot_trade_log
from blockpaca_nb.tradelog import COLUMNS, load_trade_log

TARGET_SECONDS = 3.0
TARGET_ROWS = 1_000_000
BASELINE_ROWS = 100_000
START = 1_766_500_000.0
BUY_ACTIONS = np.array(["buy_long", "buy_to_cover"])
SELL_ACTIONS = np.array(["sell_long", "short_sell"])


# ----------------------------------------------------------------------------- the logs


def tickers_for(rows: int) -> int:
    """5 tickers up to 10⁴ rows, 20 up to 10⁵, 50 beyond."""
    return 5 if rows <= 10_000 else 20 if rows <= 100_000 else 50


def make_log(rows: int, seed: int = 7) -> pd.DataFrame:
    """A trade log of exactly ``rows`` rows (the latest orders may be cut mid-lifecycle)."""
    rng = np.random.default_rng(seed)
    orders = _orders(rng, rows // 3 + 10, tickers_for(rows))
    parts = [_submission_rows(orders), *_execution_rows(rng, orders), _validation_rows(orders)]
    frame = pd.concat(parts, ignore_index=True).sort_values("timestamp", kind="stable", ignore_index=True)
    return frame.iloc[:rows].reindex(columns=list(COLUMNS))


def _orders(rng: np.random.Generator, count: int, ticker_count: int) -> pd.DataFrame:
    """One row per order: what happens to it, its prices, quantities and timings."""
    ticker = rng.integers(0, ticker_count, count)
    side = rng.choice(np.array(["buy", "sell"]), count)
    action = np.where(side == "buy", rng.choice(BUY_ACTIONS, count), rng.choice(SELL_ACTIONS, count))
    worker = rng.integers(0, 8, count)
    tag = pd.Series(rng.integers(0, 2**32, count)).map("{:08x}".format)
    cid = pd.Series(action) + "-" + pd.Series(worker).astype(str) + "-" + tag
    fate = rng.choice(
        np.array(["filled", "partial", "canceled", "rejected", "failed", "invalid"]),
        count,
        p=[0.68, 0.1, 0.1, 0.07, 0.03, 0.02],
    )
    return pd.DataFrame(
        {
            "submitted": START + np.cumsum(rng.exponential(0.02, count)),
            "ticker": np.array([f"T{number:02d}" for number in range(ticker_count)])[ticker],
            "side": side,
            "action": action,
            "worker": worker,
            "client_order_id": cid,
            "fate": fate,
            "qty": np.ceil(rng.lognormal(2.0, 1.0, count)),
            "price": _prices(rng, ticker, ticker_count),
            "latency": rng.lognormal(np.log(30), 0.5, count) / 1000,
            "fill_delay": rng.lognormal(np.log(60), 0.7, count) / 1000,
        }
    )


def _prices(rng: np.random.Generator, ticker: np.ndarray, ticker_count: int) -> np.ndarray:
    """A geometric random walk per ticker, sampled at its orders."""
    steps = pd.Series(rng.normal(0, 0.001, len(ticker))).groupby(ticker).cumsum().to_numpy()
    base = rng.uniform(20, 500, ticker_count)
    return np.round(base[ticker] * np.exp(steps), 2)


def _row(orders: pd.DataFrame, kind: str, status: str, event: str, when: Any, **columns: Any) -> pd.DataFrame:
    """Trade-log rows for ``orders``: their ids and sides plus the given columns."""
    return pd.DataFrame(
        {
            "type": kind,
            "client_order_id": orders["client_order_id"].to_numpy(),
            "ticker": orders["ticker"].to_numpy(),
            "executed_price": columns.pop("executed_price", 0.0),
            "executed_qty": columns.pop("executed_qty", 0.0),
            "status": status,
            "side": orders["side"].to_numpy(),
            "action": orders["action"].to_numpy(),
            "timestamp": when,
            "raw_status": f"OrderStatus.{status.upper()}" if status else "",
            "event": event,
            "order_type": "market",
            "qty": orders["qty"].to_numpy(),
            "worker": orders["worker"].to_numpy(),
            **columns,
        }
    )


def _submission_rows(orders: pd.DataFrame) -> pd.DataFrame:
    """The workers' answers: accepted, rejected with a reason, or failed; each with latency."""
    sent = orders[orders["fate"] != "invalid"]
    status = np.select([sent["fate"] == "rejected", sent["fate"] == "failed"], ["rejected", "failed"], "accepted")
    rows = _row(
        sent,
        "submission",
        "",
        "",
        (sent["submitted"] + sent["latency"]).to_numpy(),
        latency_ms=(sent["latency"] * 1000).round(3).to_numpy(),
    )
    rows["status"] = rows["event"] = status
    rows["raw_status"] = np.where(status == "failed", "", "OrderStatus." + pd.Series(status).str.upper())
    rows["reason"] = np.select(
        [status == "rejected", status == "failed"], ["insufficient buying power", "timeout after 3 attempts"], ""
    )
    return rows


def _execution_rows(rng: np.random.Generator, orders: pd.DataFrame) -> list[pd.DataFrame]:
    """The trade_updates stream: pending_new, new, then fills (some partial) or a cancel."""
    live = orders[orders["fate"].isin(["filled", "partial", "canceled"])]
    start = live["submitted"].to_numpy() + 0.002
    rows = [
        _row(live, "execution", "pending_new", "pending_new", start),
        _row(live, "execution", "new", "new", start + 0.001),
    ]
    canceled = live[live["fate"] == "canceled"]
    rows.append(_row(canceled, "execution", "canceled", "canceled", canceled["submitted"] + 1.0))
    partial = live[live["fate"] == "partial"]
    first = np.floor(partial["qty"].to_numpy() * rng.uniform(0.2, 0.8, len(partial)))
    first_time = (partial["submitted"] + partial["fill_delay"]).to_numpy()
    rows.append(_fill_row(partial, "partially_filled", "partial_fill", first_time, first, first))
    done = live[live["fate"] != "canceled"]
    rest = done["qty"].to_numpy().copy()
    rest[done["fate"].to_numpy() == "partial"] -= first  # same orders, same order as `partial`
    finish = (done["submitted"] + done["fill_delay"] * np.where(done["fate"] == "partial", 2.0, 1.0)).to_numpy()
    rows.append(_fill_row(done, "filled", "fill", finish, rest, done["qty"].to_numpy()))
    return rows


def _fill_row(
    orders: pd.DataFrame, status: str, event: str, when: np.ndarray, qty: np.ndarray, total: np.ndarray
) -> pd.DataFrame:
    """A fill of ``qty`` as the recorder writes it: the order's running ``total`` in executed_qty."""
    price = orders["price"].to_numpy()
    return _row(
        orders,
        "execution",
        status,
        event,
        when,
        executed_price=price,
        executed_qty=total,
        filled_qty=total,
        filled_avg_price=price,
        fill_qty=qty,
        fill_price=price,
    )


def _validation_rows(orders: pd.DataFrame) -> pd.DataFrame:
    refused = orders[orders["fate"] == "invalid"]
    rows = _row(refused, "validation", "rejected", "validation_error", refused["submitted"].to_numpy())
    rows["reason"] = "order field 'quantity': got 0; allowed: a number > 0"
    rows["raw_status"] = ""
    return rows


# ----------------------------------------------------------------------------- timing


def median_seconds(work: Callable[[], object], runs: int) -> tuple[float, object]:
    """Median wall time of ``runs`` calls of ``work`` (no warm-up: the first call counts), and its result."""
    timings, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), result


def naive_figure(frame: pd.DataFrame) -> Any:
    """The baseline: every raw row a point, colour by ticker, symbol by side, full hover."""
    return px.scatter(
        frame,
        x="time",
        y="executed_price",
        color="ticker",
        symbol="side",
        hover_data=["client_order_id", "action", "executed_qty"],
    )


@dataclass
class Result:
    """One log size's figures (seconds) and its loaded DataFrame (for the baseline)."""

    load: float
    plot: float
    frame: pd.DataFrame


def bench_size(rows: int, runs: int, folder: pathlib.Path) -> Result:
    """Generate, write and time one log size; print its line; return the figures."""
    path = folder / f"log_{rows}.csv"
    make_log(rows).to_csv(path, index=False, na_rep="")
    load_s, frame = median_seconds(lambda: load_trade_log(path), runs)
    plot_s, figure = median_seconds(lambda: plot_trade_log(frame), runs)
    both_s, _ = median_seconds(lambda: plot_trade_log(path), runs)
    json_s, text = median_seconds(figure.to_json, 1)
    points = sum(len(trace.x) for trace in figure.data if trace.x is not None)
    print(
        f"{rows:>9,} rows {tickers_for(rows):>3} tickers | load {load_s:6.2f} s | plot {plot_s:6.2f} s | "
        f"load+plot {both_s:6.2f} s | to_json {json_s:5.2f} s, {len(text) / 1e6:6.1f} MB | "
        f"{len(figure.data)} traces, {points:,} points",
        flush=True,
    )
    return Result(load_s, plot_s, frame)  # type: ignore[arg-type]


def bench_smaller_figure(frame: pd.DataFrame, max_points: int) -> None:
    """What a lower ``max_points`` buys on a big log: build time, to_json time and size."""
    build_s, figure = median_seconds(lambda: plot_trade_log(frame, max_points=max_points), 1)
    json_s, text = median_seconds(figure.to_json, 1)  # type: ignore[attr-defined]
    print(
        f"plot_trade_log(max_points={max_points:,}) on {len(frame):,} rows: build {build_s:.2f} s, "
        f"to_json {json_s:.2f} s, {len(text) / 1e6:.1f} MB"
    )


def bench_baseline(frame: pd.DataFrame, ours: float, runs: int) -> None:
    """Time the naive figure (build + to_json) against ours on the same DataFrame."""
    naive_s, figure = median_seconds(lambda: naive_figure(frame), runs)
    naive_json_s, text = median_seconds(figure.to_json, 1)  # type: ignore[attr-defined]
    ours_json_s, ours_text = median_seconds(plot_trade_log(frame).to_json, 1)
    print(
        f"baseline px.scatter of every row ({len(frame):,} rows): build {naive_s:.2f} s, "
        f"to_json {naive_json_s:.2f} s, {len(text) / 1e6:.1f} MB"
    )
    print(
        f"plot_trade_log on the same rows:          build {ours:.2f} s, "
        f"to_json {ours_json_s:.2f} s, {len(ours_text) / 1e6:.1f} MB"
    )
    build_ratio, total_ratio = naive_s / ours, (naive_s + naive_json_s) / (ours + ours_json_s)
    print(f"ratio baseline / ours: build {build_ratio:.1f}x, build + to_json {total_ratio:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = {size: bench_size(size, options.runs, pathlib.Path(folder)) for size in options.sizes}
    if BASELINE_ROWS in results:
        bench_baseline(results[BASELINE_ROWS].frame, results[BASELINE_ROWS].plot, options.runs)
    if TARGET_ROWS in results:
        print("for context, the same comparison on the largest log:")
        bench_baseline(results[TARGET_ROWS].frame, results[TARGET_ROWS].plot, 1)
        bench_smaller_figure(results[TARGET_ROWS].frame, 2_000)
        plot_s, load_s = results[TARGET_ROWS].plot, results[TARGET_ROWS].load
        verdict = "pass" if plot_s <= TARGET_SECONDS else "FAIL"
        print(
            f"target: plot_trade_log on a loaded {TARGET_ROWS:,}-row DataFrame <= {TARGET_SECONDS:.0f} s: "
            f"{plot_s:.2f} s {verdict} (load_trade_log {load_s:.2f} s, reported)"
        )


if __name__ == "__main__":
    main()
