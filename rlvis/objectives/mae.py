"""MAE's objective (He et al. 2022): hide most patches, encode the visible ones alone, reconstruct the hidden
ones' pixels.

Targets are each patch's own pixels normalised by that patch's mean and variance (the paper's `norm_pix_loss`,
which it reports sharpens the representation), and only hidden patches are scored: reconstructing what the
encoder saw teaches nothing.
"""

import jax
import jax.numpy as jnp


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """images [B, H, W, C] → patches [B, (H/p)(W/p), p·p·C], row-major over the grid, the order the ViT's patch
    embedding uses."""
    batch, height, width, channels = images.shape
    grid_h, grid_w = height // patch, width // patch
    x = images.reshape(batch, grid_h, patch, grid_w, patch, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, grid_h * grid_w, patch * patch * channels)


def random_masking(key: jax.Array, batch: int, patches: int, mask_ratio: float) -> tuple[jax.Array, jax.Array]:
    """A uniformly random subset of round((1 - mask_ratio) · patches) patches per image → (keep [B, K] indices,
    sorted so the encoder sees them in grid order; hidden [B, N] bool)."""
    visible = max(1, int(round(patches * (1.0 - mask_ratio))))
    noise = jax.random.uniform(key, (batch, patches))
    keep = jnp.sort(jnp.argsort(noise, axis=1)[:, :visible], axis=1)
    hidden = jnp.ones((batch, patches), bool).at[jnp.arange(batch)[:, None], keep].set(False)
    return keep, hidden


def normalized_targets(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Each patch's pixels minus its mean, over its standard deviation (MAE's `norm_pix_loss`)."""
    mean = patches.mean(-1, keepdims=True)
    variance = patches.var(-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(variance + eps)


def reconstruction_loss(predicted: jax.Array, targets: jax.Array, hidden: jax.Array) -> jax.Array:
    """Mean squared error per patch [B, N, P], averaged over the hidden patches only."""
    per_patch = ((predicted - targets) ** 2).mean(-1)
    return (per_patch * hidden).sum() / jnp.maximum(hidden.sum(), 1)
