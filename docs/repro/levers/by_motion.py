"""Split a run's foresight pairs by how the two boxes sit: zoom-in, zoom-out, or a partial overlap.

    python docs/repro/levers/by_motion.py runs/levers/NAME [more runs]

Prints, for all pairs and for far pairs (IoU (0, 0.2]), how often each predictor names a digit at the destination:
zoom-in (the destination at least 90 % inside the source), zoom-out (the source at least 90 % inside the
destination, not a zoom-in) and the rest. The evaluator's own buckets hold the first two over all pairs; this adds
the rest and the split of the far bucket.
"""

import sys

import numpy as np

from rlvis import checkpoints, config_lib
from rlvis.evaluators import foresight

PREDICTORS = ("value", "invariance", "brute_force", "source_crop")


def main(workdir: str) -> None:
    config, state, step = checkpoints.load_run(workdir, None)
    evaluator = foresight.Evaluator(None, config, 1)
    params = state[config_lib.params_key(config_lib.eval_encoder(config))]
    annotations, class_of_annotation = evaluator._annotations(params)
    value, source, destination, source_crop, _ = (np.asarray(x) for x in evaluator._predict(
        params, annotations, class_of_annotation))
    truth, rows = evaluator.truth, np.arange(len(evaluator.truth))
    hits = {name: truth[rows, scores.argmax(-1)]
            for name, scores in zip(PREDICTORS, (value, source, destination, source_crop))}
    buckets = foresight.bucket_masks(truth.any(-1), evaluator.iou, evaluator.contained, evaluator.covered)
    zoom_in, zoom_out = buckets["zoom_in"], buckets["zoom_out"]
    print(f"{workdir} (step {step}): " + " / ".join(PREDICTORS))
    for scope, within in (("all pairs", buckets["all"]), ("IoU (0, 0.2]", buckets["iou_0-0.2"])):
        for name, mask in (("zoom-in", zoom_in), ("zoom-out", zoom_out), ("rest", ~zoom_in & ~zoom_out),
                           ("all", within)):
            mask = within & mask
            print(f"  {scope:13s} {name:9s} {mask.sum():5d} pairs  "
                  + " / ".join(f"{hits[p][mask].mean():.3f}" for p in PREDICTORS))


if __name__ == "__main__":
    for run in sys.argv[1:]:
        main(run)
