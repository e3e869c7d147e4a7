"""I-JEPA's pieces on hand-made cases: block geometry, a context that never contains a scored target patch,
layer-normalised targets, a loss over valid slots only, a predictor that ignores padding, and targets that carry
no gradient into the network."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlvis.methods import ijepa as ijepa_method
from rlvis.models.vit import variant_shape
from rlvis.objectives import ijepa
from tests import objective_setup


@pytest.mark.parametrize("grid", [4, 14])
def test_a_block_is_one_rectangle_of_the_drawn_shape_inside_the_grid(grid):
    scale, aspect = (0.15, 0.2), (0.75, 1.5)
    largest = ijepa.max_block(grid, scale, aspect)
    keys = jax.random.split(jax.random.PRNGKey(0), 40)
    masks = np.asarray(jax.vmap(lambda k: ijepa.block_mask(k, grid, scale, aspect))(keys)).reshape(-1, grid, grid)
    heights, widths = jax.vmap(lambda k: ijepa.block_side_lengths(jax.random.split(k, 3)[0], grid, scale, aspect))(keys)
    for mask, height, width in zip(masks, np.asarray(heights), np.asarray(widths)):
        rows, cols = np.nonzero(mask)
        assert mask.sum() == height * width <= largest
        assert rows.max() - rows.min() + 1 == height and cols.max() - cols.min() + 1 == width  # one rectangle
    if grid == 14:  # ⌊0.2 · 196⌋ = 39 patches at most before rounding each side
        assert 30 <= largest <= 48


def test_the_context_has_a_fixed_size_and_never_contains_a_scored_target_patch():
    grid, count = 4, ijepa.context_size(4, 0.3)
    draw = jax.jit(ijepa.multi_block_masks, static_argnums=range(1, 8))
    masks = draw(jax.random.PRNGKey(0), 64, grid, 4, (0.15, 0.2), (0.75, 1.5), (0.85, 1.0), 0.3)
    context, target, valid = (np.asarray(masks[k]) for k in ("context", "target", "target_valid"))
    assert context.shape == (64, count) and target.shape == valid.shape == (
        64,
        4,
        ijepa.max_block(4, (0.15, 0.2), (0.75, 1.5)),
    )
    for c, t, v in zip(context, target, valid):
        assert list(c) == sorted(set(c.tolist()))  # distinct, in grid order
        assert not set(c.tolist()) & set(t[v].tolist())
        assert v.any()  # something is left to predict
    assert len({tuple(c) for c in context}) > 10  # each image its own masks
    # On a 14 × 14 grid the context block minus four targets leaves more than 30 %: nothing is taken back.
    big = draw(jax.random.PRNGKey(1), 16, 14, 4, (0.15, 0.2), (0.75, 1.5), (0.85, 1.0), 0.3)
    assert np.asarray(big["target_valid"]).sum(-1).min() >= 1


def test_targets_are_layer_normalised_patch_tokens_and_only_valid_slots_are_scored():
    tokens = jnp.asarray([[[9.0, 9.0, 9.0], [1.0, 2.0, 3.0], [5.0, 5.0, 8.0]]])  # CLS, patch 0, patch 1
    targets = ijepa.target_representations(tokens, jnp.asarray([[[1, 0]]]))  # block: patch 1, then patch 0
    assert targets.shape == (1, 1, 2, 3)
    np.testing.assert_allclose(targets[0, 0, 1], np.array([-1.0, 0.0, 1.0]) * np.sqrt(1.5), rtol=1e-4)
    np.testing.assert_allclose(targets[0, 0, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(targets[0, 0, 0].var(), 1.0, rtol=1e-4)
    valid = jnp.asarray([[[True, False]]])
    predicted = jnp.zeros_like(targets)
    assert float(ijepa.prediction_loss(predicted, targets, valid)) == pytest.approx(
        float(jnp.mean(targets[0, 0, 0] ** 2)), rel=1e-6
    )
    padded_wrong = predicted.at[0, 0, 1].set(100.0)  # a padded slot's prediction does not count
    assert float(ijepa.prediction_loss(padded_wrong, targets, valid)) == float(
        ijepa.prediction_loss(predicted, targets, valid)
    )


def test_the_predictor_ignores_padded_slots_and_sees_no_other_block():
    config, model, params = objective_setup.tiny_network("ijepa")
    tokens = jax.random.normal(jax.random.PRNGKey(1), (1, 1 + 5, variant_shape(config.model.variant).width))
    context = jnp.asarray([[0, 3, 6, 9, 12]])
    target = jnp.asarray([[[1, 2, 5, 7], [10, 11, 14, 15]]])
    valid = jnp.asarray([[[True, True, False, False], [True, True, True, True]]])
    predict = jax.jit(lambda t: model.apply(params, tokens, context, t, valid, method=ijepa_method.predict))
    out = predict(target)
    moved_padding = predict(target.at[0, 0, 2:].set(jnp.asarray([13, 4])))
    np.testing.assert_allclose(out[0, 0, :2], moved_padding[0, 0, :2], atol=1e-5)  # padding is not attended to
    np.testing.assert_allclose(out[0, 1], moved_padding[0, 1], atol=1e-5)  # the other block does not see block 0
    other_position = predict(target.at[0, 0, 0].set(13))
    assert not np.allclose(out[0, 0, 0], other_position[0, 0, 0])  # a query is its target's position


def test_targets_come_from_the_ema_network_without_gradient():
    config, model, params = objective_setup.tiny_network("ijepa")
    images = jax.random.uniform(jax.random.PRNGKey(1), (3, 32, 32, 1), minval=-1, maxval=1).astype(jnp.float32)
    batch = ijepa_method.render_annotation(
        jax.random.split(jax.random.PRNGKey(2), 4),
        dict(image=jnp.zeros((3, 32, 32, 1), jnp.uint8) + 128, valid=jnp.full((3, 2), 32)),
        config,
    )
    batch = dict(batch, annotation_views=images)
    loss = jax.jit(lambda p, ema: ijepa_method.loss(model, p, ema, batch, config)[0])
    # Targets from the online parameters themselves: the gradient must still be the prediction's alone.
    same = jax.jit(jax.grad(lambda p: loss(p, p)))(params)
    both = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, params)
    np.testing.assert_allclose(optax.tree.norm(same), optax.tree.norm(both[0]), rtol=1e-6)
    assert float(optax.tree.norm(both[1])) == 0.0
    grads = same["params"]
    assert float(optax.tree.norm(grads["encoder"])) > 0 and float(optax.tree.norm(grads["predictor"])) > 0
    assert "value_head" not in grads
    changed_ema = jax.tree.map(lambda x: x * 1.5, params)  # the target network is the EMA one
    assert float(loss(params, changed_ema)) != float(loss(params, params))
