"""I-JEPA (Assran et al. 2023): the latent-prediction baseline of the paper's tables, "prediction without
grounding". No AB variant: the paper compares against I-JEPA alone.

Each annotation image gives one RandomResizedCrop (`ijepa.scale`; Table 7: RRC(0.3, 1), nothing else). Multi-block
masking (objectives/ijepa.py) picks a context and `ijepa.targets` target blocks; the online (context) encoder reads
the context patches alone, the EMA target encoder reads the whole view, and a narrow predictor
(heads.LatentPredictor) predicts the target encoder's layer-normalised tokens at the target blocks from the context
and the blocks' positions. AB shares its shape — an encoder, a decoder queried by positions, an EMA target — but
AB's targets are annotation distributions grounded by a base loss; I-JEPA's are the target encoder's own features.
The scored encoder is the EMA target encoder, as I-JEPA evaluates it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from rlvis.envs import crop_env
from rlvis.methods.common import build_ab_model, check_range, require
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import LatentPredictor
from rlvis.models.vit import variant_shape
from rlvis.objectives import ijepa

NAME = "ijepa"
ANNOTATES = False  # no annotation distribution p(ℓ | x): nothing to bootstrap, no foresight
AB_VARIANT = False
EMA_TEACHER = True
FIXED_EMA = False
CAPTIONS = False
IMAGE_ANNOTATIONS = False
NO_ANNOTATIONS = "I-JEPA predicts features and has no annotation vocabulary"


def settings() -> dict[str, dict]:
    """I-JEPA (Assran et al. 2023): predict target-block features from a context block."""
    return dict(
        ijepa=dict(
            scale=(0.3, 1.0),  # RandomResizedCrop (paper Table 7), no other augmentation
            targets=4,  # target blocks per image (paper)
            target_scale=(0.15, 0.2),  # fraction of the patch grid per target block (paper)
            target_aspect=(0.75, 1.5),  # (paper)
            context_scale=(0.85, 1.0),  # the context block, aspect 1, before the targets are removed (paper)
            # patches the context encoder reads, a fixed share of the grid [INF: about what I-JEPA's context keeps once
            # the targets are cut out; XLA needs a fixed count]
            context_fraction=0.3,
            predictor_width=32,  # narrower than the encoder (paper: 384 for ViT-H's 1,280)
            predictor_depth=2,  # (paper: 12 at ViT-H; demo scale)
            predictor_heads=4,
        )
    )


def validate(config: ml_collections.ConfigDict) -> None:
    j = config.ijepa
    for field in ("scale", "target_scale", "context_scale"):
        check_range(config, "ijepa", field)
    check_range(config, "ijepa", "target_aspect", upper=None)
    require(j.targets >= 1, "config.ijepa.targets must be at least 1")
    require(0 < j.context_fraction < 1, "config.ijepa.context_fraction must be in (0, 1)")
    require(
        j.predictor_width % j.predictor_heads == 0,
        "config.ijepa.predictor_width must be divisible by config.ijepa.predictor_heads",
    )


@dataclasses.dataclass(frozen=True)
class Heads:
    """The narrow latent predictor: width, depth, heads."""

    width: int
    depth: int
    heads: int

    def setup(self, model: ABModel) -> None:
        model.base_head = LatentPredictor(self.width, self.depth, self.heads, name="predictor")

    def init_outputs(self, model: ABModel, tokens: jax.Array, actions: jax.Array, captions=None):
        """The predictor once, every patch as context and one one-patch block (its parameters do not depend on the
        counts)."""
        batch, patches = tokens.shape[0], tokens.shape[1] - 1
        context = jnp.broadcast_to(jnp.arange(patches), (batch, patches))
        target = jnp.zeros((batch, 1, 1), jnp.int32)
        return predict(model, tokens, context, target, jnp.ones((batch, 1, 1), bool)), None


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    j = config.ijepa
    return build_ab_model(config, Heads(j.predictor_width, j.predictor_depth, j.predictor_heads), init_logit_scale=1.0)


def grid(config: ml_collections.ConfigDict) -> int:
    return config.env.view_size // variant_shape(config.model.variant).patch


def predict(model: ABModel, tokens: jax.Array, context: jax.Array, target: jax.Array, valid: jax.Array) -> jax.Array:
    """Context-encoder tokens [B, 1 + C, D], context indices [B, C], target blocks [B, M, T] (+ valid) → predicted
    target tokens [B, M, T, D]."""
    patches = (model.image_size // variant_shape(model.variant).patch) ** 2
    return model.base_head(tokens, context, target, valid, patches)


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return config.batch.annotation  # masked: the context encoder reads `ijepa.context_fraction` of the patches


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """One RandomResizedCrop per image and its multi-block masks. keys [4]: crops, masks, (unused) ×2."""
    rollout = crop_env.batch_rollout(
        keys[0],
        batch["image"],
        batch["valid"],
        num_views=1,
        scale=tuple(config.ijepa.scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    views = rollout["views"][:, 0]  # [K, S, S, C]
    masks = ijepa.multi_block_masks(
        keys[1],
        views.shape[0],
        grid(config),
        config.ijepa.targets,
        tuple(config.ijepa.target_scale),
        tuple(config.ijepa.target_aspect),
        tuple(config.ijepa.context_scale),
        config.ijepa.context_fraction,
    )
    return dict(annotation_views=views, **masks)


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
    """batch: annotation_views [K, S, S, C], context [K, C], target [K, M, T], target_valid [K, M, T]."""
    views = batch["annotation_views"]
    targets = ijepa.target_representations(model.apply(ema_params, views, method=ABModel.encode), batch["target"])
    tokens = model.apply(params, views, batch["context"], method=ABModel.encode)
    predicted = model.apply(params, tokens, batch["context"], batch["target"], batch["target_valid"], method=predict)
    prediction = ijepa.prediction_loss(predicted, targets, batch["target_valid"])
    # Collapse shows as target features that no longer vary across images (std over the batch → 0).
    target_std = jnp.mean(jnp.std(targets.reshape(-1, targets.shape[-1]), axis=0))
    metrics = dict(
        loss=prediction,
        base_loss=prediction,
        target_std=target_std,
        target_patches=jnp.mean(jnp.sum(batch["target_valid"], axis=(1, 2)).astype(jnp.float32)),
    )
    return prediction, (metrics, {})


def annotations(model, params, config, exemplars=None, channels: int = 1):
    raise ValueError(NO_ANNOTATIONS)


def digit_annotation(label: int) -> None:
    return None


def digit_vocabulary(model, params, config, exemplar_tokens, channels):
    raise ValueError(NO_ANNOTATIONS)
