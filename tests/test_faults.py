"""Fault injection on the real trainer (`python -m rlvis.main` subprocesses, tiny demo config): preemption signals,
kill -9 at several moments, a half-written checkpoint, NaN, another device layout, a changed config, bad disks.

Each test asserts what the user sees and that nothing was lost: a resumed run ends bit-identical (same device
layout) to an uninterrupted one.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.test_train import ROOT, load_state, metrics, run_main

STEPS, EVERY = 30, 10
FAST = [f"--config.total_steps={STEPS}", f"--config.checkpoint_every={EVERY}", "--config.log_every=1",
        "--config.eval.final=()", "--config.eval.monitor=()", "--config.keep_checkpoints=5"]


def start(workdir, *flags) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "rlvis.main", "--config=configs/demo.py:tiny", f"--workdir={workdir}", *FAST, *flags]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(workdir, step: int, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until metrics.jsonl has logged `step` (the trainer is mid-run)."""
    path, deadline = os.path.join(workdir, "metrics.jsonl"), time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and any(json.loads(line)["step"] >= step for line in open(path)):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise TimeoutError(f"step {step} never logged")


def assert_same_run(workdir, reference, exact: bool = True) -> None:
    """Final parameters, optimizer state and every logged batch digest equal the uninterrupted run's."""
    got, want = load_state(workdir, STEPS), load_state(reference, STEPS)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    logged, wanted = metrics(workdir), metrics(reference)
    assert sorted(logged) == list(range(1, STEPS + 1))
    assert [logged[s]["data_digest"] for s in logged] == [wanted[s]["data_digest"] for s in logged]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults") / "uninterrupted"
    result = run_main(workdir, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_preemption_signal_saves_exits_zero_and_the_same_command_resumes(sig, reference, tmp_path):
    workdir = tmp_path / "run"
    process = start(workdir)
    wait_for_step(workdir, 4, process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(f"rlvis: {sig.name} received: stopped at step ") and "checkpoint saved" in last
    stopped = int(last.split("stopped at step ")[1].split("/")[0])
    assert 4 <= stopped < STEPS and os.path.isdir(workdir / "checkpoints" / str(stopped))
    resumed = run_main(workdir, *FAST)
    assert resumed.returncode == 0 and f"resumed from step {stopped}" in resumed.stdout
    assert_same_run(workdir, reference)


def test_kill_9_before_the_first_checkpoint_starts_over(reference, tmp_path):
    workdir = tmp_path / "run"
    process = start(workdir)
    wait_for_step(workdir, 2, process)
    process.kill()
    process.wait()
    assert not any(name.isdigit() for name in os.listdir(workdir / "checkpoints"))
    again = run_main(workdir, *FAST)
    assert again.returncode == 0 and "resumed" not in again.stdout
    assert_same_run(workdir, reference)


def test_kill_9_between_checkpoints_resumes_from_the_last_committed_one(reference, tmp_path):
    workdir = tmp_path / "run"
    process = start(workdir)
    wait_for_step(workdir, EVERY + 3, process)
    while not (workdir / "checkpoints" / str(EVERY)).exists():  # saves commit asynchronously: wait for step 10's
        assert process.poll() is None
        time.sleep(0.005)
    process.kill()
    process.wait()
    committed = sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
    assert committed and committed[-1] < STEPS
    again = run_main(workdir, *FAST)
    assert again.returncode == 0 and f"resumed from step {committed[-1]}" in again.stdout
    assert_same_run(workdir, reference)  # metrics logged after the checkpoint were dropped and redone


def test_kill_9_during_a_save_never_loads_the_half_written_checkpoint(reference, tmp_path):
    """Kill the moment a save's temporary folder appears; and, so the test never depends on that timing, also
    plant a half-written newer step (a committed step copied, renamed as Orbax's temporary, files removed)."""
    workdir = tmp_path / "run"
    process = start(workdir)
    directory = workdir / "checkpoints"
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if directory.exists() and any("tmp" in name for name in os.listdir(directory)):
            process.kill()
            break
    process.wait()
    committed = sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    if not committed:  # killed during the very first save
        shutil.rmtree(workdir)
        assert run_main(workdir, *FAST, f"--stop_at_step={EVERY}").returncode == 0
        committed = [EVERY]
    last = committed[-1]
    if last < STEPS:
        partial = directory / f"{last + EVERY}.orbax-checkpoint-tmp-1234567890"
        shutil.copytree(directory / str(last), partial)
        for state_file in (partial / "state").iterdir():
            if state_file.is_file():
                state_file.write_bytes(b"")  # truncated, as a kill mid-write leaves it
        again = run_main(workdir, *FAST)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"resumed from step {last}" in again.stdout
        assert_same_run(workdir, reference)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(reference, tmp_path):
    workdir = tmp_path / "run"
    result = run_main(workdir, *FAST, "--config.debug.nan_loss_at_step=15")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "rlvis: training stopped: non-finite grad_norm at step 15 (checked at step 15); the last checkpoint is the "
        "last good state")
    assert sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()) == [10]
    good, want = load_state(workdir, 10), load_state(reference, 10)
    for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(want)):  # the injection hook compiles a different
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)    # program: equal up to float rounding


def test_skip_nonfinite_undoes_the_step_counts_it_and_trains_on(tmp_path):
    workdir = tmp_path / "run"
    result = run_main(workdir, *FAST, "--config.debug.nan_loss_at_step=15", "--config.optim.skip_nonfinite=True")
    assert result.returncode == 0, result.stderr[-3000:]
    logged = metrics(workdir)
    assert [s for s in logged if logged[s]["nonfinite_skipped"]] == [15]
    assert all(np.isfinite(logged[s]["loss"]) for s in logged if s != 15)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(load_state(workdir, STEPS)))


def test_a_checkpoint_moves_between_8_and_1_devices_with_its_data_position(reference, tmp_path):
    """8 fake devices → 1 → 8: one process throughout, so Grain's per-process iterator state carries over (a
    different *process* count needs Grain's elastic iterator, not used here)."""
    workdir = tmp_path / "run"
    assert run_main(workdir, *FAST, f"--stop_at_step={EVERY}", devices=8).returncode == 0
    middle = run_main(workdir, *FAST, f"--stop_at_step={2 * EVERY}")
    assert middle.returncode == 0 and f"resumed from step {EVERY}" in middle.stdout
    last = run_main(workdir, *FAST, devices=8)
    assert last.returncode == 0 and f"resumed from step {2 * EVERY}" in last.stdout
    assert_same_run(workdir, reference, exact=False)  # reductions are ordered differently across layouts


def test_changed_config_is_refused_naming_the_field_unless_explicitly_allowed(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints" / str(STEPS))
    refused = run_main(workdir, *FAST, "--config.ab.gamma=0.5")
    assert refused.returncode == 2 and "ab.gamma: 0.0 -> 0.5" in refused.stderr.strip().splitlines()[-1]
    assert "--allow_config_change" in refused.stderr
    allowed = run_main(workdir, *FAST, "--config.ab.gamma=0.5", "--allow_config_change")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "resuming despite config changes (--allow_config_change): ab.gamma: 0.0 -> 0.5" in allowed.stdout


@pytest.mark.parametrize("flags, message", [
    (["--config.batch.bootstrap=12"], "config.batch.bootstrap=12 must be a positive multiple of the 8 devices"),
    (["--config.env.view_size=128"], "config.env.view_size=128 exceeds config.data.scene_canvas=64"),
    (["--config.data.format=image_folder", "--config.data.path=/no/such/folder"],
     "config.data.path='/no/such/folder' does not exist"),
])
def test_bad_configs_are_one_line_before_any_compute(flags, message, tmp_path):
    result = run_main(tmp_path / "run", *flags, devices=8)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"rlvis: config error: {message}"
    assert not (tmp_path / "run").exists()


def test_unwritable_workdir_is_a_start_up_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_main(blocker / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rlvis: config error: --workdir={blocker / 'run'} is not writable")
