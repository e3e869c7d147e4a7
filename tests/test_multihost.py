"""Two real JAX processes on localhost (CPU, Gloo collectives, a loopback coordinator) train in lockstep, write one
set of metrics and one checkpoint, and match a single process that feeds the same global batches."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from configs import demo
from rlvis import sharding, train
from rlvis.data import pipeline
from tests.test_train import ROOT, load_state, metrics

STEPS = 4
FLAGS = [f"--config.total_steps={STEPS}", "--config.checkpoint_every=2", "--config.log_every=1",
         "--config.eval.final=()", "--config.eval.monitor=()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_in_lockstep_and_match_one_process_on_the_same_global_batch(tmp_path):
    workdir, port = tmp_path / "run", _free_port()
    processes = []
    for index in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", RLVIS_COORDINATOR_ADDRESS=f"localhost:{port}",
                   RLVIS_NUM_PROCESSES="2", RLVIS_PROCESS_ID=str(index))
        env.pop("XLA_FLAGS", None)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "rlvis.main", "--config=configs/demo.py:tiny", f"--workdir={workdir}", *FLAGS],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
    assert "step 4/4" in outputs[0][0] and "step " not in outputs[1][0]  # only process 0 reports
    with open(workdir / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2, 3, 4]  # one set of metrics
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(
        os.listdir(workdir / "checkpoints" / "4" / "annotation"))  # each process saved its own data position

    # One process, one device, fed the concatenation of what the two processes read: the same global batch.
    config = demo.get_config("tiny")
    config.total_steps, config.checkpoint_every, config.log_every = STEPS, 2, 1
    mesh = sharding.make_mesh()
    step = train.make_train_step(config, mesh, pipeline.image_channels(config))
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
