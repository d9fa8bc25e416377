"""The notebooks as committed: outputs stripped, a Colab install cell first, thin.

Executing them is nbmake's job (`pytest --nbmake notebooks/`, set up by notebooks/conftest.py).
"""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = (
    "01_quickstart",
    "02_train",
    "03_evaluate",
    "04_export_and_serve",
    "05_zoobot_weights",
    "06_clump_science",
    "07_selection_function",
)
_DEFINITION = re.compile(r"^\s*(async\s+def|def|class)\s", re.MULTILINE)
_IMPORTS_TENSORFLOW = re.compile(r"^\s*(import|from)\s+(tensorflow|keras|gsfc_tf|tfds_clumpscout)\b", re.MULTILINE)
_IMPORTS_TORCH = re.compile(r"^\s*import\s+(torch|timm)\b", re.MULTILINE)


def _read(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    return notebook


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_notebooks_are_all_there_are():
    assert sorted(path.stem for path in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_outputs_are_stripped(name):
    notebook = _read(name)
    assert "widgets" not in notebook.metadata
    for index, cell in enumerate(_code_cells(notebook)):
        assert cell.outputs == [], f"code cell {index} has outputs"
        assert cell.execution_count is None, f"code cell {index} has an execution count"
        assert "execution" not in cell.metadata, f"code cell {index} has execution timings"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_opens_with_the_colab_install_cell(name):
    notebook = _read(name)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    install = _code_cells(notebook)[0].source
    assert 'if "google.colab" in sys.modules:' in install
    assert re.search(r'^REPO_URL = "[^"]+"', install, re.MULTILINE)
    # The install itself runs only under the Colab guard.
    pip = re.search(r"^    %pip install .*\{REPO_URL\}", install, re.MULTILINE)
    assert pip, install
    assert ("[zoobot]" in pip.group(0)) == (name == "05_zoobot_weights")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_is_thin(name):
    for index, cell in enumerate(_code_cells(_read(name))):
        assert not _DEFINITION.search(cell.source), f"code cell {index} defines a function or class"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_small_parameters_come_from_the_environment(name):
    sources = [cell.source for cell in _code_cells(_read(name))]
    assert any('os.environ.get("GSFC_TF_NOTEBOOK_' in source for source in sources[1:3])


def test_zoobot_notebook_imports_torch_before_tensorflow():
    # timm and torchvision crash the process when imported after TensorFlow.
    sources = [cell.source for cell in _code_cells(_read("05_zoobot_weights"))]
    first_torch = next(i for i, source in enumerate(sources) if _IMPORTS_TORCH.search(source))
    first_tensorflow = next(i for i, source in enumerate(sources) if _IMPORTS_TENSORFLOW.search(source))
    assert first_torch < first_tensorflow
