"""The paired notebooks: jupytext keeps them in step with scripts/, and they run.

jupytext is called in this process, as `make notebooks` calls it in its own (`jupytext --sync`): the same code,
without a new interpreter for each sync.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from jupytext.cli import jupytext
from nbclient import NotebookClient

from tests.helpers import ROOT

SCRIPTS = ["train.py", "evaluate.py", "penguins.py"]


def copy_project(target: Path) -> Path:
    """A copy of the files pairing needs, so syncing never touches the working tree."""
    (target / "scripts").mkdir(parents=True)
    for name in SCRIPTS:
        shutil.copy(ROOT / "scripts" / name, target / "scripts")
    shutil.copy(ROOT / "jupytext.toml", target)
    shutil.copytree(ROOT / "data", target / "data")
    (target / "notebooks").mkdir()
    return target


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose notebooks `jupytext --sync` created from the scripts, once for the module: read only."""
    project = copy_project(tmp_path_factory.mktemp("synced"))
    sync(project, "scripts/train.py", "scripts/evaluate.py")
    return project


@pytest.fixture
def project(synced: Path, tmp_path: Path) -> Path:
    """A copy of the synced project, free to edit."""
    shutil.copytree(synced, tmp_path / "project")
    return tmp_path / "project"


def sync(project: Path, *paths: str) -> None:
    assert jupytext(["--sync", "--quiet", *(str(project / path) for path in paths)]) == 0


def touch_later(path: Path) -> None:
    # Sync picks the newest side: make the edit unambiguously newer than its pair.
    stat = path.stat()
    os.utime(path, (stat.st_atime + 5, stat.st_mtime + 5))


def test_sync_creates_both_notebooks(synced: Path) -> None:
    for name in ("train", "evaluate"):
        notebook = nbformat.read(synced / "notebooks" / f"{name}.ipynb", as_version=4)
        assert notebook.cells[0].cell_type == "markdown"
        assert any(cell.cell_type == "code" for cell in notebook.cells)


def test_the_generated_notebooks_name_the_python_3_kernel(synced: Path) -> None:
    # Without a kernelspec JupyterLab asks the user to pick a kernel on first open.
    for name in ("train", "evaluate"):
        notebook = nbformat.read(synced / "notebooks" / f"{name}.ipynb", as_version=4)
        assert notebook.metadata.kernelspec == {
            "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python",
        }  # fmt: skip


def test_a_notebook_edit_reaches_the_script(project: Path) -> None:
    path = project / "notebooks" / "train.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell('print("edited in the notebook")'))
    nbformat.write(notebook, path)
    touch_later(path)
    sync(project, "notebooks/train.ipynb")
    assert 'print("edited in the notebook")' in (project / "scripts" / "train.py").read_text()


def test_a_script_edit_reaches_the_notebook(project: Path) -> None:
    script = project / "scripts" / "train.py"
    script.write_text(script.read_text() + '\n# %%\nprint("edited in the script")\n')
    touch_later(script)
    sync(project, "scripts/train.py")
    sources = [cell.source for cell in nbformat.read(project / "notebooks" / "train.ipynb", as_version=4).cells]
    assert 'print("edited in the script")' in sources


def test_the_generated_notebooks_execute_and_write_models(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELS_DIR", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    # The kernel inherits the environment: the default parameters, not the grid search test_train.py runs.
    monkeypatch.setenv("TRAIN_QUICK", "1")
    for name in ("train", "evaluate"):
        notebook = nbformat.read(project / "notebooks" / f"{name}.ipynb", as_version=4)
        NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(project / "notebooks")}}).execute()
    # The kernel starts in notebooks/; outputs still land in the project's models/.
    assert sorted(path.name for path in (project / "models").glob("*.pkl")) == [
        "logistic_regression.pkl", "random_forest.pkl", "svc.pkl",
    ]  # fmt: skip
    assert (project / "models" / "evaluation" / "metrics.json").is_file()
