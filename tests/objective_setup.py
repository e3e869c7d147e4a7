"""Small random batches and networks for the objective tests (one copy, shared by every method's tests)."""

import functools

import jax
import jax.numpy as jnp

from configs import demo
from rlvis import methods
from rlvis.envs import crop_env

NUM_IMAGES, NUM_ANNOTATIONS = 4, 8


def setup(
    method: str, gamma: float = 0.0, *, annotation_views: int = 2, annotation_scale=(0.2, 1.0), local_views: int = 0
):
    """(config, model, online params, target params, batch) for the tiny demo config of `method`.

    The batch holds `views`, `actions` and `boxes` of 4 random 64-px images, and `annotation_views` (plus `local_views`,
    16 px, when asked) of 8 annotation crops.
    """
    config = demo.get_config(f"tiny,method={method}")
    config.ab.gamma = gamma
    model = methods.build_model(config)
    images = jax.random.uniform(jax.random.PRNGKey(0), (NUM_IMAGES, 64, 64, 1)) * 255

    def rollout(key, imgs, num_views, size, scale):
        return crop_env.batch_rollout(
            jax.random.PRNGKey(key),
            imgs,
            jnp.full((len(imgs), 2), 64),
            num_views=num_views,
            size=size,
            scale=scale,
            ratio=(0.75, 1.33),
        )

    boot = rollout(0, images, config.env.views, 32, (0.05, 1.0))
    annotation_images = images[:1].repeat(NUM_ANNOTATIONS, 0)
    batch = dict(
        views=boot["views"],
        actions=boot["actions"],
        boxes=boot["boxes"],
        annotation_views=rollout(1, annotation_images, annotation_views, 32, annotation_scale)["views"],
    )
    if local_views:
        batch["local_views"] = rollout(2, annotation_images, local_views, 16, (0.05, 0.4))["views"]

    def init(key):
        return model.init(
            jax.random.PRNGKey(key),
            jnp.zeros((1, 32, 32, 1)),
            jnp.tile(jnp.array([0.0, 0.0, 1.0, 1.0]), (1, config.env.views - 1, 1)),
            captions(config),
        )

    return config, model, init(2), init(3), batch


def captions(config):
    """`model.init`'s captions: a dummy caption batch for the captioned methods (config.clip), else None."""
    return jnp.zeros((1, config.clip.caption_length), jnp.int32) if "clip" in config else None


def tiny_network(method: str):
    """(config, model, params) of `method`'s tiny demo network, for tests that build their own batch."""
    config = demo.get_config(f"tiny,method={method}")
    model = methods.build_model(config)
    size = config.env.view_size
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)), jnp.zeros((1, 2, 4)), captions(config))
    return config, model, params


def jit_loss(objective, model, config):
    """`objective.loss` for this model and config as one compiled program (eager, a loss is thousands of small ops
    and much slower). Make a new one after changing `config`: the compiled program keeps the config it saw."""
    return jax.jit(functools.partial(objective.loss, model, config=config))
