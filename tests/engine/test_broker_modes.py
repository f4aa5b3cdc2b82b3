"""Where a session trades: sim without keys, paper with keys, live only by name — decided without network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blockpaca_nb.broker import ALPACA_ENDPOINTS, Credentials, Endpoints, resolve
from blockpaca_nb.errors import ConfigurationError

LIVE_URLS = ALPACA_ENDPOINTS["live"]


@pytest.fixture(autouse=True)
def _no_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)


def test_no_keys_means_the_simulator() -> None:
    target = resolve(None, None, None, None, None, ["AAPL"])
    assert target.mode == "sim" and target.simulator is not None and target.connection is None


def test_keys_mean_paper_and_paper_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PK123")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s3cret")
    target = resolve(None, None, None, None, None, ["AAPL"])
    assert target.mode == "paper"
    assert target.connection is not None and target.connection.endpoints == Endpoints(**ALPACA_ENDPOINTS["paper"])


def test_live_only_by_name() -> None:
    target = resolve("live", "AK1", "s3cret", None, None, ["AAPL"])
    assert target.mode == "live" and target.connection is not None
    assert target.connection.endpoints == Endpoints(**LIVE_URLS)


def test_live_urls_without_live_mode_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="mode='live' by name"):
        resolve(None, "AK1", "s3cret", None, LIVE_URLS, ["AAPL"])
    with pytest.raises(ConfigurationError, match="mode='live' by name"):
        resolve("paper", "AK1", "s3cret", None, LIVE_URLS, ["AAPL"])


def test_endpoint_mistakes_are_named() -> None:
    with pytest.raises(ConfigurationError, match="data_stream"):
        resolve("paper", "k", "s", None, {"trading": "http://x", "data": "http://x", "trading_stream": "ws://x"}, ["A"])
    bad = {**ALPACA_ENDPOINTS["paper"], "trading": "https://paper-api.alpaca.markets/v2"}
    with pytest.raises(ConfigurationError, match="must not end in /v2"):
        resolve("paper", "k", "s", None, bad, ["AAPL"])


def test_credentials_never_show_the_secret() -> None:
    creds = Credentials("PKABCDEF", "very-secret-value")
    assert "very-secret-value" not in repr(creds) and "very-secret-value" not in str(creds)
    assert creds.headers()["APCA-API-SECRET-KEY"] == "very-secret-value"


# -- half keys: a ConfigurationError naming the missing half, never the simulator ------------------


@pytest.mark.parametrize(
    ("api_key", "secret_key", "missing"),
    [
        ("AK123", None, "secret_key"),
        (None, "s3cret-s3cret", "api_key"),
        ("AK123", "  \n", "secret_key"),
        ("", "x" * 9, "api_key"),
    ],
)
@pytest.mark.parametrize("mode", [None, "paper", "live"])
def test_half_keys_name_the_missing_half(
    api_key: str | None, secret_key: str | None, missing: str, mode: str | None
) -> None:
    variable = {"api_key": "APCA_API_KEY_ID", "secret_key": "APCA_API_SECRET_KEY"}[missing]
    with pytest.raises(ConfigurationError, match=f"^{missing} is missing: .*{variable}") as caught:
        resolve(mode, api_key, secret_key, None, None, ["AAPL"])
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("variable", ["APCA_API_KEY_ID", "APCA_API_SECRET_KEY"])
def test_half_keys_in_the_environment_are_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "value-from-the-environment")
    with pytest.raises(ConfigurationError, match="is missing"):
        resolve(None, None, None, None, None, ["AAPL"])
    monkeypatch.setenv(variable, "   ")  # blank counts as unset: back to no keys at all
    assert resolve(None, None, None, None, None, ["AAPL"]).mode == "sim"


def test_a_key_argument_pairs_with_the_other_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret-from-env\n")
    target = resolve(None, "AK123", None, None, None, ["AAPL"])
    assert target.mode == "paper" and target.connection is not None
    assert target.connection.credentials.secret_key == "secret-from-env"


def test_keys_are_stripped_of_surrounding_whitespace() -> None:
    target = resolve("paper", "  AK123\n", "secret-read-from-a-file\n", None, None, ["AAPL"])
    assert target.connection is not None
    assert target.connection.credentials.headers() == {
        "APCA-API-KEY-ID": "AK123",
        "APCA-API-SECRET-KEY": "secret-read-from-a-file",
    }
    assert Credentials(" AK1 ", "\tsecret-secret\r\n").secret_key == "secret-secret"


def test_a_key_no_header_can_carry_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError, match=r"secret_key .* HTTP header") as caught:
        resolve("paper", "AK123", "secret-with\nline-break", None, None, ["AAPL"])
    assert "line-break" not in str(caught.value) and "secret-with" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="api_key must be a string"):
        resolve("paper", 12345, "secret-secret", None, None, ["AAPL"])  # type: ignore[arg-type]


def test_mode_sim_ignores_keys() -> None:
    assert resolve("sim", "AK123", None, None, None, ["AAPL"]).mode == "sim"


def test_a_session_with_half_keys_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from blockpaca_nb import Session

    with pytest.raises(ConfigurationError, match="secret_key is missing"):
        Session(tickers=["AAPL"], api_key="AK123", trade_log_path=tmp_path)
    with pytest.raises(ConfigurationError, match="api_key is missing"):
        Session(tickers=["AAPL"], secret_key="only-the-secret", trade_log_path=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing may be created for a refused session"


def _run_trading(tmp_path: Path, **overrides: Any) -> Any:
    from blockpaca_nb import run_trading

    options: dict[str, Any] = {
        "strategy_callable": lambda ctx: None,
        "trade_log_name": "refused",
        "trade_log_path": str(tmp_path),
        "api_key": None,
        "secret_key": None,
        "tickers": ["AAPL"],
        "frequency": 1,
        "run_seconds": 2,
        "warm_up_period": 0,
    }
    return run_trading(**(options | overrides))


def test_run_trading_with_alpaca_needs_both_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"use_alpaca=True needs api_key and secret_key .* both are missing"):
        _run_trading(tmp_path, use_alpaca=True)
    with pytest.raises(ConfigurationError, match="secret_key is missing"):
        _run_trading(tmp_path, use_alpaca=True, api_key="AK123")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret-from-env")
    with pytest.raises(ConfigurationError, match=r"api_key is missing: .*APCA_API_KEY_ID"):
        _run_trading(tmp_path)  # use_alpaca=True is blockpaca's default
    with pytest.raises(ConfigurationError, match="simulator= is only used with use_alpaca=False"):
        _run_trading(tmp_path, api_key="AK123", simulator={"symbols": ["AAPL"]})
    assert not list(tmp_path.iterdir()), "nothing may run or be logged"
