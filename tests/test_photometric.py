import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import demo
from rlvis.envs import photometric


def _config(**overrides):
    c = ml_collections.ConfigDict(photometric.default_settings())  # with the colour-only fields, for RGB views
    c.update(overrides)
    return c


def _image(channels):
    return jax.random.uniform(jax.random.PRNGKey(0), (16, 16, channels), minval=-0.8, maxval=0.8)


def test_no_probability_means_identity():
    cfg = _config(jitter_prob=0.0, grayscale=0.0, flip=0.0)
    for channels in (1, 3):
        image = _image(channels)
        np.testing.assert_allclose(photometric.augment(jax.random.PRNGKey(1), image, cfg), image, atol=1e-6)


def test_certain_flip_mirrors_and_certain_grayscale_equalises_channels():
    image = _image(3)
    flipped = photometric.augment(jax.random.PRNGKey(1), image, _config(jitter_prob=0.0, grayscale=0.0, flip=1.0))
    np.testing.assert_allclose(flipped, image[:, ::-1], atol=1e-6)
    gray = photometric.augment(jax.random.PRNGKey(1), image, _config(jitter_prob=0.0, grayscale=1.0, flip=0.0))
    np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-6)
    assert np.abs(np.asarray(gray) - np.asarray(image)).max() > 0.05


def test_jitter_changes_values_but_keeps_the_range_and_is_per_view():
    views = jnp.stack([_image(3)] * 8)
    out = photometric.augment_views(jax.random.PRNGKey(2), views, _config(jitter_prob=1.0, grayscale=0.0))
    assert out.shape == views.shape
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert np.abs(np.asarray(out) - np.asarray(views)).max() > 0.05
    assert not np.allclose(out[0], out[1])  # independent keys per view


def test_photometric_bootstrap_keeps_flips_out_of_bootstrap_views():
    """A flipped bootstrap view would need a mirrored action; the ablation adds colour augmentation only."""
    from rlvis import methods, train

    config = demo.get_config("tiny")
    config.ab.photometric_bootstrap = True
    images = jax.random.uniform(jax.random.PRNGKey(0), (4, 64, 64, 1)) * 255
    stream = dict(image=images, valid=jnp.full((4, 2), 64))
    batch = dict(annotation=stream, bootstrap=stream)
    key = jax.random.PRNGKey(3)
    config.augment.flip = 0.0
    unflipped = train.make_views(key, batch, config, methods.get(config))
    config.augment.flip = 1.0
    flipped = train.make_views(key, batch, config, methods.get(config))
    np.testing.assert_array_equal(flipped["views"], unflipped["views"])  # bootstrap views never flip
    assert not np.allclose(flipped["annotation_views"], unflipped["annotation_views"])  # annotation views do
    config.ab.photometric_bootstrap = False
    plain = train.make_views(key, batch, config, methods.get(config))
    assert not np.allclose(plain["views"], unflipped["views"])  # and the ablation does change the bootstrap views


def test_blur_and_solarisation_draw_their_own_keys_and_do_what_they_say():
    """Turning blur or solarisation on changes no other augmentation: runs without them keep their views."""
    base = _config(jitter_prob=1.0, grayscale=0.5, flip=0.5)
    dark = jax.random.uniform(jax.random.PRNGKey(0), (16, 16, 3), minval=-1.0, maxval=-0.9)  # all below 0.5 in [0, 1]
    for seed in range(4):
        key = jax.random.PRNGKey(seed)
        plain = photometric.augment(key, dark, base)
        np.testing.assert_allclose(
            photometric.augment(key, dark, _config(**dict(base.to_dict(), solarize=1.0))), plain, atol=1e-6
        )
    image = _image(1)
    solarized = photometric.augment(jax.random.PRNGKey(1), image, _config(jitter_prob=0.0, flip=0.0, solarize=1.0))
    x = (np.asarray(image) + 1) / 2
    np.testing.assert_allclose(solarized, np.where(x < 0.5, x, 1 - x) * 2 - 1, atol=1e-6)
    sharp = jax.random.uniform(jax.random.PRNGKey(3), (224, 224, 1), minval=-0.8, maxval=0.8)
    blurred = photometric.augment(jax.random.PRNGKey(1), sharp, _config(jitter_prob=0.0, flip=0.0, blur=1.0))
    roughness = lambda v: float(jnp.abs(jnp.diff(v, axis=1)).mean())
    assert blurred.shape == sharp.shape and roughness(blurred) < 0.8 * roughness(sharp)
    border = np.asarray(blurred[:4]).mean() - np.asarray(sharp[:4]).mean()
    assert abs(border) < 0.05  # no dark frame from zero padding
