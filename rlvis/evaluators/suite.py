"""Evaluators by name, as the config lists them, and the one place that runs them on encoder parameters.

An evaluator is built once (it prepares its data and jitted feature function) and `run(params)` yields
(task name, score) pairs. The trainer runs `config.eval.monitor` at the start, every `eval.monitor_every`
steps and at the end (cheap: kNN and few-shot ridge, logged as `monitor/<task>`), and `config.eval.final` at the
end, for the trained and a random-init encoder. `python -m rlvis.evaluate` runs the same `config.eval.final` on any
saved checkpoint, so its numbers equal the trainer's on the same checkpoint.

    demo          the embedded held-out tasks (rlvis/evaluators/demo_tasks.py)
    foresight     the value head's foresight against reading the source or the destination view (foresight.py)
    digit_monitor kNN and few-shot ridge on held-out centred digits: seconds, so it can run often
    tfds          linear / kNN / few-shot on a TFDS dataset prepared as ArrayRecord (rlvis/evaluators/tfds_tasks.py)
"""

import collections
import json
import os
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env
from rlvis.evaluators import probes

EncodeFn = Callable[[object, jax.Array], jax.Array]  # (params, views [N, S, S, C]) → tokens [N, T, D]


def token_features(encode_fn: EncodeFn, view_size: int, channels: int) -> Callable:
    """A jitted (params, canvas images, valid) → encoder tokens of the whole image rendered at `view_size`.

    Grayscale inputs are tiled to the encoder's channels, so an RGB encoder can be probed on the digits too.
    """
    @jax.jit
    def features(params, images: jax.Array, valid: jax.Array) -> jax.Array:
        images = jnp.repeat(images, channels // images.shape[-1], axis=-1)
        full = jnp.asarray(crop_env.FULL_BOX)
        views = jax.vmap(lambda im, hw: crop_env.observe(im, hw, full, view_size))(images, valid)
        return encode_fn(params, views)
    return features


def encode_in_batches(features: Callable, params, images: np.ndarray, valid: np.ndarray,
                      batch_size: int = 250) -> np.ndarray:
    return np.concatenate([np.asarray(features(params, images[i:i + batch_size], valid[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def heldout_digits(splits: digits_lib.DigitSplits) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The probe splits as centred-digit canvases: split → (images, valid, labels)."""
    data = {}
    for split, images, labels in (("train", splits.probe_train_images, splits.probe_train_labels),
                                  ("test", splits.probe_test_images, splits.probe_test_labels)):
        canvases = [digits_lib.centred_digit(d) for d in images]
        data[split] = (np.stack([c["image"] for c in canvases]), np.stack([c["valid"] for c in canvases]), labels)
    return data


class DigitMonitor:
    """Held-out centred digits → DINO-protocol kNN (k = 20) and few-shot ridge (5 and 10 shots): seconds on CPU."""

    def __init__(self, encode_fn: EncodeFn, config: ml_collections.ConfigDict, channels: int):
        self.data = heldout_digits(digits_lib.load_digits(config.eval.digits_per_class))
        self.features = token_features(encode_fn, config.env.view_size, channels)
        self.k = config.eval.knn_k
        self.num_tasks = 3

    def run(self, params) -> Iterator[tuple[str, float]]:
        pooled = {}
        for split, (images, valid, labels) in self.data.items():
            tokens = encode_in_batches(self.features, params, images, valid)
            pooled[split] = (probes.cls_and_mean(tokens), labels)
        (train_x, train_y), (test_x, test_y) = pooled["train"], pooled["test"]
        yield "knn/digit", probes.knn_scores(train_x, train_y, test_x, test_y, 10, ks=(self.k,))[self.k]
        for shots, score in probes.fewshot_ridge(train_x, train_y, test_x, test_y, 10, shots=(5, 10)).items():
            yield f"fewshot{shots}/digit", score


def build(names: Sequence[str], encode_fn: EncodeFn, config: ml_collections.ConfigDict, channels: int) -> dict:
    """name → evaluator, for the names a config lists; an unknown name is a ValueError naming it."""
    from rlvis.evaluators.demo_tasks import DemoEvaluator
    from rlvis.evaluators.foresight import ForesightEvaluator
    from rlvis.evaluators.tfds_tasks import TFDSEvaluator
    known = {"demo": DemoEvaluator, "digit_monitor": DigitMonitor, "foresight": ForesightEvaluator,
             "tfds": TFDSEvaluator}  # config_lib.EVALUATORS
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown evaluator {unknown[0]!r}; known: {sorted(known)}")
    return {name: known[name](encode_fn, config, channels) for name in names}


def run_all(evaluators: dict, params, progress: bool = False) -> dict[str, float]:
    """Every evaluator's tasks in one flat dict. Task names carry their data set ("linear/digit"); a name two
    evaluators both report is prefixed by each one's evaluator name, so neither overwrites the other.

    `progress` shows a bar with the task just scored, elapsed time and an ETA (on stderr)."""
    by_evaluator = {}
    bar = tqdm.tqdm(total=sum(evaluator.num_tasks for evaluator in evaluators.values()), unit="task",
                    desc="evaluate", disable=not progress, leave=False)
    for name, evaluator in evaluators.items():
        by_evaluator[name] = {}
        for task, score in evaluator.run(params):
            by_evaluator[name][task] = float(score)
            bar.set_postfix_str(f"{task} {score:.3f}")
            bar.update()
    bar.close()
    counts = collections.Counter(task for tasks in by_evaluator.values() for task in tasks)
    return {(f"{name}/{task}" if counts[task] > 1 else task): score
            for name, tasks in by_evaluator.items() for task, score in tasks.items()}


def plot_curves(jsonl_path: str, prefix: str | tuple[str, ...], png_path: str) -> str | None:
    """Each `prefix…` metric of a JSONL log over steps, one line per task, as a PNG (None if nothing logged).
    With several prefixes, metrics of the first are solid lines and of the others dashed, in matching colours."""
    if not os.path.exists(jsonl_path):
        return None
    with open(jsonl_path) as f:
        lines = [json.loads(line) for line in f]
    prefixes = (prefix,) if isinstance(prefix, str) else prefix
    groups = [sorted({key for line in lines for key in line if key.startswith(p)}) for p in prefixes]
    if not groups[0]:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for style, p, tasks in zip(("-", "--", ":"), prefixes, groups):
        for colour, task in enumerate(tasks):
            points = [(line["step"], line[task]) for line in lines if line.get(task) is not None]
            label = task.removeprefix(prefixes[0]) if p == prefixes[0] else task
            axis.plot(*zip(*points), style, color=f"C{colour}", marker="o", markersize=3, label=label)
    axis.set_xlabel("step"), axis.set_ylabel("accuracy"), axis.grid(alpha=0.3), axis.legend(fontsize=7)
    axis.set_title(" vs ".join(p.rstrip("/") for p in prefixes) + " over training", fontsize=9)
    figure.tight_layout()
    os.makedirs(os.path.dirname(png_path), exist_ok=True)
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return png_path
