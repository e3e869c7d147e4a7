"""Take the trained encoder out of a run: a Flax module with its parameters, or a flat params-only export.

Which encoder. Every run keeps two copies of the network: the online one (trained by gradients) and its EMA
copy (the target network; DINO's teacher). **The default, `auto`, is the encoder the run's own evaluation
scored** (`eval.encoder`, itself "auto" by default: the EMA encoder where the method's recipe keeps one — AB's
target network, DINO's teacher — and the online encoder for SimCLR, CLIP and MAE alone). Either copy is one
argument away (`encoder="ema"` or `"online"`); for SimCLR-style runs the two are close, for DINO they can differ
a lot, which is why the choice is explicit and recorded in every export.

The params-only export (`export_encoder`) is a folder:

    encoder.json   what the arrays are: ViT shape (width, depth, heads, mlp_dim, patch), image size, compute
                   dtype (the arrays are float32; a bfloat16 run computed in bfloat16), channels, input range,
                   method, step, which encoder, and the parameter names with their shapes
    params/        an Orbax PyTree checkpoint of ONE flat dict name → float32 array

Restoring needs Orbax alone: `orbax.checkpoint.StandardCheckpointer().restore(os.path.abspath("<out>/params"))`
(Orbax refuses a relative path). The names are the encoder's Flax path joined by dots and do not change between
releases without a new `format` in encoder.json:

    patch_embed.kernel [p, p, C, width]   patch_embed.bias [width]   cls [1, 1, width]   pos_embedding [1, T, width]
    block{i}.norm1.{scale,bias}           block{i}.attn.{query,key,value}.kernel [width, heads, width/heads]
    block{i}.attn.out.kernel [heads, width/heads, width]             block{i}.norm2.{scale,bias}
    block{i}.mlp.fc1.{kernel,bias}        block{i}.mlp.fc2.{kernel,bias}                     norm.{scale,bias}

Inputs are images [B, H, W, C] scaled to [-1, 1]; the output is all tokens [B, 1 + (H/p)(W/p), width], CLS
first (pre-LN ViT, final LayerNorm applied; attention projections have no biases).

    python -m rlvis.export --workdir=DIR --out=DIR/export [--encoder=ema|online] [--step=S]
"""

import dataclasses
from collections.abc import Sequence

import flax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from rlvis import checkpoints, cli, config_lib, methods, storage
from rlvis.data import sources
from rlvis.models import vit

FORMAT = "rlvis-encoder-v1"
ENCODERS = ("ema", "online")


def _split_checkpoint_path(path: str) -> tuple[str, int | None]:
    """A workdir, or one of its `checkpoints/<step>` folders → (workdir, step or None for the latest)."""
    path = storage.path(storage.absolute(str(path).rstrip("/")))
    if path.name.isdigit() and path.parent.name == "checkpoints":
        return str(path.parent.parent), int(path.name)
    return str(path), None


def load_encoder(path: str, *, encoder: str = "auto", step: int | None = None) -> tuple[vit.ViT, dict]:
    """(the encoder as a Flax module, its variables `{"params": ...}`) from a workdir (latest checkpoint, or
    `step`), a `checkpoints/<step>` folder, or a folder written by `export_encoder`.

    `module.apply(variables, images)` gives the same tokens the trained model's encoder gives, bit for bit.
    """
    if (storage.path(path) / "encoder.json").exists():
        _check_encoder(encoder)
        module, variables, description = _read_export(path)
        if encoder not in ("auto", description["encoder"]) or step not in (None, description["step"]):
            raise ValueError(
                f"{path} holds the {description['encoder']} encoder of step {description['step']}, "
                f"not the {encoder} encoder of step {step}"
            )
        return module, variables
    config, params, _, _, _ = _checkpoint_encoder(path, encoder, step)
    module = vit.ViT(config.model.variant, config.env.view_size, config.model.compute_dtype)
    return module, {"params": params}


def _check_encoder(encoder: str) -> None:
    if encoder not in ("auto", *ENCODERS):
        raise ValueError(f"encoder must be 'auto' or one of {ENCODERS}, not {encoder!r}")


def _checkpoint_encoder(
    path: str, encoder: str, step: int | None
) -> tuple[ml_collections.ConfigDict, dict, int, str, str]:
    """(config, the chosen encoder's parameters, step, workdir, which encoder "auto" resolved to) from a workdir or
    a `checkpoints/<step>` folder."""
    _check_encoder(encoder)
    workdir, path_step = _split_checkpoint_path(path)
    config, state, step = checkpoints.load_run(workdir, step if step is not None else path_step)
    encoder = config_lib.eval_encoder(config) if encoder == "auto" else encoder
    return config, state[config_lib.params_key(encoder)]["params"]["encoder"], step, workdir, encoder


def export_encoder(path: str, out: str | None = None, *, encoder: str = "auto", step: int | None = None) -> str:
    """Write the params-only export (module docstring) of a workdir's (or `checkpoints/<step>` folder's)
    checkpoint to `out` (default: WORKDIR/export_<encoder>_<step>); returns `out`."""
    config, params, step, workdir, encoder = _checkpoint_encoder(path, encoder, step)
    out = storage.absolute(out or storage.join(workdir, f"export_{encoder}_{step}"))
    flat = {
        name: np.asarray(array, np.float32) for name, array in flax.traverse_util.flatten_dict(params, sep=".").items()
    }
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(storage.join(out, "params"), flat, force=True)
    checkpointer.wait_until_finished()
    shape = vit.variant_shape(config.model.variant)
    description = dict(
        format=FORMAT,
        variant=config.model.variant,
        **dataclasses.asdict(shape),
        image_size=config.env.view_size,
        compute_dtype=config.model.compute_dtype,
        channels=sources.image_channels(config),
        input="images [B, H, W, C] float in [-1, 1]",
        output="tokens [B, 1 + (H/patch)(W/patch), width], CLS first",
        method=config.method,
        base_method=methods.base_name(config.method),
        step=int(step),
        encoder=encoder,
        source=workdir,
        parameters={name: list(array.shape) for name, array in sorted(flat.items())},
    )
    storage.write_json(storage.join(out, "encoder.json"), description, indent=1)
    return out


def _read_export(out: str) -> tuple[vit.ViT, dict, dict]:
    """(ViT module, variables, encoder.json) of an `export_encoder` folder."""
    description = storage.read_json(storage.join(out, "encoder.json"))
    if description.get("format") != FORMAT:
        raise ValueError(f"{out}: export format {description.get('format')!r}, this rlvis reads {FORMAT!r}")
    flat = ocp.StandardCheckpointer().restore(storage.join(storage.absolute(out), "params"))
    params = flax.traverse_util.unflatten_dict({tuple(name.split(".")): array for name, array in flat.items()})
    module = vit.ViT(description["variant"], description["image_size"], description["compute_dtype"])
    return module, {"params": params}, description


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "workdir",
        None,
        "A run's workdir or one of its checkpoints/<step> folders.",
        required=True,
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "out", None, "Output folder (default: WORKDIR/export_<encoder>_<step>).", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "encoder",
        "auto",
        ["auto", *ENCODERS],
        "Which copy of the encoder (auto: the one the run's evaluation scored).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    with cli.reading_checkpoint(args.workdir):
        out = export_encoder(args.workdir, args.out, encoder=args.encoder, step=args.step)
    description = storage.read_json(storage.join(out, "encoder.json"))
    print(
        f"rlvis: exported the {description['encoder']} encoder of step {description['step']} ({description['variant']}, "
        f"{len(description['parameters'])} arrays) to {out}"
    )


if __name__ == "__main__":
    main()
