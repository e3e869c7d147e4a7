"""Write docs/reproduction.md from the JSON that the comparison runs produce: every paper claim, what the paper
reports, what rlvis measures on the embedded data (mean ± SE over seeds), and the command that regenerates it.

    python -m rlvis.reproduction --runs=docs/results [--out=docs/reproduction.md]

Each claim names a comparison (`rlvis.compare` writes `<runs>/<experiment>/compare.json`); the JSON behind the
committed page is kept in docs/results/, so `--runs=docs/results` rewrites the page exactly, and `--runs=runs/repro`
reads runs made with the printed commands. A claim whose runs are missing is listed as "not
run" with its command, never filled in by hand. A difference "holds" when it is larger than twice its standard
error (the two rows' SEs combined), "reverses" when it is that far the other way, and is "within noise" otherwise.
A last section reads seeded single-method runs, `<runs>/regimes/<regime>/seed<S>/` (`REGIMES`), and says per
regime whether the value head meets the foresight and search targets (`TARGETS`).
"""

import dataclasses
import json
import math
import os
from collections.abc import Callable

from absl import flags

from rlvis import cli, compare

COMMAND = (
    "python -m rlvis.compare --config=configs/demo.py --workdir=runs/repro/{experiment} --methods={methods} "
    "--seeds=3{flags}"
)


@dataclasses.dataclass(frozen=True)
class Claim:
    experiment: str  # sub-folder of --runs holding compare.json
    claim: str  # the paper's claim, in our words
    paper: str  # what the paper reports
    ab: str  # the row expected to be better
    base: str  # the row it is compared with
    tasks: tuple[str, ...]
    rows: tuple[str, ...] = ()  # every row of a comparison shared by several claims (default: base and ab)
    flags: str = ""  # further flags of the comparison's command
    name: str = ""  # the section's name when several claims share an experiment
    merge: tuple[str, ...] = ()  # further experiments (same steps and views) whose rows join this one's

    def command(self) -> str:
        methods = ",".join(self.rows or (self.base, self.ab))
        return COMMAND.format(experiment=self.experiment, methods=methods, flags=self.flags)


SCENE_TASKS = ("linear/count", "linear/box_digit", "decoder/box_digit", "linear/digit")
FORESIGHT = (
    "foresight/value/all",
    "foresight/invariance/all",
    "foresight/brute_force/all",
    "foresight/value/zoom_in",
    "foresight/brute_force/zoom_in",
    "foresight/source_crop/zoom_in",
    "foresight/value/iou_0-0.2",
    "foresight/invariance/iou_0-0.2",
)
# The paper's Table 5 directions share one comparison (AB_SimCLR trained once per seed), at 1,200 steps so that all
# four rows fit one session on 2 cores.
ABLATIONS = (
    "ab_simclr",
    "ab_simclr+ab.base_loss_weight=0.0",
    "ab_simclr+ab.use_ema_target=False",
    "ab_simclr+ab.action_tokens=False",
)
# Every comparison so far ran before the value head's box attention became the default, so each pins it off;
# those run before the demo centred AB_SimCLR's target pin that off too, and those at the demo's length of the day,
# 2,400 steps, pin the length (OLD_DEMO). Every command then rebuilds what its compare.json recorded.
NO_BOX = " --config.model.box_attention=False"
UNCENTRED = " --config.ab.center_target=False" + NO_BOX
CENTRED = " --config.total_steps=4800 --config.ab.center_target=True" + NO_BOX
OLD_DEMO = " --config.total_steps=2400" + UNCENTRED
ABLATION_FLAGS = " --config.total_steps=1200" + UNCENTRED
SCENE_BASELINES = (
    "mae+data.annotation_scene_fraction=1.0",
    "ijepa+data.annotation_scene_fraction=1.0",
    "simclr+data.annotation_scene_fraction=1.0",
)
BASELINE_FLAGS = " --views_per_step=256 --config.total_steps=1200" + UNCENTRED
CLIP_FAMILY = ("clip", "slip", "silc", "clip_aug", "ab_clip")
CLIP_FAMILY_FLAGS = " --views_per_step=192 --config.total_steps=1200" + UNCENTRED
CLAIMS = (
    Claim(
        "scenes_only",
        "Trained on scene data alone, AB improves over its crop-consistency base method on "
        "scene-level tasks (the COCO/EpicKitchens table).",
        "COCO: AB_SimCLR vs SimCLR +1.9 object classification, +0.02 detection; +4.0 ImageNet probe",
        "ab_simclr+data.annotation_scene_fraction=1.0",
        "simclr+data.annotation_scene_fraction=1.0",
        SCENE_TASKS,
        flags=OLD_DEMO,
    ),
    Claim(
        "scenes_only_centred",
        "The scenes-only claim again at 4,800 steps with AB_SimCLR's centred target (before box attention).",
        "COCO: AB_SimCLR vs SimCLR +1.9 object classification, +0.02 detection; +4.0 ImageNet probe",
        "ab_simclr+data.annotation_scene_fraction=1.0",
        "simclr+data.annotation_scene_fraction=1.0",
        SCENE_TASKS,
        flags=CENTRED,
    ),
    Claim(
        "scenes_only_box",
        "The scenes-only claim at today's demo default, with the value head's box attention "
        "(SimCLR's row is scenes_only_centred's: its value head is never trained, so the switch changes nothing).",
        "COCO: AB_SimCLR vs SimCLR +1.9 object classification, +0.02 detection; +4.0 ImageNet probe",
        "ab_simclr+data.annotation_scene_fraction=1.0",
        "simclr+data.annotation_scene_fraction=1.0",
        SCENE_TASKS,
        ("ab_simclr+data.annotation_scene_fraction=1.0",),
        merge=("scenes_only_centred",),
    ),
    Claim(
        "mae_scenes",
        "Trained on scene data alone, pixel reconstruction (MAE) beats crop consistency (SimCLR), "
        "which degrades there.",
        "COCO: MAE 62.3 vs SimCLR 56.2 ImageNet, 0.31 vs 0.24 detection, 76.5 vs 70.4 object classification",
        "mae+data.annotation_scene_fraction=1.0",
        "simclr+data.annotation_scene_fraction=1.0",
        SCENE_TASKS,
        flags=" --views_per_step=256 --config.total_steps=1200" + UNCENTRED,
    ),
    Claim(
        "ijepa_scenes",
        "Trained on scene data alone, latent prediction without grounding (I-JEPA) trails pixel reconstruction (MAE).",
        "COCO: I-JEPA 43.0 vs MAE 62.3 ImageNet, 0.21 vs 0.31 detection, 62.5 vs 76.5 object classification",
        SCENE_BASELINES[0],
        SCENE_BASELINES[1],
        SCENE_TASKS,
        SCENE_BASELINES,
        BASELINE_FLAGS,
        "ijepa_vs_mae",
        merge=("mae_scenes",),
    ),
    Claim(
        "ijepa_scenes",
        "Trained on scene data alone, I-JEPA also trails crop consistency (SimCLR).",
        "COCO: I-JEPA 43.0 vs SimCLR 56.2 ImageNet, 0.21 vs 0.24 detection, 62.5 vs 70.4 object classification",
        SCENE_BASELINES[2],
        SCENE_BASELINES[1],
        SCENE_TASKS,
        SCENE_BASELINES,
        BASELINE_FLAGS,
        "ijepa_vs_simclr",
        merge=("mae_scenes",),
    ),
    Claim(
        "clip_family",
        "AB_CLIP beats adding SimCLR to CLIP (SLIP).",
        "CC12M: AB_CLIP 74.1 vs SLIP 72.0 ImageNet, 91.9 vs 87.2 CLEVR count; COCO captions 29.7 vs 25.8",
        "ab_clip",
        "slip",
        SCENE_TASKS,
        CLIP_FAMILY,
        CLIP_FAMILY_FLAGS,
        "ab_clip_vs_slip",
    ),
    Claim(
        "clip_family",
        "AB_CLIP beats adding DINO to CLIP (SiLC).",
        "CC12M: AB_CLIP 74.1 vs SiLC 72.8 ImageNet, 91.9 vs 88.2 CLEVR count; COCO captions 29.7 vs 21.8",
        "ab_clip",
        "silc",
        SCENE_TASKS,
        CLIP_FAMILY,
        CLIP_FAMILY_FLAGS,
        "ab_clip_vs_silc",
    ),
    Claim(
        "clip_family",
        "AB_CLIP beats CLIP with stronger augmentation (CLIP + Aug).",
        "CC12M: AB_CLIP 74.1 vs CLIP + Aug 72.6 ImageNet, 78.1 vs 72.7 CLEVR depth, 91.9 vs 87.0 CLEVR count",
        "ab_clip",
        "clip_aug",
        SCENE_TASKS,
        CLIP_FAMILY,
        CLIP_FAMILY_FLAGS,
        "ab_clip_vs_clip_aug",
    ),
    Claim(
        "clip_family",
        "Stronger augmentation alone gives CLIP about what a self-supervised loss does (CLIP + Aug "
        "vs SLIP, Fini et al.'s finding).",
        "CC12M: CLIP + Aug 72.6 vs SLIP 72.0 ImageNet, 87.0 vs 87.2 CLEVR count; CLIP alone 69.5",
        "clip_aug",
        "slip",
        SCENE_TASKS,
        CLIP_FAMILY,
        CLIP_FAMILY_FLAGS,
        "clip_aug_vs_slip",
    ),
    Claim(
        "decoupled",
        "A curated dataset for the base loss plus bootstrapping on the target data beats training "
        "the base method on a mixture of the two.",
        "AB_{IN1k+COCO} lies beyond the DINO mixture Pareto front (≈62 ImageNet, 0.27 COCO detection)",
        "ab_simclr",
        "simclr+data.annotation_scene_fraction=0.5",
        SCENE_TASKS,
        flags=OLD_DEMO,
    ),
    Claim(
        "decoupled_centred",
        "The decoupled claim again at 4,800 steps with AB_SimCLR's centred target (before "
        "box attention), where the value head foresees on zoom-ins.",
        "AB_{IN1k+COCO} lies beyond the DINO mixture Pareto front (≈62 ImageNet, 0.27 COCO detection)",
        "ab_simclr",
        "simclr+data.annotation_scene_fraction=0.5",
        SCENE_TASKS,
        flags=CENTRED,
    ),
    Claim(
        "decoupled_box",
        "The decoupled claim at today's demo default, with the value head's box attention "
        "(SimCLR's row is decoupled_centred's: its value head is never trained, so the switch changes nothing).",
        "AB_{IN1k+COCO} lies beyond the DINO mixture Pareto front (≈62 ImageNet, 0.27 COCO detection)",
        "ab_simclr",
        "simclr+data.annotation_scene_fraction=0.5",
        SCENE_TASKS,
        ("ab_simclr",),
        merge=("decoupled_centred",),
    ),
    Claim(
        "dino",
        "AB_DINO improves over DINO.",
        "CC12M: +1.8 ImageNet, +1.1 CLEVR depth, +2.4 CLEVR count",
        "ab_dino",
        "dino",
        SCENE_TASKS,
        flags=OLD_DEMO,
    ),
    Claim(
        "clip",
        "AB_CLIP improves over CLIP, most on spatial tasks.",
        "CC12M: +4.6 ImageNet, +8.1 CLEVR depth, +7.4 CLEVR count",
        "ab_clip",
        "clip",
        SCENE_TASKS,
        flags=OLD_DEMO,
    ),
    Claim(
        "ablations",
        "The grounding base loss is essential: bootstrapping alone collapses.",
        "−24.0 ImageNet without it",
        "ab_simclr",
        "ab_simclr+ab.base_loss_weight=0.0",
        SCENE_TASKS,
        ABLATIONS,
        ABLATION_FLAGS,
        "no_base_loss",
    ),
    Claim(
        "ablations",
        "Without the EMA target network all of AB's gain is lost.",
        "−3.6 ImageNet (to SimCLR's level)",
        "ab_simclr",
        "ab_simclr+ab.use_ema_target=False",
        SCENE_TASKS,
        ABLATIONS,
        ABLATION_FLAGS,
        "no_ema_target",
    ),
    Claim(
        "ablations",
        "Action-conditioned prediction (equivariance) beats mask tokens (invariance).",
        "−2.2 ImageNet with mask tokens",
        "ab_simclr",
        "ab_simclr+ab.action_tokens=False",
        SCENE_TASKS + FORESIGHT[:1],
        ABLATIONS,
        ABLATION_FLAGS,
        "mask_tokens",
    ),
    Claim(
        "photometric",
        "Keeping photometric augmentation off the bootstrap views helps a little.",
        "−0.5 ImageNet with it",
        "ab_simclr",
        "ab_simclr+ab.photometric_bootstrap=True",
        SCENE_TASKS + FORESIGHT[:1],
        ("ab_simclr+ab.photometric_bootstrap=True",),
        ABLATION_FLAGS,
        merge=("ablations",),
    ),
)
FORESIGHT_CLAIM = (
    "The value head predicts the annotations of the view a move reaches; its prediction accuracy "
    "rises with source/destination overlap and keeps improving for far crops.",
    "AB_SimCLR's bootstrap prediction accuracy plateaus at ≈0.7–0.85; AB_CLIP's ends at ≈0.26–0.65 by IoU bucket",
)


@dataclasses.dataclass(frozen=True)
class Regime:
    """Seeded single-method runs: `<runs>/regimes/<folder>/seed<S>/` is the workdir of seed S, where `rlvis.main`
    writes results.json and `rlvis.search --measure` search_results.json, so a run is read where it was made.
    `train` is the training flags (FLAGS in REGIME_COMMANDS)."""

    name: str
    folder: str
    train: str


REGIMES = (
    Regime("the demo default: 4,800 steps, centred target, box attention", "demo", "--config=configs/demo.py"),
    Regime("configs/demo.py:long: 9,600 steps, centred target, box attention", "long", "--config=configs/demo.py:long"),
    Regime("4,800 steps, centred target, no box attention", "demo_no_box", "--config=configs/demo.py" + NO_BOX),
    Regime("9,600 steps, centred target, no box attention", "long_no_box", "--config=configs/demo.py:long" + NO_BOX),
    Regime(
        "the oracle reward (the true classes; a diagnostic), 4,800 steps, no box attention",
        "oracle_no_box",
        "--config=configs/demo.py --config.ab.reward=oracle" + NO_BOX,
    ),
)
REGIME_SEEDS = 3
REGIME_COMMANDS = (
    "python -m rlvis.main FLAGS --workdir=runs/repro/regimes/REGIME/seedS --config.seed=S",
    "python -m rlvis.search --measure --workdir=runs/repro/regimes/REGIME/seedS --scenes=500",
)
# The targets set for the value head: (label, one seed's score from its foresight scores and search successes,
# threshold, whether the score is a difference rather than a ratio).
TARGETS = (
    (
        "zoom-in: value / brute force ≥ 0.8",
        lambda f, s: f["foresight/value/zoom_in"] / f["foresight/brute_force/zoom_in"],
        0.8,
        False,
    ),
    (
        "all pairs: value − invariance ≥ +0.05",
        lambda f, s: f["foresight/value/all"] - f["foresight/invariance/all"],
        0.05,
        True,
    ),
    (
        "IoU (0, 0.2]: value − invariance ≥ +0.10",
        lambda f, s: f["foresight/value/iou_0-0.2"] - f["foresight/invariance/iou_0-0.2"],
        0.10,
        True,
    ),
    (
        "search: value policy − random ≥ +0.15 (5 encoder passes; brute force 90)",
        lambda f, s: s["value"] - s["random"] if s and {"value", "random"} <= s.keys() else None,
        0.15,
        True,
    ),
)


def _rendering_gain(bucket: str) -> Callable[[dict, dict | None], float | None]:
    """brute force − invariance in a bucket: what a value head exactly as good as rendering the destination and
    reading it with the base model would gain over reading the source (the value head learns from that reading)."""
    keys = (f"foresight/brute_force/{bucket}", f"foresight/invariance/{bucket}")
    return lambda f, s: f[keys[0]] - f[keys[1]] if set(keys) <= f.keys() else None


# Reference rows beside the two targets above that compare with reading the source view: no threshold.
HEADROOM = (
    ("all pairs: brute force − invariance (a value head as good as rendering)", _rendering_gain("all")),
    ("IoU (0, 0.2]: brute force − invariance (a value head as good as rendering)", _rendering_gain("iou_0-0.2")),
)


def _regime_seeds(runs: str, regime: Regime) -> list[tuple[dict, dict | None]] | None:
    """Per seed (foresight scores, {policy: greedy success} or None); None when a seed's results.json is missing.
    A results.json may carry `foresight`, the final checkpoint rescored by a later foresight evaluator (kept runs
    trained before it scored every predictor); it wins over the scores of the run's own final evaluation."""
    seeds = []
    for seed in range(REGIME_SEEDS):
        workdir = os.path.join(runs, "regimes", regime.folder, f"seed{seed}")
        path = os.path.join(workdir, "results.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            run = json.load(f)
        scores = run.get("foresight") or run["trained"]
        search_path = os.path.join(workdir, "search_results.json")
        search = None
        if os.path.exists(search_path):
            with open(search_path) as f:
                search = {
                    row["policy"]: row["success"]
                    for row in json.load(f)  # greedy policies, and random
                    if row["temperature"] == 0.0 or row["policy"] == "random"
                }
        seeds.append((scores, search))
    return seeds


def _one_scene_set(per_seed: list[dict]) -> bool:
    """Whether every seed's foresight was scored on the same scenes: chance depends on nothing else."""
    return len({round(scores.get("foresight/chance/all", -1.0), 6) for scores in per_seed}) == 1


def render_regimes(runs: str) -> list[str]:
    """The foresight and search targets per seeded regime: mean ± SE, each seed, met or missed."""
    lines = [
        "## Foresight and search targets, with seeds",
        "",
        "Does the value head foresee (name the digit at a move's destination better than reading the source "
        "view) and act (find an asked-for digit by search)? Held-out scenes, digits never seen in pre-training; "
        "docs/evaluation.md defines each predictor and docs/findings.md how each regime was found. "
        "A target is met when the mean over seeds clears it. The reference rows give brute force − invariance: "
        "the gain of a value head exactly as good as rendering the destination and reading it with the base "
        "model, whose reading is what the value head is trained on.",
        "",
    ]
    rows, notes = [], []
    reference = [(label, score, None, True) for label, score in HEADROOM]
    for regime in REGIMES:
        seeds = _regime_seeds(runs, regime)
        if seeds is None:
            notes.append(f"{regime.name}: not run yet.")
        elif not _one_scene_set([f for f, _ in seeds]):
            notes.append(
                f"{regime.name}: its seeds were scored on different foresight scenes (rlvis versions "
                "differ); rescore them before comparing."
            )
            seeds = None
        for label, score, threshold, difference in [*TARGETS, *reference] if seeds else ():
            values = [score(f, s) for f, s in seeds]
            if any(v is None for v in values):
                continue
            stats = compare.summarise([{label: v} for v in values])
            mean, se = stats["mean"][label], stats["se"][label]
            form = "+.3f" if difference else ".3f"
            met = "reference" if threshold is None else "yes" if mean >= threshold else "no"
            rows.append(
                f"| {regime.name} ({len(values)} seeds) | {label} | {mean:{form}} ± {se:.3f} | "
                f"{', '.join(f'{v:{form}}' for v in values)} | {met} |"
            )
    if rows:
        lines += ["| regime | target | mean ± SE | per seed | met |", "|---|---|---|---|---|", *rows, ""]
    lines += [*notes, ""] if notes else []
    lines += [
        f"Each seed S (0, 1, 2) of a regime (REGIME: its folder, as {runs}/regimes/REGIME/seedS here), then "
        "`python -m rlvis.reproduction --runs=runs/repro`:",
        "",
    ]
    lines += [f"    {command}" for command in REGIME_COMMANDS]
    lines += ["", "with FLAGS " + "; ".join(f"`{r.train}` for {r.folder} ({r.name})" for r in REGIMES) + "."]
    return lines


def _cell(summary: dict, row: str, task: str) -> str:
    mean, se = summary["methods"][row].get(task), summary["se"][row].get(task, 0.0)
    return "—" if mean is None else f"{mean:.3f} ± {se:.3f}"


def _seeds(summary: dict, row: str) -> int:
    """Seeds finished for a row (a comparison that was interrupted has fewer than it asked for)."""
    return summary.get("seeds_done", {}).get(row, summary["seeds"])


def verdict(summary: dict, ab: str, base: str, task: str) -> str:
    a, b = summary["methods"][ab].get(task), summary["methods"][base].get(task)
    if a is None or b is None:
        return "—"
    difference = a - b
    se = math.hypot(summary["se"][ab].get(task, 0.0), summary["se"][base].get(task, 0.0))
    if min(_seeds(summary, ab), _seeds(summary, base)) < 2:
        return f"{difference:+.3f} (one seed: no error bar)"
    word = "holds" if difference > 2 * se else "reverses" if difference < -2 * se else "within noise"
    return f"{difference:+.3f} ± {se:.3f}: {word}"


MERGED = (
    "methods",
    "se",
    "per_seed",
    "seeds_done",
    "wall_seconds",
    "encoder",
    "encoded_views_per_step",
    "flops_per_step",
)


def _load(runs: str, experiment: str, merge: tuple[str, ...] = ()) -> dict | None:
    """An experiment's compare.json, with the rows of the `merge` experiments added where they ran the same
    number of steps at the same views per step (its own rows win on a name clash: none is expected)."""
    path = os.path.join(runs, experiment, "compare.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    for other in merge:
        extra = _load(runs, other)
        views = lambda s: set(s.get("encoded_views_per_step", {}).values())
        if extra is None or extra["steps"] != summary["steps"] or views(extra) != views(summary):
            continue
        for field in MERGED:
            summary.setdefault(field, {})
            summary[field] = {**extra.get(field, {}), **summary[field]}
    return summary


def render(runs: str) -> str:
    lines = [
        "# Reproduction on the embedded data",
        "",
        "Written by `python -m rlvis.reproduction --runs=" + runs + "` from the comparison runs' JSON; do not "
        "edit by hand. Each experiment trains its rows at equal encoded views per step (`rlvis.compare`), "
        "three seeds each; cells are mean ± standard error over seeds. A difference holds when it exceeds twice "
        "its standard error. The embedded data are 64-px scenes of 1–4 MNIST digits (the COCO analogue) and "
        "centred digits (the curated ImageNet analogue); the tasks are described in docs/evaluation.md.",
        "",
    ]
    for claim in CLAIMS:
        summary = _load(runs, claim.experiment, claim.merge)
        command = claim.command()
        lines += [f"## {claim.name or claim.experiment}: {claim.claim}", "", f"Paper: {claim.paper}.", ""]
        if summary is None or claim.ab not in summary["methods"] or claim.base not in summary["methods"]:
            lines += ["Not run yet.", "", f"    {command}", ""]
            continue
        steps = summary["steps"]
        seeds = "/".join(str(_seeds(summary, row)) for row in (claim.base, claim.ab))
        wall = {row: sum(w) / len(w) for row, w in summary["wall_seconds"].items() if w}
        lines += [
            f"{seeds} seed(s), {steps} steps, {summary['encoded_views_per_step'][claim.ab]} encoded views per "
            f"step; scored on the encoder each recipe uses ({claim.base}: {summary['encoder'][claim.base]}, "
            f"{claim.ab}: {summary['encoder'][claim.ab]}); mean wall time per run {wall[claim.base]:.0f} s / "
            f"{wall[claim.ab]:.0f} s.",
            "",
            f"| task | {claim.base} | {claim.ab} | difference |",
            "|---|---|---|---|",
        ]
        for task in claim.tasks:
            lines.append(
                f"| {task} | {_cell(summary, claim.base, task)} | {_cell(summary, claim.ab, task)} | "
                f"{verdict(summary, claim.ab, claim.base, task)} |"
            )
        lines += ["", f"    {command}", ""]
    lines += [f"## foresight: {FORESIGHT_CLAIM[0]}", "", f"Paper: {FORESIGHT_CLAIM[1]}.", ""]
    found = [
        (c.experiment, c.ab, s)
        for c in CLAIMS
        if (s := _load(runs, c.experiment)) and c.ab in s["methods"] and "foresight/value/all" in s["methods"][c.ab]
    ]
    found = list({(experiment, row): (experiment, row, s) for experiment, row, s in found}.values())
    if not found:
        lines += ["Not run yet (every AB row above reports it).", ""]
    for experiment, row, summary in found:
        if not _one_scene_set(summary["per_seed"][row]):
            lines += [
                f"{experiment} / {row}: its seeds were scored on different foresight scene sets (rlvis versions "
                "differ); re-score them with `rlvis.evaluate` before comparing.",
                "",
            ]
            continue
        lines += [
            f"{experiment} / {row}: "
            + ", ".join(f"{task.removeprefix('foresight/')} {_cell(summary, row, task)}" for task in FORESIGHT),
            "",
        ]
    return "\n".join(lines + render_regimes(runs)) + "\n"


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "runs",
        None,
        "Folder with one sub-folder per experiment and regimes/ (the committed page: docs/results).",
        required=True,
        flag_values=flag_values,
    )
    flags.DEFINE_string("out", "docs/reproduction.md", "The page to write.", flag_values=flag_values)


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    text = render(args.runs)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"rlvis: wrote {args.out}")


if __name__ == "__main__":
    main()
