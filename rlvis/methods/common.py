"""What every method file shares: its vocabulary type, the AB settings and checks, the network's common fields."""

import flax
import jax
import ml_collections

from rlvis.errors import ConfigError
from rlvis.models.ab_model import ABModel, Heads
from rlvis.objectives import rewards


@flax.struct.dataclass
class Annotations:
    """A run's annotation vocabulary, read two ways: by the value head (ψ_AB) and by the base model. A pytree
    whose names are static, so it passes straight into jitted functions (rlvis.search)."""

    names: tuple[str, ...] = flax.struct.field(pytree_node=False)
    ab: jax.Array  # [V, d] ψ_AB embeddings: Q(ℓ | x, a) = softmax_ℓ(scale · value_embed · ab.T)
    base: jax.Array | None  # [V, d'] base-head embeddings, or None where the base head's outputs are the logits
    base_scale: jax.Array  # p(ℓ | x) = softmax_ℓ(base_scale · base_embed(x) · base.T)


def bootstraps(config: ml_collections.ConfigDict) -> bool:
    """AB methods train the value head on the bootstrap stream; base methods ignore that stream."""
    return config.method.startswith("ab_")


def require(ok: bool, message: str) -> None:
    """A method's config check: `message` names the field that cannot work."""
    if not ok:
        raise ConfigError(message)


def check_range(config: ml_collections.ConfigDict, section: str, field: str, upper: float | None = 1.0) -> None:
    """A (min, max) field with 0 < min <= max (<= upper)."""
    lo, hi = config[section][field]
    require(
        0 < lo <= hi and (upper is None or hi <= upper),
        f"config.{section}.{field}={(lo, hi)} must satisfy "
        f"0 < min <= max" + ("" if upper is None else f" <= {upper:g}"),
    )


def ab_settings() -> dict:
    """The `ab` section of every AB method: the paper's hyperparameters, its Table-5 ablations and the reward."""
    return dict(
        gamma=0.0,  # 0 = the ICML objective; > 0 adds γ·max_a' Q_ema(ℓ|x',a') (the project-page form)
        exclude_source=False,  # γ > 0: leave the move back to the source view out of max_a' (objectives/td.py)
        loss_weight=1.0,  # paper Table 7 "loss ratio"
        # AB_SimCLR: each annotation's mean target logit over the bootstrap batch removed (rlvis's departure, on by
        # default: docs/method.md); the other bases have no such target and ignore it
        center_target=True,
        reward="base",  # the base model's p(ℓ | x'), or a diagnostic control (rlvis/objectives/rewards.py)
        use_ema_target=True,  # ablation: False = the online network (stop-gradient) makes the AB targets
        base_loss_weight=1.0,  # ablation: 0 = no annotation (base) loss
        action_tokens=True,  # ablation: False = a mask token for every action (invariance)
        photometric_bootstrap=False,  # ablation: True = colour augmentation on the bootstrap views too (no flips)
    )


def validate_ab(config: ml_collections.ConfigDict) -> None:
    c = config
    require(0.0 <= c.ab.gamma < 1.0, f"config.ab.gamma={c.ab.gamma} must be in [0, 1)")
    require(
        not (c.ab.exclude_source and c.ab.gamma > 0) or c.env.views >= 3,
        "config.ab.exclude_source with gamma > 0 needs config.env.views >= 3 (a next move other than going back)",
    )
    require(c.ab.base_loss_weight >= 0, "config.ab.base_loss_weight must be >= 0")
    reward_error = rewards.check(c)
    require(reward_error is None, reward_error)


def build_ab_model(config: ml_collections.ConfigDict, heads: Heads, init_logit_scale: float) -> ABModel:
    """The AB network with the fields every method shares and the method's own `heads`."""
    return ABModel(
        variant=config.model.variant,
        image_size=config.env.view_size,
        heads=heads,
        proj_dim=config.model.proj_dim,
        action_bins=config.env.action_bins,
        decoder_depth=config.model.decoder_depth,
        decoder_width=config.model.decoder_width,
        decoder_heads=config.model.decoder_heads,
        init_logit_scale=init_logit_scale,
        compute_dtype=config.model.compute_dtype,
        remat=config.model.remat,
        box_attention=config.model.box_attention,
        mask_actions=bootstraps(config) and not config.ab.action_tokens,
    )
