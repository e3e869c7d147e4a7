"""Act with the value function: move the view, step by step, toward a chosen annotation (active visual search).

AB trains Q(ℓ | x, a): "which annotations will I see if I move the view like this?" (docs/method.md). A policy can
therefore *maximise* an annotation: from the current view it scores every candidate move with Q(ℓ | x, a),
takes the best (greedy) or samples one (softmax at a temperature), renders the new view and repeats. With γ > 0
the value also carries annotations reachable several moves away, which is what a multi-step search needs.

The moves are relative actions of the crop environment (`rlvis.envs.crop_env`): pan the centre by a fraction of
the current box side along each axis, and zoom by a factor, the result kept inside the image and no smaller than
`min_side`. Policies differ only in how they score a move:
  * `value`: Q(ℓ | x, a) from the value head; one encoder pass per step (the current view) plus one value-head
    query per candidate move;
  * `brute_force`: render every candidate view x' and score it with the base model's p(ℓ | x'); one encoder
    pass per candidate per step (the cost the value head saves);
  * `random`: uniform over the same moves, no model.

    python -m rlvis.search --workdir=DIR [--image=PATH] --annotation=3 [--steps=5] [--policy=value]
    python -m rlvis.search --measure --workdir=GAMMA0 --workdir=GAMMA05 [--scenes=500]   # success-rate table
"""

import json
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from rlvis import cli, config_lib, methods, storage
from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env
from rlvis.evaluators import foresight, value_maps
from rlvis.methods import Annotations
from rlvis.models.ab_model import ABModel

POLICIES = ("value", "brute_force", "random")
PANS, ZOOMS, MIN_SIDE = (-0.25, 0.0, 0.25), (1.0, 0.7), 0.25  # default moves: 18 per step, "stay" included


def move_grid(pans: Sequence[float], zooms: Sequence[float]) -> np.ndarray:
    """float32 [A, 3]: every (Δy, Δx, zoom), Δy and Δx from `pans` (fractions of the current box side)."""
    return np.array([(dy, dx, zoom) for zoom in zooms for dy in pans for dx in pans], np.float32)


# A scorer maps (params, annotations, image, valid, current box, candidate boxes [A, 4], target) to scores [A]
# in [0, 1]: the policy's estimate of the target's probability after each move. The built-in scorers read the
# target as weights [V] over the vocabulary (one-hot for one annotation; a class's share of each annotation for a
# digit class), so a target's probability is the mass on its annotations.
Scorer = Callable[..., jax.Array]


def _scorer(model: ABModel, config: ml_collections.ConfigDict, policy: str) -> Scorer:
    size = config.env.view_size

    def value(params, annotations: Annotations, image, valid, box, candidates, target):
        view = crop_env.observe(image, valid, box, size)
        tokens = model.apply(params, view[None], method=ABModel.encode)[0]
        return value_maps.value_distribution(model, params, config, tokens, box, candidates, annotations) @ target

    def brute_force(params, annotations: Annotations, image, valid, box, candidates, target):
        views = jax.vmap(lambda b: crop_env.observe(image, valid, b, size))(candidates)
        tokens = model.apply(params, views, method=ABModel.encode)
        return value_maps.base_distribution(model, params, annotations, tokens) @ target

    def uniform(params, annotations, image, valid, box, candidates, target):
        return jnp.ones(candidates.shape[0], jnp.float32)

    return {"value": value, "brute_force": brute_force, "random": uniform}[policy]


def encoder_passes_per_search(policy: str, steps: int, num_moves: int) -> int:
    """Encoder forward passes (views rendered and encoded) one search costs."""
    return {"value": steps, "brute_force": steps * num_moves, "random": 0}[policy]


def choose(scores: jax.Array, key: jax.Array, temperature: float) -> jax.Array:
    """Greedy (temperature 0: the first best move) or a sample from softmax(log score / temperature)."""
    if temperature == 0.0:
        return jnp.argmax(scores)
    return jax.random.categorical(key, jnp.log(jnp.maximum(scores, 1e-12)) / temperature)


def make_search(
    model: ABModel,
    config: ml_collections.ConfigDict,
    *,
    policy: str | Scorer = "value",
    steps: int = 5,
    pans: Sequence[float] = PANS,
    zooms: Sequence[float] = ZOOMS,
    min_side: float = MIN_SIDE,
    temperature: float = 0.0,
) -> Callable[..., dict]:
    """The policy as a pure, jittable function for one image:

        search(params, annotations, image, valid, target, key, start) → {boxes [K+1, 4], scores [K]}

    `target` is what the scorer reads (built-in scorers: weights [V] over `annotations`, see `one_hot`); `start`
    is the first box (e.g. crop_env.FULL_BOX); `boxes[k]` is the view after k moves and `scores[k]` the chosen
    move's score. `jax.vmap` it over images (see `search_batch`).
    `policy` names a scorer in POLICIES or is a `Scorer` itself (a hand-made value function).
    """
    if not callable(policy) and policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    score = policy if callable(policy) else _scorer(model, config, policy)
    moves = jnp.asarray(move_grid(pans, zooms))
    temperature = 1.0 if policy == "random" else temperature  # uniform scores: sampling is the random policy

    def search(params, annotations: Annotations, image, valid, target, key, start) -> dict:
        def move(box, step_key):
            candidates = crop_env.pan_zoom(box, moves, min_side)
            scores = score(params, annotations, image, valid, box, candidates, target)
            chosen = choose(scores, step_key, temperature)
            return candidates[chosen], (candidates[chosen], scores[chosen])

        _, (boxes, scores) = jax.lax.scan(move, start, jax.random.split(key, steps))
        return dict(boxes=jnp.concatenate([start[None], boxes]), scores=scores)

    return search


def one_hot(annotations: Annotations, name: str) -> jax.Array:
    """The target weights of one annotation: 1 on it, 0 elsewhere."""
    return jax.nn.one_hot(annotations.names.index(name), len(annotations.names))


def search_batch(search: Callable[..., dict]) -> Callable[..., dict]:
    """`search` vmapped over (image, valid, target, key, start) and jitted; params and annotations shared."""
    return jax.jit(jax.vmap(search, in_axes=(None, None, 0, 0, 0, 0, 0)))


# ------------------------------------------------------------------------------------------------- measurement


def centre_inside(box: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Whether each box's centre lies inside the target box (both [..., 4] as (y0, x0, h, w))."""
    centre = box[..., :2] + box[..., 2:] / 2
    return np.all((centre >= target[..., :2]) & (centre <= target[..., :2] + target[..., 2:]), axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes [..., 4] (y0, x0, h, w)."""
    low = np.maximum(a[..., :2], b[..., :2])
    high = np.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=-1)
    return inter / (np.prod(a[..., 2:], axis=-1) + np.prod(b[..., 2:], axis=-1) - inter)


def found(final: np.ndarray, boxes: np.ndarray, labels: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per search, whether the final box [N, 4] found a digit of the target label: its centre inside the box of
    any such digit ("centre"), or IoU ≥ 0.5 with one ("iou50"); and whether its centre is inside any digit's box
    whatever the label ("any_digit": a policy that finds objects but not the asked-for class scores here only).
    boxes [N, D, 4], labels [N, D] (-1: none)."""
    is_target = labels == target[:, None]
    inside = centre_inside(final[:, None], boxes)
    overlap = (iou(final[:, None], boxes) >= 0.5) & is_target
    return dict(
        centre=(inside & is_target).any(axis=1),
        iou50=overlap.any(axis=1),
        any_digit=(inside & (labels >= 0)).any(axis=1),
    )


def held_out_scenes(config: ml_collections.ConfigDict, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`count` demo scenes of held-out digits (never seen in pre-training), each with one of its digits' labels
    drawn as the target: image [N, H, W, 1], valid [N, 2], boxes [N, D, 4], labels [N, D] (-1: none),
    target_label [N]. A scene may hold the target label twice; reaching either digit counts."""
    splits = digits_lib.load_digits(config.eval.digits_per_class)
    rng = np.random.default_rng(seed)
    scenes = digits_lib.compose_scenes(rng, splits.probe_test_images, splits.probe_test_labels, count, config.data)
    targets = [int(labels[rng.integers(n)]) for labels, n in zip(scenes["labels"], scenes["count"])]
    return dict(
        image=scenes["image"],
        valid=scenes["valid"],
        boxes=scenes["boxes"],
        labels=scenes["labels"],
        target_label=np.array(targets, np.int32),
    )


def measure(
    workdir: str,
    *,
    scenes: int,
    steps: int,
    policies: Sequence[tuple[str, float]],
    encoder: str = "ema",
    chunk: int = 100,
    pans: Sequence[float] = PANS,
    zooms: Sequence[float] = ZOOMS,
    min_side: float = MIN_SIDE,
) -> list[dict]:
    """Success rates of each (policy, temperature) on held-out demo scenes for one run's latest checkpoint.

    The target is the scene's digit class, read as the foresight evaluator reads it: the vocabulary is held-out
    exemplar digits (each its own annotation, as in training) and a class's probability is the mass on its
    exemplars (`digit_vocabulary` of the run's method file). Success: the final box's centre lies inside the
    tight box of a digit with the target label ("the view is centred on such a digit"); the stricter IoU ≥ 0.5
    with it is reported beside it. Time per search excludes compilation (one untimed chunk first; the last chunk
    is padded to full size).
    """
    from rlvis import checkpoints
    from rlvis.data import sources

    config, state, step = checkpoints.load_run(workdir)
    if config.data.format != "demo":
        raise ValueError(f"{workdir} was not trained on the demo data; search success is measured on demo scenes")
    method = methods.get(config)
    model = method.build_model(config)
    params = state[config_lib.params_key(encoder)]
    channels = sources.image_channels(config)
    annotations, class_of_annotation = foresight.digit_vocabulary(model, params, config, channels)
    data = held_out_scenes(config, scenes)
    targets = np.asarray(class_of_annotation).T[data["target_label"]]  # [N, V]
    images = np.repeat(data["image"], channels // data["image"].shape[-1], axis=-1)
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(1), scenes))
    chunk = min(chunk, scenes)
    num_moves = len(move_grid(pans, zooms))

    def row(policy: str, temperature: float, final: np.ndarray, seconds: float) -> dict:
        success = found(final, data["boxes"], data["labels"], data["target_label"])
        return dict(
            workdir=workdir,
            step=step,
            gamma=float(config.ab.gamma) if "ab" in config else 0.0,
            policy=policy,
            temperature=temperature,
            scenes=scenes,
            steps=steps if policy in POLICIES else 0,
            success=float(success["centre"].mean()),
            success_iou50=float(success["iou50"].mean()),
            any_digit=float(success["any_digit"].mean()),
            encoder_passes=encoder_passes_per_search(policy, steps, num_moves) if policy in POLICIES else 0,
            seconds_per_search=seconds / scenes,
        )

    rows = []
    for policy, temperature in policies:
        search = search_batch(
            make_search(
                model,
                config,
                policy=policy,
                steps=steps,
                temperature=temperature,
                pans=pans,
                zooms=zooms,
                min_side=min_side,
            )
        )

        def run(begin: int) -> np.ndarray:
            part = np.arange(begin, begin + chunk) % scenes  # the last chunk wraps round: one compiled shape
            result = search(
                params,
                annotations,
                jnp.asarray(images[part]),
                jnp.asarray(data["valid"][part]),
                jnp.asarray(targets[part]),
                jnp.asarray(keys[part]),
                jnp.tile(jnp.asarray(crop_env.FULL_BOX), (chunk, 1)),
            )
            return np.asarray(result["boxes"][:, -1])

        run(0)  # compile
        started = time.perf_counter()
        final = np.concatenate([run(begin) for begin in range(0, scenes, chunk)])[:scenes]
        rows.append(row(policy, temperature, final, time.perf_counter() - started))
    rows.append(row("no move (full view)", 0.0, np.tile(crop_env.FULL_BOX, (scenes, 1)), 0.0))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'γ':>5}  {'policy':<22}{'success':>9}{'IoU≥.5':>9}{'any digit':>11}{'enc. passes':>13}{'ms/search':>11}"
    ]
    for row in rows:
        name = row["policy"] + (f" τ={row['temperature']:g}" if row["policy"] == "value" and row["temperature"] else "")
        lines.append(
            f"{row['gamma']:>5.2f}  {name:<22}{row['success']:>9.3f}{row['success_iou50']:>9.3f}"
            f"{row['any_digit']:>11.3f}{row['encoder_passes']:>13d}{1000 * row['seconds_per_search']:>11.2f}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ picture


def save_path_picture(
    path: str, image: np.ndarray, valid: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None, title: str
) -> str:
    """The image with the search's boxes, start (cyan) → end (lime), and the move arrows between centres, each
    labelled with the chosen move's score (None: step numbers only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = (int(v) for v in valid)
    picture = image[:height, :width]
    picture = picture[..., 0] if picture.shape[-1] == 1 else picture
    figure, axis = plt.subplots(figsize=(4.2, 4.2 * height / width + 0.4))
    axis.imshow(picture, cmap="gray")
    scale = np.array([height, width, height, width])
    colours = plt.cm.cool(np.linspace(0.0, 1.0, len(boxes)))
    for k, box in enumerate(boxes):
        y0, x0, h, w = box * scale
        final = k == len(boxes) - 1
        axis.add_patch(
            plt.Rectangle(
                (x0 - 0.5, y0 - 0.5), w, h, fill=False, lw=2.2 if final else 1.0, color="lime" if final else colours[k]
            )
        )
        if k and not np.array_equal(box, boxes[k - 1]):  # a "stay" move draws nothing new
            (py, px), (cy, cx) = [(b[:2] + b[2:] / 2) * scale[:2] for b in (boxes[k - 1], box)]
            axis.annotate(
                "", (cx - 0.5, cy - 0.5), (px - 0.5, py - 0.5), arrowprops=dict(arrowstyle="->", color="yellow", lw=1.2)
            )
            label = f"{k}" if scores is None else f"{k}: {scores[k - 1]:.2f}"
            axis.text(cx - 0.5, cy - 0.5, label, color="yellow", fontsize=7)
    axis.set_xticks([]), axis.set_yticks([])
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    storage.save_figure(figure, path, dpi=120)
    plt.close(figure)
    return path


# ---------------------------------------------------------------------------------------------------------- CLI


def define_flags(flag_values: flags.FlagValues) -> None:
    fv = flag_values
    flags.DEFINE_multi_string(
        "workdir", None, "A run's workdir (repeat with --measure).", required=True, flag_values=fv
    )
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=fv)
    flags.DEFINE_string("image", None, "An image file (default: a held-out demo scene).", flag_values=fv)
    flags.DEFINE_string(
        "annotation",
        None,
        "What to look for: 3 (demo), 'a 3' or any caption (CLIP), 'prototype 7' (DINO).",
        flag_values=fv,
    )
    flags.DEFINE_enum("policy", "value", list(POLICIES), "How each move is chosen.", flag_values=fv)
    flags.DEFINE_float("temperature", 0.0, "0: greedy; > 0: softmax over log scores.", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "Moves per search.", lower_bound=1, flag_values=fv)
    cli.define_numbers("start", crop_env.FULL_BOX, "First box y0,x0,h,w.", fv)
    cli.define_numbers("pans", PANS, "Pan offsets, box-side fractions.", fv)
    cli.define_numbers("zooms", ZOOMS, "Zoom factors per move.", fv)
    flags.DEFINE_float("min_side", MIN_SIDE, "Smallest box side.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Random seed (random policy, temperature > 0).", flag_values=fv)
    flags.DEFINE_enum("encoder", "ema", ["ema", "online"], "Which copy of the encoder.", flag_values=fv)
    flags.DEFINE_string("out", None, "PNG path (default: WORKDIR/plots/search_<step>.png).", flag_values=fv)
    flags.DEFINE_bool("measure", False, "Success-rate table on held-out demo scenes.", flag_values=fv)
    flags.DEFINE_integer("scenes", 500, "Held-out scenes for --measure.", lower_bound=1, flag_values=fv)


def main(argv: Sequence[str] | None = None) -> None:
    from rlvis import checkpoints
    from rlvis.data import sources

    args = cli.parse(define_flags, argv, __doc__)
    moves = dict(pans=args.pans, zooms=args.zooms, min_side=args.min_side)

    if args.measure:
        if args.image or args.step is not None or args.annotation:
            cli.fail(
                "--measure uses each run's latest checkpoint on held-out demo scenes with their "
                "own targets; drop --image, --step and --annotation"
            )
        policies = [("value", 0.0), ("value", args.temperature or 0.1), ("brute_force", 0.0), ("random", 1.0)]
        rows = []
        for workdir in args.workdir:
            with cli.reading_checkpoint(workdir):
                try:
                    rows += measure(
                        workdir, scenes=args.scenes, steps=args.steps, policies=policies, encoder=args.encoder, **moves
                    )
                except ValueError as error:  # e.g. a run not trained on the demo data
                    cli.fail(str(error))
        print(format_table(rows))
        for workdir in args.workdir:
            storage.write_json(
                storage.join(workdir, "search_results.json"),
                [row for row in rows if row["workdir"] == workdir],
                indent=1,
            )
        print(
            f"rlvis: {args.scenes} held-out scenes per run, {args.steps} moves, success = final box centre inside "
            f"the box of a digit with the target label; wrote search_results.json in each workdir"
        )
        return

    if len(args.workdir) != 1:
        cli.fail("one --workdir for a single search (several only with --measure)")
    workdir = args.workdir[0]
    with cli.reading_checkpoint(workdir):
        config, state, step = checkpoints.load_run(workdir, args.step)
    method = methods.get(config)
    if not method.ANNOTATES:
        cli.fail(
            f"{config.method} has no annotation distribution p(ℓ | x), which value-guided "
            "search needs; the runs of simclr, dino and clip and their ab_ variants have one"
        )
    model = method.build_model(config)
    params = state[config_lib.params_key(args.encoder)]
    image, valid, labels = value_maps.load_image(config, args.image)
    channels = sources.image_channels(config)
    annotations = method.annotations(model, params, config, channels=channels)
    by_label = labels and method.digit_annotation(labels[0]) is not None  # DINO's annotations are prototypes
    wanted = args.annotation or (method.digit_annotation(labels[0]) if by_label else annotations.names[0])
    if wanted not in annotations.names:
        if not method.CAPTIONS:
            cli.fail(f"unknown annotation {wanted!r}; this run's are e.g. {annotations.names[:5]}")
        # captions are free text: both text heads embed any caption, so it joins the vocabulary
        annotations = method.annotations(model, params, config, channels=channels, names=(*annotations.names, wanted))
    search = jax.jit(
        make_search(model, config, policy=args.policy, steps=args.steps, temperature=args.temperature, **moves)
    )
    result = jax.device_get(
        search(
            params,
            annotations,
            jnp.asarray(image),
            jnp.asarray(valid),
            one_hot(annotations, wanted),
            jax.random.PRNGKey(args.seed),
            jnp.asarray(args.start, jnp.float32),
        )
    )
    boxes, scores = np.asarray(result["boxes"]), np.asarray(result["scores"])
    trajectory = dict(
        workdir=workdir,
        step=step,
        annotation=wanted,
        policy=args.policy,
        temperature=args.temperature,
        image=args.image or "held-out demo scene",
        boxes=np.round(boxes.astype(float), 4).tolist(),
        scores=np.round(scores.astype(float), 4).tolist(),
        encoder_passes=encoder_passes_per_search(args.policy, args.steps, len(move_grid(args.pans, args.zooms))),
    )
    for k, box in enumerate(boxes):
        score = f"  p = {scores[k - 1]:.3f}" if k and args.policy != "random" else ""
        print(f"step {k}: box (y0, x0, h, w) = {np.round(box.astype(float), 3).tolist()}{score}")
    out = args.out or storage.join(workdir, "plots", f"search_{step}.png")
    shown = None if args.policy == "random" else scores  # a random policy's scores are all 1
    title = f"search for {wanted!r} ({args.policy}, {args.steps} moves)"
    if shown is not None:
        title += f": final p = {scores[-1]:.2f}"
    save_path_picture(out, image, valid, boxes, shown, title)
    storage.write_json(os.path.splitext(out)[0] + ".json", trajectory, indent=1)
    print(json.dumps({k: trajectory[k] for k in ("annotation", "policy", "encoder_passes")}))
    print(f"rlvis: wrote {out} and {os.path.splitext(out)[0]}.json")


if __name__ == "__main__":
    main()
