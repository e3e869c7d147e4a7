"""The AB network: one ViT, the base method's heads, the AB annotation embeddings and the value head.

The encoder, the value head and the AB logit scale are shared by every method; the heads are the method's own,
created by `setup_heads(model)` in its file in rlvis/methods (`base` names it), as in the paper (docs/method.md):
SimCLR's projection head plus an AB annotation head on the same ViT; DINO's prototype head plus an AB embedding
matrix of K rows; CLIP's image projection, text tower, text head and AB text head (SLIP and SiLC add a self-supervised head). The
accessors below
(`ab_embed`, `ab_vocabulary`, `text_embed`, …) read those heads, so a loss calls exactly what it needs;
`__call__` touches every part, for `init`, through the method's `init_outputs`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlvis.models.heads import l2_normalize
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
    base: str = "simclr"  # the method file (rlvis/methods) whose heads the network has
    num_prototypes: int = 0  # DINO only
    norm_last_layer: bool = True  # DINO only
    compute_dtype: str = "float32"  # the encoder's compute dtype ("bfloat16": mixed precision)
    remat: bool = False  # rematerialise encoder blocks
    text_variant: str = "tiny"  # CLIP only
    caption_length: int = 0  # CLIP only
    pixel_decoder: tuple[int, int, int, int] = (0, 0, 0, 0)  # MAE only: width, depth, heads, pixels per patch
    latent_predictor: tuple[int, int, int] = (0, 0, 0)  # I-JEPA only: width, depth, heads
    action_encoding: str = "bins"  # value-head queries: "bins" (the paper's tokens) or "fourier" (value_head.py)
    source_positions: bool = False  # value head: sinusoidal cell positions added to the source tokens
    box_attention: bool = False  # value head: cross-attention starts on the source cells under the destination
    mask_actions: bool = False  # invariance ablation: every action is one mask query
    shared_vocabulary: bool = False  # ψ_AB = the base head's annotation embedding (stop-gradient), no AB head
    value_residual: bool = False  # φ_AB(x, a) = the source view's own annotation embedding + the decoder's change
    normalize_value: bool = True  # False: φ_AB's length is free, a per-prediction confidence (inverse temperature)

    def setup(self):
        self.encoder = ViT(self.variant, self.image_size, jnp.dtype(self.compute_dtype), self.remat, name="encoder")
        _method(self.base).setup_heads(self)
        self.value_head = ValueHead(self.action_bins, self.decoder_width, self.decoder_depth, self.decoder_heads,
                                    self.proj_dim, self.action_encoding, self.source_positions, self.mask_actions,
                                    box_attention=self.box_attention,
                                    zero_out=not self.normalize_value, name="value_head")
        self.ab_log_scale = self.param("ab_log_scale", nn.initializers.constant(jnp.log(self.init_logit_scale)),
                                       ())

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
        """SimCLR base: ψ_AB(ℓ) of annotation images in the bootstrap softmax, l2-normalised. With a shared
        vocabulary it is the base head's embedding, held fixed for the TD loss (the base loss alone shapes it)."""
        if self.shared_vocabulary:
            return jax.lax.stop_gradient(self.base_embed(tokens))
        return self.ab_head(tokens[..., 0, :])

    def ab_vocabulary(self) -> jax.Array:
        """DINO base: ψ_AB of the K prototypes, the AB embedding matrix's rows, l2-normalised."""
        return l2_normalize(self.ab_prototypes)

    def text_embed(self, captions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """CLIP base: captions int32 [K, L] → (ψ(ℓ) for the CLIP loss, ψ_AB(ℓ) for the bootstrap softmax)."""
        features = self.text_tower(captions)
        text = self.text_head(features)
        return text, jax.lax.stop_gradient(text) if self.shared_vocabulary else self.ab_text_head(features)

    def clip_logit_scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.clip_log_scale), MAX_LOGIT_SCALE)

    def value_embed(self, tokens: jax.Array, actions: jax.Array) -> jax.Array:
        """φ_AB(x, a): tokens [B, T, D], relative actions [B, A, 4] → [B, A, proj_dim].

        With `value_residual` the decoder's output is added to the source view's own embedding in the annotation
        space (SimCLR: ψ_AB of the view as if it were an annotation; CLIP: its image embedding), so an untrained
        head starts from "the destination shows what the source shows" and learns how a move changes that.
        l2-normalised unless `normalize_value=False`: a unit φ_AB with one shared scale t_AB can express an
        uncertain destination only by pointing between annotations (towards their mean, losing what it knows);
        a free length lets it be unsure without changing what it points at.
        """
        value = self.value_head(actions, tokens)
        if self.value_residual:
            value = value + l2_normalize(_method(self.base).source_annotation_embedding(self, tokens))[..., None, :]
        return l2_normalize(value) if self.normalize_value else value

    def ab_logit_scale(self) -> jax.Array:
        return jnp.minimum(jnp.exp(self.ab_log_scale), MAX_LOGIT_SCALE)

    def q_logits(self, tokens: jax.Array, actions: jax.Array, vocabulary: jax.Array) -> jax.Array:
        """log Q(ℓ | x, a) up to a constant: t_AB · φ_AB(x, a)ᵀψ_AB(ℓ) for tokens [B, T, D], actions [B, A, 4]
        and the AB vocabulary [K, P] → [B, A, K]."""
        return self.value_embed(tokens, actions) @ vocabulary.T * self.ab_logit_scale()

    def __call__(self, images: jax.Array, actions: jax.Array,
                 captions: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        return _method(self.base).init_outputs(self, self.encode(images), actions, captions)


def _method(base: str):
    """The method file that owns the heads (imported here: method files import this module)."""
    from rlvis import methods
    return methods.FAMILIES[base]

