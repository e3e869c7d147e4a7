import jax
import pytest
import jax.numpy as jnp
import numpy as np

import objective_setup
from configs import demo
from objective_setup import jit_loss
from rlvis import methods
from rlvis.envs import crop_env
from rlvis.models import ab_model
from rlvis.methods import simclr as simclr_method
from rlvis.objectives import rewards, simclr, td


def _reference_nt_xent(a, b, t):
    z = np.concatenate([a, b])
    n = len(a)
    logits = z @ z.T / t
    losses = []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        losses.append(-(logits[i, partner] - np.log(np.sum(np.exp(logits[i, others])))))
    return np.mean(losses)


def test_nt_xent_matches_a_direct_implementation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    loss, _ = simclr.nt_xent(jnp.asarray(a), jnp.asarray(b), 0.5)
    np.testing.assert_allclose(loss, _reference_nt_xent(a, b, 0.5), rtol=1e-5)
    _, acc = simclr.nt_xent(jnp.asarray(a), jnp.asarray(a), 0.1)
    assert acc == 1.0  # identical views always find their partner


def test_td_target_mixes_per_annotation_max_and_renormalises():
    pairs = crop_env.pair_indices(3)  # 0 → (1, 2), 1 → (0, 2), 2 → (0, 1)
    p = jnp.array([[[0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])  # reward at each of 3 views
    q = jnp.array(
        [
            [
                [[0.3, 0.3, 0.4]] * 2,
                [[0.1, 0.8, 0.1], [0.6, 0.1, 0.3]],  # from view 1: back to view 0, on to view 2
                [[0.3, 0.3, 0.4]] * 2,
            ]
        ]
    )
    np.testing.assert_array_equal(td.td_targets(p, q, 0.0, pairs), p[:, pairs])
    mixed = np.asarray(td.td_targets(p, q, 0.5, pairs))  # pair 0 → 1 is [0, 0, 0, :]
    expected = 0.5 * np.array([0.7, 0.2, 0.1]) + 0.5 * np.array([0.6, 0.8, 0.3])
    np.testing.assert_allclose(mixed[0, 0, 0], expected / expected.sum(), rtol=1e-6)
    # without the move back to view 0, only the move on to view 2 is a candidate for the pair 0 → 1
    excluded = np.asarray(td.td_targets(p, q, 0.5, pairs, exclude_source=True))
    expected = 0.5 * np.array([0.7, 0.2, 0.1]) + 0.5 * np.array([0.6, 0.1, 0.3])
    np.testing.assert_allclose(excluded[0, 0, 0], expected / expected.sum(), rtol=1e-6)
    # for the pair 2 → 1 the source is view 2, so only the move back to view 0 stays
    expected = 0.5 * np.array([0.7, 0.2, 0.1]) + 0.5 * np.array([0.1, 0.8, 0.1])
    np.testing.assert_allclose(excluded[0, 2, 1], expected / expected.sum(), rtol=1e-6)


def test_td_accuracy_per_iou_bucket_counts_only_that_buckets_pairs():
    logits = jnp.array([[[[5.0, 0.0], [5.0, 0.0]], [[5.0, 0.0], [0.0, 5.0]], [[0.0, 5.0], [0.0, 5.0]]]])  # [1,3,2,2]
    targets = jnp.array([[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]]])
    iou = jnp.array([[[0.0, 0.1], [0.0, 0.6], [0.3, 0.3]]])
    _, metrics = td.td_loss(logits, targets, iou)
    np.testing.assert_allclose(metrics["td_accuracy"], 3 / 6)
    np.testing.assert_allclose(metrics["td_accuracy/iou_0"], 1.0)  # both IoU-0 pairs right
    np.testing.assert_allclose(metrics["td_accuracy/iou_0-0.2"], 0.0)
    np.testing.assert_allclose(metrics["td_accuracy/iou_0.2-0.5"], 0.0)
    np.testing.assert_allclose(metrics["td_accuracy/iou_0.5-1"], 1.0)


def _setup(gamma):
    return objective_setup.setup("ab_simclr", gamma)


def test_gamma_zero_is_the_icml_objective():
    """γ = 0: the TD term is CE(Q logits, softmax of the EMA base logits on the reached view), nothing else; with the
    demo's centred target, of those logits less each annotation's mean over the batch's views."""
    config, model, params, target, batch = _setup(0.0)
    assert config.ab.center_target  # the demo default
    _, (metrics, _) = jit_loss(simclr_method, model, config)(params, target, batch)
    np.testing.assert_allclose(
        metrics["td_loss"], _reference(model, params, target, batch, 0.0, False, True), rtol=1e-5
    )
    config.ab.center_target = False  # the paper's target
    _, (metrics, _) = jit_loss(simclr_method, model, config)(params, target, batch)
    np.testing.assert_allclose(metrics["td_loss"], _reference(model, params, target, batch, 0.0), rtol=1e-5)
    # (CE and the paper's KL(p_ema ‖ p_AB) differ by the target's entropy, a constant for the online gradient.)
    # At γ = 0 the target network's value head plays no part:
    perturbed = jax.tree.map(lambda x: x, target)
    perturbed["params"]["value_head"] = jax.tree.map(lambda x: x + 1.0, target["params"]["value_head"])
    _, (again, _) = jit_loss(simclr_method, model, config)(params, perturbed, batch)
    np.testing.assert_allclose(again["td_loss"], metrics["td_loss"], rtol=1e-6)


def _reference_td_loss(model, params, target, batch, gamma, exclude_source=False, centred=False):
    """The TD loss rebuilt pair by pair, one view and one action at a time.

    γ = 0 is the ICML loss: mean over ordered pairs (i, j) of CE(p_AB(·|x_i, bb_ij), p_ema(·|x_j)); `centred`
    (`ab.center_target`) first removes each annotation's mean logit over every view of the batch.
    """
    A = ab_model.ABModel
    ann_t = model.apply(target, batch["annotation_views"][:, 1], method=A.encode)
    vocab_t = model.apply(target, ann_t, method=A.base_embed)
    ab_vocab_t = model.apply(target, ann_t, method=A.ab_embed)
    ann = model.apply(params, batch["annotation_views"][:, 1], method=A.encode)
    vocab = model.apply(params, ann, method=A.ab_embed)
    b, n = batch["views"].shape[:2]
    pairs = crop_env.pair_indices(n)

    def logits_at(j):
        tokens_t = model.apply(target, batch["views"][:, j], method=A.encode)
        return model.apply(target, tokens_t, method=A.base_embed) @ vocab_t.T / 0.1

    centre = jnp.mean(jnp.concatenate([logits_at(j) for j in range(n)]), axis=0) if centred else 0.0

    def target_at(i, j):
        tokens_t = model.apply(target, batch["views"][:, j], method=A.encode)
        p = jax.nn.softmax(logits_at(j) - centre, -1)
        if gamma == 0.0:
            return p
        q = [
            jax.nn.softmax(
                10.0
                * model.apply(target, tokens_t, batch["actions"][:, j, k : k + 1], method=A.value_embed)[:, 0]
                @ ab_vocab_t.T,
                -1,
            )
            for k in range(n - 1)
            if not (exclude_source and pairs[j][k] == i)
        ]  # moves from x_j (x_i included?)
        mixed = (1 - gamma) * p + gamma * jnp.max(jnp.stack(q), axis=0)
        return mixed / mixed.sum(-1, keepdims=True)

    losses = []
    for i in range(n):
        tokens = model.apply(params, batch["views"][:, i], method=A.encode)
        for k, j in enumerate(pairs[i]):
            value = model.apply(params, tokens, batch["actions"][:, i, k : k + 1], method=A.value_embed)[:, 0]
            logits = 10.0 * value @ vocab.T
            losses.append(-jnp.sum(target_at(i, int(j)) * jax.nn.log_softmax(logits, -1), -1))
    return jnp.mean(jnp.stack(losses))


# One compiled program: run op by op, the pair-by-pair reference takes about a minute on 2 cores.
_reference = jax.jit(_reference_td_loss, static_argnums=(0, 4, 5, 6))


@pytest.mark.parametrize("exclude_source", [False, True])
def test_gamma_positive_matches_a_pair_by_pair_reference(exclude_source):
    """target(ℓ | i→j) = renorm((1-γ)·p_ema(ℓ|x_j) + γ·max over j→k, k≠j (and k≠i when excluding the source)
    of Q_ema(ℓ | x_j, a_{j→k}))."""
    config, model, params, target, batch = _setup(0.5)
    config.ab.exclude_source = exclude_source
    _, (metrics, _) = jit_loss(simclr_method, model, config)(params, target, batch)
    np.testing.assert_allclose(
        metrics["td_loss"],
        _reference(model, params, target, batch, 0.5, exclude_source, config.ab.center_target),
        rtol=1e-5,
    )


def test_gamma_positive_uses_the_target_value_head():
    config, model, params, target, batch = _setup(0.5)
    _, (metrics, _) = jit_loss(simclr_method, model, config)(params, target, batch)
    perturbed = jax.tree.map(lambda x: x, target)
    perturbed["params"]["value_head"] = jax.tree.map(lambda x: x * 3.0, target["params"]["value_head"])
    _, (again, _) = jit_loss(simclr_method, model, config)(params, perturbed, batch)
    assert abs(float(again["td_loss"]) - float(metrics["td_loss"])) > 1e-4


def test_gradients_never_reach_the_target_network():
    for gamma in (0.5,):  # γ > 0 exercises every target path (base head and value head)
        config, model, params, target, batch = _setup(gamma)

        # Even when the online parameters are passed as the target (the no-EMA ablation), the target path is
        # stop-gradient: d loss / d target is exactly zero, and the online gradient equals the one with a frozen copy.
        def loss_both(p, t):
            return simclr_method.loss(model, p, t, batch, config)[0]

        g_online, g_target = jax.jit(jax.grad(loss_both, argnums=(0, 1)))(params, target)
        assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_target))
        assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(g_online))
        shared = jax.jit(jax.grad(lambda p: loss_both(p, p)))(params)
        frozen = jax.jit(jax.grad(loss_both))(params, jax.tree.map(jnp.copy, params))
        for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(frozen)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # same maths, differently fused


def test_masked_action_tokens_make_every_move_predict_the_same_distribution():
    """The 'empty action tokens' ablation: the value head sees the source view only (invariance)."""
    config, _, _, _, batch = _setup(0.0)
    model = methods.build_model(config)
    config.ab.action_tokens = False
    masked_model = methods.build_model(config)
    b, n = batch["views"].shape[:2]
    views, actions = batch["views"].reshape(b * n, 32, 32, 1), batch["actions"].reshape(b * n, n - 1, 4)

    def merged(a: dict, b: dict) -> dict:  # the unmasked head adds its box_scale (box attention)
        return {
            k: merged(a[k], b[k]) if isinstance(a.get(k), dict) and isinstance(b.get(k), dict) else a.get(k, b.get(k))
            for k in a.keys() | b.keys()
        }

    params = merged(*(m.init(jax.random.PRNGKey(0), views[:1], actions[:1]) for m in (masked_model, model)))
    tokens = model.apply(params, views, method=ab_model.ABModel.encode)
    value = masked_model.apply(params, tokens, actions, method=ab_model.ABModel.value_embed)
    np.testing.assert_allclose(value[:, 0], value[:, 1], atol=1e-5)
    unmasked = model.apply(params, tokens, actions, method=ab_model.ABModel.value_embed)
    assert not np.allclose(unmasked[:, 0], unmasked[:, 1], atol=1e-3)


def test_base_only_method_is_the_simclr_loss_and_ignores_the_bootstrap_batch():
    config, model, params, target, batch = _setup(0.0)
    config.method = "simclr"
    base_batch = {"annotation_views": batch["annotation_views"]}
    loss, (metrics, _) = jit_loss(simclr_method, model, config)(params, target, base_batch)
    config.method = "ab_simclr"
    _, (ab_metrics, _) = jit_loss(simclr_method, model, config)(params, target, batch)
    np.testing.assert_allclose(loss, ab_metrics["base_loss"], rtol=1e-6)
    assert "td_loss" not in metrics


def test_base_loss_weight_zero_leaves_only_the_td_term():
    config, model, params, target, batch = _setup(0.0)
    config.ab.base_loss_weight = 0.0
    loss, (metrics, _) = jit_loss(simclr_method, model, config)(params, target, batch)
    np.testing.assert_allclose(loss, metrics["td_loss"], rtol=1e-6)


def test_oracle_reward_spreads_over_annotations_of_the_classes_at_least_half_inside_the_view():
    digit_boxes = jnp.array(
        [
            [
                [0.0, 0.0, 0.25, 0.25],  # a 3, inside view 0
                [0.0, 0.5, 0.25, 0.25],  # a 7, exactly half inside view 0 (x 0.5-0.75, view to 0.625)
                [0.75, 0.75, 0.25, 0.25],  # a 5, outside both views
                [0.0, 0.0, 1.0, 1.0],
            ]
        ]
    )  # padding: covers everything but has no digit
    digit_labels = jnp.array([[3, 7, 5, -1]])
    views = jnp.array(
        [
            [
                [0.0, 0.0, 0.5, 0.625],  # sees the 3 and half the 7
                [0.5, 0.0, 0.25, 0.25],
            ]
        ]
    )  # sees no digit
    annotation_labels = jnp.array([3, 3, 5, 7, 1])
    reward = rewards.oracle(views, digit_boxes, digit_labels, annotation_labels)
    np.testing.assert_allclose(reward[0, 0], [1 / 3, 1 / 3, 0.0, 1 / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(reward[0, 1], np.full(5, 0.2), atol=1e-6)  # nothing there: no information


def test_mixed_rewards_split_the_batch_by_scene_exactly():
    first, rest = jnp.zeros((4, 2, 3)), jnp.ones((4, 2, 3))
    mixed = rewards.mix(first, rest, 0.5)
    np.testing.assert_array_equal(mixed[:2], first[:2])
    np.testing.assert_array_equal(mixed[2:], rest[2:])
    np.testing.assert_array_equal(rewards.mix(first, rest, 0.25), jnp.concatenate([first[:1], rest[1:]]))
    np.testing.assert_array_equal(rewards.mix(first, rest, 0.0), rest)
    np.testing.assert_array_equal(rewards.mix(first, rest, 1.0), first)


def test_reward_names_parse_and_anything_else_is_a_one_line_error():
    assert rewards.parse("base") == ("base", 1.0)
    assert rewards.parse("oracle") == ("oracle", 1.0)
    assert rewards.parse("oracle:0.25") == ("oracle", 0.25)
    assert rewards.parse("shuffled_oracle:0") == ("shuffled_oracle", 0.0)
    for bad in ("oracel", "oracle:1.5", "oracle:-0.1", "oracle:half", "base:0.5", "shuffled_oracle:", ""):
        with pytest.raises(ValueError, match="must be 'base', 'oracle', 'oracle:F' or 'shuffled_oracle:F'"):
            rewards.parse(bad)
    config = objective_setup.setup("ab_simclr")[0]
    assert rewards.check(config) is None
    config.ab.reward = "oracle:2"
    assert "must be 'base'" in rewards.check(config)
    config.ab.reward = "oracle:0.5"
    assert rewards.check(config) is None
    config.data.annotation_scene_fraction = 0.5  # scenes in the annotation stream have no single class
    assert "needs ab_simclr on the embedded demo data" in rewards.check(config)
    dino = demo.get_config("tiny,method=ab_dino")
    dino.ab.reward = "oracle"
    assert "needs ab_simclr on the embedded demo data" in rewards.check(dino)


def _scenes_batch(labels):
    """Scenes of one whole-canvas digit each (class `labels[b]`), seen by views of the whole canvas; 6 annotations
    labelled 0, 1, 2, 0, 1, 2."""
    b, whole = len(labels), jnp.array([0.0, 0.0, 1.0, 1.0])
    return dict(
        boxes=jnp.tile(whole, (b, 2, 1)),
        digit_boxes=jnp.tile(whole, (b, 1, 1)),
        digit_labels=jnp.asarray(labels)[:, None],
        annotation_labels=jnp.arange(6) % 3,
    )


def test_the_controls_never_compute_the_base_reward_they_do_not_use_and_shuffled_gives_the_next_scenes():
    batch = _scenes_batch([0, 1, 2, 1])

    def no_base():
        raise AssertionError("the base reward was computed")

    truth = rewards.oracle(batch["boxes"], batch["digit_boxes"], batch["digit_labels"], batch["annotation_labels"])
    np.testing.assert_allclose(truth[1, 0], [0.0, 0.5, 0.0, 0.0, 0.5, 0.0])  # scene 1 shows a 1
    np.testing.assert_array_equal(rewards.reward("oracle", no_base, batch), truth)
    np.testing.assert_array_equal(rewards.reward("shuffled_oracle:1", no_base, batch), truth)
    shuffled = rewards.reward("shuffled_oracle:0", no_base, batch)
    np.testing.assert_array_equal(shuffled, jnp.roll(truth, -1, axis=0))  # every scene: the next scene's classes
    np.testing.assert_allclose(shuffled[3, 0], truth[0, 0])  # the last scene gets the first's
    half = rewards.reward("shuffled_oracle:0.5", no_base, batch)
    np.testing.assert_array_equal(half[:2], truth[:2])
    np.testing.assert_array_equal(half[2:], truth[jnp.array([3, 0])])
    base = jnp.full(truth.shape, 1 / 6)
    np.testing.assert_array_equal(rewards.reward("base", lambda: base, {}), base)  # no ground truth needed
    np.testing.assert_array_equal(
        rewards.reward("oracle:0.5", lambda: base, batch), jnp.concatenate([truth[:2], base[2:]])
    )


def _oracle_setup():
    """The oracle reward on a batch whose every view shows one digit, a 2; annotations are labelled 0, 1, 2, 0, …"""
    config, model, params, _, batch = _setup(0.0)
    config.ab.reward = "oracle"
    b, n = batch["views"].shape[:2]
    k = batch["annotation_views"].shape[0]
    whole = jnp.array([0.0, 0.0, 1.0, 1.0])
    labelled = dict(
        batch,
        annotation_labels=jnp.arange(k) % 3,
        boxes=jnp.tile(whole, (b, n, 1)),
        digit_boxes=jnp.tile(whole, (b, 4, 1)),
        digit_labels=jnp.tile(jnp.array([2, -1, -1, -1]), (b, 1)),
    )
    return config, model, params, labelled


def test_the_oracle_reward_replaces_the_base_models_target_in_the_td_loss():
    config, model, params, labelled = _oracle_setup()
    k = labelled["annotation_views"].shape[0]
    _, (metrics, _) = jit_loss(simclr_method, model, config)(params, params, labelled)
    # Every view shows the 2 → the target is uniform over the annotations labelled 2.
    assert abs(float(metrics["target_entropy"]) - float(jnp.log(jnp.sum(jnp.arange(k) % 3 == 2)))) < 1e-4


def test_a_partial_oracle_in_the_loss_lies_between_the_base_models_target_and_the_oracles():
    """ "oracle:0.5": half the scenes get the oracle's sharper target, so the target entropy lies between the two;
    "oracle:0" is the base model's target."""
    config, model, params, labelled = _oracle_setup()
    entropies = {}
    for name in ("base", "oracle:0", "oracle:0.5", "oracle"):
        config.ab.reward = name
        _, (metrics, _) = jit_loss(simclr_method, model, config)(params, params, labelled)
        entropies[name] = float(metrics["target_entropy"])
    assert abs(entropies["oracle:0"] - entropies["base"]) < 1e-5  # no oracle scene: the base model's target
    assert entropies["oracle"] + 1e-2 < entropies["oracle:0.5"] < entropies["base"] - 1e-2  # the oracle's half


def test_a_centred_target_removes_each_annotations_mean_logit_over_the_views():
    # Annotation 0 is near every view (a hub); annotation 1 is near view 0 only.
    views = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    annotations = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    plain = simclr.annotation_distribution(views, annotations, 0.1)
    centred = simclr.centred_annotation_distribution(views, annotations, 0.1)
    assert int(plain[1].argmax()) == 0 and int(centred[1].argmax()) == 1  # the hub no longer wins view 1
    logits = views @ annotations.T / 0.1
    np.testing.assert_allclose(centred, jax.nn.softmax(logits - logits.mean(0), -1), rtol=1e-6)
