"""SiLC (Naeem et al. 2023): CLIP plus DINO-style local-to-global self-distillation on the same captioned images,
with an EMA teacher at a fixed momentum; a baseline of the paper's tables (weak supervision + self-supervision).
No AB variant: the paper compares AB_CLIP against it.

Each step, CLIP's loss on one crop of every captioned image (as `clip`), and DINO's loss (rlvis/methods/dino.py,
its centre, temperatures and multi-crop settings) on the first `silc.dino_fraction` of them (Table 7: CLIP 4,096 +
DINO 512 images × 10 views) through a separate prototype head (`ssl_head`). The teacher is the EMA of the whole
network at momentum `ema.start` throughout (FIXED_EMA; Table 7: 0.996). Loss = CLIP + `silc.loss_weight` × DINO.
The scored encoder is the EMA teacher, as SiLC's paper evaluates it.
"""

import dataclasses

import jax
import ml_collections

from rlvis.methods import clip, dino, slip
from rlvis.methods.common import build_ab_model, require
from rlvis.models.ab_model import ABModel, Heads as ModelHeads
from rlvis.models.heads import DINOHead

NAME = "silc"
ANNOTATES = True  # CLIP's caption distribution: foresight, value maps and search read it
AB_VARIANT = False
EMA_TEACHER = True
FIXED_EMA = True
CAPTIONS = True
IMAGE_ANNOTATIONS = False

initial_state = dino.initial_state
annotations = clip.annotations
digit_annotation = clip.digit_annotation
digit_vocabulary = clip.digit_vocabulary


def settings() -> dict[str, dict]:
    """CLIP's and DINO's sections, and how much DINO joins CLIP (Naeem et al. 2023)."""
    return dict(
        clip.settings(),
        **dino.settings(),
        silc=dict(
            dino_fraction=0.125,  # captioned images that also give DINO's multi-crop (Table 7: 4,096 + 512)
            loss_weight=1.0,  # (Table 7: ratio 1.0)
        ),
    )


def validate(config: ml_collections.ConfigDict) -> None:
    clip.validate(config)
    dino.validate(config)
    require(
        0 < config.silc.dino_fraction <= 1, f"config.silc.dino_fraction={config.silc.dino_fraction} must be in (0, 1]"
    )
    require(
        config.batch.annotation >= 2,
        f"config.batch.annotation={config.batch.annotation}: silc's self-distillation needs 2 images",
    )


@dataclasses.dataclass(frozen=True)
class Heads:
    """CLIP's heads and DINO's prototype head."""

    clip: ModelHeads
    hidden: int
    dim: int
    prototypes: int
    norm_last_layer: bool

    def setup(self, model: ABModel) -> None:
        self.clip.setup(model)
        model.ssl_head = DINOHead(self.hidden, self.dim, self.prototypes, self.norm_last_layer, name="ssl_head")

    def init_outputs(self, model: ABModel, tokens, actions, captions):
        q_logits, clip_logits = self.clip.init_outputs(model, tokens, actions, captions)
        return q_logits, (clip_logits, model.ssl_embed(tokens))


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    heads = Heads(
        clip.heads(config),
        config.model.proj_hidden,
        config.model.proj_dim,
        config.dino.prototypes,
        config.dino.norm_last_layer,
    )
    return build_ab_model(config, heads, init_logit_scale=1.0 / config.clip.init_temperature)


def dino_images(config: ml_collections.ConfigDict) -> int:
    """Captioned images that also give DINO's multi-crop views (at least 2: the centre is a batch mean)."""
    return max(2, round(config.silc.dino_fraction * config.batch.annotation))


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return config.batch.annotation + (2 + config.dino.local_views) * dino_images(config)


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """CLIP's crop and caption of every image; DINO's global and local crops of `dino_images` of them, spread
    over the batch (`slip.spread_rows`). keys [4]:
    CLIP's crops, DINO's (split four ways), (unused), (unused)."""
    rows = slip.spread_rows(config.batch.annotation, dino_images(config))
    multi_crop = dino.render_annotation(
        jax.random.split(keys[1], 4), dict(image=batch["image"][rows], valid=batch["valid"][rows]), config
    )
    return dict(
        clip.render_annotation(keys, batch, config),
        dino_views=multi_crop["annotation_views"],
        **({"dino_local_views": multi_crop["local_views"]} if "local_views" in multi_crop else {}),
    )


def optimizer_rules(config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    """DINO's last layer frozen at first, as in `dino`."""
    steps = config.dino.freeze_last_layer_steps
    return [(r"params/ssl_head/(prototypes|prototype_gain)", dict(frozen_steps=steps))] if steps else []


def loss(
    model: ABModel,
    params,
    ema_params,
    batch: dict,
    config: ml_collections.ConfigDict,
    method_state: dict,
    step: jax.Array,
) -> tuple[jax.Array, tuple[dict, dict]]:
    """batch: CLIP's (annotation_views, captions), dino_views [n, 2, S, S, C], dino_local_views [n, L, s, s, C]."""
    clip_loss, (metrics, _) = clip.loss(model, params, ema_params, batch, config)
    dino_loss, new_state, dino_metrics = dino.self_distillation(
        model,
        params,
        ema_params,
        batch["dino_views"],
        batch.get("dino_local_views"),
        method_state["center"],
        config,
        step,
        head=ABModel.ssl_embed,
    )
    total = clip_loss + config.silc.loss_weight * dino_loss
    return total, (dict(metrics, **dino_metrics, loss=total, clip_loss=clip_loss, dino_loss=dino_loss), new_state)
