import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvis.envs import crop_env

SCALE, RATIO = (0.05, 1.0), (3 / 4, 4 / 3)


def _boxes(n=512, valid=(48, 64)):
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    return jax.vmap(lambda k: crop_env.reset(k, jnp.array(valid), SCALE, RATIO))(keys), valid


def test_reset_boxes_lie_inside_the_valid_region_with_the_requested_area():
    boxes, valid = _boxes()
    y0, x0, h, w = np.asarray(boxes).T
    assert (y0 >= 0).all() and (x0 >= 0).all()
    assert (y0 + h <= 1 + 1e-6).all() and (x0 + w <= 1 + 1e-6).all()
    area = h * w
    assert area.max() <= SCALE[1] + 1e-6 and area.min() >= SCALE[0] * 0.99
    aspect = (w * valid[1]) / (h * valid[0])
    unclipped = (h < 1 - 1e-6) & (w < 1 - 1e-6)
    assert (aspect[unclipped] >= RATIO[0] - 1e-4).all() and (aspect[unclipped] <= RATIO[1] + 1e-4).all()
    assert area.std() > 0.1  # the scale range is actually used


def test_zoom_out_boxes_cover_the_image_and_render_it_small_on_zeros():
    """annotation_scale max > 1: a box bigger than the image covers it, and the view shows the whole image shrunk,
    surrounded by zeros (-1 after scaling), not clipped to the image."""
    keys = jax.random.split(jax.random.PRNGKey(1), 256)
    boxes = np.asarray(jax.vmap(lambda k: crop_env.reset(k, jnp.array([32, 32]), (2.0, 4.0), (1.0, 1.0)))(keys))
    y0, x0, h, w = boxes.T
    np.testing.assert_allclose(h * w, np.clip(h * w, 2.0, 4.0))  # the area range is kept, not clipped to 1
    assert (y0 <= 1e-6).all() and (x0 <= 1e-6).all()
    assert (y0 + h >= 1 - 1e-6).all() and (x0 + w >= 1 - 1e-6).all()
    image = jnp.full((32, 32, 1), 255.0)
    view = np.asarray(crop_env.observe(image, jnp.array([32, 32]), jnp.array([-0.5, -0.5, 2.0, 2.0]), 32))
    np.testing.assert_allclose(view[8:24, 8:24], 1.0, atol=1e-4)  # the image, shrunk 2× into the centre
    np.testing.assert_allclose(view[:6], -1.0, atol=1e-4)
    np.testing.assert_allclose(view[:, -6:], -1.0, atol=1e-4)


def test_step_inverts_relative():
    boxes, _ = _boxes(64)
    src, tgt = boxes[:32], boxes[32:]
    actions = jax.vmap(crop_env.relative)(src, tgt)
    np.testing.assert_allclose(jax.vmap(crop_env.step)(src, actions), tgt, atol=1e-6)


def test_observe_crops_the_right_pixels():
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64, 1) % 251
    valid = jnp.array([64, 64])
    # A box of exactly 32×32 pixels at (16, 8): rendering at 32 px is the identity on that window.
    box = jnp.array([16 / 64, 8 / 64, 0.5, 0.5])
    view = crop_env.observe(jnp.asarray(image), valid, box, 32)
    np.testing.assert_allclose((np.asarray(view) + 1) * 127.5, image[16:48, 8:40], atol=1e-3)


def test_observe_zooms_in_and_out_on_a_linear_ramp():
    """Bilinear resampling of a linear ramp is exact away from the edges, so scale and offset are checked."""
    ramp = np.broadcast_to(np.arange(64, dtype=np.float32)[None, :, None], (64, 64, 1))  # value = x coordinate
    valid = jnp.array([64, 64])
    # zoom in 2×: 16 px of the image starting at x = 24 → 32 px; output pixel centre i maps to x = 24 + (i+0.5)/2 - 0.5
    view = crop_env.observe(jnp.asarray(ramp), valid, jnp.array([0.25, 24 / 64, 0.25, 0.25]), 32)
    expected = 24 + (np.arange(32) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(((np.asarray(view) + 1) * 127.5)[8, 2:-2, 0], expected[2:-2], atol=1e-3)
    # zoom out 2× (anti-aliased): 64 px → 32 px; output pixel i covers x in [2i, 2i+2), mean 2i + 0.5
    view = crop_env.observe(jnp.asarray(ramp), valid, jnp.array([0.0, 0.0, 1.0, 1.0]), 32)
    np.testing.assert_allclose(((np.asarray(view) + 1) * 127.5)[8, 2:-2, 0], 2 * np.arange(2, 30) + 0.5, atol=1e-3)


def test_observe_ignores_padding_outside_the_valid_region():
    canvas = np.full((64, 64, 1), 255, np.uint8)
    canvas[:40, :30] = 0  # the image is the black 40×30 top-left region; the rest is padding
    view = crop_env.observe(jnp.asarray(canvas), jnp.array([40, 30]), jnp.array([0.0, 0.0, 1.0, 1.0]), 16)
    np.testing.assert_allclose(np.asarray(view), -1.0, atol=1e-5)


def test_action_tokens_are_in_range_and_distinguish_moves():
    boxes, _ = _boxes(256)
    actions = jax.vmap(crop_env.relative)(boxes[:128], boxes[128:])
    tokens = np.asarray(jax.vmap(lambda a: crop_env.action_tokens(a, 32))(actions))
    assert tokens.shape == (128, 4) and tokens.min() >= 0 and tokens.max() < 32
    assert len({tuple(t) for t in tokens}) > 100
    identity = np.asarray(crop_env.action_tokens(jnp.array([0.0, 0.0, 1.0, 1.0]), 32))
    np.testing.assert_array_equal(identity, [16, 16, 16, 16])
    left = np.asarray(crop_env.action_tokens(jnp.array([0.0, -1.0, 1.0, 1.0]), 32))
    assert left[1] < 16 and left[0] == 16  # a pan left lowers the x token only


@pytest.mark.parametrize("num_views", [2, 4])
def test_batch_rollout_shapes_and_pair_actions(num_views):
    images = jnp.zeros((3, 64, 64, 1), jnp.uint8)
    valid = jnp.array([[64, 64], [40, 50], [64, 48]])
    rollout = jax.jit(
        lambda k: crop_env.batch_rollout(k, images, valid, num_views=num_views, size=16, scale=SCALE, ratio=RATIO)
    )
    out = rollout(jax.random.PRNGKey(0))
    assert out["views"].shape == (3, num_views, 16, 16, 1)
    assert out["actions"].shape == (3, num_views, num_views - 1, 4)
    # actions[b, i, k] is the move from view i to view pair_indices[i, k]
    pairs = np.asarray(crop_env.pair_indices(num_views))
    b, i, k = 1, 1, 0
    np.testing.assert_allclose(
        crop_env.step(out["boxes"][b, i], out["actions"][b, i, k]), out["boxes"][b, pairs[i, k]], atol=1e-6
    )
    # stateless: the same key gives the same views
    np.testing.assert_array_equal(out["boxes"], rollout(jax.random.PRNGKey(0))["boxes"])
    assert not np.allclose(out["boxes"], rollout(jax.random.PRNGKey(1))["boxes"])


def test_iou_and_intersection_on_hand_computed_boxes():
    a = jnp.array([0.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(crop_env.iou(a, a), 1.0)
    np.testing.assert_allclose(crop_env.iou(a, jnp.array([0.5, 0.5, 0.5, 0.5])), 0.0)  # touching corners
    np.testing.assert_allclose(crop_env.intersection(a, jnp.array([0.25, 0.0, 0.5, 0.5])), 0.125)
    np.testing.assert_allclose(crop_env.iou(a, jnp.array([0.25, 0.0, 0.5, 0.5])), 0.125 / 0.375)
    np.testing.assert_allclose(crop_env.iou(a, jnp.array([0.0, 0.0, 0.25, 0.25])), 0.25)  # zoom-in


def test_pair_indices_are_all_ordered_pairs_without_self():
    pairs = np.asarray(crop_env.pair_indices(4))
    assert pairs.shape == (4, 3)
    assert {(i, j) for i in range(4) for j in pairs[i]} == {(i, j) for i in range(4) for j in range(4) if i != j}
