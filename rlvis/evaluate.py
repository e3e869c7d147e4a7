"""Evaluate a workdir's checkpoints with one command, during or after training.

    python -m rlvis.evaluate --workdir=DIR [--step=S] [--watch] [--encoder=ema|online] [--poll_seconds=60]
        [--evals=table1|coco|epic_kitchens --evals_root=PATH [--probe=depth=2,width=64,steps=300]]

The run's config comes from the checkpoint's metadata, so the workdir is all it needs; it runs the evaluators of
`config.evals` marked `final` (the trainer's own final evaluation, hence the same numbers on the same checkpoint). Each
evaluated step is written to `DIR/eval/step_<S>.json`, appended to `DIR/eval_metrics.jsonl` and TensorBoard
(`DIR/tensorboard/eval_metrics`), and drawn as curves in `DIR/plots/eval.png`. `--watch` polls for checkpoints
not yet evaluated and stops after the run's last step; a step already evaluated is skipped. `--evals` adds a paper
table's evaluators (rlvis/evaluators/presets.py) to the run's own, with their data under `--evals_root` (TFDS's
data dir for table1, the COCO or VISOR folder for the others); `--probe` makes their decoder probe smaller or
shorter than the paper's (fields of `sequence_probe.ProbeSettings`).
"""

import time

from absl import flags

from rlvis import cli, storage


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "The training run's workdir.", required=True, flag_values=flag_values)
    flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest).", flag_values=flag_values)
    flags.DEFINE_bool(
        "watch", False, "Evaluate every new checkpoint until the run's last step.", flag_values=flag_values
    )
    flags.DEFINE_enum("encoder", None, ["ema", "online"], "Override config.eval.encoder.", flag_values=flag_values)
    flags.DEFINE_float("poll_seconds", 60.0, "How often --watch looks for new checkpoints.", flag_values=flag_values)
    flags.DEFINE_string(
        "evals", "", "A paper table's evaluators to add: table1, coco or epic_kitchens.", flag_values=flag_values
    )
    flags.DEFINE_string(
        "evals_root", "", "Where the preset's data are (TFDS data dir, COCO or VISOR folder).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "probe", "", "Decoder-probe fields for --evals, e.g. 'depth=2,width=64,steps=300'.", flag_values=flag_values
    )


def evaluate_step(
    workdir: str,
    step: int | None = None,
    encoder: str | None = None,
    evals: str = "",
    evals_root: str = "",
    probe: dict | None = None,
) -> tuple[int, dict]:
    """(step, {task: score}) for one checkpoint, written to eval/step_<S>.json, eval_metrics.jsonl, TensorBoard."""
    from rlvis import checkpoints, config_lib, methods, metrics
    from rlvis.data import sources
    from rlvis.evaluators import presets, suite
    from rlvis.models import ab_model

    config, state, step = checkpoints.load_run(workdir, step)
    if evals:
        presets.apply(config, evals, evals_root, probe)
        for name, entry in config.evals.items():
            error = suite.check_entry(name, entry)
            if error:
                raise ValueError(error)
    encoder = config_lib.eval_encoder(config, encoder)
    model = methods.build_model(config)
    encode = lambda params, views: model.apply(params, views, method=ab_model.ABModel.encode)
    evaluators = suite.build(config, encode, sources.image_channels(config), "final")
    scores = suite.run_all(evaluators, state[config_lib.params_key(encoder)], progress=True)
    storage.write_json(
        storage.join(workdir, "eval", f"step_{step}.json"), dict(step=step, encoder=encoder, scores=scores)
    )
    writer = metrics.MetricWriter(workdir, "eval_metrics")
    writer.write(step, {f"eval/{task}": score for task, score in scores.items()})
    writer.close()
    suite.plot_curves(writer.path, "eval/", storage.join(workdir, "plots", "eval.png"))
    return step, scores


def _evaluated(workdir: str) -> set[int]:
    directory = storage.path(workdir) / "eval"
    if not directory.exists():
        return set()
    return {int(p.name[5:-5]) for p in directory.iterdir() if p.name.startswith("step_") and p.name.endswith(".json")}


def _print(step: int, scores: dict) -> None:
    print(f"step {step}: " + "  ".join(f"{task} {score:.3f}" for task, score in scores.items()), flush=True)


def watch(
    workdir: str,
    encoder: str | None = None,
    poll_seconds: float = 60.0,
    evals: str = "",
    evals_root: str = "",
    probe: dict | None = None,
) -> None:
    """Evaluate every checkpoint not yet evaluated, as they appear, until the run's last step is evaluated."""
    from rlvis import checkpoints

    while True:
        steps = checkpoints.checkpoint_steps(workdir)
        for step in sorted(set(steps) - _evaluated(workdir)):
            try:
                _print(*evaluate_step(workdir, step, encoder, evals, evals_root, probe))
            except FileNotFoundError:
                if step in checkpoints.checkpoint_steps(workdir):
                    raise  # not a checkpoint that keep_checkpoints removed: a real missing file
                continue
        if steps and steps[-1] >= checkpoints.saved_config(workdir, steps[-1]).total_steps:
            return
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    probe = None
    if args.evals:
        from rlvis.evaluators import presets

        if args.evals not in presets.PRESETS:
            cli.fail(f"--evals={args.evals!r} is not one of {sorted(presets.PRESETS)}")
        if args.evals != "table1" and not args.evals_root:
            cli.fail(f"--evals={args.evals} needs --evals_root, the dataset's folder")
        try:
            probe = presets.parse_probe(args.probe)
        except (ValueError, SyntaxError) as error:
            cli.fail(f"--probe: {error}")
    if args.watch:
        watch(args.workdir, args.encoder, args.poll_seconds, args.evals, args.evals_root, probe)
        return
    with cli.reading_checkpoint(args.workdir):
        try:
            _print(*evaluate_step(args.workdir, args.step, args.encoder, args.evals, args.evals_root, probe))
        except ValueError as error:
            cli.fail(str(error))


if __name__ == "__main__":
    main()
