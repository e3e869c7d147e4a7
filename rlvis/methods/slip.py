"""SLIP (Mu et al. 2022): CLIP plus SimCLR on the same captioned images, a baseline of the paper's tables (weak
supervision + self-supervision). No AB variant: the paper compares AB_CLIP against it.

Each step, CLIP's loss on one RandomResizedCrop of every captioned image (as `clip`), and SimCLR's NT-Xent on two
strongly augmented crops of the first `slip.ssl_fraction` of them (Table 7: CLIP 4,096 + SimCLR 2,048 images)
through a separate projection head (`ssl_head`). Loss = CLIP + `slip.loss_weight` × SimCLR (the paper's ratio 1).
"""

import dataclasses

import jax
import ml_collections

from rlvis.envs import crop_env, photometric
from rlvis.methods import clip
from rlvis.methods.common import build_ab_model, check_range, require
from rlvis.models.ab_model import ABModel, Heads as ModelHeads
from rlvis.models.heads import ProjectionHead
from rlvis.objectives import simclr

NAME = "slip"
ANNOTATES = True  # CLIP's caption distribution: foresight, value maps and search read it
AB_VARIANT = False
EMA_TEACHER = False
FIXED_EMA = False
CAPTIONS = True
IMAGE_ANNOTATIONS = False

optimizer_rules = clip.optimizer_rules
initial_state = clip.initial_state
annotations = clip.annotations
digit_annotation = clip.digit_annotation
digit_vocabulary = clip.digit_vocabulary


def settings() -> dict[str, dict]:
    """CLIP's sections, SimCLR's augmentation, and how much SimCLR joins CLIP (Mu et al. 2022)."""
    return dict(
        clip.settings(),
        augment=photometric.default_settings(),
        slip=dict(
            ssl_fraction=0.5,  # captioned images that also give SimCLR views (Table 7: CLIP 4,096 + SimCLR 2,048)
            scale=(0.08, 1.0),  # SimCLR's RandomResizedCrop; colour from `augment`
            temperature=0.1,  # (SLIP)
            loss_weight=1.0,  # SimCLR loss per unit CLIP loss (Table 7: ratio 1.0)
        ),
    )


def validate(config: ml_collections.ConfigDict) -> None:
    clip.validate(config)
    photometric.validate(config.augment)
    check_range(config, "slip", "scale")
    require(0 < config.slip.ssl_fraction <= 1, f"config.slip.ssl_fraction={config.slip.ssl_fraction} must be in (0, 1]")
    require(config.slip.temperature > 0, "config.slip.temperature must be positive")


@dataclasses.dataclass(frozen=True)
class Heads:
    """CLIP's heads and SimCLR's projection head."""

    clip: ModelHeads
    hidden: int
    dim: int

    def setup(self, model: ABModel) -> None:
        self.clip.setup(model)
        model.ssl_head = ProjectionHead(self.hidden, self.dim, name="ssl_head")

    def init_outputs(self, model: ABModel, tokens, actions, captions):
        q_logits, clip_logits = self.clip.init_outputs(model, tokens, actions, captions)
        return q_logits, (clip_logits, model.ssl_embed(tokens))


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    return build_ab_model(
        config,
        Heads(clip.heads(config), config.model.proj_hidden, config.model.proj_dim),
        init_logit_scale=1.0 / config.clip.init_temperature,
    )


def spread_rows(batch: int, count: int) -> slice:
    """`count` rows spread evenly over a batch of `batch` (every k-th): a batch split over devices gives each
    device its share of the extra views, where the first rows would all sit on the first devices."""
    return slice(0, (batch // count) * count, batch // count)


def ssl_images(config: ml_collections.ConfigDict) -> int:
    """Captioned images that also give SimCLR's two views."""
    return max(2, round(config.slip.ssl_fraction * config.batch.annotation))


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return config.batch.annotation + 2 * ssl_images(config)


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """CLIP's crop and caption of every image; two crops at `slip.scale` of `ssl_images` of them spread over the
    batch (`spread_rows`), augmented as SimCLR's (`augment`). keys [4]: CLIP's crops, SimCLR's crops, their augmentation, (unused)."""
    views = clip.render_annotation(keys, batch, config)
    rows = spread_rows(config.batch.annotation, ssl_images(config))
    rollout = crop_env.batch_rollout(
        keys[1],
        batch["image"][rows],
        batch["valid"][rows],
        num_views=2,
        scale=tuple(config.slip.scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    return dict(views, ssl_views=photometric.augment_views(keys[2], rollout["views"], config.augment))


def loss(
    model: ABModel,
    params,
    ema_params,
    batch: dict,
    config: ml_collections.ConfigDict,
    method_state: dict | None = None,
    step: jax.Array | None = None,
) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: CLIP's (annotation_views [K, 1, S, S, C], captions [K, L]) and ssl_views [n, 2, S, S, C]."""
    clip_loss, (metrics, _) = clip.loss(model, params, ema_params, batch, config)
    z = model.apply(params, model.apply(params, batch["ssl_views"], method=ABModel.encode), method=ABModel.ssl_embed)
    ssl_loss, ssl_accuracy = simclr.nt_xent(z[:, 0], z[:, 1], config.slip.temperature)
    total = clip_loss + config.slip.loss_weight * ssl_loss
    return total, (dict(metrics, loss=total, clip_loss=clip_loss, ssl_loss=ssl_loss, ssl_accuracy=ssl_accuracy), {})
