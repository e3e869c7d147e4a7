"""What every method file shares: its vocabulary type, whether a run bootstraps, the network's common fields."""

import flax
import jax
import ml_collections

from rlvis.models.ab_model import ABModel


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


def build_ab_model(config: ml_collections.ConfigDict, base: str, init_logit_scale: float, **base_fields) -> ABModel:
    """The AB network with the fields every method shares; `base` picks the heads (models/ab_model.py)."""
    return ABModel(variant=config.model.variant, image_size=config.env.view_size, proj_dim=config.model.proj_dim,
                   proj_hidden=config.model.proj_hidden, action_bins=config.env.action_bins,
                   decoder_depth=config.model.decoder_depth, decoder_width=config.model.decoder_width,
                   decoder_heads=config.model.decoder_heads, init_logit_scale=init_logit_scale, base=base,
                   compute_dtype=config.model.compute_dtype, remat=config.model.remat,
                   action_encoding=config.model.action_encoding, source_positions=config.model.source_positions,
                   box_attention=config.model.box_attention,
                   mask_actions=not config.ab.action_tokens, shared_vocabulary=config.ab.shared_vocabulary,
                   value_residual=config.model.value_residual, normalize_value=config.model.normalize_value,
                   **base_fields)
