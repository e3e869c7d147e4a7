"""The Colab notebooks (colabs/*.ipynb) run end to end: each is executed by a real Jupyter kernel on the CPU in its
tiny mode (RLVIS_COLAB_TINY=1), from the repository root, training its own demo run into a temporary workdir."""

import json
import pathlib
import re

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

from tests.runs import subprocess_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLABS = ROOT / "colabs"
NOTEBOOKS = ("quickstart", "value_maps", "downstream")


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(COLABS / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_opens_with_the_install_cell_and_has_no_outputs(name):
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert nb.cells[1] is code[0]
    assert "pip install" in code[0].source and "RLVIS_SOURCE" in code[0].source
    assert 'os.environ.get("RLVIS_COLAB_TINY") == "1"' in code[1].source
    assert "RLVIS_COLAB_WORKDIR" in code[1].source and "RLVIS_CONFIGS" in code[1].source
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def _execute(name: str, tmp_path, monkeypatch) -> tuple[nbformat.NotebookNode, pathlib.Path]:
    """Run the notebook as a Colab user would, but tiny and on the CPU; the kernel inherits this environment."""
    workdir = tmp_path / "run"
    monkeypatch.setenv("RLVIS_COLAB_TINY", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("RLVIS_COLAB_WORKDIR", str(workdir))
    for variable, value in subprocess_env().items():  # the tests' shared compilation cache
        if variable.startswith("JAX_"):
            monkeypatch.setenv(variable, value)
    for variable in ("RLVIS_CONFIGS", "RLVIS_SOURCE", "XLA_FLAGS", "MPLBACKEND"):  # MPLBACKEND=Agg hides figures
        monkeypatch.delenv(variable, raising=False)
    nb = _load(name)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb, workdir


def _cell(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    (cell,) = [cell for cell in nb.cells if tag in cell.metadata.get("tags", [])]
    return cell


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def _pngs(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.outputs)


def _png(path: pathlib.Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.slow
def test_quickstart_trains_plots_the_loss_and_prints_the_evaluation(tmp_path, monkeypatch):
    nb, workdir = _execute("quickstart", tmp_path, monkeypatch)
    assert "rlvis: wrote" in _text(_cell(nb, "train"))  # the training log streams into the notebook
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 6
    layout = _text(_cell(nb, "layout"))
    assert "metrics.jsonl" in layout and "results.json" in layout and "checkpoints/" in layout
    assert _pngs(_cell(nb, "loss-plot")) == 1  # the loss curve, drawn inline

    results = json.loads((workdir / "results.json").read_text())
    table = _text(_cell(nb, "results"))
    assert results["trained"] and "random init" in table
    for task, accuracy in results["trained"].items():  # every task's row, with the numbers of the file
        row = re.search(rf"^{re.escape(task)}\s+(\S+)\s+(\S+)\s+(\S+)$", table, re.MULTILINE)
        assert row, (task, table)
        assert float(row.group(1)) == pytest.approx(accuracy, abs=1e-3)
        assert float(row.group(2)) == pytest.approx(results["random_init"][task], abs=1e-3)
    plots = sorted((workdir / "plots").glob("*.png"))
    assert plots and _pngs(_cell(nb, "plots")) == len(plots)


@pytest.mark.slow
def test_value_maps_draws_the_photo_and_the_scene_and_searches(tmp_path, monkeypatch):
    nb, workdir = _execute("value_maps", tmp_path, monkeypatch)
    assert (
        not (workdir / "results.json").exists() or not json.loads((workdir / "results.json").read_text())["trained"]
    )  # trained without the final evaluation
    for picture, tag in (
        ("value_map_photo.png", "photo"),
        ("value_map_scene.png", "scene"),
        ("search_scene.png", "search"),
    ):
        width, height = _png(workdir / "plots" / picture)
        assert width > 100 and height > 100
        assert _pngs(_cell(nb, tag)) == 1, tag
    assert "max p = " in _text(_cell(nb, "photo"))
    digits = re.search(r"digits in the scene: \[([\d, ]+)\]", _text(_cell(nb, "scene")))
    assert digits, _text(_cell(nb, "scene"))

    trajectory = json.loads((workdir / "plots" / "search_scene.json").read_text())
    assert trajectory["annotation"] == digits.group(1).split(",")[0].strip()  # searched for the scene's first digit
    assert trajectory["policy"] == "value" and trajectory["encoder_passes"] == 3
    boxes, scores = np.array(trajectory["boxes"]), np.array(trajectory["scores"])
    assert boxes.shape == (4, 4) and scores.shape == (3,)  # the start and 3 moves
    np.testing.assert_allclose(boxes[0], [0, 0, 1, 1])
    assert np.all(boxes[:, 2:] > 0) and np.all(boxes[:, :2] >= 0) and np.all(boxes[:, :2] + boxes[:, 2:] <= 1 + 1e-3)
    assert np.all((scores >= 0) & (scores <= 1))
    assert '"boxes"' in _text(_cell(nb, "search"))  # the trajectory is shown


@pytest.mark.slow
def test_downstream_exports_and_finetunes_the_encoder(tmp_path, monkeypatch):
    nb, workdir = _execute("downstream", tmp_path, monkeypatch)
    description = json.loads((workdir / "export" / "encoder.json").read_text())
    assert description["encoder"] == "ema" and description["step"] == 6
    export_text = _text(_cell(nb, "export"))
    assert "patch_embed.kernel" in export_text and "same tokens as the checkpoint: True" in export_text

    text = _text(_cell(nb, "finetune"))
    frozen = re.search(r"^frozen accuracy: ([\d.]+)$", text, re.MULTILINE)
    unfrozen = re.search(r"^unfrozen accuracy: ([\d.]+)$", text, re.MULTILINE)
    assert frozen and unfrozen, text
    assert 0.15 < float(frozen.group(1)) <= 1.0  # chance is 0.1
    assert 0.0 <= float(unfrozen.group(1)) <= 1.0
    assert "encoder inside MyModel gives the loaded tokens: True" in _text(_cell(nb, "own-model"))
