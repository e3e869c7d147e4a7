"""Training metrics: one JSON line per log step in `workdir/<name>.jsonl`, the same scalars as TensorBoard event
files in `workdir/tensorboard/`, and a progress line on stdout.

Only process 0 writes. clu's and flax's TensorBoard writers import TensorFlow; tensorboardX writes the same event
files without it (`tensorboard --logdir=WORKDIR/tensorboard`), locally or to a gs:// / s3:// workdir.
"""

import json
import math
import time

import io

import jax
import tensorboardX
from tensorboardX import record_writer

from rlvis import storage


class BucketEventFile:
    """tensorboardX's event file on a bucket, through the same path library as every other file. An object cannot
    be appended to, so each flush rewrites the current part; a part past `part_bytes` is left as it is and the
    next events go to a new part (TensorBoard reads every `*tfevents*` file of a folder), so a long run does not
    re-upload its whole history at every log step."""

    part_bytes = 1 << 20

    def __init__(self, location: str):
        self.location, self.part, self.buffer, self.dirty = location, 0, io.BytesIO(), False

    def write(self, data: bytes) -> None:
        self.buffer.write(data)
        self.dirty = True

    def flush(self) -> None:
        if not self.dirty:
            return
        name = self.location if self.part == 0 else f"{self.location}.part{self.part:05d}"  # sorts in order
        storage.write_bytes(name, self.buffer.getvalue())
        self.dirty = False
        if self.buffer.tell() > self.part_bytes:
            self.part, self.buffer = self.part + 1, io.BytesIO()

    def close(self) -> None:
        self.flush()


class _BucketEventFiles:
    def open(self, location: str) -> BucketEventFile:
        return BucketEventFile(location)

    def directory_check(self, location: str) -> None:
        pass  # a bucket has no folders to create


for _scheme in ("gs", "s3"):  # instead of tensorboardX's own gs writer (a second GCS client that retries at exit)
    record_writer.register_writer_factory(_scheme, _BucketEventFiles())


class MetricWriter:
    def __init__(self, workdir: str, name: str = "metrics"):
        self.path = storage.join(workdir, f"{name}.jsonl")
        self.enabled = jax.process_index() == 0
        self._log = storage.AppendLog(self.path)
        self._tensorboard_dir = storage.join(workdir, "tensorboard", name)
        self._tensorboard, self._purge_step = None, None

    def drop_after(self, step: int) -> None:
        """Forget lines logged after `step` (a resumed run repeats those steps; each is logged once)."""
        self._purge_step = step + 1  # TensorBoard hides the lost run's events from this step on
        if not self.enabled:
            return
        lines = self._log.read_lines()
        if lines:
            self._log.replace([line for line in lines if json.loads(line)["step"] <= step])

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
        self._log.append(json.dumps({"step": step, **clean}) + "\n")  # NaN is not JSON: written as null
        if self._tensorboard is None:  # opened lazily: a run that logs nothing leaves no empty event file
            self._tensorboard = tensorboardX.SummaryWriter(self._tensorboard_dir, purge_step=self._purge_step)
        for key, value in clean.items():  # a non-finite value (no rate yet at the first step) is left out, as in JSON
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
        """(images per second, seconds left); NaN until a step after the first (compiling) one has been timed."""
        if self.start_time is None or step <= self.start_step:
            return float("nan"), float("nan")
        steps_per_s = (step - self.start_step) / (time.perf_counter() - self.start_time)
        return steps_per_s * self.images_per_step, (self.total_steps - step) / steps_per_s


def progress_line(step: int, total: int, metrics: dict, images_per_s: float, eta_s: float) -> str:
    terms = " ".join(f"{k} {metrics[k]:.3f}" for k in ("loss", "base_loss", "td_loss") if k in metrics)
    rate = f"{images_per_s:.0f}" if math.isfinite(images_per_s) else "—"  # the first step compiles: no rate yet
    return f"step {step}/{total} | {terms} | {rate} img/s | ETA {format_duration(eta_s)}"
