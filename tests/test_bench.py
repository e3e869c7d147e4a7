"""rlvis.bench runs as documented, on a preset with no data path (synthetic batches), and reports what it says.

Speed itself is never asserted here; this checks the command works and its report is consistent."""

import json
import subprocess
import sys

import pytest

from tests.runs import ROOT, subprocess_env


@pytest.mark.slow
def test_bench_reports_flops_mfu_and_ab_cost_for_the_cc12m_preset_without_data():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlvis.bench",
            "--config=configs/cc12m.py:tiny,method=ab_simclr",
            "--steps=1",
            "--warmup=1",
            "--matmul_size=256",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    for name in ("step", "base"):
        measured = report[name]
        assert measured["flops_per_step"] > 0 and measured["step_seconds"] > 0
        assert 0 < measured["mfu"] and measured["encoded_views_per_step"] > 0
    assert report["step"]["flops_per_step"] != report["base"]["flops_per_step"]  # AB adds the value head and TD
    assert report["ab_cost_per_view"] > 0


def test_evaluator_costs_grow_with_sequence_length():
    """The evaluator benchmark's report, in process on the tiny preset: every evaluator measured, FLOPs counted,
    and a longer decoder sequence (detection) costs more per item than a one-token class."""
    from configs import demo
    from rlvis import bench

    report = bench.evaluator_costs(
        demo.get_config("tiny"),
        eval_batch=8,
        probe_batch=4,
        max_objects=3,
        steps=1,
        warmup=0,
        probe_size=dict(depth=1, width=32, heads=2),
    )
    assert report["features"]["images_per_s"] > 0 and report["features"]["flops_per_image"] > 0
    costs = {task: report[f"decoder_probe/{task}"] for task in ("classification", "box_class", "detection")}
    assert [costs[t]["sequence_length"] for t in costs] == [2, 6, 17]
    assert (
        costs["classification"]["flops_per_item"]
        < costs["box_class"]["flops_per_item"]
        < costs["detection"]["flops_per_item"]
    )
    assert report["detection_decode"]["images_per_s"] > 0
