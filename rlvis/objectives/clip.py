"""CLIP's base loss (Radford et al. 2021): symmetric InfoNCE between images and their captions.

In AB terms (docs/method.md): p(ℓ_i | x) = softmax_i(t · φ(x)ᵀψ(ℓ_i)) over the captions ℓ of the batch, with a
learned scale t.
"""

import jax
import jax.numpy as jnp
import optax


def symmetric_infonce(images: jax.Array, captions: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images, captions [N, D] l2-normalised and paired by row → (loss, image→caption retrieval accuracy)."""
    logits = scale * images @ captions.T
    labels = jnp.arange(images.shape[0])
    loss = (
        optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    ) / 2
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def caption_distribution(images: jax.Array, captions: jax.Array, scale: jax.Array) -> jax.Array:
    """p(ℓ | x) over the batch's captions: images [..., D], captions [K, D] → [..., K]."""
    return jax.nn.softmax(scale * images @ captions.T, axis=-1)
