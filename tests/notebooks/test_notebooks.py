"""Every notebook in ``notebooks/`` runs headless, top to bottom, without an error.

Each is executed with nbclient in a fresh IPython kernel of *this* interpreter (the venv's
python, whatever kernelspecs the machine has), with the notebooks folder as working directory.
An error in any cell fails the test with the cell's traceback. Each notebook must also draw
at least one figure (an ``image/png`` output), and the walkthrough must show the interactive
view. The committed notebooks carry no outputs, so the repository stays small; the executed
copies are kept under pytest's temporary folder for a look after a failure, and, for a notebook
that ran cleanly, in ``build/executed-notebooks/`` (ignored by git), where the docs build takes
them for its notebook pages, figures included (``docs/hooks.py``).

The DINOv2 weights are converted once into the user's cache (``~/.cache/transformer-visualizer``,
or ``$VISUALIZER_CACHE``) and read from there afterwards.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
EXECUTED = NOTEBOOKS.parent / "build" / "executed-notebooks"  # read by docs/hooks.py
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))

#: Seconds a single cell may take before the run fails (the slowest, loading weights, takes a few).
CELL_TIMEOUT = 300

#: Outputs some notebooks must show, beyond a figure: (mime type, text it contains, what it is).
EXPECTED = {
    "transformer-visualizer.ipynb": [("text/html", "<iframe srcdoc=", "the interactive attention view")],
}


def test_the_notebooks_are_there():
    names = {path.name for path in PATHS}
    assert {
        "transformer-visualizer.ipynb",
        "your-own-model.ipynb",
        "copy-task.ipynb",
        "coming-from-the-original.ipynb",
        "relevance.ipynb",
    } <= names
    assert set(EXPECTED) <= names, "EXPECTED names a notebook that does not exist"


@pytest.mark.parametrize("path", PATHS, ids=[path.name for path in PATHS])
def test_committed_without_outputs(path):
    """Outputs are cleared before committing: the repository stays small and diffs stay readable."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing "
        "(Jupyter: Edit > Clear Outputs of All Cells, then save)"
    )
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.fixture(scope="session")
def kernel_specs(tmp_path_factory):
    """A kernelspec folder whose only kernel, ``python3``, runs this interpreter.

    A ``python3`` kernelspec in the user's or the system's Jupyter folders may point at
    another Python (without torch); this one cannot.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    folder = tmp_path_factory.mktemp("kernels")
    (folder / "python3").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (this venv)",
        "language": "python",
    }
    (folder / "python3" / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    manager = KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)
    assert manager.get_kernel_spec("python3").argv[0] == sys.executable
    return manager


@pytest.mark.parametrize("path", PATHS, ids=[path.name for path in PATHS])
def test_notebook_runs(path, kernel_specs, tmp_path):
    from jupyter_client.manager import AsyncKernelManager

    notebook = nbformat.read(path, as_version=4)
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = nbclient.NotebookClient(
        notebook,
        km=manager,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    try:
        client.execute(cleanup_kc=True)  # the client shuts down kernels it did not create only if told to
    finally:
        nbformat.write(notebook, tmp_path / path.name)  # what ran, for a look after a failure
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    shown = [output.data for output in outputs if output.output_type in ("execute_result", "display_data")]
    assert any("image/png" in data for data in shown), (
        f"{path.name} drew no figure: a Figure that ends a cell shows only after `%matplotlib inline` "
        "(the plots do not use pyplot); or call display(fig)"
    )
    for mime, text, what in EXPECTED.get(path.name, []):
        assert any(text in data.get(mime, "") for data in shown), f"{path.name} did not show {what}"
    EXECUTED.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, EXECUTED / path.name)  # for the docs' notebook pages
