"""Every notebook in notebooks/ runs, at a small size set through its parameters cell
(the cell tagged ``parameters``); a failing cell fails the suite."""

import glob
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
SMALL = {"N_TRAIN": 300, "DEPTH": 2, "EPOCHS": 2, "NFA_SAMPLES": 100}


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "each notebook has one cell tagged 'parameters'"
    names = {line.split("=")[0].strip() for line in params[0].source.splitlines()
             if "=" in line and not line.lstrip().startswith("#")}
    assert names <= set(SMALL), f"set small values for {names - set(SMALL)}"
    params[0].source += "\n" + "\n".join(f"{k} = {SMALL[k]!r}" for k in sorted(names))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"})
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
