"""How well a train step uses the accelerator: step time, images/s, encoded views/s, XLA-counted FLOPs, and MFU
against a dense-matmul peak measured in the same process on the same devices.

    python -m rlvis.bench --config=configs/cc12m.py:method=ab_simclr --config.batch.annotation=16 \
        --config.batch.bootstrap=4 [--steps=5] [--warmup=2] [--scaling] [--matmul_size=2048]

It times the trainer's own jitted update step (`train.make_train_step`) on synthetic batches already on the device,
so the number is the device's, not the input pipeline's (`rlvis.data.throughput` measures that). Prints one JSON
object:
  * `step` — the configured method: seconds per step (median over `--steps` after `--warmup`), images/s, encoded
    views/s, FLOPs per step from XLA's cost analysis of the compiled step, achieved FLOP/s, `mfu` = achieved /
    measured peak;
  * `base` — the base method alone at the same number of encoded views per step (`rlvis.compare`'s rule), and
    `ab_cost_per_view` = AB's seconds per encoded view / the base method's;
  * `scaling` (with `--scaling`) — step time at 1×, 2×, 4× the batch and at 2, 4, 8 views per bootstrap image.

    python -m rlvis.bench --config=configs/cc12m.py --evaluators [--eval_batch=256] [--probe_batch=512]

`--evaluators` times what a paper-scale evaluation costs instead (`evaluators`): encoding whole images at
`env.view_size` (features for every probe), one training step of the decoder probe per task shape
(classification, box-conditioned classification, Pix2Seq detection with `--max_objects`), and greedy detection
decoding; each with XLA's FLOPs, so that a GPU or TPU estimate follows from its FLOP/s.
Never run inside a test: speed is measured here, asserted nowhere.
"""

import copy
import functools
import json
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from rlvis import cli, config_lib, methods, sharding, train
from rlvis.data import sources


def define_flags(flag_values: flags.FlagValues) -> None:
    cli.define_config("Config file, e.g. configs/cc12m.py:method=ab_simclr.", flag_values)
    flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", flag_values=flag_values)
    flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation and caches).", flag_values=flag_values)
    flags.DEFINE_bool(
        "scaling", False, "Also time 1/2/4x the batch and 2/4/8 views per image.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "matmul_size", 2048, "Side of the square f32 matmul that measures the peak.", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "evaluators",
        False,
        "Time feature extraction and the decoder probe instead of a train step.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "eval_batch", 256, "Images per feature-extraction batch (--evaluators).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "probe_batch",
        512,
        "Decoder-probe batch (--evaluators); its size and depth are "
        "sequence_probe.ProbeSettings' paper-scale defaults.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("max_objects", 100, "Objects per detection sequence (--evaluators).", flag_values=flag_values)


def matmul_peak(size: int, repeats: int = 10, dtype=jnp.float32) -> float:
    """Best FLOP/s of a jitted [size, size] @ [size, size] in `dtype` on every device at once (one per device)."""
    devices = jax.device_count()
    mesh = sharding.make_mesh()
    x = jax.device_put(jnp.ones((devices, size, size), dtype), sharding.batch_sharded(mesh))
    matmul = jax.jit(lambda a: jnp.einsum("bij,bjk->bik", a, a))
    jax.block_until_ready(matmul(x))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(x))
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * devices / best


def batch_shapes(config: ml_collections.ConfigDict) -> dict:
    """The host batch's shapes and dtypes, like the pipeline's: uint8 canvases, valid regions, CLIP's captions."""
    canvas = config.data.scene_canvas if config.data.format == "demo" else config.data.canvas
    channels = sources.image_channels(config)
    names = ("annotation", "bootstrap") if methods.bootstraps(config) else ("annotation",)
    shapes = {
        name: dict(
            image=jax.ShapeDtypeStruct((config.batch[name], canvas, canvas, channels), np.uint8),
            valid=jax.ShapeDtypeStruct((config.batch[name], 2), np.int32),
        )
        for name in names
    }
    if methods.get(config).CAPTIONS:
        shapes["annotation"]["caption"] = jax.ShapeDtypeStruct(
            (config.batch.annotation, config.clip.caption_length), np.int32
        )
    return shapes


def synthetic_batch(config: ml_collections.ConfigDict, rng: np.random.Generator) -> dict:
    """Host batches of `batch_shapes`: random pixels and caption bytes, full valid regions."""
    canvas = config.data.scene_canvas if config.data.format == "demo" else config.data.canvas

    def make(path, shape: jax.ShapeDtypeStruct) -> np.ndarray:
        field = path[-1].key
        if field == "valid":
            return np.full(shape.shape, canvas, shape.dtype)
        low, high = (1, 255) if field == "caption" else (0, 256)
        return rng.integers(low, high, shape.shape, dtype=shape.dtype)

    return jax.tree_util.tree_map_with_path(make, batch_shapes(config))


def _flops(compiled) -> float:
    """FLOPs of the whole step on all devices: XLA analyses the SPMD-partitioned program, i.e. one device's share."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", float("nan"))) * jax.device_count()


def step_flops(config: ml_collections.ConfigDict) -> float:
    """FLOPs of one update step (XLA's count of the compiled program), from shapes alone: nothing is run."""
    from rlvis import checkpoints

    mesh = sharding.make_mesh()
    step = train.make_train_step(config, mesh, sources.image_channels(config))
    state = checkpoints.abstract_like(step.state_shape, step.state_sharding)
    batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.batch_sharded(mesh)), batch_shapes(config)
    )
    return _flops(step.update_fn.lower(state, batch).compile())


def measure(config: ml_collections.ConfigDict, steps: int, warmup: int, peak: float) -> dict:
    """Time the configured method's update step; FLOPs from the compiled step."""
    config_lib.validate(config, jax.device_count(), check_data_paths=False)  # synthetic batches read no files
    mesh = sharding.make_mesh()
    step = train.make_train_step(config, mesh, sources.image_channels(config))
    state = step.init_fn(step.init_key)
    batch = sharding.global_batch(synthetic_batch(config, np.random.default_rng(0)), mesh)
    flops = _flops(step.update_fn.lower(state, batch).compile())
    for _ in range(warmup):
        state, _ = step.update_fn(state, batch)
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step.update_fn(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    views = methods.encoded_views_per_step(config)
    images = config.batch.annotation + (config.batch.bootstrap if methods.bootstraps(config) else 0)
    return dict(
        method=config.method,
        step_seconds=round(seconds, 5),
        images_per_s=round(images / seconds, 2),
        encoded_views_per_step=views,
        encoded_views_per_s=round(views / seconds, 2),
        flops_per_step=flops,
        achieved_flops_per_s=flops / seconds,
        mfu=round(flops / seconds / peak, 4),
    )


def _time(fn, args: tuple, steps: int, warmup: int) -> tuple[float, float]:
    """(median seconds per call, XLA FLOPs per call) of a jitted function."""
    flops = _flops(fn.lower(*args).compile()) / jax.device_count()  # not sharded: one device's program
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), flops


def evaluator_costs(
    config: ml_collections.ConfigDict,
    eval_batch: int,
    probe_batch: int,
    max_objects: int,
    steps: int,
    warmup: int,
    probe_size: dict | None = None,
) -> dict:
    """Feature extraction and decoder-probe costs on synthetic inputs, one device. `probe_size` overrides the
    paper-scale probe's fields (`sequence_probe.ProbeSettings`)."""
    from rlvis.evaluators import sequence_probe
    from rlvis.models import vit

    size, channels = config.env.view_size, sources.image_channels(config)
    encoder = vit.ViT(config.model.variant, size, config.model.compute_dtype)
    images = jnp.zeros((eval_batch, size, size, channels), jnp.float32)
    params = encoder.init(jax.random.PRNGKey(0), images[:1])
    encode = jax.jit(encoder.apply)
    seconds, flops = _time(encode, (params, images), steps, warmup)
    report = dict(
        features=dict(batch=eval_batch, images_per_s=round(eval_batch / seconds, 1), flops_per_image=flops / eval_batch)
    )
    tokens = jax.eval_shape(encoder.apply, params, images[:1]).shape[1:]  # (T, D)
    settings = sequence_probe.ProbeSettings(**{**(probe_size or {}), "batch_size": probe_batch})
    vocab = sequence_probe.Vocabulary(bins=settings.bins, num_classes=1000)  # ImageNet's classes
    memory = jnp.zeros((probe_batch, *tokens), jnp.float32)
    shapes = dict(
        classification=(0, 1), box_class=(4, 1), detection=(0, sequence_probe.TOKENS_PER_OBJECT * max_objects + 1)
    )
    for task, (prompt, target) in shapes.items():
        length = 1 + prompt + target
        model = sequence_probe.SequenceDecoder(vocab.size, settings.width, settings.depth, settings.heads, length)
        sequences = jnp.full((probe_batch, length), sequence_probe.FIRST_BIN, jnp.int32)
        probe_params = model.init(jax.random.PRNGKey(0), memory[:1], sequences[:1, :-1])
        opt_state = sequence_probe._optimizer(settings).init(probe_params)
        step = jax.jit(
            functools.partial(sequence_probe._train_step, model=model, settings=settings, prompt_length=prompt)
        )
        seconds, flops = _time(step, (probe_params, opt_state, memory, sequences), steps, warmup)
        report[f"decoder_probe/{task}"] = dict(
            sequence_length=length, items_per_s=round(probe_batch / seconds, 1), flops_per_item=flops / probe_batch
        )
        if task == "detection":
            is_class = ((False,) * (sequence_probe.TOKENS_PER_OBJECT - 1) + (True,)) * max_objects
            decode = jax.jit(functools.partial(sequence_probe._greedy, model=model, vocab=vocab, is_class=is_class))
            decode_batch = min(probe_batch, 64)
            seconds, flops = _time(
                decode,
                (probe_params, memory[:decode_batch], jnp.zeros((decode_batch, 0), jnp.int32)),
                max(1, steps // 2),
                1,
            )
            # XLA counts a loop's body once: one decoding step, rerun for each of the sequence's tokens.
            report["detection_decode"] = dict(
                images_per_s=round(decode_batch / seconds, 2), flops_per_image=flops * len(is_class) / decode_batch
            )
    report["decoder_probe_settings"] = dict(
        depth=settings.depth, width=settings.width, heads=settings.heads, tokens=list(tokens)
    )
    return report


def scaled(config: ml_collections.ConfigDict, batch_factor: int = 1, views: int | None = None):
    config = copy.deepcopy(config)
    config.batch.annotation *= batch_factor
    config.batch.bootstrap *= batch_factor
    if views is not None:
        config.env.views = views
    return config


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    config = args.config
    if args.evaluators:
        report = dict(device=jax.devices()[0].device_kind, model=config.model.variant, view_size=config.env.view_size)
        report.update(
            evaluator_costs(config, args.eval_batch, args.probe_batch, args.max_objects, args.steps, args.warmup)
        )
        print(json.dumps(report, indent=1), flush=True)
        return
    peak = matmul_peak(args.matmul_size)
    report = dict(
        device=jax.devices()[0].device_kind,
        devices=jax.device_count(),
        model=config.model.variant,
        view_size=config.env.view_size,
        compute_dtype=config.model.compute_dtype,
        matmul_peak_flops_per_s=peak,
    )
    report["step"] = measure(config, args.steps, args.warmup, peak)
    if methods.bootstraps(config):
        base_name = methods.base_name(config.method)
        base = config_lib.method_configs(
            config, [config.method, base_name], jax.device_count(), check_data_paths=False
        )[base_name]
        report["base"] = measure(base, args.steps, args.warmup, peak)
        per_view = {
            name: report[name]["step_seconds"] / report[name]["encoded_views_per_step"] for name in ("step", "base")
        }
        report["ab_cost_per_view"] = round(per_view["step"] / per_view["base"], 3)
    if args.scaling:
        report["scaling"] = dict(
            batch={
                factor: measure(scaled(config, factor), args.steps, args.warmup, peak)["step_seconds"]
                for factor in (1, 2, 4)
            },
            views={
                views: measure(scaled(config, views=views), args.steps, args.warmup, peak)["step_seconds"]
                for views in (2, 4, 8)
            }
            if methods.bootstraps(config)
            else None,
        )
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
