"""Plotly figures from a trade log: fills over prices, P&L, positions, order statuses, latency.

:func:`plot_trade_log` draws one figure of four rows from a trade log (a CSV path or the
DataFrame :func:`~blockpaca_nb.tradelog.load_trade_log` returns, ours or blockpaca 0.1.2's):

1. every fill over the path of fill prices, buys ▲ green and sells ▼ red, sized by quantity;
2. cumulative P&L: realized (average-cost accounting, longs and shorts) plus unrealized
   (each open position marked to its ticker's latest fill price);
3. the position of each ticker;
4. how many orders ended in each status, and the latency distribution.

:func:`pnl_frame` gives the accounting behind rows 2 and 3 as a DataFrame, one row per fill.
:func:`equity_figure` draws a replay's equity and drawdown, :func:`sweep_heatmap` a sweep's grid.

A session can log a million rows, so nothing here loops over rows in Python: the average
cost is a linear recurrence solved with a parallel prefix scan in numpy, the time series are
WebGL traces (``Scattergl``), and each trace keeps at most ``max_points`` points by min-max
decimation, which always keeps a trace's first and last points and its extremes. Times are
sent to plotly as milliseconds since the epoch on date axes (UTC): plotly encodes numeric
arrays compactly, where datetimes would travel as long strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .errors import ConfigurationError, show_value
from .order_stats import Latency, final_statuses, order_latency
from .pnl import PNL_COLUMNS, account_for, fills_of, pnl_frame
from .tradelog_frame import REQUIRED_COLUMNS, read_source, ticker_rows, wanted_tickers

__all__ = [
    "PNL_COLUMNS",
    "REQUIRED_COLUMNS",
    "decimate",
    "equity_figure",
    "plot_trade_log",
    "pnl_frame",
    "sweep_heatmap",
]


MIN_POINTS = 4
"""The smallest ``max_points``: a decimated trace keeps its first and last point and one bucket."""


_STATUS_COLORS = {
    "filled": "#2ca02c",
    "partially_filled": "#98df8a",
    "canceled": "#7f7f7f",
    "expired": "#c7c7c7",
    "rejected": "#d62728",
    "invalid": "#ff9896",
    "failed": "#8c1c13",
}
_OPEN_COLOR = "#1f77b4"
_BUY_COLOR = "#2ca02c"
_SELL_COLOR = "#d62728"
_PALETTE = tuple(qualitative.Plotly) + tuple(qualitative.Dark24)
_LATENCY_BINS = 60
_EMPTY_TEXT = "no fills yet"


# --------------------------------------------------------------------------- public API


def plot_trade_log(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    tickers: Sequence[str] | None = None,
    max_points: int = 20_000,
) -> go.Figure:
    """Return one plotly figure of a trade log: fills, cumulative P&L, positions, statuses, latency.

    ``source`` is a trade-log CSV path or a DataFrame with at least blockpaca's ten columns;
    ``tickers`` limits the figure to those symbols; ``max_points`` caps the points of every
    time-series trace (min-max decimation keeps each trace's shape and extremes). A log
    without fills gives a figure saying "no fills yet". Raises ConfigurationError naming
    the argument or column at fault.
    """
    limit = _check_max_points(max_points)
    wanted = wanted_tickers(tickers)
    frame = read_source(source)
    keep = ticker_rows(frame, wanted)
    if len(frame) == 0 or (keep is not None and not keep.any()):
        return _empty_figure(_EMPTY_TEXT if wanted is None else f"{_EMPTY_TEXT} for {', '.join(wanted)}")
    pnl = account_for(fills_of(frame, keep))
    latency = order_latency(frame, keep)
    figure = _grid(latency)
    _add_fill_rows(figure, pnl, limit)
    _add_order_row(figure, final_statuses(frame, keep), latency)
    return figure


def equity_figure(equity: pd.Series, *, title: str = "", max_points: int = 20_000) -> go.Figure:
    """Equity over time and, below it, the drawdown from its running peak (a replay's `plot()`)."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    if equity.empty:
        return _empty_figure("no ticks replayed")
    values = equity.to_numpy(float)
    drawdown = values / np.maximum.accumulate(values) - 1
    keep = np.union1d(decimate(values, max_points), decimate(drawdown, max_points))
    when = equity.index[keep]
    figure.add_trace(go.Scattergl(x=when, y=values[keep], name="equity", line={"color": _OPEN_COLOR}), row=1, col=1)
    figure.add_trace(
        go.Scattergl(x=when, y=drawdown[keep], name="drawdown", fill="tozeroy", line={"color": _SELL_COLOR}),
        row=2,
        col=1,
    )
    figure.update_yaxes(title_text="equity", row=1, col=1)
    figure.update_yaxes(title_text="drawdown", tickformat=".1%", row=2, col=1)
    figure.update_layout(title=title, height=520, showlegend=False)
    return figure


def sweep_heatmap(grid: pd.DataFrame, x: str, y: str, value: str) -> go.Figure:
    """One statistic of a sweep over two of its parameters (a `sweep()` grid's `plot()`)."""
    table = grid.pivot_table(index=y, columns=x, values=value, aggfunc="mean")
    figure = go.Figure(
        go.Heatmap(
            z=table.to_numpy(float),
            x=[str(c) for c in table.columns],
            y=[str(i) for i in table.index],
            colorscale="RdYlGn",
            colorbar={"title": value},
        )
    )
    figure.update_layout(title=f"{value} by {x} and {y}", xaxis_title=x, yaxis_title=y)
    return figure


def decimate(values: np.ndarray, max_points: int) -> np.ndarray:
    """Return the sorted indices of at most ``max_points`` (>= 4) of ``values`` that keep its shape.

    The series is cut into equal runs of points and each run keeps its minimum and its
    maximum; the first and last points are always kept. A series within the limit is kept
    whole. Cheap (two argmin/argmax passes), and unlike keeping every n-th point it never
    drops a spike.
    """
    max_points = _check_max_points(max_points)
    count = len(values)
    if count <= max_points:
        return np.arange(count)
    buckets = max((max_points - 2) // 2, 1)
    size = -(-count // buckets)
    padded = np.empty(buckets * size)
    padded[count:] = np.inf
    padded[:count] = values
    starts = np.arange(buckets) * size
    lows = starts + padded.reshape(buckets, size).argmin(axis=1)
    padded[count:] = -np.inf
    highs = starts + padded.reshape(buckets, size).argmax(axis=1)
    kept = np.concatenate(([0, count - 1], lows, highs))
    return np.unique(kept[kept < count])


# --------------------------------------------------------------------------- input


def _check_max_points(max_points: object) -> int:
    """Accept an integer of at least :data:`MIN_POINTS` (bool is not a count)."""
    if isinstance(max_points, bool) or not isinstance(max_points, int | np.integer) or max_points < MIN_POINTS:
        raise ConfigurationError(
            f"max_points={show_value(max_points)} is not valid; allowed: an integer >= {MIN_POINTS}"
        )
    return int(max_points)


# --------------------------------------------------------------------------- accounting


# --------------------------------------------------------------------------- orders


# --------------------------------------------------------------------------- figure


def _grid(latency: Latency) -> go.Figure:
    """Four rows: fills, P&L and positions span both columns; statuses and latency share the last."""
    figure = make_subplots(
        rows=4,
        cols=2,
        specs=[[{"colspan": 2}, None], [{"colspan": 2}, None], [{"colspan": 2}, None], [{}, {}]],
        row_heights=[0.36, 0.22, 0.2, 0.22],
        vertical_spacing=0.07,
        horizontal_spacing=0.1,
        subplot_titles=(
            "Fills over fill price",
            "Cumulative P&L (realized + unrealized, average cost)",
            "Position",
            "Orders by final status",
            f"Latency ({latency.summary()})" if len(latency.values) else "Latency",
        ),
    )
    for row in (1, 2, 3):
        figure.update_xaxes(type="date", row=row, col=1)
    for row in (2, 3):
        figure.update_xaxes(matches="x", row=row, col=1)
    figure.update_xaxes(title_text="time (UTC)", row=3, col=1)
    figure.update_yaxes(title_text="fill price", row=1, col=1)
    figure.update_yaxes(title_text="P&L", row=2, col=1)
    figure.update_yaxes(title_text="shares", row=3, col=1)
    figure.update_yaxes(title_text="orders", row=4, col=1)
    figure.update_xaxes(title_text=latency.label, row=4, col=2)
    figure.update_yaxes(title_text="count", row=4, col=2)
    figure.update_layout(height=1000, hovermode="closest", template="plotly_white", margin={"r": 160})
    return figure


def _add_fill_rows(figure: go.Figure, pnl: pd.DataFrame, limit: int) -> None:
    """Rows 1-3: per ticker its price path and fills, its P&L (hidden until asked), its position.

    Traces are built as plain dicts and added in one call: plotly validates each once.
    """
    if pnl.empty:
        _annotate(figure, _EMPTY_TEXT, row=1, col=1)
        return
    traces: list[tuple[int, dict[str, object]]] = []
    size_scale = float(pnl["qty"].max())
    for number, (ticker, part) in enumerate(_by_ticker(pnl)):
        color = _PALETTE[number % len(_PALETTE)]
        traces += [(1, trace) for trace in _fill_traces(ticker, part, color, limit, size_scale)]
        traces.append((2, _line(part, "total", f"{ticker} P&L", color, limit, visible="legendonly", legend="legend2")))
        traces.append(
            (3, _line(part, "position", f"{ticker} position", color, limit, legendgroup=ticker, showlegend=False))
        )
    traces += [(2, trace) for trace in _portfolio_pnl(pnl, limit)]
    traces += [(2, trace) for trace in _strategy_pnl(pnl, limit)]
    figure.add_traces([trace for _, trace in traces], rows=[row for row, _ in traces], cols=[1] * len(traces))
    _place_legends(figure)


def _by_ticker(pnl: pd.DataFrame) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The plotted columns of each ticker (alphabetical), in time order: slices of one sorted copy."""
    codes, tickers = pd.factorize(pnl["ticker"], sort=True)
    order = np.argsort(codes, kind="stable")
    names = ("ms", "price", "qty", "side", "total", "position", "client_order_id", "action")
    columns = {name: pnl[name].to_numpy()[order] for name in names}
    bounds = np.searchsorted(codes[order], np.arange(len(tickers) + 1))
    return [
        (str(ticker), {name: values[bounds[i] : bounds[i + 1]] for name, values in columns.items()})
        for i, ticker in enumerate(tickers)
    ]


def _fill_traces(
    ticker: str, part: dict[str, np.ndarray], color: str, limit: int, size_scale: float
) -> list[dict[str, object]]:
    """The ticker's fill-price path, then its buys and its sells as markers."""
    traces = [_line(part, "price", ticker, color, limit, legendgroup=ticker)]
    for side, symbol, fill_color in (("buy", "triangle-up", _BUY_COLOR), ("sell", "triangle-down", _SELL_COLOR)):
        chosen = part["side"] == side
        fills = {name: values[chosen] for name, values in part.items()}
        traces.append(_markers(fills, f"{ticker} {side}", symbol, (fill_color, color), limit, size_scale, ticker))
    return traces


def _line(
    part: dict[str, np.ndarray], column: str, name: str, color: str, limit: int, dash: str = "solid", **options: object
) -> dict[str, object]:
    """A WebGL step line of ``column`` over time, decimated to ``limit`` points."""
    values = part[column]
    kept = decimate(values, limit)
    return {
        "type": "scattergl",
        "x": part["ms"][kept],
        "y": values[kept],
        "name": name,
        "mode": "lines",
        "line": {"color": color, "shape": "hv", "width": 1.5, "dash": dash},
        "hovertemplate": f"{name}: %{{y:,.6~f}}<br>%{{x|%Y-%m-%d %H:%M:%S.%L}}<extra></extra>",
        **options,
    }


def _markers(
    fills: dict[str, np.ndarray],
    name: str,
    symbol: str,
    colors: tuple[str, str],
    limit: int,
    size_scale: float,
    group: str,
) -> dict[str, object]:
    """WebGL triangles sized by quantity (fill colour, edge colour); hover: order, action, qty, price."""
    kept = decimate(fills["price"], limit)
    qty = fills["qty"][kept]
    return {
        "type": "scattergl",
        "x": fills["ms"][kept],
        "y": fills["price"][kept],
        "name": name,
        "mode": "markers",
        "legendgroup": group,
        "showlegend": False,
        "marker": {
            "symbol": symbol,
            "color": colors[0],
            "size": np.rint(6 + 10 * np.sqrt(qty / size_scale)).astype(np.uint8),  # 1 byte a point in JSON
            "line": {"color": colors[1], "width": 1},
        },
        "text": fills["client_order_id"][kept] + "<br>" + fills["action"][kept],
        "customdata": qty,
        "hovertemplate": (
            f"<b>{name}</b> %{{customdata:,.9~f}} @ %{{y:,.6~f}}<br>%{{text}}"
            "<br>%{x|%Y-%m-%d %H:%M:%S.%L}<extra></extra>"
        ),
    }


def _portfolio_pnl(pnl: pd.DataFrame, limit: int) -> list[dict[str, object]]:
    """All tickers' total and realized P&L: running sums of each fill's change, in time order."""
    realized = np.cumsum(pnl["realized_step"].to_numpy())
    total = realized + np.cumsum(pnl["unrealized_step"].to_numpy())
    portfolio = {"ms": pnl["ms"].to_numpy(), "total": total, "realized": realized}
    return [
        _line(portfolio, "total", "total P&L", "#111111", limit, legend="legend2"),
        _line(portfolio, "realized", "realized P&L", "#7f7f7f", limit, legend="legend2", dash="dot"),
    ]


def _strategy_pnl(pnl: pd.DataFrame, limit: int) -> list[dict[str, object]]:
    """Each strategy's total P&L, once the log has two (by its `strategy` column; the session's own
    orders, a liquidation's, are "session"): the same accounting per strategy."""
    strategies = pnl["strategy"].replace("", "session")
    names = sorted(set(strategies))
    if len(names) < 2:
        return []
    fills = pd.DataFrame(
        {
            "timestamp": pnl["ms"].to_numpy() / 1e3,
            "ticker": (strategies + "\x00" + pnl["ticker"].astype(str)).to_numpy(),
            "sign": np.where(pnl["side"].to_numpy() == "buy", 1, -1),
            "qty": pnl["qty"].to_numpy(),
            "price": pnl["price"].to_numpy(),
            "client_order_id": pnl["client_order_id"].to_numpy(),
            "action": pnl["action"].to_numpy(),
            "strategy": strategies.to_numpy(),
        }
    )
    each = account_for(fills)
    steps = (each["realized_step"] + each["unrealized_step"]).to_numpy()
    lines = []
    for number, name in enumerate(names):
        rows = (strategies == name).to_numpy()
        part = {"ms": each["ms"].to_numpy()[rows], "total": np.cumsum(steps[rows])}
        color = _PALETTE[(number + 3) % len(_PALETTE)]
        lines.append(_line(part, "total", f"{name} P&L", color, limit, legend="legend2", dash="dash"))
    return lines


def _place_legends(figure: go.Figure) -> None:
    """Tickers' legend beside the fills; the P&L legend beside the P&L row."""
    top_fills = figure.layout.yaxis.domain[1]
    top_pnl = figure.layout.yaxis2.domain[1]
    figure.update_layout(
        legend={"x": 1.01, "y": top_fills, "yanchor": "top", "title": {"text": "ticker"}},
        legend2={"x": 1.01, "y": top_pnl, "yanchor": "top", "title": {"text": "P&L"}},
    )


def _add_order_row(figure: go.Figure, statuses: pd.Series, latency: Latency) -> None:
    """Row 4: the status bar chart and the latency histogram (or a note when there is none)."""
    if statuses.empty:
        _annotate(figure, "no orders", row=4, col=1)
    else:
        figure.add_trace(_status_bar(statuses), row=4, col=1)
    if len(latency.values) == 0:
        _annotate(figure, "no latency measured", row=4, col=2)
    else:
        figure.add_trace(_latency_histogram(latency), row=4, col=2)


def _status_bar(statuses: pd.Series) -> go.Bar:
    """One bar per final status, coloured by outcome (green filled, red rejected, blue open)."""
    names = [str(name) for name in statuses.index]
    return go.Bar(
        x=names,
        y=statuses.to_numpy(),
        name="orders by status",
        text=statuses.to_numpy(),
        textposition="auto",
        marker={"color": [_STATUS_COLORS.get(name, _OPEN_COLOR) for name in names]},
        showlegend=False,
        hovertemplate="%{x}: %{y} orders<extra></extra>",
    )


def _latency_histogram(latency: Latency) -> go.Histogram:
    """A histogram binned here (plotly receives bin centres and counts, not every value).

    Values above the 99.5th percentile fall in the last bin, so one slow outlier does not
    squash the rest; the subplot title and the trace name give the median, p95 and p99 of
    all values.
    """
    values = latency.values
    low, high = float(values.min()), float(np.percentile(values, 99.5))
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(np.clip(values, low, high), bins=_LATENCY_BINS, range=(low, high))
    return go.Histogram(
        x=(edges[:-1] + edges[1:]) / 2,
        y=counts,
        histfunc="sum",
        xbins={"start": low, "end": high, "size": (high - low) / _LATENCY_BINS},
        name=f"latency ({latency.summary()})",
        marker={"color": _OPEN_COLOR},
        showlegend=False,
        hovertemplate="%{x} ms: %{y} orders<extra></extra>",
    )


def _annotate(figure: go.Figure, text: str, row: int, col: int) -> None:
    """Write ``text`` in the middle of the subplot at ``row``, ``col``."""
    axes = figure.get_subplot(row, col)
    x_ref, y_ref = axes.xaxis.plotly_name.replace("axis", ""), axes.yaxis.plotly_name.replace("axis", "")
    figure.add_annotation(
        text=text, xref=f"{x_ref} domain", yref=f"{y_ref} domain", x=0.5, y=0.5, showarrow=False, font={"size": 16}
    )


def _empty_figure(text: str) -> go.Figure:
    """A figure that says there is nothing to plot yet (an empty log, or no rows for the tickers)."""
    figure = go.Figure()
    figure.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 18})
    figure.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, template="plotly_white", height=300)
    return figure
