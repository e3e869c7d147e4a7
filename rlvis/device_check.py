"""The device check: what one accelerator host does with rlvis, in one command and a few minutes.

    python -m rlvis.device_check --out=device_check.json            # a GPU or TPU host: about 5 minutes
    python -m rlvis.device_check --out=/tmp/device_check.json --tiny  # any machine, tiny sizes: the same code path

It prints a table and writes one JSON:
  * the chip (`jax.devices()[0].device_kind`), its dense bf16 peak from the vendor's table (`PEAKS`) and a bf16
    matmul peak measured in the same process;
  * the bf16 update step of ViT-S/16 and ViT-B/16 at 224 px (`configs/cc12m.py`) for ab_simclr and simclr: seconds,
    encoded views/s, MFU against both peaks, and AB's cost per encoded view over SimCLR's (`rlvis.bench.measure`);
  * a real run: `configs/cc12m.py:method=ab_clip` on webdataset tar shards of captioned scenes it writes itself,
    `--train_steps` steps through the trainer (Grain pipeline, checkpoints), and whether the loss fell.
`--tiny` swaps the sizes for `configs/cc12m.py:tiny`'s so that the whole check runs on a CPU in about a minute (a
test runs it there), so it is known to work the first time it meets an accelerator.
"""

import io
import json
import os
import tarfile
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from PIL import Image

from rlvis import bench, cli, storage
from rlvis.data import digits as digits_lib

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets (without sparsity), by `device_kind` substring;
# the first match wins, so the more specific names come first.
PEAKS = (
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("a100", 312e12),
    ("l4", 121e12),
    ("v6", 918e12),  # TPU v6e (Trillium)
    ("v5p", 459e12),
    ("v5 lite", 197e12),  # TPU v5e reports "TPU v5 lite"
    ("v5e", 197e12),
    ("v4", 275e12),
)
MODELS = ("S/16", "B/16")


def table_peak(device_kind: str) -> float | None:
    kind = device_kind.lower()
    return next((peak for name, peak in PEAKS if name in kind), None)


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("out", None, "Where to write the JSON report.", required=True, flag_values=flag_values)
    flags.DEFINE_bool(
        "tiny",
        False,
        "Tiny sizes (configs/cc12m.py:tiny): the check's code path on any machine.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("train_steps", 300, "Steps of the AB_CLIP run on the written shards.", flag_values=flag_values)
    flags.DEFINE_integer("steps", 5, "Timed steps per step measurement.", flag_values=flag_values)


def step_config(method: str, model: str, tiny: bool):
    """configs/cc12m.py for `method` at `model` (ViT-S/16 or B/16 at 224 px, bf16), or its tiny size."""
    from configs import cc12m

    config = cc12m.get_config(f"tiny,method={method}" if tiny else f"method={method}")
    config.model.compute_dtype = "bfloat16"
    if not tiny:
        config.model.variant, config.env.view_size = model, 224
        config.batch.annotation, config.batch.bootstrap = (128, 32) if method.startswith("ab_") else (192, 32)
    return config


def write_shards(folder: str, shards: int, per_shard: int, canvas: int, seed: int = 0) -> int:
    """Webdataset tars of captioned digit scenes (JPEG + caption), as img2dataset writes CC12M: `key.jpg`,
    `key.txt`. Returns the number of samples."""
    splits = digits_lib.load_digits(20)
    rng = np.random.default_rng(seed)
    for shard in range(shards):
        with tarfile.open(os.path.join(folder, f"{shard:05d}.tar"), "w") as tar:
            for i in range(per_shard):
                scene = digits_lib.compose_scene(
                    rng,
                    splits.pretrain_images,
                    splits.pretrain_labels,
                    canvas=canvas,
                    min_size=canvas * 5 // 8,
                    digits_per_scene=(1, 4),
                    digit_size=(canvas // 4, canvas * 7 // 16),
                )
                image = io.BytesIO()
                Image.fromarray(np.repeat(scene["image"], 3, axis=-1)).save(image, format="JPEG", quality=90)
                for name, data in (
                    (f"{shard:05d}{i:04d}.jpg", image.getvalue()),
                    (f"{shard:05d}{i:04d}.txt", digits_lib.caption(scene).encode()),
                ):
                    member = tarfile.TarInfo(name)
                    member.size = len(data)
                    tar.addfile(member, io.BytesIO(data))
    return shards * per_shard


def train_on_shards(workdir: str, steps: int, tiny: bool) -> dict:
    """`configs/cc12m.py:method=ab_clip` on shards written into `workdir`: does the loss fall?"""
    from configs import cc12m
    from rlvis import train

    data = os.path.join(workdir, "shards")
    os.makedirs(data, exist_ok=True)
    samples = write_shards(data, shards=2, per_shard=64 if tiny else 512, canvas=64 if tiny else 128)
    config = cc12m.get_config("tiny,method=ab_clip" if tiny else "method=ab_clip")
    config.data.path, config.total_steps = data, steps
    config.log_every, config.checkpoint_every = max(1, steps // 10), max(1, steps // 2)
    config.optim.warmup_steps = max(1, steps // 10)  # the recipe's warm-up is a CC12M epoch
    config.evals.demo.final, config.evals.digits.every = False, 0
    if not tiny:
        config.model.compute_dtype = "bfloat16"
        config.batch.annotation, config.batch.bootstrap = 128, 32
    start = time.perf_counter()
    train.train_and_evaluate(config, os.path.join(workdir, "run"))
    with open(os.path.join(workdir, "run", "metrics.jsonl")) as f:
        losses = [row["loss"] for row in map(json.loads, f) if "loss" in row]
    return dict(
        config="configs/cc12m.py:method=ab_clip" + (",tiny" if tiny else ""),
        samples=samples,
        steps=steps,
        first_loss=losses[0],
        last_loss=losses[-1],
        loss_fell=bool(losses[-1] < losses[0]),
        wall_seconds=round(time.perf_counter() - start, 1),
    )


def check(tiny: bool, train_steps: int, steps: int) -> dict:
    kind = jax.devices()[0].device_kind
    peak = table_peak(kind)
    measured = bench.matmul_peak(256 if tiny else 8192, dtype=jnp.bfloat16)
    report = dict(
        device_kind=kind,
        devices=jax.device_count(),
        backend=jax.default_backend(),
        table_peak_bf16_flops_per_s=peak,
        measured_matmul_peak_bf16_flops_per_s=measured,
        steps=[],
    )
    for model in MODELS[:1] if tiny else MODELS:
        timed = {}
        for method in ("ab_simclr", "simclr"):
            config = step_config(method, model, tiny)
            result = bench.measure(config, steps, warmup=2, peak=measured)
            result.update(
                model=config.model.variant,
                view_size=config.env.view_size,
                mfu_vs_table=None if peak is None else round(result["achieved_flops_per_s"] / peak, 4),
            )
            timed[method] = result
            report["steps"].append(result)
        per_view = {m: r["step_seconds"] / r["encoded_views_per_step"] for m, r in timed.items()}
        timed["ab_simclr"]["ab_cost_per_view"] = round(per_view["ab_simclr"] / per_view["simclr"], 3)
    with tempfile.TemporaryDirectory() as workdir:
        report["training"] = train_on_shards(workdir, train_steps, tiny)
    return report


def table(report: dict) -> str:
    peak = report["table_peak_bf16_flops_per_s"]
    lines = [
        f"{report['device_kind']} × {report['devices']} ({report['backend']}): table bf16 peak "
        + (f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown")
        + f", measured bf16 matmul {report['measured_matmul_peak_bf16_flops_per_s'] / 1e12:.2f} TFLOP/s",
        f"{'model':<8} {'method':<10} {'s/step':>8} {'views/s':>9} {'MFU meas.':>10} {'MFU table':>10} {'AB/view':>8}",
    ]
    for row in report["steps"]:
        table_mfu = "—" if row["mfu_vs_table"] is None else f"{row['mfu_vs_table']:.3f}"
        lines.append(
            f"{row['model']:<8} {row['method']:<10} {row['step_seconds']:>8.4f} "
            f"{row['encoded_views_per_s']:>9.1f} {row['mfu']:>10.3f} {table_mfu:>10} "
            f"{row.get('ab_cost_per_view', ''):>8}"
        )
    run = report["training"]
    lines.append(
        f"training {run['config']}, {run['steps']} steps on {run['samples']} written samples: loss "
        f"{run['first_loss']:.3f} → {run['last_loss']:.3f} ({'fell' if run['loss_fell'] else 'DID NOT FALL'}),"
        f" {run['wall_seconds']:.0f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    start = time.perf_counter()
    report = check(args.tiny, args.train_steps, args.steps)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    print(table(report), flush=True)
    storage.write_json(args.out, report)
    print(f"rlvis: wrote {args.out} ({report['total_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
