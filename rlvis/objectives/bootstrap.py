"""The bootstrapping term shared by every AB method: Q(ℓ | x_i, a_{i→j}) regressed onto the target at x_j.

A base method supplies what differs: the annotation vocabulary (online ψ_AB and its target-network copy) and
p_target(ℓ | x_j), the target network's annotation distribution on each bootstrap view.
"""

import jax
import ml_collections

from rlvis.envs import crop_env
from rlvis.models.ab_model import ABModel
from rlvis.objectives import td


def target_params(params, ema_params, config: ml_collections.ConfigDict):
    """The network that makes the AB targets: the EMA network, or for the `ab.use_ema_target=False` ablation the
    online network with its gradient stopped. Only the AB target changes: a base method's own teacher (DINO)
    keeps reading `ema_params`."""
    return ema_params if config.ab.use_ema_target else jax.lax.stop_gradient(params)


def value_logits(
    model: ABModel, params, view_tokens: jax.Array, actions: jax.Array, vocabulary: jax.Array
) -> jax.Array:
    """view_tokens [B, n, T, D], actions [B, n, n-1, 4], vocabulary [K, P] → Q logits [B, n, n-1, K]."""
    b, n = view_tokens.shape[:2]
    logits = model.apply(
        params,
        view_tokens.reshape(b * n, *view_tokens.shape[2:]),
        actions.reshape(b * n, n - 1, -1),
        vocabulary,
        method=ABModel.q_logits,
    )
    return logits.reshape(b, n, n - 1, -1)


def td_term(
    model: ABModel,
    params,
    target_params,
    batch: dict,
    *,
    online_vocabulary: jax.Array,
    target_vocabulary: jax.Array | None,
    target_view_tokens: jax.Array,
    p_local: jax.Array,
    config: ml_collections.ConfigDict,
) -> tuple[jax.Array, dict]:
    """batch["views"] [B, n, S, S, C], batch["actions"] [B, n, n-1, 4] and, for the per-IoU metrics,
    batch["boxes"] [B, n, 4]; p_local [B, n, K], the reward on the same views (whose target-network tokens are
    `target_view_tokens`) → (TD loss, metrics). `target_vocabulary` is read only for γ > 0."""
    gamma = config.ab.gamma
    pairs = crop_env.pair_indices(batch["views"].shape[1])
    online_tokens = model.apply(params, batch["views"], method=ABModel.encode)
    q_logits = value_logits(model, params, online_tokens, batch["actions"], online_vocabulary)
    q_next = None
    if gamma > 0.0:
        q_next = jax.nn.softmax(
            value_logits(model, target_params, target_view_tokens, batch["actions"], target_vocabulary), axis=-1
        )
    targets = td.td_targets(p_local, q_next, gamma, pairs, config.ab.exclude_source)
    pair_iou = crop_env.iou(batch["boxes"][:, :, None], batch["boxes"][:, pairs]) if "boxes" in batch else None
    return td.td_loss(q_logits, targets, pair_iou, p_local)


def total_loss(
    model: ABModel, params, base_loss: jax.Array, td_loss: jax.Array, metrics: dict, config: ml_collections.ConfigDict
) -> tuple[jax.Array, dict]:
    """base_weight·base + λ·TD (loss ratio 1.0 in the paper); `metrics` (with the TD metrics) gains the total."""
    total = config.ab.base_loss_weight * base_loss + config.ab.loss_weight * td_loss
    metrics.update(loss=total, td_loss=td_loss, ab_logit_scale=model.apply(params, method=ABModel.ab_logit_scale))
    return total, metrics
