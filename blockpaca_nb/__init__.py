"""blockpaca_nb: Jupyter-first interactive paper trading on Alpaca.

    from blockpaca_nb import Session
    s = Session(tickers=["AAPL", "TSLA"]).start()   # no keys: the embedded simulator
"""

from .compat import run_trading
from .errors import (
    AuthenticationError,
    BlockpacaError,
    BrokerError,
    ConfigurationError,
    OrderValidationError,
)
from .plots import plot_trade_log
from .session import Session
from .sim import Simulator
from .tradelog import load_trade_log

__version__ = "0.2.0.dev0"
__all__ = [
    "AuthenticationError",
    "BlockpacaError",
    "BrokerError",
    "ConfigurationError",
    "OrderValidationError",
    "Session",
    "Simulator",
    "load_trade_log",
    "plot_trade_log",
    "run_trading",
]
