"""Do a source view's encoder tokens hold the class of a digit a zoom-in would show?

    pip install scikit-learn  # this diagnostic only; not an rlvis dependency
    python docs/repro/levers/roi_probe.py runs/demo

On the foresight evaluator's scenes (1,500 here) and zoom-in pairs (destination ≥ 90 % inside the source), fit a
supervised logistic-regression probe for one digit class present at the destination, on half the scenes, and score
it on the other half, from:
  * roi[layer]: the mean of the source view's patch tokens under the destination box (cells weighted by overlap);
  * source cls[layer]: the source view's CLS token (what the invariance predictor reads);
  * destination cls[final]: the destination view's own CLS token (what brute force reads).
A value head can at best read what these features hold; a supervised probe is an upper bound on that with
linear read-out.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from rlvis import checkpoints
from rlvis.evaluators import foresight
from rlvis.models.ab_model import ABModel

GRID = 4  # 32-px views, patch 8


def cell_weights(actions: np.ndarray) -> np.ndarray:
    """[..., 4] relative boxes → [..., GRID²] overlap of each patch cell with the box, normalised."""
    centres = (np.arange(GRID) + 0.5) / GRID
    cy, cx = (c.reshape(-1) for c in np.meshgrid(centres, centres, indexing="ij"))

    def overlap(low, size, centre):
        high = np.minimum(low[..., None] + size[..., None], centre + 0.5 / GRID)
        return np.clip(high - np.maximum(low[..., None], centre - 0.5 / GRID), 0, None)

    weights = overlap(actions[..., 0], actions[..., 2], cy) * overlap(actions[..., 1], actions[..., 3], cx)
    return weights / np.maximum(weights.sum(-1, keepdims=True), 1e-9)


def main(workdir: str) -> None:
    config, state, _ = checkpoints.load_run(workdir)
    params = jax.tree.map(jnp.asarray, state["ema_params"])
    config.unlock()
    config.eval.foresight_scenes = 1500
    evaluator = foresight.Evaluator(None, config, 1)
    model, views = evaluator.model, evaluator.views
    s, n = views.shape[:2]

    def encode(x):
        final, captured = model.apply(params, x, method=ABModel.encode, capture_intermediates=True)
        blocks = captured["intermediates"]["encoder"]
        depth = sum(name.startswith("block") for name in blocks)
        return [blocks[f"block{i}"]["__call__"][0] for i in range(depth)] + [final]

    layers = [np.asarray(x).reshape(s, n, *x.shape[1:]) for x in jax.jit(encode)(views.reshape(-1, *views.shape[2:]))]
    names = [f"block{i}" for i in range(len(layers) - 1)] + ["final"]
    weights = cell_weights(np.asarray(evaluator.actions))  # [s, n, n-1, cells]
    truth = evaluator.truth.reshape(s, n, n - 1, 10)
    zoom = (evaluator.contained.reshape(s, n, n - 1) >= foresight.ZOOM_IN) & truth.any(-1)
    train = np.broadcast_to((np.arange(s) < s // 2)[:, None, None], zoom.shape)[zoom]
    label, hits = truth.argmax(-1)[zoom], truth[zoom]

    def probe(features: np.ndarray, name: str) -> None:
        x = features[zoom]
        classifier = LogisticRegression(max_iter=2000).fit(x[train], label[train])
        predicted = classifier.predict(x[~train])
        print(f"{name:24s} zoom-in accuracy {hits[~train][np.arange(len(predicted)), predicted].mean():.3f}")

    for name, tokens in zip(names, layers):
        roi = np.einsum("snkp,snpd->snkd", weights, tokens[:, :, 1:])
        probe(roi, f"roi[{name}]")
        probe(np.broadcast_to(tokens[:, :, None, 0], roi.shape), f"source cls[{name}]")
    probe(layers[-1][:, :, 0][:, evaluator.pairs], "destination cls[final]")


if __name__ == "__main__":
    main(sys.argv[1])
