"""The notebooks: committed stripped and paired with their py:percent text, and every cell runs.

Execution uses a kernel of this interpreter (``sys.executable -m ipykernel_launcher``, from a
kernel spec written to a temporary JUPYTER_PATH, so that the kernel is the test's venv whatever
``python`` is on PATH) with ``DIFFREC_JAX_NOTEBOOK_SMALL=1`` (synthetic data, tiny models and
budgets: about a minute per notebook on CPU) and the notebooks' outputs under a temporary
directory (``DIFFREC_JAX_OUTPUT``). A failing cell fails the test with its traceback.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest

from diffrec_jax import models

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
KERNEL = "diffrec-jax-notebook-test"

# Notebooks written against parts of the library that may not exist yet.
MISSING = {
    "sequential": [m for m in ("adrec", "sasrec+") if m not in models.available()],
    "illusion_of_progress": [
        m for m in ("diffrec_jax.audit",) if importlib.util.find_spec(m) is None
    ],
}


def test_every_notebook_has_its_pair():
    scripts = {p.stem for p in NOTEBOOKS.glob("*.py")}
    assert NAMES, f"no notebooks in {NOTEBOOKS}"
    assert scripts == set(NAMES), "every notebooks/X.ipynb needs notebooks/X.py and vice versa"


@pytest.mark.parametrize("name", NAMES)
def test_stripped_and_paired(name):
    ipynb, py = NOTEBOOKS / f"{name}.ipynb", NOTEBOOKS / f"{name}.py"
    nb = nbformat.read(ipynb, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{ipynb} cell {i} has outputs: strip them"
            assert cell.execution_count is None, f"{ipynb} cell {i} has an execution count"
    assert "py:percent" in nb.metadata["jupytext"]["formats"], f"{ipynb} is not paired"

    def cells(path):
        return [(c.cell_type, c.source.strip()) for c in jupytext.read(path).cells]

    assert cells(ipynb) == cells(py), (
        f"{ipynb.name} and {py.name} differ: run `jupytext --sync notebooks/*.ipynb`"
    )

    first = next(c.source for c in nb.cells if c.cell_type == "code")
    for needed in ('"google.colab" in sys.modules', "jax.default_backend()", "jax.device_count()"):
        assert needed in first, f"{ipynb}: the first code cell must hold {needed}"


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory):
    """A JUPYTER_PATH with a kernel spec that runs this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "diffrec_jax tests", "language": "python"})
    )
    return root


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, kernel_path, tmp_path, monkeypatch):
    if MISSING.get(name):
        pytest.skip(f"{name} needs {MISSING[name]}, not in the library yet")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("DIFFREC_JAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DIFFREC_JAX_OUTPUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=900,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError (with the cell's traceback) if a cell fails
