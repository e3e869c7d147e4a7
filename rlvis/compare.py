"""Train several methods at equal compute on the same data, over seeds; one table, JSON and a bar chart.

    python -m rlvis.compare --config=configs/demo.py --workdir=runs/compare --methods=simclr,ab_simclr --seeds=3

Equal compute means equal steps and an equal number of views encoded by the online network per step. This is
how the paper's Table 7 compares methods (effective batch = batch × views = 8192 for all). A base method alone
therefore gets an annotation batch that encodes as many views as the AB method encodes on both of its streams.
The AB method's target-network forward passes are not counted, and a masked encoder pass (MAE) counts as a view
although it reads a quarter of the patches: every row therefore also reports its FLOPs per step, XLA's count of
the compiled update step (target network, decoders and masking included), so "equal compute" can be checked.
Methods are compared within their family (SimCLR vs AB_SimCLR, DINO vs AB_DINO); the families themselves run at
different budgets unless `--views_per_step` sets one for every base method.

A row may be a variant: `ab_simclr+ab.use_ema_target=False` (fields joined by "+", values as Python literals).
With `--seeds=N` every row trains N times with `config.seed` + 0 … N-1 and reports mean ± standard error
(sample std / √N). Each run trains in `workdir/<row>/seed<k>/` (`workdir/<row>/` for one seed), so an interrupted
comparison resumes where it stopped. Every row also says which encoder it was scored with (config.eval.encoder;
"auto" scores each method as its paper does).
"""

import json
import math

import matplotlib
import numpy as np
from absl import flags

from rlvis import cli, config_lib, methods, storage

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def define_flags(flag_values: flags.FlagValues) -> None:
    cli.define_config("Base config; its method field is replaced per method.", flag_values)
    flags.DEFINE_string(
        "workdir",
        None,
        "One sub-folder per method, plus compare.json and compare.png.",
        required=True,
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "methods",
        ["simclr", "ab_simclr", "dino", "ab_dino"],
        "Methods or variants (method+field=value+…) to compare.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "seeds", 1, "Training seeds per method: config.seed + 0 … N-1.", lower_bound=1, flag_values=flag_values
    )
    flags.DEFINE_integer(
        "views_per_step",
        0,
        "Encoded views per step of every base method (0: its family's AB variant's count).",
        lower_bound=0,
        flag_values=flag_values,
    )


def summarise(per_seed: list[dict]) -> dict:
    """[{task: score}] over seeds → {"mean": …, "se": …} per task (se = 0 for one seed)."""
    tasks = per_seed[0]
    values = {task: np.array([scores[task] for scores in per_seed if task in scores], float) for task in tasks}
    return dict(
        mean={t: float(v.mean()) for t, v in values.items()},
        se={t: float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0 for t, v in values.items()},
    )


def table(rows: dict[str, dict], tasks: list[str]) -> str:
    """One line per row: mean ± SE for each task."""
    width = max([14, *map(len, rows)])
    columns = [max(16, len(t)) + 2 for t in tasks]
    lines = [f"{'method':<{width}}" + "".join(f"{t:>{c}}" for t, c in zip(tasks, columns))]
    for name, row in rows.items():
        cells = [f"{row['mean'][t]:.3f} ± {row['se'][t]:.3f}" if t in row["mean"] else "—" for t in tasks]
        lines.append(f"{name:<{width}}" + "".join(f"{cell:>{c}}" for cell, c in zip(cells, columns)))
    return "\n".join(lines)


def bar_chart(rows: dict[str, dict], tasks: list[str], path: str) -> None:
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 3.5))
    for i, (name, row) in enumerate(rows.items()):
        ax.bar(
            [t + i * width for t in range(len(tasks))],
            [row["mean"].get(t, np.nan) for t in tasks],
            width,
            yerr=[row["se"].get(t, 0.0) for t in tasks],
            capsize=2,
            label=name,
        )
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("held-out accuracy (mean ± SE)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    storage.save_figure(fig, path, dpi=120)
    plt.close(fig)


def run_dir(workdir: str, row: str, seed_index: int, seeds: int) -> str:
    return storage.join(workdir, row) if seeds == 1 else storage.join(workdir, row, f"seed{seed_index}")


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    import jax

    from rlvis import bench, train

    try:
        configs = config_lib.method_configs(
            args.config, args.methods, jax.device_count(), views_per_step=args.views_per_step
        )
    except (config_lib.ConfigError, ValueError) as e:
        cli.fail(f"config error: {e}")
    seeds, trained, random_init, wall = args.seeds, {}, {}, {}
    encoders = {row: config_lib.eval_encoder(config) for row, config in configs.items()}
    flops = {row: bench.step_flops(config) for row, config in configs.items()}
    for row, config in configs.items():
        print(
            f"rlvis.compare: {row}: {methods.encoded_views_per_step(config)} encoded views/step, "
            f"{flops[row] / 1e9:.1f} GFLOPs/step, {config.total_steps} steps, {seeds} seed(s)",
            flush=True,
        )
        trained[row], wall[row] = [], []
        for k in range(seeds):
            seeded = config.copy_and_resolve_references()
            seeded.seed = config.seed + k
            out = train.train_and_evaluate(seeded, run_dir(args.workdir, row, k, seeds))
            if out is None:  # stopped by a signal, checkpointed: the same command resumes this run
                print("rlvis.compare: stopped; re-run the same command to resume", flush=True)
                return
            trained[row].append(out["trained"])
            wall[row].append(out["wall_seconds"])
            random_init.setdefault(k, out["random_init"])  # same encoder shape and init key for every method
            rows = write_summary(args.workdir, configs, trained, random_init, wall, encoders, seeds, flops)
    print(table(rows, list(rows["random_init"]["mean"])), flush=True)
    print(f"rlvis.compare: wrote {args.workdir}/compare.json and compare.png", flush=True)


def write_summary(
    workdir: str, configs: dict, trained: dict, random_init: dict, wall: dict, encoders: dict, seeds: int, flops: dict
) -> dict:
    """compare.json and compare.png from the runs finished so far (`seeds_done` says how many per row), so an
    interrupted comparison still leaves its numbers."""
    rows = {row: summarise(per_seed) for row, per_seed in trained.items() if per_seed}
    rows["random_init"] = summarise([random_init[k] for k in sorted(random_init)])
    summary = dict(
        methods={row: rows[row]["mean"] for row in trained if trained[row]},
        se={row: rows[row]["se"] for row in trained if trained[row]},
        per_seed=trained,
        seeds_done={row: len(v) for row, v in trained.items()},
        random_init=rows["random_init"]["mean"],
        random_init_se=rows["random_init"]["se"],
        encoder=encoders,
        wall_seconds=wall,
        seeds=seeds,
        encoded_views_per_step={m: methods.encoded_views_per_step(c) for m, c in configs.items()},
        flops_per_step=flops,
        steps=next(iter(configs.values())).total_steps,
        config=json.loads(next(iter(configs.values())).to_json()),  # the first row's, in full
        row_configs={row: json.loads(config.to_json()) for row, config in configs.items()},
    )
    storage.write_json(storage.join(workdir, "compare.json"), summary)
    bar_chart(rows, list(rows["random_init"]["mean"]), storage.join(workdir, "compare.png"))
    return rows


if __name__ == "__main__":
    main()
