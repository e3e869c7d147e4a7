"""The foresight evaluator: its scoring on hand-built predictors, and the evaluator end to end on a tiny model."""

import jax
import numpy as np

from configs import demo
from rlvis import methods
from rlvis.evaluators import foresight


def _pairs(num: int = 2000, seed: int = 0):
    """Random pairs: destination classes (1–2 of 10), and noisy base-model readings of source and destination."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((num, 10), bool)
    truth[np.arange(num), rng.integers(0, 10, num)] = True
    truth[np.arange(num), rng.integers(0, 10, num)] |= rng.random(num) < 0.3
    source_truth = np.where(rng.random((num, 1)) < 0.4, truth, rng.random((num, 10)) < 0.15)  # sources overlap
    read = lambda classes: classes * 1.0 + rng.random((num, 10)) * 1.2  # a noisy reader
    iou = rng.random(num) * (rng.random(num) < 0.8)  # a fifth of the pairs do not overlap
    return truth, read(source_truth), read(truth), iou, rng.random(num), rng.random(num)


def test_a_value_that_reads_the_destination_scores_as_brute_force_and_one_that_ignores_the_move_as_invariance():
    truth, source, destination, iou, contained, covered = _pairs()
    reads_destination = foresight.foresight_scores(
        destination + 1e-3, source, destination, truth, iou, contained, covered=covered
    )
    ignores_move = foresight.foresight_scores(source * 2.0, source, destination, truth, iou, contained, covered=covered)
    for bucket in foresight.BUCKETS:
        assert reads_destination[f"foresight/value/{bucket}"] == reads_destination[f"foresight/brute_force/{bucket}"]
        assert ignores_move[f"foresight/value/{bucket}"] == ignores_move[f"foresight/invariance/{bucket}"]
    with_crop = foresight.foresight_scores(source, source, destination, truth, iou, contained, destination)
    assert with_crop["foresight/source_crop/all"] == with_crop["foresight/brute_force/all"]
    assert not any("source_crop" in key for key in reads_destination)  # not given: not scored
    # the head's answer for another move, scored against this destination: equal to value when it ignores moves
    shuffled = foresight.foresight_scores(
        destination, source, destination, truth, iou, contained, other_move=np.roll(destination, 1, axis=0)
    )
    assert shuffled["foresight/other_move/all"] < shuffled["foresight/value/all"] - 0.2
    same = foresight.foresight_scores(source, source, destination, truth, iou, contained, other_move=source)
    assert same["foresight/other_move/all"] == same["foresight/value/all"]
    scores = reads_destination
    assert scores["foresight/brute_force/all"] > scores["foresight/invariance/all"] > scores["foresight/chance/all"]
    np.testing.assert_allclose(scores["foresight/chance/all"], truth.sum(-1).mean() / 10, rtol=1e-6)


def test_buckets_select_pairs_by_overlap_and_leave_out_empty_destinations():
    truth = np.eye(10, dtype=bool)[[1, 2, 3, 4]]
    truth[3] = False  # a destination with no digit: left out everywhere
    value = np.eye(10)[[1, 0, 3, 4]]  # right, wrong, right, (left out)
    iou, contained = np.array([0.0, 0.1, 0.7, 0.0]), np.array([0.0, 0.95, 1.0, 0.0])
    scores = foresight.foresight_scores(value, value, value, truth, iou, contained)
    assert "foresight/value/zoom_out" not in scores  # no `covered` given: no zoom-out bucket
    assert scores["foresight/value/all"] == 2 / 3
    assert scores["foresight/value/iou_0"] == 1.0 and scores["foresight/value/iou_0-0.2"] == 0.0
    assert scores["foresight/value/iou_0.5-1"] == 1.0 and "foresight/value/iou_0.2-0.5" not in scores  # no pair
    assert scores["foresight/value/zoom_in"] == 0.5  # the two pairs at least 90 % inside their source
    # the buckets read only the numbers given: pair 0 (right) is the one zoom-out; pairs 1 and 2 are zoom-ins
    # even though their sources are inside their destinations too; pair 3 has no digit
    covered = np.array([0.95, 1.0, 1.0, 1.0])
    scores = foresight.foresight_scores(value, value, value, truth, iou, contained, covered=covered)
    assert scores["foresight/value/zoom_out"] == 1.0 and scores["foresight/chance/zoom_out"] == 0.1


def test_pair_geometry_measures_each_box_inside_the_other():
    boxes = np.float32([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]])  # a quarter view and the whole image
    geometry = foresight.pair_geometry(boxes)  # pairs (0 → 1) and (1 → 0)
    np.testing.assert_allclose(geometry["iou"].ravel(), [0.25, 0.25])
    np.testing.assert_allclose(geometry["contained"].ravel(), [0.25, 1.0])  # zoom-out, then zoom-in
    np.testing.assert_allclose(geometry["covered"].ravel(), [1.0, 0.25])


def test_other_move_gives_each_destination_another_destination_of_the_same_source():
    q = np.arange(2 * 3 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 1)  # [S, n, n-1, C]: 3 views, 2 moves each
    other = np.asarray(foresight.other_move_scores(q))
    np.testing.assert_array_equal(other[:, :, 0], q[:, :, 1])
    np.testing.assert_array_equal(other[:, :, 1], q[:, :, 0])


def test_source_crop_boxes_cut_the_destinations_part_of_the_source_and_fall_back_to_the_whole_view():
    actions = np.float32(
        [
            [0.25, 0.5, 0.25, 0.25],  # a zoom-in: the destination is its own crop
            [0.5, -0.5, 1.0, 1.0],  # half out on two sides: the overlapping quarter
            [2.0, 0.0, 0.5, 0.5],
        ]
    )  # no overlap: the whole source view
    np.testing.assert_allclose(
        foresight.source_crop_boxes(actions), [[0.25, 0.5, 0.25, 0.25], [0.5, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]
    )


def test_digits_in_views_need_half_their_box_inside():
    views = np.array([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]], np.float32)
    digit_boxes = np.array(
        [[[0.1, 0.1, 0.2, 0.2], [0.4, 0.4, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0, 0, 0, 0]]], np.float32
    )
    labels = np.array([[3, 5, 7, -1]])
    present = foresight.digits_in_views(views, digit_boxes, labels)
    assert set(np.flatnonzero(present[0, 0])) == {3}  # the 5 is a quarter inside, the 7 outside
    assert set(np.flatnonzero(present[0, 1])) == {3, 5, 7}


def test_the_evaluator_scores_every_predictor_and_bucket_on_a_tiny_model(tmp_path):
    config = demo.get_config("tiny")
    config.eval.foresight_scenes = 30
    model = methods.build_model(config)
    params = model.init(
        jax.random.PRNGKey(0),
        np.zeros((1, 32, 32, 1), np.float32),
        np.tile(np.float32([0, 0, 1, 1]), (1, config.env.views - 1, 1)),
    )
    evaluator = foresight.Evaluator(None, config, channels=1)
    scores = dict(evaluator.run(params))
    assert list(scores) == list(evaluator.tasks) and len(scores) == len(foresight.PREDICTORS) * len(foresight.BUCKETS)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert 0.0 < scores["foresight/chance/all"] < 0.5
    assert scores == dict(evaluator.run(params))  # fixed scenes and views: the same checkpoint, the same numbers
    path = foresight.plot(scores, str(tmp_path / "foresight.png"))
    assert (tmp_path / "foresight.png").stat().st_size > 1000 and path.endswith(".png")
