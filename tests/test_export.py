"""Encoders out of a run: load as a Flax module, the params-only export (restorable with Orbax alone), and the
downstream fine-tuning example."""

import json
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvis import checkpoints, downstream, export, methods
from rlvis.data import digits as digits_lib
from rlvis.models.ab_model import ABModel
from tests.runs import ok, subprocess_env


@pytest.fixture(scope="module")
def workdir(tiny_run):
    return tiny_run[0]  # the shared tiny run: checkpoints at steps 3 and 6


@pytest.fixture(scope="module")
def digits():
    splits = digits_lib.load_digits(20)
    images = np.stack([digits_lib.centred_digit(d)["image"] for d in splits.probe_train_images])
    test_images = np.stack([digits_lib.centred_digit(d)["image"] for d in splits.probe_test_images])
    return (downstream.to_model_input(images), splits.probe_train_labels,
            downstream.to_model_input(test_images), splits.probe_test_labels)


def _training_tokens(workdir, images, which: str, step: int | None = None) -> np.ndarray:
    config, state, _ = checkpoints.load_run(workdir, step)
    model = methods.build_model(config)
    return np.asarray(model.apply(state[which], images, method=ABModel.encode))


@pytest.mark.parametrize("encoder,which", [("ema", "ema_params"), ("online", "params")])
def test_loaded_encoder_gives_exactly_the_training_encoders_features(workdir, digits, encoder, which):
    images = digits[0][:16]
    module, variables = export.load_encoder(str(workdir), encoder=encoder)
    np.testing.assert_array_equal(np.asarray(module.apply(variables, images)),
                                  _training_tokens(workdir, images, which))
    by_step, variables_3 = export.load_encoder(str(workdir / "checkpoints" / "3"), encoder=encoder)
    np.testing.assert_array_equal(np.asarray(by_step.apply(variables_3, images)),
                                  _training_tokens(workdir, images, which, step=3))


def test_ema_and_online_encoders_differ_and_the_choice_is_checked(workdir, digits):
    _, default = export.load_encoder(str(workdir))  # auto: the encoder AB_SimCLR's evaluation scored, the EMA one
    _, ema = export.load_encoder(str(workdir), encoder="ema")
    _, online = export.load_encoder(str(workdir), encoder="online")
    jax.tree.map(np.testing.assert_array_equal, default, ema)
    difference = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), ema, online)
    assert max(jax.tree.leaves(difference)) > 0
    with pytest.raises(ValueError, match="encoder must be 'auto' or one of"):
        export.load_encoder(str(workdir), encoder="teacher")


def test_params_only_export_restores_with_orbax_alone_and_round_trips_exactly(workdir, digits, tmp_path):
    out = tmp_path / "exported"
    export.main([f"--workdir={workdir}", f"--out={out}", "--encoder=ema"])
    with open(out / "encoder.json") as f:
        description = json.load(f)
    assert description["format"] == export.FORMAT and description["encoder"] == "ema" and description["step"] == 6
    assert description["width"] == 32 and description["depth"] == 2 and description["patch"] == 8

    # A user without rlvis: importing it must fail in this interpreter, Orbax alone restores the flat dict.
    script = ("import sys; sys.modules['rlvis'] = None\n"
              "import numpy as np, orbax.checkpoint as ocp\n"
              f"arrays = ocp.StandardCheckpointer().restore({str(out / 'params')!r})\n"
              f"np.savez({str(tmp_path / 'plain.npz')!r}, **arrays)\n")
    ok(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                      env=subprocess_env()))
    plain = dict(np.load(tmp_path / "plain.npz"))
    _, state, _ = checkpoints.load_run(str(workdir))
    expected = flax.traverse_util.flatten_dict(state["ema_params"]["params"]["encoder"], sep=".")
    assert set(plain) == set(expected) == set(description["parameters"])
    assert "block1.attn.query.kernel" in plain and "patch_embed.kernel" in plain  # the documented names
    for name, array in expected.items():
        np.testing.assert_array_equal(plain[name], np.asarray(array))
        assert list(plain[name].shape) == description["parameters"][name]

    module, variables = export.load_encoder(str(out))
    assert module.dtype == description["compute_dtype"] == "float32"
    with pytest.raises(ValueError, match="holds the ema encoder of step 6"):
        export.load_encoder(str(out), encoder="online")
    images = digits[0][:8]
    np.testing.assert_array_equal(np.asarray(module.apply(variables, images)),
                                  _training_tokens(workdir, images, "ema_params"))


def test_a_checkpoint_from_an_older_rlvis_loads_with_todays_defaults_for_fields_it_lacks(workdir, digits, tmp_path):
    """Runs written before a config field existed (here: model.compute_dtype, dino.norm_last_layer, evals)
    still load for evaluation, export and search; the fields take configs/demo.py's defaults."""
    import shutil
    old = tmp_path / "old"
    shutil.copytree(workdir, old)
    meta_file = old / "checkpoints" / "6" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["model"]["compute_dtype"], meta["config"]["dino"]["norm_last_layer"]
    del meta["config"]["evals"]  # and its evaluators named in lists, as configs did before config.evals
    meta["config"]["eval"].update(final=["demo"], monitor=["digit_monitor"], monitor_every=100)
    meta["config"]["env"]["view_size"] = 16  # a saved value is kept, never replaced by a default
    meta_file.write_text(json.dumps(meta))
    config, _, _ = checkpoints.load_run(str(old))
    assert config.model.compute_dtype == "float32" and config.dino.norm_last_layer is True
    assert config.evals.demo.final and not config.evals.foresight.final and config.evals.foresight.every == 0
    assert config.evals.digits.every == 100 and not config.evals.digits.final and config.env.view_size == 16
    module, variables = export.load_encoder(str(old))
    assert module.dtype == "float32" and module.image_size == 16


def test_frozen_finetuning_trains_only_the_head_and_unfrozen_trains_the_encoder(workdir, digits):
    images, labels, test_images, test_labels = digits
    module, variables = export.load_encoder(str(workdir))
    classifier, frozen, losses = downstream.finetune(module, variables, images, labels, num_classes=10,
                                                     frozen=True, steps=150, learning_rate=3e-3)
    jax.tree.map(np.testing.assert_array_equal, frozen["encoder"], variables["params"])
    assert np.mean(losses[-10:]) < 0.8 * losses[0]
    assert downstream.accuracy(classifier, frozen, test_images, test_labels) > 0.25  # chance: 0.1

    _, unfrozen, tuned_losses = downstream.finetune(module, variables, images, labels, num_classes=10,
                                                    frozen=False, steps=20)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), unfrozen["encoder"], variables["params"])
    assert min(jax.tree.leaves(moved)) > 0  # every encoder array was updated
    assert np.isfinite(tuned_losses).all()

    _, still, _ = downstream.finetune(module, variables, images, labels, num_classes=10, frozen=False, steps=3,
                                      encoder_learning_rate=0.0)  # 0 means 0, not "the head's rate"
    jax.tree.map(np.testing.assert_array_equal, still["encoder"], variables["params"])
