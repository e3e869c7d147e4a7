"""Real JAX processes on localhost (CPU, Gloo collectives, a loopback coordinator): two train in lockstep, write one
set of metrics and one checkpoint, match a single process that feeds the same global batches, and stop together
when only one of them is signalled; a run resumes on 1, 2 or 4 processes from another count's checkpoint."""

import json
import os
import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from configs import demo
from rlvis import sharding, train
from rlvis.data import pipeline, sources
from tests.runs import NO_EVAL, ROOT, load_state, main_command, metrics, subprocess_env

STEPS = 4
FLAGS = [
    f"--config.total_steps={STEPS}",
    "--config.checkpoint_every=2",
    "--config.log_every=1",
    *[f"--config.{override}" for override in NO_EVAL],
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_processes(workdir, flags: list[str], count: int = 2) -> list[subprocess.Popen]:
    """The real command as the `count` processes of one job, with a fresh loopback coordinator."""
    port = _free_port()
    return [
        subprocess.Popen(
            main_command(workdir, *flags),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(
                subprocess_env(),
                RLVIS_COORDINATOR_ADDRESS=f"localhost:{port}",
                RLVIS_NUM_PROCESSES=str(count),
                RLVIS_PROCESS_ID=str(index),
            ),
        )
        for index in range(count)
    ]


def finish(processes: list[subprocess.Popen]) -> list[tuple[str, str]]:
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
    return outputs


@pytest.mark.slow
def test_two_processes_train_in_lockstep_and_match_one_process_on_the_same_global_batch(tmp_path):
    workdir = tmp_path / "run"
    outputs = finish(start_processes(workdir, FLAGS))
    assert "step 4/4" in outputs[0][0] and "step " not in outputs[1][0]  # only process 0 reports
    with open(workdir / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4]  # one set of metrics
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    meta = json.loads((workdir / "checkpoints" / "4" / "meta" / "metadata").read_text())
    assert meta["data_position"] == {"annotation": 4 * 16, "bootstrap": 4 * 8}  # one number per stream, not per host

    # One process, one device, fed the concatenation of what the two processes read: the same global batch.
    config = demo.get_config("tiny")
    config.total_steps, config.checkpoint_every, config.log_every = STEPS, 2, 1
    mesh = sharding.make_mesh(jax.devices()[:1])
    step = train.make_train_step(config, mesh, sources.image_channels(config))
    state = step.init_fn(step.init_key)
    streams = [{name: iter(ds) for name, ds in pipeline.training_streams(config, index, 2).items()} for index in (0, 1)]
    losses = []
    for _ in range(STEPS):
        halves = [pipeline.next_batches(s) for s in streams]
        batch = jax.tree.map(lambda a, b: np.concatenate([a, b]), *halves)
        state, step_metrics = step.update_fn(state, sharding.global_batch(batch, mesh))
        losses.append(float(step_metrics["loss"]))
    logged = metrics(workdir)
    np.testing.assert_allclose([logged[s]["loss"] for s in range(1, STEPS + 1)], losses, rtol=1e-5)
    two = load_state(workdir, STEPS)
    for a, b in zip(jax.tree.leaves(two["params"]), jax.tree.leaves(jax.device_get(state["params"]))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_after_the_same_step_at_a_log_step(tmp_path):
    """SIGTERM reaches process 1 only (as a preemption notice can reach hosts one by one): the processes agree at
    the next log step, both save and exit 0, and the same command resumes both to the end."""
    workdir, steps = tmp_path / "run", 60
    flags = [
        f"--config.total_steps={steps}",
        "--config.checkpoint_every=20",
        "--config.log_every=5",
        *[f"--config.{override}" for override in NO_EVAL],
    ]
    processes = start_processes(workdir, flags)
    deadline = time.time() + 600
    while not (workdir / "metrics.jsonl").exists() or not (workdir / "metrics.jsonl").read_text():
        assert time.time() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    processes[1].send_signal(signal.SIGTERM)
    outputs = finish(processes)
    last = outputs[0][0].strip().splitlines()[-1]
    stopped = int(last.split("stopped at step ")[1].split("/")[0])
    assert stopped < steps and stopped % 5 == 0, last  # a log step: the only steps where processes agree
    assert sorted(os.listdir(workdir / "checkpoints"))[-1] == str(stopped)

    outputs = finish(start_processes(workdir, flags))
    assert f"resumed from step {stopped}" in outputs[0][0]
    assert sorted(metrics(workdir)) == list(range(5, steps + 1, 5))  # every log step once, none lost or repeated


@pytest.mark.slow
def test_a_run_saved_by_2_processes_resumes_on_1_and_on_4_and_back_with_the_uninterrupted_batches(tmp_path):
    """2 processes train steps 1–2, 1 process steps 3–4, 4 processes steps 5–6, 2 processes steps 7–8, each leg
    resuming the last one's checkpoint. Each global batch is a function of the saved position alone, so every
    step's loss matches one process that reads the same 8 steps without stopping (to the float error of summing
    over another number of devices), and nothing is read twice or skipped."""
    flags = [
        "--config.total_steps=8",
        "--config.checkpoint_every=2",
        "--config.log_every=1",
        *[f"--config.{override}" for override in NO_EVAL],
    ]
    workdir = tmp_path / "elastic"
    previous = None
    for count, stop in ((2, 2), (1, 4), (4, 6), (2, 8)):
        outputs = finish(start_processes(workdir, [*flags, f"--stop_at_step={stop}"], count))
        if previous:
            assert (
                f"resumed from step {stop - 2} in {workdir} (saved by {previous} processes, resumed on {count})"
                in outputs[0][0]
            )
        previous = count
        meta = json.loads((workdir / "checkpoints" / str(stop) / "meta" / "metadata").read_text())
        assert meta["process_count"] == count and meta["data_position"]["bootstrap"] == stop * 8
    reference = tmp_path / "reference"
    finish(start_processes(reference, flags, 1))
    want, got = metrics(reference), metrics(workdir)
    assert sorted(got) == list(range(1, 9))
    np.testing.assert_allclose(
        [got[s]["loss"] for s in range(1, 9)], [want[s]["loss"] for s in range(1, 9)], rtol=1e-5
    )  # measured: at most 2e-7
