"""The `blockpaca-nb` command as a user runs it: a real subprocess each time."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from alpaca.trading.client import TradingClient
from waiting import wait_for

from blockpaca_nb import cli

DEMO = [sys.executable, "-m", "blockpaca_nb.cli", "demo"]
NOTEBOOK_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab/tree/notebooks/01_quickstart\.ipynb\?token=([\w-]{20,})")
ROOT_NOTE = "running as root"


def test_sim_prints_working_urls_and_stops_on_ctrl_c() -> None:
    command = [sys.executable, "-m", "blockpaca_nb.cli", "sim", "--symbols", "AAPL,MSFT", "--seed", "7"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
        rest, errors = server.communicate(timeout=60)  # read what is left: a full pipe would block its last print
        assert server.returncode == 0, f"exit {server.returncode}: {rest}{errors}"
        assert "simulator stopped" in rest
    finally:
        if server.poll() is None:
            server.kill()


def test_sim_refuses_bad_settings_with_the_field_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blockpaca_nb.cli", "sim", "--error-rate", "2"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "error_rate" in done.stderr


def test_sim_takes_the_profile_and_the_rules() -> None:
    from blockpaca_nb.cli import _simulator, build_parser

    args = build_parser().parse_args(
        ["sim", "--profile", "frictionless", "--partial-fill-rate", "0.5", "--data-plan", "sip",
         "--clock-start", "2026-12-04T15:59:00-05:00"]
    )  # fmt: skip
    config = _simulator(args)._config
    assert (config.profile, config.cancel_latency_ms, config.partial_fill_rate) == ("frictionless", 0.0, 0.5)
    assert (config.data_plan, config.clock_start) == ("sip", "2026-12-04T15:59:00-05:00")
    bad = subprocess.run(
        [sys.executable, "-m", "blockpaca_nb.cli", "sim", "--clock-start", "tomorrow"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "clock_start" in bad.stderr


def test_headless_demo_trades_and_writes_the_log_and_the_plot(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "blockpaca_nb.cli", "demo", "--headless", "--seconds", "5", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "demo.csv").stat().st_size > 0
    html = (tmp_path / "demo.html").read_text()
    assert "plotly" in html[:5000].lower()
    assert "plotly.js v" in html and not re.search(r"<script[^>]*\ssrc=", html)  # embedded: opens offline
    assert "trade log:" in done.stdout


# ------------------------------------------------------------------ the main command: JupyterLab


def command_line(shown: str) -> list[str]:
    """The JupyterLab command a dry run prints."""
    (line,) = [line for line in shown.splitlines() if line.startswith("would run:")]
    return line.split()


def test_demo_dry_run_prints_the_notebook_url_and_passes_allow_root_only_to_root() -> None:
    done = subprocess.run([*DEMO, "--dry-run", "--port", "8899"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    url = NOTEBOOK_URL.search(done.stdout)
    assert url and url.group(1) == "8899", done.stdout
    as_root = os.geteuid() == 0
    assert ("--allow-root" in command_line(done.stdout)) == as_root
    assert done.stdout.count(ROOT_NOTE) == (1 if as_root else 0)


@pytest.mark.parametrize("uid", [0, 1000])
def test_demo_says_once_it_passes_allow_root_and_only_as_root(
    uid: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)  # whoever runs the suite, both cases are checked
    assert cli.main(["demo", "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert NOTEBOOK_URL.search(shown), shown
    assert ("--allow-root" in command_line(shown)) == (uid == 0)
    assert shown.count(ROOT_NOTE) == (1 if uid == 0 else 0)


def test_lab_command_serves_the_checkout_on_loopback_and_keeps_the_token_off_the_command_line() -> None:
    checkout = Path(__file__).resolve().parents[2]
    command = cli.lab_command(checkout, 8899, as_root=False)
    assert f"--ServerApp.root_dir={checkout}" in command and "--ServerApp.ip=127.0.0.1" in command
    assert "--LabApp.default_url=/lab/tree/notebooks/01_quickstart.ipynb" in command
    assert not any("token" in part.lower() for part in command)
    assert cli.lab_command(checkout, 8899, as_root=True) == [*command, "--allow-root"]


def test_demo_refuses_a_bad_port_with_the_field_named() -> None:
    done = subprocess.run([*DEMO, "--dry-run", "--port", "70000"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "port" in done.stderr and "65535" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="JupyterLab missing: pip install -e .[lab]")
def test_demo_serves_the_quickstart_notebook_at_the_url_it_prints(tmp_path: Path) -> None:
    env = {**os.environ, **{f"JUPYTER_{d}_DIR": str(tmp_path / d.lower()) for d in ("CONFIG", "DATA", "RUNTIME")}}
    env["BROWSER"] = "true"  # no browser window from a test
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
    reader.start()
    try:
        url = wait_for(lambda: NOTEBOOK_URL.search("".join(lines)) or demo.poll() is not None, 180, "the URL")
        assert isinstance(url, re.Match), f"the demo ended (code {demo.returncode}): {lines}"
        lab = psutil.Process(demo.pid).children(recursive=True)
        with urllib.request.urlopen(url.group(0), timeout=30) as page:
            assert page.status == 200
        contents = f"http://127.0.0.1:{url.group(1)}/api/contents/notebooks/01_quickstart.ipynb?content=0"
        with urllib.request.urlopen(f"{contents}&token={url.group(2)}", timeout=30) as answer:
            assert json.load(answer)["type"] == "notebook"
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(contents, timeout=30)  # the token is what lets one in
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0
        wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in lab), 30,
                 "JupyterLab to exit with the demo")
        assert "".join(lines).count(ROOT_NOTE) == (1 if os.geteuid() == 0 else 0)
    finally:
        if demo.poll() is None:
            demo.kill()
