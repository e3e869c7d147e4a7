"""knn_scores, linear_probe_grid and fewshot_ridge on tiny synthetic features, checked against references."""

import numpy as np
import pytest

from rlvis.evaluators import probes


def _blobs(n, d, classes, separation, seed, centre_seed=99):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(centre_seed).normal(size=(classes, d)) * separation
    y = rng.integers(classes, size=n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y.astype(np.int32)


# ---------------------------------------------------------------- kNN


def _knn_reference(train_x, train_y, test_x, test_y, num_classes, k, temperature):
    """One test example at a time, exactly as written in DINO's eval_knn.py."""
    train = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    correct = 0
    for x, y in zip(test_x, test_y):
        sims = train @ (x / np.linalg.norm(x))
        nearest = np.argsort(-sims)[:k]
        votes = np.zeros(num_classes)
        for j in nearest:
            votes[train_y[j]] += np.exp(sims[j] / temperature)
        correct += int(np.argmax(votes) == y)
    return correct / len(test_y)


def test_knn_scores_match_a_per_example_reference_for_every_k():
    rng = np.random.default_rng(0)
    train_x, test_x = rng.normal(size=(120, 6)), rng.normal(size=(37, 6))
    train_y, test_y = rng.integers(4, size=120), rng.integers(4, size=37)
    ks = (1, 3, 10, 50, 500)  # 500 > train set: clipped to 120
    for temperature in (0.07, 0.5):
        got = probes.knn_scores(
            train_x, train_y, test_x, test_y, 4, ks=ks, temperature=temperature, chunk_size=8
        )  # several chunks, the last one partial
        assert set(got) == set(ks)
        for k in ks:
            want = _knn_reference(train_x, train_y, test_x, test_y, 4, min(k, 120), temperature)
            assert got[k] == pytest.approx(want), (k, temperature)
    # the chunk size changes nothing, and the single-k wrapper is the same computation
    whole = probes.knn_scores(train_x, train_y, test_x, test_y, 4, ks=ks, chunk_size=1024)
    assert whole == probes.knn_scores(train_x, train_y, test_x, test_y, 4, ks=ks, chunk_size=8)
    assert probes.knn_accuracy(train_x, train_y, test_x, test_y, 4, k=10) == whole[10]


def test_knn_scores_clusters_near_perfect_random_labels_near_chance():
    x, y = _blobs(600, 16, 5, 4.0, 0)
    tx, ty = _blobs(300, 16, 5, 4.0, 1)
    assert min(probes.knn_scores(x, y, tx, ty, 5, ks=(10, 20, 100)).values()) > 0.95
    shuffled = np.random.default_rng(3).integers(5, size=600)
    assert max(probes.knn_scores(x, shuffled, tx, ty, 5, ks=(10, 20, 100)).values()) < 0.35  # chance 0.2


# ---------------------------------------------------------------- linear grid


def _tokens(n, signal_in, seed, classes=4, t=5, d=8):
    """CLS + 4 patch tokens; the class is in the CLS token only, or only in the patches' mean."""
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    centres = np.random.default_rng(7).normal(size=(classes, d)) * 3.0
    tokens = rng.normal(size=(n, t, d))
    if signal_in == "cls":
        tokens[:, 0] += centres[y]
    else:
        tokens[:, 1:] += centres[y][:, None]
    return tokens.astype(np.float32), y.astype(np.int32)


@pytest.mark.parametrize("signal_in,allowed", [("cls", {"cls", "both"}), ("mean", {"mean", "both"})])
def test_linear_grid_separates_and_picks_a_pooling_with_the_signal(signal_in, allowed):
    tr, tr_y = _tokens(400, signal_in, 0)
    te, te_y = _tokens(200, signal_in, 1)
    out = probes.linear_probe_grid(tr, tr_y, te, te_y, 4, steps=150)
    assert set(out) == {"best", "val_accuracy", "test_accuracy"}
    assert set(out["best"]) == {"pooling", "learning_rate"}
    assert out["best"]["learning_rate"] in (1e-3, 3e-3, 1e-2, 3e-2)
    assert isinstance(out["val_accuracy"], float) and isinstance(out["test_accuracy"], float)
    assert out["best"]["pooling"] in allowed
    assert out["val_accuracy"] > 0.95 and out["test_accuracy"] > 0.95
    # with only the pooling that lacks the signal the probe is near chance (0.25): the pooling really selects
    other = ({"cls", "mean"} - allowed).pop()
    blind = probes.linear_probe_grid(tr, tr_y, te, te_y, 4, poolings=(other,), steps=150)
    assert blind["best"]["pooling"] == other and blind["test_accuracy"] < 0.45


def test_grid_models_equal_plain_adam_on_the_pooled_columns_alone():
    """A pooling mask must be the same as training on just those columns, each model with its own lr."""
    import jax
    import optax

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 6)).astype(np.float32), rng.integers(3, size=60)
    cls_mask, mean_mask = np.r_[np.ones(3), np.zeros(3)], np.r_[np.zeros(3), np.ones(3)]
    masks = np.stack([cls_mask, mean_mask]).astype(np.float32)
    w, b = probes._fit_pooling_grid(x, y, masks, np.array([3e-2, 1e-2], np.float32), 3, 25)

    def plain_adam(features, lr):
        tx, params = optax.adam(lr), (np.zeros((features.shape[1], 3), np.float32), np.zeros(3, np.float32))
        state = tx.init(params)
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(features @ p[0] + p[1], y).mean()

        @jax.jit
        def step(params, state):
            updates, state = tx.update(jax.grad(loss)(params), state)
            return optax.apply_updates(params, updates), state

        for _ in range(25):
            params, state = step(params, state)
        return params

    for g, (cols, lr) in enumerate([(slice(0, 3), 3e-2), (slice(3, 6), 1e-2)]):
        ref_w, ref_b = plain_adam(x[:, cols], lr)
        np.testing.assert_allclose(w[g][cols], ref_w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b[g], ref_b, rtol=1e-4, atol=1e-5)
        assert not np.any(np.delete(np.asarray(w[g]), np.arange(6)[cols], axis=0))  # other columns unused


def test_linear_grid_random_labels_near_chance_and_bad_arguments():
    tr, _ = _tokens(400, "cls", 0)
    te, te_y = _tokens(200, "cls", 1)
    noise = np.random.default_rng(5).integers(4, size=400)
    out = probes.linear_probe_grid(tr, noise, te, te_y, 4, learning_rates=(1e-2,), steps=150)
    assert out["test_accuracy"] < 0.45  # chance is 0.25
    with pytest.raises(ValueError):
        probes.linear_probe_grid(tr, noise, te, te_y, 4, poolings=("max",))
    with pytest.raises(ValueError):
        probes.linear_probe_grid(tr[:, :1], noise, te[:, :1], te_y, 4, poolings=("mean",))


# ---------------------------------------------------------------- few-shot ridge


def test_fewshot_ridge_clusters_and_more_shots_never_hurt():
    x, y = _blobs(1000, 32, 10, 2.0, 0)
    tx, ty = _blobs(500, 32, 10, 2.0, 1)
    acc = probes.fewshot_ridge(x, y, tx, ty, 10, shots=(1, 5, 10, 25))
    assert list(acc) == [1, 5, 10, 25]
    assert acc[5] > 0.97
    assert acc == probes.fewshot_ridge(x, y, tx, ty, 10, shots=(1, 5, 10, 25))  # deterministic by seed
    # closer clusters (1-shot well below 100 %): every extra shot helps, for several sampling seeds
    x, y = _blobs(1000, 32, 10, 0.7, 0)
    tx, ty = _blobs(500, 32, 10, 0.7, 1)
    for seed in range(3):
        acc = list(probes.fewshot_ridge(x, y, tx, ty, 10, shots=(1, 5, 10, 25), seed=seed).values())
        assert all(a <= b for a, b in zip(acc, acc[1:])) and acc[-1] > acc[0] + 0.2, (seed, acc)


@pytest.mark.parametrize("n_per_class,dim", [(6, 4), (2, 9)])  # primal (N >= D) and dual (N < D) branch
def test_fewshot_ridge_closed_form_matches_lstsq(n_per_class, dim):
    rng = np.random.default_rng(1)
    classes, l2 = 3, 5.0
    x = rng.normal(size=(classes * n_per_class, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    mean, std, w = probes._ridge_fit(x, y, classes, l2)
    # reference: ridge = least squares on the system augmented with sqrt(l2) * I
    xb = np.pad((x - x.mean(0)) / (x.std(0) + 1e-5), ((0, 0), (0, 1)), constant_values=100.0)
    targets = np.where(y[:, None] == np.arange(classes), 1.0, -1.0)
    aug_x = np.vstack([xb, np.sqrt(l2) * np.eye(dim + 1)])
    aug_y = np.vstack([targets, np.zeros((dim + 1, classes))])
    np.testing.assert_allclose(w, np.linalg.lstsq(aug_x, aug_y, rcond=None)[0], rtol=1e-6, atol=1e-9)
    # end to end: the train set holds exactly n_per_class per class, so the sample is all of it
    tx, ty = rng.normal(size=(50, dim)), rng.integers(classes, size=50)
    txb = np.pad((tx - x.mean(0)) / (x.std(0) + 1e-5), ((0, 0), (0, 1)), constant_values=100.0)
    want = np.mean(np.argmax(txb @ np.linalg.solve(xb.T @ xb + l2 * np.eye(dim + 1), xb.T @ targets), 1) == ty)
    got = probes.fewshot_ridge(x, y, tx, ty, classes, shots=(n_per_class,), l2_reg=l2)
    assert got[n_per_class] == pytest.approx(want)


def test_fewshot_ridge_rejects_too_few_examples():
    x = np.zeros((7, 3))
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="class 1 has 3 train examples, fewer than 4 shots"):
        probes.fewshot_ridge(x, y, x, y, 2, shots=(1, 4))
