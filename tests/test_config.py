import pytest

from configs import demo
from rlvis import config_lib, methods


def test_demo_configs_are_valid():
    config_lib.validate(demo.get_config(), device_count=1)
    config_lib.validate(demo.get_config("tiny"), device_count=8)


@pytest.mark.parametrize("field,value,message", [
    ("batch.bootstrap", 12, r"config.batch.bootstrap=12 must be a positive multiple of the 8 devices"),
    ("env.views", 1, r"config.env.views=1 must be at least 2"),
    ("env.scale", (0.5, 0.2), r"config.env.scale=\(0.5, 0.2\) must satisfy"),
    ("env.scale", (0.5, 2.0), r"config.env.scale=\(0.5, 2.0\) must satisfy 0 < min <= max <= 1"),
    ("env.local_views", 3, r"config.env.local_views=3 must be in \[0, env.views=3\)"),
    ("env.local_zoom", (0.9, 0.7), r"config.env.local_zoom=\(0.9, 0.7\) must satisfy 0 < min <= max"),
    ("env.local_pan", -0.1, r"config.env.local_pan=-0.1 must be at least 0"),
    ("env.annotation_scale", (0.0, 2.0), r"config.env.annotation_scale=\(0.0, 2.0\) must satisfy 0 < min <= max"),
    ("ab.gamma", 1.0, r"config.ab.gamma=1.0 must be in \[0, 1\)"),
    ("model.variant", "Q/8", r"config.model.variant: unknown ViT variant 'Q/8'"),
    ("env.view_size", 36, r"config.env.view_size=36 must be a multiple of the patch size 8"),
    ("eval.encoder", "student", r"config.eval.encoder='student'"),
    ("data.digits_per_scene", (1, 6), r"config.data.digits_per_scene=\(1, 6\) must satisfy 1 <= min <= max <= 4"),
    ("ab.reward", "labels", r"config.ab.reward='labels' must be 'base' or 'oracle'"),
    ("optim.grad_accum_steps", 2, r"config.ab.center_target centres the target over the step's bootstrap views, "
                                  r"which config.optim.grad_accum_steps > 1 splits into micro-batches"),
    ("ab.annotation_queue", 24, r"config.ab.annotation_queue=24 must be a multiple of config.batch.annotation=16"),
    ("ab.source_prior", True, r"config.ab.annotation_queue cannot be combined with config.ab.source_prior=True"),
    ("data.annotation_scene_fraction", 0.5, None),  # with the oracle reward below: scenes have no single label
    ("ab.oracle_fraction", 0.5, r"config.ab.oracle_fraction=0.5 must be in \[0, 1\] and needs config.ab.reward="),
])
def test_impossible_values_name_the_field(field, value, message):
    config = demo.get_config("tiny")
    section, name = field.split(".")
    config[section][name] = value
    if field == "ab.source_prior":
        config.ab.annotation_queue = 32
    if message is None:
        config.ab.reward = "oracle"
        message = r"config.ab.reward='oracle' needs ab_simclr on the embedded demo data with digit annotations"
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config, device_count=8)


def test_the_annotation_queue_is_for_ab_simclr_only():
    for method in ("ab_dino", "ab_clip", "simclr"):
        config = demo.get_config(f"tiny,method={method}")
        config.ab.annotation_queue = 32
        with pytest.raises(config_lib.ConfigError, match=r"config.ab.annotation_queue is for AB_SimCLR"):
            config_lib.validate(config, device_count=8)


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
    """A DINO run saved before `ab.center_target` existed (read back as False) resumes under today's default; an
    AB_SimCLR run, whose target it changes, does not."""
    for method, refused in (("dino", False), ("ab_dino", False), ("ab_clip", False), ("ab_simclr", True)):
        saved = demo.get_config(f"tiny,method={method}").to_dict()
        saved["ab"]["center_target"] = False
        config = demo.get_config(f"tiny,method={method}")
        if refused:
            with pytest.raises(config_lib.ConfigError, match=r"ab.center_target: False -> True"):
                config_lib.check_resume(saved, config)
        else:
            assert config_lib.check_resume(saved, config) == ""
            config.ab.gamma = 0.5  # an AB field every AB method reads still counts
            if methods.bootstraps(config):
                with pytest.raises(config_lib.ConfigError, match=r"\(ab.gamma: 0.0 -> 0.5\)"):
                    config_lib.check_resume(saved, config)


def test_a_run_saved_before_box_attention_reads_back_without_it_and_resumes_only_with_it_off():
    """Every method's model holds the value head, so the field changes the parameters of all of them."""
    from rlvis import checkpoints
    for method in ("ab_simclr", "simclr"):
        saved = demo.get_config(f"tiny,method={method}").to_dict()
        del saved["model"]["box_attention"]  # as an rlvis before the field saved it
        read_back = checkpoints.with_current_defaults(saved)
        assert read_back.model.box_attention is False
        config = demo.get_config(f"tiny,method={method}")
        with pytest.raises(config_lib.ConfigError, match=r"model.box_attention: False -> True"):
            config_lib.check_resume(read_back.to_dict(), config)
        config.model.box_attention = False
        assert config_lib.check_resume(read_back.to_dict(), config) == ""


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


def test_the_centred_target_is_one_default_that_only_ab_simclr_reads():
    """Whatever the base config's method, a compared AB_SimCLR row is centred, and every other method accepts the
    field (it has no such target), also when the method is set on the command line."""
    from rlvis import cli, main
    rows = ["simclr", "ab_simclr", "dino", "ab_dino", "ab_clip"]
    for arg in ("", "method=simclr", "long,method=ab_dino"):
        configs = config_lib.method_configs(demo.get_config(arg), rows, 1, check_data_paths=False)  # validates
        assert all(config.ab.center_target for config in configs.values())
    args = cli.parse(main.define_flags, ["--config=configs/demo.py", "--config.method=ab_dino", "--workdir=unused"])
    config_lib.validate(args.config, device_count=1)


@pytest.mark.parametrize("method,use_ema_target,expected", [
    ("simclr", True, "online"), ("clip", True, "online"), ("dino", True, "ema"), ("ab_simclr", True, "ema"),
    ("ab_clip", True, "ema"), ("ab_dino", False, "ema"), ("ab_simclr", False, "online")])
def test_auto_encoder_scores_each_method_as_its_paper_does(method, use_ema_target, expected):
    config = demo.get_config(f"method={method}")
    config.ab.use_ema_target = use_ema_target
    assert config_lib.eval_encoder(config) == expected
    assert config_lib.eval_encoder(config, "ema") == "ema"  # an explicit choice wins


@pytest.mark.parametrize("section,field", [("ab", "shared_vocabulary"), ("model", "value_residual")])
def test_annotation_embedding_switches_refuse_a_dino_base(section, field):
    config = demo.get_config("tiny,method=ab_dino")
    config[section][field] = True
    with pytest.raises(config_lib.ConfigError, match=rf"config.{section}.{field} is for SimCLR and CLIP bases"):
        config_lib.validate(config, device_count=1)


@pytest.mark.parametrize("entry,message", [
    (dict(type="imagenet_tasks", final=True, every=0), r"config.evals.extra: evaluator type 'imagenet_tasks' is not a"),
    (dict(type="digit_monitor", final=True, every=0, shots=3), r"config.evals.extra: digit_monitor takes no field 'shots'"),
    (dict(type="digit_monitor", final=True), r"config.evals.extra needs the field 'every'"),
    (dict(type="digit_monitor", final=False, every=-5), r"config.evals.extra.every=-5 must be >= 0"),
    (dict(type="tfds_tasks", final=True, every=0, name=""), r"config.evals.extra.name must name the TFDS dataset"),
])
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
    interface = ("NAME", "ANNOTATES", "AB_VARIANT", "EMA_TEACHER", "FIXED_EMA", "CAPTIONS", "EMBEDDING_ANNOTATIONS",
                 "IMAGE_ANNOTATIONS", "build_model", "setup_heads", "init_outputs", "source_annotation_embedding",
                 "annotation_views_per_step", "render_annotation", "optimizer_rules", "initial_state", "loss",
                 "annotations", "digit_annotation", "digit_vocabulary")
    for name, module in methods.FAMILIES.items():
        missing = [field for field in interface if not hasattr(module, field)]
        assert not missing, f"rlvis/methods/{name}.py lacks {missing}"
        for method in (name, f"ab_{name}") if module.AB_VARIANT else (name,):
            config = demo.get_config(f"tiny,method={method}")
            config_lib.validate(config, device_count=8)
            assert methods.get(config) is module and methods.encoded_views_per_step(config) > 0
    assert set(methods.NAMES) == {n for base, module in methods.FAMILIES.items()
                                  for n in ((base, f"ab_{base}") if module.AB_VARIANT else (base,))}
    assert {base for base, module in methods.FAMILIES.items() if module.AB_VARIANT} == {"simclr", "dino", "clip"}
    assert "mae" in methods.NAMES and "ab_mae" not in methods.NAMES
    config = demo.get_config("tiny,method=mae")
    config.evals.foresight.final = True
    with pytest.raises(config_lib.ConfigError, match="evals.foresight needs an annotation distribution"):
        config_lib.validate(config, device_count=8)


def test_importing_the_entry_point_and_configs_does_not_start_jax():
    """`jax.distributed.initialize()` must run before anything starts the XLA backend, and rlvis.main calls it
    after parsing its flags, which imports the configs and config_lib (and so every method file)."""
    import subprocess
    import sys

    from tests.runs import ROOT, subprocess_env
    code = ("import rlvis.main, configs.demo, configs.cc12m; from jax._src import xla_bridge; "
            "assert not xla_bridge._backends, 'an import started the XLA backend'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
