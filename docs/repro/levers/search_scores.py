"""How do the value head and brute force rank a search's first moves?

    python docs/repro/levers/search_scores.py runs/demo [more runs]

On `rlvis.search --measure`'s held-out scenes (500), from the full view, each of the first step's candidate moves
(the 0.7 zooms with every pan, and "stay") is put in one of three groups by where its box's centre falls: on a
digit of the target label, on another digit, on background. For each scorer — the value head's Q(c | x, a) and the
base model on the rendered candidate p(c | x') (brute force), c the target class read as `--measure` reads it —
it prints the mean score of each group and the AUC of "target-centred above background" and "any digit above
background" over all such candidate pairs within a scene (0.5: the scorer cannot tell them apart). A policy can
only find the target if its scorer ranks target-centred moves first.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from rlvis import checkpoints, config_lib, methods, search
from rlvis.data import pipeline
from rlvis.envs import crop_env
from rlvis.evaluators import foresight, value_maps
from rlvis.models.ab_model import ABModel

SCENES = 500


def group_of(candidates: np.ndarray, boxes: np.ndarray, labels: np.ndarray, target: int) -> np.ndarray:
    """int [A]: 2 if the candidate's centre is on a target-label digit, 1 on another digit, 0 on background."""
    inside = search.centre_inside(candidates[:, None], boxes[None])  # [A, D]
    on_target = (inside & (labels == target)[None]).any(axis=1)
    on_digit = (inside & (labels >= 0)[None]).any(axis=1)
    return np.where(on_target, 2, np.where(on_digit, 1, 0))


def auc(scores: np.ndarray, groups: np.ndarray, high: set[int], low: int) -> tuple[float, int]:
    """Sum over (high-group, low-group) candidate pairs of [score_high > score_low] (+½ for ties), and the count."""
    up, down = scores[np.isin(groups, list(high))], scores[groups == low]
    if not len(up) or not len(down):
        return 0.0, 0
    difference = up[:, None] - down[None]
    return float((difference > 0).sum() + 0.5 * (difference == 0).sum()), difference.size


def main(workdir: str) -> None:
    config, state, _ = checkpoints.load_run(workdir)
    model = methods.get(config).build_model(config)
    params = state[config_lib.params_key("ema")]
    channels = pipeline.image_channels(config)
    annotations, class_of_annotation = foresight.digit_vocabulary(model, params, config, channels)
    data = search.held_out_scenes(config, SCENES)
    targets = jnp.asarray(np.asarray(class_of_annotation).T[data["target_label"]])  # [N, V]
    images = np.repeat(data["image"], channels // data["image"].shape[-1], axis=-1)
    full = jnp.asarray(crop_env.FULL_BOX)
    moves = search.move_grid(search.PANS, (0.7,))
    candidates = np.concatenate([np.asarray(crop_env.pan_zoom(full, jnp.asarray(moves), search.MIN_SIDE)),
                                 crop_env.FULL_BOX[None]])  # the same from every full view

    @jax.jit
    def scores(image, valid, target):
        view = crop_env.observe(image, valid, full, config.env.view_size)
        tokens = model.apply(params, view[None], method=ABModel.encode)[0]
        value = value_maps.value_distribution(model, params, config, tokens, full, jnp.asarray(candidates),
                                              annotations) @ target
        views = jax.vmap(lambda b: crop_env.observe(image, valid, b, config.env.view_size))(jnp.asarray(candidates))
        rendered = model.apply(params, views, method=ABModel.encode)
        return value, value_maps.base_distribution(model, params, annotations, rendered) @ target

    totals = {name: {"means": [[], [], []], "target>bg": [0.0, 0], "digit>bg": [0.0, 0]}
              for name in ("value", "brute_force")}
    for n in range(SCENES):
        groups = group_of(candidates, data["boxes"][n], data["labels"][n], int(data["target_label"][n]))
        for name, score in zip(("value", "brute_force"),
                               scores(jnp.asarray(images[n]), jnp.asarray(data["valid"][n]), targets[n])):
            score = np.asarray(score)
            score = (score - score.mean()) / (score.std() + 1e-12)  # within-scene standardised
            for g in range(3):
                totals[name]["means"][g].extend(score[groups == g].tolist())
            for key, high in (("target>bg", {2}), ("digit>bg", {1, 2})):
                wins, pairs = auc(score, groups, high, 0)
                totals[name][key][0] += wins
                totals[name][key][1] += pairs
    print(f"{workdir}: first-step candidates from the full view, {SCENES} scenes; mean within-scene z-score by "
          f"where the candidate is centred, and AUCs")
    print(f"{'scorer':<12}{'target':>9}{'other':>9}{'backgr.':>9}{'AUC tgt>bg':>12}{'AUC dig>bg':>12}")
    for name, total in totals.items():
        means = [np.mean(m) if m else float("nan") for m in total["means"]]
        aucs = [wins / max(pairs, 1) for wins, pairs in (total["target>bg"], total["digit>bg"])]
        print(f"{name:<12}{means[2]:>9.3f}{means[1]:>9.3f}{means[0]:>9.3f}{aucs[0]:>12.3f}{aucs[1]:>12.3f}")
    counts = [len(m) for m in totals["value"]["means"]][::-1]
    print(f"candidates: {counts[0]} on the target, {counts[1]} on another digit, {counts[2]} on background")


if __name__ == "__main__":
    for run in sys.argv[1:]:
        main(run)
