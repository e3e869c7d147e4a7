"""The method registry: every fact about a pre-training method lives in its own file here, and the rest of rlvis
asks this module.

A method file defines one base method (`simclr`) and, through the same loss with the bootstrap stream switched on,
its annotation-bootstrapped variant (`ab_simclr`). Its interface, as module-level names:

  NAME                          the base method, e.g. "simclr"; the run's methods are NAME and "ab_" + NAME
  ANNOTATES                     whether it has an annotation distribution p(ℓ | x) — then the foresight evaluator,
                                value maps and search apply (MAE, I-JEPA: no)
  AB_VARIANT                    whether the registry offers "ab_" + NAME (the paper's three: SimCLR, DINO, CLIP)
  EMA_TEACHER                   whether the base recipe itself keeps an EMA network (DINO's teacher, SiLC's)
  FIXED_EMA                     whether that EMA keeps momentum `ema.start` throughout (SiLC) instead of rising
                                to `ema.end`
  CAPTIONS                      whether its annotation stream is captioned images (CLIP)
  IMAGE_ANNOTATIONS             whether annotations are images scored by the base head (SimCLR)
  settings()                    the config sections it reads beyond the shared ones, with their defaults
  validate(config)              its checks (rlvis.errors.ConfigError naming the field)
  build_model(config)           the network: the shared ABModel with the method's own `Heads` handed in
  annotation_views_per_step(config)     views of annotation images the online encoder encodes per step
  render_annotation(keys, batch, config)  the annotation stream's views for one step (device side)
  optimizer_rules(config)       parameter groups it needs (rlvis/optimizer.py), e.g. DINO's frozen last layer
  initial_state(config)         what the loss carries between steps (DINO's centre)
  loss(model, params, ema_params, batch, config, method_state, step) → (loss, (metrics, method_state))
  annotations(model, params, config, exemplars, channels) → Annotations: its vocabulary for value maps and search
  digit_annotation(label)       the annotation that names a demo digit class, or None where there is none
  digit_vocabulary(model, params, config, exemplar_tokens, channels) → (Annotations, P(class | annotation))

A baseline without annotations (MAE, I-JEPA) defines the same names; those that need a vocabulary raise ValueError.
A baseline built on another method (SLIP, SiLC and CLIP + Aug on CLIP) names that method's functions for what it
shares and defines what differs.

Adding a method is one file here plus its entry in FAMILIES (or, outside rlvis, `register(module)`): its settings,
checks and heads are its own, so neither the shared network (rlvis/models/ab_model.py) nor the config checks
(rlvis/config_lib.py) change.
"""

import ml_collections

from rlvis.envs import photometric
from rlvis.methods import clip, clip_aug, dino, ijepa, mae, silc, simclr, slip
from rlvis.methods.common import Annotations, ab_settings, bootstraps, validate_ab

__all__ = [
    "INTERFACE",
    "Annotations",
    "FAMILIES",
    "NAMES",
    "base_name",
    "bootstraps",
    "build_model",
    "encoded_views_per_step",
    "get",
    "has_ema_encoder",
    "register",
    "sections",
    "validate",
]

# The names a method file provides (the list above); `register` refuses a module without them.
INTERFACE = (
    "NAME",
    "ANNOTATES",
    "AB_VARIANT",
    "EMA_TEACHER",
    "FIXED_EMA",
    "CAPTIONS",
    "IMAGE_ANNOTATIONS",
    "settings",
    "validate",
    "build_model",
    "annotation_views_per_step",
    "render_annotation",
    "optimizer_rules",
    "initial_state",
    "loss",
    "annotations",
    "digit_annotation",
    "digit_vocabulary",
)

FAMILIES = {module.NAME: module for module in (simclr, dino, clip, mae, ijepa, slip, silc, clip_aug)}
NAMES = tuple(
    name for base, module in FAMILIES.items() for name in ((f"ab_{base}", base) if module.AB_VARIANT else (base,))
)


def register(module) -> None:
    """Add a method file to the registry (FAMILIES lists rlvis's own; a user's method registers itself)."""
    global NAMES
    missing = [name for name in INTERFACE if not hasattr(module, name)]
    if missing:
        raise ValueError(f"method module {module.__name__!r} lacks {missing} (rlvis/methods/__init__.py lists them)")
    if FAMILIES.get(module.NAME, module) is not module:
        raise ValueError(f"a method named {module.NAME!r} is already registered ({FAMILIES[module.NAME].__name__})")
    FAMILIES[module.NAME] = module
    NAMES = tuple(name for base, m in FAMILIES.items() for name in ((f"ab_{base}", base) if m.AB_VARIANT else (base,)))


def base_name(method: str) -> str:
    """The base method of a method name: "ab_dino" → "dino", "simclr" → "simclr"."""
    return method.removeprefix("ab_")


def get(config: ml_collections.ConfigDict):
    """The method file of `config.method` (its base method's: AB variants share it)."""
    if config.method not in NAMES:
        raise ValueError(f"config.method={config.method!r} is not one of {NAMES}")
    return FAMILIES[base_name(config.method)]


def has_ema_encoder(config: ml_collections.ConfigDict) -> bool:
    """Whether the method's own recipe keeps an EMA network: the base method's teacher (DINO), and AB's target
    network (unless the no-EMA-target ablation removes it). SimCLR and CLIP have none."""
    return get(config).EMA_TEACHER or (bootstraps(config) and config.ab.use_ema_target)


def encoded_views_per_step(config: ml_collections.ConfigDict) -> int:
    """Views the online encoder encodes per step (local crops count as views, though they are smaller)."""
    views = get(config).annotation_views_per_step(config)
    if bootstraps(config):
        views += config.env.views * config.batch.bootstrap
    return views


def build_model(config: ml_collections.ConfigDict):
    return get(config).build_model(config)


def sections(method: str) -> dict[str, dict]:
    """The config sections `method` reads beyond the shared ones, with their defaults: its file's, and `ab` for an
    AB variant (which also reads `augment`, for the photometric-bootstrap ablation)."""
    if method not in NAMES:
        raise ValueError(f"method {method!r} is not one of {NAMES}")
    found = dict(FAMILIES[base_name(method)].settings())
    if method.startswith("ab_"):
        found["ab"] = ab_settings()
        found.setdefault("augment", photometric.default_settings())
    return found


def validate(config: ml_collections.ConfigDict) -> None:
    """The method's own checks, and the AB section's for an AB variant."""
    get(config).validate(config)
    if bootstraps(config):
        validate_ab(config)
