"""Soak run: a session at 500 symbols x 10 quotes/s with a strategy trading every second, for
--minutes (default 10). Prints the RSS and open file descriptors of the kernel and of each child at
the start and the end, and the quote latency at the start and the end (drift).

    .venv-3.11/bin/python tests/reliability/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import run_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--qps", type=float, default=10.0, help="quotes per second per symbol")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_dir:
        report = run_load(args.minutes * 60, Path(log_dir), args.symbols, args.qps, sample_every=30.0)
    print("\n".join(report.lines()))
    growth = report.growth_mb()
    print(f"RSS growth (MB): {growth}")
    print(f"open fds change: {report.fd_change()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
