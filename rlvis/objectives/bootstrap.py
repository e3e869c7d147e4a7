"""The bootstrapping term shared by every AB method: Q(ℓ | x_i, a_{i→j}) regressed onto the target at x_j.

A base method supplies what differs: the annotation vocabulary (online ψ_AB and its target-network copy) and
p_target(ℓ | x_j), the target network's annotation distribution on each bootstrap view.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from rlvis.envs import crop_env
from rlvis.models.ab_model import ABModel
from rlvis.objectives import td


def target_params(params, ema_params, config: ml_collections.ConfigDict):
    """The network that makes the AB targets: the EMA network, or for the `ab.use_ema_target=False` ablation the
    online network with its gradient stopped. Only the AB target changes: a base method's own teacher (DINO)
    keeps reading `ema_params`."""
    return ema_params if config.ab.use_ema_target else jax.lax.stop_gradient(params)


def oracle_reward(view_boxes: jax.Array, digit_boxes: jax.Array, digit_labels: jax.Array,
                  annotation_labels: jax.Array, num_classes: int = 10) -> jax.Array:
    """The reward a perfect base model would give on the demo scenes: p(ℓ | x) uniform over the annotations whose
    class is a digit with at least half its box inside the view (the foresight evaluator's ground truth), and
    uniform over all annotations where no such digit is in the vocabulary.

    view_boxes [B, n, 4], digit_boxes [B, M, 4] (same frame), digit_labels int [B, M] (-1 = none),
    annotation_labels int [K] → [B, n, K]. A diagnostic: it separates "the reward carries no class" from "the
    value head cannot learn where a class is".
    """
    covered = crop_env.intersection(view_boxes[:, :, None], digit_boxes[:, None]) >= 0.5 * jnp.prod(
        digit_boxes[:, None, :, 2:], axis=-1)  # [B, n, M]
    present = covered & (digit_labels[:, None] >= 0)
    classes = jnp.any(present[..., None] & (digit_labels[:, None, :, None] == jnp.arange(num_classes)), axis=2)
    mass = jnp.take(classes, annotation_labels, axis=-1).astype(jnp.float32)  # [B, n, K]
    mass = jnp.where(jnp.sum(mass, -1, keepdims=True) > 0, mass, 1.0)
    return mass / jnp.sum(mass, -1, keepdims=True)


def mix_rewards(oracle: jax.Array, base: jax.Array, oracle_fraction: float) -> jax.Array:
    """oracle, base [B, n, K] → the oracle's reward on the first round(oracle_fraction · B) scenes, the base
    model's on the rest. Raising the fraction makes the reward right more often, which measures how foresight grows
    with the reward's accuracy. Scenes come in random order, so the first ones are a random sample."""
    scenes = round(oracle_fraction * oracle.shape[0])
    use_oracle = (jnp.arange(oracle.shape[0]) < scenes)[:, None, None]
    return jnp.where(use_oracle, oracle, base)


def value_logits(model: ABModel, params, view_tokens: jax.Array, actions: jax.Array, vocabulary: jax.Array,
                 log_prior: jax.Array | None = None, valid: jax.Array | None = None) -> jax.Array:
    """view_tokens [B, n, T, D], actions [B, n, n-1, 4], vocabulary [K, P] → Q logits [B, n, n-1, K].

    `log_prior` [B, n, K] (the `ab.source_prior` form) is log p(ℓ | x_i), added to every move's logits from x_i:
    the decoder then predicts how a move changes what the source view already shows. `valid` [K] masks the
    vocabulary's empty slots (`ab.annotation_queue`)."""
    b, n = view_tokens.shape[:2]
    logits = model.apply(params, view_tokens.reshape(b * n, *view_tokens.shape[2:]),
                         actions.reshape(b * n, n - 1, -1), vocabulary, method=ABModel.q_logits)
    logits = logits.reshape(b, n, n - 1, -1)
    if log_prior is not None:
        logits = logits + jax.lax.stop_gradient(log_prior)[:, :, None]
    return td.mask_vocabulary(logits, valid)


def td_term(model: ABModel, params, target_params, batch: dict, *, online_vocabulary: jax.Array,
            target_vocabulary: jax.Array | None, target_view_tokens: jax.Array, p_local: jax.Array,
            config: ml_collections.ConfigDict, online_log_prior: Callable | None = None,
            target_log_prior: jax.Array | None = None,
            vocabulary_valid: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """batch["views"] [B, n, S, S, C], batch["actions"] [B, n, n-1, 4] and, for the per-IoU metrics,
    batch["boxes"] [B, n, 4]; p_local [B, n, K] from the target network on the same views (whose tokens are
    `target_view_tokens`) → (TD loss, metrics).

    With `ab.source_prior`, `online_log_prior` maps the online tokens of the views to log p(ℓ | x) over the online
    vocabulary, and `target_log_prior` [B, n, K] is the target network's, for the γ > 0 bootstrap."""
    gamma, prior = config.ab.gamma, config.ab.source_prior
    pairs = crop_env.pair_indices(batch["views"].shape[1])
    online_tokens = model.apply(params, batch["views"], method=ABModel.encode)
    q_logits = value_logits(model, params, online_tokens, batch["actions"], online_vocabulary,
                            online_log_prior(online_tokens) if prior else None, vocabulary_valid)
    q_next = None
    if gamma > 0.0:
        q_next = jax.nn.softmax(value_logits(model, target_params, target_view_tokens, batch["actions"],
                                             target_vocabulary, target_log_prior if prior else None,
                                             vocabulary_valid), axis=-1)
    targets = td.td_targets(p_local, q_next, gamma, pairs, config.ab.exclude_source)
    pair_iou = crop_env.iou(batch["boxes"][:, :, None], batch["boxes"][:, pairs]) if "boxes" in batch else None
    return td.td_loss(q_logits, targets, pair_iou, p_local)


def total_loss(model: ABModel, params, base_loss: jax.Array, td_loss: jax.Array, metrics: dict,
               config: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """base_weight·base + λ·TD (loss ratio 1.0 in the paper); `metrics` (with the TD metrics) gains the total."""
    total = config.ab.base_loss_weight * base_loss + config.ab.loss_weight * td_loss
    metrics.update(loss=total, td_loss=td_loss, ab_logit_scale=model.apply(params, method=ABModel.ab_logit_scale))
    return total, metrics
