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


class DINOHead(nn.Module):
    """DINO's head: 3-layer MLP → l2-normalised bottleneck → cosine logits against K prototypes.

    The last layer is DINO's weight-normalised one: each prototype is a direction times a gain. With
    `norm_last_layer=True` the gain is fixed to 1, so logits are cosines in [-1, 1]; with False (DINO's choice for
    ViT-S) the gain is learned from 1, so the head can widen its own logit range.
    """

    hidden: int
    bottleneck: int
    prototypes: int
    norm_last_layer: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Dense(self.hidden, name="fc1")(x))
        x = nn.gelu(nn.Dense(self.hidden, name="fc2")(x))
        x = l2_normalize(nn.Dense(self.bottleneck, name="fc3")(x))
        prototypes = l2_normalize(
            self.param("prototypes", nn.initializers.normal(0.02), (self.prototypes, self.bottleneck)))
        if not self.norm_last_layer:
            prototypes = prototypes * self.param("prototype_gain", nn.initializers.ones, (self.prototypes,))[:, None]
        return x @ prototypes.T


class LinearProjection(nn.Module):
    """CLIP's projection: one linear map to the shared embedding space, l2-normalised."""

    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return l2_normalize(nn.Dense(self.out_dim, use_bias=False, name="proj")(x))
