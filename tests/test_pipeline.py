import grain
import numpy as np
import pytest

from configs import demo
from rlvis.data import digits, pipeline
from rlvis.objectives import rewards


def _streams(process_index=0, process_count=1):
    config = demo.get_config("tiny")
    return config, pipeline.training_streams(config, process_index, process_count)


def test_batches_have_fixed_canvas_and_valid_sizes():
    config, streams = _streams()
    it = iter(streams["bootstrap"])
    batch = next(it)
    assert batch["image"].shape == (config.batch.bootstrap, 64, 64, 1) and batch["image"].dtype == np.uint8
    assert batch["valid"].shape == (config.batch.bootstrap, 2)
    assert (batch["valid"] >= config.data.scene_min_size).all() and (batch["valid"] <= 64).all()
    ann = next(iter(streams["annotation"]))
    assert ann["image"].shape == (config.batch.annotation, 32, 32, 1)


def _global_batches(config, chain: list[tuple[int, int]], stream: str = "bootstrap") -> list[np.ndarray]:
    """Global batches of `stream` read by a run that changes its process count: `chain` is (process count, steps)
    per leg; each leg starts from the position where the previous one stopped, and a global batch is the
    concatenation of its processes' batches in process order."""
    batches, position = [], {stream: 0}
    for process_count, steps in chain:
        iterators = [
            iter(pipeline.training_streams(config, index, process_count, position)[stream])
            for index in range(process_count)
        ]
        for _ in range(steps):
            batches.append(np.concatenate([next(it)["image"] for it in iterators]))
            position = pipeline.advance(position, config)
    return batches


def test_a_run_resumed_on_another_process_count_reads_the_uninterrupted_global_batches():
    config = demo.get_config("tiny")
    want = _global_batches(config, [(1, 8)])
    got = _global_batches(config, [(2, 2), (1, 2), (4, 2), (2, 2)])
    for step, (a, b) in enumerate(zip(want, got, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
    assert len({batch.tobytes() for batch in want}) == len(want)  # the batches do differ from step to step


def test_process_shares_cover_an_epoch_once_across_process_count_changes():
    """On indices alone: an epoch of 24 shuffled indices in global batches of 4, read by 2, then 1, then 4, then 2
    processes, is every index exactly once — nothing read twice, nothing skipped."""
    order = grain.MapDataset.range(24).seed(0).shuffle().repeat()
    read, start = [], 0
    for process_count, steps in [(2, 1), (1, 2), (4, 2), (2, 1)]:
        shares = [pipeline.ProcessBatches(order, start, 4, index, process_count) for index in range(process_count)]
        read += [order[k] for step in range(steps) for share in shares for k in share.element_indices(step)]
        start += 4 * steps
    assert sorted(read) == list(range(24)) and read != list(range(24))
    with pytest.raises(ValueError, match="cannot be split over 3 processes"):
        pipeline.ProcessBatches(order, 0, 4, 0, 3)


def test_processes_read_disjoint_blocks_of_half_the_batch():
    config, first = _streams(0, 2)
    _, second = _streams(1, 2)
    a = next(iter(first["annotation"]))["image"]
    b = next(iter(second["annotation"]))["image"]
    assert len(a) == config.batch.annotation // 2
    assert not {x.tobytes() for x in a} & {x.tobytes() for x in b}


def test_training_streams_only_read_pretraining_digits():
    config, streams = _streams()
    splits = digits.load_digits(config.eval.digits_per_class)
    pretrain = {digits.centred_digit(d)["image"].tobytes() for d in splits.pretrain_images}
    held_out = {
        digits.centred_digit(d)["image"].tobytes()
        for d in np.concatenate([splits.probe_train_images, splits.probe_test_images])
    }
    it = iter(streams["annotation"])
    seen = [image.tobytes() for _ in range(20) for image in next(it)["image"]]
    assert all(s in pretrain for s in seen) and not any(s in held_out for s in seen)


def test_scenes_are_composed_from_pretraining_digits_only():
    config = demo.get_config("tiny")
    config.data.digits_per_scene, config.data.digit_size = (1, 1), (28, 28)  # one digit, pasted unscaled
    splits = digits.load_digits(config.eval.digits_per_class)
    scenes = pipeline.training_streams(config, 0, 1)["bootstrap"]

    def tight(image):
        rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
        return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].tobytes()

    pretrain = {tight(d) for d in splits.pretrain_images}
    held_out = {tight(d) for d in np.concatenate([splits.probe_train_images, splits.probe_test_images])}
    found = [tight(image[..., 0]) for image in next(iter(scenes))["image"]]
    assert all(f in pretrain for f in found) and not any(f in held_out for f in found)


def test_annotation_scene_fraction_mixes_scenes_with_digits_on_one_canvas():
    config = demo.get_config("tiny")
    config.batch.annotation = 64
    for fraction, expected in ((1.0, 64), (0.5, None)):
        config.data.annotation_scene_fraction = fraction
        batch = next(iter(pipeline.training_streams(config, 0, 1)["annotation"]))
        assert batch["image"].shape == (64, 64, 64, 1)
        digits_only = (batch["valid"] == 32).all(-1)  # a centred digit: a 32 × 32 valid region, top-left
        scenes = (~digits_only).sum()
        assert scenes == expected if expected else 16 < scenes < 48
        assert (batch["image"][digits_only, 32:] == 0).all() and (batch["image"][digits_only, :, 32:] == 0).all()


def test_the_demo_streams_always_carry_their_ground_truth():
    """Each centred digit its class, each scene its digits' boxes and classes, whatever the reward: the diagnostic
    rewards (rlvis/objectives/rewards.py) read them; a scene or a digit mixed into the annotation stream has none."""
    config, streams = _streams()
    assert config.ab.reward == "base"
    annotation, scenes = next(iter(streams["annotation"])), next(iter(streams["bootstrap"]))
    splits = digits.load_digits(config.eval.digits_per_class)
    by_image = {
        digits.centred_digit(d)["image"].tobytes(): label
        for d, label in zip(splits.pretrain_images, splits.pretrain_labels)
    }
    assert [by_image[image.tobytes()] for image in annotation["image"]] == list(annotation["label"])
    assert scenes["digit_boxes"].shape == (config.batch.bootstrap, digits.MAX_DIGITS, 4)
    present = scenes["digit_labels"] >= 0
    assert (present.sum(1) >= config.data.digits_per_scene[0]).all()
    assert (present.sum(1) <= config.data.digits_per_scene[1]).all()
    for image, valid, boxes, keep in zip(scenes["image"], scenes["valid"], scenes["digit_boxes"], present):
        for y0, x0, h, w in boxes[keep] * np.tile(valid, 2):  # each box (valid-region fractions) holds ink
            assert image[int(round(y0)) : int(round(y0 + h)), int(round(x0)) : int(round(x0 + w))].any()
    truth = rewards.ground_truth({"annotation": annotation, "bootstrap": scenes})  # as the trainer hands it on
    assert set(truth) == set(rewards.GROUND_TRUTH)
    np.testing.assert_array_equal(truth["annotation_labels"], annotation["label"])
    np.testing.assert_array_equal(truth["digit_labels"], scenes["digit_labels"])
    # A base method reads the annotation stream alone, and still gets its labels.
    simclr = demo.get_config("tiny,method=simclr")
    assert set(pipeline.training_streams(simclr, 0, 1)) == {"annotation"}
    assert "label" in next(iter(pipeline.training_streams(simclr, 0, 1)["annotation"]))
    # Streams without one class per image carry none: captioned scenes, and the digit-or-scene mixture.
    for method, fraction in (("ab_clip", None), ("ab_simclr", 0.5)):
        mixed = demo.get_config(f"tiny,method={method}")
        if fraction is not None:
            mixed.data.annotation_scene_fraction = fraction
        batch = next(iter(pipeline.training_streams(mixed, 0, 1)["annotation"]))
        assert not {"label", "digit_boxes", "digit_labels"} & set(batch), method
        assert "annotation_labels" not in rewards.ground_truth({"annotation": batch})
