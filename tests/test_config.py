import pytest

from configs import demo
from rlvis import checkpoints, config_lib, methods
from rlvis.envs import photometric
from rlvis.errors import ConfigError
from rlvis.objectives import rewards

# The sections every config holds, whatever its method; the rest are the method's own (methods.sections).
SHARED = {
    "method",
    "seed",
    "total_steps",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "data",
    "batch",
    "env",
    "model",
    "ema",
    "sharding",
    "optim",
    "evals",
    "eval",
}


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    return [
        leaf
        for key, value in tree.items()
        for leaf in (_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    ]


def test_demo_configs_are_valid():
    config_lib.validate(demo.get_config(), device_count=1)
    config_lib.validate(demo.get_config("tiny"), device_count=8)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("batch.bootstrap", 12, r"config.batch.bootstrap=12 must be a positive multiple of the 8 devices"),
        ("env.views", 1, r"config.env.views=1 must be at least 2"),
        ("env.scale", (0.5, 0.2), r"config.env.scale=\(0.5, 0.2\) must satisfy"),
        ("env.scale", (0.5, 2.0), r"config.env.scale=\(0.5, 2.0\) must satisfy 0 < min <= max <= 1"),
        ("env.annotation_scale", (0.0, 2.0), r"config.env.annotation_scale=\(0.0, 2.0\) must satisfy 0 < min <= max"),
        ("ab.gamma", 1.0, r"config.ab.gamma=1.0 must be in \[0, 1\)"),
        ("model.variant", "Q/8", r"config.model.variant: unknown ViT variant 'Q/8'"),
        ("env.view_size", 36, r"config.env.view_size=36 must be a multiple of the patch size 8"),
        ("eval.encoder", "student", r"config.eval.encoder='student'"),
        ("data.digits_per_scene", (1, 6), r"config.data.digits_per_scene=\(1, 6\) must satisfy 1 <= min <= max <= 4"),
        (
            "ab.reward",
            "labels",
            r"config.ab.reward='labels' must be 'base', 'oracle', 'oracle:F' or 'shuffled_oracle:F'",
        ),
        ("ema.start", -0.1, r"config.ema.start=-0.1, end=1.0 must satisfy 0 <= start <= end <= 1"),
        ("ema.end", 0.9, r"config.ema.start=0.99, end=0.9 must satisfy 0 <= start <= end <= 1"),
        (
            "optim.grad_accum_steps",
            2,
            r"config.ab.center_target centres the target over the step's bootstrap views, "
            r"which config.optim.grad_accum_steps > 1 splits into micro-batches",
        ),
        ("data.annotation_scene_fraction", 1.5, r"config.data.annotation_scene_fraction=1.5 must be in \[0, 1\]"),
        ("data.annotation_scene_fraction", 0.5, None),  # with the oracle reward below: scenes have no single label
    ],
)
def test_impossible_values_name_the_field(field, value, message):
    config = demo.get_config("tiny")
    section, name = field.split(".")
    config[section][name] = value
    if message is None:
        config.ab.reward = "oracle"
        message = r"config.ab.reward='oracle' needs ab_simclr on the embedded demo data with digit annotations"
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config, device_count=8)


@pytest.mark.parametrize(
    "reward",
    [
        "labels",
        "Oracle",
        "oracle:",
        "oracle:x",
        "oracle:1.5",
        "oracle:-0.1",
        "shuffled_oracle:2",
        "shuffled_oracle:",
        "base:0.5",
        "base:1",
    ],
)
def test_a_reward_that_is_not_a_known_name_is_one_line_naming_the_field(reward):
    config = demo.get_config("tiny")
    config.ab.reward = reward
    message = (
        f"config.ab.reward={reward!r} must be 'base', 'oracle', 'oracle:F' or 'shuffled_oracle:F' with F in [0, 1]"
    )
    assert rewards.check(config) == message
    with pytest.raises(ConfigError) as error:
        config_lib.validate(config, device_count=8)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "reward,parsed",
    [
        ("base", ("base", 1.0)),
        ("oracle", ("oracle", 1.0)),
        ("oracle:0.25", ("oracle", 0.25)),
        ("oracle:0", ("oracle", 0.0)),
        ("shuffled_oracle:0.5", ("shuffled_oracle", 0.5)),
        ("shuffled_oracle:1", ("shuffled_oracle", 1.0)),
    ],
)
def test_reward_names_parse_and_the_controls_need_the_demo_streams_ground_truth(reward, parsed, tmp_path):
    assert rewards.parse(reward) == parsed
    config = demo.get_config("tiny")
    config.ab.reward = reward
    assert rewards.check(config) is None
    config_lib.validate(config, device_count=8)
    needs = (
        rf"^config.ab.reward={reward!r} needs ab_simclr on the embedded demo data with digit annotations "
        r"\(the only streams whose classes are known\)$"
    )
    others = [
        demo.get_config("tiny,method=ab_dino"),
        demo.get_config("tiny,method=ab_clip"),
        demo.get_config("tiny,data=image_folder"),
        demo.get_config("tiny"),
    ]
    others[2].data.path = str(tmp_path)
    others[3].data.annotation_scene_fraction = 0.5  # scene annotations: no single class each
    for other in others:
        other.ab.reward = reward
        if parsed[0] == "base":
            config_lib.validate(other, device_count=8)
        else:
            with pytest.raises(ConfigError, match=needs):
                config_lib.validate(other, device_count=8)


def test_resume_refuses_a_config_that_changes_the_model_or_the_data():
    saved = demo.get_config("tiny").to_dict()
    config = demo.get_config("tiny")
    config.log_every, config.eval.probe_steps = 7, 10  # harmless on resume
    config_lib.check_resume(saved, config)
    config.eval.digits_per_class = 40  # would move pre-training digits into the held-out set
    config.ab.gamma = 0.5
    with pytest.raises(config_lib.ConfigError, match=r"ab.gamma: 0.0 -> 0.5, eval.digits_per_class: 20 -> 40"):
        config_lib.check_resume(saved, config)


def test_resume_ignores_a_changed_field_the_method_does_not_read():
    """`ab.center_target` changes only AB_SimCLR's target: an AB_DINO or AB_CLIP run saved with it off resumes under
    today's default; an AB_SimCLR run does not."""
    for method, refused in (("ab_dino", False), ("ab_clip", False), ("ab_simclr", True)):
        saved = demo.get_config(f"tiny,method={method}").to_dict()
        saved["ab"]["center_target"] = False
        config = demo.get_config(f"tiny,method={method}")
        if refused:
            with pytest.raises(config_lib.ConfigError, match=r"ab.center_target: False -> True"):
                config_lib.check_resume(saved, config)
        else:
            assert config_lib.check_resume(saved, config) == ""
            config.ab.gamma = 0.5  # an AB field every AB method reads still counts
            with pytest.raises(config_lib.ConfigError, match=r"\(ab.gamma: 0.0 -> 0.5\)"):
                config_lib.check_resume(saved, config)


def test_resume_counts_a_field_only_one_of_the_configs_holds():
    """Configs hold only the fields their method reads: a field the saved config has and today's lacks (or the
    other way round) is a change."""
    config = demo.get_config("tiny")
    saved = config.to_dict()
    saved["model"]["value_residual"] = False  # a field this rlvis no longer has
    with pytest.raises(config_lib.ConfigError, match=r"\(model.value_residual: False -> None\)"):
        config_lib.check_resume(saved, config)
    del saved["model"]["value_residual"], saved["ema"]["end"]
    with pytest.raises(config_lib.ConfigError, match=r"\(ema.end: None -> 1.0\)"):
        config_lib.check_resume(saved, config)


def test_box_attention_is_checked_on_resume_for_every_method():
    """Every method's model holds the value head, so the field changes the parameters of all of them."""
    for method in ("ab_simclr", "simclr", "mae"):
        saved = demo.get_config(f"tiny,method={method}").to_dict()
        saved["model"]["box_attention"] = False
        config = demo.get_config(f"tiny,method={method}")
        with pytest.raises(config_lib.ConfigError, match=r"model.box_attention: False -> True"):
            config_lib.check_resume(saved, config)
        config.model.box_attention = False
        assert config_lib.check_resume(saved, config) == ""


def test_a_checkpoint_of_an_older_format_is_refused_naming_its_version():
    with pytest.raises(checkpoints.FormatError, match=r"^x: checkpoint format 1, this rlvis reads format 2; ") as error:
        checkpoints.check_format({"config": {}}, "x")  # metadata without `format`: written before format 2
    assert isinstance(error.value, ConfigError) and checkpoints.FORMAT == 2
    with pytest.raises(checkpoints.FormatError, match=r"^step 9 in w: checkpoint format 3, this rlvis reads format 2"):
        checkpoints.check_format({"format": 3, "config": {}}, "step 9 in w")
    checkpoints.check_format({"format": checkpoints.FORMAT, "config": {}}, "x")  # today's: accepted


def test_config_argument_picks_size_and_method():
    assert demo.get_config("method=simclr").method == "simclr"
    tiny = demo.get_config("tiny,method=simclr")
    assert tiny.method == "simclr" and tiny.total_steps == demo.get_config("tiny").total_steps
    with pytest.raises(ValueError, match="method='byol' is not one of"):
        demo.get_config("method=byol")
    with pytest.raises(ValueError, match="unknown argument 'huge'"):
        demo.get_config("huge")
    long = demo.get_config("long")
    assert long.total_steps == 2 * demo.get_config().total_steps and long.method == "ab_simclr"
    config_lib.validate(long, device_count=1)
    with pytest.raises(ValueError, match="'tiny' and 'long' are two sizes"):
        demo.get_config("tiny,long")
    with pytest.raises(ValueError, match=r"data='zip' is not one of"):
        demo.get_config("data=zip")


def test_the_default_config_is_small_and_each_method_holds_only_the_sections_it_reads():
    default = demo.get_config()
    assert len(_leaves(default.to_dict())) <= 80, len(_leaves(default.to_dict()))
    assert default.method == "ab_simclr" and set(default) == SHARED | {"simclr", "augment", "ab"}
    for method in methods.NAMES:
        config = demo.get_config(f"method={method}")
        own = methods.sections(method)
        assert set(config) == SHARED | set(own), method
        assert methods.bootstraps(config) == ("ab" in own)
        for section, fields in own.items():  # at their defaults; the demo's digits are grayscale
            want = {k: v for k, v in fields.items() if section != "augment" or k not in photometric.COLOUR_ONLY}
            assert config[section].to_dict() == want, (method, section)
        family = methods.FAMILIES[methods.base_name(method)]
        assert ("foresight" in config.evals) == family.ANNOTATES, method  # absent for MAE and I-JEPA
        assert "tfds" not in config.evals  # the `tfds` preset adds it
        assert ("annotation_scene_fraction" in config.data) == (not family.CAPTIONS), method
        config_lib.validate(config, device_count=1)
    assert "tfds" in demo.get_config("tiny,evals=tfds").evals
    assert set(photometric.COLOUR_ONLY) <= set(demo.get_config("data=webdataset").augment)  # RGB files: colour too


@pytest.mark.parametrize("start", methods.NAMES)
def test_with_method_gives_the_sections_the_method_is_built_with(start):
    for method in methods.NAMES:
        config = demo.get_config(f"method={start}")
        config.optim.lr = 0.5  # a shared field keeps its value
        swapped = config_lib.with_method(config, method)
        built = demo.get_config(f"method={method}")
        assert swapped.method == method and swapped.optim.lr == 0.5 and config.method == start  # a copy
        swapped.optim.lr = built.optim.lr
        if methods.FAMILIES[methods.base_name(start)].ANNOTATES:
            assert swapped.to_dict() == built.to_dict(), (start, method)
        else:  # a config without foresight gets none back
            assert "foresight" not in swapped.evals
            assert {k: v for k, v in swapped.to_dict().items() if k != "evals"} == {
                k: v for k, v in built.to_dict().items() if k != "evals"
            }, (start, method)
    kept = demo.get_config(f"method={start}")
    if "augment" in kept:  # a section both methods read keeps its values
        kept.augment.brightness = 0.123
        assert config_lib.with_method(kept, "simclr").augment.brightness == 0.123


def test_the_centred_target_is_one_default_that_every_ab_row_holds():
    """Whatever the base config's method, a compared AB row holds `ab` at its defaults (centred: only AB_SimCLR's
    target reads it, the other AB methods accept it) and a base row holds no `ab` at all; also when the method is
    picked on the command line."""
    from rlvis import cli, main

    rows = ["simclr", "ab_simclr", "dino", "ab_dino", "ab_clip"]
    for arg in ("", "method=simclr", "long,method=ab_dino"):
        configs = config_lib.method_configs(demo.get_config(arg), rows, 1, check_data_paths=False)  # validates
        for row, config in configs.items():
            assert config.ab.center_target if row.startswith("ab_") else "ab" not in config, (arg, row)
    args = cli.parse(main.define_flags, ["--config=configs/demo.py:method=ab_dino", "--workdir=unused"])
    assert args.config.method == "ab_dino" and args.config.ab.center_target
    config_lib.validate(args.config, device_count=1)


def test_a_method_set_without_its_sections_is_a_config_error_naming_them():
    config = demo.get_config("tiny")
    config.method = "ab_dino"  # as --config.method=ab_dino gives: AB_SimCLR's sections, no `dino`
    with pytest.raises(ConfigError, match=r"dino"):
        config_lib.validate(config, device_count=1)


@pytest.mark.parametrize(
    "method,use_ema_target,expected",
    [
        ("simclr", None, "online"),
        ("clip", None, "online"),
        ("dino", None, "ema"),
        ("mae", None, "online"),
        ("ijepa", None, "ema"),
        ("ab_simclr", True, "ema"),
        ("ab_clip", True, "ema"),
        ("ab_dino", False, "ema"),
        ("ab_simclr", False, "online"),
    ],
)
def test_auto_encoder_scores_each_method_as_its_paper_does(method, use_ema_target, expected):
    config = demo.get_config(f"method={method}")
    if use_ema_target is None:  # a base method has no AB target network to choose
        assert "ab" not in config
    else:
        config.ab.use_ema_target = use_ema_target
    assert config_lib.eval_encoder(config) == expected
    assert config_lib.eval_encoder(config, "ema") == "ema"  # an explicit choice wins


@pytest.mark.parametrize(
    "entry,message",
    [
        (
            dict(type="imagenet_tasks", final=True, every=0),
            r"config.evals.extra: evaluator type 'imagenet_tasks' is not a",
        ),
        (
            dict(type="digit_monitor", final=True, every=0, shots=3),
            r"config.evals.extra: digit_monitor takes no field 'shots'",
        ),
        (dict(type="digit_monitor", final=True), r"config.evals.extra needs the field 'every'"),
        (dict(type="digit_monitor", final=False, every=-5), r"config.evals.extra.every=-5 must be >= 0"),
        (dict(type="tfds_tasks", final=True, every=0, name=""), r"config.evals.extra.name must name the TFDS dataset"),
    ],
)
def test_a_wrong_evaluator_entry_is_a_one_line_error_before_any_compute(entry, message):
    config = demo.get_config("tiny")
    config.evals.extra = entry
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config, device_count=8)


def test_evaluators_run_when_their_entry_says():
    from rlvis.evaluators import suite

    config = demo.get_config()
    assert sorted(suite.due(config, 600)) == ["digits", "foresight"] and suite.due(config, 300) == []
    config.evals.foresight.every = 300
    assert suite.due(config, 300) == ["foresight"]


def test_every_method_file_defines_the_whole_interface_and_is_accepted_everywhere():
    """A method is one file in rlvis/methods: the registry lists it, and configs, compare and validation accept its
    base name, and its AB name where it has annotations to bootstrap, without a second list anywhere."""
    from rlvis import methods

    for name, module in methods.FAMILIES.items():
        missing = [field for field in methods.INTERFACE if not hasattr(module, field)]
        assert not missing, f"rlvis/methods/{name}.py lacks {missing}"
        for method in (name, f"ab_{name}") if module.AB_VARIANT else (name,):
            config = demo.get_config(f"tiny,method={method}")
            config_lib.validate(config, device_count=8)
            assert methods.get(config) is module and methods.encoded_views_per_step(config) > 0
    assert set(methods.NAMES) == {
        n for base, module in methods.FAMILIES.items() for n in ((base, f"ab_{base}") if module.AB_VARIANT else (base,))
    }
    assert {base for base, module in methods.FAMILIES.items() if module.AB_VARIANT} == {"simclr", "dino", "clip"}
    assert "mae" in methods.NAMES and "ab_mae" not in methods.NAMES
    config = demo.get_config("tiny,method=mae")
    assert "foresight" not in config.evals
    config.evals.foresight = dict(type="foresight", final=True, every=0)
    with pytest.raises(
        config_lib.ConfigError, match="evals.foresight needs an annotation distribution, which mae has not; remove it"
    ):
        config_lib.validate(config, device_count=8)


def test_importing_the_entry_point_and_configs_does_not_start_jax():
    """`jax.distributed.initialize()` must run before anything starts the XLA backend, and rlvis.main calls it
    after parsing its flags, which imports the configs and config_lib (and so every method file)."""
    import subprocess
    import sys

    from tests.runs import ROOT, subprocess_env

    code = (
        "import rlvis.main, configs.demo, configs.cc12m; from jax._src import xla_bridge; "
        "assert not xla_bridge._backends, 'an import started the XLA backend'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
