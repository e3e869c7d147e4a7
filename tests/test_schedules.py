import jax
import jax.numpy as jnp
import numpy as np

from configs import demo
from rlvis import train


def test_ema_update_moves_the_target_toward_the_online_network():
    ema, online = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    np.testing.assert_allclose(train.ema_update(ema, online, jnp.float32(0.9))["w"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(train.ema_update(ema, online, jnp.float32(1.0))["w"], 0.0)


def test_ema_momentum_rises_on_a_cosine_from_start_to_end():
    config = demo.get_config()
    momentum = train.ema_momentum_schedule(config)
    values = np.asarray(jax.vmap(momentum)(jnp.arange(config.total_steps + 1)))
    np.testing.assert_allclose(values[0], config.ab.ema_start, rtol=1e-6)
    np.testing.assert_allclose(values[-1], config.ab.ema_end, rtol=1e-6)
    assert (np.diff(values) >= -1e-7).all()
    middle = (config.ab.ema_start + config.ab.ema_end) / 2
    np.testing.assert_allclose(values[config.total_steps // 2], middle, rtol=1e-5)


def test_learning_rate_warms_up_then_decays():
    config = demo.get_config()
    lr = train.learning_rate_schedule(config)
    warm = config.optim.warmup_steps
    assert float(lr(warm)) == np.float32(config.optim.lr)
    assert float(lr(warm // 2)) < config.optim.lr and float(lr(config.total_steps)) < 1e-3 * config.optim.lr
