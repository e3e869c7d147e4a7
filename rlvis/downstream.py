"""Put a pre-trained encoder under a new classification head and fine-tune it: frozen (a linear probe trained
by SGD) or unfrozen (full fine-tuning, typically with a smaller learning rate for the encoder).

    module, variables = rlvis.export.load_encoder("runs/demo")         # the EMA encoder by default
    classifier, params, losses = finetune(module, variables, images, labels, num_classes=10, frozen=True)
    print(accuracy(classifier, params, test_images, test_labels))

Any Flax module that maps images [B, H, W, C] in [-1, 1] to tokens [B, T, D] with the CLS token first can be the
encoder; the head reads CLS and mean-pooled patch tokens, as the evaluation probes do (`probes.cls_and_mean`).
"""

from collections.abc import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class Classifier(nn.Module):
    """encoder → LayerNorm(CLS ‖ mean of patch tokens) → Dense(num_classes)."""

    encoder: nn.Module
    num_classes: int
    frozen: bool = False  # stop gradients at the features: the encoder is not differentiated at all

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        tokens = self.encoder(images)
        features = jnp.concatenate([tokens[:, 0], tokens[:, 1:].mean(axis=1)], axis=-1)
        if self.frozen:
            features = jax.lax.stop_gradient(features)
        features = nn.LayerNorm(name="head_norm")(features)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(features)


def to_model_input(images: np.ndarray) -> jax.Array:
    """uint8 images [..., H, W, C] → float32 in [-1, 1], the range every rlvis encoder is trained on."""
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def init_classifier(
    encoder: nn.Module,
    encoder_variables: dict,
    num_classes: int,
    sample: jax.Array,
    *,
    frozen: bool = False,
    seed: int = 0,
) -> tuple[Classifier, dict]:
    """A new head on the pre-trained encoder: fresh head parameters, the encoder's parameters as loaded."""
    classifier = Classifier(encoder, num_classes, frozen)
    params = classifier.init(jax.random.PRNGKey(seed), sample[:1])["params"]
    params = flax.core.unfreeze(params)
    params["encoder"] = encoder_variables["params"]
    return classifier, params


def _optimizer(
    params: dict, learning_rate: float, encoder_learning_rate: float | None, frozen: bool
) -> optax.GradientTransformation:
    """AdamW (weight decay 1e-4) on the head; on the encoder: nothing when frozen, else AdamW at
    `encoder_learning_rate` (None: the head's rate)."""
    if encoder_learning_rate is None:
        encoder_learning_rate = learning_rate
    encoder_rule = optax.set_to_zero() if frozen else optax.adamw(encoder_learning_rate, weight_decay=1e-4)
    labels = {name: "encoder" if name == "encoder" else "head" for name in params}
    return optax.multi_transform(
        {"head": optax.adamw(learning_rate, weight_decay=1e-4), "encoder": encoder_rule}, labels
    )


def finetune(
    encoder: nn.Module,
    encoder_variables: dict,
    images: jax.Array,
    labels: np.ndarray,
    *,
    num_classes: int,
    frozen: bool,
    steps: int = 200,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    encoder_learning_rate: float | None = 1e-4,
    seed: int = 0,
) -> tuple[Classifier, dict, list[float]]:
    """Train a classifier on (images in [-1, 1], integer labels) → (classifier, params, loss per step).

    frozen=True leaves the encoder's parameters bit-identical; frozen=False trains them too, at
    `encoder_learning_rate` (lower than the head's, as fine-tuning recipes do).
    """
    images, labels = jnp.asarray(images), jnp.asarray(labels, jnp.int32)
    classifier, params = init_classifier(encoder, encoder_variables, num_classes, images, frozen=frozen, seed=seed)
    optimizer = _optimizer(params, learning_rate, encoder_learning_rate, frozen)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, batch_images, batch_labels):
        def loss_fn(p):
            logits = classifier.apply({"params": p}, batch_images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch_labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        index = rng.choice(len(labels), size=min(batch_size, len(labels)), replace=False)
        params, opt_state, loss = train_step(params, opt_state, images[index], labels[index])
        losses.append(float(loss))
    return classifier, params, losses


def accuracy(
    classifier: Classifier, params: dict, images: jax.Array, labels: Sequence[int], batch_size: int = 256
) -> float:
    """Top-1 accuracy, evaluated in batches."""
    predict = jax.jit(lambda p, x: jnp.argmax(classifier.apply({"params": p}, x), axis=-1))
    predictions = np.concatenate(
        [
            np.asarray(predict(params, jnp.asarray(images[i : i + batch_size])))
            for i in range(0, len(images), batch_size)
        ]
    )
    return float(np.mean(predictions == np.asarray(labels)))
