"""Probes on frozen features: a linear (softmax-regression) probe grid and DINO's weighted kNN.

Both are pure functions of feature arrays, so every evaluator (and the random-init baseline) shares them.
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


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, steps: int = 300, val_fraction: float = 0.2, seed: int = 0) -> float:
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


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    """DINO's weighted kNN: cosine similarity on l2-normalised features, votes weighted by exp(sim / T)."""
    def normalise(v):
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)

    sims = normalise(test_x) @ normalise(train_x).T  # [N_test, N_train]
    k = min(k, len(train_x))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    votes = np.zeros((len(test_x), num_classes))
    np.add.at(votes, (np.arange(len(test_x))[:, None], train_y[top]), np.exp(top_sims / temperature))
    return float(np.mean(votes.argmax(1) == test_y))
