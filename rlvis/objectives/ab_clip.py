"""AB_CLIP: CLIP on captioned annotation images + the TD loss on the bootstrap batch (docs/method.md).

`config.method == "clip"` is the baseline: the CLIP term alone, no bootstrap batch.

The vocabulary of the bootstrap softmax is the annotation batch's captions (unpaired with the bootstrap images),
embedded by the separate AB text head on the shared text tower. The target p_ema(ℓ | x_j) is the EMA network's
CLIP distribution over those captions on the reached view, with its learned scale.
"""

import jax
import ml_collections

from rlvis import config_lib
from rlvis.models.ab_model import ABModel
from rlvis.objectives import bootstrap, clip


def initial_state(config: ml_collections.ConfigDict) -> dict:
    return {}


def loss(model: ABModel, params, ema_params, batch: dict, config: ml_collections.ConfigDict,
         method_state: dict | None = None, step: jax.Array | None = None) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: annotation_views [K, 1, S, S, C], captions int32 [K, L]; for AB also views, actions and boxes."""
    images = model.apply(params, model.apply(params, batch["annotation_views"][:, 0], method=ABModel.encode),
                         method=ABModel.base_embed)
    captions, ab_captions = model.apply(params, batch["captions"], method=ABModel.text_embed)
    scale = model.apply(params, method=ABModel.clip_logit_scale)
    base_loss, accuracy = clip.symmetric_infonce(images, captions, scale)
    metrics = dict(loss=base_loss, base_loss=base_loss, base_accuracy=accuracy, clip_logit_scale=scale)
    if not config_lib.uses_bootstrapping(config):
        return base_loss, (metrics, {})
    target_params = bootstrap.target_params(params, ema_params, config)

    target_views = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    target_captions, target_ab_captions = model.apply(target_params, batch["captions"], method=ABModel.text_embed)
    p_local = clip.caption_distribution(model.apply(target_params, target_views, method=ABModel.base_embed),
                                        target_captions, model.apply(target_params, method=ABModel.clip_logit_scale))
    td_loss, td_metrics = bootstrap.td_term(
        model, params, target_params, batch, online_vocabulary=ab_captions, target_vocabulary=target_ab_captions,
        target_view_tokens=target_views, p_local=p_local, config=config,
        online_log_prior=lambda tokens: jax.nn.log_softmax(
            scale * model.apply(params, tokens, method=ABModel.base_embed) @ captions.T, -1),
        target_log_prior=jax.numpy.log(p_local + 1e-12))
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, {})
