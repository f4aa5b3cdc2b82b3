"""The embedded Alpaca-compatible simulator: broker, market and both streams on 127.0.0.1.

`Simulator` (the process and its HTTP server) is imported on first use (PEP 562): replay runs the
broker's rules in-process and need not load the server's libraries (aiohttp: a third of a second).
"""

import typing as _typing

if _typing.TYPE_CHECKING:
    from .process import Simulator

__all__ = ["Simulator"]


def __getattr__(name: str) -> _typing.Any:
    if name != "Simulator":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .process import Simulator

    globals()[name] = Simulator
    return Simulator


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
