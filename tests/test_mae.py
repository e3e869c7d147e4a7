"""MAE's pieces on hand-made cases: patch order, masking geometry, target normalisation, a loss that scores only
hidden patches, and an encoder that cannot see hidden patches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlvis.methods import mae as mae_method
from rlvis.models.ab_model import ABModel
from rlvis.objectives import mae
from tests import objective_setup


def test_patchify_orders_patches_row_major_as_the_patch_embedding_does():
    image = jnp.arange(4 * 4 * 1, dtype=jnp.float32).reshape(1, 4, 4, 1)
    patches = mae.patchify(image, 2)
    assert patches.shape == (1, 4, 4)
    np.testing.assert_array_equal(patches[0], [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])
    rgb = jnp.arange(2 * 2 * 3, dtype=jnp.float32).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(mae.patchify(rgb, 2)[0, 0], np.arange(12))  # pixel-major, channels inside


def test_random_masking_keeps_a_sorted_quarter_and_hides_the_rest():
    keep, hidden = mae.random_masking(jax.random.PRNGKey(0), 3, 16, 0.75)
    assert keep.shape == (3, 4) and hidden.shape == (3, 16)
    for row_keep, row_hidden in zip(np.asarray(keep), np.asarray(hidden)):
        assert list(row_keep) == sorted(set(row_keep.tolist()))
        assert not row_hidden[row_keep].any() and row_hidden.sum() == 12
    assert len({tuple(row) for row in np.asarray(keep)}) > 1  # each image its own mask
    other, _ = mae.random_masking(jax.random.PRNGKey(1), 3, 16, 0.75)
    assert not np.array_equal(keep, other)


def test_targets_are_normalised_per_patch_and_only_hidden_patches_are_scored():
    patches = jnp.asarray([[[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 10.0]]])
    targets = mae.normalized_targets(patches)
    np.testing.assert_allclose(targets[0, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(targets[0, 0].std(), 1.0, atol=1e-5)
    np.testing.assert_allclose(targets[0, 1], 0.0, atol=1e-6)  # a flat patch: zeros, not a division by zero
    predicted = jnp.zeros((1, 2, 4))
    hidden = jnp.asarray([[True, False]])
    assert float(mae.reconstruction_loss(predicted, targets, hidden)) == float((targets[0, 0] ** 2).mean())
    moved_visible = predicted.at[0, 1].set(100.0)  # a visible patch's prediction does not count
    assert float(mae.reconstruction_loss(moved_visible, targets, hidden)) == float(
        mae.reconstruction_loss(predicted, targets, hidden)
    )


def test_the_encoder_reads_visible_patches_alone_and_the_loss_trains_both_encoder_and_decoder():
    config, model, params = objective_setup.tiny_network("mae")
    size, patch = config.env.view_size, 8
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, size, size, 1), minval=-1, maxval=1)
    keep = jnp.asarray([[0, 5, 10, 15], [1, 2, 3, 4]])
    tokens = model.apply(params, images, keep, method=ABModel.encode)
    assert tokens.shape[:2] == (2, 5)
    hidden_patch = images.at[:, 0:patch, patch : 2 * patch].set(0.9)  # patch 1: hidden in image 0, visible in 1
    changed = model.apply(params, hidden_patch, keep, method=ABModel.encode)
    np.testing.assert_array_equal(changed[0], tokens[0])
    assert not np.allclose(changed[1], tokens[1])

    batch = mae_method.render_annotation(
        jax.random.split(jax.random.PRNGKey(2), 4),
        dict(image=jnp.zeros((2, 32, 32, 1), jnp.uint8) + 128, valid=jnp.full((2, 2), 32)),
        config,
    )
    assert batch["keep"].shape == (2, 4) and batch["hidden"].sum() == 2 * 12
    grads = jax.grad(lambda p: mae_method.loss(model, p, None, dict(batch, annotation_views=images), config)[0])(
        params
    )["params"]
    assert float(optax.tree.norm(grads["encoder"])) > 0 and float(optax.tree.norm(grads["pixel_decoder"])) > 0
    assert "value_head" not in grads  # a baseline: no value head parameters
