"""SimCLR's base loss: NT-Xent (InfoNCE) over the 2N views of N annotation images (Chen et al. 2020).

In AB terms (docs/method.md) the annotations ℓ are augmented crops of the annotation images and
p(ℓ_k | x) = softmax_k(φ(x)ᵀψ(ℓ_k) / τ).
"""

import jax
import jax.numpy as jnp


def nt_xent(z_a: jax.Array, z_b: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """z_a, z_b [N, D] l2-normalised embeddings of two views of N images → (loss, positive-retrieval accuracy).

    Each of the 2N views must pick its partner among the other 2N - 1 views.
    """
    n = z_a.shape[0]
    z = jnp.concatenate([z_a, z_b], axis=0)
    logits = z @ z.T / temperature
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)  # a view is not its own negative
    partner = jnp.concatenate([jnp.arange(n) + n, jnp.arange(n)])
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, partner[:, None], axis=-1))
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == partner)
    return loss, accuracy


def annotation_distribution(embeddings: jax.Array, annotations: jax.Array, temperature: float) -> jax.Array:
    """p(ℓ | x) over the annotation batch: embeddings [..., D], annotations [K, D] → probabilities [..., K]."""
    return jax.nn.softmax(embeddings @ annotations.T / temperature, axis=-1)


def centred_annotation_distribution(embeddings: jax.Array, annotations: jax.Array, temperature: float) -> jax.Array:
    """p(ℓ | x) with each annotation's mean logit over all of `embeddings`' views removed (DINO's centring, on the
    step's own vocabulary): embeddings [..., D], annotations [K, D] → [..., K]. An annotation that is near every
    view (a hub: a blobby digit close to most scene crops) no longer wins the target everywhere, so the target says
    which annotations are likelier *here* than in a typical view."""
    logits = embeddings @ annotations.T / temperature
    centre = jnp.mean(logits.reshape(-1, logits.shape[-1]), axis=0)
    return jax.nn.softmax(logits - centre, axis=-1)
