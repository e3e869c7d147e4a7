import jax
import jax.numpy as jnp
import numpy as np

import objective_setup
from objective_setup import jit_loss
from configs import demo
from rlvis.models import ab_model
from rlvis.models.heads import DINOHead
from rlvis.methods import dino as dino_method
from rlvis.objectives import dino


def test_dino_loss_on_a_hand_computed_case():
    # one image, 2 global crops + 1 local crop, 2 prototypes
    student = jnp.array([[[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]])
    teacher = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    center = jnp.array([0.25, 0.25])
    loss, batch_center, _ = dino.dino_loss(student, teacher, center, student_temperature=1.0, teacher_temperature=0.5)
    t0 = np.exp([1.5, -0.5]) / np.exp([1.5, -0.5]).sum()  # softmax((t - c) / 0.5)
    t1 = t0[::-1]
    log_s = [np.log(np.exp(s) / np.exp(s).sum()) for s in ([0, 1], [1, 0], [0.5, 0.5])]
    pairs = [(t0, 1), (t0, 2), (t1, 0), (t1, 2)]  # a teacher crop never teaches itself
    expected = np.mean([-(t * log_s[v]).sum() for t, v in pairs])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(batch_center, [0.5, 0.5])


def test_teacher_temperature_warms_up_then_holds():
    config = demo.get_config("method=dino")
    steps = config.dino.teacher_temp_warmup_steps
    np.testing.assert_allclose(dino.teacher_temperature(0, config), config.dino.warmup_teacher_temp)
    np.testing.assert_allclose(
        dino.teacher_temperature(steps // 2, config),
        (config.dino.warmup_teacher_temp + config.dino.teacher_temp) / 2,
        rtol=1e-6,
    )
    np.testing.assert_allclose(dino.teacher_temperature(10 * steps, config), config.dino.teacher_temp)


def test_centre_is_a_running_mean():
    np.testing.assert_allclose(dino.update_center(jnp.zeros(2), jnp.array([1.0, 2.0]), 0.9), [0.1, 0.2], rtol=1e-6)


def _setup(gamma=0.0):
    config, model, params, target, batch = objective_setup.setup(
        "ab_dino", gamma, annotation_scale=(0.4, 1.0), local_views=2
    )
    state = {"center": jax.random.normal(jax.random.PRNGKey(5), (config.dino.prototypes,)) * 0.1}
    return config, model, params, target, batch, state


def test_ab_dino_target_is_the_centred_sharpened_teacher_on_the_reached_view():
    config, model, params, target, batch, state = _setup()
    _, (metrics, new_state) = jit_loss(dino_method, model, config)(
        params, target, batch, method_state=state, step=jnp.int32(0)
    )
    A = ab_model.ABModel
    teacher = model.apply(target, model.apply(target, batch["views"], method=A.encode), method=A.base_embed)
    p = dino.teacher_distribution(teacher, state["center"], config.dino.warmup_teacher_temp)  # [B, n, K]
    np.testing.assert_allclose(
        metrics["target_entropy"], np.mean(-(p * np.log(p + 1e-12)).sum(-1)), rtol=1e-4
    )  # every view is some pair's target
    assert new_state["center"].shape == (config.dino.prototypes,)
    assert not np.allclose(new_state["center"], state["center"])


def test_ab_dino_gradients_never_reach_the_teacher_and_the_baseline_skips_bootstrapping():
    config, model, params, target, batch, state = _setup(gamma=0.5)

    def loss_both(p, t):
        return dino_method.loss(model, p, t, batch, config, state, jnp.int32(0))[0]

    g_online, g_target = jax.jit(jax.grad(loss_both, argnums=(0, 1)))(params, target)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_target))
    assert float(jnp.abs(g_online["params"]["ab_prototypes"]).max()) > 0  # the AB embedding matrix learns
    config.method = "dino"
    base_batch = {k: batch[k] for k in ("annotation_views", "local_views")}
    loss, (metrics, _) = jit_loss(dino_method, model, config)(
        params, target, base_batch, method_state=state, step=jnp.int32(0)
    )
    assert "td_loss" not in metrics and np.isfinite(loss)


def test_dino_head_logits_are_cosines_unless_the_last_layer_learns_its_gains():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 8))
    fixed = DINOHead(hidden=16, bottleneck=4, prototypes=6)
    params = fixed.init(jax.random.PRNGKey(1), x)
    logits = fixed.apply(params, x)
    assert float(jnp.abs(logits).max()) <= 1.0 + 1e-5 and "prototype_gain" not in params["params"]
    learned = DINOHead(hidden=16, bottleneck=4, prototypes=6, norm_last_layer=False)
    gained = {"params": {**params["params"], "prototype_gain": jnp.arange(1.0, 7.0)}}
    np.testing.assert_allclose(learned.apply(gained, x), logits * jnp.arange(1.0, 7.0), rtol=1e-5)
    assert learned.init(jax.random.PRNGKey(1), x)["params"]["prototype_gain"].shape == (6,)


def test_no_ema_target_changes_only_the_ab_target_and_dinos_teacher_keeps_its_ema():
    """`ab.use_ema_target=False`: the AB target comes from the online network; DINO's teacher still reads the EMA."""
    config, model, params, ema, batch, state = _setup()
    _, (with_ema, _) = jit_loss(dino_method, model, config)(params, ema, batch, method_state=state, step=jnp.int32(0))
    config.ab.use_ema_target = False
    _, (without, _) = jit_loss(dino_method, model, config)(params, ema, batch, method_state=state, step=jnp.int32(0))
    np.testing.assert_allclose(without["base_loss"], with_ema["base_loss"], rtol=1e-6)  # same teacher
    assert abs(float(without["td_loss"]) - float(with_ema["td_loss"])) > 1e-4  # a different AB target
    _, (online_everywhere, _) = jit_loss(dino_method, model, config)(
        params, params, batch, method_state=state, step=jnp.int32(0)
    )
    np.testing.assert_allclose(without["td_loss"], online_everywhere["td_loss"], rtol=1e-5)  # online AB target
