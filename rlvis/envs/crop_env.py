"""Augmentation-as-action environment: the image is the world, the view box is the state, moving it is an action.

Pure functions of arrays, jittable, written for one image and one view; `jax.vmap` lifts them to views and
batches. There are no classes with hidden state: randomness is an explicit key.

Conventions
  * A box is float32 [4] = (y0, x0, h, w) as fractions of the image's valid region (the part of the fixed
    canvas that holds the image; the rest is padding). Boxes from `reset` lie inside [0, 1]² unless a scale
    above 1 asks for zoom-out.
  * An action is the next box expressed in the current box's frame (the paper: "bb_{1→2}, the coordinates of crop
    2 relative to crop 1"): a = ((y0' - y0) / h, (x0' - x0) / w, h' / h, w' / w). `step` is its exact inverse.
  * The value head sees an action as 4 integer tokens (`action_tokens`): centre offsets in units of the source box
    and log size ratios, each squashed by sign(v)·log(1 + |v|) and quantised into `bins` bins. The squashing
    keeps resolution where most transitions are (near the source) while far pans (up to ~5 box widths with
    scale 0.05) still get distinct tokens. An odd bin count gives "stay" a centred bin of its own. The paper
    fixes neither format nor bins.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

Box = jax.Array  # float32 [4]: y0, x0, h, w in valid-region fractions
FULL_BOX = np.array([0.0, 0.0, 1.0, 1.0], np.float32)  # the whole image; as an action, "stay"
NUM_ACTION_TOKENS = 4
# Ranges of the squashed coordinates; values beyond are clipped into the edge bins.
_OFFSET_RANGE = math.log1p(6.0)  # centre offsets up to 6 source-box sizes
_LOG_SIZE_RANGE = math.log1p(3.0)  # log size ratio up to ±3 (≈ 20× zoom)


def reset(key: jax.Array, valid_hw: jax.Array, scale: tuple[float, float], ratio: tuple[float, float]) -> Box:
    """Sample a view: RandomResizedCrop of area fraction in `scale` and aspect (w/h, in pixels) in `ratio`.

    With `scale[1] <= 1` sides that would exceed the image are clipped to it (instead of torchvision's rejection
    loop, which does not jit) and the box is placed uniformly inside the valid region. `scale[1] > 1` allows
    zoom-out: a box larger than the image along a side is placed so that it covers the image along that side, and
    `observe` renders the area beyond the image as zeros (a small object on an empty background).
    """
    k_area, k_ratio, k_pos = jax.random.split(key, 3)
    valid_hw = valid_hw.astype(jnp.float32)
    area = jax.random.uniform(k_area, (), minval=scale[0], maxval=scale[1]) * valid_hw[0] * valid_hw[1]
    log_r = jax.random.uniform(k_ratio, (), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
    h, w = jnp.sqrt(area / jnp.exp(log_r)), jnp.sqrt(area * jnp.exp(log_r))
    if scale[1] <= 1.0:
        h, w = jnp.minimum(h, valid_hw[0]), jnp.minimum(w, valid_hw[1])
    h, w = h / valid_hw[0], w / valid_hw[1]
    y0, x0 = jax.random.uniform(k_pos, (2,)) * jnp.stack([1.0 - h, 1.0 - w])  # 1 - side < 0: the box covers the image
    return jnp.stack([y0, x0, h, w])


def relative(source: Box, target: Box) -> jax.Array:
    """The action that moves the view from `source` to `target`."""
    return jnp.concatenate([(target[:2] - source[:2]) / source[2:], target[2:] / source[2:]])


def step(box: Box, action: jax.Array) -> Box:
    """Apply a relative action: the inverse of `relative`."""
    return jnp.concatenate([box[:2] + action[:2] * box[2:], action[2:] * box[2:]])


def observe(image: jax.Array, valid_hw: jax.Array, box: Box, size: int) -> jax.Array:
    """Render the view: bilinear, anti-aliased crop-and-resize of `box` to `size`×`size`, values in [-1, 1].

    `image` is the fixed canvas (uint8 or float, [H, W, C]); only its valid region is addressed by the box.
    The anti-aliasing kernel reaches past the box edge when zooming out; a validity mask rendered alongside
    renormalises its weights over real pixels, so the canvas padding never bleeds into a view.
    """
    valid_hw = valid_hw.astype(jnp.float32)
    top_left, extent = box[:2] * valid_hw, box[2:] * valid_hw
    scale = size / extent
    rows, cols = jnp.arange(image.shape[0]), jnp.arange(image.shape[1])
    mask = ((rows[:, None] < valid_hw[0]) & (cols[None, :] < valid_hw[1])).astype(jnp.float32)[..., None]
    stacked = jnp.concatenate([image.astype(jnp.float32) * mask, mask], axis=-1)
    rendered = jax.image.scale_and_translate(
        stacked, (size, size, stacked.shape[-1]), (0, 1), scale, -top_left * scale, method="linear", antialias=True
    )
    view = rendered[..., :-1] / jnp.maximum(rendered[..., -1:], 1e-6)
    return view / 127.5 - 1.0


def action_tokens(action: jax.Array, bins: int) -> jax.Array:
    """Discretise actions [..., 4] into int32 tokens [..., 4] in [0, bins): (Δcy, Δcx, log h'/h, log w'/w)."""
    centre_offset = action[..., :2] + 0.5 * action[..., 2:] - 0.5
    log_size = jnp.log(action[..., 2:])
    coords = jnp.concatenate([centre_offset, log_size], axis=-1)
    squashed = jnp.sign(coords) * jnp.log1p(jnp.abs(coords))
    span = jnp.array([_OFFSET_RANGE, _OFFSET_RANGE, _LOG_SIZE_RANGE, _LOG_SIZE_RANGE])
    unit = (jnp.clip(squashed / span, -1.0, 1.0) + 1.0) / 2.0  # in [0, 1]
    return jnp.minimum((unit * bins).astype(jnp.int32), bins - 1)


def mask_tokens(tokens: jax.Array, bins: int) -> jax.Array:
    """Every action replaced by the same mask token (index `bins`): the Table 5 'empty action tokens' ablation.

    The value head then cannot tell where a view moves, so it learns invariance instead of equivariance.
    """
    return jnp.full_like(tokens, bins)


def pan_zoom(box: Box, moves: jax.Array, min_side: float) -> jax.Array:
    """The boxes [A, 4] that moves [A, 3] = (Δy, Δx, zoom) lead to from `box`: the centre panned by Δ (fractions of
    the box side), the sides scaled by zoom about the new centre and clipped to [min_side, 1], then the box shifted
    (not shrunk) back inside the image. The search policies' moves."""
    side = jnp.clip(box[2:] * moves[:, 2:3], min_side, 1.0)
    centre = box[:2] + box[2:] / 2 + moves[:, :2] * box[2:]
    corner = jnp.clip(centre - side / 2, 0.0, 1.0 - side)
    return jnp.concatenate([corner, side], axis=-1)


def intersection(a: Box, b: Box) -> jax.Array:
    """Area of the overlap of boxes [..., 4], in the same units as their areas (h·w)."""
    top = jnp.maximum(a[..., :2], b[..., :2])
    bottom = jnp.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    return jnp.prod(jnp.clip(bottom - top, 0.0, None), axis=-1)


def iou(a: Box, b: Box) -> jax.Array:
    """Intersection over union of boxes [..., 4] (works on numpy arrays too)."""
    overlap = intersection(a, b)
    return overlap / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - overlap)


def pair_indices(num_views: int) -> np.ndarray:
    """int32 [n, n-1]: for each source view i, the other views j ≠ i, in order (all ordered pairs); static."""
    return np.array([[j for j in range(num_views) if j != i] for i in range(num_views)], np.int32)


def rollout_views(
    key: jax.Array,
    image: jax.Array,
    valid_hw: jax.Array,
    *,
    num_views: int,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> dict[str, jax.Array]:
    """One image → `num_views` independent RandomResizedCrops (`reset`), and every transition between them.

    Returns `views` [n, size, size, C], `boxes` [n, 4], and `actions` float32 [n, n-1, 4] where actions[i, k] is
    the move from view i to view pair_indices(n)[i, k] (the value head turns actions into its queries). The same
    actions, read from view j, are the candidate next actions a' of the γ > 0 target, so the target needs no
    extra rendering.
    """
    boxes = jax.vmap(lambda k: reset(k, valid_hw, scale, ratio))(jax.random.split(key, num_views))
    views = jax.vmap(lambda b: observe(image, valid_hw, b, size))(boxes)
    targets = boxes[pair_indices(num_views)]  # [n, n-1, 4]
    actions = jax.vmap(lambda src, tgts: jax.vmap(lambda t: relative(src, t))(tgts))(boxes, targets)
    return dict(views=views, boxes=boxes, actions=actions)


def batch_rollout(key: jax.Array, images: jax.Array, valid_hw: jax.Array, **kwargs) -> dict[str, jax.Array]:
    """`rollout_views` for a batch of images, one key per image (stateless: same key → same views)."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, im, hw: rollout_views(k, im, hw, **kwargs))(keys, images, valid_hw)
