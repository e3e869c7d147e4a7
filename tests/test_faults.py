"""Fault injection on the real trainer (tiny demo config): preemption signals and kill -9 at several moments on the
command itself (`python -m rlvis.main` subprocesses, slow tier); in this process a half-written checkpoint, NaN,
another device layout, a changed config, bad configs and an unwritable workdir.

Each test asserts what the user sees and that nothing was lost: a resumed run ends bit-identical (same device
layout) to an uninterrupted one.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlvis.methods.simclr
from rlvis import checkpoints, config_lib, storage
from tests.runs import NO_EVAL, ROOT, load_state, main_command, metrics, run_main, subprocess_env, train

STEPS, EVERY = 30, 10  # the command-line tests: enough steps between saves to be killed in the middle
FAST = [
    f"--config.total_steps={STEPS}",
    f"--config.checkpoint_every={EVERY}",
    "--config.log_every=1",
    *[f"--config.{override}" for override in NO_EVAL],
    "--config.keep_checkpoints=5",
]
TINY_STEPS = 6  # the in-process tests: the tiny config as it is (saves at 3 and 6), compiled once per session


def start(workdir, *flags) -> subprocess.Popen:
    return subprocess.Popen(
        main_command(workdir, *FAST, *flags),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(workdir, step: int, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until metrics.jsonl (local or on a bucket) has logged `step` (the trainer is mid-run)."""
    path, deadline = storage.path(storage.join(str(workdir), "metrics.jsonl")), time.time() + timeout
    while time.time() < deadline:
        if path.exists() and any(json.loads(line)["step"] >= step for line in path.read_text().splitlines()):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05 if storage.is_remote(workdir) else 0.005)
    raise TimeoutError(f"step {step} never logged")


def assert_same_run(workdir, reference, steps: int = STEPS, exact: bool = True) -> None:
    """Final parameters, optimizer state and every logged batch digest equal the uninterrupted run's."""
    got, want = load_state(workdir, steps), load_state(reference, steps)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    logged, wanted = metrics(workdir), metrics(reference)
    assert sorted(logged) == list(range(1, steps + 1))
    assert [logged[s]["data_digest"] for s in logged] == [wanted[s]["data_digest"] for s in logged]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted command-line run the killed ones must end up equal to."""
    workdir = tmp_path_factory.mktemp("faults") / "uninterrupted"
    result = run_main(workdir, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """The uninterrupted in-process run (tiny config, 1 device, no evaluation)."""
    workdir = tmp_path_factory.mktemp("faults") / "tiny"
    train(workdir, *NO_EVAL)
    return workdir


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_kill_9_on_a_bucket_workdir_resumes_from_the_bucket(reference, gcs_bucket):
    """`--workdir=gs://…` (a GCS API server on loopback): killed after a committed checkpoint, the same command
    resumes from the bucket and ends bit-identical to the uninterrupted local run."""
    workdir = f"{gcs_bucket}/runs/killed"
    process = start(workdir)
    wait_for_step(workdir, EVERY + 3, process)
    while EVERY not in checkpoints.checkpoint_steps(workdir):  # committed: Orbax's marker is written last
        assert process.poll() is None
        time.sleep(0.05)
    process.kill()
    process.wait()
    again = run_main(workdir, *FAST)
    assert again.returncode == 0 and "resumed from step " in again.stdout, again.stderr[-3000:]
    assert_same_run(workdir, reference)


@pytest.mark.slow
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


def test_a_half_written_checkpoint_is_never_loaded(tiny_reference, tmp_path):
    """What a kill mid-save leaves, planted by hand: the last step copied under Orbax's temporary name, its state
    files truncated. The resumed run starts from the last committed step and ends equal to the uninterrupted run."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_reference, workdir)
    directory = workdir / "checkpoints"
    shutil.move(directory / str(TINY_STEPS), directory / f"{TINY_STEPS}.orbax-checkpoint-tmp-1234567890")
    for state_file in (directory / f"{TINY_STEPS}.orbax-checkpoint-tmp-1234567890" / "state").iterdir():
        if state_file.is_file():
            state_file.write_bytes(b"")
    assert "resumed from step 3" in train(workdir, *NO_EVAL).stdout
    assert_same_run(workdir, tiny_reference, TINY_STEPS)


@pytest.fixture
def nan_at_step_5(monkeypatch):
    """Fault injection: the (AB_)SimCLR loss of step 5 (and so its gradients) becomes NaN, in this process."""
    loss = rlvis.methods.simclr.loss

    def poisoned(*args, step, **kwargs):
        value, aux = loss(*args, step=step, **kwargs)
        return value * jnp.where(step + 1 == 5, jnp.nan, 1.0), aux

    monkeypatch.setattr(rlvis.methods.simclr, "loss", poisoned)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tiny_reference, tmp_path, nan_at_step_5
):
    workdir = tmp_path / "run"
    with pytest.raises(FloatingPointError) as error:
        train(workdir, *NO_EVAL)
    assert str(error.value) == (
        "non-finite grad_norm at step 5 (checked at step 5); the last checkpoint is the last good state"
    )
    assert sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()) == [3]
    good, want = load_state(workdir, 3), load_state(tiny_reference, 3)
    for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(want)):  # the injected loss compiles a different
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # program: equal up to float rounding


def test_skip_nonfinite_undoes_the_step_counts_it_and_trains_on(tmp_path, nan_at_step_5):
    workdir = tmp_path / "run"
    train(workdir, *NO_EVAL, "optim.skip_nonfinite=True")
    logged = metrics(workdir)
    assert [s for s in logged if logged[s]["nonfinite_skipped"]] == [5]
    assert all(np.isfinite(logged[s]["loss"]) for s in logged if s != 5)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(load_state(workdir, TINY_STEPS)))


def test_a_checkpoint_moves_between_8_and_1_devices_with_its_data_position(tiny_reference, tmp_path):
    """8 fake devices → 1 → 8 in one process (another *process* count: tests/test_multihost.py)."""
    workdir = tmp_path / "run"
    train(workdir, *NO_EVAL, stop_at_step=2, devices=8)
    assert "resumed from step 2" in train(workdir, *NO_EVAL, stop_at_step=4).stdout
    assert "resumed from step 4" in train(workdir, *NO_EVAL, devices=8).stdout
    assert_same_run(workdir, tiny_reference, TINY_STEPS, exact=False)  # reductions are ordered differently


def test_changed_config_is_refused_naming_the_field_unless_explicitly_allowed(tiny_reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_reference, workdir)
    shutil.rmtree(workdir / "checkpoints" / str(TINY_STEPS))
    with pytest.raises(config_lib.ConfigError, match=r"ab.gamma: 0.0 -> 0.5.*--allow_config_change"):
        train(workdir, *NO_EVAL, "ab.gamma=0.5")
    allowed = train(workdir, *NO_EVAL, "ab.gamma=0.5", allow_config_change=True)
    assert "resuming despite config changes (--allow_config_change): ab.gamma: 0.0 -> 0.5" in allowed.stdout


def test_a_checkpoint_of_an_older_format_is_refused_naming_its_version(tiny_reference, tmp_path):
    """A checkpoint written before checkpoint format 2 (its metadata has no `format`) does not fit today's network:
    resuming it is one line naming both versions, before any step; nothing in the workdir is changed."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_reference, workdir)
    shutil.rmtree(workdir / "checkpoints" / str(TINY_STEPS))
    metadata = workdir / "checkpoints" / "3" / "meta" / "metadata"
    meta = json.loads(metadata.read_text())
    assert meta["format"] == checkpoints.FORMAT == 2  # every save carries it
    del meta["format"]  # as an rlvis before format 2 saved it
    metadata.write_text(json.dumps(meta))
    logged = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(
        checkpoints.FormatError,
        match=r"^step 3 in .*: checkpoint format 1, this rlvis reads "
        r"format 2; train a new run",
    ):
        train(workdir, *NO_EVAL)
    assert (workdir / "metrics.jsonl").read_text() == logged
    assert sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()) == [3]


FOLDERS = "configs/demo.py:tiny,data=image_folder"


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        (
            "configs/demo.py:tiny",
            ["batch.bootstrap=12"],
            "config.batch.bootstrap=12 must be a positive multiple of the 8 devices",
        ),
        ("configs/demo.py:tiny", ["env.view_size=128"], "config.env.view_size=128 exceeds config.data.scene_canvas=64"),
        (
            "configs/demo.py:tiny",
            ["data.format='image_folder'"],
            "config.data.format='image_folder': this config holds the embedded demo's data fields only; build it with the "
            "file fields (configs/demo.py:data=image_folder, or configs/cc12m.py)",
        ),
        (FOLDERS, ["data.path='/no/such/folder'"], "config.data.path='/no/such/folder' does not exist"),
        (
            FOLDERS,
            ["data.path='gs://bucket/frames'"],
            "config.data.path='gs://bucket/frames': image_folder data is read from local or mounted paths (e.g. gcsfuse); "
            "of the file formats, webdataset tars are read from buckets",
        ),
        (
            "configs/demo.py:tiny",
            ["ab.reward='oracle:2'"],
            "config.ab.reward='oracle:2' must be 'base', 'oracle', 'oracle:F' or 'shuffled_oracle:F' with F in [0, 1]",
        ),
    ],
)
def test_bad_configs_are_one_line_before_any_compute(config, overrides, message, tmp_path):
    with pytest.raises(config_lib.ConfigError) as error:
        train(tmp_path / "run", *overrides, config=config, devices=8)
    assert str(error.value) == message
    assert not (tmp_path / "run").exists()


def test_unwritable_workdir_is_a_start_up_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(config_lib.ConfigError, match=f"^--workdir={blocker / 'run'} is not writable"):
        train(blocker / "run")
