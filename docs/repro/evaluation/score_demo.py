"""Score demo checkpoints with the detection evaluator on the digit-scene COCO folder (digit_coco.py), at the
demo's scene resolution (64 px, as the demo's own box task) and with a probe sized for 1,000 training scenes.

    python docs/repro/evaluation/score_demo.py OUT.json /tmp/digit_coco WORKDIR[@STEP] ...
"""

import json
import sys
import time

from rlvis import checkpoints, config_lib, methods
from rlvis.data import pipeline
from rlvis.evaluators import detection
from rlvis.models import ab_model

PROBE = dict(depth=2, width=64, heads=4, steps=1500, batch_size=128, learning_rate=3e-3, bins=32)


def score(workdir: str, root: str) -> dict:
    path, _, step = workdir.partition("@")
    config, state, step = checkpoints.load_run(path, int(step) if step else None)
    encoder = config_lib.eval_encoder(config)
    model = methods.build_model(config)
    encode = lambda params, views: model.apply(params, views, method=ab_model.ABModel.encode)  # noqa: E731
    start = time.perf_counter()
    evaluator = detection.Evaluator(encode, config, pipeline.image_channels(config), format="coco", root=root,
                                    view_size=config.eval.scene_view_size, decoder=PROBE)
    scores = dict(evaluator.run(state[config_lib.params_key(encoder)]))
    return dict(workdir=path, step=step, encoder=encoder, scores=scores, probe=PROBE,
                view_size=config.eval.scene_view_size, seconds=round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    out, root, *workdirs = sys.argv[1:]
    results = []
    for workdir in workdirs:
        results.append(score(workdir, root))
        print(json.dumps(results[-1]), flush=True)
        with open(out, "w") as file:
            json.dump(results, file, indent=1)
