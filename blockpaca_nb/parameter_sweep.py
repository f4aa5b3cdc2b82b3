"""sweep(): one replay per parameter set, side by side, collected into a grid of statistics.

A parameter sweep is embarrassingly parallel, so it takes any `concurrent.futures.Executor`: by
default a local process pool (one process per core), or a Dask cluster's `client.get_executor()`
(or Ray's) to spread it over machines. Each job is sent as one cloudpickle payload (the strategy
factory, its parameters, the replay's arguments), so a factory written in a notebook cell travels
to workers that never saw that cell. Results do not depend on which worker ran what: each job is a
deterministic replay.
"""

from __future__ import annotations

import inspect
import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from .errors import BlockpacaError, ConfigurationError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .strategy import Strategy

__all__ = ["SweepGrid", "sweep"]

STAT_COLUMNS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility", "exposure",
                "turnover", "trades", "win_rate", "final_equity", "orders", "refused", "errors")  # fmt: skip
# What a grid may be sorted by, and whether more is better (max_drawdown is negative: nearer 0 is better).
SORT_HIGHER_IS_BETTER = {"sharpe": True, "sortino": True, "total_return": True, "cagr": True,
                         "final_equity": True, "win_rate": True, "max_drawdown": True, "volatility": False}  # fmt: skip


class SweepGrid(pd.DataFrame):
    """One row per parameter set, its statistics as columns, best first — a failed set (its strategy
    raised, or the broker or validation refused every order it sent) after every set that ran,
    whatever its figures; `plot()` draws a heatmap."""

    _metadata: ClassVar[list[str]] = ["parameters", "sort_by", "parameter_sets"]

    @property
    def _constructor(self) -> type[SweepGrid]:
        return SweepGrid

    @property
    def best(self) -> dict[str, Any]:
        """The parameters of the first row (the best by `sort_by`, unless re-sorted or filtered since),
        exactly as given, ready for `make_strategy(**best)`; an error when even that set failed."""
        if bool(_failed(self).iloc[0]):
            raise BlockpacaError(
                "every parameter set failed (its strategy raised, or all its orders were refused): see the"
                " grid's errors and refused columns, and replay() one set to read r.errors"
            )
        return dict(self.parameter_sets[self.index[0]])  # a row's label is its place in the sweep's order

    def plot(self, x: str | None = None, y: str | None = None, value: str | None = None) -> go.Figure:  # type: ignore[override]
        """A heatmap of `value` (the sort statistic) over two parameters (the first two by default)."""
        from .plots import sweep_heatmap

        names = list(self.parameters)
        if len(names) < 2 and (x is None or y is None):
            raise ConfigurationError("plot() needs two parameters for a heatmap; this sweep has one: plot its column")
        return sweep_heatmap(pd.DataFrame(self), x or names[0], y or names[1], value or self.sort_by)


def sweep(
    make_strategy: Callable[..., Strategy],
    grid: Mapping[str, Iterable[Any]],
    *,
    executor: Executor | None = None,
    sort_by: str = "sharpe",
    progress: bool = True,
    **replay_arguments: Any,
) -> SweepGrid:
    """Replay `make_strategy(**params)` for every combination of `grid`'s values; the other keyword
    arguments go to `replay()` (tickers, start, end, frequency, data, ...)."""
    names, combos = _combinations(grid)
    if sort_by not in SORT_HIGHER_IS_BETTER:
        raise ConfigurationError(f"sort_by={sort_by!r} is not valid; allowed: {', '.join(SORT_HIGHER_IS_BETTER)}")
    if not callable(make_strategy):
        raise ConfigurationError(f"make_strategy={make_strategy!r} is not valid; allowed: a function of the parameters")
    _check_parameters(make_strategy, names)
    sets = [dict(zip(names, combo, strict=True)) for combo in combos]
    arguments = _pinned(replay_arguments)
    payloads = [_payload(make_strategy, params, arguments) for params in sets]
    owned = executor is None
    pool = executor or _local_pool(len(payloads), arguments)
    try:
        rows = _collect([pool.submit(run_payload, payload) for payload in payloads], progress)
    finally:
        if owned:
            pool.shutdown(wait=True, cancel_futures=True)
    frame = _best_first(pd.DataFrame(rows), sort_by)
    result = SweepGrid(frame.reset_index(drop=True))
    result.parameters, result.sort_by = names, sort_by
    result.parameter_sets = [sets[i] for i in frame.index]
    return result


def _failed(frame: pd.DataFrame) -> pd.Series:
    """The sets that did not run as meant: the strategy raised, or every order it sent was refused."""
    return (frame["errors"] > 0) | ((frame["orders"] == 0) & (frame["refused"] > 0))


def _best_first(frame: pd.DataFrame, sort_by: str) -> pd.DataFrame:
    """Sorted by ``sort_by``, failed sets last: a strategy failing on every tick (or refused every
    order) trades nothing, and its zero volatility and drawdown must not make it the best."""
    ranked = frame.assign(_failed=_failed(frame)).sort_values(
        ["_failed", sort_by], ascending=[True, not SORT_HIGHER_IS_BETTER[sort_by]], na_position="last"
    )
    return frame.loc[ranked.index]


def _check_parameters(make_strategy: Callable[..., Strategy], names: list[str]) -> None:
    """The grid's names must be what make_strategy takes (a misspelt one failed in every worker)."""
    try:
        signature = inspect.signature(make_strategy, follow_wrapped=False)
    except (TypeError, ValueError):  # a callable Python cannot look into: the workers will tell
        return
    try:
        signature.bind(**dict.fromkeys(names))
    except TypeError as err:
        raise ConfigurationError(
            f"grid {names} does not fit make_strategy{signature} ({err}); allowed: the parameters it takes"
        ) from None


def _combinations(grid: Mapping[str, Iterable[Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigurationError("grid must be a non-empty dict of parameter name -> list of values")
    values = {}
    for name, options in grid.items():
        if isinstance(options, str) or not isinstance(options, Iterable):
            raise ConfigurationError(f"grid[{name!r}]={options!r} is not valid; allowed: a list of values")
        values[str(name)] = list(options)
        if not values[str(name)]:
            raise ConfigurationError(f"grid[{name!r}] is empty; allowed: a list of at least one value")
        if name in STAT_COLUMNS:
            raise ConfigurationError(f"grid[{name!r}]: the name of a statistic; allowed: any other parameter name")
    return list(values), list(itertools.product(*values.values()))


def _pinned(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The simulator's history as of today, fixed once for every job: a sweep that runs past
    midnight in New York replays the same prices for each parameter set."""
    data = arguments.get("data", "sim")
    if isinstance(data, str) and data == "sim" and arguments.get("as_of") is None:
        from .sim.calendar import EASTERN

        return {**arguments, "as_of": datetime.now(EASTERN).date()}
    return dict(arguments)


def _payload(make_strategy: Callable[..., Strategy], params: dict[str, Any], arguments: Mapping[str, Any]) -> bytes:
    import cloudpickle

    return cloudpickle.dumps((make_strategy, params, {**arguments, "progress": False}))


def run_payload(payload: bytes) -> dict[str, Any]:
    """One job, in whichever process or machine runs it: the replay's statistics and its parameters."""
    import pickle

    from .replayer import replay

    make_strategy, params, arguments = pickle.loads(payload)
    result = replay(make_strategy(**params), **arguments)
    stats = result.stats
    return {**params, **{name: _plain(stats.get(name, math.nan)) for name in STAT_COLUMNS}}


def _local_pool(jobs: int, replay_arguments: Mapping[str, Any]) -> ProcessPoolExecutor:
    """One worker per core. Not forked from the kernel (a running session's threads must not be
    copied): a fork server that has imported replay once starts them, else fresh interpreters.
    Each is handed the simulator's tape the sweep replays, loaded once here (or kept from the
    replay a notebook just ran) rather than made again in every worker."""
    from .replayer import sim_tape_for

    workers = max(1, min(jobs, os.cpu_count() or 1))
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["blockpaca_nb.replayer", "blockpaca_nb.replay_result"])
    else:
        context = multiprocessing.get_context("spawn")
    tape = sim_tape_for(**replay_arguments)
    if tape is None:
        return ProcessPoolExecutor(max_workers=workers, mp_context=context)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_keep_tape, initargs=tape)


def _keep_tape(key: Any, tape: Any) -> None:
    """In a pool's worker: the tape its replays read, as if it had loaded it."""
    from .replayer import sim_tapes

    sim_tapes.keep(key, tape)


def _collect(futures: list[Future[dict[str, Any]]], progress: bool) -> list[dict[str, Any]]:
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(futures), unit="replay", delay=1.0)
        except ImportError:
            bar = None
    try:
        for future in as_completed(futures):
            future.result()  # a failed replay fails the sweep, with its own exception
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return [future.result() for future in futures]


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (for `make_strategy(**best)` and for clean tables)."""
    return value.item() if hasattr(value, "item") else value
