"""Projection heads: pooled encoder features → l2-normalised embeddings for contrastive logits."""

import flax.linen as nn
import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class ProjectionHead(nn.Module):
    """SimCLR-style 2-layer MLP; used both for the base head φ/ψ and the AB annotation head ψ_AB."""

    hidden: int
    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Dense(self.hidden, name="fc1")(x))
        return l2_normalize(nn.Dense(self.out_dim, name="fc2")(x))
