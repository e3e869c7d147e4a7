"""SimCLR's photometric augmentations on device (dm-pix), as a pure function of (key, view).

Colour jitter (brightness, contrast, and for RGB saturation and hue) with probability `jitter_prob`, random
grayscale (RGB only) and horizontal flip. Views arrive and leave in [-1, 1]; dm-pix works in [0, 1].
The paper keeps bootstrap views free of these (its Table 5: adding them costs 0.5 points); the
`ab.photometric_bootstrap` ablation turns them on there.
"""

import dm_pix as pix
import jax
import jax.numpy as jnp
import ml_collections


def augment(key: jax.Array, view: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """view [S, S, C] in [-1, 1] → augmented view, same shape and range. `config` is `config.augment`."""
    # Six keys, two unused: splitting fewer would change every run's augmentations.
    k_jitter, k_apply, _, k_gray_apply, k_flip, _ = jax.random.split(key, 6)
    x = (view + 1.0) / 2.0
    rgb = view.shape[-1] == 3

    def jitter(x):
        keys = jax.random.split(k_jitter, 4)
        x = pix.random_brightness(keys[0], x, config.brightness)
        x = pix.random_contrast(keys[1], x, 1 - config.contrast, 1 + config.contrast)
        if rgb:
            x = pix.random_saturation(keys[2], x, 1 - config.saturation, 1 + config.saturation)
            x = pix.random_hue(keys[3], x, config.hue)
        return jnp.clip(x, 0.0, 1.0)

    x = jnp.where(jax.random.uniform(k_apply) < config.jitter_prob, jitter(x), x)
    if rgb:
        gray = pix.rgb_to_grayscale(x, keep_dims=True) * jnp.ones_like(x)
        x = jnp.where(jax.random.uniform(k_gray_apply) < config.grayscale, gray, x)
    x = pix.random_flip_left_right(k_flip, x, probability=config.flip)
    return x * 2.0 - 1.0


def augment_views(key: jax.Array, views: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """views [..., S, S, C]: an independent augmentation per view."""
    flat = views.reshape(-1, *views.shape[-3:])
    keys = jax.random.split(key, flat.shape[0])
    return jax.vmap(lambda k, v: augment(k, v, config))(keys, flat).reshape(views.shape)
