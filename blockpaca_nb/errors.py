"""The exceptions blockpaca_nb raises: one small, named class per kind of trouble.

Catch :class:`BlockpacaError` to catch everything the toolkit raises on purpose. The
classes that describe a bad value also derive from :class:`ValueError`, so code written
against plain Python conventions keeps working.

Every exception here can be pickled: they travel from the execution workers and the
recorder back to the kernel through multiprocessing queues. No message here ever quotes a
registered secret: values and broker texts pass through :mod:`blockpaca_nb.scrub` first.
"""

from __future__ import annotations

from .scrub import scrub_text

_REPR_LIMIT = 80


def show_value(value: object) -> str:
    """Return a short ``repr`` of ``value`` for an error message (secrets blanked, long ones cut)."""
    text = scrub_text(repr(value))
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 1] + "…"
    return text


class BlockpacaError(Exception):
    """Base class of every exception blockpaca_nb raises on purpose."""


class ConfigurationError(BlockpacaError, ValueError):
    """A ``Session`` or ``run_trading`` argument is wrong (bad path, bad tickers, ...).

    The message names the argument, so the user knows which one to fix.
    """


class DataWarning(UserWarning):
    """Data given to ``replay`` that it can use, but not as given: a symbol with no rows on a day the
    others trade (its last price is carried through it), or starting later (the replay starts there)."""


class OrderValidationError(BlockpacaError, ValueError):
    """An order (or a block of orders) a strategy produced was rejected before sending.

    ``field`` is the order key at fault. Two pseudo-fields describe the containers:
    ``"order"`` (the element itself is not a dict) and ``"orders"`` (what the strategy
    returned is neither None, a dict nor a list of dicts). ``allowed`` describes the
    accepted values, ``value`` is what was given, ``index`` the position of the order in
    its block when known. The message reads, for example::

        order #2 field 'side': got 'hold'; allowed: 'buy', 'sell'

    ``problem`` replaces the default "got <value>" part when the value alone does not
    explain the trouble (a missing key, a key that is not used by this order type).
    ``given``: the order's ticker, side, action and order_type as the strategy wrote them (text
    only), so its row in the trade log says which order it was; ``strategy`` the strategy that
    returned it ("" for the session's own: an order from a cell, a custom end of session).
    """

    def __init__(
        self,
        field: str,
        value: object = None,
        allowed: str | None = None,
        index: int | None = None,
        problem: str | None = None,
    ) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.index = index
        self.problem = problem
        self.given: dict[str, str] = {}
        self.strategy = ""
        super().__init__(self._message())

    def _message(self) -> str:
        number = "" if self.index is None else f" #{self.index}"
        if self.field == "orders":
            where = "orders"
        elif self.field == "order":
            where = f"order{number}"
        else:
            where = f"order{number} field {self.field!r}"
        what = self.problem if self.problem is not None else f"got {show_value(self.value)}"
        tail = "" if self.allowed is None else f"; allowed: {self.allowed}"
        return f"{where}: {what}{tail}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.value, self.allowed, self.index, self.problem), {"given": self.given})


class BrokerError(BlockpacaError):
    """The broker (Alpaca or the simulator) answered a request with an error.

    ``status`` is the HTTP status, ``code`` Alpaca's numeric error code, ``message`` the
    broker's own explanation. Nothing else from the request is kept: headers carry the
    API keys, and secrets must never reach an exception.
    """

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        self.message = scrub_text(message)  # a server may quote the request back
        self.status = status
        self.code = code
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else "", self._code_text()]
        prefix = " ".join(part for part in parts if part)
        return f"{prefix}: {self.message}" if prefix else self.message

    def _code_text(self) -> str:
        return f"(code {self.code})" if self.code is not None else ""

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.status, self.code))


class AuthenticationError(BrokerError):
    """The broker refused the API keys (HTTP 401/403): wrong, revoked or for another endpoint."""


class ScrubbedError(BlockpacaError):
    """An exception whose text quoted a secret, replaced by :func:`blockpaca_nb.scrub.scrub_error`.

    ``kind`` is the original class name; the message is the original one with the secret
    blanked. The original (its request, headers, chain) is dropped on purpose.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.kind, str(self)))
