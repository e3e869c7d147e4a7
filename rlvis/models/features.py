"""Encoder tokens of whole images: what the evaluators, the methods' vocabularies and the tools all read."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

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
