"""The simulator's built-in symbol universe and per-symbol synthetic market profiles.

``UNIVERSE`` is a fixed list of S&P-500-like US equity tickers plus the large ETFs the simulator
offers out of the box (Alpaca-style plain upper-case symbols; share classes written with a dot
are left out). ``profile`` turns any symbol plus a run seed into the parameters the price
generator needs. The best-known names start near their real price level and are, as on Alpaca,
always shortable and fractionable: a user who sees AAPL at $38 stops trusting the tool. Every
other symbol gets a drawn profile. It is derived from a keyed BLAKE2 digest rather than Python's salted ``hash()`` so
the same (symbol, seed) gives the same market in every process and on every machine.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigurationError

__all__ = ["ETFS", "EXCHANGES", "KNOWN_PRICES", "UNIVERSE", "Profile", "profile"]

EXCHANGES: tuple[str, ...] = ("NASDAQ", "NYSE", "ARCA")

# fmt: off
_STOCKS: tuple[str, ...] = (
    "A", "AAL", "AAPL", "ABBV", "ABNB", "ABT", "ACGL", "ACN", "ADBE", "ADI", "ADM", "ADP", "ADSK",
    "AEE", "AEP", "AES", "AFL", "AFRM", "AIG", "AIZ", "AJG", "AKAM", "ALB", "ALGN", "ALL", "ALLE",
    "AMAT", "AMCR", "AMD", "AME", "AMGN", "AMP", "AMT", "AMZN", "ANET", "ANSS", "AON", "AOS", "APA",
    "APD", "APH", "APP", "APTV", "ARE", "ARM", "ATO", "AVB", "AVGO", "AVY", "AWK", "AXON", "AXP",
    "AZO", "BA", "BAC", "BALL", "BAX", "BBWI", "BBY", "BDX", "BEN", "BG", "BIIB", "BIO", "BK",
    "BKNG", "BKR", "BLDR", "BLK", "BMY", "BR", "BRO", "BSX", "BWA", "BX", "BXP", "C", "CAG", "CAH",
    "CARR", "CAT", "CB", "CBOE", "CBRE", "CCI", "CCL", "CDNS", "CDW", "CE", "CEG", "CF", "CFG",
    "CHD", "CHRW", "CHTR", "CI", "CINF", "CL", "CLX", "CMA", "CMCSA", "CME", "CMG", "CMI", "CMS",
    "CNC", "CNP", "COF", "COIN", "COO", "COP", "COR", "COST", "CPAY", "CPB", "CPRT", "CPT", "CRL",
    "CRM", "CRWD", "CSCO", "CSGP", "CSX", "CTAS", "CTLT", "CTRA", "CTSH", "CTVA", "CVNA", "CVS",
    "CVX", "CZR", "D", "DAL", "DASH", "DAY", "DD", "DDOG", "DE", "DECK", "DELL", "DFS", "DG", "DGX",
    "DHI", "DHR", "DIS", "DKNG", "DLR", "DLTR", "DOC", "DOV", "DOW", "DPZ", "DRI", "DTE", "DUK",
    "DVA", "DVN", "DXCM", "EA", "EBAY", "ECL", "ED", "EFX", "EG", "EIX", "EL", "ELV", "EMN", "EMR",
    "ENPH", "EOG", "EPAM", "EQIX", "EQR", "EQT", "ES", "ESS", "ETN", "ETR", "ETSY", "EVRG", "EW",
    "EXC", "EXPD", "EXPE", "EXR", "F", "FANG", "FAST", "FCX", "FDS", "FDX", "FE", "FFIV", "FI",
    "FICO", "FIS", "FITB", "FMC", "FOX", "FOXA", "FRT", "FSLR", "FTNT", "FTV", "GD", "GDDY", "GE",
    "GEHC", "GEN", "GEV", "GILD", "GIS", "GL", "GLW", "GM", "GNRC", "GOOG", "GOOGL", "GPC", "GPN",
    "GRMN", "GS", "GWW", "HAL", "HAS", "HBAN", "HCA", "HD", "HES", "HIG", "HII", "HLT", "HOLX",
    "HON", "HOOD", "HPE", "HPQ", "HRL", "HSIC", "HST", "HSY", "HUBB", "HUBS", "HUM", "HWM", "IBM",
    "ICE", "IDXX", "IEX", "IFF", "INCY", "INTC", "INTU", "INVH", "IP", "IPG", "IQV", "IR", "IRM",
    "ISRG", "IT", "ITW", "IVZ", "J", "JBHT", "JBL", "JCI", "JKHY", "JNJ", "JNPR", "JPM", "K", "KDP",
    "KEY", "KEYS", "KHC", "KIM", "KKR", "KLAC", "KMB", "KMI", "KMX", "KO", "KR", "KVUE", "L",
    "LCID", "LDOS", "LEN", "LH", "LHX", "LIN", "LKQ", "LLY", "LMT", "LNT", "LOW", "LRCX", "LULU",
    "LUV", "LVS", "LW", "LYB", "LYFT", "LYV", "MA", "MAA", "MAR", "MAS", "MCD", "MCHP", "MCK",
    "MCO", "MDB", "MDLZ", "MDT", "MELI", "MET", "META", "MGM", "MHK", "MKC", "MKTX", "MLM", "MMC",
    "MMM", "MNST", "MO", "MOH", "MOS", "MPC", "MPWR", "MRK", "MRNA", "MRO", "MRVL", "MS", "MSCI",
    "MSFT", "MSI", "MSTR", "MTB", "MTCH", "MTD", "MU", "NCLH", "NDAQ", "NDSN", "NEE", "NEM", "NET",
    "NFLX", "NI", "NKE", "NOC", "NOW", "NRG", "NSC", "NTAP", "NTRS", "NUE", "NVDA", "NVR", "NWS",
    "NWSA", "NXPI", "O", "ODFL", "OKE", "OKTA", "OMC", "ON", "ORCL", "ORLY", "OTIS", "OXY", "PANW",
    "PARA", "PAYC", "PAYX", "PCAR", "PCG", "PEG", "PEP", "PFE", "PFG", "PG", "PGR", "PH", "PHM",
    "PINS", "PKG", "PLD", "PLTR", "PM", "PNC", "PNR", "PNW", "PODD", "POOL", "PPG", "PPL", "PRU",
    "PSA", "PSX", "PTC", "PWR", "PYPL", "QCOM", "QRVO", "RBLX", "RCL", "REG", "REGN", "RF", "RIVN",
    "RJF", "RL", "RMD", "ROK", "ROKU", "ROL", "ROP", "ROST", "RSG", "RTX", "RVTY", "SBAC", "SBUX",
    "SCHW", "SHOP", "SHW", "SJM", "SLB", "SMCI", "SNA", "SNAP", "SNOW", "SNPS", "SO", "SOFI",
    "SOLV", "SPG", "SPGI", "SPOT", "SRE", "STE", "STLD", "STT", "STX", "STZ", "SW", "SWK", "SWKS",
    "SYF", "SYK", "SYY", "T", "TAP", "TDG", "TDY", "TEAM", "TECH", "TEL", "TER", "TFC", "TFX",
    "TGT", "TJX", "TMO", "TMUS", "TPR", "TRGP", "TRMB", "TROW", "TRV", "TSCO", "TSLA", "TSN", "TT",
    "TTD", "TTWO", "TWLO", "TXN", "TXT", "TYL", "UAL", "UBER", "UDR", "UHS", "ULTA", "UNH", "UNP",
    "UPS", "URI", "USB", "V", "VICI", "VLO", "VLTO", "VMC", "VRSK", "VRSN", "VRT", "VRTX", "VST",
    "VTR", "VTRS", "VZ", "WAB", "WAT", "WBA", "WBD", "WDAY", "WDC", "WEC", "WELL", "WFC", "WM",
    "WMB", "WMT", "WRB", "WST", "WTW", "WY", "WYNN", "XEL", "XOM", "XYL", "YUM", "ZBH", "ZBRA",
    "ZS", "ZTS",
)
# the large ETFs: the index trackers and the eleven sector SPDRs
_LARGE_ETFS: tuple[str, ...] = (
    "SPY", "QQQ", "IWM", "DIA", "XLF", "XLK", "XLE", "XLV", "XLI", "XLY", "XLP", "XLU", "XLB",
    "XLRE", "XLC",
)
UNIVERSE: tuple[str, ...] = tuple(sorted({*_STOCKS, *_LARGE_ETFS}))
_UNIVERSE_SET: frozenset[str] = frozenset(UNIVERSE)


def _close_to(ticker: str) -> list[str]:
    """Up to three listed symbols like ``ticker``, those of its length first (a typo swaps letters)."""
    close = difflib.get_close_matches(ticker, UNIVERSE, n=8)
    return sorted(close, key=lambda symbol: len(symbol) != len(ticker))[:3]


def check_in_universe(tickers: Sequence[str], anyway: str) -> None:
    """Refuse tickers the simulator does not list (a typo: "APPL"), as Alpaca would refuse them,
    rather than invent prices for them; ``anyway`` says how to simulate a made-up symbol on purpose."""
    unknown = [ticker for ticker in tickers if ticker not in _UNIVERSE_SET and ticker not in ETFS]
    if not unknown:
        return
    said = [f"{ticker}: {' or '.join(close)}" for ticker in unknown if (close := _close_to(ticker))]
    meant = f"; close ones: {'; '.join(said)}" if said else ""
    raise ConfigurationError(
        f"tickers {unknown} are not in the simulator's universe ({len(UNIVERSE)} U.S. stocks and ETFs,"
        f" blockpaca_nb.sim.universe.UNIVERSE, and the ETFs of its ETFS){meant}. {anyway}"
    )

# Universe members listed on NASDAQ; every other universe member is treated as NYSE-listed.
_NASDAQ_LISTED: frozenset[str] = frozenset(
    {
        "AAL", "AAPL", "ABNB", "ACGL", "ADBE", "ADI", "ADP", "ADSK", "AEP", "AFRM", "AKAM", "ALGN",
        "AMAT", "AMD", "AMGN", "AMZN", "ANSS", "APA", "APP", "ARM", "AVGO", "AXON", "BIIB", "BKNG",
        "BKR", "CDNS", "CDW", "CEG", "CHRW", "CHTR", "CINF", "CMCSA", "CME", "COIN", "COST", "CPRT",
        "CRWD", "CSCO", "CSGP", "CSX", "CTAS", "CTSH", "DASH", "DDOG", "DKNG", "DLTR", "DXCM", "EA",
        "EBAY", "ENPH", "EQIX", "ETSY", "EXC", "EXPD", "EXPE", "FANG", "FAST", "FFIV", "FITB", "FOX",
        "FOXA", "FSLR", "FTNT", "GEHC", "GEN", "GILD", "GOOG", "GOOGL", "HAS", "HBAN", "HOLX", "HON",
        "HOOD", "HSIC", "IDXX", "INCY", "INTC", "INTU", "ISRG", "JBHT", "JKHY", "KDP", "KHC", "KLAC",
        "LCID", "LIN", "LKQ", "LNT", "LRCX", "LULU", "LYFT", "MAR", "MCHP", "MDB", "MDLZ", "MELI",
        "META", "MKTX", "MNST", "MPWR", "MRNA", "MRVL", "MSFT", "MSTR", "MU", "NDAQ", "NFLX", "NTAP",
        "NTRS", "NVDA", "NWS", "NWSA", "NXPI", "ODFL", "OKTA", "ON", "ORLY", "PANW", "PAYX", "PCAR",
        "PEP", "PLTR", "PODD", "POOL", "PTC", "PYPL", "QCOM", "QRVO", "REGN", "RIVN", "ROKU", "ROP",
        "ROST", "SBAC", "SBUX", "SHOP", "SMCI", "SNPS", "SOFI", "STX", "SWKS", "TEAM", "TECH", "TER",
        "TMUS", "TRMB", "TROW", "TSCO", "TSLA", "TTD", "TTWO", "TXN", "UAL", "ULTA", "VRSK", "VRSN",
        "VRTX", "WBA", "WBD", "WDAY", "WDC", "XEL", "ZBRA", "ZS",
    }
)

# Well-known exchange-traded funds that trade on NYSE Arca, for user-given ETF symbols.
_ARCA_LISTED: frozenset[str] = frozenset(
    {
        "DIA", "EEM", "EFA", "GLD", "HYG", "IWM", "LQD", "SLV", "SPY", "TLT", "USO", "VOO", "VTI",
        "XLB", "XLC", "XLE", "XLF", "XLI", "XLK", "XLP", "XLRE", "XLU", "XLV", "XLY",
    }
)
_NASDAQ_FUNDS: frozenset[str] = frozenset({"QQQ", "TQQQ", "SQQQ"})

# Price levels of the best-known names, roughly as they traded in mid-2025 (the date this table
# describes; a run's start price lies within ±5 % of it, drawn from the seed).
KNOWN_PRICES: dict[str, float] = {
    "AAPL": 210.0, "MSFT": 500.0, "NVDA": 170.0, "AMZN": 225.0, "GOOGL": 190.0, "GOOG": 192.0,
    "META": 720.0, "TSLA": 320.0, "AVGO": 290.0, "JPM": 290.0, "LLY": 780.0, "V": 350.0,
    "UNH": 300.0, "XOM": 110.0, "MA": 570.0, "COST": 990.0, "HD": 370.0, "PG": 155.0, "JNJ": 165.0,
    "WMT": 97.0, "NFLX": 1200.0, "ORCL": 240.0, "CRM": 260.0, "AMD": 160.0, "ABBV": 190.0,
    "KO": 70.0, "PEP": 135.0, "BAC": 47.0, "CVX": 150.0, "MRK": 80.0, "ADBE": 380.0, "CSCO": 68.0,
    "TMO": 420.0, "MCD": 300.0, "INTC": 22.0, "DIS": 120.0, "IBM": 270.0, "QCOM": 155.0,
    "PLTR": 150.0,
    "SPY": 630.0, "QQQ": 560.0, "IWM": 220.0, "DIA": 440.0, "XLF": 52.0, "XLK": 260.0,
    "XLE": 88.0, "XLV": 135.0, "XLI": 150.0, "XLY": 225.0, "XLP": 81.0, "XLU": 83.0, "XLB": 90.0,
    "XLRE": 42.0, "XLC": 108.0,
}
ETFS: frozenset[str] = _ARCA_LISTED | _NASDAQ_FUNDS

_NAME_SUFFIXES: tuple[str, ...] = (
    "Inc.", "Corp.", "Holdings", "Group", "Co.", "Technologies", "Industries", "Systems",
)
# fmt: on

_PRICE_MIN, _PRICE_MAX = 10.0, 600.0
_VOL_MIN, _VOL_MAX = 0.01, 0.035
_SPREAD_MIN, _SPREAD_MAX = 1.0, 8.0
_SHORTABLE_SHARE = 0.92  # Most Alpaca equities are easy to borrow.
_FRACTIONABLE_SHARE = 0.90  # Most, but not all, Alpaca equities support fractional orders.
_UNIT_DRAWS = 5  # price, vol, spread, shortable, fractionable
_KNOWN_PRICE_JITTER = 0.05  # a known name starts within ±5 % of its table level
_ETF_VOL_MAX = 0.015  # broad funds move less than single stocks
_ETF_SPREAD_MAX = 1.5  # ... and trade at tighter spreads (bps)


@dataclass(frozen=True)
class Profile:
    """Synthetic market parameters for one symbol in one simulator run."""

    symbol: str
    name: str
    exchange: str
    start_price: float
    daily_vol: float
    spread_bps: float
    shortable: bool
    fractionable: bool


def _unit_draws(key: str, count: int) -> list[float]:
    """``count`` reproducible uniforms in [0, 1) derived from ``key`` via BLAKE2b.

    Each uniform uses 53 bits of one 8-byte slice of the digest, exactly filling a float's
    mantissa so every value is representable and strictly below 1.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8 * count).digest()
    words = (int.from_bytes(digest[8 * i : 8 * i + 8], "big") for i in range(count))
    return [(w >> 11) / float(1 << 53) for w in words]


def _log_uniform(u: float, low: float, high: float) -> float:
    """Map a uniform ``u`` in [0, 1) to a log-uniform value in [low, high)."""
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _exchange_for(symbol: str) -> str:
    """The listing venue: real for known names, a stable (seed-independent) pick otherwise."""
    if symbol in _NASDAQ_LISTED or symbol in _NASDAQ_FUNDS:
        return "NASDAQ"
    if symbol in _ARCA_LISTED:
        return "ARCA"
    if symbol in _UNIVERSE_SET:
        return "NYSE"
    (u,) = _unit_draws(f"exchange:{symbol}", 1)
    return "NASDAQ" if u < 0.45 else "NYSE" if u < 0.9 else "ARCA"


def _name_for(symbol: str) -> str:
    """A short company-ish display name that stays the same across seeds."""
    if symbol in ETFS:
        return f"{symbol} ETF"
    (u,) = _unit_draws(f"name:{symbol}", 1)
    return f"{symbol} {_NAME_SUFFIXES[int(u * len(_NAME_SUFFIXES))]}"


def _normalize(symbol: str) -> str:
    """Upper-case and trim a user-given symbol so ``aapl`` and ``AAPL`` share one profile."""
    cleaned = symbol.strip().upper()
    if not cleaned:
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    return cleaned


@lru_cache(maxsize=4096)
def profile(symbol: str, seed: int) -> Profile:
    """The deterministic market profile of ``symbol`` for a simulator run seeded with ``seed``.

    Works for any symbol, not only ``UNIVERSE`` members, because the simulator accepts
    user-given tickers. Prices, volatility, spread and borrow/fractional flags change with
    the seed; the name and exchange are properties of the symbol alone.
    """
    sym = _normalize(symbol)
    u_price, u_vol, u_spread, u_short, u_frac = _unit_draws(f"{seed}:{sym}", _UNIT_DRAWS)
    known = sym in KNOWN_PRICES
    if known:
        price = round(KNOWN_PRICES[sym] * math.exp(_KNOWN_PRICE_JITTER * (2 * u_price - 1)), 2)
    else:
        price = min(max(round(_log_uniform(u_price, _PRICE_MIN, _PRICE_MAX), 2), _PRICE_MIN), _PRICE_MAX)
    vol_max, spread_max = (_ETF_VOL_MAX, _ETF_SPREAD_MAX) if sym in ETFS else (_VOL_MAX, _SPREAD_MAX)
    return Profile(
        symbol=sym,
        name=_name_for(sym),
        exchange=_exchange_for(sym),
        start_price=price,
        daily_vol=round(_VOL_MIN + u_vol * (vol_max - _VOL_MIN), 5),
        spread_bps=round(_SPREAD_MIN + u_spread * (spread_max - _SPREAD_MIN), 2),
        shortable=known or u_short < _SHORTABLE_SHARE,
        fractionable=known or u_frac < _FRACTIONABLE_SHARE,
    )
