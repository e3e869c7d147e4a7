"""What the geometry of the foresight pairs allows a predictor that reads only the source view.

    python docs/repro/levers/foresight_bounds.py

On the foresight evaluator's own held-out scenes and views (the same pairs every run is scored on), with perfect
digit recognition and no model at all:
  * visible      the destination holds a digit that is at least half inside the source view;
  * foresight    a perfect source reader that also knows where each visible digit is: right whenever a visible digit
                 is at the destination, else a uniform guess among the classes it does not see;
  * invariance   a perfect source reader that ignores the move: a uniform pick among the classes it sees.
Their difference is the most a value head can gain over reading the source when both recognise digits perfectly;
the real predictors recognise far less (the base model names the digit on a rendered destination about half the
time), so a target on value − invariance has to be read against this scale.
"""

import sys

import numpy as np

sys.path.insert(0, ".")
from configs import demo  # noqa: E402
from rlvis.evaluators import foresight  # noqa: E402


def main() -> None:
    evaluator = foresight.Evaluator(None, demo.get_config())  # its scenes, views and pairs; no model
    s, n = evaluator.view_digits.shape[:2]
    truth = evaluator.truth
    seen = np.broadcast_to(evaluator.view_digits[:, :, None], (s, n, n - 1, 10)).reshape(-1, 10)  # the source's
    visible = (truth & seen).any(-1)
    n_seen = seen.sum(-1)
    foresee = np.where(visible, 1.0, (truth & ~seen).sum(-1) / np.maximum(10 - n_seen, 1))
    invariance = np.where(n_seen > 0, (truth & seen).sum(-1) / np.maximum(n_seen, 1), truth.mean(-1))
    keep = truth.any(-1)
    masks = foresight.bucket_masks(keep, evaluator.iou, evaluator.contained, evaluator.covered)
    print(f"{'bucket':12s} {'pairs':>6s} {'visible':>8s} {'foresight':>10s} {'invariance':>11s} {'gap':>7s}")
    for name, mask in masks.items():
        gap = foresee[mask].mean() - invariance[mask].mean()
        print(f"{name:12s} {mask.sum():6d} {visible[mask].mean():8.3f} {foresee[mask].mean():10.3f} "
              f"{invariance[mask].mean():11.3f} {gap:+7.3f}")


if __name__ == "__main__":
    main()
