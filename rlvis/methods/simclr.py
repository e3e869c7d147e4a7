"""SimCLR (Chen et al. 2020) and AB_SimCLR: NT-Xent on the annotation batch, plus the TD loss on the bootstrap
batch for `ab_simclr` (docs/method.md).

Annotations are images: the annotation batch's second views are the vocabulary ℓ_1..ℓ_K of the bootstrap
softmax. Online: the value head's prediction for (x_i, a_{i→j}) against ψ_AB(ℓ), a separate annotation head on
the shared ViT. Target (EMA network, no gradient): p_ema(ℓ | x_j) from the SimCLR head, and for γ > 0 the EMA
value head's predictions from x_j.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env, photometric
from rlvis.evaluators import common
from rlvis.methods.common import Annotations, bootstraps, build_ab_model
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import ProjectionHead, l2_normalize
from rlvis.objectives import bootstrap, simclr

NAME = "simclr"
ANNOTATES = True
AB_VARIANT = True
EMA_TEACHER = False
FIXED_EMA = False
CAPTIONS = False
EMBEDDING_ANNOTATIONS = True
IMAGE_ANNOTATIONS = True


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    return build_ab_model(config, "simclr", init_logit_scale=1.0 / config.simclr.temperature)


def setup_heads(model: ABModel) -> None:
    """SimCLR's projection head φ = ψ, and the AB annotation head ψ_AB on the same ViT (called in model.setup)."""
    model.base_head = ProjectionHead(model.proj_hidden, model.proj_dim, name="base_head")
    model.ab_head = ProjectionHead(model.proj_hidden, model.proj_dim, name="ab_head")


def init_outputs(model: ABModel, tokens: jax.Array, actions: jax.Array, captions=None):
    """Every part once (for init): Q logits against the batch's own AB embeddings, and the base embedding."""
    return model.q_logits(tokens, actions, model.ab_embed(tokens)), model.base_embed(tokens)


def source_annotation_embedding(model: ABModel, tokens: jax.Array) -> jax.Array:
    """The source view read as an annotation (the value-residual start): its own ψ_AB."""
    return model.ab_embed(tokens)


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return 2 * config.batch.annotation


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Two RandomResizedCrops of each annotation image, photometrically augmented. keys [4]: crops, their
    augmentation, (unused here) extra crops and theirs."""
    crop_key, augment_key = keys[0], keys[1]
    rollout = crop_env.batch_rollout(crop_key, batch["image"], batch["valid"], num_views=2,
                                     scale=tuple(config.env.annotation_scale), size=config.env.view_size,
                                     ratio=tuple(config.env.ratio))
    return dict(annotation_views=photometric.augment_views(augment_key, rollout["views"], config.augment))


def optimizer_rules(config: ml_collections.ConfigDict) -> list[tuple[str, dict]]:
    return []


def initial_state(config: ml_collections.ConfigDict) -> dict:
    """SimCLR keeps nothing between steps; AB_SimCLR with `ab.annotation_queue` = Q keeps the target network's
    embeddings of the last Q annotations (newest first), which join the next steps' bootstrap vocabulary."""
    if not (bootstraps(config) and config.ab.annotation_queue):
        return {}
    size, dim = config.ab.annotation_queue, config.model.proj_dim
    return dict(queue_base=jnp.zeros((size, dim)), queue_ab=jnp.zeros((size, dim)),
                queue_valid=jnp.zeros((size,), bool))


def push_annotations(queue: dict, base: jax.Array, ab: jax.Array) -> dict:
    """The queue with this step's annotations [K, P] in front and the oldest K dropped."""
    size = queue["queue_valid"].shape[0]
    push = lambda new, old: jnp.concatenate([new, old])[:size]  # noqa: E731
    return dict(queue_base=push(base, queue["queue_base"]), queue_ab=push(ab, queue["queue_ab"]),
                queue_valid=push(jnp.ones(base.shape[:1], bool), queue["queue_valid"]))


def loss(model: ABModel, params, ema_params, batch: dict, config: ml_collections.ConfigDict,
         method_state: dict | None = None, step: jax.Array | None = None) -> tuple[jax.Array, tuple[dict, dict]]:
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
    online_vocabulary = model.apply(params, annotation_tokens[:, 1], method=ABModel.ab_embed)
    target_vocabulary = valid = None
    if config.ab.gamma > 0.0 or config.ab.annotation_queue:
        target_vocabulary = model.apply(target_params, target_annotations, method=ABModel.ab_embed)
    new_state = {}
    if config.ab.annotation_queue:  # the vocabulary grows by the last steps' annotations, as the target saw them
        new_state = push_annotations(method_state, jax.lax.stop_gradient(annotation_z),
                                     jax.lax.stop_gradient(target_vocabulary))
        valid = jnp.concatenate([jnp.ones(annotation_z.shape[:1], bool), method_state["queue_valid"]])
        annotation_z = jnp.concatenate([annotation_z, method_state["queue_base"]])
        online_vocabulary = jnp.concatenate([online_vocabulary, method_state["queue_ab"]])
        target_vocabulary = jnp.concatenate([target_vocabulary, method_state["queue_ab"]])

    def base_reward() -> jax.Array:  # p_target(ℓ | x_j): the target network's base head on every bootstrap view
        temperature = config.ab.target_temperature or config.simclr.temperature
        distribution = (simclr.centred_annotation_distribution if config.ab.center_target
                        else simclr.annotation_distribution)
        p = distribution(model.apply(target_params, target_views, method=ABModel.base_embed), annotation_z,
                         temperature, valid)
        return simclr.annotation_walk(p, annotation_z, temperature) if config.ab.target_walk else p

    if config.ab.reward == "oracle":  # the diagnostic: the scenes' true classes instead of the base model
        p_local = bootstrap.oracle_reward(batch["boxes"], batch["digit_boxes"], batch["digit_labels"],
                                          batch["annotation_labels"])
        if config.ab.oracle_fraction < 1.0:
            p_local = bootstrap.mix_rewards(p_local, base_reward(), config.ab.oracle_fraction)
    else:
        p_local = base_reward()

    td_loss, td_metrics = bootstrap.td_term(
        model, params, target_params, batch, online_vocabulary=online_vocabulary,
        target_vocabulary=target_vocabulary, target_view_tokens=target_views, p_local=p_local, config=config,
        online_log_prior=lambda tokens: jax.nn.log_softmax(
            model.apply(params, tokens, method=ABModel.base_embed) @ z[:, 1].T / config.simclr.temperature, -1),
        target_log_prior=jnp.log(p_local + 1e-12), vocabulary_valid=valid)
    total, metrics = bootstrap.total_loss(model, params, base_loss, td_loss, {**metrics, **td_metrics}, config)
    return total, (metrics, new_state)


def annotations(model: ABModel, params, config: ml_collections.ConfigDict,
                exemplars: dict[str, np.ndarray] | None = None, channels: int = 1) -> Annotations:
    """Annotations are images: class c is the mean embedding (ψ_AB for the value head, the base head for p(ℓ | x))
    of `exemplars[c]` — name → images [N, H, W, C], tiled to the encoder's `channels` — l2-normalised; by default
    40 held-out centred digits per class."""
    if exemplars is None:
        splits = digits_lib.load_digits(config.eval.digits_per_class)
        exemplars = {str(c): np.stack([digits_lib.centred_digit(d)["image"]
                                       for d in splits.probe_test_images[splits.probe_test_labels == c][:40]])
                     for c in range(10)}
    encode = lambda p, views: model.apply(p, views, method=ABModel.encode)  # noqa: E731
    features = common.token_features(encode, config.env.view_size, channels)  # whole image, channels tiled
    ab, base_embeddings = [], []
    for images in exemplars.values():
        valid = np.tile(np.array(images.shape[1:3], np.int32), (len(images), 1))
        tokens = features(params, jnp.asarray(images), jnp.asarray(valid))
        ab.append(l2_normalize(model.apply(params, tokens, method=ABModel.ab_embed).mean(0)))
        base_embeddings.append(l2_normalize(model.apply(params, tokens, method=ABModel.base_embed).mean(0)))
    return Annotations(tuple(exemplars), jnp.stack(ab), jnp.stack(base_embeddings),
                       jnp.asarray(1.0 / config.simclr.temperature))


def digit_annotation(label: int) -> str:
    return str(label)


def digit_vocabulary(model: ABModel, params, config: ml_collections.ConfigDict, exemplar_tokens: jax.Array,
                     channels: int) -> tuple[Annotations, jax.Array]:
    """Every exemplar (tokens [10·E, T, D], class-major) is an annotation of its class, as the annotation batch's
    images are in training → (vocabulary, class_of_annotation [10·E, 10])."""
    embed = lambda method: l2_normalize(model.apply(params, exemplar_tokens, method=method))  # noqa: E731
    vocabulary = Annotations(tuple(map(str, range(len(exemplar_tokens)))), embed(ABModel.ab_embed),
                             embed(ABModel.base_embed), jnp.asarray(1.0 / config.simclr.temperature))
    return vocabulary, jnp.repeat(jnp.eye(10), len(exemplar_tokens) // 10, axis=0)
