"""The embedded Alpaca-compatible simulator: broker, market and both streams on 127.0.0.1."""

from .process import Simulator

__all__ = ["Simulator"]
