"""What the value function learned: Q(ℓ | x, a) over a grid of actions, drawn as heat maps over the image.

From one source view x (by default the whole image), every candidate action a moves the view to a box of a given
zoom centred on a grid point. The value head predicts the annotation distribution it expects to see there; for a
chosen annotation ℓ ("a 3") the map shows p(ℓ | x, a) at each box centre: "where will I see a 3 if I move there?".

The value head scores against the run's AB vocabulary (docs/method.md), which its method file defines
(`annotations` in rlvis/methods/<method>.py): SimCLR's class c is the mean ψ_AB embedding of held-out centred
digits of class c (or of any image files the caller passes); DINO's are the K rows of the AB embedding matrix,
named "prototype k"; CLIP's are captions through the AB text head, e.g. "a 3". The distribution is the softmax
over this vocabulary with the model's AB logit scale.

    python -m rlvis.evaluators.value_maps --workdir=DIR [--image=PATH] [--annotation=3] [--step=S]
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from rlvis import cli, config_lib, methods, storage
from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env
from rlvis.methods import Annotations
from rlvis.models.ab_model import ABModel


def candidate_boxes(grid: int, zooms: Sequence[float]) -> np.ndarray:
    """float32 [Z, G, G, 4]: square boxes of side `zoom` (a fraction of the image) centred on a G×G grid, kept
    inside the image. These are the destinations of the candidate actions."""
    centres = (np.arange(grid) + 0.5) / grid
    boxes = np.zeros((len(zooms), grid, grid, 4), np.float32)
    for z, side in enumerate(zooms):
        corner = np.clip(centres - side / 2, 0.0, 1.0 - side)
        boxes[z, :, :, 0], boxes[z, :, :, 1] = corner[:, None], corner[None, :]
        boxes[z, :, :, 2:] = side
    return boxes


def base_distribution(model: ABModel, params, annotations_: Annotations, view_tokens: jax.Array) -> jax.Array:
    """p(ℓ | x) from the base model for view tokens [..., T, D] → [..., V] (the reward AB bootstraps from).
    Every base head's output is already l2-normalised."""
    embedding = model.apply(params, view_tokens, method=ABModel.base_embed)
    if annotations_.base is None:
        return jax.nn.softmax(annotations_.base_scale * embedding, axis=-1)
    return jax.nn.softmax(annotations_.base_scale * embedding @ annotations_.base.T, axis=-1)


def q_distribution(
    model: ABModel,
    params,
    config: ml_collections.ConfigDict,
    view_tokens: jax.Array,
    actions: jax.Array,
    annotations_: Annotations,
) -> jax.Array:
    """Q(ℓ | x, a) for source views' tokens [B, T, D] and relative actions [B, A, 4] → [B, A, V]: the value head
    against the AB vocabulary at its logit scale, as in training."""
    return jax.nn.softmax(model.apply(params, view_tokens, actions, annotations_.ab, method=ABModel.q_logits), -1)


def value_distribution(
    model: ABModel,
    params,
    config: ml_collections.ConfigDict,
    view_tokens: jax.Array,
    source_box: jax.Array,
    boxes: jax.Array,
    annotations_: Annotations,
) -> jax.Array:
    """Q(ℓ | x, a) for the view x at `source_box` (tokens [T, D]) and each move to boxes [A, 4] → [A, V]. Pure."""
    actions = jax.vmap(lambda target: crop_env.relative(source_box, target))(boxes)
    return q_distribution(model, params, config, view_tokens[None], actions[None], annotations_)[0]


def predict(
    model: ABModel,
    params,
    config: ml_collections.ConfigDict,
    image: np.ndarray,
    valid: np.ndarray,
    boxes: np.ndarray,
    annotations_: Annotations,
    source_box: np.ndarray = crop_env.FULL_BOX,
) -> np.ndarray:
    """p(ℓ | x, a) for every destination box: float32 [..., V] for boxes [..., 4], x the view at `source_box`."""
    source_box = jnp.asarray(source_box)
    view = crop_env.observe(jnp.asarray(image), jnp.asarray(valid), source_box, config.env.view_size)
    tokens = model.apply(params, view[None], method=ABModel.encode)[0]  # [T, D]
    probabilities = value_distribution(
        model, params, config, tokens, source_box, jnp.asarray(boxes.reshape(-1, 4)), annotations_
    )
    return np.asarray(probabilities).reshape(*boxes.shape[:-1], -1)


def save_value_map(
    path: str,
    image: np.ndarray,
    valid: np.ndarray,
    boxes: np.ndarray,
    probabilities: np.ndarray,
    names: Sequence[str],
    chosen: Sequence[int],
    zooms: Sequence[float],
    source_box: np.ndarray = crop_env.FULL_BOX,
) -> str:
    """One row per chosen annotation, one column per zoom: p(ℓ | x, a) at each box centre over the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = (int(v) for v in valid)
    picture = image[:height, :width]
    picture = picture[..., 0] if picture.shape[-1] == 1 else picture
    grid = boxes.shape[1]
    figure, axes = plt.subplots(
        len(chosen), len(zooms) + 1, figsize=(2.6 * (len(zooms) + 1), 2.6 * len(chosen)), squeeze=False
    )
    for row, annotation in enumerate(chosen):
        axes[row, 0].imshow(picture, cmap="gray")
        y0, x0, h, w = source_box * np.array([height, width, height, width])
        axes[row, 0].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, color="cyan", lw=1.5))
        axes[row, 0].set_title(f"source view; ℓ = {names[annotation]}", fontsize=8)
        for column, zoom in enumerate(zooms, start=1):
            heat = probabilities[column - 1, :, :, annotation]
            axes[row, column].imshow(picture, cmap="gray")
            axes[row, column].imshow(
                heat,
                cmap="magma",
                alpha=0.6,
                extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                vmin=0.0,
                vmax=max(float(probabilities[..., annotation].max()), 1e-6),
            )
            best = np.unravel_index(np.argmax(heat), heat.shape)
            by, bx, bh, bw = boxes[column - 1][best] * np.array([height, width, height, width])
            axes[row, column].add_patch(plt.Rectangle((bx - 0.5, by - 0.5), bw, bh, fill=False, color="lime", lw=1))
            axes[row, column].set_title(f"zoom {zoom:.2f}: max p = {heat.max():.2f}", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([]), axis.set_yticks([])
    figure.suptitle(f"value map: p(ℓ | x, move to a {grid}×{grid} grid of boxes)", fontsize=9)
    figure.tight_layout()
    storage.save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path


def _demo_scene(config: ml_collections.ConfigDict) -> dict:
    """A held-out scene (digits never seen in pre-training) with its digits' labels and boxes."""
    splits = digits_lib.load_digits(config.eval.digits_per_class)
    rng = np.random.default_rng(7)
    return digits_lib.compose_scene(
        rng,
        splits.probe_test_images,
        splits.probe_test_labels,
        canvas=config.data.scene_canvas,
        min_size=config.data.scene_min_size,
        digits_per_scene=(3, 3),
        digit_size=tuple(config.data.digit_size),
    )


def load_image(config: ml_collections.ConfigDict, path: str | None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(canvas image with the encoder's channels, valid (h, w), digit labels) for an image file, or for the
    held-out demo scene when `path` is None (the only case with labels)."""
    from rlvis.data import decode, sources

    channels = sources.image_channels(config)
    if path:
        with open(path, "rb") as f:
            canvas = config.data.scene_canvas if config.data.format == "demo" else config.data.canvas
            image, valid = decode.fit_to_canvas(decode.decode(f.read(), canvas, channels), canvas, min_side=1)
        return image, valid, []
    scene = _demo_scene(config)
    image = np.repeat(scene["image"], channels // scene["image"].shape[-1], axis=-1)  # RGB encoders see it tiled
    return image, scene["valid"], [int(v) for v in scene["labels"] if v >= 0]


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "A run's workdir.", required=True, flag_values=flag_values)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=flag_values)
    flags.DEFINE_string("image", None, "An image file (default: a held-out demo scene).", flag_values=flag_values)
    flags.DEFINE_multi_string(
        "annotation",
        None,
        "Annotation name, e.g. 3 (demo), 'a 3' (CLIP), 'prototype 7' (DINO); repeatable.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum("encoder", "ema", ["ema", "online"], "Which copy of the encoder.", flag_values=flag_values)
    flags.DEFINE_integer("grid", 9, "Box centres per side.", lower_bound=1, flag_values=flag_values)
    cli.define_numbers("zooms", (0.3, 0.5), "Box sides as fractions of the image.", flag_values)
    flags.DEFINE_string("out", None, "PNG path (default: WORKDIR/plots/value_map_<step>.png).", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> None:
    from rlvis import checkpoints
    from rlvis.data import sources

    args = cli.parse(define_flags, argv, __doc__)

    with cli.reading_checkpoint(args.workdir):
        config, state, step = checkpoints.load_run(args.workdir, args.step)
    method = methods.get(config)
    if not method.ANNOTATES:
        cli.fail(
            f"{config.method} has no annotation distribution p(ℓ | x), which value maps "
            "need; the runs of simclr, dino and clip and their ab_ variants have one"
        )
    model = method.build_model(config)
    params = state[config_lib.params_key(args.encoder)]
    image, valid, labels = load_image(config, args.image)
    annotations_ = method.annotations(model, params, config, channels=sources.image_channels(config))
    names = annotations_.names
    by_label = [name for name in map(method.digit_annotation, labels) if name is not None]
    wanted = args.annotation or by_label or names[:3]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        cli.fail(f"unknown annotation {unknown[0]!r}; this run's annotations are e.g. {names[:5]}")
    zooms = list(args.zooms)
    boxes = candidate_boxes(args.grid, zooms)
    probabilities = predict(model, params, config, image, valid, boxes, annotations_)
    path = args.out or storage.join(args.workdir, "plots", f"value_map_{step}.png")
    save_value_map(path, image, valid, boxes, probabilities, names, [names.index(n) for n in wanted], zooms)
    for name in wanted:
        p = probabilities[..., names.index(name)]
        z, i, j = np.unravel_index(np.argmax(p), p.shape)
        print(f"{name}: max p = {p.max():.3f} at box {np.round(boxes[z, i, j], 3).tolist()} (mean {p.mean():.3f})")
    print(f"rlvis: wrote {path}")


if __name__ == "__main__":
    main()
