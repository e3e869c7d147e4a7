import numpy as np

from rlvis.data import digits


def test_splits_are_disjoint_real_digits_balanced_by_class():
    splits = digits.load_digits(heldout_per_class=100)
    assert splits.pretrain_images.shape == (4000, 28, 28)
    assert splits.probe_train_images.shape == (500, 28, 28) and splits.probe_test_images.shape == (500, 28, 28)
    np.testing.assert_array_equal(np.bincount(splits.probe_test_labels), [50] * 10)
    flat = [
        s.reshape(len(s), -1) for s in (splits.pretrain_images, splits.probe_train_images, splits.probe_test_images)
    ]
    seen = {row.tobytes() for row in flat[0]}
    assert not any(row.tobytes() in seen for row in np.concatenate(flat[1:]))
    assert splits.pretrain_images.max() == 255 and splits.pretrain_images.mean() > 10  # not blank


def test_probe_train_and_probe_test_are_disjoint_and_held_out_sets_nest():
    splits = digits.load_digits(100)
    train = {d.tobytes() for d in splits.probe_train_images}
    assert not any(d.tobytes() in train for d in splits.probe_test_images)
    # a larger held-out set only moves digits out of pre-training, never the other way
    larger = digits.load_digits(200)
    pretrain_larger = {d.tobytes() for d in larger.pretrain_images}
    assert pretrain_larger <= {d.tobytes() for d in splits.pretrain_images}


def test_scene_is_deterministic_and_its_boxes_hold_the_digits():
    splits = digits.load_digits(100)
    kwargs = dict(canvas=64, min_size=40, digits_per_scene=(1, 4), digit_size=(16, 28))
    scene = digits.compose_scene(np.random.default_rng(7), splits.pretrain_images, splits.pretrain_labels, **kwargs)
    again = digits.compose_scene(np.random.default_rng(7), splits.pretrain_images, splits.pretrain_labels, **kwargs)
    np.testing.assert_array_equal(scene["image"], again["image"])
    h, w = scene["valid"]
    assert 40 <= h <= 64 and 40 <= w <= 64
    image = scene["image"][..., 0]
    assert image[h:].max() == 0 and image[:, w:].max() == 0  # padding outside the valid region
    count = int(scene["count"])
    assert 1 <= count <= 4 and (scene["labels"][:count] >= 0).all() and (scene["labels"][count:] == -1).all()
    inside = np.zeros_like(image, bool)
    for y0, x0, bh, bw in scene["boxes"][:count]:
        y, x = int(round(y0 * h)), int(round(x0 * w))
        patch = image[y : y + int(round(bh * h)), x : x + int(round(bw * w))]
        assert patch.max() > 100  # a digit is there
        inside[y : y + int(round(bh * h)), x : x + int(round(bw * w))] = True
    assert image[~inside].max() == 0  # and nothing outside the boxes


def test_scenes_vary_in_count():
    splits = digits.load_digits(100)
    rng = np.random.default_rng(0)
    counts = [
        digits.compose_scene(
            rng,
            splits.pretrain_images,
            splits.pretrain_labels,
            canvas=64,
            min_size=40,
            digits_per_scene=(1, 4),
            digit_size=(16, 28),
        )["count"]
        for _ in range(200)
    ]
    assert set(counts) == {1, 2, 3, 4}
