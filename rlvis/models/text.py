"""The caption tower for CLIP-style methods: a pre-LN transformer over byte tokens, mean-pooled over real tokens.

Shapes by name from the ViT table (`tiny`, `mu`, `S`, …: the paper uses an S-size text encoder). Bidirectional
attention with a padding mask; the pooled feature feeds both the CLIP text head and the separate AB text head.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.data import text
from rlvis.models.vit import MlpBlock, attention, variant_shape


class TextBlock(nn.Module):
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        y = nn.LayerNorm(name="norm1")(x)
        x = x + attention(self.heads, "attn")(y, y, mask=mask)
        y = nn.LayerNorm(name="norm2")(x)
        return x + MlpBlock(self.mlp_dim, name="mlp")(y)


class TextTower(nn.Module):
    """ids int32 [B, L] (0 = padding) → pooled text features [B, width]."""

    variant: str  # a shape name: "tiny", "mu", "S", …
    max_length: int

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        shape = variant_shape(f"{self.variant}/1")
        real = ids != text.PAD  # [B, L]
        x = nn.Embed(text.VOCAB_SIZE, shape.width, name="token_embed")(ids)
        x = x + self.param("pos_embedding", nn.initializers.normal(0.02), (1, self.max_length, shape.width))
        mask = real[:, None, :, None] & real[:, None, None, :]  # [B, 1, L, L]
        for i in range(shape.depth):
            x = TextBlock(shape.heads, shape.mlp_dim, name=f"block{i}")(x, mask)
        x = nn.LayerNorm(name="norm")(x)
        return jnp.sum(x * real[..., None], axis=1) / jnp.maximum(jnp.sum(real, axis=1, keepdims=True), 1)
