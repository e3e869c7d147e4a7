import jax
import jax.numpy as jnp
import numpy as np

import objective_setup
from objective_setup import jit_loss
from rlvis.data import digits, text
from rlvis.models import ab_model
from rlvis.methods import clip as clip_method
from rlvis.objectives import clip


def test_byte_tokenizer_round_trips_and_pads():
    ids = text.encode("a 3 left of a 7", 24)
    assert ids.shape == (24,) and ids[0] == text.BOS and ids[16] == text.EOS and (ids[17:] == text.PAD).all()
    assert text.decode(ids) == "a 3 left of a 7"
    assert text.decode(text.encode("ünïcode", 32)) == "ünïcode"
    cut = text.encode("x" * 100, 10)
    assert cut[-1] == text.EOS and text.decode(cut) == "x" * 8


def test_captions_name_the_digits_from_left_to_right():
    scene = dict(
        count=np.int32(3),
        labels=np.array([7, 3, 1, -1]),
        boxes=np.array([[0.1, 0.6, 0.2, 0.2], [0.5, 0.1, 0.2, 0.2], [0.3, 0.35, 0.2, 0.2], [0, 0, 0, 0]]),
    )
    assert digits.caption(scene) == "a 3, a 1 and a 7 from left to right"
    scene["count"] = np.int32(2)
    assert digits.caption(scene) == "a 3 left of a 7"
    scene["count"] = np.int32(1)
    assert digits.caption(scene) == "a 7"


def test_symmetric_infonce_on_a_hand_computed_case():
    images = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    captions = jnp.array([[0.6, 0.8], [0.0, 1.0]])
    loss, accuracy = clip.symmetric_infonce(images, captions, jnp.float32(2.0))
    logits = 2.0 * np.array([[0.6, 0.0], [0.8, 1.0]])

    def ce(rows):
        return np.mean([-(r[i] - np.log(np.exp(r).sum())) for i, r in enumerate(rows)])

    np.testing.assert_allclose(loss, (ce(logits) + ce(logits.T)) / 2, rtol=1e-6)
    assert accuracy == 1.0


def _setup(gamma=0.0):
    config, model, params, target, batch = objective_setup.setup(
        "ab_clip", gamma, annotation_views=1, annotation_scale=(0.5, 1.0)
    )
    batch["captions"] = jnp.stack(
        [
            jnp.asarray(text.encode(f"a {i} left of a {9 - i}", config.clip.caption_length))
            for i in range(len(batch["annotation_views"]))
        ]
    )
    return config, model, params, target, batch


def test_ab_clip_target_is_the_ema_caption_distribution_and_the_vocabulary_is_the_batch_captions():
    config, model, params, target, batch = _setup()
    _, (metrics, _) = jit_loss(clip_method, model, config)(params, target, batch)
    A = ab_model.ABModel
    views = model.apply(target, model.apply(target, batch["views"], method=A.encode), method=A.base_embed)
    captions, _ = model.apply(target, batch["captions"], method=A.text_embed)
    p = clip.caption_distribution(views, captions, model.apply(target, method=A.clip_logit_scale))
    assert p.shape[-1] == batch["captions"].shape[0]  # one probability per caption of the annotation batch
    np.testing.assert_allclose(metrics["target_entropy"], np.mean(-(p * np.log(p + 1e-12)).sum(-1)), rtol=1e-4)


def test_ab_clip_gradients_reach_the_ab_text_head_but_never_the_target():
    config, model, params, target, batch = _setup(gamma=0.5)

    def loss_both(p, t):
        return clip_method.loss(model, p, t, batch, config)[0]

    g_online, g_target = jax.jit(jax.grad(loss_both, argnums=(0, 1)))(params, target)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_target))
    assert float(jnp.abs(g_online["params"]["ab_text_head"]["proj"]["kernel"]).max()) > 0
    config.method = "clip"
    _, (metrics, _) = jit_loss(clip_method, model, config)(params, target, batch)
    assert "td_loss" not in metrics
