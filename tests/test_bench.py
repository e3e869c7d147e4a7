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
        [sys.executable, "-m", "rlvis.bench", "--config=configs/cc12m.py:tiny,method=ab_simclr", "--steps=1",
         "--warmup=1", "--matmul_size=256"], cwd=ROOT, env=subprocess_env(),
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])
    for name in ("step", "base"):
        measured = report[name]
        assert measured["flops_per_step"] > 0 and measured["step_seconds"] > 0
        assert 0 < measured["mfu"] and measured["encoded_views_per_step"] > 0
    assert report["step"]["flops_per_step"] != report["base"]["flops_per_step"]  # AB adds the value head and TD
    assert report["ab_cost_per_view"] > 0
