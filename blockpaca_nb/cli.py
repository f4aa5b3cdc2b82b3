"""The `blockpaca-nb` command.

    blockpaca-nb sim [--port 0 --symbols AAPL,MSFT --seed 7 fault flags]   serve the simulator until Ctrl-C
    blockpaca-nb demo [--port 0] [--dry-run]  JupyterLab on the quickstart notebook (the main job)
    blockpaca-nb demo --headless --seconds 30  the quickstart strategy in the terminal, with the live display

The demo must work where newcomers run it: as root in a container (JupyterLab refuses root unless told
--allow-root), without a browser (the printed URL opens the notebook itself, token included), and
offline (the headless plot embeds plotly.js instead of loading it from a CDN).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

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
    rules = parser.add_argument_group("Alpaca's rules (see docs/simulator-rules.md)")
    rules.add_argument(
        "--profile",
        choices=("paper", "frictionless"),
        default="paper",
        help="paper: Alpaca paper's broker rules (default); frictionless: the instant broker",
    )
    rules.add_argument("--cancel-latency-ms", type=float, default=None, help="cancels/replaces take this long")
    rules.add_argument("--partial-fill-rate", type=float, default=None, help="share of orders partly filled first")
    rules.add_argument(
        "--data-plan", choices=("basic", "sip"), default="basic", help="basic: the free plan's limits; sip: none"
    )
    rules.add_argument("--clock-start", default=None, help="where the clock starts, e.g. 2026-12-04T15:59:00-05:00")
    rules.add_argument(
        "--regulatory-fees", action="store_true", help="charge a live account's fees at each fill (paper: none)"
    )
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
        profile=args.profile,
        cancel_latency_ms=args.cancel_latency_ms,
        partial_fill_rate=args.partial_fill_rate,
        data_plan=args.data_plan,
        clock_start=args.clock_start,
        regulatory_fees=args.regulatory_fees,
    )


def serve(args: argparse.Namespace) -> int:
    """Start the simulator, print how to reach it, and serve until interrupted."""
    done = threading.Event()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it even where the shell ignored SIGINT
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sim = _simulator(args).start()
    try:
        _print_urls(sim)
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


def _print_urls(sim: Simulator) -> None:
    shown = ", ".join(sim.symbols[:8]) + (f", … ({len(sim.symbols)} symbols)" if len(sim.symbols) > 8 else "")
    print(f"blockpaca_nb simulator serving on 127.0.0.1:{sim.port} (seed {sim.seed}; {shown})")
    for name, url in sim.urls.items():
        print(f"  {name:<15} {url}")
    print(f"  {'api_key':<15} {sim.api_key}")
    print(f"  {'secret_key':<15} {sim.secret_key}")
    print("Use them with alpaca-py, e.g. TradingClient(api_key, secret_key, url_override=<trading>).")
    print("Press Ctrl-C to stop.", flush=True)


def demo(args: argparse.Namespace) -> int:
    """The quickstart: in JupyterLab, or headless in the terminal with the live display."""
    if not args.headless:
        return _open_lab(args)
    from .compat import _live_display
    from .examples import momentum
    from .session import Session

    session = Session(
        tickers=args.tickers.split(","),
        frequency=args.frequency,
        run_seconds=args.seconds,
        warm_up_period=2,
        eos_behavior="liquidate",
        trade_log_name="demo",
        trade_log_path=args.out,
        simulator={"seed": args.seed, "quotes_per_second": 5},
    )
    session.strategy(momentum)
    session.start()
    try:
        _live_display(session)
        session.wait()
    finally:
        session.stop(wait=True)
    if session.status == "failed":
        print(f"the session failed: {list(session.errors)[-1]}", file=sys.stderr)
        return 1
    figure = Path(args.out) / "demo.html"
    session.plot().write_html(figure, include_plotlyjs=True)  # embedded: the file opens offline
    fills = int((session.trade_log["fill_qty"] > 0).sum())
    print(f"trade log: {session.trade_log_file} ({fills} fills); plot: {figure}")
    return 0


QUICKSTART = "notebooks/01_quickstart.ipynb"  # relative to the checkout, which JupyterLab serves


def _open_lab(args: argparse.Namespace) -> int:
    """JupyterLab on notebooks/01_quickstart.ipynb, the Binder experience on this machine."""
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / QUICKSTART).exists():
        print(f"the quickstart notebook is not at {checkout / QUICKSTART} (a checkout is needed)", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        raise ConfigurationError(f"port={args.port} is not valid; allowed: 0 (a free one) or 1 to 65535")
    as_root = os.geteuid() == 0
    if as_root:
        print("running as root (as in most containers): JupyterLab gets --allow-root")
    port, token = args.port or _free_port(), secrets.token_urlsafe(24)
    command = lab_command(checkout, port, as_root)
    if args.dry_run:
        print("would run:", " ".join(command), f"(in {checkout}, with JUPYTER_TOKEN set to the URL's token)")
        print("and open:", lab_url(port, token))
        return 0
    print("starting JupyterLab on", checkout / QUICKSTART, flush=True)
    return _run_lab(command, checkout, port, token)


def lab_command(checkout: Path, port: int, as_root: bool) -> list[str]:
    """The JupyterLab command line: this checkout served on 127.0.0.1:`port`, opening the quickstart.
    The token is not on it (command lines are visible to every user): it goes in JUPYTER_TOKEN."""
    command = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={checkout}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--LabApp.default_url=/lab/tree/{QUICKSTART}",
    ]
    return [*command, "--allow-root"] if as_root else command


def lab_url(port: int, token: str) -> str:
    """The address that opens the quickstart notebook itself (not the launcher), signed in."""
    return f"http://127.0.0.1:{port}/lab/tree/{QUICKSTART}?token={token}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_lab(command: list[str], checkout: Path, port: int, token: str) -> int:
    """Run JupyterLab; print the URL once it answers; on Ctrl-C or SIGTERM shut it down cleanly."""
    lab = subprocess.Popen(command, cwd=checkout, env={**os.environ, "JUPYTER_TOKEN": token})
    signal.signal(signal.SIGTERM, lambda *_: lab.terminate())
    try:
        if _answers(lab, port):
            url = lab_url(port, token)
            print(f"\nJupyterLab is ready. Open the quickstart notebook at:\n\n    {url}\n", flush=True)
        return lab.wait()
    except KeyboardInterrupt:
        return _stop_lab(lab)


def _stop_lab(lab: subprocess.Popen[bytes]) -> int:
    """Ctrl-C: JupyterLab got it too (one process group) and shuts its kernels down; wait for it.
    A second Ctrl-C (its banner says "twice to skip confirmation") ends it at once, quietly."""
    lab.terminate()
    try:
        return lab.wait()
    except KeyboardInterrupt:
        lab.kill()
        return lab.wait()


def _answers(lab: subprocess.Popen[bytes], port: int, timeout: float = 300.0) -> bool:
    """Whether JupyterLab accepts connections on `port` before it exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while lab.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blockpaca-nb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("sim", help="serve the embedded Alpaca-compatible simulator")
    _add_sim_arguments(sim)
    sim.set_defaults(run=serve)
    run = commands.add_parser("demo", help="the quickstart: JupyterLab, or --headless in the terminal")
    run.add_argument("--headless", action="store_true", help="run in the terminal with the live display")
    run.add_argument("--seconds", type=float, default=30.0, help="how long the headless run trades")
    run.add_argument("--tickers", default="AAPL,TSLA,NVDA")
    run.add_argument("--frequency", type=float, default=2.0, help="seconds between strategy ticks")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default=".", help="directory for demo.csv (the trade log) and demo.html (the plot)")
    run.add_argument("--port", type=int, default=0, help="JupyterLab's port on 127.0.0.1 (0: a free one)")
    run.add_argument("--dry-run", action="store_true", help="print the JupyterLab command and URL; start nothing")
    run.set_defaults(run=demo)
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
