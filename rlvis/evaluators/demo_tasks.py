"""The embedded demo's held-out evaluation: digit, count and digit-in-box probes on a frozen encoder.

Every image here is made from digits held out of pre-training (`digits.load_digits`), with a fixed seed so that
runs and checkpoints are compared on the same data.
  * digit     — class of a single centred digit (object-centric; the ImageNet analogue): linear and kNN.
  * count     — number of digits in a scene, 1..4 (the CLEVR/Count analogue): linear.
  * box_digit — class of the digit inside a given box of a scene (the COCO object-classification analogue):
                patch tokens of the whole scene view are averaged with weights = overlap of each patch cell
                with the box, then a linear probe. The encoder sees the whole scene, the box only picks tokens.
The count task sees the whole scene at the training view size (a global question, asked of the view the encoder
was trained on); the box task sees it at `eval.scene_view_size` (default: the canvas's native 64 px, position
embeddings resampled), because at 32 px a digit spans about one 8-px patch, too coarse to pool tokens by box
(measured on one demo checkpoint: box_digit 0.22 at 32 px vs 0.40 at 64 px; random init 0.16 vs 0.26).
Image-level features are [CLS, mean of patch tokens] concatenated.
"""

import functools
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env
from rlvis.evaluators import probes

_SCENE_SEED = 2024
FULL_BOX = np.array([0.0, 0.0, 1.0, 1.0], np.float32)

EncodeFn = Callable[[object, jax.Array], jax.Array]  # (encoder params, views [N, S, S, C]) → tokens [N, T, D]


def _scenes(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, n: int,
            config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    scenes = [digits_lib.compose_scene(rng, images, labels, canvas=config.scene_canvas,
                                       min_size=config.scene_min_size,
                                       digits_per_scene=tuple(config.digits_per_scene),
                                       digit_size=tuple(config.digit_size)) for _ in range(n)]
    return {key: np.stack([s[key] for s in scenes]) for key in scenes[0]}


def box_weights(boxes: np.ndarray, grid: int) -> np.ndarray:
    """boxes [N, 4] (y0, x0, h, w) in [0, 1] → [N, grid*grid] overlap of each patch cell with the box, sum 1."""
    edges = np.arange(grid) / grid
    def overlap(start, length):  # [N, grid]
        return np.clip(np.minimum(start[:, None] + length[:, None], edges + 1 / grid)
                       - np.maximum(start[:, None], edges), 0, None)
    w = overlap(boxes[:, 0], boxes[:, 2])[:, :, None] * overlap(boxes[:, 1], boxes[:, 3])[:, None, :]
    w = w.reshape(len(boxes), -1)
    return w / np.maximum(w.sum(1, keepdims=True), 1e-12)


class DemoEvaluator:
    """Evaluator(encode_fn, config).run(encoder_params) yields (task name, accuracy)."""

    def __init__(self, encode_fn: EncodeFn, config: ml_collections.ConfigDict, channels: int = 1,
                 batch_size: int = 250):
        """`channels` is the encoder's input: an RGB encoder (trained on photographs) sees the digits tiled to 3
        channels, so the same held-out tasks serve as a sanity check on any run."""
        self.config, self.batch_size, self.channels = config, batch_size, channels
        splits = digits_lib.load_digits(config.eval.digits_per_class)
        rng = np.random.default_rng(_SCENE_SEED)
        half = config.eval.scenes // 2
        self.data = {
            "digit": {
                "train": ([digits_lib.centred_digit(d) for d in splits.probe_train_images], splits.probe_train_labels),
                "test": ([digits_lib.centred_digit(d) for d in splits.probe_test_images], splits.probe_test_labels),
            },
            "scenes": {
                "train": _scenes(rng, splits.probe_train_images, splits.probe_train_labels, half, config.data),
                "test": _scenes(rng, splits.probe_test_images, splits.probe_test_labels, half, config.data),
            },
        }
        @functools.partial(jax.jit, static_argnames="size")
        def features(params, images, valid, size):
            images = jnp.repeat(images, self.channels // images.shape[-1], axis=-1)
            views = jax.vmap(lambda im, hw: crop_env.observe(im, hw, jnp.asarray(FULL_BOX), size))(images, valid)
            tokens = encode_fn(params, views)
            pooled = jnp.concatenate([tokens[:, 0], tokens[:, 1:].mean(1)], axis=-1)
            return pooled, tokens[:, 1:]

        self._features = features

    def _encode(self, params, images: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        pooled, patches = [], []
        for start in range(0, len(images), self.batch_size):
            p, t = self._features(params, images[start:start + self.batch_size], valid[start:start + self.batch_size],
                                  size)
            pooled.append(np.asarray(p))
            patches.append(np.asarray(t))
        return np.concatenate(pooled), np.concatenate(patches)

    def run(self, params) -> Iterator[tuple[str, float]]:
        cfg = self.config.eval
        digit = {}
        for split, (items, labels) in self.data["digit"].items():
            images = np.stack([i["image"] for i in items])
            valid = np.stack([i["valid"] for i in items])
            digit[split] = (self._encode(params, images, valid, self.config.env.view_size)[0], labels)
        (tr_x, tr_y), (te_x, te_y) = digit["train"], digit["test"]
        yield "linear/digit", probes.linear_probe(tr_x, tr_y, te_x, te_y, 10, cfg.probe_steps)
        yield "knn/digit", probes.knn_accuracy(tr_x, tr_y, te_x, te_y, 10, cfg.knn_k, cfg.knn_temperature)

        count, box = {}, {}
        for split, scenes in self.data["scenes"].items():
            encoded = {size: self._encode(params, scenes["image"], scenes["valid"], size)
                       for size in {self.config.env.view_size, cfg.scene_view_size}}  # once if the sizes agree
            count[split] = (encoded[self.config.env.view_size][0], scenes["count"] - 1)
            patches = encoded[cfg.scene_view_size][1]
            grid = int(round(np.sqrt(patches.shape[1])))
            weights = box_weights(scenes["boxes"][:, 0], grid)  # the first digit of each scene is the query
            box[split] = (np.einsum("nt,ntd->nd", weights, patches), scenes["labels"][:, 0])
        max_count = self.config.data.digits_per_scene[1]
        yield "linear/count", probes.linear_probe(*count["train"], *count["test"], max_count, cfg.probe_steps)
        yield "linear/box_digit", probes.linear_probe(*box["train"], *box["test"], 10, cfg.probe_steps)
