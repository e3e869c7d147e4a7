"""CLIP (Radford et al. 2021) and AB_CLIP: symmetric InfoNCE on captioned annotation images, plus the TD loss on
the bootstrap batch for `ab_clip` (docs/method.md).

The vocabulary of the bootstrap softmax is the annotation batch's captions (unpaired with the bootstrap images),
embedded by the separate AB text head on the shared text tower. The target p_ema(ℓ | x_j) is the EMA network's
CLIP distribution over those captions on the reached view, with its learned scale.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvis.data import text
from rlvis.envs import crop_env
from rlvis.methods.common import Annotations, bootstraps, build_ab_model, check_range, require
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import LinearProjection
from rlvis.models.text import TextTower
from rlvis.models.vit import variant_shape
from rlvis.objectives import bootstrap, clip

NAME = "clip"
ANNOTATES = True
AB_VARIANT = True
EMA_TEACHER = False
FIXED_EMA = False
CAPTIONS = True
IMAGE_ANNOTATIONS = False


def settings() -> dict[str, dict]:
    """CLIP (Radford et al. 2021): captioned scenes, byte-level captions, a learned temperature."""
    return dict(
        clip=dict(
            text_variant="mu",  # text tower shape (paper: S); see rlvis/models/text.py
            caption_length=48,  # byte tokens incl. BOS/EOS; the longest demo caption is 42
            scale=(0.5, 1.0),  # RandomResizedCrop of the captioned image (paper Table 7)
            init_temperature=0.07,
        )
    )


def validate(config: ml_collections.ConfigDict) -> None:
    c = config.clip
    try:
        variant_shape(f"{c.text_variant}/1")
    except ValueError:
        require(False, f"config.clip.text_variant={c.text_variant!r} is not a known shape name")
    require(c.caption_length >= 3, "config.clip.caption_length must leave room for BOS, a byte and EOS")
    check_range(config, "clip", "scale")
    require(c.init_temperature > 0, "config.clip.init_temperature must be positive")


@dataclasses.dataclass(frozen=True)
class Heads:
    """The image projection with CLIP's learned temperature, the text tower, CLIP's text head ψ and the AB text
    head ψ_AB."""

    dim: int
    text_variant: str
    caption_length: int
    init_scale: float

    def setup(self, model: ABModel) -> None:
        model.base_head = LinearProjection(self.dim, name="base_head")
        model.text_tower = TextTower(self.text_variant, self.caption_length, name="text_tower")
        model.text_head = LinearProjection(self.dim, name="text_head")
        model.ab_text_head = LinearProjection(self.dim, name="ab_text_head")
        model.clip_log_scale = model.param("clip_log_scale", nn.initializers.constant(jnp.log(self.init_scale)), ())

    def init_outputs(self, model: ABModel, tokens: jax.Array, actions: jax.Array, captions: jax.Array):
        clip_text, vocabulary = model.text_embed(captions)
        return model.q_logits(tokens, actions, vocabulary), model.base_embed(tokens) @ clip_text.T


def heads(config: ml_collections.ConfigDict) -> Heads:
    return Heads(
        config.model.proj_dim, config.clip.text_variant, config.clip.caption_length, 1.0 / config.clip.init_temperature
    )


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    return build_ab_model(config, heads(config), init_logit_scale=1.0 / config.clip.init_temperature)


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return config.batch.annotation


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """One RandomResizedCrop of each captioned image and its caption: CLIP augments with the crop alone.
    keys [4]: the crops (the rest unused)."""
    rollout = crop_env.batch_rollout(
        keys[0],
        batch["image"],
        batch["valid"],
        num_views=1,
        scale=tuple(config.clip.scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    return dict(annotation_views=rollout["views"], captions=batch["caption"])


def optimizer_rules(config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    return []


def initial_state(config: ml_collections.ConfigDict) -> dict:
    return {}


def loss(
    model: ABModel,
    params,
    ema_params,
    batch: dict,
    config: ml_collections.ConfigDict,
    method_state: dict | None = None,
    step: jax.Array | None = None,
) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: annotation_views [K, 1, S, S, C], captions int32 [K, L]; for AB also views, actions and boxes."""
    images = model.apply(
        params, model.apply(params, batch["annotation_views"][:, 0], method=ABModel.encode), method=ABModel.base_embed
    )
    captions, ab_captions = model.apply(params, batch["captions"], method=ABModel.text_embed)
    scale = model.apply(params, method=ABModel.clip_logit_scale)
    base_loss, accuracy = clip.symmetric_infonce(images, captions, scale)
    metrics = dict(loss=base_loss, base_loss=base_loss, base_accuracy=accuracy, clip_logit_scale=scale)
    if not bootstraps(config):
        return base_loss, (metrics, {})
    target_params = bootstrap.target_params(params, ema_params, config)

    target_views = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    target_captions, target_ab_captions = model.apply(target_params, batch["captions"], method=ABModel.text_embed)
    p_local = clip.caption_distribution(
        model.apply(target_params, target_views, method=ABModel.base_embed),
        target_captions,
        model.apply(target_params, method=ABModel.clip_logit_scale),
    )
    td_loss, td_metrics = bootstrap.td_term(
        model,
        params,
        target_params,
        batch,
        online_vocabulary=ab_captions,
        target_vocabulary=target_ab_captions,
        target_view_tokens=target_views,
        p_local=p_local,
        config=config,
    )
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, {})


def annotations(
    model: ABModel,
    params,
    config: ml_collections.ConfigDict,
    exemplars=None,
    channels: int = 1,
    names: tuple[str, ...] = tuple(f"a {digit}" for digit in range(10)),
) -> Annotations:
    """Captions through the AB text head (ψ_AB) and the CLIP text head (p(ℓ | x)); by default "a 0" … "a 9"."""
    captions = np.stack([text.encode(name, config.clip.caption_length) for name in names])
    base_text, ab_text = model.apply(params, jnp.asarray(captions), method=ABModel.text_embed)
    return Annotations(tuple(names), ab_text, base_text, model.apply(params, method=ABModel.clip_logit_scale))


def digit_annotation(label: int) -> str:
    return f"a {label}"


def digit_vocabulary(
    model: ABModel, params, config: ml_collections.ConfigDict, exemplar_tokens: jax.Array, channels: int
) -> tuple[Annotations, jax.Array]:
    """The captions "a 0" … "a 9", one per class."""
    return annotations(model, params, config, channels=channels), jnp.eye(10)
