"""Active visual search (rlvis.search): move geometry, the policy's choices, and a search that finds a digit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from rlvis import search
from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env
from rlvis.methods import Annotations

NO_ANNOTATIONS = Annotations((), jnp.zeros((1, 1)), None, jnp.asarray(1.0))


def test_destinations_pan_by_box_fractions_zoom_about_the_centre_and_stay_inside():
    moves = jnp.asarray(search.move_grid(pans=(-0.5, 0.0, 0.5), zooms=(1.0, 0.5)))
    assert moves.shape == (18, 3)
    box = jnp.array([0.25, 0.25, 0.5, 0.5])
    out = np.asarray(crop_env.pan_zoom(box, moves, min_side=0.2))
    stay = out[4]  # zoom 1, (0, 0)
    np.testing.assert_allclose(stay, box)
    np.testing.assert_allclose(out[5], [0.25, 0.5, 0.5, 0.5])  # right by half a box side
    np.testing.assert_allclose(out[9 + 4], [0.375, 0.375, 0.25, 0.25])  # zoom 0.5 keeps the centre
    assert np.all(out[:, :2] >= 0) and np.all(out[:, :2] + out[:, 2:] <= 1 + 1e-6)
    corner = np.asarray(crop_env.pan_zoom(jnp.array([0.0, 0.0, 1.0, 1.0]), moves, min_side=0.6))
    np.testing.assert_allclose(corner[9:, 2:], 0.6)  # zoom 0.5 clipped to min_side
    np.testing.assert_allclose(corner[9], [0.0, 0.0, 0.6, 0.6])  # up-left from the full view: pushed inside


def test_greedy_policy_takes_the_best_action_of_a_hand_made_value_function():
    """Q(move) = closeness of the destination's centre to a goal: the greedy path must step to the best move each
    time, end on the goal, and report the chosen scores."""
    goal = jnp.array([0.8, 0.2])

    def closeness(params, annotations, image, valid, box, candidates, annotation):
        return jnp.exp(-10.0 * jnp.sum((candidates[:, :2] + candidates[:, 2:] / 2 - goal) ** 2, -1))

    config = demo.get_config("tiny")
    run = search.make_search(
        None, config, policy=closeness, steps=6, pans=(-0.25, 0.0, 0.25), zooms=(1.0, 0.7), min_side=0.25
    )
    result = jax.jit(run)(
        None,
        NO_ANNOTATIONS,
        jnp.zeros((8, 8, 1)),
        jnp.array([8, 8]),
        0,
        jax.random.PRNGKey(0),
        jnp.asarray(crop_env.FULL_BOX),
    )
    boxes, scores = np.asarray(result["boxes"]), np.asarray(result["scores"])
    moves = jnp.asarray(search.move_grid((-0.25, 0.0, 0.25), (1.0, 0.7)))
    for k in range(6):
        candidates = crop_env.pan_zoom(jnp.asarray(boxes[k]), moves, 0.25)
        values = np.asarray(closeness(None, None, None, None, None, candidates, 0))
        np.testing.assert_allclose(boxes[k + 1], np.asarray(candidates)[np.argmax(values)])
        np.testing.assert_allclose(scores[k], values.max(), rtol=1e-6)
    final_centre = boxes[-1, :2] + boxes[-1, 2:] / 2
    assert np.linalg.norm(final_centre - np.asarray(goal)) < 0.1


def test_softmax_policy_follows_the_values_at_low_temperature_and_spreads_at_high():
    scores = jnp.array([0.1, 0.7, 0.2])
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    cold = np.asarray(jax.vmap(lambda k: search.choose(scores, k, 0.05))(keys))
    hot = np.asarray(jax.vmap(lambda k: search.choose(scores, k, 100.0))(keys))
    assert int(search.choose(scores, keys[0], 0.0)) == 1
    assert (cold == 1).mean() > 0.99
    assert 0.2 < (hot == 0).mean() < 0.45 and 0.2 < (hot == 2).mean() < 0.45  # near uniform


def _one_digit_scene(seed: int) -> dict:
    splits = digits_lib.load_digits(10)
    return digits_lib.compose_scene(
        np.random.default_rng(seed),
        splits.probe_test_images,
        splits.probe_test_labels,
        canvas=64,
        min_size=56,
        digits_per_scene=(1, 1),
        digit_size=(16, 20),
    )


def test_search_on_a_scene_whose_only_digit_is_the_target_reaches_it_and_vmaps():
    """A value that sees the rendered view (ink in the view's centre, from crop_env.observe) drives the same
    search loop through the environment to the digit, for each image of a vmapped batch exactly as one by one."""

    def ink_in_the_middle(params, annotations, image, valid, box, candidates, annotation):
        views = jax.vmap(lambda b: crop_env.observe(image, valid, b, 16))(candidates)
        return (views[:, 4:12, 4:12].mean(axis=(1, 2, 3)) + 1.0) / 2.0

    scenes = [_one_digit_scene(seed) for seed in range(4)]
    run = search.make_search(None, demo.get_config("tiny"), policy=ink_in_the_middle, steps=6)
    batch = search.search_batch(run)
    images = jnp.asarray(np.stack([s["image"] for s in scenes]))
    valid = jnp.asarray(np.stack([s["valid"] for s in scenes]))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    starts = jnp.tile(jnp.asarray(crop_env.FULL_BOX), (4, 1))
    result = batch(None, NO_ANNOTATIONS, images, valid, jnp.zeros(4, jnp.int32), keys, starts)
    finals = np.asarray(result["boxes"][:, -1])
    targets = np.stack([s["boxes"][0] for s in scenes])
    assert search.centre_inside(finals, targets).all()
    assert not search.centre_inside(np.asarray(crop_env.FULL_BOX), targets).all()  # the full view was not enough
    single = run(None, NO_ANNOTATIONS, images[2], valid[2], 0, keys[2], starts[2])
    np.testing.assert_allclose(np.asarray(single["boxes"]), np.asarray(result["boxes"][2]), atol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, 0.05])
def test_random_policy_samples_moves_uniformly_whatever_the_temperature(temperature):
    run = search.make_search(
        None,
        demo.get_config("tiny"),
        policy="random",
        steps=1,
        pans=(-0.25, 0.0, 0.25),
        zooms=(1.0,),
        min_side=0.25,
        temperature=temperature,
    )
    start = jnp.array([0.25, 0.25, 0.5, 0.5])
    firsts = jax.vmap(
        lambda k: run(None, NO_ANNOTATIONS, jnp.zeros((8, 8, 1)), jnp.array([8, 8]), 0, k, start)["boxes"][1]
    )(jax.random.split(jax.random.PRNGKey(0), 900))
    distinct, counts = np.unique(np.round(np.asarray(firsts), 4), axis=0, return_counts=True)
    assert len(distinct) == 9 and counts.min() > 60


def test_success_criteria_and_unknown_policy():
    target = np.array([0.4, 0.4, 0.2, 0.2])
    assert search.centre_inside(np.array([0.3, 0.3, 0.4, 0.4]), target)
    assert not search.centre_inside(np.array([0.0, 0.0, 0.4, 0.4]), target)
    np.testing.assert_allclose(search.iou(target, target), 1.0)
    np.testing.assert_allclose(search.iou(np.array([0.4, 0.4, 0.2, 0.4]), target), 0.5)
    # Two scenes: a 7 and another 7 (reaching either counts), and a 7 whose only box is elsewhere than a 3.
    boxes = np.array([[[0.0, 0.0, 0.3, 0.3], [0.6, 0.6, 0.3, 0.3]], [[0.0, 0.0, 0.3, 0.3], [0.6, 0.6, 0.3, 0.3]]])
    labels = np.array([[7, 7], [7, 3]])
    final = np.array([[0.6, 0.6, 0.3, 0.3], [0.6, 0.6, 0.3, 0.3]])
    hit = search.found(final, boxes, labels, np.array([7, 7]))
    assert hit["centre"].tolist() == [True, False] and hit["iou50"].tolist() == [True, False]
    assert hit["any_digit"].tolist() == [True, True]  # the second final box is centred on the 3
    # a padding slot (label -1) is no digit, even where the final box is centred on its box
    padded = search.found(final, boxes, np.array([[7, -1], [7, 3]]), np.array([7, 7]))
    assert padded["any_digit"].tolist() == [False, True]
    with pytest.raises(ValueError, match="unknown policy"):
        search.make_search(None, demo.get_config("tiny"), policy="teleport")


def test_built_in_scorers_read_the_target_as_weights_over_the_vocabulary():
    """A class target scores a move by the mass on that class's annotations: the weighted sum of one-hot scores."""
    from rlvis import methods
    from rlvis.evaluators import foresight

    config = demo.get_config("tiny")
    model = methods.build_model(config)
    size = config.env.view_size
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)), jnp.zeros((1, config.env.views - 1, 4)))
    splits = digits_lib.load_digits(10)
    exemplars = np.stack(
        [
            digits_lib.centred_digit(splits.probe_test_images[splits.probe_test_labels == c][i])["image"]
            for c in range(10)
            for i in range(2)
        ]
    )  # class-major, 2 per class
    vocabulary, classes = foresight.digit_vocabulary(model, params, config, 1, exemplars)
    scene = _one_digit_scene(0)
    box = jnp.asarray(crop_env.FULL_BOX)
    candidates = crop_env.pan_zoom(box, jnp.asarray(search.move_grid(search.PANS, search.ZOOMS)), search.MIN_SIDE)
    for policy in ("value", "brute_force"):
        score = jax.jit(
            jax.vmap(
                functools.partial(
                    search._scorer(model, config, policy),
                    params,
                    vocabulary,
                    jnp.asarray(scene["image"]),
                    jnp.asarray(scene["valid"]),
                    box,
                    candidates,
                )
            )
        )  # over targets [T, V] → scores [T, A]
        per_annotation = np.asarray(score(jnp.eye(len(vocabulary.names)))).T  # [A, V]: one-hot targets
        np.testing.assert_allclose(per_annotation.sum(-1), 1.0, rtol=1e-4)  # a distribution over the vocabulary
        by_class = np.asarray(score(classes.T))  # [10, A]: the class targets
        np.testing.assert_allclose(by_class, (per_annotation @ np.asarray(classes)).T, rtol=1e-5, atol=1e-7)
