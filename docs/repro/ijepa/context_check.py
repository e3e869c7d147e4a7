"""Does a trained I-JEPA predictor use its context? On 512 held-out centred digits and 512 held-out scenes (views
drawn as in training), the prediction loss (the training objective, EMA targets) with each view's own context
against another view's context (the batch rolled by one), same masks. A predictor that ignores the image scores
the same on both. Also the spread of the targets across images (std over images of each view's mean target
token, averaged over features): near zero when the target encoder has collapsed to one output for every image.

    python docs/repro/ijepa/context_check.py runs/repro/ijepa_digits/ijepa [more workdirs]
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rlvis import checkpoints, methods
from rlvis.data import digits
from rlvis.methods import ijepa as ijepa_method
from rlvis.models.ab_model import ABModel
from rlvis.objectives import ijepa


def held_out(config) -> dict[str, dict]:
    splits = digits.load_digits(config.eval.digits_per_class)
    centred = np.stack([digits.centred_digit(d)["image"] for d in splits.probe_test_images[:512]])
    scenes = digits.compose_scenes(np.random.default_rng(0), splits.probe_test_images, splits.probe_test_labels,
                                   512, config.data)
    return dict(digits=dict(image=centred, valid=np.full((len(centred), 2), centred.shape[1], np.int32)),
                scenes=dict(image=scenes["image"], valid=scenes["valid"]))


for workdir in sys.argv[1:]:
    config, state, step = checkpoints.load_run(workdir)
    model = methods.build_model(config)
    params, ema = state["params"], state["ema_params"]
    scores = []
    for name, images in held_out(config).items():
        batch = ijepa_method.render_annotation(jax.random.split(jax.random.PRNGKey(0), 4),
                                               {k: jnp.asarray(v) for k, v in images.items()}, config)
        views = batch["annotation_views"]
        targets = ijepa.target_representations(model.apply(ema, views, method=ABModel.encode), batch["target"])

        def loss(context_views):
            tokens = model.apply(params, context_views, batch["context"], method=ABModel.encode)
            predicted = model.apply(params, tokens, batch["context"], batch["target"], batch["target_valid"],
                                    method=ijepa_method.predict)
            return float(ijepa.prediction_loss(predicted, targets, batch["target_valid"]))

        spread = float(targets.mean(axis=(1, 2)).std(0).mean())
        scores.append(f"{name}: loss {loss(views):.4f} own context / {loss(jnp.roll(views, 1, axis=0)):.4f} "
                      f"another's, target spread {spread:.3f}")
    print(f"{workdir} (step {step}): " + "; ".join(scores))
