"""Heads on the encoder's tokens: projections to l2-normalised embeddings for contrastive logits, DINO's
prototype head, MAE's pixel decoder, I-JEPA's predictor."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.models.vit import EncoderBlock


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
            self.param("prototypes", nn.initializers.normal(0.02), (self.prototypes, self.bottleneck))
        )
        if not self.norm_last_layer:
            prototypes = prototypes * self.param("prototype_gain", nn.initializers.ones, (self.prototypes,))[:, None]
        return x @ prototypes.T


class LinearProjection(nn.Module):
    """CLIP's projection: one linear map to the shared embedding space, l2-normalised."""

    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return l2_normalize(nn.Dense(self.out_dim, use_bias=False, name="proj")(x))


class MaskedPatchDecoder(nn.Module):
    """MAE's light decoder: the encoder's tokens of the visible patches, a shared mask token at every hidden one,
    learned positions for all, a few transformer blocks → each patch's pixels [B, N, p·p·C] (N = all patches).

    Narrower and shallower than the encoder, as in MAE, so the encoder — not the decoder — carries the
    representation; it is discarded after pre-training.
    """

    width: int
    depth: int
    heads: int

    @nn.compact
    def __call__(self, tokens: jax.Array, keep: jax.Array, patches: int, patch_pixels: int) -> jax.Array:
        batch = tokens.shape[0]
        x = nn.Dense(self.width, name="embed")(tokens)  # [B, 1 + K, width]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.width))
        grid = jnp.broadcast_to(mask_token, (batch, patches, self.width))
        grid = grid.at[jnp.arange(batch)[:, None], keep].set(x[:, 1:])
        x = jnp.concatenate([x[:, :1], grid], axis=1)
        x = x + self.param("pos_embedding", nn.initializers.normal(0.02), (1, 1 + patches, self.width))
        for i in range(self.depth):
            x = EncoderBlock(self.heads, 4 * self.width, name=f"block{i}")(x)
        x = nn.LayerNorm(name="norm")(x)
        return nn.Dense(patch_pixels, name="pixels")(x[:, 1:])


class LatentPredictor(nn.Module):
    """I-JEPA's predictor: the context encoder's tokens (CLS and C context patches), and for each target block a
    mask token at each of its patches' positions → the predicted target-encoder token of each [B, M, T, D].

    Each block is predicted separately from the same context (the context is repeated per block), as in I-JEPA,
    so blocks do not see one another. Narrower than the encoder: it must not be able to carry the representation.
    Padded block slots (`valid` False) are neither attended to nor scored.
    """

    width: int
    depth: int
    heads: int

    @nn.compact
    def __call__(
        self, tokens: jax.Array, context: jax.Array, target: jax.Array, valid: jax.Array, patches: int
    ) -> jax.Array:
        batch, blocks, slots = target.shape
        positions = self.param("pos_embedding", nn.initializers.normal(0.02), (1 + patches, self.width))
        x = nn.Dense(self.width, name="embed")(tokens)  # [B, 1 + C, width]
        x = x + positions[jnp.concatenate([jnp.zeros((batch, 1), context.dtype), context + 1], axis=1)]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.width,))
        queries = mask_token + positions[target + 1]  # [B, M, T, width]
        sequence = jnp.concatenate([jnp.broadcast_to(x[:, None], (batch, blocks, *x.shape[1:])), queries], axis=2)
        sequence = sequence.reshape(batch * blocks, -1, self.width)
        keys_valid = jnp.concatenate([jnp.ones((batch, blocks, x.shape[1]), bool), valid], axis=2)
        attend = keys_valid.reshape(batch * blocks, 1, 1, -1)
        for i in range(self.depth):
            sequence = EncoderBlock(self.heads, 4 * self.width, name=f"block{i}")(sequence, attend)
        out = nn.LayerNorm(name="norm")(sequence[:, x.shape[1] :])
        return nn.Dense(tokens.shape[-1], name="project")(out).reshape(batch, blocks, slots, tokens.shape[-1])
