"""The reward of annotation bootstrapping, r_ℓ(x') = p(ℓ | x'), by name (`config.ab.reward`).

  * `base` (the method): the target network's base model on the reached view — what the paper trains with.
  * `oracle` (a diagnostic control, AB_SimCLR on the embedded demo only): uniform over the annotations whose digit
    class lies in the view. It separates "the reward carries no class" from "the value head cannot learn where a
    class is": with it, foresight on held-out scenes meets every target the base model's reward misses.
  * `oracle:F`: the oracle on a fraction F of each batch's scenes, the base model's reward on the rest — foresight
    against the reward's accuracy.
  * `shuffled_oracle:F`: the oracle on a fraction F, and on the rest the true classes of *another* scene: the
    oracle's form, right only by chance — whether the base reward is limited by its form or by how often it is right.

The controls need the scenes' ground truth, which the demo streams carry (`ground_truth`); a loss reaches every
reward through one call, `reward(name, base, batch)`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from rlvis.envs import crop_env

KINDS = ("base", "oracle", "shuffled_oracle")
# The demo streams' ground truth as the trainer hands it to the loss (the annotation digits' classes, and each
# bootstrap scene's digit boxes and classes).
GROUND_TRUTH = ("annotation_labels", "digit_boxes", "digit_labels")


def parse(name: str) -> tuple[str, float]:
    """ "oracle:0.25" → ("oracle", 0.25); "oracle" → ("oracle", 1.0); ValueError for anything else."""
    kind, sep, fraction = name.partition(":")
    try:
        share = float(fraction) if sep else 1.0
    except ValueError:
        share = -1.0
    if kind not in KINDS or not 0.0 <= share <= 1.0 or (kind == "base" and sep):
        raise ValueError(
            f"config.ab.reward={name!r} must be 'base', 'oracle', 'oracle:F' or 'shuffled_oracle:F' with F in [0, 1]"
        )
    return kind, share


def check(config: ml_collections.ConfigDict) -> str | None:
    """The one-line reason a run cannot use its reward, or None."""
    try:
        kind, _ = parse(config.ab.reward)
    except ValueError as error:
        return str(error)
    if kind != "base" and not (
        config.method == "ab_simclr"
        and config.data.format == "demo"
        and config.data.get("annotation_scene_fraction", 0) == 0
    ):
        return (
            f"config.ab.reward={config.ab.reward!r} needs ab_simclr on the embedded demo data with digit "
            "annotations (the only streams whose classes are known)"
        )
    return None


def ground_truth(batch: dict) -> dict:
    """The demo streams' ground truth in a training batch, named as the rewards read it; empty on files."""
    truth = {}
    if "label" in batch["annotation"]:
        truth["annotation_labels"] = batch["annotation"]["label"]
    if "digit_boxes" in batch.get("bootstrap", {}):
        truth.update(digit_boxes=batch["bootstrap"]["digit_boxes"], digit_labels=batch["bootstrap"]["digit_labels"])
    return truth


def oracle(
    view_boxes: jax.Array,
    digit_boxes: jax.Array,
    digit_labels: jax.Array,
    annotation_labels: jax.Array,
    num_classes: int = 10,
) -> jax.Array:
    """The reward a perfect base model would give on the demo scenes: p(ℓ | x) uniform over the annotations whose
    class is a digit with at least half its box inside the view (the foresight evaluator's ground truth), and
    uniform over all annotations where no such digit is in the vocabulary.

    view_boxes [B, n, 4], digit_boxes [B, M, 4] (same frame), digit_labels int [B, M] (-1 = none),
    annotation_labels int [K] → [B, n, K].
    """
    covered = crop_env.intersection(view_boxes[:, :, None], digit_boxes[:, None]) >= 0.5 * jnp.prod(
        digit_boxes[:, None, :, 2:], axis=-1
    )  # [B, n, M]
    present = covered & (digit_labels[:, None] >= 0)
    classes = jnp.any(present[..., None] & (digit_labels[:, None, :, None] == jnp.arange(num_classes)), axis=2)
    mass = jnp.take(classes, annotation_labels, axis=-1).astype(jnp.float32)  # [B, n, K]
    mass = jnp.where(jnp.sum(mass, -1, keepdims=True) > 0, mass, 1.0)
    return mass / jnp.sum(mass, -1, keepdims=True)


def mix(first: jax.Array, rest: jax.Array, fraction: float) -> jax.Array:
    """[B, n, K] rewards → `first` on the first round(fraction · B) scenes, `rest` on the others. Scenes come in
    random order, so the first ones are a random sample."""
    scenes = round(fraction * first.shape[0])
    return jnp.where((jnp.arange(first.shape[0]) < scenes)[:, None, None], first, rest)


def reward(name: str, base: Callable[[], jax.Array], batch: dict) -> jax.Array:
    """p(ℓ | x') [B, n, K] on every bootstrap view of `batch` (its `boxes` and, for the controls, its ground truth).
    `base` computes the base model's reward; it is called only when the named reward uses it."""
    kind, fraction = parse(name)
    if kind == "base":
        return base()
    truth = oracle(batch["boxes"], batch["digit_boxes"], batch["digit_labels"], batch["annotation_labels"])
    if fraction == 1.0:
        return truth
    rest = base() if kind == "oracle" else jnp.roll(truth, -1, axis=0)  # the next scene's classes
    return mix(truth, rest, fraction)
