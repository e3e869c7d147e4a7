"""The optimizer and its schedules: AdamW with warm-up + cosine decay, global-norm clipping, and parameter groups
chosen by regex rules (as big_vision's optax helpers do).

    config.optim.rules = ((r"params/encoder/.*", dict(lr_mult=0.1)),
                          (r"params/value_head/.*", dict(wd_mult=0.0, frozen_steps=-1)))

A parameter's path is its keys joined by "/" ("params/base_head/prototypes"). The first rule whose regex matches
the whole path puts the parameter in that rule's group; unmatched parameters form the default group. A group may
scale the learning rate (`lr_mult`) and the weight decay (`wd_mult`), and may be frozen (`frozen_steps`): for that
many first steps (−1: for good) its parameters get no update at all — no gradient step, no weight decay, and its
Adam moments stay where they are — and afterwards it follows the same schedules as everything else. A method may
add rules (DINO freezes its last layer at first); where one matches, its fields override the config rule's. Weight decay never touches biases, norms or
scalars (arrays of fewer than 2 dimensions).
"""

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rlvis import methods

RULE_FIELDS = {"lr_mult": 1.0, "wd_mult": 1.0, "frozen_steps": 0}


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        0.0, config.optim.lr, config.optim.warmup_steps, max(config.total_steps, config.optim.warmup_steps + 1)
    )


def cosine_ramp(start: float, end: float, total_steps: int) -> optax.Schedule:
    """From `start` at step 0 to `end` at `total_steps` on a half cosine (DINO's `cosine_scheduler`)."""

    def value(step: jax.Array) -> jax.Array:
        progress = jnp.minimum(step / total_steps, 1.0)
        return end - (end - start) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0

    return value


def ema_momentum_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Target momentum rising from `ema.start` to `ema.end` (DINO/BYOL; the paper's "0.004 → 0" in 1 − momentum), or
    fixed at `ema.start` for a method whose recipe fixes it (SiLC)."""
    end = config.ema.start if methods.get(config).FIXED_EMA else config.ema.end
    return cosine_ramp(config.ema.start, end, config.total_steps)


def rules(config: ml_collections.ConfigDict) -> list[tuple[tuple[str, ...], dict]]:
    """The config's rules merged with the method's, every field filled in: a parameter gets the fields of the
    first config rule matching it and of the first method rule matching it, the method's learning-rate and decay
    multipliers winning and the longer freeze winning (−1, for good, the longest), so a broad config rule such as
    `.*` keeps DINO's last layer frozen and a config freeze is never shortened. A merged rule is a pair of
    patterns, both of which must match the whole path, listed in an order where the first match is that pair."""
    own = [(pattern, dict(fields)) for pattern, fields in config.optim.rules]
    method = [(pattern, dict(fields)) for pattern, fields in methods.get(config).optimizer_rules(config)]

    def merge(first: dict, second: dict) -> dict:
        freezes = [fields["frozen_steps"] for fields in (first, second) if "frozen_steps" in fields]
        merged = {**first, **second}
        if freezes:
            merged["frozen_steps"] = -1 if -1 in freezes else max(freezes)
        return merged

    pairs = [((p, q), merge(f, g)) for p, f in own for q, g in [*method, (".*", {})]] + [((q,), g) for q, g in method]
    return [(patterns, {**RULE_FIELDS, **fields}) for patterns, fields in pairs]


def check_rules(config: ml_collections.ConfigDict) -> str | None:
    """What is wrong with `config.optim.rules`, or None (config_lib turns it into a one-line error)."""
    for rule in config.optim.rules:
        if len(rule) != 2 or not isinstance(rule[0], str) or not isinstance(rule[1], dict):
            return f"config.optim.rules: {rule!r} is not (regex, dict(...))"
        try:
            re.compile(rule[0])
        except re.error as error:
            return f"config.optim.rules: {rule[0]!r} is not a regex ({error})"
        unknown = set(rule[1]) - set(RULE_FIELDS)
        if unknown:
            return f"config.optim.rules: unknown field {sorted(unknown)[0]!r} in {rule!r}; known: {sorted(RULE_FIELDS)}"
    return None


def parameter_groups(params, group_rules: list[tuple[str | tuple[str, ...], dict]]):
    """params → a tree of labels: the index (as a string) of the first rule matching each path, else "default".
    A rule's pattern may be several patterns that must all match."""

    def matches(patterns: str | tuple[str, ...], name: str) -> bool:
        return all(re.fullmatch(p, name) for p in ((patterns,) if isinstance(patterns, str) else patterns))

    def label(path, _) -> str:
        name = "/".join(str(getattr(key, "key", key)) for key in path)
        return next((str(i) for i, (patterns, _) in enumerate(group_rules) if matches(patterns, name)), "default")

    return jax.tree_util.tree_map_with_path(label, params)


def frozen_for(steps: int, inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """`inner` after its first `steps` updates; before, zero updates and `inner`'s state (moments, count) held."""

    def init(params):
        return dict(count=jnp.zeros([], jnp.int32), inner=inner.init(params))

    def update(updates, state, params=None):
        new_updates, new_inner = inner.update(updates, state["inner"], params)
        frozen = state["count"] < steps
        updates = jax.tree.map(lambda u: jnp.where(frozen, jnp.zeros_like(u), u), new_updates)
        inner_state = jax.tree.map(lambda new, old: jnp.where(frozen, old, new), new_inner, state["inner"])
        return updates, dict(count=state["count"] + 1, inner=inner_state)

    return optax.GradientTransformation(init, update)


def group_transform(config: ml_collections.ConfigDict, fields: dict) -> optax.GradientTransformation:
    """AdamW for one group. A group frozen for its first N steps counts its own steps from N on, so its schedules
    are shifted by N to stay on the global step."""
    frozen = fields["frozen_steps"]
    if frozen < 0:
        return optax.set_to_zero()
    learning_rate, weight_decay = (
        learning_rate_schedule(config),
        cosine_ramp(config.optim.weight_decay, config.optim.weight_decay_end, config.total_steps),
    )
    adamw = optax.adamw(
        lambda count: fields["lr_mult"] * learning_rate(count + frozen),
        b2=config.optim.b2,
        weight_decay=lambda count: fields["wd_mult"] * weight_decay(count + frozen),
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    return frozen_for(frozen, adamw) if frozen else adamw


def frozen_gradients_zeroed(group_rules: list[tuple[str | tuple[str, ...], dict]]) -> optax.GradientTransformation:
    """Zero the gradients of groups still frozen, so that they do not count in the global norm that clips the
    others' (a frozen layer's gradient says nothing about how far the rest may move)."""

    def zero_while_frozen(steps: int) -> optax.GradientTransformation:
        if steps < 0:
            return optax.set_to_zero()
        return optax.scale_by_schedule(lambda count: (count >= steps).astype(jnp.float32))

    transforms = {
        str(i): zero_while_frozen(fields["frozen_steps"])
        for i, (_, fields) in enumerate(group_rules)
        if fields["frozen_steps"]
    }
    if not transforms:
        return optax.identity()
    transforms["default"] = optax.identity()
    return optax.multi_transform(
        transforms,
        lambda params: jax.tree.map(
            lambda label: label if label in transforms else "default", parameter_groups(params, group_rules)
        ),
    )


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Frozen groups' gradients zeroed, global-norm clipping (`grad_clip=0`: none), then AdamW per group."""
    group_rules = rules(config)
    transforms = {str(i): group_transform(config, fields) for i, (_, fields) in enumerate(group_rules)}
    transforms["default"] = group_transform(config, RULE_FIELDS)
    return optax.chain(
        frozen_gradients_zeroed(group_rules),
        optax.clip_by_global_norm(config.optim.grad_clip) if config.optim.grad_clip > 0 else optax.identity(),
        optax.multi_transform(transforms, lambda params: parameter_groups(params, group_rules)),
    )
