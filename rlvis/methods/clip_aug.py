"""CLIP + Aug (Fini et al. 2023): CLIP whose image view is strongly augmented, a baseline of the paper's arXiv
tables. Fini et al. found that SimCLR-style augmentation of CLIP's one view recovers most of what SLIP-like
self-supervised losses add; this baseline separates "more augmentation" from "another loss".

Everything is `clip` except the view: a RandomResizedCrop at `clip_aug.scale` (SimCLR's 0.08–1 rather than
CLIP's 0.5–1), then the `augment` colour jitter, grayscale and flip, plus Gaussian blur and solarisation at
`clip_aug.blur` / `clip_aug.solarize` [INF: BYOL-style 0.5 / 0.2; Fini et al.'s code makes them flags]. No AB
variant: the paper's AB method of this family is AB_CLIP.
"""

import jax
import ml_collections

from rlvis.envs import crop_env, photometric
from rlvis.methods import clip
from rlvis.methods.common import check_range, require

NAME = "clip_aug"
ANNOTATES = True
AB_VARIANT = False
EMA_TEACHER = False
FIXED_EMA = False
CAPTIONS = True
IMAGE_ANNOTATIONS = False

build_model = clip.build_model  # the same network as CLIP (its heads come from clip.py)
annotation_views_per_step = clip.annotation_views_per_step
optimizer_rules = clip.optimizer_rules
initial_state = clip.initial_state
loss = clip.loss
annotations = clip.annotations
digit_annotation = clip.digit_annotation
digit_vocabulary = clip.digit_vocabulary


def settings() -> dict[str, dict]:
    """CLIP's sections, the colour augmentation, and the strong crop, blur and solarisation of Fini et al."""
    return dict(
        clip.settings(),
        augment=photometric.default_settings(),
        clip_aug=dict(
            scale=(0.08, 1.0),  # SimCLR's crop range instead of CLIP's (0.5, 1); colour from `augment`
            blur=0.5,  # [INF] BYOL-style probabilities; Fini et al.'s code leaves them as flags
            solarize=0.2,
        ),
    )


def validate(config: ml_collections.ConfigDict) -> None:
    clip.validate(config)
    photometric.validate(config.augment)
    check_range(config, "clip_aug", "scale")
    for field in ("blur", "solarize"):
        require(0 <= config.clip_aug[field] <= 1, f"config.clip_aug.{field}={config.clip_aug[field]} must be in [0, 1]")


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """One strongly augmented crop of each captioned image and its caption. keys [4]: crops, augmentation, (unused)
    ×2."""
    rollout = crop_env.batch_rollout(
        keys[0],
        batch["image"],
        batch["valid"],
        num_views=1,
        scale=tuple(config.clip_aug.scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    strong = ml_collections.ConfigDict(
        dict(config.augment.to_dict(), blur=config.clip_aug.blur, solarize=config.clip_aug.solarize)
    )
    return dict(
        annotation_views=photometric.augment_views(keys[1], rollout["views"], strong), captions=batch["caption"]
    )
