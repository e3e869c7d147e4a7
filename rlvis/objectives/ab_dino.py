"""AB_DINO: DINO (multi-crop) on the annotation batch + the TD loss on the bootstrap batch (docs/method.md).

`config.method == "dino"` is the baseline: the DINO term alone, no bootstrap batch.

Annotations are the K prototypes. The value head's embedding is scored against the AB embedding matrix (its own
K rows, not DINO's prototypes). The TD target p_ema(ℓ | x_j) is the EMA teacher's prototype distribution on the
reached view, *centred and sharpened exactly as DINO's teacher targets* (same centre, same teacher temperature).
The paper is silent here; the reasons: without centring, the teacher's distribution on bootstrap views can sit on
a few prototypes, the collapse centring exists to prevent; and with the same sharpening the value head learns
targets of the same form as the student's, so ψ_AB and DINO's prototypes stay comparable. The centre is the
running mean over the annotation batch's global crops only, as in DINO.
"""

import jax
import jax.numpy as jnp
import ml_collections

from rlvis import config_lib
from rlvis.models.ab_model import ABModel
from rlvis.objectives import bootstrap, dino


def initial_state(config: ml_collections.ConfigDict) -> dict:
    return {"center": jnp.zeros((config.dino.prototypes,), jnp.float32)}


def loss(model: ABModel, params, ema_params, batch: dict, config: ml_collections.ConfigDict,
         method_state: dict, step: jax.Array) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: annotation_views [K, 2, S, S, C] (global crops), local_views [K, L, s, s, C]; for AB also views and
    actions as in AB_SimCLR. Returns (loss, (metrics, {"center": updated centre}))."""
    center = method_state["center"]
    crops = [batch["annotation_views"]] + ([batch["local_views"]] if "local_views" in batch else [])
    student = [model.apply(params, model.apply(params, views, method=ABModel.encode), method=ABModel.base_embed)
               for views in crops]  # global and local crops have different sizes: encoded separately
    teacher = model.apply(ema_params, model.apply(ema_params, batch["annotation_views"], method=ABModel.encode),
                          method=ABModel.base_embed)
    temperature = dino.teacher_temperature(step, config)
    base_loss, batch_center, metrics = dino.dino_loss(jnp.concatenate(student, axis=1), teacher, center,
                                                      config.dino.student_temp, temperature)
    new_state = {"center": dino.update_center(center, batch_center, config.dino.center_momentum)}
    metrics.update(loss=base_loss, base_loss=base_loss, teacher_temperature=temperature)
    if not config_lib.uses_bootstrapping(config):
        return base_loss, (metrics, new_state)
    target_params = bootstrap.target_params(params, ema_params, config)

    target_views = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    target_logits = model.apply(target_params, target_views, method=ABModel.base_embed)
    p_local = dino.teacher_distribution(target_logits, center, temperature)
    td_loss, td_metrics = bootstrap.td_term(
        model, params, target_params, batch,
        online_vocabulary=model.apply(params, method=ABModel.ab_vocabulary),
        target_vocabulary=model.apply(target_params, method=ABModel.ab_vocabulary), target_view_tokens=target_views,
        p_local=jax.lax.stop_gradient(p_local), config=config,
        online_log_prior=lambda tokens: jax.nn.log_softmax(
            model.apply(params, tokens, method=ABModel.base_embed) / config.dino.student_temp, -1),
        target_log_prior=jax.nn.log_softmax(target_logits / config.dino.student_temp, -1))
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, new_state)
