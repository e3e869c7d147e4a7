"""docs/reproduction.md is written from the JSON in docs/results: rows, verdicts, missing runs, and the committed
page is exactly what that data gives."""

import json
import os
import shlex

from rlvis import cli, compare, config_lib, main, reproduction

RESULTS = os.path.join("docs", "results")


def _summary(ab_mean, base_mean, se, seeds=3):
    claim = next(c for c in reproduction.CLAIMS if c.experiment == "scenes_only")
    tasks = {t: 0.0 for t in claim.tasks}
    row = lambda mean: {t: mean for t in tasks}
    return claim, dict(
        methods={claim.ab: row(ab_mean), claim.base: row(base_mean)},
        per_seed={claim.ab: []},
        se={claim.ab: row(se), claim.base: row(se)},
        seeds=seeds,
        steps=100,
        wall_seconds={claim.ab: [10.0] * seeds, claim.base: [8.0] * seeds},
        encoded_views_per_step={claim.ab: 256, claim.base: 256},
        encoder={claim.ab: "ema", claim.base: "online"},
    )


def test_verdicts_follow_twice_the_combined_standard_error():
    claim, summary = _summary(0.60, 0.50, 0.02)
    assert reproduction.verdict(summary, claim.ab, claim.base, "linear/count").endswith("holds")  # 0.1 > 2·0.028
    claim, summary = _summary(0.52, 0.50, 0.02)
    assert reproduction.verdict(summary, claim.ab, claim.base, "linear/count").endswith("within noise")
    claim, summary = _summary(0.40, 0.50, 0.02)
    assert reproduction.verdict(summary, claim.ab, claim.base, "linear/count").endswith("reverses")


def test_render_fills_run_experiments_and_lists_missing_ones_with_their_command(tmp_path):
    claim, summary = _summary(0.60, 0.50, 0.02)
    (tmp_path / "scenes_only").mkdir()
    (tmp_path / "scenes_only" / "compare.json").write_text(json.dumps(summary))
    text = reproduction.render(str(tmp_path))
    assert "| linear/count | 0.500 ± 0.020 | 0.600 ± 0.020 | +0.100 ± 0.028: holds |" in text
    assert "3/3 seed(s), 100 steps" in text
    assert text.count("Not run yet.") == len(reproduction.CLAIMS) - 1
    assert "--workdir=runs/repro/dino --methods=dino,ab_dino --seeds=3" in text
    shared = (
        "--workdir=runs/repro/ablations --methods=ab_simclr,ab_simclr+ab.base_loss_weight=0.0,"
        "ab_simclr+ab.use_ema_target=False,ab_simclr+ab.action_tokens=False --seeds=3 --config.total_steps=1200"
    )
    assert text.count(shared) == 3 and "## no_ema_target: Without the EMA target" in text


def test_a_claim_reads_rows_from_the_experiments_it_merges_when_their_steps_match(tmp_path):
    claim = next(c for c in reproduction.CLAIMS if c.name == "ijepa_vs_mae")
    tasks = {t: 0.5 for t in claim.tasks}

    def write(experiment, row, steps, views=256):
        (tmp_path / experiment).mkdir(exist_ok=True)
        (tmp_path / experiment / "compare.json").write_text(
            json.dumps(
                dict(
                    methods={row: tasks},
                    se={row: tasks},
                    per_seed={row: []},
                    seeds=3,
                    steps=steps,
                    wall_seconds={row: [5.0] * 3},
                    encoded_views_per_step={row: views},
                    encoder={row: "online"},
                )
            )
        )

    write("ijepa_scenes", claim.base, 1200)
    write("mae_scenes", claim.ab, 600)
    assert "## ijepa_vs_mae" in (text := reproduction.render(str(tmp_path)))
    assert text.split("## ijepa_vs_mae")[1].split("##")[0].count("Not run yet.") == 1  # other steps: not merged
    write("mae_scenes", claim.ab, 1200)
    section = reproduction.render(str(tmp_path)).split("## ijepa_vs_mae")[1].split("##")[0]
    assert "Not run yet." not in section and f"| {claim.base} | {claim.ab} |" in section
    write("mae_scenes", claim.ab, 1200, views=512)  # another budget: not merged either
    assert "Not run yet." in reproduction.render(str(tmp_path)).split("## ijepa_vs_mae")[1].split("##")[0]


def test_the_committed_page_is_what_the_kept_data_gives():
    """The page is generated: a number edited by hand, a JSON file moved or lost, or a change to the rendering
    that was not re-run all show here."""
    with open(os.path.join("docs", "reproduction.md")) as f:
        committed = f.read()
    generated = reproduction.render(RESULTS)
    assert generated == committed, "re-run `python -m rlvis.reproduction` and commit docs/reproduction.md"
    assert "Not run yet" not in generated and "not run yet" not in generated  # every claim and regime has data


def test_each_recorded_comparison_is_rebuilt_by_its_command_with_the_steps_and_target_it_ran():
    """The page prints a command under every table: run today, it must train what the recorded JSON trained, also
    after the demo's defaults move (steps, the value head's box attention, AB_SimCLR's centred target for the rows
    that read it)."""
    checked = set()
    for claim in reproduction.CLAIMS:
        path = os.path.join(RESULTS, claim.experiment, "compare.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            summary = json.load(f)
        argv = shlex.split(claim.command())[3:]  # after "python -m rlvis.compare"
        args = cli.parse(compare.define_flags, argv)
        configs = config_lib.method_configs(
            args.config, list(args.methods), 1, check_data_paths=False, views_per_step=args.views_per_step
        )
        first = next(iter(summary["methods"]))  # older compare.json files keep only their first row's config
        recorded = summary.get("row_configs", {first: summary["config"]})
        for row, config in configs.items():
            assert config.total_steps == summary["steps"], (claim.experiment, row)
            if row not in recorded:
                continue
            saved = recorded[row]
            assert config.model.box_attention == recorded_field(saved, "model", "box_attention"), (
                claim.experiment,
                row,
            )
            if config_lib.image_vocabulary(config):
                assert config.ab.center_target == recorded_field(saved, "ab", "center_target"), (claim.experiment, row)
        checked.add(claim.experiment)
    assert checked == {claim.experiment for claim in reproduction.CLAIMS}  # every claim's data is kept


# Switches added after some of the kept runs were made: a run recorded without one ran without it.
BEFORE_THE_SWITCH = {("model", "box_attention"): False, ("ab", "center_target"): False, ("ab", "reward"): "base"}


def recorded_field(saved: dict, section: str, name: str):
    return saved.get(section, {}).get(name, BEFORE_THE_SWITCH[(section, name)])


def test_each_regime_seed_is_rebuilt_by_its_flags():
    """The regime commands (REGIME_COMMANDS with the regime's FLAGS) train what each kept seed trained."""
    for regime in reproduction.REGIMES:
        for seed in range(reproduction.REGIME_SEEDS):
            workdir = os.path.join(RESULTS, "regimes", regime.folder, f"seed{seed}")
            with open(os.path.join(workdir, "results.json")) as f:
                saved = json.load(f)["config"]
            argv = [*shlex.split(regime.train), f"--workdir={workdir}", f"--config.seed={seed}"]
            config = cli.parse(main.define_flags, argv).config
            for field in ("total_steps", "seed", "method", "model.box_attention", "ab.center_target", "ab.reward"):
                section, _, name = field.rpartition(".")
                ours = config[section][name] if section else config[name]
                theirs = recorded_field(saved, section, name) if section else saved[name]
                assert ours == theirs, (regime.folder, seed, field)


def test_the_results_folder_lists_the_command_of_each_experiment_it_keeps():
    """docs/results/README.md puts each folder next to the command that makes it: the page's own commands."""
    with open(os.path.join(RESULTS, "README.md")) as f:
        readme = f.read()
    for claim in reproduction.CLAIMS:
        assert f"| `{claim.experiment}/` | `{claim.command()}` |" in readme, claim.experiment
    for regime in reproduction.REGIMES:
        assert f"| `regimes/{regime.folder}/` | `{regime.train}` |" in readme, regime.folder
    kept = {name for name in os.listdir(RESULTS) if os.path.isdir(os.path.join(RESULTS, name))}
    assert kept == {claim.experiment for claim in reproduction.CLAIMS} | {"regimes"}  # nothing unread is kept
    assert set(os.listdir(os.path.join(RESULTS, "regimes"))) == {regime.folder for regime in reproduction.REGIMES}


def test_regime_targets_are_averaged_over_seeds_and_missing_regimes_are_listed(tmp_path):
    regime = reproduction.REGIMES[0]
    seeds = [tmp_path / "regimes" / regime.folder / f"seed{k}" for k in range(reproduction.REGIME_SEEDS)]
    for k, workdir in enumerate(seeds):
        value = 0.40 + 0.02 * k  # zoom-in ratios 0.8, 0.84, 0.88; all pairs value − invariance 0.10, 0.12, 0.14
        scores = {
            "foresight/value/zoom_in": value,
            "foresight/brute_force/zoom_in": 0.5,
            "foresight/value/all": value,
            "foresight/invariance/all": 0.3,
            "foresight/value/iou_0-0.2": 0.3,
            "foresight/invariance/iou_0-0.2": 0.3,
            "foresight/brute_force/all": 0.34 + 0.01 * k,
        }
        workdir.mkdir(parents=True)
        (workdir / "results.json").write_text(json.dumps(dict(trained=scores)))
    search = [
        dict(policy="value", temperature=0.0, success=0.3),
        dict(policy="value", temperature=0.1, success=0.9),
        dict(policy="random", temperature=1.0, success=0.2),
    ]
    for workdir in seeds:
        (workdir / "search_results.json").write_text(json.dumps(search))
    text = "\n".join(reproduction.render_regimes(str(tmp_path)))
    assert "| search: value policy − random ≥ +0.15 (5 encoder passes; brute force 90) | +0.100 ± 0.000 |" in text
    (seeds[1] / "search_results.json").unlink()
    text = "\n".join(reproduction.render_regimes(str(tmp_path)))
    assert "| zoom-in: value / brute force ≥ 0.8 | 0.840 ± 0.023 | 0.800, 0.840, 0.880 | yes |" in text
    assert "| all pairs: value − invariance ≥ +0.05 | +0.120 ± 0.012 | +0.100, +0.120, +0.140 | yes |" in text
    assert "| IoU (0, 0.2]: value − invariance ≥ +0.10 | +0.000 ± 0.000 | +0.000, +0.000, +0.000 | no |" in text
    assert "search:" not in text  # a seed without search: no row rather than a partial mean
    assert (
        "| all pairs: brute force − invariance (a value head as good as rendering) | +0.050 ± 0.006 | "
        "+0.040, +0.050, +0.060 | reference |"
    ) in text
    assert "IoU (0, 0.2]: brute force" not in text  # its brute force was not scored: no row
    assert all(f"{r.name}: not run yet" in text for r in reproduction.REGIMES[1:])
    rescored = dict(trained={}, foresight={**scores, "foresight/value/all": 0.9})  # a rescore wins over `trained`
    (seeds[2] / "results.json").write_text(json.dumps(rescored))
    assert "+0.100, +0.120, +0.600 | yes |" in "\n".join(reproduction.render_regimes(str(tmp_path)))
    for workdir in seeds[1:]:  # seeds scored on another scene set: no means across them
        (workdir / "results.json").write_text(json.dumps(dict(trained={"foresight/chance/all": 0.1})))
    assert "| the demo default" not in "\n".join(reproduction.render_regimes(str(tmp_path)))
