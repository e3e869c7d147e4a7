"""AB_SimCLR: SimCLR on the annotation batch + the TD loss on the bootstrap batch (PAPER.md §1.4, Algo 2).

`config.method == "simclr"` is the baseline: the same SimCLR term alone, no bootstrap batch.

The annotation batch's second views are the vocabulary ℓ_1..ℓ_K of the bootstrap softmax. Online: the value
head's prediction for (x_i, a_{i→j}) against ψ_AB(ℓ). Target (EMA network, no gradient): p_ema(ℓ | x_j) from the
SimCLR head, and for γ > 0 the EMA value head's predictions from x_j.
"""

import jax
import jax.numpy as jnp
import ml_collections

from rlvis import config_lib
from rlvis.envs import crop_env
from rlvis.models.ab_model import ABModel
from rlvis.objectives import simclr, td


def targets(model: ABModel, target_params, batch: dict, config: ml_collections.ConfigDict) -> jax.Array:
    """The TD target at every bootstrap view, [B, n, K], computed by the target network only."""
    temperature, gamma = config.simclr.temperature, config.ab.gamma
    annotation_tokens = model.apply(target_params, batch["annotation_views"][:, 1], method=ABModel.encode)
    boot_tokens = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    vocabulary = model.apply(target_params, annotation_tokens, method=ABModel.base_embed)
    p_local = simclr.annotation_distribution(
        model.apply(target_params, boot_tokens, method=ABModel.base_embed), vocabulary, temperature)
    q_next = None
    if gamma > 0.0:
        b, n = boot_tokens.shape[:2]
        value = model.apply(target_params, boot_tokens.reshape(b * n, *boot_tokens.shape[2:]),
                            batch["tokens"].reshape(b * n, n - 1, -1), method=ABModel.value_embed)
        ab_vocabulary = model.apply(target_params, annotation_tokens, method=ABModel.ab_embed)
        scale = model.apply(target_params, method=ABModel.ab_logit_scale)
        q_next = jax.nn.softmax(scale * value @ ab_vocabulary.T, axis=-1).reshape(b, n, n - 1, -1)
    return td.td_target(p_local, q_next, gamma)


def loss(model: ABModel, params, target_params, batch: dict,
         config: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """batch: annotation_views [K, 2, S, S, C]; views [B, n, S, S, C]; tokens [B, n, n-1, 4] → (loss, metrics).

    For the baseline (`simclr`) only `annotation_views` is read.
    """
    annotation_tokens = model.apply(params, batch["annotation_views"], method=ABModel.encode)  # [K, 2, T, D]
    z = model.apply(params, annotation_tokens, method=ABModel.base_embed)
    base_loss, base_accuracy = simclr.nt_xent(z[:, 0], z[:, 1], config.simclr.temperature)
    if not config_lib.uses_bootstrapping(config):
        return base_loss, dict(loss=base_loss, base_loss=base_loss, base_accuracy=base_accuracy)

    b, n = batch["views"].shape[:2]
    boot_tokens = model.apply(params, batch["views"].reshape(b * n, *batch["views"].shape[2:]),
                              method=ABModel.encode)
    value = model.apply(params, boot_tokens, batch["tokens"].reshape(b * n, n - 1, -1),
                        method=ABModel.value_embed)
    vocabulary = model.apply(params, annotation_tokens[:, 1], method=ABModel.ab_embed)
    scale = model.apply(params, method=ABModel.ab_logit_scale)
    q_logits = (scale * value @ vocabulary.T).reshape(b, n, n - 1, -1)
    value_target = targets(model, target_params, batch, config)
    td_loss, td_metrics = td.td_loss(q_logits, value_target, crop_env.pair_indices(n))

    total = config.ab.base_loss_weight * base_loss + config.ab.loss_weight * td_loss
    metrics = dict(loss=total, base_loss=base_loss, td_loss=td_loss, base_accuracy=base_accuracy,
                   ab_logit_scale=scale, **td_metrics)
    return total, metrics
