"""The Binder environment, rebuilt from binder/ alone in a fresh virtual environment, runs the quickstart.

mybinder (repo2docker) installs binder/requirements.txt from the repository root with the Python of
binder/runtime.txt; this does the same on this machine and executes notebooks/01_quickstart.ipynb
with that environment's own kernel, and checks the widget front-ends are in its JupyterLab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _binder_python() -> str:
    wanted = (ROOT / "binder" / "runtime.txt").read_text().strip().removeprefix("python-")
    return shutil.which(f"python{wanted}") or sys.executable


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_binder_environment_runs_the_quickstart(tmp_path: Path) -> None:
    venv = tmp_path / "binder-venv"
    subprocess.run([_binder_python(), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "VIRTUAL_ENV"))}
    pip = [python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"]
    subprocess.run(pip, cwd=ROOT, check=True, env=env, timeout=600)
    extensions = subprocess.run(
        [python, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True, env=env, check=True
    )
    listed = extensions.stdout + extensions.stderr
    assert "@jupyter-widgets/jupyterlab-manager" in listed and "anywidget" in listed
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "01_quickstart.ipynb", work)
    executed = subprocess.run(
        [
            python,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--output",
            "ran.ipynb",
            "--ExecutePreprocessor.timeout=300",
            "01_quickstart.ipynb",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert executed.returncode == 0, executed.stderr[-3000:]
    assert (work / "quickstart.csv").exists()
