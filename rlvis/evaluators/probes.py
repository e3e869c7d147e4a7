"""Probes on frozen features: linear (softmax-regression) probe grids, DINO's weighted kNN, big_vision's few-shot ridge.

All are pure functions of feature arrays, so every evaluator (and the random-init baseline) shares them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2)
LEARNING_RATE = 1e-2


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_grid(x: jax.Array, y: jax.Array, num_classes: int, steps: int) -> tuple[jax.Array, jax.Array]:
    """Full-batch Adam on softmax regression, one model per weight decay, trained together (vmapped)."""
    tx = optax.adam(LEARNING_RATE)
    decays = jnp.array(WEIGHT_DECAYS)

    def loss(params, decay):
        w, b = params
        logits = x @ w + b
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + decay * jnp.sum(w * w)

    def fit_one(decay):
        params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

        def body(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params, decay)
            updates, opt_state = tx.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
        return params

    return jax.vmap(fit_one)(decays)


def _accuracy(params: tuple[jax.Array, jax.Array], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    w, b = params  # [G, D, C], [G, C]
    logits = jnp.einsum("nd,gdc->gnc", x, w) + b[:, None]
    return np.asarray(jnp.mean(jnp.argmax(logits, -1) == y[None], axis=-1))


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    steps: int = 300,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> float:
    """Test accuracy of the weight decay that does best on a validation split carved from the train set.

    Features are standardised with train statistics; the chosen model is refit on the whole train set.
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    order = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, int(len(train_x) * val_fraction))
    val, fit = order[:n_val], order[n_val:]
    grid = _fit_grid(train_x[fit], train_y[fit], num_classes, steps)
    best = int(np.argmax(_accuracy(grid, train_x[val], train_y[val])))
    refit = _fit_grid(train_x, train_y, num_classes, steps)
    return float(_accuracy(refit, test_x, test_y)[best])


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """DINO's weighted kNN at a single k; a thin wrapper over `knn_scores` (one implementation)."""
    return knn_scores(train_x, train_y, test_x, test_y, num_classes, ks=(k,), temperature=temperature)[k]


def knn_scores(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    ks=(10, 20, 100, 200),
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """DINO's weighted kNN accuracy (facebookresearch/dino eval_knn.py) for every k in `ks` at once.

    Features are l2-normalised, similarity is cosine; each test row takes its top-k train neighbours and each
    neighbour votes for its label with weight exp(sim / T); the prediction is the class with the most weight.
    One similarity block per chunk of `chunk_size` test rows (memory stays O(chunk_size * N_train)) serves
    all k: neighbours are sorted once to max(k) and the votes accumulate k by k. A k larger than the train set
    is clipped to it; the result is keyed by the k asked for.
    """

    def normalise(v):
        v = np.asarray(v)
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)

    train_x, test_x = normalise(train_x), normalise(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"knn_scores: every k must be >= 1, got {ks}")
    clipped = sorted({min(k, len(train_x)) for k in ks})
    k_max = clipped[-1]
    correct = dict.fromkeys(clipped, 0)
    for start in range(0, len(test_x), chunk_size):
        sims = test_x[start : start + chunk_size] @ train_x.T  # [B, N_train]
        rows = np.arange(len(sims))[:, None]
        top = np.argpartition(-sims, k_max - 1, axis=1)[:, :k_max]
        top = np.take_along_axis(top, np.argsort(-sims[rows, top], axis=1, kind="stable"), axis=1)
        weights, labels = np.exp(sims[rows, top] / temperature), train_y[top]  # sorted by similarity
        votes = np.zeros((len(sims), num_classes))  # float64, as before
        done = 0
        for k in clipped:  # votes of neighbours done..k-1 added to those of the nearer ones
            np.add.at(votes, (rows, labels[:, done:k]), weights[:, done:k])
            done = k
            correct[k] += int(np.sum(votes.argmax(1) == test_y[start : start + chunk_size]))
    return {k: correct[min(k, len(train_x))] / len(test_x) for k in ks}


POOLINGS = ("cls", "mean", "both")


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_pooling_grid(
    x: jax.Array, y: jax.Array, masks: jax.Array, learning_rates: jax.Array, num_classes: int, steps: int
) -> tuple[jax.Array, jax.Array]:
    """Full-batch Adam on softmax regression, one model per (feature mask, learning rate), vmapped together.

    `x` is [N, 2D] = [cls | mean]; a pooling is a 0/1 mask over those columns applied to the weights, so masked
    rows get zero gradient and stay zero: the model is exactly softmax regression on the pooled features alone.
    """
    adam = optax.scale_by_adam()

    def loss(params, mask):
        w, b = params
        logits = x @ (w * mask[:, None]) + b
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def fit_one(mask, lr):
        params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

        def body(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params, mask)
            updates, opt_state = adam.update(grads, opt_state)
            updates = jax.tree.map(lambda u: -lr * u, updates)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(body, (params, adam.init(params)), None, length=steps)
        w, b = params
        return w * mask[:, None], b

    return jax.vmap(fit_one)(masks, learning_rates)


def cls_and_mean(tokens: np.ndarray) -> np.ndarray:
    """Tokens [N, T, D] (CLS first) → image features [N, 2D]: the CLS token and the mean patch token."""
    tokens = np.asarray(tokens, dtype=np.float32)
    return np.concatenate([tokens[:, 0], tokens[:, 1:].mean(1)], axis=1)


def linear_probe_grid(
    train_tokens: np.ndarray,
    train_y: np.ndarray,
    test_tokens: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    learning_rates=(1e-3, 3e-3, 1e-2, 3e-2),
    poolings=POOLINGS,
    steps: int = 300,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """dinov2-style linear-eval grid over (token pooling x learning rate), every classifier trained in one pass.

    Tokens are [N, T, D] with CLS first. Poolings: "cls" = token 0, "mean" = mean of tokens 1:, "both" = their
    concatenation (dinov2's avgpool option). Pooled features are standardised with statistics of the whole train
    set; every (pooling, lr) softmax-regression model is trained together (full-batch Adam, `steps` steps, no
    weight decay) on a fit split, and the best on a validation split carved from train (`val_fraction`,
    permutation by `seed`; ties go to the earlier pooling, then the smaller lr) is chosen. test_accuracy is
    that configuration refit on the full train set, as `linear_probe` does.

    Returns {"best": {"pooling", "learning_rate"}, "val_accuracy", "test_accuracy"}.
    """
    poolings, learning_rates = tuple(poolings), tuple(float(lr) for lr in learning_rates)
    if not poolings or not learning_rates or not set(poolings) <= set(POOLINGS):
        raise ValueError(f"linear_probe_grid: poolings must be a non-empty subset of {POOLINGS}, got {poolings}")
    if train_tokens.ndim != 3 or (train_tokens.shape[1] < 2 and set(poolings) - {"cls"}):
        raise ValueError(
            f"linear_probe_grid: need tokens [N, T, D] with T >= 2 for mean pooling, got {train_tokens.shape}"
        )

    train_x, test_x = cls_and_mean(train_tokens), cls_and_mean(test_tokens)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    d = train_tokens.shape[2]
    column_masks = {
        "cls": np.r_[np.ones(d), np.zeros(d)],
        "mean": np.r_[np.zeros(d), np.ones(d)],
        "both": np.ones(2 * d),
    }
    grid = [(p, lr) for p in poolings for lr in learning_rates]
    masks = np.stack([column_masks[p] for p, _ in grid]).astype(np.float32)
    lrs = np.array([lr for _, lr in grid], dtype=np.float32)

    order = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, int(len(train_x) * val_fraction))
    val, fit = order[:n_val], order[n_val:]
    models = _fit_pooling_grid(train_x[fit], train_y[fit], masks, lrs, num_classes, steps)
    val_acc = _accuracy(models, train_x[val], train_y[val])
    best = int(np.argmax(val_acc))
    refit = _fit_pooling_grid(train_x, train_y, masks[best : best + 1], lrs[best : best + 1], num_classes, steps)
    return {
        "best": {"pooling": grid[best][0], "learning_rate": grid[best][1]},
        "val_accuracy": float(val_acc[best]),
        "test_accuracy": float(_accuracy(refit, test_x, test_y)[0]),
    }


FEWSHOT_BIAS = 100.0  # big_vision's constant bias feature: large, so the bias is almost unregularised


def _ridge_fit(x: np.ndarray, y: np.ndarray, num_classes: int, l2_reg: float):
    """big_vision's least-squares fit: whiten with the sample's own statistics, append the constant bias feature,
    targets 2 * onehot - 1, W = (XᵀX + λI)⁻¹XᵀY, or the dual Xᵀ(XXᵀ + λI)⁻¹Y when N < D. Returns (mean, std, W)."""
    x = np.asarray(x, dtype=np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-5
    x = np.pad((x - mean) / std, ((0, 0), (0, 1)), constant_values=FEWSHOT_BIAS)
    y = 2.0 * np.eye(num_classes)[np.asarray(y)] - 1.0
    n, d = x.shape
    if n >= d:
        w = np.linalg.solve(x.T @ x + l2_reg * np.eye(d), x.T @ y)
    else:
        w = x.T @ np.linalg.solve(x @ x.T + l2_reg * np.eye(n), y)
    return mean, std, w


def _ridge_predict(fit, x: np.ndarray) -> np.ndarray:
    mean, std, w = fit
    x = np.pad((np.asarray(x, dtype=np.float64) - mean) / std, ((0, 0), (0, 1)), constant_values=FEWSHOT_BIAS)
    return np.argmax(x @ w, axis=1)


def fewshot_ridge(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    shots=(1, 5, 10, 25),
    l2_reg: float = 2.0**10,
    seed: int = 0,
) -> dict[int, float]:
    """big_vision's closed-form few-shot evaluator (big_vision/evaluators/fewshot_lsr.py), test accuracy per shot.

    Follows big_vision's code: one permutation of each class's train indices from default_rng(seed), the first
    `shots` of each taken (so smaller shot sets are nested in larger ones); features whitened with the mean and
    std (+1e-5) of that few-shot sample (big_vision standardises, it does not l2-normalise), a constant feature
    of 100 appended as a nearly unregularised bias, targets 2 * onehot - 1, ridge regression in closed form
    (primal when N >= D, dual otherwise; solved directly instead of big_vision's eigh cache, same solution),
    argmax prediction on the equally transformed test features.
    """
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    counts = np.bincount(train_y, minlength=num_classes)
    if shots and counts.min() < max(shots):
        c = int(np.argmin(counts))
        raise ValueError(f"fewshot_ridge: class {c} has {counts[c]} train examples, fewer than {max(shots)} shots")
    rng = np.random.default_rng(seed)
    class_indices = [rng.permutation(np.flatnonzero(train_y == c)) for c in range(num_classes)]
    results = {}
    for n_shots in shots:
        idx = np.concatenate([indices[:n_shots] for indices in class_indices])
        fit = _ridge_fit(np.asarray(train_x)[idx], train_y[idx], num_classes, l2_reg)
        results[n_shots] = float(np.mean(_ridge_predict(fit, test_x) == test_y))
    return results
