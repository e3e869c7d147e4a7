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
from tests.runs import ok, subprocess_env, usage_error


@pytest.fixture(scope="module")
def workdir(tiny_run):
    return tiny_run[0]  # the shared tiny run: checkpoints at steps 3 and 6


@pytest.fixture(scope="module")
def digits():
    splits = digits_lib.load_digits(20)
    images = np.stack([digits_lib.centred_digit(d)["image"] for d in splits.probe_train_images])
    test_images = np.stack([digits_lib.centred_digit(d)["image"] for d in splits.probe_test_images])
    return (
        downstream.to_model_input(images),
        splits.probe_train_labels,
        downstream.to_model_input(test_images),
        splits.probe_test_labels,
    )


def _training_tokens(workdir, images, which: str, step: int | None = None) -> np.ndarray:
    config, state, _ = checkpoints.load_run(workdir, step)
    model = methods.build_model(config)
    return np.asarray(model.apply(state[which], images, method=ABModel.encode))


@pytest.mark.parametrize("encoder,which", [("ema", "ema_params"), ("online", "params")])
def test_loaded_encoder_gives_exactly_the_training_encoders_features(workdir, digits, encoder, which):
    images = digits[0][:16]
    module, variables = export.load_encoder(str(workdir), encoder=encoder)
    np.testing.assert_array_equal(np.asarray(module.apply(variables, images)), _training_tokens(workdir, images, which))
    by_step, variables_3 = export.load_encoder(str(workdir / "checkpoints" / "3"), encoder=encoder)
    np.testing.assert_array_equal(
        np.asarray(by_step.apply(variables_3, images)), _training_tokens(workdir, images, which, step=3)
    )


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
    script = (
        "import sys; sys.modules['rlvis'] = None\n"
        "import numpy as np, orbax.checkpoint as ocp\n"
        f"arrays = ocp.StandardCheckpointer().restore({str(out / 'params')!r})\n"
        f"np.savez({str(tmp_path / 'plain.npz')!r}, **arrays)\n"
    )
    ok(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=subprocess_env()
        )
    )
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
    np.testing.assert_array_equal(
        np.asarray(module.apply(variables, images)), _training_tokens(workdir, images, "ema_params")
    )


def test_a_saved_config_is_read_back_as_it_was_saved_and_an_older_format_is_refused(workdir, tmp_path):
    """load_run and saved_config return the checkpoint's own config, no field filled in or replaced by today's
    defaults; a checkpoint of an older format (no `format` in its metadata) is refused in one line naming the
    version, by load_run, saved_config and export alike."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(workdir, old)
    meta_file = old / "checkpoints" / "6" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    assert meta["format"] == checkpoints.FORMAT
    meta["config"]["env"]["view_size"] = 16  # a saved value is kept, never replaced by a default
    meta["config"]["eval"]["no_such_field"] = 1  # and a field today's configs lack is kept too
    meta_file.write_text(json.dumps(meta))
    config, _, _ = checkpoints.load_run(str(old))
    assert config.to_dict() == meta["config"] == checkpoints.saved_config(str(old), 6).to_dict()
    module, _ = export.load_encoder(str(old))
    assert module.image_size == 16

    del meta["format"]  # as an rlvis before checkpoint format 2 wrote it
    meta_file.write_text(json.dumps(meta))
    for load in (
        lambda: checkpoints.load_run(str(old)),
        lambda: checkpoints.saved_config(str(old), 6),
        lambda: export.load_encoder(str(old)),
    ):
        with pytest.raises(
            checkpoints.FormatError,
            match=r"^step 6 in .*: checkpoint format 1, this rlvis reads "
            r"format 2; train a new run",
        ):
            load()
    checkpoints.load_run(str(old), step=3)  # the other step was written in today's format


def test_export_command_refuses_an_older_format_in_one_line(workdir, tmp_path, capsys):
    import shutil

    old = shutil.copytree(workdir, tmp_path / "old")
    for step in (3, 6):
        meta_file = old / "checkpoints" / str(step) / "meta" / "metadata"
        meta_file.write_text(json.dumps({k: v for k, v in json.loads(meta_file.read_text()).items() if k != "format"}))
    assert "checkpoint format 1, this rlvis reads format 2" in usage_error(capsys, export.main, [f"--workdir={old}"])


def test_frozen_finetuning_trains_only_the_head_and_unfrozen_trains_the_encoder(workdir, digits):
    images, labels, test_images, test_labels = digits
    module, variables = export.load_encoder(str(workdir))
    classifier, frozen, losses = downstream.finetune(
        module, variables, images, labels, num_classes=10, frozen=True, steps=150, learning_rate=3e-3
    )
    jax.tree.map(np.testing.assert_array_equal, frozen["encoder"], variables["params"])
    assert np.mean(losses[-10:]) < 0.8 * losses[0]
    assert downstream.accuracy(classifier, frozen, test_images, test_labels) > 0.25  # chance: 0.1

    _, unfrozen, tuned_losses = downstream.finetune(
        module, variables, images, labels, num_classes=10, frozen=False, steps=20
    )
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), unfrozen["encoder"], variables["params"])
    assert min(jax.tree.leaves(moved)) > 0  # every encoder array was updated
    assert np.isfinite(tuned_losses).all()

    _, still, _ = downstream.finetune(
        module, variables, images, labels, num_classes=10, frozen=False, steps=3, encoder_learning_rate=0.0
    )  # 0 means 0, not "the head's rate"
    jax.tree.map(np.testing.assert_array_equal, still["encoder"], variables["params"])
