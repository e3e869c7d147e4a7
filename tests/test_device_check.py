"""The device check runs unchanged on a CPU at tiny size: the code path an accelerator host will run first."""

import json

import pytest

from rlvis import device_check
from tests.runs import ok, run_module


def test_known_chips_have_their_table_peak_and_others_none():
    assert device_check.table_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert device_check.table_peak("NVIDIA H100 PCIe") == 756e12
    assert device_check.table_peak("TPU v5 lite") == 197e12
    assert device_check.table_peak("cpu") is None


@pytest.mark.slow
def test_the_device_check_prints_its_table_and_writes_one_json_on_cpu(tmp_path):
    out = tmp_path / "device_check.json"
    result = ok(run_module("rlvis.device_check", f"--out={out}", "--tiny", "--train_steps=20", "--steps=2"))
    report = json.loads(out.read_text())
    assert report["backend"] == "cpu" and report["table_peak_bf16_flops_per_s"] is None
    assert report["measured_matmul_peak_bf16_flops_per_s"] > 0
    rows = {row["method"]: row for row in report["steps"]}
    assert set(rows) == {"ab_simclr", "simclr"}
    for row in rows.values():
        assert row["step_seconds"] > 0 and 0 < row["mfu"] and row["mfu_vs_table"] is None
    assert rows["ab_simclr"]["ab_cost_per_view"] > 0
    training = report["training"]
    assert training["steps"] == 20 and training["samples"] == 128
    assert training["loss_fell"] == (training["last_loss"] < training["first_loss"])
    assert training["loss_fell"], training  # 20 steps of AB_CLIP on the written shards do lower the loss
    assert "model    method" in result.stdout and "training configs/cc12m.py:method=ab_clip,tiny" in result.stdout
