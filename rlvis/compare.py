"""Train several methods at equal compute on the same data; print one table, write JSON and a bar chart.

    python -m rlvis.compare --config=configs/demo.py --workdir=runs/compare --methods=simclr,ab_simclr

Equal compute means equal steps and an equal number of views encoded by the online network per step. This is
how the paper's Table 7 compares methods (effective batch = batch × views = 8192 for all). A base method alone
therefore gets an annotation batch that encodes as many views as the AB method encodes on both of its streams.
The AB method's target-network forward passes are not counted. Methods are compared within their family
(SimCLR vs AB_SimCLR, DINO vs AB_DINO); the families themselves run at different budgets.
Each method trains in `workdir/<method>/`, so an interrupted comparison resumes where it stopped.
"""

import json
import os
import sys

import matplotlib
from absl import app, flags, logging
from ml_collections import config_flags

from rlvis import config_lib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base config; its method field is replaced per method.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "One sub-folder per method, plus compare.json and compare.png.")
_METHODS = flags.DEFINE_list("methods", ["simclr", "ab_simclr", "dino", "ab_dino"], "Methods to compare.")


def table(results: dict[str, dict], random_init: dict) -> str:
    tasks = list(random_init)
    lines = [f"{'method':<14}" + "".join(f"{t:>18}" for t in tasks)]
    for name, scores in [*results.items(), ("random_init", random_init)]:
        lines.append(f"{name:<14}" + "".join(f"{scores[t]:>18.3f}" for t in tasks))
    return "\n".join(lines)


def bar_chart(results: dict[str, dict], random_init: dict, path: str) -> None:
    rows = {**results, "random_init": random_init}
    tasks = list(random_init)
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.8 * len(tasks) + 2, 3.5))
    for i, (name, scores) in enumerate(rows.items()):
        ax.bar([t + i * width for t in range(len(tasks))], [scores[t] for t in tasks], width, label=name)
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks)
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    import jax

    from rlvis import train

    try:
        configs = config_lib.method_configs(_CONFIG.value, _METHODS.value, jax.device_count())
    except (config_lib.ConfigError, ValueError) as e:
        print(f"rlvis: config error: {e}", file=sys.stderr)
        sys.exit(2)
    results, random_init, wall = {}, None, {}
    for method, config in configs.items():
        print(f"rlvis.compare: {method}: {config_lib.encoded_views_per_step(config)} encoded views/step, "
              f"{config.total_steps} steps", flush=True)
        out = train.train_and_evaluate(config, os.path.join(_WORKDIR.value, method))
        results[method], wall[method] = out["trained"], out["wall_seconds"]
        random_init = random_init or out["random_init"]  # same encoder shape and init key for every method
    print(table(results, random_init), flush=True)
    summary = dict(methods=results, random_init=random_init, wall_seconds=wall,
                   encoded_views_per_step={m: config_lib.encoded_views_per_step(c) for m, c in configs.items()},
                   steps=_CONFIG.value.total_steps)
    with open(os.path.join(_WORKDIR.value, "compare.json"), "w") as f:
        json.dump(summary, f, indent=2)
    bar_chart(results, random_init, os.path.join(_WORKDIR.value, "compare.png"))
    print(f"rlvis.compare: wrote {_WORKDIR.value}/compare.json and compare.png", flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
