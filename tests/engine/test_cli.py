"""The `blockpaca-nb` command as a user runs it: a real subprocess each time."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from alpaca.trading.client import TradingClient


def test_sim_prints_working_urls_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "blockpaca_nb.cli", "sim", "--symbols", "AAPL,MSFT", "--seed", "7"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        lines = {}
        while "secret_key" not in lines:
            line = server.stdout.readline()
            assert line, "the command ended before printing its URLs"
            parts = line.split()
            if len(parts) == 2:
                lines[parts[0]] = parts[1]
        client = TradingClient(lines["api_key"], lines["secret_key"], url_override=lines["trading"])
        assert [a.symbol for a in client.get_all_assets()] == ["AAPL", "MSFT"]
        assert lines["data_stream"].startswith("ws://127.0.0.1:") and lines["trading_stream"].endswith("/stream")
        server.send_signal(signal.SIGINT)
        assert server.wait(15) == 0
    finally:
        if server.poll() is None:
            server.kill()


def test_sim_refuses_bad_settings_with_the_field_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blockpaca_nb.cli", "sim", "--error-rate", "2"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "error_rate" in done.stderr


def test_headless_demo_trades_and_writes_the_log_and_the_plot(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "blockpaca_nb.cli", "demo", "--headless", "--seconds", "5", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "demo.csv").stat().st_size > 0
    assert "plotly" in (tmp_path / "demo.html").read_text()[:5000].lower()
    assert "trade log:" in done.stdout
