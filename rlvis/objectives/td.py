"""The annotation-bootstrapping TD target and loss.

    target(ℓ) = (1-γ)·p_ema(ℓ | x') + γ·max_{a'} Q_ema(ℓ | x', a')      renormalised over ℓ
    loss      = softCE(Q(· | x, a), target)

Choices where the paper is silent, each with its reason:
  * candidate next actions a' are the moves from x' to the *other* sampled views of the same image, so γ > 0 costs
    one extra decoder pass and no extra rendering. `exclude_source` drops the move back to the source view x from
    them: with it, max_{a'} can always return to what x already shows, a shortcut that pulls Q(· | x, a) toward
    x's own annotations (invariance) rather than toward what lies beyond x';
  * the max is taken per annotation ℓ (a general value function: one reward per annotation);
  * the mixture is renormalised, so the loss stays a cross-entropy between distributions.
With γ = 0 the target is exactly p_ema(ℓ | x'): KL(p_ema ‖ Q) up to the target's entropy, which has no gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np

# Source/destination overlap buckets for per-pair diagnostics: IoU = 0, (0, 0.2], (0.2, 0.5], > 0.5.
IOU_BUCKETS = {"iou_0": (-1.0, 0.0), "iou_0-0.2": (0.0, 0.2), "iou_0.2-0.5": (0.2, 0.5), "iou_0.5-1": (0.5, 1.0)}


def iou_bucket_masks(iou: jax.Array) -> dict[str, jax.Array]:
    """name → boolean mask of the pairs whose IoU falls in that bucket (lower bound exclusive)."""
    return {name: (iou > lo) & (iou <= hi) for name, (lo, hi) in IOU_BUCKETS.items()}


def soft_cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """-Σ_ℓ target(ℓ) log softmax(logits)(ℓ), over the last axis."""
    return -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def td_targets(
    p_local: jax.Array, q_next: jax.Array | None, gamma: float, pairs: np.ndarray, exclude_source: bool = False
) -> jax.Array:
    """The target of every ordered pair (x_i → x_j): [B, n, n-1, K].

    p_local [B, n, K]: the reward at each view; q_next [B, n, n-1, K]: Q_ema at view j for the move to each view
    pairs[j, k']; pairs [n, n-1]: `crop_env.pair_indices`. With `exclude_source`, the candidate a' that leads
    from x_j back to x_i is left out of the max for the pair (i, j).
    """
    local = p_local[:, pairs]  # [B, n, n-1, K]: the reward at the destination of pair (i, k)
    if gamma == 0.0:
        return local
    candidates = q_next[:, pairs]  # [B, n, n-1, n-1, K]: Q_ema(x_j, a_{j→pairs[j, k']}) for j = pairs[i, k]
    if exclude_source:
        allowed = pairs[pairs] != np.arange(pairs.shape[0])[:, None, None]  # [n, n-1, n-1]: a' does not return to i
        candidates = jnp.where(allowed[None, ..., None], candidates, 0.0)  # probabilities ≥ 0: 0 never wins a max
    mixed = (1.0 - gamma) * local + gamma * jnp.max(candidates, axis=-2)
    return mixed / jnp.sum(mixed, axis=-1, keepdims=True)


def td_loss(
    q_logits: jax.Array, targets: jax.Array, pair_iou: jax.Array | None = None, p_source: jax.Array | None = None
) -> tuple[jax.Array, dict]:
    """Soft CE of every ordered pair's prediction against its target (treated as a constant).

    q_logits and targets [B, n, n-1, K]; `pair_iou` [B, n, n-1], when given, adds the top-1 agreement per
    source/destination IoU bucket (`td_accuracy/<bucket>`): whether far moves are learned, not only near ones.
    `p_source` [B, n, K], the target network's distribution on each *source* view, adds the same agreement for
    the prediction that ignores the move (`td_invariance_accuracy/<bucket>`): the bar the value head must clear.
    """
    targets = jax.lax.stop_gradient(targets)
    loss = jnp.mean(soft_cross_entropy(q_logits, targets))
    agree = jnp.argmax(q_logits, -1) == jnp.argmax(targets, -1)
    metrics = {
        "td_accuracy": jnp.mean(agree),
        "target_entropy": jnp.mean(-jnp.sum(targets * jnp.log(targets + 1e-12), axis=-1)),
    }
    if pair_iou is not None:
        invariant = None if p_source is None else jnp.argmax(p_source, -1)[..., None] == jnp.argmax(targets, -1)
        for name, mask in iou_bucket_masks(pair_iou).items():
            count = jnp.maximum(jnp.sum(mask), 1)
            metrics[f"td_accuracy/{name}"] = jnp.sum(agree & mask) / count
            if invariant is not None:
                metrics[f"td_invariance_accuracy/{name}"] = jnp.sum(invariant & mask) / count
    return loss, metrics
