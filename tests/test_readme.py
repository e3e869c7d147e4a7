"""The README's documented commands, run literally: the walkthrough block, line by line, on the tiny config."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.runs import ROOT, subprocess_env


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def walkthrough_commands() -> list[str]:
    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```\n<!-- /walkthrough -->", _readme(), re.S)
    assert block, "README.md lost its walkthrough block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_full_suite():
    lines = _readme().splitlines()
    assert lines[2:6] == [
        "```bash",
        "pip install -e . && python -m rlvis.main --config=configs/demo.py --workdir=runs/demo",
        'pip install -e ".[test]" && pytest',
        "```",
    ]
    full_suite = 'pip install -e ".[test]" && pytest --full'
    assert f"`{full_suite}`" in _readme()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read().strip().splitlines()
    assert ci[-1] == full_suite
    assert (
        "ruff check . && ruff format --check .  # the style every contributor inherits (pyproject.toml [tool.ruff])"
        in ci
    )


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """Each command exactly as written, in a fresh folder that has the repo's configs/ (as a clone does), with
    `python` the interpreter running the tests."""
    folder = tmp_path_factory.mktemp("readme")
    os.symlink(os.path.join(ROOT, "configs"), folder / "configs")
    env = dict(subprocess_env(), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    outputs = []
    for command in walkthrough_commands():
        result = subprocess.run(
            ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, (
            f"README command failed: {command}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
        outputs.append(result.stdout + result.stderr)
    return folder / "runs" / "tiny", outputs


@pytest.mark.slow
def test_walkthrough_trains_evaluates_draws_searches_exports_and_resumes(walkthrough):
    workdir, outputs = walkthrough
    commands = walkthrough_commands()
    assert [c.split()[2] for c in commands] == [
        "rlvis.main",
        "rlvis.evaluate",
        "rlvis.evaluators.value_maps",
        "rlvis.search",
        "rlvis.export",
        "rlvis.main",
    ]
    train, evaluate, value_map, search, export, resume = outputs
    assert "step 6/6" in train and "ETA" in train
    with open(workdir / "results.json") as f:
        results = json.load(f)
    assert "step 6: linear/digit" in evaluate
    with open(workdir / "eval" / "step_6.json") as f:
        assert json.load(f)["scores"] == pytest.approx(results["trained"], abs=1e-6)  # same numbers as training
    assert (workdir / "plots" / "value_map_6.png").stat().st_size > 5000 and "3: max p" in value_map
    with open(workdir / "plots" / "search_6.json") as f:
        trajectory = json.load(f)
    assert trajectory["annotation"] == "3" and np.array(trajectory["boxes"]).shape == (4, 4)
    with open(workdir / "export" / "encoder.json") as f:
        assert json.load(f)["encoder"] == "ema"
    assert "exported the ema encoder of step 6" in export
    assert "step 6/6" not in resume and "already" in resume.lower()  # nothing retrained
