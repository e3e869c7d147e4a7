"""SLIP, SiLC and CLIP + Aug: each is CLIP plus exactly one thing (a SimCLR loss, a DINO loss with a fixed-momentum
EMA teacher, stronger augmentation), checked against CLIP's own pieces on hand-made batches."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import demo
from rlvis import methods, optimizer
from rlvis.data import text
from rlvis.envs import photometric
from rlvis.methods import clip, clip_aug, dino, silc, slip
from rlvis.models.ab_model import ABModel
from rlvis.objectives import simclr
from tests import objective_setup


def _setup(method: str):
    config, model, params = objective_setup.tiny_network(method)
    images = jax.random.randint(jax.random.PRNGKey(1), (8, 48, 48, 1), 0, 256).astype(jnp.uint8)
    stream = dict(
        image=images,
        valid=jnp.full((8, 2), 48),
        caption=jnp.stack([jnp.asarray(text.encode(f"a {i}", config.clip.caption_length)) for i in range(8)]),
    )
    config.batch.annotation = 8
    batch = methods.get(config).render_annotation(jax.random.split(jax.random.PRNGKey(2), 4), stream, config)
    return config, model, params, batch


def test_slip_is_clip_plus_simclr_on_a_share_of_the_captioned_images():
    config, model, params, batch = _setup("slip")
    n = slip.ssl_images(config)
    assert n == 4 and batch["ssl_views"].shape == (n, 2, 32, 32, 1)
    assert methods.encoded_views_per_step(config) == 8 + 2 * n
    total = jax.jit(lambda p: slip.loss(model, p, None, batch, config)[0])
    clip_loss = jax.jit(lambda p: clip.loss(model, p, None, batch, config)[0])(params)
    z = model.apply(params, model.apply(params, batch["ssl_views"], method=ABModel.encode), method=ABModel.ssl_embed)
    ssl = simclr.nt_xent(z[:, 0], z[:, 1], config.slip.temperature)[0]
    np.testing.assert_allclose(total(params), clip_loss + ssl, rtol=1e-5)
    config.slip.loss_weight = 0.0
    np.testing.assert_allclose(slip.loss(model, params, None, batch, config)[0], clip_loss, rtol=1e-5)
    config.slip.loss_weight = 1.0
    grads = jax.jit(jax.grad(total))(params)["params"]
    assert float(optax.tree.norm(grads["ssl_head"])) > 0 and float(optax.tree.norm(grads["text_tower"])) > 0


def test_silc_is_clip_plus_dino_through_its_own_head_with_a_fixed_momentum_teacher():
    config, model, params, batch = _setup("silc")
    n = silc.dino_images(config)
    assert batch["dino_views"].shape[:2] == (n, 2) and batch["dino_local_views"].shape[:2] == (n, 2)
    state = silc.initial_state(config)
    ema = jax.tree.map(lambda x: x * 0.9, params)
    silc_loss = jax.jit(lambda p, t: silc.loss(model, p, t, batch, config, state, jnp.asarray(0)))
    total, (metrics, new_state) = silc_loss(params, ema)
    dino_loss, dino_state, _ = jax.jit(
        lambda p, t: dino.self_distillation(
            model,
            p,
            t,
            batch["dino_views"],
            batch["dino_local_views"],
            state["center"],
            config,
            jnp.asarray(0),
            head=ABModel.ssl_embed,
        )
    )(params, ema)
    clip_loss = jax.jit(lambda p: clip.loss(model, p, None, batch, config)[0])(params)
    np.testing.assert_allclose(total, clip_loss + dino_loss, rtol=1e-5)
    np.testing.assert_allclose(new_state["center"], dino_state["center"])
    assert float(jnp.abs(new_state["center"]).sum()) > 0
    # The teacher is the EMA network and passes no gradient, even when it is the online network itself.
    g_online, g_teacher = jax.jit(jax.grad(lambda p, t: silc_loss(p, t)[0], argnums=(0, 1)))(params, params)
    assert float(optax.tree.norm(g_teacher)) == 0.0 and float(optax.tree.norm(g_online["params"]["ssl_head"])) > 0
    schedule = optimizer.ema_momentum_schedule(config)
    assert float(schedule(0)) == float(schedule(config.total_steps)) == pytest.approx(config.ema.start)
    dino_config = demo.get_config("tiny,method=dino")
    assert float(optimizer.ema_momentum_schedule(dino_config)(dino_config.total_steps)) == pytest.approx(
        dino_config.ema.end
    )
    assert methods.has_ema_encoder(config)  # scored on the teacher, as SiLC evaluates
    frozen = [pattern for pattern, _ in silc.optimizer_rules(config)]
    assert frozen == [r"params/ssl_head/(prototypes|prototype_gain)"]


def test_clip_aug_is_clips_crop_at_a_wider_scale_then_strong_augmentation():
    config = demo.get_config("tiny,method=clip_aug")
    stream = dict(
        image=jax.random.randint(jax.random.PRNGKey(1), (4, 48, 48, 1), 0, 256).astype(jnp.uint8),
        valid=jnp.full((4, 2), 48),
        caption=jnp.zeros((4, config.clip.caption_length), jnp.int32),
    )
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    clip_config = ml_collections.ConfigDict(config.to_dict())
    clip_config.clip.scale = config.clip_aug.scale
    plain_crops = clip.render_annotation(keys, stream, clip_config)["annotation_views"]
    assert not set(photometric.COLOUR_ONLY) & set(config.augment)  # grayscale digits: no colour-only fields
    for field in ("jitter_prob", "flip"):
        config.augment[field] = 0.0
    config.clip_aug.blur, config.clip_aug.solarize = 0.0, 1.0
    views = clip_aug.render_annotation(keys, stream, config)
    x = (np.asarray(plain_crops) + 1) / 2
    np.testing.assert_allclose(views["annotation_views"], np.where(x < 0.5, x, 1 - x) * 2 - 1, atol=1e-5)
    np.testing.assert_array_equal(views["captions"], stream["caption"])
    assert clip_aug.loss is clip.loss and not clip_aug.AB_VARIANT


@pytest.mark.parametrize("name", ["slip", "silc", "clip_aug"])
def test_the_baselines_have_no_ab_variant_but_keep_clips_caption_vocabulary(name):
    assert name in methods.NAMES and f"ab_{name}" not in methods.NAMES
    config, model, params, _ = _setup(name)
    vocabulary = methods.get(config).annotations(model, params, config)
    assert vocabulary.names == tuple(f"a {d}" for d in range(10))
