"""What several evaluators share: encoding whole images at a view size in batches, and the held-out digits."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env

EncodeFn = Callable[[object, jax.Array], jax.Array]  # (params, views [N, S, S, C]) → tokens [N, T, D]


def token_features(encode_fn: EncodeFn, view_size: int, channels: int) -> Callable:
    """A jitted (params, canvas images, valid) → encoder tokens of the whole image rendered at `view_size`.

    Grayscale inputs are tiled to the encoder's channels, so an RGB encoder can be probed on the digits too.
    """
    @jax.jit
    def features(params, images: jax.Array, valid: jax.Array) -> jax.Array:
        images = jnp.repeat(images, channels // images.shape[-1], axis=-1)
        full = jnp.asarray(crop_env.FULL_BOX)
        views = jax.vmap(lambda im, hw: crop_env.observe(im, hw, full, view_size))(images, valid)
        return encode_fn(params, views)
    return features


def encode_in_batches(features: Callable, params, images: np.ndarray, valid: np.ndarray,
                      batch_size: int = 250) -> np.ndarray:
    return np.concatenate([np.asarray(features(params, images[i:i + batch_size], valid[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def heldout_digits(splits: digits_lib.DigitSplits) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The probe splits as centred-digit canvases: split → (images, valid, labels)."""
    data = {}
    for split, images, labels in (("train", splits.probe_train_images, splits.probe_train_labels),
                                  ("test", splits.probe_test_images, splits.probe_test_labels)):
        canvases = [digits_lib.centred_digit(d) for d in images]
        data[split] = (np.stack([c["image"] for c in canvases]), np.stack([c["valid"] for c in canvases]), labels)
    return data
