"""Vision Transformer encoder (pre-LN, CLS token, learned position embeddings), big_vision shapes by name.

Returns all tokens (CLS first): the value head cross-attends to them, probes pool them.
"""

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ViTShape:
    width: int
    depth: int
    heads: int
    mlp_dim: int
    patch: int


# (width, depth, heads, mlp) as in big_vision; "mu" and "tiny" are CPU shapes for the demo and the tests.
_SHAPES = {
    "tiny": (32, 2, 2, 64),
    "mu": (64, 4, 4, 128),
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
}


def variant_shape(variant: str) -> ViTShape:
    """ "S/16" → ViTShape(384, 12, 6, 1536, patch=16)."""
    match = re.fullmatch(r"(\w+)/(\d+)", variant)
    if not match or match.group(1) not in _SHAPES:
        raise ValueError(f"unknown ViT variant {variant!r}; use NAME/PATCH with NAME in {sorted(_SHAPES)}")
    return ViTShape(*_SHAPES[match.group(1)], patch=int(match.group(2)))


class MlpBlock(nn.Module):
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        x = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


def attention(
    heads: int, name: str, dtype: jnp.dtype = jnp.float32, attention_fn=nn.dot_product_attention
) -> nn.MultiHeadDotProductAttention:
    """Multi-head attention without projection biases (as ViT-22B).

    The key bias has an identically zero gradient (softmax is shift-invariant per query), so Adam turns float noise
    into lr-sized steps and a run's parameters would depend on the device layout; the value and output biases only
    add a constant that the residual stream's LayerNorms and MLP biases already provide.
    """
    return nn.MultiHeadDotProductAttention(
        num_heads=heads, use_bias=False, dtype=dtype, attention_fn=attention_fn, name=name
    )


class EncoderBlock(nn.Module):
    heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """`mask` [B, 1, T, T] (optional): which tokens each token may attend to (padding left out)."""
        y = nn.LayerNorm(dtype=self.dtype, name="norm1")(x)
        x = x + attention(self.heads, "attn", self.dtype)(y, y, mask=mask)
        y = nn.LayerNorm(dtype=self.dtype, name="norm2")(x)
        return x + MlpBlock(self.mlp_dim, self.dtype, name="mlp")(y)


def resample_posemb(posemb: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """[1, 1 + h*w, D] (CLS first, square h = w) → [1, 1 + grid[0]*grid[1], D], bilinear over the patch grid."""
    if posemb.shape[1] == 1 + grid[0] * grid[1]:
        return posemb
    side = int(round((posemb.shape[1] - 1) ** 0.5))
    patches = posemb[0, 1:].reshape(side, side, -1)
    patches = jax.image.resize(patches, (*grid, patches.shape[-1]), method="bilinear")
    return jnp.concatenate([posemb[:, :1], patches.reshape(1, grid[0] * grid[1], -1)], axis=1)


class ViT(nn.Module):
    """images [B, H, W, C] in [-1, 1] → tokens [B, 1 + (H/p)(W/p), width], CLS token first.

    Position embeddings are learned for `image_size`; other sizes (e.g. evaluating scenes at full resolution)
    resample them bilinearly, as big_vision does when fine-tuning at a new resolution.
    """

    variant: str
    image_size: int
    dtype: jnp.dtype = jnp.float32  # bfloat16: mixed precision, float32 parameters and output
    remat: bool = False  # recompute each block's activations in the backward pass: memory for compute

    @nn.compact
    def __call__(self, images: jax.Array, keep: jax.Array | None = None) -> jax.Array:
        """`keep` [B, K]: indices of the only patches to encode (masked image modelling: the encoder sees the
        visible patches alone, at their own positions) → tokens [B, 1 + K, width]."""
        shape = variant_shape(self.variant)
        x = nn.Conv(
            shape.width,
            (shape.patch, shape.patch),
            strides=shape.patch,
            padding="VALID",
            dtype=self.dtype,
            name="patch_embed",
        )(images)
        batch, grid = x.shape[0], x.shape[1:3]
        x = x.reshape(batch, -1, shape.width)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, shape.width))
        x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, shape.width)), x], axis=1)
        trained_grid = self.image_size // shape.patch
        posemb = self.param("pos_embedding", nn.initializers.normal(0.02), (1, 1 + trained_grid**2, shape.width))
        x = x + resample_posemb(posemb, grid)
        if keep is not None:
            x = jnp.concatenate([x[:, :1], jnp.take_along_axis(x[:, 1:], keep[..., None], axis=1)], axis=1)
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        for i in range(shape.depth):
            x = block(shape.heads, shape.mlp_dim, self.dtype, name=f"block{i}")(x)
        return nn.LayerNorm(name="norm")(x.astype(jnp.float32))
