import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from rlvis import methods
from rlvis.models import ab_model, vit
from rlvis.models.value_head import ValueHead


@pytest.mark.parametrize("variant,width,depth", [("Ti/16", 192, 12), ("S/16", 384, 12), ("B/16", 768, 12)])
def test_named_shapes_build_at_the_right_size(variant, width, depth):
    shape = vit.variant_shape(variant)
    assert (shape.width, shape.depth, shape.patch) == (width, depth, 16)
    tokens = jax.eval_shape(
        lambda: vit.ViT(variant, 224).init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, 224, 224, 3)))[0]
    )
    assert tokens.shape == (2, 1 + 14 * 14, width)


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown ViT variant 'X/16'"):
        vit.variant_shape("X/16")


def test_tiny_vit_returns_cls_and_patch_tokens():
    model = vit.ViT("tiny/8", 32)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 32, 32, 1))
    tokens, params = model.init_with_output(jax.random.PRNGKey(1), x)
    assert tokens.shape == (3, 17, 32) and np.isfinite(tokens).all()
    # the same parameters read a 64-px image as an 8×8 grid, position embeddings resampled
    big = model.apply(params, jax.random.normal(jax.random.PRNGKey(2), (3, 64, 64, 1)))
    assert big.shape == (3, 65, 32) and np.isfinite(big).all()


def test_resampled_position_embeddings_keep_cls_and_interpolate_the_grid():
    posemb = jnp.concatenate(
        [
            jnp.full((1, 1, 2), 7.0),
            jnp.stack(jnp.meshgrid(jnp.arange(4.0), jnp.arange(4.0), indexing="ij"), -1).reshape(1, 16, 2),
        ],
        axis=1,
    )
    out = vit.resample_posemb(posemb, (8, 8))
    assert out.shape == (1, 65, 2)
    np.testing.assert_array_equal(out[0, 0], [7.0, 7.0])
    rows = np.asarray(out[0, 1:, 0]).reshape(8, 8)
    assert (np.diff(rows[:, 0]) >= 0).all() and rows[0, 0] < rows[-1, 0]  # row coordinate still increases down
    assert vit.resample_posemb(posemb, (4, 4)) is posemb


@pytest.mark.parametrize("box_attention", [False, True])
def test_packed_actions_do_not_see_each_other(box_attention):
    head = ValueHead(bins=8, width=32, depth=2, heads=2, out_dim=16, box_attention=box_attention)
    memory = jax.random.normal(jax.random.PRNGKey(0), (2, 17, 24))
    actions = jnp.array([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 0.5, 0.5]]] * 2)
    params = head.init(jax.random.PRNGKey(1), actions, memory)
    out = head.apply(params, actions, memory)
    changed = head.apply(params, actions.at[:, 1].set(jnp.array([-1.0, 1.0, 2.0, 2.0])), memory)
    np.testing.assert_allclose(out[:, 0], changed[:, 0], atol=1e-6)  # action 0 unaffected by action 1
    assert not np.allclose(out[:, 1], changed[:, 1])  # but action 1's own output moves
    other_memory = head.apply(params, actions, memory.at[0].multiply(-1.0))
    assert not np.allclose(out[0], other_memory[0])  # it does read the source view


def test_patch_centres_are_the_cells_centres_in_row_major_order():
    from rlvis.models import value_head

    centres = value_head.patch_centres(16)
    assert centres.shape == (16, 2)
    np.testing.assert_allclose(
        np.asarray(centres)[[0, 1, 4, 5, 15]],
        [[0.125, 0.125], [0.125, 0.375], [0.375, 0.125], [0.375, 0.375], [0.875, 0.875]],
    )


def test_box_coverage_is_the_share_of_each_cell_inside_the_destination():
    from rlvis.models import value_head

    actions = jnp.array(
        [
            [0.0, 0.0, 0.5, 0.5],  # the top-left quadrant: four whole cells of a 4×4 grid
            [0.125, 0.5, 0.25, 0.125],  # half of cell (0, 2) and half of cell (1, 2) (rows × cols)
            [1.5, 0.0, 0.5, 0.5],
        ]
    )  # below the source view: no cell
    coverage = np.asarray(value_head.box_coverage(actions, 16)).reshape(3, 4, 4)
    expected = np.zeros((3, 4, 4))
    expected[0, :2, :2] = 1.0
    expected[1, 0, 2] = expected[1, 1, 2] = 0.25
    np.testing.assert_allclose(coverage, expected, atol=1e-6)
    prior = np.asarray(value_head.box_log_prior(actions, 17))
    np.testing.assert_allclose(prior[1, [0, 3, 7]], 0.0, atol=1e-6)  # the CLS token and the best-covered cells are open
    np.testing.assert_allclose(prior[2, 1:], np.log(0.01 / 1.01), rtol=1e-5)  # a miss closes every cell alike
    with pytest.raises(ValueError, match="whole square patch grid"):
        value_head.box_coverage(actions, 12)


def test_box_attention_reads_the_cells_under_the_destination():
    """With the prior's scale large, a move's output depends on the source tokens under its box (and CLS) only."""
    head = ValueHead(bins=8, width=32, depth=1, heads=2, out_dim=16, box_attention=True)
    memory = jax.random.normal(jax.random.PRNGKey(0), (1, 17, 24))
    actions = jnp.array([[[0.0, 0.0, 0.5, 0.5]]])  # cells 0, 1, 4, 5 of the 4×4 grid (tokens 1, 2, 5, 6)
    params = head.init(jax.random.PRNGKey(1), actions, memory)
    sharp = jax.tree_util.tree_map_with_path(
        lambda path, p: p * 100.0 if "box_scale" in jax.tree_util.keystr(path) else p, params
    )
    outside = memory.at[:, [3, 4, 7, 8, 9, 16]].multiply(-3.0)
    inside = memory.at[:, [1, 6]].multiply(-3.0)
    out = head.apply(sharp, actions, memory)
    np.testing.assert_allclose(head.apply(sharp, actions, outside), out, atol=1e-4)
    assert not np.allclose(head.apply(sharp, actions, inside), out, atol=1e-2)
    assert not np.allclose(head.apply(params, actions, outside), out, atol=1e-3)  # at scale 1 it still looks around


def test_ab_model_parts_have_consistent_shapes():
    config = demo.get_config("tiny")
    model = methods.build_model(config)
    images = jnp.zeros((4, 32, 32, 1))
    actions = jnp.tile(jnp.array([0.0, 0.0, 1.0, 1.0]), (4, 2, 1))
    params = model.init(jax.random.PRNGKey(0), images, actions)
    tokens = model.apply(params, images, method=ab_model.ABModel.encode)
    value = model.apply(params, tokens, actions, method=ab_model.ABModel.value_embed)
    embed = model.apply(params, tokens, method=ab_model.ABModel.ab_embed)
    assert value.shape == (4, 2, config.model.proj_dim) and embed.shape == (4, config.model.proj_dim)
    np.testing.assert_allclose(jnp.linalg.norm(value, axis=-1), 1.0, atol=1e-4)
    assert set(params["params"]) == {"encoder", "base_head", "ab_head", "value_head", "ab_log_scale"}


def test_remat_changes_memory_not_results_and_bf16_keeps_float32_parameters():
    from rlvis.models.vit import ViT

    images = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3), minval=-1, maxval=1)
    plain = ViT("tiny/8", 16)
    params = plain.init(jax.random.PRNGKey(1), images)

    def loss(model, p):
        return jnp.sum(model.apply(p, images) ** 2)

    for other in (ViT("tiny/8", 16, remat=True),):
        np.testing.assert_allclose(other.apply(params, images), plain.apply(params, images), rtol=1e-6)
        g1, g2 = jax.grad(lambda p: loss(plain, p))(params), jax.grad(lambda p: loss(other, p))(params)
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    mixed = ViT("tiny/8", 16, dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(mixed.init(jax.random.PRNGKey(1), images)))
    out = mixed.apply(params, images)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, plain.apply(params, images), atol=0.1)  # bf16 rounding, same function
    assert not np.allclose(out, plain.apply(params, images), atol=1e-6)  # and it really computed in bf16
