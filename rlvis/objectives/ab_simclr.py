"""AB_SimCLR: SimCLR on the annotation batch + the TD loss on the bootstrap batch (docs/method.md).

`config.method == "simclr"` is the baseline: the same SimCLR term alone, no bootstrap batch.

The annotation batch's second views are the vocabulary ℓ_1..ℓ_K of the bootstrap softmax. Online: the value
head's prediction for (x_i, a_{i→j}) against ψ_AB(ℓ). Target (EMA network, no gradient): p_ema(ℓ | x_j) from the
SimCLR head, and for γ > 0 the EMA value head's predictions from x_j.
"""

import jax
import ml_collections

from rlvis import config_lib
from rlvis.models.ab_model import ABModel
from rlvis.objectives import bootstrap, simclr


def initial_state(config: ml_collections.ConfigDict) -> dict:
    return {}  # SimCLR keeps nothing between steps


def loss(model: ABModel, params, ema_params, batch: dict, config: ml_collections.ConfigDict,
         method_state: dict | None = None, step: jax.Array | None = None) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: annotation_views [K, 2, S, S, C]; views [B, n, S, S, C]; actions [B, n, n-1, 4], boxes [B, n, 4].

    Returns (loss, (metrics, method_state)). For the baseline (`simclr`) only `annotation_views` is read.
    """
    annotation_tokens = model.apply(params, batch["annotation_views"], method=ABModel.encode)  # [K, 2, T, D]
    z = model.apply(params, annotation_tokens, method=ABModel.base_embed)
    base_loss, base_accuracy = simclr.nt_xent(z[:, 0], z[:, 1], config.simclr.temperature)
    metrics = dict(loss=base_loss, base_loss=base_loss, base_accuracy=base_accuracy)
    if not config_lib.uses_bootstrapping(config):
        return base_loss, (metrics, {})
    target_params = bootstrap.target_params(params, ema_params, config)

    # Target network: the annotations (second views) and every bootstrap view.
    target_annotations = model.apply(target_params, batch["annotation_views"][:, 1], method=ABModel.encode)
    target_views = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    if config.ab.reward == "oracle":  # the diagnostic: the scenes' true classes instead of the base model
        p_local = bootstrap.oracle_reward(batch["boxes"], batch["digit_boxes"], batch["digit_labels"],
                                          batch["annotation_labels"])
    else:
        temperature = config.ab.target_temperature or config.simclr.temperature
        annotation_z = model.apply(target_params, target_annotations, method=ABModel.base_embed)
        distribution = (simclr.centred_annotation_distribution if config.ab.center_target
                        else simclr.annotation_distribution)
        p_local = distribution(model.apply(target_params, target_views, method=ABModel.base_embed), annotation_z,
                               temperature)
        if config.ab.target_walk:
            p_local = simclr.annotation_walk(p_local, annotation_z, temperature)
    target_vocabulary = None
    if config.ab.gamma > 0.0:
        target_vocabulary = model.apply(target_params, target_annotations, method=ABModel.ab_embed)

    td_loss, td_metrics = bootstrap.td_term(
        model, params, target_params, batch,
        online_vocabulary=model.apply(params, annotation_tokens[:, 1], method=ABModel.ab_embed),
        target_vocabulary=target_vocabulary, target_view_tokens=target_views, p_local=p_local, config=config,
        online_log_prior=lambda tokens: jax.nn.log_softmax(
            model.apply(params, tokens, method=ABModel.base_embed) @ z[:, 1].T / config.simclr.temperature, -1),
        target_log_prior=jax.numpy.log(p_local + 1e-12))
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, {})
