"""Tests for the built-in symbol universe and deterministic per-symbol profiles."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from blockpaca_nb.sim.universe import KNOWN_PRICES, UNIVERSE, Profile, profile


def test_universe_size_uniqueness_and_shape() -> None:
    assert len(UNIVERSE) >= 500
    assert len(set(UNIVERSE)) == len(UNIVERSE)
    assert list(UNIVERSE) == sorted(UNIVERSE)
    assert all(re.fullmatch(r"[A-Z]{1,5}", s) for s in UNIVERSE)
    assert {"AAPL", "MSFT", "NVDA", "JPM", "XOM"} <= set(UNIVERSE)


def test_profile_is_deterministic_for_same_seed() -> None:
    for symbol in ("AAPL", "XOM", "NOTREAL"):
        assert profile(symbol, 7) == profile(symbol, 7)


def test_different_seed_changes_most_start_prices() -> None:
    changed = sum(profile(s, 1).start_price != profile(s, 2).start_price for s in UNIVERSE)
    assert changed >= 0.95 * len(UNIVERSE)


def test_different_symbols_get_different_prices() -> None:
    prices = {profile(s, 0).start_price for s in UNIVERSE}
    assert len(prices) >= 0.9 * len(UNIVERSE)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**40])
def test_values_stay_within_ranges(seed: int) -> None:
    for symbol in UNIVERSE:
        p = profile(symbol, seed)
        if symbol in KNOWN_PRICES:  # near its table level, and tradable every way
            assert abs(p.start_price / KNOWN_PRICES[symbol] - 1) <= 0.052  # exp(0.05) - 1
            assert p.shortable and p.fractionable
        else:
            assert 10.0 <= p.start_price <= 600.0
        assert p.start_price == round(p.start_price, 2)
        assert 0.01 <= p.daily_vol <= 0.035
        assert 1.0 <= p.spread_bps <= 8.0
        assert p.exchange in {"NASDAQ", "NYSE", "ARCA"}
        assert p.symbol == symbol and symbol in p.name


def test_prices_spread_log_uniformly() -> None:
    """Roughly half the prices fall below the geometric midpoint sqrt(10 * 600) ≈ 77.5."""
    prices = [profile(s, 3).start_price for s in UNIVERSE]
    below = sum(p < 77.46 for p in prices) / len(prices)
    assert 0.4 < below < 0.6
    assert min(prices) < 20 and max(prices) > 300


def test_flags_true_for_most_but_not_all() -> None:
    profiles = [profile(s, 5) for s in UNIVERSE]
    shortable = sum(p.shortable for p in profiles) / len(profiles)
    fractionable = sum(p.fractionable for p in profiles) / len(profiles)
    assert 0.8 < shortable < 1.0
    assert 0.8 < fractionable < 1.0


def test_known_exchanges_and_seed_independent_identity() -> None:
    assert profile("AAPL", 1).exchange == "NASDAQ"
    assert profile("JPM", 1).exchange == "NYSE"
    assert profile("SPY", 1).exchange == "ARCA"
    assert profile("ZQXW", 1).name == profile("ZQXW", 99).name
    assert profile("ZQXW", 1).exchange == profile("ZQXW", 99).exchange


def test_any_symbol_works_and_is_normalized() -> None:
    p = profile(" tsla ", 3)
    assert isinstance(p, Profile)
    assert p == profile("TSLA", 3)
    assert profile("MADEUP", 3).symbol == "MADEUP"
    with pytest.raises(ValueError, match="symbol"):
        profile("  ", 3)


def test_profile_is_stable_across_processes() -> None:
    """Built-in hash() is salted per process; profiles must not depend on it."""
    code = "from blockpaca_nb.sim.universe import profile; print(repr(profile('AAPL', 11)))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert out == repr(profile("AAPL", 11))
