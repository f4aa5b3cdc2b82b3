"""The `blockpaca-nb` command: `sim` serves the embedded simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .errors import ConfigurationError
from .sim import Simulator


def _add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--symbols",
        default="AAPL,MSFT,TSLA,NVDA,SPY",
        help="comma-separated tickers, or 'universe' for the built-in 500+ symbols",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the price process")
    parser.add_argument("--quotes-per-second", type=float, default=2.0, help="quotes per symbol per second")
    parser.add_argument("--market-hours", choices=("always", "nyse"), default="always")
    parser.add_argument("--starting-cash", type=float, default=100_000.0)
    faults = parser.add_argument_group("faults")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every REST answer")
    faults.add_argument("--error-rate", type=float, default=0.0, help="share of REST answers that are 500s")
    faults.add_argument(
        "--timeout-after-accept-rate",
        type=float,
        default=0.0,
        help="share of orders accepted whose answer is dropped",
    )
    faults.add_argument("--rate-limit-per-min", type=int, default=None, help="429 past this many requests")
    faults.add_argument("--ws-drop-every-s", type=float, default=None, help="close both websockets this often")


def _simulator(args: argparse.Namespace) -> Simulator:
    symbols = None if args.symbols.lower() == "universe" else args.symbols.split(",")
    return Simulator(
        symbols,
        seed=args.seed,
        port=args.port,
        quotes_per_second=args.quotes_per_second,
        market_hours=args.market_hours,
        starting_cash=args.starting_cash,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        timeout_after_accept_rate=args.timeout_after_accept_rate,
        rate_limit_per_min=args.rate_limit_per_min,
        ws_drop_every_s=args.ws_drop_every_s,
    )


def serve(args: argparse.Namespace) -> int:
    """Start the simulator, print how to reach it, and serve until interrupted."""
    sim = _simulator(args).start()
    shown = ", ".join(sim.symbols[:8]) + (f", … ({len(sim.symbols)} symbols)" if len(sim.symbols) > 8 else "")
    print(f"blockpaca_nb simulator serving on 127.0.0.1:{sim.port} (seed {sim.seed}; {shown})")
    for name, url in sim.urls.items():
        print(f"  {name:<15} {url}")
    print(f"  {'api_key':<15} {sim.api_key}")
    print(f"  {'secret_key':<15} {sim.secret_key}")
    print("Use them with alpaca-py, e.g. TradingClient(api_key, secret_key, url_override=<trading>).")
    print("Press Ctrl-C to stop.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            if not sim.running:
                print("the simulator process exited unexpectedly", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    print("simulator stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blockpaca-nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("sim", help="serve the embedded Alpaca-compatible simulator")
    _add_sim_arguments(sim)
    sim.set_defaults(run=serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigurationError as err:
        print(f"blockpaca-nb: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
