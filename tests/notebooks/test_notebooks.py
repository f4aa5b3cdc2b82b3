"""Every notebook in notebooks/ runs top to bottom on the embedded simulator, with no keys."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


# the replay notebook runs on the newest Python in CI, beside the 3.11 suite (see pyproject's markers)
CASES = [pytest.param(p, marks=pytest.mark.newest_python) if p.stem == "06_replay" else p for p in NOTEBOOKS]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    assert list(tmp_path.glob("*.csv")), "the notebook wrote no trade log"


def test_the_notebooks_are_all_there() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]
