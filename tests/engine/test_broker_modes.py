"""Where a session trades: sim without keys, paper with keys, live only by name — decided without network."""

from __future__ import annotations

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
