"""MAE (He et al. 2022): the pixel-reconstruction baseline of the paper's tables. No AB variant: the paper
compares against MAE alone.

Each annotation image gives one RandomResizedCrop (+ flip where `augment.flip` is set); `mae.mask_ratio` of its
patches are hidden, the encoder reads the visible ones alone, and a light decoder (heads.MaskedPatchDecoder)
reconstructs the hidden patches' normalised pixels (objectives/mae.py). MAE has no annotation distribution, so
the evaluators that read one (foresight, value maps, search) do not apply; the probes score its encoder.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from rlvis.envs import crop_env, photometric
from rlvis.data.sources import image_channels
from rlvis.methods.common import build_ab_model, require
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import MaskedPatchDecoder
from rlvis.models.vit import variant_shape
from rlvis.objectives import mae

NAME = "mae"
ANNOTATES = False  # no annotation distribution p(ℓ | x): nothing to bootstrap, no foresight
AB_VARIANT = False  # the paper compares against MAE alone
EMA_TEACHER = False
FIXED_EMA = False
CAPTIONS = False
IMAGE_ANNOTATIONS = False
NO_ANNOTATIONS = "MAE reconstructs pixels and has no annotation vocabulary"


def settings() -> dict[str, dict]:
    """MAE (He et al. 2022): most patches hidden, the encoder reads the rest, a light decoder paints the hidden
    ones. Its views take `augment.flip` only."""
    return dict(
        augment=photometric.default_settings(),
        mae=dict(
            mask_ratio=0.75,  # paper
            norm_pix=True,  # targets: each patch's pixels over its own mean and variance (the paper's choice)
            decoder_width=64,  # the paper's decoder is 512 wide, 8 deep for ViT-L; at demo scale the encoder's width
            decoder_depth=2,
            decoder_heads=4,
        ),
    )


def validate(config: ml_collections.ConfigDict) -> None:
    require(0.0 < config.mae.mask_ratio < 1.0, f"config.mae.mask_ratio={config.mae.mask_ratio} must be in (0, 1)")
    require(
        config.mae.decoder_width % config.mae.decoder_heads == 0,
        "config.mae.decoder_width must be divisible by config.mae.decoder_heads",
    )
    photometric.validate(config.augment)


@dataclasses.dataclass(frozen=True)
class Heads:
    """The pixel decoder: width, depth, heads, and the pixels of one patch (patch² × channels)."""

    width: int
    depth: int
    heads: int
    pixels_per_patch: int

    def setup(self, model: ABModel) -> None:
        model.base_head = MaskedPatchDecoder(self.width, self.depth, self.heads, name="pixel_decoder")

    def init_outputs(self, model: ABModel, tokens: jax.Array, actions: jax.Array, captions=None):
        """The decoder once, on every patch as if all were visible (its parameters do not depend on K)."""
        keep = jnp.broadcast_to(jnp.arange(tokens.shape[1] - 1), (tokens.shape[0], tokens.shape[1] - 1))
        return reconstruct(model, tokens, keep), None


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    patch = variant_shape(config.model.variant).patch
    return build_ab_model(
        config,
        Heads(
            config.mae.decoder_width,
            config.mae.decoder_depth,
            config.mae.decoder_heads,
            patch * patch * image_channels(config),
        ),
        init_logit_scale=1.0,
    )


def reconstruct(model: ABModel, tokens: jax.Array, keep: jax.Array) -> jax.Array:
    """Tokens of the visible patches [B, 1 + K, D] and their indices [B, K] → every patch's pixels [B, N, P]."""
    patches = (model.image_size // variant_shape(model.variant).patch) ** 2
    return model.base_head(tokens, keep, patches, model.heads.pixels_per_patch)


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return config.batch.annotation  # masked: the encoder reads (1 - mask_ratio) of each view's patches


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """One RandomResizedCrop per image, flipped with probability `augment.flip`, and its random mask. keys [4]:
    crops, flips, masks, (unused)."""
    rollout = crop_env.batch_rollout(
        keys[0],
        batch["image"],
        batch["valid"],
        num_views=1,
        scale=tuple(config.env.annotation_scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    flip_only = ml_collections.ConfigDict(
        dict(config.augment.to_dict(), jitter_prob=0.0, grayscale=0.0, blur=0.0, solarize=0.0)
    )
    views = photometric.augment_views(keys[1], rollout["views"][:, 0], flip_only)  # [K, S, S, C]
    patches = (config.env.view_size // variant_shape(config.model.variant).patch) ** 2
    keep, hidden = mae.random_masking(keys[2], views.shape[0], patches, config.mae.mask_ratio)
    return dict(annotation_views=views, keep=keep, hidden=hidden)


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
    """batch: annotation_views [K, S, S, C], keep [K, V] (visible patches), hidden [K, N]."""
    tokens = model.apply(params, batch["annotation_views"], batch["keep"], method=ABModel.encode)
    predicted = model.apply(params, tokens, batch["keep"], method=reconstruct)
    targets = mae.patchify(batch["annotation_views"], variant_shape(config.model.variant).patch)
    if config.mae.norm_pix:
        targets = mae.normalized_targets(targets)
    reconstruction = mae.reconstruction_loss(predicted, targets, batch["hidden"])
    return reconstruction, (dict(loss=reconstruction, base_loss=reconstruction), {})


def annotations(model, params, config, exemplars=None, channels: int = 1):
    raise ValueError(NO_ANNOTATIONS)


def digit_annotation(label: int) -> None:
    return None


def digit_vocabulary(model, params, config, exemplar_tokens, channels):
    raise ValueError(NO_ANNOTATIONS)
