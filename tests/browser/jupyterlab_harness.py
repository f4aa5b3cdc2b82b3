"""A throw-away JupyterLab server and a headless Chromium page on it, for the real-browser tests.

`JupyterLab` starts `jupyter lab` from this test's own Python (so the kernel imports the project)
on 127.0.0.1 with a random token, an OS-chosen port, a temporary root directory and temporary
Jupyter config, data, runtime and settings directories: the run never touches the user's Jupyter
set-up and leaves nothing behind. The port is read from the server's runtime file (the server
writes it once it listens). `open_page` drives Debian's /usr/bin/chromium through Playwright
(Playwright's own browser download is not used).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START_TIMEOUT_S = 90.0
DIRECTORIES = (
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_DATA_DIR",
    "JUPYTER_RUNTIME_DIR",
    "JUPYTERLAB_SETTINGS_DIR",
    "JUPYTERLAB_WORKSPACES_DIR",
)
SETTINGS = {
    # no news pop-up; every cell rendered (no windowing), so off-screen outputs exist in the DOM
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here (None when they can): Chromium or JupyterLab missing.

    Playwright and ipykernel are not checked: scripts/browser-deps installs them with JupyterLab,
    so if they are missing the set-up is broken and the test should fail, not skip."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (run scripts/browser-deps as root)"
    if importlib.util.find_spec("jupyterlab") is None:
        return "the Python package 'jupyterlab' is missing (run scripts/browser-deps as root)"
    return None


class JupyterLab:
    """One JupyterLab server in its own process group, on a temporary root directory."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.token = secrets.token_hex(24)
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path = home / "jupyterlab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JupyterLab:
        """Start the server and wait until it answers; raise with its log if it does not."""
        env = self._environment()
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.terminals_enabled=False",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI and these machines run as root
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.port = self._wait_for_port(Path(env["JUPYTER_RUNTIME_DIR"]))
        self._wait_until_answering()
        return self

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in DIRECTORIES:
            path = self.home / name.lower()
            path.mkdir(parents=True, exist_ok=True)
            env[name] = str(path)
        for plugin, values in SETTINGS.items():
            package, name = plugin.rsplit(":", 1)
            folder = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / package
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _wait_for_port(self, runtime_dir: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.process.returncode}):\n{self.log()}")
            for info in runtime_dir.glob("jpserver-*.json"):
                with contextlib.suppress(ValueError, OSError):
                    port = int(json.loads(info.read_text())["port"])
                    if port:
                        return port
            time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not start within {START_TIMEOUT_S} s:\n{self.log()}")

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as reply,
            ):
                if reply.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def api(self, path: str, method: str = "GET") -> Any:
        """Call the server's REST API (e.g. "/api/kernels")."""
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        request.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the API (each kernel stops its sessions' children as it dies)."""
        with contextlib.suppress(OSError, ValueError):
            for kernel in self.api("/api/kernels") or []:
                with contextlib.suppress(OSError):
                    self.api(f"/api/kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        """Shut the kernels down, then the server's whole process group; wait until it is gone."""
        if self.process is None:
            return
        self.shutdown_kernels()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def descendants(self) -> list[Any]:
        """Every process the server started, directly or not (kernels and what they spawned)."""
        import psutil

        if self.process is None:
            return []
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def notebook(cells: list[str]) -> dict[str, Any]:
    """A notebook (nbformat 4) of code cells, with the project's Python 3 kernel."""
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
            for i, s in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@contextlib.contextmanager
def open_page(url: str, screenshots: Path) -> Iterator[Any]:
    """A headless Chromium page (1400x1600: the whole dashboard fits) at `url`; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url)
            yield page
        finally:
            browser.close()


def save_screenshot(page: Any, directory: Path, name: str, element: str | None = None) -> Path:
    """Write a PNG of the page into `directory` (made if needed) and return its path; with
    `element` (a CSS selector), also `<name>-element.png` of that element alone, scrolled into view."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path))
    if element is not None:
        with contextlib.suppress(Exception):
            page.locator(element).first.screenshot(path=str(directory / f"{name}-element.png"), timeout=5000)
    return path
