"""`--profile=START,COUNT`: a jax.profiler trace of chosen steps, with the trainer's host phases named in it."""

import glob
import os

import pytest

from rlvis import main, profiling
from rlvis.errors import ConfigError
from tests.runs import NO_EVAL, metrics, train, usage_error


def test_a_profiled_run_traces_the_chosen_steps_and_names_its_phases_without_changing_the_run(tmp_path):
    plain = train(tmp_path / "plain", *NO_EVAL, "total_steps=4", "checkpoint_every=2")
    profiled = train(tmp_path / "profiled", *NO_EVAL, "total_steps=4", "checkpoint_every=2", profile=(1, 2))
    assert "profile of steps 2–3 written to" in profiled.stdout
    run_folder = tmp_path / "profiled" / "profile" / "plugins" / "profile"
    assert glob.glob(str(run_folder / "*" / "*.xplane.pb")), os.listdir(tmp_path / "profiled")  # TensorBoard's
    seconds = profiling.phase_seconds(str(tmp_path / "profiled" / "profile"))
    assert seconds["data"] > 0 and seconds["update"] > 0 and seconds["checkpoint"] > 0  # step 2 saves
    # Tracing observes: the same losses, step by step, as the run without it.
    for step, row in metrics(tmp_path / "plain").items():
        assert row["loss"] == metrics(tmp_path / "profiled")[step]["loss"], step
    assert plain.results["trained"] == profiled.results["trained"]


def test_no_trace_without_the_flag_and_a_clear_error_for_a_bad_one(tmp_path, capsys):
    profiler = profiling.StepProfiler(str(tmp_path), 0, 0)
    profiler.before_step(0)
    assert not profiler.tracing and not (tmp_path / "profile").exists()
    with pytest.raises(ConfigError, match="must be local"):
        profiling.StepProfiler("gs://bucket/run", 0, 5)
    with pytest.raises(ConfigError, match=">= 0"):
        profiling.StepProfiler(str(tmp_path), -1, 5)
    line = usage_error(capsys, main.main, ["--config=configs/demo.py:tiny", f"--workdir={tmp_path}", "--profile=3"])
    assert line == "rlvis: config error: --profile=3 must be START,COUNT"
    with pytest.raises(FileNotFoundError, match="perfetto_trace"):
        profiling.phase_seconds(str(tmp_path))
