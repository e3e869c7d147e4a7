"""The bootstrapping head φ_AB(x, a): queries that describe a move cross-attend to the source view's tokens.

Input actions are continuous relative boxes (`crop_env.relative`: the destination in the source view's frame).
Two ways to turn them into decoder queries (`action_encoding`):
  * "bins": the paper's form. Four integer tokens per action (`crop_env.action_tokens`: centre offsets and log
    size ratios, each quantised), one learned embedding per bin. Several actions from one source view are packed
    into one query sequence; an action's 4 tokens attend to each other only (block-diagonal self-attention) and
    are mean-pooled.
  * "fourier": one query per action from sinusoidal features of the destination box (centre at several
    frequencies, log size, and the squashed coordinates), through a small MLP. Nearby boxes get nearby queries
    from the first step; binned embeddings must learn that smoothness bin by bin.
`source_positions` adds to every source patch token sinusoidal features of its cell centre in the same frame and
at the same frequencies as the destination centre, so "attend to the tokens under the destination box" is a
query–key match the first cross-attention layer can learn directly (the encoder's learned position embeddings
are otherwise all the decoder has, several blocks deep).
`mask_actions` is the invariance ablation: every action becomes one learned mask query, so the head cannot tell
moves apart.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rlvis.envs import crop_env
from rlvis.envs.crop_env import NUM_ACTION_TOKENS
from rlvis.models.vit import MlpBlock, attention

ACTION_ENCODINGS = ("bins", "fourier")
# numpy, not jnp: importing rlvis must not start the XLA backend (jax.distributed.initialize comes first)
_CENTRE_FREQUENCIES = np.pi * 2.0 ** np.arange(5, dtype=np.float32)  # periods 2 … 1/8 of the box: sub-patch
_SIZE_FREQUENCIES = 2.0 ** np.arange(-1, 3, dtype=np.float32)


def _sinusoids(values: jax.Array, frequencies: jax.Array) -> jax.Array:
    """values [..., C] → [..., C · 2F]: sin and cos of every value at every frequency."""
    angles = values[..., :, None] * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*values.shape[:-1], -1)


def box_features(actions: jax.Array) -> jax.Array:
    """Relative actions [..., 4] → features [..., 60] of the destination box in the source view's frame."""
    centre = actions[..., :2] + 0.5 * actions[..., 2:]
    log_size = jnp.log(actions[..., 2:])
    coords = jnp.concatenate([centre - 0.5, log_size], axis=-1)
    squashed = jnp.sign(coords) * jnp.log1p(jnp.abs(coords))
    return jnp.concatenate([squashed, _sinusoids(centre, _CENTRE_FREQUENCIES),
                            _sinusoids(log_size, _SIZE_FREQUENCIES)], axis=-1)


def patch_centres(num_patches: int) -> jax.Array:
    """[P, 2] centres (y, x) of a square patch grid's cells, in the view's own frame [0, 1]²."""
    grid = int(round(num_patches ** 0.5))
    centres = (jnp.arange(grid) + 0.5) / grid
    return jnp.stack(jnp.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2)


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
    """(actions [B, A, 4] float, memory [B, T, D] with CLS first) → annotation embeddings [B, A, out_dim].

    `actions` are A moves from one source view (`crop_env.relative`); `memory` that view's encoder tokens.
    """

    bins: int
    width: int
    depth: int
    heads: int
    out_dim: int
    action_encoding: str = "bins"
    source_positions: bool = False
    mask_actions: bool = False
    zero_out: bool = False  # output layer starts at zero: an unnormalised value starts uniform (or at its residual)

    def _queries(self, actions: jax.Array) -> tuple[jax.Array, int]:
        """[B, A, 4] → (queries [B, A·q, width], q queries per action)."""
        batch, num_actions, _ = actions.shape
        if self.action_encoding == "bins":
            tokens = crop_env.action_tokens(actions, self.bins)
            if self.mask_actions:
                tokens = crop_env.mask_tokens(tokens, self.bins)
            # One table, coordinate c's bins at offset c·(bins + 1): the token says which coordinate it is. The
            # extra entry per coordinate is the mask token.
            offsets = jnp.arange(NUM_ACTION_TOKENS) * (self.bins + 1)
            queries = nn.Embed(NUM_ACTION_TOKENS * (self.bins + 1), self.width, name="action_embed")(tokens + offsets)
            return queries.reshape(batch, num_actions * NUM_ACTION_TOKENS, self.width), NUM_ACTION_TOKENS
        hidden = nn.gelu(nn.Dense(self.width, name="action_fc1")(box_features(actions)))
        queries = nn.Dense(self.width, name="action_fc2")(hidden)
        if self.mask_actions:
            mask = self.param("mask_query", nn.initializers.normal(0.02), (self.width,))
            queries = jnp.broadcast_to(mask, queries.shape)
        return queries, 1

    @nn.compact
    def __call__(self, actions: jax.Array, memory: jax.Array) -> jax.Array:
        batch, num_actions, _ = actions.shape
        queries, per_action = self._queries(actions)
        action_id = jnp.repeat(jnp.arange(num_actions), per_action)
        self_mask = (action_id[:, None] == action_id[None, :])[None, None]  # [1, 1, Q, Q]
        memory = nn.Dense(self.width, name="memory_proj")(memory)
        if self.source_positions:
            positions = nn.Dense(self.width, name="position_proj")(
                _sinusoids(patch_centres(memory.shape[1] - 1), _CENTRE_FREQUENCIES))
            memory = memory.at[:, 1:].add(positions)  # the CLS token has no position
        for i in range(self.depth):
            queries = DecoderBlock(self.heads, 4 * self.width, name=f"block{i}")(queries, memory, self_mask)
        queries = nn.LayerNorm(name="norm")(queries)
        pooled = queries.reshape(batch, num_actions, per_action, self.width).mean(axis=2)
        init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
        return nn.Dense(self.out_dim, kernel_init=init, name="out")(pooled)
