import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import demo
from rlvis import optimizer, train


def test_ema_update_moves_the_target_toward_the_online_network():
    ema, online = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    np.testing.assert_allclose(train.ema_update(ema, online, jnp.float32(0.9))["w"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(train.ema_update(ema, online, jnp.float32(1.0))["w"], 0.0)


def test_ema_momentum_rises_on_a_cosine_from_start_to_end():
    config = demo.get_config()
    momentum = optimizer.ema_momentum_schedule(config)
    values = np.asarray(jax.vmap(momentum)(jnp.arange(config.total_steps + 1)))
    np.testing.assert_allclose(values[0], config.ema.start, rtol=1e-6)
    np.testing.assert_allclose(values[-1], config.ema.end, rtol=1e-6)
    assert (np.diff(values) >= -1e-7).all()
    middle = (config.ema.start + config.ema.end) / 2
    np.testing.assert_allclose(values[config.total_steps // 2], middle, rtol=1e-5)


def test_learning_rate_warms_up_then_decays():
    config = demo.get_config()
    lr = optimizer.learning_rate_schedule(config)
    warm = config.optim.warmup_steps
    assert float(lr(warm)) == np.float32(config.optim.lr)
    assert float(lr(warm // 2)) < config.optim.lr and float(lr(config.total_steps)) < 1e-3 * config.optim.lr


def _sgd_like_steps(config, params, steps: int) -> list[dict]:
    """Run the real optimizer on constant unit gradients; return the parameters after each step."""
    tx = optimizer.make_optimizer(config)
    state, history = tx.init(params), []
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
        history.append(params)
    return history


def test_dino_last_layer_is_frozen_for_the_configured_steps_only():
    config = demo.get_config("method=dino")
    config.dino.freeze_last_layer_steps, config.optim.warmup_steps = 3, 0
    config.optim.weight_decay = config.optim.weight_decay_end = 0.1
    params = {
        "params": {
            "base_head": {
                "prototypes": jnp.ones((4, 2)),
                "prototype_gain": jnp.ones(4),
                "fc1": {"kernel": jnp.ones((2, 2))},
            }
        }
    }
    history = _sgd_like_steps(config, params, 5)
    head = [h["params"]["base_head"] for h in history]
    for name in ("prototypes", "prototype_gain"):  # no gradient step and no weight decay while frozen
        assert all(bool((h[name] == 1.0).all()) for h in head[:3]) and bool((head[3][name] != 1.0).all())
    assert bool((head[0]["fc1"]["kernel"] != 1.0).all())  # the rest of the head learns from step 1
    # Adam's moments did not decay while frozen: the first update after the freeze is a fresh Adam step, the
    # learning rate at that global step (times 1 + decay for the decayed prototypes), not a fraction of it.
    lr = float(optimizer.learning_rate_schedule(config)(3))
    np.testing.assert_allclose(1.0 - np.asarray(head[3]["prototype_gain"]), lr, rtol=1e-3)
    np.testing.assert_allclose(1.0 - np.asarray(head[3]["prototypes"]), lr * (1 + 0.1), rtol=1e-3)


def test_parameter_groups_scale_the_learning_rate_and_freeze_by_regex():
    config = demo.get_config()
    config.optim.warmup_steps, config.optim.weight_decay, config.optim.weight_decay_end = 0, 0.0, 0.0
    config.optim.rules = ((r"params/encoder/.*", dict(lr_mult=0.5)), (r"params/value_head/.*", dict(frozen_steps=-1)))
    params = {
        "params": {
            "encoder": {"kernel": jnp.ones((2, 2))},
            "value_head": {"kernel": jnp.ones((2, 2))},
            "base_head": {"kernel": jnp.ones((2, 2))},
        }
    }
    after = _sgd_like_steps(config, params, 1)[0]["params"]
    step = {name: float(1.0 - after[name]["kernel"][0, 0]) for name in after}
    np.testing.assert_allclose(step["encoder"], 0.5 * step["base_head"], rtol=1e-3)
    assert step["value_head"] == 0.0 and step["base_head"] > 0


def test_a_broad_config_rule_keeps_the_methods_freeze_and_adds_its_own_fields():
    config = demo.get_config("method=dino")
    config.dino.freeze_last_layer_steps, config.optim.warmup_steps = 2, 0
    config.optim.weight_decay = config.optim.weight_decay_end = 0.0
    config.optim.rules = ((r".*", dict(lr_mult=0.5)),)
    params = {
        "params": {
            "base_head": {"prototypes": jnp.ones((4, 2)), "fc1": {"kernel": jnp.ones((2, 2))}},
            "encoder": {"kernel": jnp.ones((2, 2))},
        }
    }
    history = _sgd_like_steps(config, params, 3)
    prototypes = [np.asarray(h["params"]["base_head"]["prototypes"]) for h in history]
    assert (prototypes[1] == 1.0).all() and (prototypes[2] != 1.0).all()  # still frozen for 2 steps
    plain = demo.get_config("method=dino")
    plain.dino.freeze_last_layer_steps, plain.optim.warmup_steps = 2, 0
    plain.optim.weight_decay = plain.optim.weight_decay_end = 0.0
    unscaled = _sgd_like_steps(plain, params, 3)
    for scaled, reference in (
        (
            history[2]["params"]["base_head"]["prototypes"],  # both fields apply together
            unscaled[2]["params"]["base_head"]["prototypes"],
        ),
        (history[0]["params"]["encoder"]["kernel"], unscaled[0]["params"]["encoder"]["kernel"]),
    ):
        np.testing.assert_allclose(1.0 - np.asarray(scaled), 0.5 * (1.0 - np.asarray(reference)), rtol=1e-3)


def test_merged_rules_keep_the_longer_freeze_and_regex_flags():
    config = demo.get_config("method=dino")  # DINO freezes its prototypes for dino.freeze_last_layer_steps
    config.optim.rules = ((r"(?i)PARAMS/base_head/.*", dict(frozen_steps=-1, lr_mult=0.5)),)
    fields = {patterns: f for patterns, f in optimizer.rules(config)}
    params = {"params": {"base_head": {"prototypes": jnp.ones((2, 2)), "fc1": {"kernel": jnp.ones((2, 2))}}}}
    labels = optimizer.parameter_groups(params, optimizer.rules(config))["params"]["base_head"]
    groups = optimizer.rules(config)
    assert groups[int(labels["prototypes"])][1] == dict(lr_mult=0.5, wd_mult=1.0, frozen_steps=-1)  # for good
    assert groups[int(labels["fc1"]["kernel"])][1]["frozen_steps"] == -1 and len(fields) == len(groups)


def test_bad_optimizer_rules_stop_the_run_with_a_one_line_error():
    from rlvis import config_lib

    for rules, message in (
        (((r"params/(", dict(lr_mult=0.5)),), "not a regex"),
        (((r"params/.*", dict(lr_multiplier=0.5)),), "unknown field 'lr_multiplier'"),
        ((r"params/.*",), "is not (regex, dict(...))"),
    ):
        config = demo.get_config("tiny")
        config.optim.rules = rules
        with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
            config_lib.validate(config, 1, check_data_paths=False)


def test_weight_decay_follows_its_cosine_from_start_to_end():
    config = demo.get_config()
    config.optim.weight_decay, config.optim.weight_decay_end, config.total_steps = 0.04, 0.4, 100
    decay = optimizer.cosine_ramp(config.optim.weight_decay, config.optim.weight_decay_end, config.total_steps)
    np.testing.assert_allclose([float(decay(0)), float(decay(50)), float(decay(100))], [0.04, 0.22, 0.4], rtol=1e-5)


def test_gradient_accumulation_over_the_bootstrap_batch_equals_the_large_batch():
    from rlvis import sharding
    from rlvis.data import pipeline, sources

    config = demo.get_config("tiny")
    config.ab.center_target = False  # it centres over the whole step's views: validation refuses it with micro-batches
    batch = {name: next(iter(ds)) for name, ds in pipeline.training_streams(config, 0, 1).items()}
    mesh = sharding.make_mesh(jax.devices()[:1])
    results = {}
    for chunks in (1, 2, 4):
        config.optim.grad_accum_steps = chunks
        step = train.make_train_step(config, mesh, sources.image_channels(config))
        state, metrics = step.update_fn(step.init_fn(step.init_key), sharding.global_batch(batch, mesh))
        results[chunks] = (jax.device_get(state["params"]), float(metrics["loss"]), float(metrics["grad_norm"]))
    for chunks in (2, 4):
        np.testing.assert_allclose(results[chunks][1:], results[1][1:], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(results[chunks][0]), jax.tree.leaves(results[1][0])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_gradients_are_zeroed_before_clipping_so_they_do_not_count_in_the_global_norm():
    rules = [(r"params/head/.*", dict(optimizer.RULE_FIELDS, frozen_steps=2))]
    tx = optimizer.frozen_gradients_zeroed(rules)
    grads = {"params": {"head": {"w": jnp.full((2,), 3.0)}, "encoder": {"w": jnp.full((2,), 4.0)}}}
    state = tx.init(grads)
    seen = []
    for _ in range(3):
        out, state = tx.update(grads, state)
        seen.append(float(optax.global_norm(out)))
    np.testing.assert_allclose(seen, [np.sqrt(32.0), np.sqrt(32.0), np.sqrt(50.0)], rtol=1e-6)
