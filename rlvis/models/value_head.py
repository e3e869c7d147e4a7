"""The bootstrapping head φ_AB(x, a): queries that describe a move cross-attend to the source view's tokens.

Input actions are continuous relative boxes (`crop_env.relative`: the destination in the source view's frame),
turned into the paper's action tokens: four integers per action (`crop_env.action_tokens`: centre offsets and log
size ratios, each quantised), one learned embedding per bin. Several actions from one source view are packed into
one query sequence; an action's 4 tokens attend to each other only (block-diagonal self-attention) and are
mean-pooled.

`box_attention` (rlvis's departure, on by default; docs/method.md gives the evidence) adds to every
cross-attention logit a learned multiple (per head, starting at 1) of the log share of the source cell that the
destination box covers, relative to the best-covered cell: from the first step a move's queries read the tokens
under its destination (the CLS token, the view's summary, is always open). Without it the decoder has to discover
the geometry from the TD reward alone.
`mask_actions` is the invariance ablation: every action becomes one mask query and `box_attention` is ignored, so
the head cannot tell moves apart.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.envs import crop_env
from rlvis.envs.crop_env import NUM_ACTION_TOKENS
from rlvis.models.vit import MlpBlock, attention


def patch_centres(num_patches: int) -> jax.Array:
    """[P, 2] centres (y, x) of a square patch grid's cells, in the view's own frame [0, 1]²."""
    grid = int(round(num_patches**0.5))
    centres = (jnp.arange(grid) + 0.5) / grid
    return jnp.stack(jnp.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)


_UNCOVERED = 1e-2  # a cell the destination misses keeps this share of the best-covered cell's attention weight


def box_coverage(actions: jax.Array, num_patches: int) -> jax.Array:
    """Relative actions [..., 4] → [..., P]: the share of each source cell (row-major patch grid) that lies inside
    the destination box (y, x, h, w in the source view's frame)."""
    grid = int(round(num_patches**0.5))
    if grid * grid != num_patches:
        raise ValueError(f"box attention needs the source view's whole square patch grid; got {num_patches} tokens")
    cells = jnp.concatenate([patch_centres(num_patches) - 0.5 / grid, jnp.full((num_patches, 2), 1.0 / grid)], -1)
    return crop_env.intersection(actions[..., None, :], cells) * num_patches  # overlap area / cell area


def box_log_prior(actions: jax.Array, num_tokens: int) -> jax.Array:
    """[..., 4] → [..., T] log attention prior over the memory (CLS first): 0 for CLS and the best-covered cell,
    log(_UNCOVERED) for cells outside the destination (all cells when it misses the source view)."""
    coverage = box_coverage(actions, num_tokens - 1)
    share = coverage / jnp.maximum(coverage.max(axis=-1, keepdims=True), 1e-6)
    cells = jnp.log(share + _UNCOVERED) - jnp.log1p(_UNCOVERED)
    return jnp.concatenate([jnp.zeros_like(cells[..., :1]), cells], axis=-1)


class DecoderBlock(nn.Module):
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(
        self, queries: jax.Array, memory: jax.Array, self_mask: jax.Array, log_prior: jax.Array | None = None
    ) -> jax.Array:
        """`log_prior` [B, Q, T] (optional): added to every head's cross-attention logits, scaled per head."""
        y = nn.LayerNorm(name="norm1")(queries)
        queries = queries + attention(self.heads, "self_attn")(y, y, mask=self_mask)
        y = nn.LayerNorm(name="norm2")(queries)
        attention_fn = nn.dot_product_attention
        if log_prior is not None:
            scale = self.param("box_scale", nn.initializers.ones, (self.heads,))
            attention_fn = functools.partial(
                nn.dot_product_attention, bias=scale[None, :, None, None] * log_prior[:, None]
            )
        queries = queries + attention(self.heads, "cross_attn", attention_fn=attention_fn)(y, memory)
        y = nn.LayerNorm(name="norm3")(queries)
        return queries + MlpBlock(self.mlp_dim, name="mlp")(y)


class ValueHead(nn.Module):
    """(actions [B, A, 4] float, memory [B, T, D] with CLS first) → annotation embeddings [B, A, out_dim].

    `actions` are A moves from one source view (`crop_env.relative`); `memory` that view's encoder tokens.
    """

    bins: int
    width: int
    depth: int
    heads: int
    out_dim: int
    mask_actions: bool = False
    box_attention: bool = False

    def _queries(self, actions: jax.Array) -> jax.Array:
        """[B, A, 4] → queries [B, A·4, width]: one per action token."""
        batch, num_actions, _ = actions.shape
        tokens = crop_env.action_tokens(actions, self.bins)
        if self.mask_actions:
            tokens = crop_env.mask_tokens(tokens, self.bins)
        # One table, coordinate c's bins at offset c·(bins + 1): the token says which coordinate it is. The extra
        # entry per coordinate is the mask token.
        offsets = jnp.arange(NUM_ACTION_TOKENS) * (self.bins + 1)
        queries = nn.Embed(NUM_ACTION_TOKENS * (self.bins + 1), self.width, name="action_embed")(tokens + offsets)
        return queries.reshape(batch, num_actions * NUM_ACTION_TOKENS, self.width)

    @nn.compact
    def __call__(self, actions: jax.Array, memory: jax.Array) -> jax.Array:
        batch, num_actions, _ = actions.shape
        queries, per_action = self._queries(actions), NUM_ACTION_TOKENS
        action_id = jnp.repeat(jnp.arange(num_actions), per_action)
        self_mask = (action_id[:, None] == action_id[None, :])[None, None]  # [1, 1, Q, Q]
        memory = nn.Dense(self.width, name="memory_proj")(memory)
        log_prior = None
        if self.box_attention and not self.mask_actions:  # the invariance ablation hides the move's box too
            log_prior = jnp.repeat(box_log_prior(actions, memory.shape[1]), per_action, axis=1)  # [B, Q, T]
        for i in range(self.depth):
            queries = DecoderBlock(self.heads, 4 * self.width, name=f"block{i}")(queries, memory, self_mask, log_prior)
        queries = nn.LayerNorm(name="norm")(queries)
        pooled = queries.reshape(batch, num_actions, per_action, self.width).mean(axis=2)
        return nn.Dense(self.out_dim, name="out")(pooled)
