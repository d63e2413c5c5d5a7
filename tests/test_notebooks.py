"""The notebooks are executed, top to bottom, with small draws: they cannot go stale."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "beyond_gaussian.ipynb",
        "big_data.ipynb",
        "eight_schools.ipynb",
        "exam_multilevel.ipynb",
        "why_partial_pooling.ipynb",
    ]


#: Run in the default tier; the others (each 30-55 s from an empty compile cache) in the slow
#: tier, which CI runs too.
DEFAULT_TIER = ("eight_schools.ipynb", "big_data.ipynb")


@pytest.mark.parametrize(
    "path",
    [p if p.name in DEFAULT_TIER else pytest.param(p, marks=pytest.mark.slow) for p in NOTEBOOKS],
    ids=lambda p: p.name,
)
def test_notebook_executes(path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend draws
    monkeypatch.setenv("HIERBAYES_DRAWS", "100")
    monkeypatch.setenv("HIERBAYES_TUNE", "100")
    monkeypatch.setenv("HIERBAYES_CHAINS", "2")
    monkeypatch.setenv("HIERBAYES_ROWS", "200000")  # big_data.ipynb: 2 x 10^5 rows, not 10^7
    monkeypatch.setenv("HIERBAYES_GROUPS", "500")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook draws figures"
