"""How often the training reward names the digit at a view, by the size of the annotation vocabulary it is read over.

    python docs/repro/levers/vocabulary_reward.py runs/levers/NAME

The reward AB_SimCLR bootstraps from is the target network's p(ℓ | x) over the step's annotations: crops of centred
training digits (RandomResizedCrop over `env.annotation_scale`), as the annotation stream makes them. Summed per digit
class, its argmax is scored like the foresight evaluator's predictors, on the evaluator's own held-out pairs:
"destination" reads the view a move reaches (what the value head is trained toward), "source" the view it starts
from. K = 64 is the demo's annotation batch; the foresight evaluator's brute force reads 400 whole exemplars. Each
K < 4,096 is averaged over 4,096 / K disjoint vocabularies (± their standard error).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
from rlvis import checkpoints  # noqa: E402
from rlvis.data import digits as digits_lib  # noqa: E402
from rlvis.envs import crop_env  # noqa: E402
from rlvis.evaluators import foresight  # noqa: E402
from rlvis.models.ab_model import ABModel  # noqa: E402

POOL = 4096  # annotation crops drawn (the held-in digits, with replacement: each draw is a new crop)


def main(workdir: str) -> None:
    config, state, _ = checkpoints.load_run(workdir)
    params = state["ema_params"]  # the target network: the reward's reader
    evaluator = foresight.Evaluator(None, config)
    model, (s, n) = evaluator.model, evaluator.views.shape[:2]
    embed = lambda views: model.apply(params, model.apply(params, views, method=ABModel.encode),  # noqa: E731
                                      method=ABModel.base_embed)
    z = embed(evaluator.views)  # [S, n, P]
    readers = {"destination": z[:, evaluator.pairs].reshape(-1, z.shape[-1]),
               "source": jnp.broadcast_to(z[:, :, None], (s, n, n - 1, z.shape[-1])).reshape(-1, z.shape[-1])}
    splits = digits_lib.load_digits(config.eval.digits_per_class)
    chosen = np.random.default_rng(0).choice(len(splits.pretrain_labels), POOL)
    images = np.stack([digits_lib.centred_digit(splits.pretrain_images[i])["image"] for i in chosen])
    crops = crop_env.batch_rollout(jax.random.PRNGKey(1), jnp.asarray(images, jnp.float32),
                                   jnp.tile(jnp.array(images.shape[1:3], jnp.int32), (POOL, 1)), num_views=1,
                                   scale=tuple(config.env.annotation_scale), size=config.env.view_size,
                                   ratio=tuple(config.env.ratio))["views"][:, 0]
    vocabulary = jnp.concatenate([embed(crops[i:i + 512]) for i in range(0, POOL, 512)])
    classes = jax.nn.one_hot(splits.pretrain_labels[chosen], 10)
    keep = evaluator.truth.any(-1)
    every_view = z.reshape(-1, z.shape[-1])  # the centred target subtracts each annotation's mean logit over views

    def accuracy(reader: jax.Array, members: slice) -> float:
        logits = reader @ vocabulary[members].T / config.simclr.temperature
        if config.ab.center_target:
            logits = logits - jnp.mean(every_view @ vocabulary[members].T / config.simclr.temperature, axis=0)
        predicted = np.asarray(jnp.argmax(jax.nn.softmax(logits, -1) @ classes[members], -1))
        return evaluator.truth[np.arange(len(predicted)), predicted][keep].mean()

    print(f"{workdir}: centred target {config.ab.center_target}; all pairs")
    print(f"{'K':>6s} {'destination':>16s} {'source':>16s} {'gap':>7s}")
    for size in (64, 256, 1024, POOL):
        scores = {name: [accuracy(reader, slice(i, i + size)) for i in range(0, POOL, size)]
                  for name, reader in readers.items()}
        cell = lambda x: f"{np.mean(x):.3f} ± {np.std(x) / np.sqrt(len(x)):.3f}"  # noqa: E731
        print(f"{size:6d} {cell(scores['destination']):>16s} {cell(scores['source']):>16s} "
              f"{np.mean(scores['destination']) - np.mean(scores['source']):+7.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1])
