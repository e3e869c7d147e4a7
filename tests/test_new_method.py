"""A method added from outside rlvis: one module with the registry's interface (rlvis/methods/__init__.py), its own
config section and its own heads, registered at run time with `methods.register`. configs/demo.py builds its config,
config_lib validates it, and the trainer trains it, with no edit to the shared network (rlvis/models/ab_model.py)
or the config checks (rlvis/config_lib.py).

The toy method: two crops of each annotation image, one Dense head on the encoder's CLS token, NT-Xent between
the crops at `toy.temperature`. No annotation distribution, no AB variant, no EMA teacher.
"""

import dataclasses
import math
import types

import flax.linen as nn
import jax
import ml_collections
import pytest

from configs import demo
from rlvis import config_lib, methods
from rlvis.envs import crop_env
from rlvis.methods.common import build_ab_model, check_range, require
from rlvis.models.ab_model import ABModel
from rlvis.models.heads import l2_normalize
from rlvis.objectives import simclr
from tests.runs import NO_EVAL, load_state, metrics, saved_meta, train

NO_ANNOTATIONS = "the toy method has no annotation vocabulary"


def settings() -> dict[str, dict]:
    return dict(toy=dict(temperature=0.2, dim=16, scale=(0.25, 1.0)))


def validate(config: ml_collections.ConfigDict) -> None:
    require(config.toy.temperature > 0, f"config.toy.temperature={config.toy.temperature} must be positive")
    check_range(config, "toy", "scale")


@dataclasses.dataclass(frozen=True)
class Heads:
    """One Dense layer on the CLS token."""

    dim: int

    def setup(self, model: ABModel) -> None:
        model.base_head = nn.Dense(self.dim, name="base_head")

    def init_outputs(self, model: ABModel, tokens: jax.Array, actions: jax.Array, captions=None):
        return model.base_embed(tokens)


def build_model(config: ml_collections.ConfigDict) -> ABModel:
    return build_ab_model(config, Heads(config.toy.dim), init_logit_scale=1.0)


def annotation_views_per_step(config: ml_collections.ConfigDict) -> int:
    return 2 * config.batch.annotation


def render_annotation(keys: jax.Array, batch: dict, config: ml_collections.ConfigDict) -> dict:
    rollout = crop_env.batch_rollout(
        keys[0],
        batch["image"],
        batch["valid"],
        num_views=2,
        scale=tuple(config.toy.scale),
        size=config.env.view_size,
        ratio=tuple(config.env.ratio),
    )
    return dict(annotation_views=rollout["views"])  # [K, 2, S, S, C]


def optimizer_rules(config: ml_collections.ConfigDict) -> list:
    return []


def initial_state(config: ml_collections.ConfigDict) -> dict:
    return {}


def loss(model, params, ema_params, batch, config, method_state=None, step=None):
    tokens = model.apply(params, batch["annotation_views"], method=ABModel.encode)  # [K, 2, T, D]
    z = l2_normalize(model.apply(params, tokens, method=ABModel.base_embed))
    value, accuracy = simclr.nt_xent(z[:, 0], z[:, 1], config.toy.temperature)
    return value, (dict(loss=value, base_loss=value, base_accuracy=accuracy), {})


def annotations(model, params, config, exemplars=None, channels: int = 1):
    raise ValueError(NO_ANNOTATIONS)


def digit_annotation(label: int) -> None:
    return None


def digit_vocabulary(model, params, config, exemplar_tokens, channels):
    raise ValueError(NO_ANNOTATIONS)


def toy_module() -> types.ModuleType:
    """The functions above, with the method's flags, as one module: what a user's method file would be."""
    module = types.ModuleType("toy_method")
    module.__dict__.update(
        NAME="toy",
        ANNOTATES=False,
        AB_VARIANT=False,
        EMA_TEACHER=False,
        FIXED_EMA=False,
        CAPTIONS=False,
        IMAGE_ANNOTATIONS=False,
    )
    module.__dict__.update({name: globals()[name] for name in methods.INTERFACE if name not in module.__dict__})
    return module


@pytest.fixture
def toy(monkeypatch):
    """The toy method registered for one test; the registry (FAMILIES and NAMES) is restored afterwards."""
    monkeypatch.setattr(methods, "FAMILIES", dict(methods.FAMILIES))
    monkeypatch.setattr(methods, "NAMES", methods.NAMES)
    module = toy_module()
    methods.register(module)
    return module


def test_the_toy_provides_the_documented_interface_as_every_method_file_does():
    for name in methods.INTERFACE:
        assert name in methods.__doc__, name  # the registry documents each name the toy provides
    for module in [toy_module(), *methods.FAMILIES.values()]:
        assert not [name for name in methods.INTERFACE if not hasattr(module, name)], module.NAME


def test_an_unregistered_method_is_refused_by_name():
    assert "toy" not in methods.NAMES  # also after the other tests: their registration was undone
    with pytest.raises(ValueError, match="method='toy' is not one of"):
        demo.get_config("tiny,method=toy")


def test_a_registered_method_gets_a_config_of_its_own_sections_and_its_own_checks(toy):
    assert "toy" in methods.NAMES and "ab_toy" not in methods.NAMES and methods.FAMILIES["toy"] is toy
    assert methods.sections("toy") == settings()
    config = demo.get_config("tiny,method=toy")
    assert config.method == "toy" and config.toy.to_dict() == settings()["toy"]
    for other in ("ab", "simclr", "dino", "clip", "augment"):  # sections only other methods read
        assert other not in config, other
    assert "foresight" not in config.evals  # no annotation distribution to foresee with
    config_lib.validate(config, 8)
    config.toy.temperature = 0.0
    with pytest.raises(config_lib.ConfigError, match=r"^config.toy.temperature=0.0 must be positive$"):
        config_lib.validate(config, 1)
    config.toy.temperature, config.toy.scale = 0.2, (0.5, 0.25)
    with pytest.raises(config_lib.ConfigError, match=r"config.toy.scale=\(0.5, 0.25\) must satisfy"):
        config_lib.validate(config, 1)
    # Switching methods swaps the sections: the toy's go, SimCLR's come with their defaults, and back.
    simclr_config = config_lib.apply_variant(demo.get_config("tiny,method=toy"), "simclr")
    assert "toy" not in simclr_config and "simclr" in simclr_config
    back = config_lib.apply_variant(simclr_config, "toy+toy.temperature=0.5")
    assert back.toy.temperature == 0.5 and "simclr" not in back and "augment" not in back
    config_lib.validate(back, 1)


def test_a_registered_method_trains_checkpoints_and_refuses_a_changed_section_on_resume(toy, tmp_path):
    run = train(tmp_path, *NO_EVAL, "total_steps=2", config="configs/demo.py:tiny,method=toy")
    assert "step 2/2 | loss" in run.stdout and "td_loss" not in run.stdout
    results = run.results
    assert results["config"]["method"] == "toy" and results["config"]["toy"]["temperature"] == 0.2
    assert results["encoder"] == "online"  # no EMA teacher, no AB target: the online encoder is scored
    logged = metrics(tmp_path)
    assert sorted(logged) == [1, 2] and all(math.isfinite(logged[s]["loss"]) for s in (1, 2))
    assert 0.0 <= logged[2]["base_accuracy"] <= 1.0
    assert saved_meta(tmp_path, 2)["data_position"] == {"annotation": 2 * 16}  # the annotation stream alone
    params = load_state(tmp_path, 2)["params"]["params"]
    assert params["base_head"]["kernel"].shape[-1] == 16  # the toy's own head, at its own `toy.dim`
    assert {"encoder", "base_head"} <= set(params) and "value_head" not in params
    changed = demo.get_config("tiny,method=toy")
    changed.toy.temperature = 0.5
    with pytest.raises(config_lib.ConfigError, match=r"toy.temperature: 0.2 -> 0.5"):
        config_lib.check_resume(saved_meta(tmp_path, 2)["config"], changed)
