"""The paper's main probe: an autoregressive transformer decoder on frozen encoder tokens that reads every task as
sequence prediction (Beyer et al. 2023, "A study of autoregressive decoders for multi-tasking in computer vision").

One vocabulary serves every task:

    PAD, BOS, EOS, BINS coordinate tokens, then one token per class

  * classification            BOS → class
  * box-conditioned class     BOS y0 x0 y1 x1 → class             (the box is a prompt: 4 coordinate tokens)
  * detection (Pix2Seq)       BOS → y0 x0 y1 x1 class  y0 x0 y1 x1 class … EOS

The decoder's queries are the sequence's tokens; each self-attends causally, cross-attends to the frozen tokens
(projected to the probe's width, plus a learned position per token) and predicts the next token. Training is
teacher forcing with the loss on the task's own tokens only (the prompt is given, padding is ignored); objects
are shuffled per step as Pix2Seq does, since they have no natural order. Decoding is greedy and constrained to
the token type each position needs. A detection's score is the class token's probability times the probability
that the sequence did not end at that object (Pix2Seq scores by the class token; the EOS factor ranks the objects
decoded past the point the model would stop).

The encoder is never touched: a probe is trained on token arrays [N, T, D] computed once.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from rlvis.models.value_head import DecoderBlock

PAD, BOS, EOS = 0, 1, 2
FIRST_BIN = 3
TOKENS_PER_OBJECT = 5  # y0 x0 y1 x1 class


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    bins: int
    num_classes: int

    @property
    def size(self) -> int:
        return FIRST_BIN + self.bins + self.num_classes

    @property
    def first_class(self) -> int:
        return FIRST_BIN + self.bins

    def box_tokens(self, boxes: np.ndarray) -> np.ndarray:
        """boxes [..., 4] (y0, x0, h, w) in [0, 1] → [..., 4] tokens of the corners (y0, x0, y1, x1), Pix2Seq's
        order, each coordinate rounded to one of `bins` evenly spaced values."""
        boxes = np.asarray(boxes, np.float32)
        corners = np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)
        return FIRST_BIN + np.rint(np.clip(corners, 0.0, 1.0) * (self.bins - 1)).astype(np.int32)

    def boxes(self, tokens: np.ndarray) -> np.ndarray:
        """The inverse of `box_tokens` (exact up to the bin width): [..., 4] tokens → (y0, x0, h, w)."""
        corners = (np.asarray(tokens, np.float32) - FIRST_BIN) / (self.bins - 1)
        y0, x0 = np.minimum(corners[..., 0], corners[..., 2]), np.minimum(corners[..., 1], corners[..., 3])
        y1, x1 = np.maximum(corners[..., 0], corners[..., 2]), np.maximum(corners[..., 1], corners[..., 3])
        return np.stack([y0, x0, y1 - y0, x1 - x0], axis=-1)

    def class_tokens(self, labels: np.ndarray) -> np.ndarray:
        return self.first_class + np.asarray(labels, np.int32)


def detection_targets(
    vocab: Vocabulary, boxes: np.ndarray, labels: np.ndarray, max_objects: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """One image's Pix2Seq target [5 · max_objects + 1]: its objects (shuffled by `rng` if given, the first
    `max_objects` kept), EOS, then PAD."""
    order = rng.permutation(len(labels)) if rng is not None else np.arange(len(labels))
    order = order[:max_objects]
    objects = np.concatenate([vocab.box_tokens(boxes[order]), vocab.class_tokens(labels[order])[:, None]], axis=1)
    sequence = np.full(TOKENS_PER_OBJECT * max_objects + 1, PAD, np.int32)
    sequence[: objects.size] = objects.reshape(-1)
    sequence[objects.size] = EOS
    return sequence


class SequenceDecoder(nn.Module):
    """(frozen tokens [B, T, D], input ids [B, L]) → next-token logits [B, L, vocab]."""

    vocab_size: int
    width: int
    depth: int
    heads: int
    max_length: int

    @nn.compact
    def __call__(self, tokens: jax.Array, ids: jax.Array) -> jax.Array:
        length = ids.shape[1]
        memory = nn.Dense(self.width, name="memory_proj")(tokens)
        # Which frozen token is which patch: the encoder's own position information may be weak.
        memory = memory + self.param("memory_posemb", nn.initializers.normal(1.0), (1, tokens.shape[1], self.width))
        x = nn.Embed(self.vocab_size, self.width, name="embed")(ids)
        x = x + self.param("posemb", nn.initializers.normal(0.02), (1, self.max_length, self.width))[:, :length]
        causal = nn.make_causal_mask(ids)  # [B, 1, L, L]
        for i in range(self.depth):
            x = DecoderBlock(self.heads, 4 * self.width, name=f"block{i}")(x, memory, causal)
        return nn.Dense(self.vocab_size, name="logits")(nn.LayerNorm(name="norm")(x))


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """The probe's size and training. Paper-scale defaults: 4 layers (the paper's probe); width, heads, steps,
    batch and learning rate are [INF] (Beyer et al.'s exact values are not restated in the AB paper). `bins`
    quantises box coordinates (Pix2Seq's order of magnitude, [INF]); each bin is a token the probe learns, so a
    small dataset needs few."""

    depth: int = 4
    width: int = 384
    heads: int = 6
    steps: int = 10_000
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    bins: int = 1000
    seed: int = 0


def _optimizer(settings: ProbeSettings) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, settings.learning_rate, max(1, settings.steps // 10), settings.steps
    )
    return optax.adamw(schedule, weight_decay=settings.weight_decay)


def loss_weights(outputs: jax.Array, prompt_length: int) -> jax.Array:
    """Which next-token predictions are trained: the task's tokens (EOS included), never the given prompt (outputs
    [:, :P] are prompt tokens) or padding."""
    return (jnp.arange(outputs.shape[1]) >= prompt_length) & (outputs != PAD)


@functools.partial(jax.jit, static_argnames=("model", "settings", "prompt_length"))
def _train_step(
    params,
    opt_state,
    memory: jax.Array,
    sequences: jax.Array,
    *,
    model: SequenceDecoder,
    settings: ProbeSettings,
    prompt_length: int,
):
    """One teacher-forced step on full sequences [B, 1 + P + L] (BOS, prompt, target)."""
    inputs, outputs = sequences[:, :-1], sequences[:, 1:]
    weights = loss_weights(outputs, prompt_length)

    def loss_fn(params):
        logits = model.apply(params, memory, inputs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, outputs)
        return jnp.sum(loss * weights) / jnp.maximum(weights.sum(), 1)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = _optimizer(settings).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@dataclasses.dataclass
class TrainedProbe:
    model: SequenceDecoder
    params: dict
    vocab: Vocabulary
    losses: list[float]


def train(
    tokens: np.ndarray,
    prompts: np.ndarray,
    make_targets,
    vocab: Vocabulary,
    settings: ProbeSettings,
    *,
    image_index: np.ndarray | None = None,
    progress: bool = False,
) -> TrainedProbe:
    """Teacher-force a decoder on frozen `tokens` [N, T, D].

    Items are rows of `prompts` [M, P] (P may be 0); item m reads image `image_index[m]` (default m) and its target
    sequence is `make_targets(item indices, rng)` → [B, L] (a function, so that detection can reshuffle objects
    every step). Minibatches are drawn by `settings.seed`.
    """
    items = len(prompts)
    image_index = np.arange(items) if image_index is None else np.asarray(image_index)
    rng = np.random.default_rng(settings.seed)
    batch = min(settings.batch_size, items)
    tokens = jnp.asarray(tokens)

    def sequences(index: np.ndarray) -> jax.Array:
        return jnp.asarray(
            np.concatenate([np.full((len(index), 1), BOS, np.int32), prompts[index], make_targets(index, rng)], axis=1)
        )

    first = np.arange(batch)
    first_sequences = sequences(first)  # its length sizes the model's position table
    model = SequenceDecoder(vocab.size, settings.width, settings.depth, settings.heads, first_sequences.shape[1])
    params = model.init(jax.random.PRNGKey(settings.seed), tokens[image_index[first]], first_sequences[:, :-1])
    opt_state = _optimizer(settings).init(params)
    losses = []
    for _ in tqdm.trange(
        settings.steps, desc="decoder probe", unit="step", leave=False, disable=None if progress else True
    ):  # None: shown on a terminal only
        index = rng.choice(items, batch, replace=False)
        params, opt_state, loss = _train_step(
            params,
            opt_state,
            tokens[image_index[index]],
            sequences(index),
            model=model,
            settings=settings,
            prompt_length=prompts.shape[1],
        )
        losses.append(loss)
    return TrainedProbe(model, params, vocab, [float(loss) for loss in losses])


def _allowed(vocab: Vocabulary, is_class: tuple[bool, ...]) -> np.ndarray:
    """[steps, vocab]: a class token where `is_class`, else a coordinate token."""
    allowed = np.zeros((len(is_class), vocab.size), bool)
    for t, want_class in enumerate(is_class):
        allowed[t, vocab.first_class :] = want_class
        allowed[t, FIRST_BIN : vocab.first_class] = not want_class
    return allowed


@functools.partial(jax.jit, static_argnames=("model", "vocab", "is_class"))
def _greedy(
    params,
    memory: jax.Array,
    prompts: jax.Array,
    *,
    model: SequenceDecoder,
    vocab: Vocabulary,
    is_class: tuple[bool, ...],
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy decoding of one target token per entry of `is_class` (a class token there, else a coordinate) →
    (tokens [B, steps], their probability among the allowed tokens [B, steps], p(EOS) at each position [B, steps]).
    Each step reruns the decoder on the whole sequence (no key/value cache): sequences are at most a few hundred
    tokens, and the probe's cost is dominated by training."""
    batch, prompt_length = prompts.shape
    steps = len(is_class)
    length = 1 + prompt_length + steps
    sequence = jnp.zeros((batch, length), jnp.int32).at[:, 0].set(BOS).at[:, 1 : 1 + prompt_length].set(prompts)
    allowed = jnp.asarray(_allowed(vocab, is_class))

    def body(t, carry):
        sequence, probs, eos = carry
        logits = model.apply(params, memory, sequence[:, :-1])
        logits = jax.lax.dynamic_index_in_dim(logits, prompt_length + t, axis=1, keepdims=False)  # [B, V]
        eos = eos.at[:, t].set(jax.nn.softmax(logits)[:, EOS])
        masked = jax.nn.softmax(jnp.where(allowed[t], logits, -jnp.inf))
        token = jnp.argmax(masked, axis=-1)
        probs = probs.at[:, t].set(jnp.take_along_axis(masked, token[:, None], axis=1)[:, 0])
        return sequence.at[:, 1 + prompt_length + t].set(token), probs, eos

    zeros = jnp.zeros((batch, steps))
    sequence, probs, eos = jax.lax.fori_loop(0, steps, body, (sequence, zeros, zeros))
    return sequence[:, 1 + prompt_length :], probs, eos


def decode(
    probe: TrainedProbe,
    tokens: np.ndarray,
    prompts: np.ndarray,
    is_class: tuple[bool, ...],
    *,
    image_index: np.ndarray | None = None,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy decoding for every item (see `_greedy`), in chunks."""
    image_index = np.arange(len(prompts)) if image_index is None else np.asarray(image_index)
    out = [
        _greedy(
            probe.params,
            jnp.asarray(tokens[image_index[i : i + chunk]]),
            jnp.asarray(prompts[i : i + chunk]),
            model=probe.model,
            vocab=probe.vocab,
            is_class=is_class,
        )
        for i in range(0, len(prompts), chunk)
    ]
    return tuple(np.concatenate([np.asarray(o[k]) for o in out]) for k in range(3))


def classify(
    probe: TrainedProbe, tokens: np.ndarray, prompts: np.ndarray, *, image_index: np.ndarray | None = None
) -> np.ndarray:
    """Predicted class per item (one decoded token, restricted to classes)."""
    predicted, _, _ = decode(probe, tokens, prompts, (True,), image_index=image_index)
    return predicted[:, 0] - probe.vocab.first_class


def class_accuracy(
    train_tokens: np.ndarray,
    train_prompts: np.ndarray,
    train_labels: np.ndarray,
    test_tokens: np.ndarray,
    test_prompts: np.ndarray,
    test_labels: np.ndarray,
    vocab: Vocabulary,
    settings: ProbeSettings,
    *,
    train_image: np.ndarray | None = None,
    test_image: np.ndarray | None = None,
    progress: bool = False,
) -> float:
    """Train a probe to write each item's class after its prompt ([M, P], P may be 0), then its test accuracy."""
    probe = train(
        train_tokens,
        train_prompts,
        lambda i, _: vocab.class_tokens(train_labels[i])[:, None],
        vocab,
        settings,
        image_index=train_image,
        progress=progress,
    )
    predicted = classify(probe, test_tokens, test_prompts, image_index=test_image)
    return float(np.mean(predicted == test_labels))


def detections(probe: TrainedProbe, tokens: np.ndarray, max_objects: int) -> list[dict]:
    """Per image: dict(boxes [K, 4] (y0, x0, h, w), labels [K], scores [K]) for `max_objects` decoded objects."""
    empty = np.zeros((len(tokens), 0), np.int32)
    is_class = (False,) * (TOKENS_PER_OBJECT - 1) + (True,)
    predicted, probs, eos = decode(probe, tokens, empty, is_class * max_objects)
    objects = predicted.reshape(len(tokens), max_objects, TOKENS_PER_OBJECT)
    starts = eos.reshape(len(tokens), max_objects, TOKENS_PER_OBJECT)[..., 0]
    class_prob = probs.reshape(len(tokens), max_objects, TOKENS_PER_OBJECT)[..., -1]
    # Not stopping before object k: the product of (1 − p(EOS)) at every object start up to k.
    survive = np.cumprod(1.0 - starts, axis=1)
    return [
        dict(
            boxes=probe.vocab.boxes(objects[i, :, :4]),
            labels=objects[i, :, 4] - probe.vocab.first_class,
            scores=survive[i] * class_prob[i],
        )
        for i in range(len(tokens))
    ]
