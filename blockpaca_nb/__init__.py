"""blockpaca_nb: Jupyter-first interactive paper trading on Alpaca.

    from blockpaca_nb import Session
    s = Session(tickers=["AAPL", "TSLA"]).start()   # no keys: the embedded simulator

The public names are imported on first use (PEP 562), not with the package: every child process
of a session (execution workers, recorder, feed) imports this package on its way to its own module,
and must not pay for pandas, plotly and the session it never uses — that was most of a second of
CPU per child at start-up.
"""

import typing as _typing
from importlib import import_module as _import_module

from .errors import (
    AuthenticationError,
    BlockpacaError,
    BrokerError,
    ConfigurationError,
    DataWarning,
    OrderValidationError,
)

if _typing.TYPE_CHECKING:
    from .compat import run_trading
    from .parameter_sweep import sweep
    from .plots import plot_trade_log
    from .replayer import replay
    from .session import Session
    from .sim import Simulator
    from .tradelog import load_trade_log

__version__ = "0.2.0.dev0"
__all__ = [
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
_LAZY = {
    "Session": ".session",
    "Simulator": ".sim",
    "load_trade_log": ".tradelog",
    "plot_trade_log": ".plots",
    "replay": ".replayer",
    "run_trading": ".compat",
    "sweep": ".parameter_sweep",
}


def __getattr__(name: str) -> _typing.Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
