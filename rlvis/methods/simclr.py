"""SimCLR (Chen et al. 2020) and AB_SimCLR: NT-Xent on the annotation batch, plus the TD loss on the bootstrap
batch for `ab_simclr` (docs/method.md).

Annotations are images: the annotation batch's second views are the vocabulary ℓ_1..ℓ_K of the bootstrap
softmax. Online: the value head's prediction for (x_i, a_{i→j}) against ψ_AB(ℓ), a separate annotation head on
the shared ViT. Target (EMA network, no gradient): p_ema(ℓ | x_j) from the SimCLR head, and for γ > 0 the EMA
value head's predictions from x_j.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env, photometric
from rlvis.methods.common import Annotations, bootstraps, build_ab_model, require
from rlvis.models import features
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import ProjectionHead, l2_normalize
from rlvis.objectives import bootstrap, rewards, simclr

NAME = "simclr"
ANNOTATES = True
AB_VARIANT = True
EMA_TEACHER = False
FIXED_EMA = False
CAPTIONS = False
IMAGE_ANNOTATIONS = True


def settings() -> dict[str, dict]:
    """The config sections SimCLR reads besides the shared ones, with their defaults."""
    return dict(simclr=dict(temperature=0.1), augment=photometric.default_settings())


def validate(config: ml_collections.ConfigDict) -> None:
    require(config.simclr.temperature > 0, "config.simclr.temperature must be positive")
    photometric.validate(config.augment)


@dataclasses.dataclass(frozen=True)
class Heads:
    """SimCLR's projection head φ = ψ, and the AB annotation head ψ_AB on the same ViT."""

    hidden: int
    dim: int

    def setup(self, model: ABModel) -> None:
        model.base_head = ProjectionHead(self.hidden, self.dim, name="base_head")
        model.ab_head = ProjectionHead(self.hidden, self.dim, name="ab_head")

    def init_outputs(self, model: ABModel, tokens: jax.Array, actions: jax.Array, captions=None):
        """Every part once (for init): Q logits against the batch's own AB embeddings, and the base embedding."""
        return model.q_logits(tokens, actions, model.ab_embed(tokens)), model.base_embed(tokens)


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    return build_ab_model(
        config, Heads(config.model.proj_hidden, config.model.proj_dim), init_logit_scale=1.0 / config.simclr.temperature
    )


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return 2 * config.batch.annotation


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Two RandomResizedCrops of each annotation image, photometrically augmented. keys [4]: crops, their
    augmentation, (unused here) extra crops and theirs."""
    crop_key, augment_key = keys[0], keys[1]
    rollout = crop_env.batch_rollout(
        crop_key,
        batch["image"],
        batch["valid"],
        num_views=2,
        scale=tuple(config.env.annotation_scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    return dict(annotation_views=photometric.augment_views(augment_key, rollout["views"], config.augment))


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
    """batch: annotation_views [K, 2, S, S, C]; views [B, n, S, S, C]; actions [B, n, n-1, 4], boxes [B, n, 4].

    Returns (loss, (metrics, method_state)). For the baseline (`simclr`) only `annotation_views` is read.
    """
    annotation_tokens = model.apply(params, batch["annotation_views"], method=ABModel.encode)  # [K, 2, T, D]
    z = model.apply(params, annotation_tokens, method=ABModel.base_embed)
    base_loss, base_accuracy = simclr.nt_xent(z[:, 0], z[:, 1], config.simclr.temperature)
    metrics = dict(loss=base_loss, base_loss=base_loss, base_accuracy=base_accuracy)
    if not bootstraps(config):
        return base_loss, (metrics, {})
    target_params = bootstrap.target_params(params, ema_params, config)

    # Target network: the annotations (second views) and every bootstrap view.
    target_annotations = model.apply(target_params, batch["annotation_views"][:, 1], method=ABModel.encode)
    target_views = model.apply(target_params, batch["views"], method=ABModel.encode)  # [B, n, T, D]
    annotation_z = model.apply(target_params, target_annotations, method=ABModel.base_embed)
    target_vocabulary = None
    if config.ab.gamma > 0.0:
        target_vocabulary = model.apply(target_params, target_annotations, method=ABModel.ab_embed)

    def base_reward() -> jax.Array:  # p_target(ℓ | x_j): the target network's base head on every bootstrap view
        distribution = (
            simclr.centred_annotation_distribution if config.ab.center_target else simclr.annotation_distribution
        )
        return distribution(
            model.apply(target_params, target_views, method=ABModel.base_embed), annotation_z, config.simclr.temperature
        )

    td_loss, td_metrics = bootstrap.td_term(
        model,
        params,
        target_params,
        batch,
        online_vocabulary=model.apply(params, annotation_tokens[:, 1], method=ABModel.ab_embed),
        target_vocabulary=target_vocabulary,
        target_view_tokens=target_views,
        p_local=rewards.reward(config.ab.reward, base_reward, batch),
        config=config,
    )
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, {})


def annotations(
    model: ABModel,
    params,
    config: ml_collections.ConfigDict,
    exemplars: dict[str, np.ndarray] | None = None,
    channels: int = 1,
) -> Annotations:
    """Annotations are images: class c is the mean embedding (ψ_AB for the value head, the base head for p(ℓ | x))
    of `exemplars[c]` — name → images [N, H, W, C], tiled to the encoder's `channels` — l2-normalised; by default
    40 held-out centred digits per class."""
    if exemplars is None:
        splits = digits_lib.load_digits(config.eval.digits_per_class)
        exemplars = {
            str(c): np.stack(
                [
                    digits_lib.centred_digit(d)["image"]
                    for d in splits.probe_test_images[splits.probe_test_labels == c][:40]
                ]
            )
            for c in range(10)
        }
    encode = lambda p, views: model.apply(p, views, method=ABModel.encode)
    tokens_of = features.token_features(encode, config.env.view_size, channels)  # whole image, channels tiled
    ab, base_embeddings = [], []
    for images in exemplars.values():
        valid = np.tile(np.array(images.shape[1:3], np.int32), (len(images), 1))
        tokens = tokens_of(params, jnp.asarray(images), jnp.asarray(valid))
        ab.append(l2_normalize(model.apply(params, tokens, method=ABModel.ab_embed).mean(0)))
        base_embeddings.append(l2_normalize(model.apply(params, tokens, method=ABModel.base_embed).mean(0)))
    return Annotations(
        tuple(exemplars), jnp.stack(ab), jnp.stack(base_embeddings), jnp.asarray(1.0 / config.simclr.temperature)
    )


def digit_annotation(label: int) -> str:
    return str(label)


def digit_vocabulary(
    model: ABModel, params, config: ml_collections.ConfigDict, exemplar_tokens: jax.Array, channels: int
) -> tuple[Annotations, jax.Array]:
    """Every exemplar (tokens [10·E, T, D], class-major) is an annotation of its class, as the annotation batch's
    images are in training → (vocabulary, class_of_annotation [10·E, 10])."""
    embed = lambda method: l2_normalize(model.apply(params, exemplar_tokens, method=method))
    vocabulary = Annotations(
        tuple(map(str, range(len(exemplar_tokens)))),
        embed(ABModel.ab_embed),
        embed(ABModel.base_embed),
        jnp.asarray(1.0 / config.simclr.temperature),
    )
    return vocabulary, jnp.repeat(jnp.eye(10), len(exemplar_tokens) // 10, axis=0)
