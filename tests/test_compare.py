import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import demo
from rlvis import config_lib, methods
from tests.runs import NO_EVAL, ROOT, subprocess_env


def test_methods_get_the_same_number_of_encoded_views():
    configs = config_lib.method_configs(demo.get_config(), ["simclr", "ab_simclr"], device_count=8)
    views = {m: methods.encoded_views_per_step(c) for m, c in configs.items()}
    assert views["simclr"] == views["ab_simclr"] == 2 * 64 + 4 * 32
    assert configs["simclr"].batch.annotation == 128 and configs["ab_simclr"].batch.annotation == 64
    dino = config_lib.method_configs(demo.get_config(), ["simclr", "dino", "ab_dino"], device_count=8)
    assert dino["simclr"].batch.annotation == 64  # no AB_SimCLR in this comparison: SimCLR keeps its own batch
    # ab_dino: 64 images × (2 global + 4 local) + 32 × 4 bootstrap = 512; dino alone: 512 / 6 → 80 images (÷8)
    assert methods.encoded_views_per_step(dino["ab_dino"]) == 512
    assert dino["dino"].batch.annotation == 80


@pytest.mark.slow
def test_compare_command_writes_a_table_json_and_chart(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlvis.compare",
            "--config=configs/demo.py:tiny",
            f"--workdir={tmp_path}",
            "--methods=simclr,ab_simclr",
            "--config.total_steps=2",
            "--config.evals.digits.final=True",
            *[f"--config.{override}" for override in NO_EVAL],
        ],  # the cheap evaluator: this checks the command
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method"))
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == ["simclr", "ab_simclr", "random_init"]
    with open(tmp_path / "compare.json") as f:
        summary = json.load(f)
    assert set(summary["methods"]) == {"simclr", "ab_simclr"}
    assert summary["encoded_views_per_step"]["simclr"] == summary["encoded_views_per_step"]["ab_simclr"]
    for method in ("simclr", "ab_simclr"):
        with open(tmp_path / method / "results.json") as f:
            assert json.load(f)["random_init"] == summary["random_init"]  # one baseline serves every method
    assert (tmp_path / "compare.png").stat().st_size > 1000


def test_a_base_method_drops_gradient_accumulation_which_splits_a_stream_it_does_not_read():
    config = demo.get_config()
    config.optim.grad_accum_steps, config.ab.center_target = 2, False  # centring needs the whole step's views
    configs = config_lib.method_configs(config, ["ab_simclr", "simclr"], device_count=1)
    assert configs["ab_simclr"].optim.grad_accum_steps == 2 and configs["simclr"].optim.grad_accum_steps == 1


def test_seeds_summarise_to_mean_and_standard_error_and_variants_set_fields():
    from rlvis import compare

    row = compare.summarise([{"a": 0.5, "b": 1.0}, {"a": 0.7, "b": 1.0}, {"a": 0.6, "b": 1.0}])
    np.testing.assert_allclose(row["mean"]["a"], 0.6)
    np.testing.assert_allclose(row["se"]["a"], 0.1 / np.sqrt(3))  # sample std 0.1 over √3
    assert row["se"]["b"] == 0.0 and compare.summarise([{"a": 0.5}])["se"]["a"] == 0.0
    assert "0.600 ± 0.058" in compare.table({"ab_simclr": row}, ["a", "b"])
    assert compare.run_dir("w", "simclr", 1, seeds=3) == os.path.join("w", "simclr", "seed1")
    variant = config_lib.apply_variant(demo.get_config(), "ab_simclr+ab.use_ema_target=False+env.views=3")
    assert variant.method == "ab_simclr" and variant.ab.use_ema_target is False and variant.env.views == 3
    with pytest.raises(config_lib.ConfigError, match="ab.no_such_field"):
        config_lib.apply_variant(demo.get_config(), "ab_simclr+ab.no_such_field=1")


def test_slip_and_silc_batches_are_sized_to_the_view_budget_and_spread_their_extra_views():
    from rlvis.methods import slip

    configs = config_lib.method_configs(
        demo.get_config("tiny,method=ab_clip"), ["slip", "silc", "ab_clip"], 8, views_per_step=192
    )
    assert "dino" in configs["silc"] and "dino" not in configs["slip"] and "slip" not in configs["silc"]
    assert "ab" not in configs["slip"] and "ab" in configs["ab_clip"]  # each row holds its own method's sections
    # an image's most views: its CLIP view, and SLIP's two SimCLR views or SiLC's DINO multi-crop
    most = {"slip": 1 + 2, "silc": 1 + 2 + configs["silc"].dino.local_views}
    for row in ("slip", "silc"):
        views = methods.encoded_views_per_step(configs[row])
        assert views <= 192 and views > 192 - 8 * most[row]  # within one step of 8 rows
        assert configs[row].batch.annotation % 8 == 0
    rows = np.arange(4096)[slip.spread_rows(4096, 512)]
    assert len(rows) == 512 and len(set(rows // 512)) == 8  # every eighth of the batch (one device each) has its share
