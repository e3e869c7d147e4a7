"""DINO (Caron et al. 2021) and AB_DINO: multi-crop self-distillation on the annotation batch, plus the TD loss on
the bootstrap batch for `ab_dino` (docs/method.md).

Annotations are the K prototypes. The value head's embedding is scored against the AB embedding matrix (its own
K rows, not DINO's prototypes). The TD target p_ema(ℓ | x_j) is the EMA teacher's prototype distribution on the
reached view, centred and sharpened exactly as DINO's teacher targets (same centre, same teacher temperature):
without centring the teacher's distribution on bootstrap views can sit on a few prototypes, the collapse centring
exists to prevent; and with the same sharpening the value head learns targets of the same form as the student's,
so ψ_AB and DINO's prototypes stay comparable. The centre is the running mean over the annotation batch's global
crops only, as in DINO.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rlvis.envs import crop_env, photometric
from rlvis.methods.common import Annotations, bootstraps, build_ab_model, check_range, require
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import DINOHead
from rlvis.models.vit import variant_shape
from rlvis.objectives import bootstrap, dino

NAME = "dino"
ANNOTATES = True
AB_VARIANT = True
EMA_TEACHER = True
FIXED_EMA = False
CAPTIONS = False
IMAGE_ANNOTATIONS = False


def settings() -> dict[str, dict]:
    """DINO (Caron et al. 2021) scaled down: K prototypes, multi-crop, a centred and sharpened EMA teacher."""
    return dict(
        augment=photometric.default_settings(),
        dino=dict(
            prototypes=256,
            global_scale=(0.4, 1.0),  # paper Table 7
            local_scale=(0.05, 0.4),
            local_views=4,  # paper: 8
            local_size=16,  # paper: 96 px locals for 224 px globals
            student_temp=0.1,
            warmup_teacher_temp=0.02,  # sharper than DINO's 0.04 → 0.07, which collapse at this scale (docs/findings.md)
            teacher_temp=0.02,
            teacher_temp_warmup_steps=600,
            center_momentum=0.9,
            norm_last_layer=True,  # False: learned prototype gains (DINO's choice for ViT-S; see DINOHead)
            freeze_last_layer_steps=300,  # prototypes frozen at first (DINO: 1 epoch); see `optimizer_rules`
        ),
    )


def validate(config: ml_collections.ConfigDict) -> None:
    d = config.dino
    require(d.prototypes >= 2, f"config.dino.prototypes={d.prototypes} must be at least 2")
    require(d.local_views >= 0, "config.dino.local_views must be >= 0")
    patch = variant_shape(config.model.variant).patch
    require(
        d.local_size % patch == 0, f"config.dino.local_size={d.local_size} must be a multiple of the patch size {patch}"
    )
    check_range(config, "dino", "global_scale")
    check_range(config, "dino", "local_scale")
    require(
        0 < d.warmup_teacher_temp and 0 < d.teacher_temp and 0 < d.student_temp,
        "config.dino temperatures must be positive",
    )
    require(0 <= d.center_momentum < 1, "config.dino.center_momentum must be in [0, 1)")
    photometric.validate(config.augment)


@dataclasses.dataclass(frozen=True)
class Heads:
    """DINO's head (MLP, bottleneck, K prototypes) and the AB embedding matrix ψ_AB of K rows."""

    hidden: int
    dim: int
    prototypes: int
    norm_last_layer: bool

    def setup(self, model: ABModel) -> None:
        model.base_head = DINOHead(self.hidden, self.dim, self.prototypes, self.norm_last_layer, name="base_head")
        model.ab_prototypes = model.param("ab_prototypes", nn.initializers.normal(0.02), (self.prototypes, self.dim))

    def init_outputs(self, model: ABModel, tokens: jax.Array, actions: jax.Array, captions=None):
        return model.q_logits(tokens, actions, model.ab_vocabulary()), model.base_embed(tokens)


def heads(config: ml_collections.ConfigDict) -> Heads:
    return Heads(config.model.proj_hidden, config.model.proj_dim, config.dino.prototypes, config.dino.norm_last_layer)


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    return build_ab_model(config, heads(config), init_logit_scale=1.0 / config.dino.student_temp)


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return (2 + config.dino.local_views) * config.batch.annotation


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Multi-crop: 2 global crops at `view_size` and `dino.local_views` local crops at `dino.local_size`, all
    photometrically augmented. keys [4]: global crops, their augmentation, local crops, theirs."""
    common = dict(ratio=tuple(config.env.ratio))
    rollout = crop_env.batch_rollout(
        keys[0],
        batch["image"],
        batch["valid"],
        num_views=2,
        scale=tuple(config.dino.global_scale),
        size=config.env.view_size,
        **common,
    )
    views = dict(annotation_views=photometric.augment_views(keys[1], rollout["views"], config.augment))
    if config.dino.local_views:
        local = crop_env.batch_rollout(
            keys[2],
            batch["image"],
            batch["valid"],
            num_views=config.dino.local_views,
            scale=tuple(config.dino.local_scale),
            size=config.dino.local_size,
            **common,
        )
        views["local_views"] = photometric.augment_views(keys[3], local["views"], config.augment)
    return views


def optimizer_rules(config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    """The last layer (prototypes and their gains) frozen for the first `dino.freeze_last_layer_steps` (DINO's
    `freeze_last_layer`): while the backbone still maps every image to nearly the same point, moving the
    prototypes is the cheapest way for the student to match a near-uniform teacher."""
    steps = config.dino.freeze_last_layer_steps
    return [(r"params/base_head/(prototypes|prototype_gain)", dict(frozen_steps=steps))] if steps else []


def initial_state(config: ml_collections.ConfigDict) -> dict:
    return {"center": jnp.zeros((config.dino.prototypes,), jnp.float32)}


def self_distillation(
    model: ABModel,
    params,
    ema_params,
    global_views: jax.Array,
    local_views: jax.Array | None,
    center: jax.Array,
    config: ml_collections.ConfigDict,
    step: jax.Array,
    head=ABModel.base_embed,
) -> tuple[jax.Array, dict, dict]:
    """DINO's loss on multi-crop views through `head` (SiLC: its self-supervised head beside CLIP's) → (loss,
    {"center": updated centre}, metrics)."""
    crops = [global_views] + ([local_views] if local_views is not None else [])
    student = [
        model.apply(params, model.apply(params, views, method=ABModel.encode), method=head) for views in crops
    ]  # global and local crops have different sizes: encoded separately
    teacher = model.apply(ema_params, model.apply(ema_params, global_views, method=ABModel.encode), method=head)
    temperature = dino.teacher_temperature(step, config)
    loss, batch_center, metrics = dino.dino_loss(
        jnp.concatenate(student, axis=1), teacher, center, config.dino.student_temp, temperature
    )
    new_state = {"center": dino.update_center(center, batch_center, config.dino.center_momentum)}
    return loss, new_state, dict(metrics, teacher_temperature=temperature)


def loss(
    model: ABModel,
    params,
    ema_params,
    batch: dict,
    config: ml_collections.ConfigDict,
    method_state: dict,
    step: jax.Array,
) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: annotation_views [K, 2, S, S, C] (global crops), local_views [K, L, s, s, C]; for AB also views and
    actions as in AB_SimCLR. Returns (loss, (metrics, {"center": updated centre}))."""
    center = method_state["center"]
    base_loss, new_state, metrics = self_distillation(
        model, params, ema_params, batch["annotation_views"], batch.get("local_views"), center, config, step
    )
    temperature = metrics["teacher_temperature"]
    metrics.update(loss=base_loss, base_loss=base_loss)
    if not bootstraps(config):
        return base_loss, (metrics, new_state)
    target_params = bootstrap.target_params(params, ema_params, config)

    target_views = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    target_logits = model.apply(target_params, target_views, method=ABModel.base_embed)
    p_local = dino.teacher_distribution(target_logits, center, temperature)
    td_loss, td_metrics = bootstrap.td_term(
        model,
        params,
        target_params,
        batch,
        online_vocabulary=model.apply(params, method=ABModel.ab_vocabulary),
        target_vocabulary=model.apply(target_params, method=ABModel.ab_vocabulary),
        target_view_tokens=target_views,
        p_local=jax.lax.stop_gradient(p_local),
        config=config,
    )
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, new_state)


def annotations(
    model: ABModel, params, config: ml_collections.ConfigDict, exemplars=None, channels: int = 1
) -> Annotations:
    """The K rows of the AB embedding matrix, named "prototype k". The base distribution is the prototype softmax
    at the student temperature (no centring: a single view has no batch to centre by)."""
    vocabulary = model.apply(params, method=ABModel.ab_vocabulary)
    return Annotations(
        tuple(f"prototype {k}" for k in range(vocabulary.shape[0])),
        vocabulary,
        None,
        jnp.asarray(1.0 / config.dino.student_temp),
    )


def digit_annotation(label: int) -> None:
    return None  # prototypes are not named after digits


def digit_vocabulary(
    model: ABModel, params, config: ml_collections.ConfigDict, exemplar_tokens: jax.Array, channels: int
) -> tuple[Annotations, jax.Array]:
    """The prototypes, spread over classes by P(c | k) ∝ the mean prototype distribution of class c's exemplars
    (tokens [10·E, T, D], class-major)."""
    vocabulary = annotations(model, params, config, channels=channels)
    logits = model.apply(params, exemplar_tokens, method=ABModel.base_embed)
    probabilities = jax.nn.softmax(vocabulary.base_scale * logits, axis=-1)  # [10·E, K]
    profiles = probabilities.reshape(10, -1, probabilities.shape[-1]).mean(1).T  # [K, 10]
    return vocabulary, profiles / jnp.maximum(profiles.sum(1, keepdims=True), 1e-12)
