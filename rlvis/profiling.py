"""A `jax.profiler` trace of a few training steps, for TensorBoard's profile plugin or Perfetto.

    python -m rlvis.main --config=configs/demo.py --workdir=runs/demo --profile=100,5

traces steps 101–105 into WORKDIR/profile: `plugins/profile/<run>/*.xplane.pb` (TensorBoard with
`tensorboard-plugin-profile`: `tensorboard --logdir=WORKDIR/profile`) and `perfetto_trace.json.gz` (open it at
ui.perfetto.dev). The trainer names what it does on the host in the trace (`data`, `update`, `log`, `monitor`,
`checkpoint`), so the host's share of a step shows beside the device's. The steps after a warm-up are the ones
worth tracing: the first includes compilation.
"""

import glob
import gzip
import json
import os
from collections import defaultdict

import jax

from rlvis import storage
from rlvis.errors import ConfigError

PHASES = ("data", "update", "log", "monitor", "checkpoint")  # the trainer's annotations, in loop order


class StepProfiler:
    """Traces the steps after `start` completed steps, `count` of them; a no-op when `count` is 0."""

    def __init__(self, workdir: str, start: int = 0, count: int = 0):
        if count and storage.is_remote(workdir):
            raise ConfigError(f"--profile writes its trace into the workdir, which must be local ({workdir})")
        if count < 0 or start < 0:
            raise ConfigError(f"--profile={start},{count}: the first step and the count must be >= 0")
        self.directory = os.path.join(str(workdir), "profile")
        self.start, self.stop, self.tracing = start, start + count, False

    def before_step(self, done: int) -> None:
        """Called with the number of steps done, before the next one."""
        if done == self.start and self.stop > self.start and jax.process_index() == 0:
            options = jax.profiler.ProfileOptions()
            options.python_tracer_level = 0  # every Python call traced: hundreds of MB a step, and a truncated trace
            jax.profiler.start_trace(self.directory, create_perfetto_trace=True, profiler_options=options)
            self.tracing = True

    def after_step(self, done: int, state) -> None:
        """Ends the trace once the last traced step has finished on the device."""
        if self.tracing and done >= self.stop:
            self.close(state)

    def close(self, state=None) -> None:
        """Ends the trace, after `state` is ready on the device when given."""
        if self.tracing:
            if state is not None:
                jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.tracing = False
            print(f"rlvis: profile of steps {self.start + 1}–{self.stop} written to {self.directory}", flush=True)


def phase_seconds(directory: str) -> dict[str, float]:
    """Seconds the host spent in each of the trainer's phases in the newest Perfetto trace under `directory` (the
    sum over the traced steps), for a breakdown without opening a viewer."""
    traces = sorted(glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"), recursive=True))
    if not traces:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {directory}")
    with gzip.open(traces[-1], "rt") as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    seconds: dict[str, float] = defaultdict(float)
    for event in events:
        name = str(event.get("name", "")).split("#")[0]
        if event.get("ph") == "X" and name in PHASES:
            seconds[name] += event.get("dur", 0) / 1e6
    return dict(seconds)
