"""Training metrics: one JSON line per log step in `workdir/<name>.jsonl`, the same scalars as TensorBoard event
files in `workdir/tensorboard/`, and a progress line on stdout.

Only process 0 writes. clu's and flax's TensorBoard writers import TensorFlow; tensorboardX writes the same event
files without it (`tensorboard --logdir=WORKDIR/tensorboard`).
"""

import json
import math
import os
import time

import jax
import tensorboardX


class MetricWriter:
    def __init__(self, workdir: str, name: str = "metrics"):
        self.path = os.path.join(workdir, f"{name}.jsonl")
        self.enabled = jax.process_index() == 0
        self._tensorboard_dir = os.path.join(workdir, "tensorboard", name)
        self._tensorboard, self._purge_step = None, None

    def drop_after(self, step: int) -> None:
        """Forget lines logged after `step` (a resumed run repeats those steps; each is logged once)."""
        self._purge_step = step + 1  # TensorBoard hides the lost run's events from this step on
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if json.loads(line)["step"] <= step]
        with open(self.path, "w") as f:
            f.writelines(kept)

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
            f.write(json.dumps({"step": step, **clean}) + "\n")  # NaN is not JSON: written as null
        if self._tensorboard is None:  # opened lazily: a run that logs nothing leaves no empty event file
            self._tensorboard = tensorboardX.SummaryWriter(self._tensorboard_dir, purge_step=self._purge_step)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and key != "data_digest":
                self._tensorboard.add_scalar(key, value, step)
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Throughput:
    """Images/s and ETA over the steps this process has run, excluding the first (compilation)."""

    def __init__(self, first_step: int, total_steps: int, images_per_step: int):
        self.total_steps, self.images_per_step = total_steps, images_per_step
        self.start_step, self.start_time = first_step, None

    def tick(self, step: int) -> None:
        if self.start_time is None:  # the first step compiles: measure from its end
            self.start_step, self.start_time = step, time.perf_counter()

    def rates(self, step: int) -> tuple[float, float]:
        """(images per second, seconds left)."""
        if self.start_time is None or step <= self.start_step:
            return float("nan"), float("nan")
        steps_per_s = (step - self.start_step) / (time.perf_counter() - self.start_time)
        return steps_per_s * self.images_per_step, (self.total_steps - step) / steps_per_s


def progress_line(step: int, total: int, metrics: dict, images_per_s: float, eta_s: float) -> str:
    terms = " ".join(f"{k} {metrics[k]:.3f}" for k in ("loss", "base_loss", "td_loss") if k in metrics)
    return f"step {step}/{total} | {terms} | {images_per_s:.0f} img/s | ETA {format_duration(eta_s)}"
