"""SimCLR's photometric augmentations on device (dm-pix), as a pure function of (key, view).

Colour jitter (brightness, contrast, and for RGB saturation and hue) with probability `jitter_prob`, random
grayscale (RGB only), Gaussian blur (probability `blur`; σ in BYOL's 0.1–2 px at 224 px, scaled to the view) and
solarisation (probability `solarize`), and horizontal flip. Views arrive and leave in [-1, 1]; dm-pix works in [0, 1].
The paper keeps bootstrap views free of these (its Table 5: adding them costs 0.5 points); the
`ab.photometric_bootstrap` ablation turns them on there.
"""

import dm_pix as pix
import jax
import jax.numpy as jnp
import ml_collections

from rlvis.errors import ConfigError

COLOUR_ONLY = ("saturation", "hue", "grayscale")  # read for RGB views only: a grayscale run's config leaves them out


def default_settings() -> dict:
    """`config.augment`: SimCLR's colour jitter at demo strength; blur, solarisation and flip off."""
    return dict(
        jitter_prob=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,  # RGB only
        hue=0.1,  # RGB only
        grayscale=0.2,  # RGB only
        blur=0.0,  # Gaussian blur probability (SimCLR at 224 px: 0.5; DINO 1.0 / 0.1 and BYOL-style)
        solarize=0.0,  # solarisation probability (BYOL, DINO's second view: 0.2)
        flip=0.0,  # SimCLR uses 0.5; digits are not mirror-symmetric, so the demo does not flip
    )


def validate(augment: ml_collections.ConfigDict) -> None:
    for name in ("jitter_prob", "grayscale", "blur", "solarize", "flip"):
        if name in augment and not 0.0 <= augment[name] <= 1.0:
            raise ConfigError(f"config.augment.{name}={augment[name]} must be a probability")


def augment(key: jax.Array, view: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """view [S, S, C] in [-1, 1] → augmented view, same shape and range. `config` is `config.augment`."""
    # Six keys in this order: blur and solarisation use the two keys once unused, so runs without them keep
    # the augmentations they had.
    k_jitter, k_apply, k_blur, k_gray_apply, k_flip, k_solarize = jax.random.split(key, 6)
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
    if config.blur:
        x = _random_blur(k_blur, x, config.blur)
    if config.solarize:
        x = jnp.where(jax.random.uniform(k_solarize) < config.solarize, pix.solarize(x, 0.5), x)
    x = pix.random_flip_left_right(k_flip, x, probability=config.flip)
    return x * 2.0 - 1.0


def _random_blur(key: jax.Array, x: jax.Array, probability: float) -> jax.Array:
    """Gaussian blur with probability `probability`, σ uniform in [0.1, 2] px at 224 px (BYOL, DINO), scaled to
    the view's size, with a kernel a tenth of the view wide (odd, at least 3)."""
    size = x.shape[0]
    k_apply, k_sigma = jax.random.split(key)
    sigma = jax.random.uniform(k_sigma, minval=0.1, maxval=2.0) * size / 224
    kernel = max(3, size // 10 | 1)
    half = kernel // 2  # reflect at the border, as torchvision does: zero padding would darken a frame
    padded = jnp.pad(x, ((half, half), (half, half), (0, 0)), mode="reflect")
    blurred = pix.gaussian_blur(padded, sigma, kernel, padding="VALID")
    return jnp.where(jax.random.uniform(k_apply) < probability, blurred, x)


def augment_views(key: jax.Array, views: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """views [..., S, S, C]: an independent augmentation per view."""
    flat = views.reshape(-1, *views.shape[-3:])
    keys = jax.random.split(key, flat.shape[0])
    return jax.vmap(lambda k, v: augment(k, v, config))(keys, flat).reshape(views.shape)
