"""The annotation-bootstrapping TD target and loss (PAPER.md §1.3).

    target(ℓ) = (1-γ)·p_ema(ℓ | x') + γ·max_{a'} Q_ema(ℓ | x', a')      renormalised over ℓ
    loss      = softCE(Q(· | x, a), target)

Choices where the paper is silent (PAPER.md §7.1), each a reason not a guess:
  * candidate next actions a' are the moves from x' to the *other* sampled views of the same image (n-1 of them,
    the move back to the source view x included), so γ > 0 costs one extra decoder pass and no extra rendering;
  * the max is taken per annotation ℓ (a general value function: one reward per annotation);
  * the mixture is renormalised, so the loss stays a cross-entropy between distributions.
With γ = 0 the target is exactly p_ema(ℓ | x'): the ICML objective, KL(p_ema ‖ p_AB) up to the target's
entropy, which has no gradient.
"""

import jax
import jax.numpy as jnp


def soft_cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """-Σ_ℓ target(ℓ) log softmax(logits)(ℓ), over the last axis."""
    return -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def td_target(p_local: jax.Array, q_next: jax.Array | None, gamma: float) -> jax.Array:
    """p_local [..., K] (reward at x'), q_next [..., A', K] (Q_ema at x' for each candidate a') → [..., K]."""
    if gamma == 0.0:
        return p_local
    mixed = (1.0 - gamma) * p_local + gamma * jnp.max(q_next, axis=-2)
    return mixed / jnp.sum(mixed, axis=-1, keepdims=True)


def td_loss(q_logits: jax.Array, value_target: jax.Array, pairs: jax.Array) -> tuple[jax.Array, dict]:
    """Soft CE of every ordered pair's prediction against the target at the view it reaches.

    q_logits [B, n, n-1, K]: Q(· | x_i, a_{i→pairs[i, k]}); value_target [B, n, K]: the target at each view;
    pairs [n, n-1]: `crop_env.pair_indices`. The target is treated as a constant (stop-gradient).
    """
    target = jax.lax.stop_gradient(value_target[:, pairs])  # [B, n, n-1, K]
    loss = jnp.mean(soft_cross_entropy(q_logits, target))
    metrics = {
        "td_accuracy": jnp.mean(jnp.argmax(q_logits, -1) == jnp.argmax(target, -1)),
        "target_entropy": jnp.mean(-jnp.sum(target * jnp.log(target + 1e-12), axis=-1)),
    }
    return loss, metrics
