"""The bootstrapping term shared by every AB method: Q(ℓ | x_i, a_{i→j}) regressed onto the target at x_j.

A base method supplies what differs: the annotation vocabulary (online ψ_AB and its target-network copy) and
p_ema(ℓ | x_j), the target network's annotation distribution on each bootstrap view.
"""

import jax
import ml_collections

from rlvis.envs import crop_env
from rlvis.models.ab_model import ABModel
from rlvis.objectives import td


def value_logits(model: ABModel, params, view_tokens: jax.Array, action_tokens: jax.Array,
                 vocabulary: jax.Array) -> jax.Array:
    """view_tokens [B, n, T, D], action_tokens [B, n, n-1, 4], vocabulary [K, P] → Q logits [B, n, n-1, K]."""
    b, n = view_tokens.shape[:2]
    value = model.apply(params, view_tokens.reshape(b * n, *view_tokens.shape[2:]),
                        action_tokens.reshape(b * n, n - 1, -1), method=ABModel.value_embed)
    scale = model.apply(params, method=ABModel.ab_logit_scale)
    return (scale * value @ vocabulary.T).reshape(b, n, n - 1, -1)


def td_term(model: ABModel, params, target_params, batch: dict, *, online_vocabulary: jax.Array,
            target_vocabulary: jax.Array | None, target_view_tokens: jax.Array, p_local: jax.Array,
            config: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """batch["views"] [B, n, S, S, C] and batch["tokens"] [B, n, n-1, 4]; p_local [B, n, K] from the target
    network on the same views (whose tokens are `target_view_tokens`) → (TD loss, metrics)."""
    gamma = config.ab.gamma
    online_tokens = model.apply(params, batch["views"], method=ABModel.encode)
    q_logits = value_logits(model, params, online_tokens, batch["tokens"], online_vocabulary)
    q_next = None
    if gamma > 0.0:
        q_next = jax.nn.softmax(
            value_logits(model, target_params, target_view_tokens, batch["tokens"], target_vocabulary), axis=-1)
    value_target = td.td_target(p_local, q_next, gamma)
    return td.td_loss(q_logits, value_target, crop_env.pair_indices(batch["views"].shape[1]))


def total_loss(model: ABModel, params, base_loss: jax.Array, td_loss: jax.Array, metrics: dict,
               config: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """base_weight·base + λ·TD (paper Table 7: loss ratio 1.0); `metrics` (with the TD metrics) gains the total."""
    total = config.ab.base_loss_weight * base_loss + config.ab.loss_weight * td_loss
    metrics.update(loss=total, td_loss=td_loss, ab_logit_scale=model.apply(params, method=ABModel.ab_logit_scale))
    return total, metrics
