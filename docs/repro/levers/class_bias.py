"""Which classes each foresight predictor names, and how it scores once its own class prior is divided out.

    python docs/repro/levers/class_bias.py runs/demo [more workdirs]

For the final checkpoint of each demo workdir, on the foresight evaluator's held-out pairs whose destination holds
a digit: the share of pairs on which each predictor (value, invariance, brute force) names each class, its mean
entropy over classes, its accuracy by how many digits the destination holds, and the accuracy of a prior-corrected
readout (each predictor's class probabilities divided by their mean over all pairs before the argmax). A predictor
whose argmax piles onto a few classes while the truth is balanced is reading its prior, not the view; if the
corrected readout moves it above another predictor, the information was there and the prior hid it.
"""

import sys

import numpy as np

from rlvis import checkpoints, config_lib
from rlvis.evaluators import foresight


def report(workdir: str) -> None:
    config, state, _ = checkpoints.load_run(workdir, None)
    evaluator = foresight.Evaluator(None, config, 1)
    params = state[config_lib.params_key(config_lib.eval_encoder(config))]
    annotations, class_of_annotation = evaluator._annotations(params)
    value, source, destination, source_crop, _ = (
        np.asarray(x) for x in evaluator._predict(params, annotations, class_of_annotation))
    truth = evaluator.truth
    has = truth.any(1)
    predictors = {"value": value, "invariance": source, "brute_force": destination, "source_crop": source_crop}

    def accuracy(scores: np.ndarray, mask: np.ndarray) -> float:
        return float(truth[mask][np.arange(mask.sum()), scores[mask].argmax(1)].mean())

    print(f"{workdir}: {has.sum()} pairs with a digit at the destination")
    print(f"  {'truth':12s} class share {np.round(truth[has].mean(0) / truth[has].mean(0).sum(), 2)}")
    for name, p in predictors.items():
        share = np.bincount(p[has].argmax(1), minlength=10) / has.sum()
        entropy = -(p[has] * np.log(p[has] + 1e-12)).sum(1).mean()
        print(f"  {name:12s} class share {np.round(share, 2)} entropy {entropy:.2f} accuracy {accuracy(p, has):.3f}")
    masks = foresight.bucket_masks(has, evaluator.iou, evaluator.contained)
    buckets = {name: masks[name] for name in ("all", "zoom_in", "iou_0-0.2", "iou_0.5-1")}
    print("  prior-corrected accuracy:")
    for name, p in predictors.items():
        corrected = p / p[has].mean(0)
        print(f"    {name:12s}", " | ".join(f"{b} {accuracy(corrected, m):.3f}" for b, m in buckets.items()))
    count = truth.sum(1)
    print("  accuracy by digits at the destination:")
    for c in (1, 2, 3):
        print(f"    {c}: {np.sum(count == c):5d} pairs",
              " ".join(f"{name} {accuracy(p, count == c):.3f}" for name, p in predictors.items()))


if __name__ == "__main__":
    for path in sys.argv[1:]:
        report(path)
