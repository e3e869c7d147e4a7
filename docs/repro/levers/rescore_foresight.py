"""Score a run's final checkpoint with today's foresight evaluator (all predictors, every bucket).

    python docs/repro/levers/rescore_foresight.py runs/levers/NAME [more runs]

Writes `foresight.json` in each workdir ({"step", "encoder", "scores"}) and prints value / other_move / invariance /
brute force / source crop per bucket. The runs of a round were trained with the code of their day; this puts them
on the same held-out scenes, views and predictors.
"""

import sys

from rlvis import checkpoints, config_lib, storage
from rlvis.evaluators import foresight

SHOWN = ("value", "other_move", "invariance", "brute_force", "source_crop")


def main(workdir: str) -> None:
    config, state, step = checkpoints.load_run(workdir, None)
    encoder = config_lib.eval_encoder(config)
    scores = dict(foresight.Evaluator(None, config, 1).run(state[config_lib.params_key(encoder)]))
    storage.write_json(storage.join(workdir, "foresight.json"), dict(step=step, encoder=encoder, scores=scores),
                       indent=1)
    print(f"{workdir} (step {step}, {encoder} encoder): " + " | ".join(
        f"{bucket} " + " / ".join(f"{scores.get(f'foresight/{p}/{bucket}', float('nan')):.3f}" for p in SHOWN)
        for bucket in ("all", "zoom_in", "iou_0-0.2", "iou_0.5-1")))


if __name__ == "__main__":
    for run in sys.argv[1:]:
        main(run)
