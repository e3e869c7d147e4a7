"""The trainer end to end on the tiny demo config: `train.train_and_evaluate` in this process (what `python -m
rlvis.main` calls), on 1 or 8 of the test process's fake devices; the commands themselves once each (slow tier).
"""

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

from rlvis import config_lib, evaluate
from rlvis.evaluators import demo_tasks
from tests.runs import (
    NO_EVAL,
    load_config,
    load_state,
    metrics,
    ok,
    run_main,
    run_module,
    saved_meta,
    train,
    usage_error,
)

TASKS = {
    "linear/digit",
    "knn/digit",
    "fewshot10/digit",
    "map/digit",
    "linear/count",
    "linear/box_digit",
    "decoder/box_digit",
}


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory):
    """The shared tiny run, the same run stopped at step 4 and resumed, and step 4 on 8 devices (replicated and
    FSDP with every array above 64 elements split: most of the tiny model). Only the shared run evaluates."""
    base = tmp_path_factory.mktemp("runs")
    out = {
        "full": tiny_run[0],
        "full_log": tiny_run[1].stdout,
        "resumed": base / "resumed",
        "eight": base / "eight",
        "fsdp": base / "fsdp",
    }
    out["first_half_log"] = train(out["resumed"], *NO_EVAL, stop_at_step=4).stdout  # between saves (3, 6)
    out["second_half_log"] = train(out["resumed"], *NO_EVAL).stdout
    train(out["eight"], *NO_EVAL, stop_at_step=4, devices=8)
    train(out["fsdp"], *NO_EVAL, "sharding.strategy='fsdp'", "sharding.fsdp_min_size=64", stop_at_step=4, devices=8)
    return out


def test_demo_command_prints_progress_and_writes_the_results_contract(runs):
    stdout = runs["full_log"]
    assert "step 6/6 | loss" in stdout and "img/s | ETA" in stdout
    assert "linear/box_digit" in stdout and "random_init" in stdout
    with open(runs["full"] / "results.json") as f:
        results = json.load(f)
    assert set(results) >= {"trained", "random_init", "config", "steps", "wall_seconds", "encoder"}
    assert results["encoder"] == "ema"  # AB_SimCLR's recipe has an EMA network (config_lib.eval_encoder)
    foresight_tasks = {
        f"foresight/{p}/{b}" for p in ("value", "invariance", "brute_force", "chance") for b in ("all", "zoom_in")
    }
    assert set(results["trained"]) >= TASKS | foresight_tasks and set(results["random_init"]) >= TASKS
    assert set(demo_tasks.Evaluator.tasks) == TASKS  # the tasks it declares (its progress bar's count) are those
    assert (runs["full"] / "plots" / "foresight.png").stat().st_size > 1000
    assert all(0.0 <= v <= 1.0 for v in [*results["trained"].values(), *results["random_init"].values()])
    assert results["steps"] == 6 and results["wall_seconds"] > 0
    assert results["config"]["method"] == "ab_simclr" and results["config"]["total_steps"] == 6
    logged = metrics(runs["full"])
    assert sorted(logged) == [1, 2, 3, 4, 5, 6]
    assert {
        "loss",
        "base_loss",
        "td_loss",
        "learning_rate",
        "grad_norm",
        "images_per_s",
        "td_accuracy/iou_0",
        "td_accuracy/iou_0.5-1",
    } <= set(logged[6])
    assert (runs["full"] / "plots" / "td_accuracy.png").stat().st_size > 1000
    assert {"meta", "state"} <= set(os.listdir(runs["full"] / "checkpoints" / "6"))
    assert saved_meta(runs["full"], 6)["data_position"] == {"annotation": 6 * 16, "bootstrap": 6 * 8}


def test_resumed_run_equals_uninterrupted_run(runs):
    assert "stopped at step 4/6" in runs["first_half_log"]
    assert "resumed from step 4" in runs["second_half_log"]
    full, resumed = metrics(runs["full"]), metrics(runs["resumed"])
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in range(1, 7):
        assert resumed[step]["data_digest"] == full[step]["data_digest"], f"different batch at step {step}"
        assert resumed[step]["loss"] == full[step]["loss"], f"different loss at step {step}"
    a, b = load_state(runs["full"], 6), load_state(runs["resumed"], 6)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("strategy", ["eight", "fsdp"])
def test_eight_devices_match_one_device(runs, strategy):
    """Data parallel (replicated parameters) and FSDP on 8 fake devices give the 1-device losses and parameters."""
    one, eight = metrics(runs["full"]), metrics(runs[strategy])
    assert sorted(eight) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert eight[step]["data_digest"] == one[step]["data_digest"]
        for key in ("loss", "base_loss", "td_loss"):
            np.testing.assert_allclose(eight[step][key], one[step][key], rtol=1e-5, atol=1e-5)
    a, b = load_state(runs["resumed"], 4), load_state(runs[strategy], 4)  # both stopped at step 4 on purpose
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    assert int(b["step"]) == 4


def test_fsdp_splits_large_arrays_and_replicates_small_ones():
    from rlvis import sharding

    assert sharding.fsdp_spec((64, 128), 8) == jax.sharding.PartitionSpec(None, "data")  # the largest dim first
    assert sharding.fsdp_spec((12, 40), 8) == jax.sharding.PartitionSpec(None, "data")
    assert sharding.fsdp_spec((12, 6), 8) == jax.sharding.PartitionSpec()  # nothing divisible: replicated


def test_impossible_value_stops_before_any_compute_naming_the_field(tmp_path):
    with pytest.raises(
        config_lib.ConfigError,
        match=r"^config.env.views=1 must be at least 2 \(a transition needs two "
        r"views\)$",
    ):
        train(tmp_path / "run", "env.views=1")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_command_reports_config_errors_in_one_line_before_any_compute(tmp_path):
    """`rlvis.main`'s own parsing: an unknown field, a wrong type and an impossible value are each one line on
    stderr, exit code 2, no traceback, no workdir."""
    unknown = run_main(tmp_path / "run", "--config.ab.no_such_key=1")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip().splitlines()[-1] == (
        "rlvis: config error: unknown config field 'no_such_key' in --config.ab.no_such_key=1"
    )
    wrong_type = run_main(tmp_path / "run", "--config.total_steps=many")
    assert wrong_type.returncode == 2 and "Traceback" not in wrong_type.stderr
    assert "--config.total_steps=many" in wrong_type.stderr.strip().splitlines()[-1]
    impossible = run_main(tmp_path / "run", "--config.env.views=1")
    assert impossible.returncode == 2 and "Traceback" not in impossible.stderr
    assert impossible.stderr.strip().splitlines()[-1] == (
        "rlvis: config error: config.env.views=1 must be at least 2 (a transition needs two views)"
    )
    assert not (tmp_path / "run").exists()


def test_resume_with_a_different_model_config_is_refused(runs, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(runs["resumed"], workdir)
    with pytest.raises(config_lib.ConfigError, match="model.decoder_depth: 1 -> 2"):  # would not fit the saved shapes
        train(workdir, *NO_EVAL, "model.decoder_depth=2")


@pytest.mark.parametrize(
    "method", ["simclr", "dino", "ab_dino", "clip", "ab_clip", "mae", "ijepa", "slip", "silc", "clip_aug"]
)
def test_methods_train_from_their_config(tmp_path, method, capsys):
    """Base methods read the annotation stream alone; AB methods read both."""
    run = train(tmp_path, *NO_EVAL, "total_steps=2", config=f"configs/demo.py:tiny,method={method}")
    assert "step 2/2 | loss" in run.stdout
    position = saved_meta(tmp_path, 2)["data_position"]
    if method.startswith("ab_"):
        assert "td_loss" in run.stdout and set(position) == {"annotation", "bootstrap"}
    else:
        assert "td_loss" not in run.stdout and set(position) == {"annotation"}
    assert run.results["config"]["method"] == method
    # Export gives the encoder the method's paper scores: the EMA target for I-JEPA, SiLC, DINO, AB; else online.
    from rlvis import export, methods
    from rlvis.models.ab_model import ABModel

    module, variables = export.load_encoder(str(tmp_path))
    state = load_state(tmp_path, 2)
    expected = "ema_params" if method in ("dino", "ab_dino", "ab_clip", "ijepa", "silc") else "params"
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    model = methods.build_model(load_config(f"configs/demo.py:tiny,method={method}"))
    np.testing.assert_array_equal(
        np.asarray(module.apply(variables, images)),
        np.asarray(model.apply(state[expected], images, method=ABModel.encode)),
    )
    if method in ("mae", "ijepa"):  # no annotations: the tools that need them say so in one line
        from rlvis import search
        from rlvis.evaluators import value_maps

        for main in (search.main, value_maps.main):
            assert f"{method} has no annotation distribution" in usage_error(capsys, main, [f"--workdir={tmp_path}"])


def test_a_partial_oracle_reward_trains_from_the_demo_streams_ground_truth_on_several_devices(tmp_path, monkeypatch):
    from rlvis.objectives import rewards

    seen = []

    def recording(view_boxes, digit_boxes, digit_labels, annotation_labels):
        seen.append((view_boxes.shape, digit_boxes.shape, digit_labels.shape, annotation_labels.shape))
        return oracle(view_boxes, digit_boxes, digit_labels, annotation_labels)

    oracle = rewards.oracle
    monkeypatch.setattr(rewards, "oracle", recording)
    # Half the scenes with the oracle's reward, half with the base model's: the batch is split across devices.
    run = train(tmp_path, *NO_EVAL, "total_steps=2", "ab.reward='oracle:0.5'", devices=8)
    assert "step 2/2 | loss" in run.stdout and run.results["config"]["ab"]["reward"] == "oracle:0.5"
    # Traced once: every bootstrap view, each scene's digit boxes and labels, every annotation's label.
    assert seen == [((8, 3, 4), (8, 4, 4), (8, 4), (16,))]  # tiny: 8 scenes × 3 views, 16 annotations


def _tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    """Read TensorBoard event files (TFRecord framing: length, crc, Event proto, crc) without TensorFlow."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 16 + length
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_metrics_reach_tensorboard_and_the_monitor_runs_at_start_and_end(runs):
    logged = metrics(runs["full"])
    board = _tensorboard_scalars(runs["full"] / "tensorboard" / "metrics")
    assert sorted(board["loss"]) == [1, 2, 3, 4, 5, 6]
    for step in (1, 6):
        np.testing.assert_allclose(board["loss"][step], logged[step]["loss"], rtol=1e-6)
    with open(runs["full"] / "monitor.jsonl") as f:
        monitor = [json.loads(line) for line in f]
    assert [line["step"] for line in monitor] == [0, 6]
    assert {"monitor/knn/digit", "monitor/fewshot5/digit", "monitor/fewshot10/digit"} <= set(monitor[0])
    assert (runs["full"] / "plots" / "monitor.png").stat().st_size > 1000


def test_the_first_step_shows_no_rate_and_tensorboard_gets_no_nan(tiny_run):
    """Step 1 compiles, so it has no images/s yet: the progress line says "—" and TensorBoard gets no point,
    instead of "nan img/s" and tensorboardX's NaN warning (metrics.jsonl keeps its null)."""
    workdir, run = tiny_run
    first = next(line for line in run.stdout.splitlines() if line.startswith("step 1/6 |"))
    assert first.endswith("| — img/s | ETA ?") and not re.search(r"\bnan\b", run.stdout, re.I)
    board = _tensorboard_scalars(workdir / "tensorboard" / "metrics")
    assert sorted(board["images_per_s"]) == [2, 3, 4, 5, 6] and all(v > 0 for v in board["images_per_s"].values())
    assert metrics(workdir)[1]["images_per_s"] is None and metrics(workdir)[2]["images_per_s"] > 0


def test_standalone_evaluator_equals_the_trainer_on_the_same_checkpoint(tiny_copy):
    workdir = tiny_copy
    step, scores = evaluate.evaluate_step(str(workdir))
    with open(workdir / "eval" / "step_6.json") as f:
        evaluated = json.load(f)
    with open(workdir / "results.json") as f:
        trained = json.load(f)["trained"]
    assert step == 6 and evaluated["step"] == 6 and evaluated["scores"] == scores == trained
    assert (workdir / "plots" / "eval.png").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 5"):
        evaluate.evaluate_step(str(workdir), 5)


@pytest.mark.slow
def test_evaluate_command_prints_the_scores_and_names_a_missing_step(tiny_copy):
    workdir = tiny_copy
    result = ok(run_module("rlvis.evaluate", f"--workdir={workdir}"))
    assert "step 6: linear/digit" in result.stdout and (workdir / "eval" / "step_6.json").exists()
    missing = run_module("rlvis.evaluate", f"--workdir={workdir}", "--step=5")
    assert missing.returncode == 2 and "no checkpoint for step 5" in missing.stderr.strip().splitlines()[-1]


def test_value_map_command_draws_the_value_head_over_actions(runs, tmp_path):
    from rlvis.evaluators import value_maps

    out = tmp_path / "map.png"
    value_maps.main([f"--workdir={runs['full']}", f"--out={out}", "--annotation=3", "--grid=5", "--zooms=0.4"])
    assert out.stat().st_size > 5000


def test_rerunning_a_finished_run_is_a_no_op_unless_its_config_changed(tiny_copy):
    workdir = tiny_copy
    before = (workdir / "results.json").read_text()
    again = train(workdir)
    assert "already trained to step 6 of 6" in again.stdout and (workdir / "results.json").read_text() == before
    changed = train(workdir, *NO_EVAL)  # which evaluators run may change on resume
    assert "already trained" not in changed.stdout
    with open(workdir / "results.json") as f:
        assert json.load(f)["trained"] == {}  # evaluated again, with the new (empty) evaluator list


def test_search_command_writes_a_well_formed_trajectory_and_the_measure_table(tiny_copy, tmp_path, capsys):
    from rlvis import search

    workdir = tiny_copy  # --measure writes search_results.json into the workdir
    out = tmp_path / "search.png"
    search.main([f"--workdir={workdir}", f"--out={out}", "--annotation=3", "--steps=3", "--start=0,0,0.8,0.8"])
    with open(tmp_path / "search.json") as f:
        trajectory = json.load(f)
    boxes, scores = np.array(trajectory["boxes"]), np.array(trajectory["scores"])
    assert trajectory["annotation"] == "3" and trajectory["step"] == 6 and trajectory["encoder_passes"] == 3
    assert boxes.shape == (4, 4) and scores.shape == (3,)
    np.testing.assert_allclose(boxes[0], [0, 0, 0.8, 0.8])
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, :2] + boxes[:, 2:] <= 1 + 1e-4)
    assert np.all((scores > 0) & (scores < 1)) and out.stat().st_size > 5000
    assert "step 3: box" in capsys.readouterr().out
    assert usage_error(capsys, search.main, [f"--workdir={workdir}", "--annotation=kite"]).startswith(
        "rlvis: unknown annotation 'kite'"
    )

    search.main([f"--workdir={workdir}", "--measure", "--scenes=6", "--steps=2"])
    with open(workdir / "search_results.json") as f:
        rows = {row["policy"] + str(row["temperature"]): row for row in json.load(f)}
    assert set(rows) == {"value0.0", "value0.1", "brute_force0.0", "random1.0", "no move (full view)0.0"}
    assert rows["brute_force0.0"]["encoder_passes"] == 2 * 18 and rows["value0.0"]["encoder_passes"] == 2
    assert all(0.0 <= row["success"] <= 1.0 and row["scenes"] == 6 for row in rows.values())
    assert "drop --image, --step and --annotation" in usage_error(
        capsys, search.main, [f"--workdir={workdir}", "--measure", "--annotation=3"]
    )


def test_watch_evaluates_every_checkpoint_once_and_stops_after_the_last(tiny_copy, capsys):
    workdir = tiny_copy
    shutil.rmtree(workdir / "eval", ignore_errors=True)
    evaluate.watch(str(workdir), poll_seconds=1)
    assert sorted(os.listdir(workdir / "eval")) == ["step_3.json", "step_6.json"]  # the two kept checkpoints
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed if line.startswith("step ")] == ["step 3", "step 6"]
