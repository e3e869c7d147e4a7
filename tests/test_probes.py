import numpy as np

from rlvis.evaluators import demo_tasks, probes


def _blobs(n, d, classes, separation, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(classes, d)) * separation
    y = rng.integers(classes, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y.astype(np.int32)


def test_linear_probe_separates_separable_classes_and_not_noise():
    x, y = _blobs(600, 16, 5, 4.0, 0)
    tx, ty = _blobs(300, 16, 5, 4.0, 1)
    assert probes.linear_probe(x, y, tx, ty, 5, steps=200) > 0.95
    noise = probes.linear_probe(x, np.random.default_rng(2).integers(5, size=600), tx, ty, 5, steps=200)
    assert noise < 0.4  # random labels carry nothing to the test set (chance is 0.2)


def test_knn_finds_neighbours():
    x, y = _blobs(600, 16, 5, 4.0, 0)
    tx, ty = _blobs(300, 16, 5, 4.0, 1)
    assert probes.knn_accuracy(x, y, tx, ty, 5, k=10) > 0.95
    assert probes.knn_accuracy(x, np.zeros_like(y), tx, ty, 5, k=10) == np.mean(ty == 0)


def test_box_weights_select_the_patch_cells_under_the_box():
    w = demo_tasks.box_weights(np.array([[0.0, 0.5, 0.5, 0.5], [0.125, 0.125, 0.25, 0.25]]), grid=4)
    first = w[0].reshape(4, 4)
    np.testing.assert_allclose(first[:2, 2:], 0.25)  # top-right quadrant, equally
    assert first.sum() == 1.0 and first[2:].sum() == 0 and first[:, :2].sum() == 0
    second = w[1].reshape(4, 4)  # a box straddling four cells, a quarter in each
    np.testing.assert_allclose(second[:2, :2], 0.25)
