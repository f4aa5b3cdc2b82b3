"""Where orders go: the trading mode (sim, paper, live), the credentials and the endpoints.

Keys come from arguments or Alpaca's own variables `APCA_API_KEY_ID` / `APCA_API_SECRET_KEY`.
Without keys the embedded simulator is used; with keys, Alpaca paper; live only when `mode="live"`
is asked for by name. Half a key pair is a ConfigurationError naming the missing half, never a
quiet fallback to the simulator: a trader who meant Alpaca must not read a simulated trade log.
Keys are stripped (a secret read from a file ends with a newline, which `requests` refuses by
quoting the header, secret included). Every secret is registered with the scrubber
(:mod:`blockpaca_nb.scrub`) the moment it is read, and never appears in a repr, a log line or an
exception.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .scrub import remember_secret

if TYPE_CHECKING:
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.trading.client import TradingClient

    from .sim import Simulator

MODES = ("sim", "paper", "live")
KEY_VARIABLES = {"api_key": "APCA_API_KEY_ID", "secret_key": "APCA_API_SECRET_KEY"}  # Alpaca's names
FREE_PLAN_STREAM_SYMBOLS = 30  # Alpaca's free (IEX) data plan: quote/trade symbols per stream connection
ENDPOINT_KEYS = ("trading", "trading_stream", "data", "data_stream")
ALPACA_ENDPOINTS = {
    "paper": {
        "trading": "https://paper-api.alpaca.markets",
        "trading_stream": "wss://paper-api.alpaca.markets/stream",
        "data": "https://data.alpaca.markets",
        "data_stream": "wss://stream.data.alpaca.markets/v2/iex",
    },
    "live": {
        "trading": "https://api.alpaca.markets",
        "trading_stream": "wss://api.alpaca.markets/stream",
        "data": "https://data.alpaca.markets",
        "data_stream": "wss://stream.data.alpaca.markets/v2/iex",
    },
}


@dataclass(frozen=True)
class Credentials:
    """An API key pair. The secret is kept out of repr and str."""

    api_key: str
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        remember_secret(self.secret_key)
        object.__setattr__(self, "api_key", _checked_key("api_key", self.api_key))
        object.__setattr__(self, "secret_key", _checked_key("secret_key", self.secret_key))

    def __setstate__(self, state: dict[str, str]) -> None:
        """Unpickled in a child process: register the secret with that process's scrubber too."""
        remember_secret(state.get("secret_key"))
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key[:4]}…, secret_key=***)"

    __str__ = __repr__

    def headers(self) -> dict[str, str]:
        return {"APCA-API-KEY-ID": self.api_key, "APCA-API-SECRET-KEY": self.secret_key}


@dataclass(frozen=True)
class Endpoints:
    """The four URLs, each exactly what the matching alpaca-py client takes as `url_override`."""

    trading: str
    trading_stream: str
    data: str
    data_stream: str

    @classmethod
    def from_mapping(cls, urls: Mapping[str, str]) -> Endpoints:
        missing = [k for k in ENDPOINT_KEYS if not urls.get(k)]
        if missing:
            raise ConfigurationError(f"urls is missing {', '.join(missing)}; needed: {', '.join(ENDPOINT_KEYS)}")
        clean = {k: str(urls[k]).rstrip("/") for k in ENDPOINT_KEYS}
        for key in ("trading", "data"):
            if clean[key].endswith("/v2"):
                raise ConfigurationError(f"urls[{key!r}] must not end in /v2: alpaca-py appends it itself")
        return cls(**clean)


@dataclass(frozen=True)
class Connection:
    """Everything a process needs to talk to the broker: mode, endpoints and credentials."""

    mode: str
    endpoints: Endpoints
    credentials: Credentials

    def trading_client(self) -> TradingClient:
        from alpaca.trading.client import TradingClient

        return TradingClient(
            self.credentials.api_key,
            self.credentials.secret_key,
            paper=self.mode != "live",
            url_override=self.endpoints.trading,
        )

    def data_client(self) -> StockHistoricalDataClient:
        from alpaca.data.historical import StockHistoricalDataClient

        return StockHistoricalDataClient(
            self.credentials.api_key, self.credentials.secret_key, url_override=self.endpoints.data
        )


@dataclass(frozen=True)
class Target:
    """Where a session will trade, decided up front; `connect()` does the slow part later."""

    mode: str
    connection: Connection | None  # None in sim mode until the simulator serves
    simulator: Simulator | None = None
    own_simulator: bool = False  # made for the session (no keys, or simulator options), not passed in

    def connect(self) -> Connection:
        """The live connection; in sim mode this starts the simulator (blocking: call off the kernel)."""
        if self.connection is not None:
            return self.connection
        assert self.simulator is not None
        sim = self.simulator.start()
        remember_secret(sim.secret_key)
        return Connection("sim", Endpoints.from_mapping(sim.urls), Credentials(sim.api_key, sim.secret_key))


def resolve(
    mode: str | None,
    api_key: str | None,
    secret_key: str | None,
    simulator: Simulator | Mapping[str, Any] | None,
    urls: Mapping[str, str] | None,
    tickers: list[str],
) -> Target:
    """Pick the mode and endpoints from the arguments and the environment (no network)."""
    if mode != "sim":
        api_key, secret_key = read_keys(api_key, secret_key)
    if mode is None:
        mode = "paper" if (api_key and secret_key) or urls else "sim"
    if mode not in MODES:
        raise ConfigurationError(f"mode={mode!r} is not valid; allowed: None, 'sim', 'paper', 'live'")
    if mode == "sim":
        if urls:
            raise ConfigurationError("urls= cannot be combined with mode='sim'; pass simulator= instead")
        own = simulator is None or isinstance(simulator, Mapping)
        return Target("sim", None, _simulator(simulator, tickers), own_simulator=own)
    if simulator is not None:
        raise ConfigurationError(f"simulator= is only used with mode='sim' (mode is {mode!r})")
    if not (api_key and secret_key):
        given = "urls= (a broker's endpoints)" if urls and mode == "paper" else f"mode={mode!r}"
        raise ConfigurationError(
            f"{given} needs api_key and secret_key (or APCA_API_KEY_ID / APCA_API_SECRET_KEY);"
            " without keys use the simulator: leave urls out, or mode='sim'"
        )
    endpoints = Endpoints.from_mapping(urls) if urls else Endpoints(**ALPACA_ENDPOINTS[mode])
    if mode != "live" and _is_live(endpoints):
        raise ConfigurationError(
            f"urls point at Alpaca's live trading API but mode={mode!r}; live trading needs mode='live' by name"
        )
    return Target(mode, Connection(mode, endpoints, Credentials(api_key, secret_key)))


def read_keys(api_key: str | None, secret_key: str | None) -> tuple[str | None, str | None]:
    """The key pair from the arguments, else from Alpaca's variables: stripped, both or neither.

    Raises ConfigurationError naming the missing half when only one is found (an empty or
    all-blank value counts as missing), or naming a key that holds a character no HTTP header
    can carry. The secret is registered with the scrubber before anything can quote it.
    """
    key = _given_key("api_key", api_key)
    secret = _given_key("secret_key", secret_key)
    if bool(key) != bool(secret):
        raise ConfigurationError(half_keys_message(key is not None))
    return key, secret


def half_keys_message(has_api_key: bool) -> str:
    """Say which half of the key pair is missing and where it can come from."""
    present, missing = ("api_key", "secret_key") if has_api_key else ("secret_key", "api_key")
    return (
        f"{missing} is missing: {present} is set but {missing} is neither given nor in {KEY_VARIABLES[missing]}"
        f" (empty or blank counts as missing); pass both keys for Alpaca, or neither (and mode='sim')"
        " for the simulator"
    )


def _given_key(name: str, given: str | None) -> str | None:
    """One key from its argument, else its environment variable; None when neither holds one."""
    if given is not None and not isinstance(given, str):
        raise ConfigurationError(f"{name} must be a string or None; got {type(given).__name__}")
    value = given if given and given.strip() else os.environ.get(KEY_VARIABLES[name])
    if value is None or not value.strip():
        return None
    if name == "secret_key":
        remember_secret(value)
    return _checked_key(name, value)


def _checked_key(name: str, value: str) -> str:
    """``value`` stripped; a ConfigurationError (never quoting it) if an HTTP header cannot carry it."""
    stripped = value.strip()
    if not stripped or not (stripped.isascii() and stripped.isprintable()):
        raise ConfigurationError(
            f"{name} is empty or holds a character an HTTP header cannot carry (a control character or"
            " non-ASCII); check how it was read"
        )
    return stripped


def _is_live(endpoints: Endpoints) -> bool:
    """Real money: Alpaca's live trading host (paper is paper-api.alpaca.markets)."""
    live_host = urlsplit(ALPACA_ENDPOINTS["live"]["trading"]).hostname
    return any(urlsplit(url).hostname == live_host for url in (endpoints.trading, endpoints.trading_stream))


def _check_simulator_options(options: Mapping[str, Any]) -> None:
    """A dict of Simulator options names only the options Simulator takes (a misspelt one raised
    Simulator's TypeError)."""
    import inspect

    from .sim import Simulator

    known = [name for name in inspect.signature(Simulator.__init__).parameters if name != "self"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigurationError(f"simulator options {unknown} are not valid; allowed: {', '.join(known)}")


def _simulator(simulator: Simulator | Mapping[str, Any] | None, tickers: list[str]) -> Simulator:
    from .sim import Simulator
    from .sim.universe import check_in_universe

    if simulator is None or isinstance(simulator, Mapping):
        options = dict(simulator or {})
        if "symbols" not in options:
            check_in_universe(tickers, f"To simulate a made-up symbol, name it: simulator={{'symbols': {tickers!r}}}.")
            options["symbols"] = tickers
        if len(tickers) > FREE_PLAN_STREAM_SYMBOLS:  # the free plan's stream would refuse them all
            options.setdefault("data_plan", "sip")
        _check_simulator_options(options)
        sim = Simulator(**options)
    elif isinstance(simulator, Simulator):
        sim = simulator
    else:
        raise ConfigurationError(
            f"simulator={type(simulator).__name__} is not valid;"
            " allowed: a Simulator, a dict of Simulator options, or None"
        )
    missing = [t for t in tickers if t not in sim.symbols]
    if missing:
        raise ConfigurationError(f"tickers {missing} are not simulated; the simulator has {list(sim.symbols)[:20]}")
    return sim
