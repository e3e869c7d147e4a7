"""The AB network: one ViT, the base method's heads, the AB annotation embeddings and the value head.

The encoder, the value head and the AB logit scale are what every AB model has. The heads are the method's own
and are handed in (`heads`, an object from the method's file in rlvis/methods): it creates them in the network's
setup and touches each once for `init`, as in the paper (docs/method.md): SimCLR's projection head plus an AB
annotation head on the same ViT; DINO's prototype head plus an AB embedding matrix of K rows; CLIP's image
projection, text tower, text head and AB text head. The accessors below (`ab_embed`, `ab_vocabulary`,
`text_embed`, …) read those heads, so a loss calls exactly what it needs.
"""

from typing import Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.models.heads import l2_normalize
from rlvis.models.value_head import ValueHead
from rlvis.models.vit import ViT

MAX_LOGIT_SCALE = 100.0  # as CLIP: keeps the learned AB temperature from blowing up


class Heads(Protocol):
    """A method's heads (a frozen dataclass of its head sizes, so the network stays hashable and comparable)."""

    def setup(self, model: "ABModel") -> None:
        """Create the heads as attributes of `model` (called in its setup)."""

    def init_outputs(self, model: "ABModel", tokens: jax.Array, actions: jax.Array, captions: jax.Array | None):
        """Touch every head once, so `init` creates all their parameters."""


class ABModel(nn.Module):
    variant: str
    image_size: int
    heads: Heads
    proj_dim: int  # the annotation embedding space the value head predicts into
    action_bins: int
    decoder_depth: int
    decoder_width: int
    decoder_heads: int
    init_logit_scale: float
    compute_dtype: str = "float32"  # the encoder's compute dtype ("bfloat16": mixed precision)
    remat: bool = False  # rematerialise encoder blocks
    box_attention: bool = True  # value head: cross-attention starts on the source cells under the destination
    mask_actions: bool = False  # invariance ablation: every action is one mask query

    def setup(self):
        self.encoder = ViT(self.variant, self.image_size, jnp.dtype(self.compute_dtype), self.remat, name="encoder")
        self.heads.setup(self)
        self.value_head = ValueHead(
            self.action_bins,
            self.decoder_width,
            self.decoder_depth,
            self.decoder_heads,
            self.proj_dim,
            mask_actions=self.mask_actions,
            box_attention=self.box_attention,
            name="value_head",
        )
        self.ab_log_scale = self.param("ab_log_scale", nn.initializers.constant(jnp.log(self.init_logit_scale)), ())

    def encode(self, images: jax.Array, keep: jax.Array | None = None) -> jax.Array:
        """images [..., H, W, C] → tokens [..., T, D] (CLS first); with `keep` [..., K] only those patches are
        encoded (T = 1 + K)."""
        lead = images.shape[:-3]
        keep = None if keep is None else keep.reshape(-1, keep.shape[-1])
        tokens = self.encoder(images.reshape(-1, *images.shape[-3:]), keep)
        return tokens.reshape(*lead, *tokens.shape[1:])

    def base_embed(self, tokens: jax.Array) -> jax.Array:
        """The base head on the CLS token: SimCLR's l2-normalised φ(x), or DINO's K prototype cosines."""
        return self.base_head(tokens[..., 0, :])

    def ssl_embed(self, tokens: jax.Array) -> jax.Array:
        """SLIP / SiLC: the self-supervised head beside CLIP's projection (SimCLR's projection, DINO's prototypes)."""
        return self.ssl_head(tokens[..., 0, :])

    def ab_embed(self, tokens: jax.Array) -> jax.Array:
        """SimCLR base: ψ_AB(ℓ) of annotation images in the bootstrap softmax, l2-normalised."""
        return self.ab_head(tokens[..., 0, :])

    def ab_vocabulary(self) -> jax.Array:
        """DINO base: ψ_AB of the K prototypes, the AB embedding matrix's rows, l2-normalised."""
        return l2_normalize(self.ab_prototypes)

    def text_embed(self, captions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """CLIP base: captions int32 [K, L] → (ψ(ℓ) for the CLIP loss, ψ_AB(ℓ) for the bootstrap softmax)."""
        features = self.text_tower(captions)
        return self.text_head(features), self.ab_text_head(features)

    def clip_logit_scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.clip_log_scale), MAX_LOGIT_SCALE)

    def value_embed(self, tokens: jax.Array, actions: jax.Array) -> jax.Array:
        """φ_AB(x, a): tokens [B, T, D], relative actions [B, A, 4] → unit vectors [B, A, proj_dim]."""
        return l2_normalize(self.value_head(actions, tokens))

    def ab_logit_scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.ab_log_scale), MAX_LOGIT_SCALE)

    def q_logits(self, tokens: jax.Array, actions: jax.Array, vocabulary: jax.Array) -> jax.Array:
        """log Q(ℓ | x, a) up to a constant: t_AB · φ_AB(x, a)ᵀψ_AB(ℓ) for tokens [B, T, D], actions [B, A, 4]
        and the AB vocabulary [K, P] → [B, A, K]."""
        return self.value_embed(tokens, actions) @ vocabulary.T * self.ab_logit_scale()

    def __call__(self, images: jax.Array, actions: jax.Array, captions: jax.Array | None = None):
        return self.heads.init_outputs(self, self.encode(images), actions, captions)
