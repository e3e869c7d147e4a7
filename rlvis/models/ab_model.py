"""The AB_SimCLR network: one ViT, a base projection head, an AB annotation head and the value head.

PAPER.md §1.4 (AB_SimCLR): annotations are images, so φ(x) = ψ(ℓ) is the SimCLR head on the shared ViT, and
ψ_AB is a separate "AB annotation head" on the same ViT. Each part is a method so the objective calls exactly
what it needs; `__call__` touches every part once, for `init`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.models.heads import ProjectionHead, l2_normalize
from rlvis.models.value_head import ValueHead
from rlvis.models.vit import ViT

MAX_LOGIT_SCALE = 100.0  # as CLIP: keeps the learned AB temperature from blowing up


class ABModel(nn.Module):
    variant: str
    image_size: int
    proj_dim: int
    proj_hidden: int
    action_bins: int
    decoder_depth: int
    decoder_width: int
    decoder_heads: int
    init_logit_scale: float

    def setup(self):
        self.encoder = ViT(self.variant, self.image_size, name="encoder")
        self.base_head = ProjectionHead(self.proj_hidden, self.proj_dim, name="base_head")
        self.ab_head = ProjectionHead(self.proj_hidden, self.proj_dim, name="ab_head")
        self.value_head = ValueHead(self.action_bins, self.decoder_width, self.decoder_depth, self.decoder_heads,
                                    self.proj_dim, name="value_head")
        self.ab_log_scale = self.param("ab_log_scale", nn.initializers.constant(jnp.log(self.init_logit_scale)),
                                       ())

    def encode(self, images: jax.Array) -> jax.Array:
        """images [..., H, W, C] → tokens [..., T, D] (CLS first)."""
        lead = images.shape[:-3]
        tokens = self.encoder(images.reshape(-1, *images.shape[-3:]))
        return tokens.reshape(*lead, *tokens.shape[1:])

    def base_embed(self, tokens: jax.Array) -> jax.Array:
        """φ(x) = ψ(ℓ): the SimCLR embedding of the CLS token, l2-normalised."""
        return self.base_head(tokens[..., 0, :])

    def ab_embed(self, tokens: jax.Array) -> jax.Array:
        """ψ_AB(ℓ): the annotation's embedding in the bootstrap softmax, l2-normalised."""
        return self.ab_head(tokens[..., 0, :])

    def value_embed(self, tokens: jax.Array, action_tokens: jax.Array) -> jax.Array:
        """φ_AB(x, a): tokens [B, T, D], action_tokens [B, A, 4] → [B, A, proj_dim], l2-normalised."""
        return l2_normalize(self.value_head(action_tokens, tokens))

    def ab_logit_scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.ab_log_scale), MAX_LOGIT_SCALE)

    def __call__(self, images: jax.Array, action_tokens: jax.Array) -> jax.Array:
        tokens = self.encode(images)
        value = self.value_embed(tokens, action_tokens)
        return value @ (self.base_embed(tokens) + self.ab_embed(tokens)).T * self.ab_logit_scale()


def from_config(config) -> ABModel:
    return ABModel(variant=config.model.variant, image_size=config.env.view_size, proj_dim=config.model.proj_dim,
                   proj_hidden=config.model.proj_hidden, action_bins=config.env.action_bins,
                   decoder_depth=config.model.decoder_depth, decoder_width=config.model.decoder_width,
                   decoder_heads=config.model.decoder_heads, init_logit_scale=1.0 / config.simclr.temperature)
