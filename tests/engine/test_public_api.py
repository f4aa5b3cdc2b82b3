"""The public API does not change by accident: what `from blockpaca_nb import *` gives, what the
simulator package exports, and the call signatures users and blockpaca 0.1.2 scripts rely on.

A change here must be deliberate: edit the lists below in the same commit as the API change (and say so
in the README). Internal modules may move freely; these names may not.
"""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import blockpaca_nb
import blockpaca_nb.sim

PUBLIC = [
    "AuthenticationError",
    "BlockpacaError",
    "BrokerError",
    "ConfigurationError",
    "DataWarning",
    "OrderValidationError",
    "Session",
    "Simulator",
    "load_trade_log",
    "plot_trade_log",
    "replay",
    "run_trading",
    "sweep",
]
SIM_PUBLIC = ["Simulator"]

# the blockpaca 0.1.2 contract: a script runs with only its import line changed
RUN_TRADING_PARAMETERS = [
    "strategy_callable", "trade_log_name", "trade_log_path", "api_key", "secret_key", "tickers", "frequency",
    "run_seconds", "total_allowed_per_min", "refill_interval_sec", "num_workers", "use_alpaca", "eos_behavior",
    "custom_shutdown_action", "warm_up_period", "live_display", "display_refresh_rate", "max_trade_updates",
    "simulator",
]  # fmt: skip
SESSION_PARAMETERS = [
    "tickers", "api_key", "secret_key", "mode", "simulator", "urls", "frequency", "run_seconds", "warm_up_period",
    "eos_behavior", "custom_shutdown_action", "trade_log_name", "trade_log_path", "num_workers",
    "max_orders_per_minute", "max_retries", "display_refresh_rate", "max_trade_updates", "rate_window_s",
    "replace_running", "limits", "record_quotes",
]  # fmt: skip
SESSION_MEMBERS = [
    "account_positions", "activate", "active_strategies", "active_strategy", "bars", "context", "dashboard",
    "deactivate", "get_current_data", "hold", "kill", "liquidate", "name", "pause", "plot", "pnl_by_strategy",
    "positions", "positions_by_strategy", "quote_book", "quotes", "rate_usage", "resume", "run_custom_eos", "select",
    "simulator", "start", "state", "stop", "strategies", "strategy", "strategy_rows", "strategy_state", "submit",
    "swap",
    "trade_log", "wait",
    "wait_for", "waiting", "worker_health",
]  # fmt: skip
SIMULATOR_PARAMETERS = [
    "symbols", "seed", "port", "quotes_per_second", "latency_ms", "market_hours", "starting_cash", "error_rate",
    "timeout_after_accept_rate", "rate_limit_per_min", "ws_drop_every_s", "rate_limit_window_s", "profile",
    "cancel_latency_ms", "partial_fill_rate", "clock_start", "data_plan", "regulatory_fees",
]  # fmt: skip


@pytest.mark.parametrize(("package", "names"), [(blockpaca_nb, PUBLIC), (blockpaca_nb.sim, SIM_PUBLIC)])
def test_all_lists_exactly_the_public_names_sorted(package: types.ModuleType, names: list[str]) -> None:
    assert package.__all__ == names
    assert names == sorted(names)


@pytest.mark.parametrize(("package", "names"), [(blockpaca_nb, PUBLIC), (blockpaca_nb.sim, SIM_PUBLIC)])
def test_every_public_name_imports(package: types.ModuleType, names: list[str]) -> None:
    fresh: dict[str, object] = {}
    exec(f"from {package.__name__} import *", fresh)  # what a user's star import gets
    for name in names:
        assert getattr(importlib.import_module(package.__name__), name) is fresh[name]


@pytest.mark.parametrize("package", [blockpaca_nb, blockpaca_nb.sim])
def test_nothing_public_is_left_out_of_all(package: types.ModuleType) -> None:
    """A new public name in the package namespace must be exported on purpose (or start with `_`).
    By dir(): the package's public names load on first use (children must not import pandas)."""
    names = [n for n in dir(package) if not n.startswith("_")]
    shown = {n for n in names if not isinstance(getattr(package, n), types.ModuleType)}
    assert shown == set(package.__all__)


def test_the_blockpaca_contract_keeps_run_tradings_parameters() -> None:
    assert list(inspect.signature(blockpaca_nb.run_trading).parameters) == RUN_TRADING_PARAMETERS


def test_session_keeps_its_parameters_and_members() -> None:
    assert list(inspect.signature(blockpaca_nb.Session).parameters) == SESSION_PARAMETERS
    members = sorted(n for n in dir(blockpaca_nb.Session) if not n.startswith("_"))
    assert members == SESSION_MEMBERS


def test_simulator_keeps_its_parameters() -> None:
    assert list(inspect.signature(blockpaca_nb.Simulator).parameters) == SIMULATOR_PARAMETERS


def test_public_names_are_not_shadowed_by_submodules() -> None:
    """Importing a submodule sets it as the package's attribute: a public function must not share its
    module's name (`from blockpaca_nb import replay` after `import blockpaca_nb.<module>`)."""
    import importlib
    import pkgutil
    import types

    for module in pkgutil.walk_packages(blockpaca_nb.__path__, "blockpaca_nb."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name in PUBLIC:
        assert not isinstance(getattr(blockpaca_nb, name), types.ModuleType), name
