"""Every REST call the toolkit makes outside the workers, with the workers' discipline.

The kernel (account, positions, clock, assets, bars, cancels, liquidation) and the recorder (its
catch-up after a reconnect) use alpaca-py's clients through :class:`BrokerCalls`: each attempt takes a
slot from the shared rate limiter, requests time out (alpaca-py sets no timeout), failures follow the
one retry rule of :mod:`.retry`, and errors carry the broker's reason but never the request (whose
headers hold the secret).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from requests.adapters import HTTPAdapter

from . import retry
from .errors import AuthenticationError, BrokerError
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from alpaca.trading.client import TradingClient

    from .broker import Connection

T = TypeVar("T")
REST_TIMEOUT_S = (3.05, 10.0)
"""Connect and read timeouts of every REST call made through alpaca-py (which sets none)."""


@dataclass(frozen=True)
class _Problem:
    """What went wrong with one REST call: the error to raise, and whether to try again."""

    error: Exception
    kind: str = "final"  # the retry verdict: unanswered, transient, throttled or final
    reset: float | None = None  # a 429's X-RateLimit-Reset (epoch seconds)


class BrokerCalls:
    """Every REST call the toolkit makes outside the workers (account, positions, clock, assets,
    the recorder's catch-up): alpaca-py's TradingClient with the workers' discipline.

    Each attempt takes a slot from the shared limiter; requests time out (``timeout``: connect and
    read seconds); timeouts, resets and 5xx are retried up to ``max_retries`` times with backoff, and
    a 429 pauses the limiter until the broker's reset and is retried without using up a retry;
    ``max_unanswered`` caps the retries of calls that got no answer at all (a check at start-up
    should not spend a minute on an unreachable endpoint). Anything else fails at once:
    :class:`AuthenticationError` for refused keys, :class:`BrokerError` with the broker's reason
    otherwise — never carrying a request or its headers (the secret). ``make`` builds the alpaca-py
    client from the connection (default: the TradingClient).
    """

    def __init__(
        self,
        connection: Connection,
        limiter: RateLimiter | None = None,
        *,
        max_retries: int = 3,
        timeout: tuple[float, float] = REST_TIMEOUT_S,
        max_unanswered: int | None = None,
        make: Callable[[Connection], Any] | None = None,
    ) -> None:
        self.connection = connection
        self.limiter = limiter
        self.max_retries = max_retries
        self.max_unanswered = max_retries if max_unanswered is None else max_unanswered
        self.timeout = timeout
        self._make = make
        self._client: TradingClient | None = None

    def __call__(self, call: Callable[[TradingClient], T]) -> T:
        attempts = retry.Attempts(self.max_retries, self.max_unanswered)
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            try:
                return call(self.client())
            except Exception as error:  # judged below: retried, translated, or a bug re-raised
                problem = _judge(error, self.connection.endpoints.trading, self.timeout)
            if problem.kind == "final" or not attempts.failed(problem.kind):
                raise problem.error from None
            self._wait(problem, attempts)

    def _wait(self, problem: _Problem, attempts: retry.Attempts) -> None:
        if problem.reset is not None and self.limiter is not None:
            self.limiter.pause_until(problem.reset)  # the next acquire waits for the reset
            return
        time.sleep(attempts.pause())

    def client(self) -> TradingClient:
        """The TradingClient: alpaca-py's own retries off (we retry), every request with a timeout."""
        if self._client is None:
            client = self._make(self.connection) if self._make else self.connection.trading_client()
            client._retry = 0  # alpaca-py would sleep 3 s per 429, uncounted and regardless of the reset
            adapter = _TimeoutAdapter(self.timeout)
            client._session.mount("http://", adapter)
            client._session.mount("https://", adapter)
            self._client = client
        return self._client

    def __repr__(self) -> str:
        return f"<BrokerCalls {self.connection.mode} {self.connection.endpoints.trading}>"


class _TimeoutAdapter(HTTPAdapter):
    """requests' adapter with a default timeout (requests has none)."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        return super().send(request, **kwargs)


def _judge(error: Exception, endpoint: str, timeout: tuple[float, float]) -> _Problem:
    """Sort a failed REST call: permanent (raise), transient (retry) or throttled (wait, retry)."""
    import requests
    from alpaca.common.exceptions import APIError

    if isinstance(error, APIError):
        return _judge_answer(error)
    if isinstance(error, requests.Timeout):
        text = f"no answer from the broker at {endpoint} within {timeout[1]:g} s"
        return _Problem(BrokerError(text), "unanswered")
    if isinstance(error, requests.ConnectionError):
        text = f"cannot reach the broker at {endpoint}: {_root_cause(error)}"
        return _Problem(BrokerError(text), "unanswered")
    raise error


def _judge_answer(error: Any) -> _Problem:
    """An HTTP error answer from alpaca-py (APIError), without its request (which holds the keys)."""
    status = error.status_code
    try:
        message, code = str(error.message), error.code
    except (ValueError, KeyError, TypeError):
        message, code = str(error)[:200] or f"HTTP {status}", None
    if _refused_keys(status, code):
        text = f"the broker refused the API keys ({message}); check api_key/secret_key or APCA_API_* variables"
        return _Problem(AuthenticationError(text, status, code))
    if status == retry.THROTTLED_STATUS:
        reset = error.response.headers.get("X-RateLimit-Reset") if error.response is not None else None
        return _Problem(BrokerError(message, status, code), "throttled", retry.reset_time(reset))
    return _Problem(BrokerError(message, status, code), retry.verdict(status))


def _refused_keys(status: int | None, code: object) -> bool:
    """401, or a 403 without a business code: a 403 with ``code`` 403xxxxx is a refusal of the
    request itself (insufficient qty, buying power, wash trade), not of the keys."""
    return status == 401 or (status == 403 and not (isinstance(code, int) and code // 100_000 == 403))


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a requests error, short ("Connection refused", not a pool dump)."""
    reason: object = error.args[0] if error.args else error
    reason = getattr(reason, "reason", reason)
    text = str(reason)
    return text.split("] ", 1)[-1][:160] if text else type(error).__name__
