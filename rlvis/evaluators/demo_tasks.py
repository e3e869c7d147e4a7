"""The embedded demo's held-out evaluation: digit, count and digit-in-box probes on a frozen encoder.

Every image here is made from digits held out of pre-training (`digits.load_digits`), with a fixed seed so that
runs and checkpoints are compared on the same data.
  * digit     — class of a single centred digit (object-centric; the ImageNet analogue): the linear grid
                (learning rate × CLS/mean/both pooling, dinov2-style), DINO's weighted kNN, big_vision's 10-shot
                ridge, and a MAP probe (attention pooling over the frozen tokens).
  * count     — number of digits in a scene, 1..4 (the CLEVR/Count analogue): linear.
  * box_digit — class of the digit inside a given box of a scene (the COCO object-classification analogue):
                linear on patch tokens averaged with weights = overlap of each patch cell with the box; and the
                decoder probe of Beyer et al. 2023 (the paper's protocol), whose query is the box itself.
                The encoder sees the whole scene, the box only picks tokens.
The count task sees the whole scene at the training view size (a global question, asked of the view the encoder
was trained on); the box task sees it at `eval.scene_view_size` (default: the canvas's native 64 px, position
embeddings resampled), because at 32 px a digit spans about one 8-px patch, too coarse to pool tokens by box
(docs/evaluation.md has the measurement).
Image-level features are [CLS, mean of patch tokens] concatenated.
"""

from collections.abc import Iterator

import ml_collections
import numpy as np

from rlvis.data import digits as digits_lib
from rlvis.evaluators import attention_probes, common, probes
from rlvis.models import features

_SCENE_SEED = 2024


def box_weights(boxes: np.ndarray, grid: int) -> np.ndarray:
    """boxes [N, 4] (y0, x0, h, w) in [0, 1] → [N, grid*grid] overlap of each patch cell with the box, sum 1."""
    edges = np.arange(grid) / grid

    def overlap(start, length):  # [N, grid]
        return np.clip(
            np.minimum(start[:, None] + length[:, None], edges + 1 / grid) - np.maximum(start[:, None], edges), 0, None
        )

    w = overlap(boxes[:, 0], boxes[:, 2])[:, :, None] * overlap(boxes[:, 1], boxes[:, 3])[:, None, :]
    w = w.reshape(len(boxes), -1)
    return w / np.maximum(w.sum(1, keepdims=True), 1e-12)


class Evaluator:
    """Evaluator(encode_fn, config, channels).run(encoder_params) yields (task name, accuracy) for each of `tasks`.

    `channels` is the encoder's input: an RGB encoder (trained on photographs) sees the digits tiled to 3 channels,
    so the same held-out tasks serve as a sanity check on any run.
    """

    tasks = (
        "linear/digit",
        "knn/digit",
        "fewshot10/digit",
        "map/digit",
        "linear/count",
        "linear/box_digit",
        "decoder/box_digit",
    )

    def __init__(self, encode_fn: features.EncodeFn, config: ml_collections.ConfigDict, channels: int = 1):
        self.config = config
        splits = digits_lib.load_digits(config.eval.digits_per_class)
        rng = np.random.default_rng(_SCENE_SEED)
        half = config.eval.scenes // 2
        self.data = {
            "digit": common.heldout_digits(splits),
            "scenes": {
                "train": digits_lib.compose_scenes(
                    rng, splits.probe_train_images, splits.probe_train_labels, half, config.data
                ),
                "test": digits_lib.compose_scenes(
                    rng, splits.probe_test_images, splits.probe_test_labels, half, config.data
                ),
            },
        }
        sizes = {config.env.view_size, config.eval.scene_view_size}
        self._features = {size: features.token_features(encode_fn, size, channels) for size in sizes}

    def _tokens(self, params, images: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
        return common.encode_in_batches(self._features[size], params, images, valid)

    def run(self, params) -> Iterator[tuple[str, float]]:
        cfg = self.config.eval
        steps = cfg.probe_steps
        digit = {
            split: (self._tokens(params, images, valid, self.config.env.view_size), labels)
            for split, (images, valid, labels) in self.data["digit"].items()
        }
        (train_t, train_y), (test_t, test_y) = digit["train"], digit["test"]
        train_x, test_x = probes.cls_and_mean(train_t), probes.cls_and_mean(test_t)
        yield (
            "linear/digit",
            probes.linear_probe_grid(train_t, train_y, test_t, test_y, 10, steps=steps)["test_accuracy"],
        )
        yield (
            "knn/digit",
            probes.knn_scores(train_x, train_y, test_x, test_y, 10, ks=(cfg.knn_k,), temperature=cfg.knn_temperature)[
                cfg.knn_k
            ],
        )
        yield "fewshot10/digit", probes.fewshot_ridge(train_x, train_y, test_x, test_y, 10, shots=(10,))[10]
        yield "map/digit", attention_probes.map_probe(train_t, train_y, test_t, test_y, 10, steps=steps)

        count, box, box_tokens = {}, {}, {}
        for split, scenes in self.data["scenes"].items():
            encoded = {
                size: self._tokens(params, scenes["image"], scenes["valid"], size) for size in self._features
            }  # once if the two sizes agree
            tokens = encoded[self.config.env.view_size]
            count[split] = (probes.cls_and_mean(tokens), scenes["count"] - 1)
            patches = encoded[cfg.scene_view_size][:, 1:]
            grid = int(round(np.sqrt(patches.shape[1])))
            weights = box_weights(scenes["boxes"][:, 0], grid)  # the first digit of each scene is the query
            box[split] = (np.einsum("nt,ntd->nd", weights, patches), scenes["labels"][:, 0])
            box_tokens[split] = (encoded[cfg.scene_view_size], scenes["boxes"][:, 0], scenes["labels"][:, 0])
        max_count = self.config.data.digits_per_scene[1]
        yield "linear/count", probes.linear_probe(*count["train"], *count["test"], max_count, steps)
        yield "linear/box_digit", probes.linear_probe(*box["train"], *box["test"], 10, steps)
        (train_t, train_b, train_y), (test_t, test_b, test_y) = box_tokens["train"], box_tokens["test"]
        yield (
            "decoder/box_digit",
            attention_probes.decoder_probe(
                train_t, train_y, test_t, test_y, 10, train_boxes=train_b, test_boxes=test_b, steps=steps
            ),
        )
