"""Attention probes on frozen encoder tokens [N, T, D] (CLS first): small trained modules that read all tokens.

A linear probe sees one pooled vector, so it under-rates encoders whose information is spread over (or localised
in) patch tokens; the paper (annotation bootstrapping, Ghosh & Levine 2025) therefore also reports these two:
  * MAP probe     — multi-head attention pooling as big_vision's `MAPHead` (the SigLIP probe): one learned probe
                    query cross-attends to the tokens, + MLP residual, then a linear classifier.
  * decoder probe — a small pre-LN transformer decoder, as in Beyer et al. 2023 ("A study of autoregressive
                    decoders for multi-tasking in computer vision"): query tokens self-attend, cross-attend to the
                    tokens, MLP. One module serves two tasks: image classification (a learned query) and "class of
                    the object in this box" (the query also carries the box's discretised coordinates).
Both train with AdamW on minibatches drawn by `seed` and return test accuracy; the encoder is never touched.
Defaults are sized for the embedded demo (D≈64, 17–65 tokens, ~1000 train items): seconds on a CPU.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlvis.models.value_head import DecoderBlock
from rlvis.models.vit import MlpBlock, attention

BOX_COORDS = 4  # (y0, x0, h, w) in [0, 1]


class MAPHead(nn.Module):
    """tokens [B, T, D] → logits [B, num_classes]: big_vision's MAPHead followed by a linear classifier."""

    num_classes: int
    heads: int

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        batch, _, dim = tokens.shape
        probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, dim))
        x = attention(self.heads, "attn")(jnp.broadcast_to(probe, (batch, 1, dim)), tokens)
        y = nn.LayerNorm(name="norm")(x)
        x = x + MlpBlock(4 * dim, name="mlp")(y)
        return nn.Dense(self.num_classes, name="classifier")(x[:, 0])


class BoxEmbed(nn.Module):
    """boxes [B, 4] (y0, x0, h, w) in [0, 1] → [B, width]: the sum of one learned embedding per coordinate bin.

    Discretised like the paper's action tokens (`crop_env.action_tokens`), so that a box can pick out sharply
    which patch cells to read; a linear map of raw coordinates would have to learn that sharpness.
    """

    bins: int
    width: int

    @nn.compact
    def __call__(self, boxes: jax.Array) -> jax.Array:
        tokens = jnp.clip((boxes * self.bins).astype(jnp.int32), 0, self.bins - 1)
        offsets = jnp.arange(BOX_COORDS) * self.bins  # one table, coordinate c's bins at offset c·bins
        return nn.Embed(BOX_COORDS * self.bins, self.width, name="embed")(tokens + offsets).sum(axis=1)


class DecoderProbe(nn.Module):
    """(tokens [B, T, D], optional boxes [B, 4]) → logits [B, num_classes].

    The frozen tokens get a learned position embedding before they are attended to: the probe knows token t is
    patch cell t (as the linear box probe's `demo_tasks.box_weights` does), so a box can find its cells even if
    the encoder's features carry little position information (so train and test need the same T).
    One query per item (the box's coordinate embeddings are summed into it), so self-attention is the identity
    map up to projections here; the block is the value head's `DecoderBlock`, kept whole to match Beyer et al.
    """

    num_classes: int
    width: int
    depth: int
    heads: int
    bins: int

    @nn.compact
    def __call__(self, tokens: jax.Array, boxes: jax.Array | None = None) -> jax.Array:
        batch, length, _ = tokens.shape
        memory = nn.Dense(self.width, name="memory_proj")(tokens)
        # Unit scale, like the projected tokens, so that position competes with content from the first step.
        memory = memory + self.param("memory_posemb", nn.initializers.normal(1.0), (1, length, self.width))
        query = self.param("query", nn.initializers.normal(0.02), (1, 1, self.width))
        queries = jnp.broadcast_to(query, (batch, 1, self.width))
        if boxes is not None:
            queries = queries + BoxEmbed(self.bins, self.width, name="box_embed")(boxes)[:, None]
        for i in range(self.depth):
            queries = DecoderBlock(self.heads, 4 * self.width, name=f"block{i}")(queries, memory, None)  # no mask
        queries = nn.LayerNorm(name="norm")(queries)
        return nn.Dense(self.num_classes, name="classifier")(queries[:, 0])


def _optimizer(steps: int, learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, steps // 10), steps)
    return optax.adamw(schedule, weight_decay=weight_decay)


# Module-level jits with the model and hyperparameters static: probing several checkpoints with the same shapes
# compiles once. The data are arguments, not closed-over constants baked into the compiled step.
@functools.partial(jax.jit, static_argnames=("model", "steps", "learning_rate", "weight_decay"))
def _train_step(
    params,
    opt_state,
    inputs: tuple[jax.Array, ...],
    y: jax.Array,
    idx: jax.Array,
    *,
    model: nn.Module,
    steps: int,
    learning_rate: float,
    weight_decay: float,
):
    def loss(params):
        logits = model.apply(params, *[x[idx] for x in inputs])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

    grads = jax.grad(loss)(params)
    updates, opt_state = _optimizer(steps, learning_rate, weight_decay).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnames="model")
def _predict(params, inputs: tuple[jax.Array, ...], *, model: nn.Module) -> jax.Array:
    return jnp.argmax(model.apply(params, *inputs), -1)


def _train_and_score(
    model: nn.Module,
    train_inputs: Sequence[np.ndarray],
    train_y: np.ndarray,
    test_inputs: Sequence[np.ndarray],
    test_y: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
) -> float:
    """AdamW (warmup + cosine) on cross-entropy with minibatches drawn by `seed`; returns test accuracy."""
    train_inputs = tuple(jnp.asarray(x) for x in train_inputs)
    train_y = jnp.asarray(train_y, jnp.int32)
    batch_size = min(batch_size, len(train_y))
    hparams = dict(model=model, steps=steps, learning_rate=learning_rate, weight_decay=weight_decay)
    params = model.init(jax.random.PRNGKey(seed), *[x[:batch_size] for x in train_inputs])
    opt_state = _optimizer(steps, learning_rate, weight_decay).init(params)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.choice(len(train_y), batch_size, replace=False)
        params, opt_state = _train_step(params, opt_state, train_inputs, train_y, idx, **hparams)

    chunk = 4 * batch_size
    predictions = np.concatenate(
        [
            np.asarray(_predict(params, tuple(x[i : i + chunk] for x in test_inputs), model=model))
            for i in range(0, len(test_y), chunk)
        ]
    )
    return float(np.mean(predictions == test_y))


def map_probe(
    train_tokens: np.ndarray,
    train_y: np.ndarray,
    test_tokens: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    *,
    heads: int = 4,
    steps: int = 500,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test accuracy of a MAP head + linear classifier trained on frozen tokens (D must divide by `heads`)."""
    return _train_and_score(
        MAPHead(num_classes, heads),
        [train_tokens],
        train_y,
        [test_tokens],
        test_y,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        seed=seed,
    )


def decoder_probe(
    train_tokens: np.ndarray,
    train_y: np.ndarray,
    test_tokens: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    *,
    train_boxes: np.ndarray | None = None,
    test_boxes: np.ndarray | None = None,
    depth: int = 1,
    width: int = 64,
    heads: int = 4,
    bins: int = 32,
    steps: int = 500,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test accuracy of a decoder probe: image classification, or with boxes [N, 4] (y0, x0, h, w) in [0, 1]
    the class of the object in each box (tokens may repeat across items, one item per box)."""
    if (train_boxes is None) != (test_boxes is None):
        raise ValueError("give boxes for both train and test, or for neither")
    model = DecoderProbe(num_classes, width, depth, heads, bins)
    train_inputs, test_inputs = [train_tokens], [test_tokens]
    if train_boxes is not None:
        train_inputs.append(np.asarray(train_boxes, np.float32))
        test_inputs.append(np.asarray(test_boxes, np.float32))
    return _train_and_score(
        model,
        train_inputs,
        train_y,
        test_inputs,
        test_y,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        seed=seed,
    )
