"""I-JEPA's objective (Assran et al. 2023): from one large context block of an image, predict the representations
of several target blocks of the same image, as the EMA target encoder computes them from the whole image.

Multi-block masking (the paper's): `targets` blocks, each of scale (fraction of the patch grid) and aspect ratio
drawn per block, and one context block (aspect 1) from which every target patch is removed, so that predicting a
target needs more than copying. Targets are the target encoder's patch tokens, layer-normalised over features (no
learned gain), compared by mean squared error in representation space; they carry no gradient.

Shapes are static, as XLA needs, where I-JEPA's collator truncates each batch to its smallest mask:
  * the context encoder reads exactly `context` patches per image (`context_size`): the context block minus the
    targets, and where that is too small, patches taken back from the targets, which then stop being predicted
    (so a context patch is never also a target);
  * each target block is `max_block` patch indices with a validity flag (a smaller block is padded).
"""

import math

import jax
import jax.numpy as jnp


def block_side_lengths(
    key: jax.Array, grid: int, scale: tuple[float, float], aspect: tuple[float, float]
) -> tuple[jax.Array, jax.Array]:
    """I-JEPA's block shape: scale s and aspect a uniform, area ⌊s·N⌋ patches → (height, width) =
    (round √(area·a), round √(area / a)), each clipped to [1, grid]."""
    k_scale, k_aspect = jax.random.split(key)
    s = jax.random.uniform(k_scale, minval=scale[0], maxval=scale[1])
    a = jax.random.uniform(k_aspect, minval=aspect[0], maxval=aspect[1])
    area = jnp.floor(s * grid * grid)
    height = jnp.clip(jnp.round(jnp.sqrt(area * a)), 1, grid).astype(jnp.int32)
    width = jnp.clip(jnp.round(jnp.sqrt(area / a)), 1, grid).astype(jnp.int32)
    return height, width


def max_block(grid: int, scale: tuple[float, float], aspect: tuple[float, float]) -> int:
    """The largest block `block_side_lengths` can draw (patches), found on a fine grid of (scale, aspect)."""
    largest = 1
    for s in [scale[0] + (scale[1] - scale[0]) * i / 200 for i in range(201)]:
        for a in [aspect[0] + (aspect[1] - aspect[0]) * i / 200 for i in range(201)]:
            area = math.floor(s * grid * grid)
            height = min(max(round(math.sqrt(area * a)), 1), grid)
            width = min(max(round(math.sqrt(area / a)), 1), grid)
            largest = max(largest, height * width)
    return largest


def block_mask(key: jax.Array, grid: int, scale: tuple[float, float], aspect: tuple[float, float]) -> jax.Array:
    """One block of the drawn shape at a uniformly random place → bool [grid · grid], row-major."""
    k_shape, k_top, k_left = jax.random.split(key, 3)
    height, width = block_side_lengths(k_shape, grid, scale, aspect)
    top = jax.random.randint(k_top, (), 0, grid - height + 1)
    left = jax.random.randint(k_left, (), 0, grid - width + 1)
    rows, cols = jnp.arange(grid)[:, None], jnp.arange(grid)[None, :]
    return ((rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)).reshape(-1)


def context_size(grid: int, fraction: float) -> int:
    return max(1, round(fraction * grid * grid))


def _first(mask: jax.Array, count: int, priority: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The `count` highest-priority indices in grid order, and whether each is in `mask`. The default priority
    is `mask` itself, ties going to the lower index (a block's own patches first, in grid order)."""
    if priority is None:
        priority = mask - jnp.arange(mask.shape[-1]) / (2.0 * mask.shape[-1])
    _, chosen = jax.lax.top_k(priority, count)
    chosen = jnp.sort(chosen)
    return chosen, mask[chosen]


def multi_block_masks(
    key: jax.Array,
    batch: int,
    grid: int,
    targets: int,
    target_scale: tuple[float, float],
    target_aspect: tuple[float, float],
    context_scale: tuple[float, float],
    context_fraction: float,
) -> dict:
    """→ context [B, C] patch indices (C = `context_size`) in grid order; target [B, M, T] indices with
    target_valid [B, M, T] (T = `max_block`, M = `targets`)."""
    patches, longest = grid * grid, max_block(grid, target_scale, target_aspect)
    count = context_size(grid, context_fraction)

    def one(key):
        k_targets, k_context, k_order = jax.random.split(key, 3)
        blocks = jax.vmap(lambda k: block_mask(k, grid, target_scale, target_aspect))(
            jax.random.split(k_targets, targets)
        )  # [M, N]
        block = block_mask(k_context, grid, context_scale, (1.0, 1.0))
        free = block & ~blocks.any(0)
        # Context: free patches first, then (if too few) target patches inside the context block, then the rest,
        # each group in random order.
        priority = 2.0 * free + 1.0 * (block & ~free) + jax.random.uniform(k_order, (patches,))
        context, _ = _first(free, count, priority)
        taken = jnp.zeros(patches, bool).at[context].set(True)
        blocks = blocks & ~taken
        target, valid = jax.vmap(lambda m: _first(m, longest))(blocks)
        return context, target, valid

    context, target, valid = jax.vmap(one)(jax.random.split(key, batch))
    return dict(context=context, target=target, target_valid=valid)


def target_representations(tokens: jax.Array, target: jax.Array) -> jax.Array:
    """Target encoder tokens [B, 1 + N, D] (CLS first) and target indices [B, M, T] → layer-normalised patch
    tokens [B, M, T, D], without gradient."""
    patches = jax.lax.stop_gradient(tokens[:, 1:])
    mean = patches.mean(-1, keepdims=True)
    normalised = (patches - mean) * jax.lax.rsqrt(patches.var(-1, keepdims=True) + 1e-6)
    return jax.vmap(lambda x, idx: x[idx])(normalised, target)


def prediction_loss(predicted: jax.Array, targets: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean over valid target patches of the mean squared error over features. [B, M, T, D], [B, M, T, D],
    [B, M, T]."""
    per_patch = jnp.mean(jnp.square(predicted - targets), axis=-1)
    return jnp.sum(per_patch * valid) / jnp.maximum(jnp.sum(valid), 1)
