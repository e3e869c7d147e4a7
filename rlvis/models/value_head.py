"""The bootstrapping head φ_AB(x, a): action tokens cross-attend to the source view's encoder tokens.

Several actions from one source view are *packed* into one query sequence (PAPER.md §1.4 "token packing"): their
4 tokens each attend to each other only (block-diagonal self-attention mask), and all attend to the same encoder
tokens, so a source view is encoded once however many targets it predicts. The 4 outputs of an action are
mean-pooled and projected to the annotation-embedding size; logits against annotation embeddings are the
categorical value Q(ℓ | x, a).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.envs.crop_env import NUM_ACTION_TOKENS
from rlvis.models.vit import MlpBlock, attention


class DecoderBlock(nn.Module):
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, queries: jax.Array, memory: jax.Array, self_mask: jax.Array) -> jax.Array:
        y = nn.LayerNorm(name="norm1")(queries)
        queries = queries + attention(self.heads, "self_attn")(y, y, mask=self_mask)
        y = nn.LayerNorm(name="norm2")(queries)
        queries = queries + attention(self.heads, "cross_attn")(y, memory)
        y = nn.LayerNorm(name="norm3")(queries)
        return queries + MlpBlock(self.mlp_dim, name="mlp")(y)


class ValueHead(nn.Module):
    """(tokens [B, A, 4] int32, memory [B, T, D]) → annotation embeddings [B, A, out_dim].

    `tokens` are A packed actions per source view (from `crop_env.action_tokens`); `memory` the source view's
    encoder tokens.
    """

    bins: int
    width: int
    depth: int
    heads: int
    out_dim: int

    @nn.compact
    def __call__(self, tokens: jax.Array, memory: jax.Array) -> jax.Array:
        batch, num_actions, _ = tokens.shape
        # One table, coordinate c's bins at offset c·(bins + 1): the token says which coordinate it is. The extra
        # entry per coordinate is the mask token (`crop_env.mask_tokens`).
        offsets = jnp.arange(NUM_ACTION_TOKENS) * (self.bins + 1)
        queries = nn.Embed(NUM_ACTION_TOKENS * (self.bins + 1), self.width, name="action_embed")(tokens + offsets)
        queries = queries.reshape(batch, num_actions * NUM_ACTION_TOKENS, self.width)
        action_id = jnp.repeat(jnp.arange(num_actions), NUM_ACTION_TOKENS)
        self_mask = (action_id[:, None] == action_id[None, :])[None, None]  # [1, 1, Q, Q]
        memory = nn.Dense(self.width, name="memory_proj")(memory)
        for i in range(self.depth):
            queries = DecoderBlock(self.heads, 4 * self.width, name=f"block{i}")(queries, memory, self_mask)
        queries = nn.LayerNorm(name="norm")(queries)
        pooled = queries.reshape(batch, num_actions, NUM_ACTION_TOKENS, self.width).mean(axis=2)
        return nn.Dense(self.out_dim, name="out")(pooled)
