"""Config validation: every impossible value is a one-line error before any compute.

Unknown keys and wrong types on the command line are already refused by ml_collections (the config is
locked by `config_flags`); this module checks the values that only make sense together.
"""

import ast
import copy
import json
import os
import re

import ml_collections

from rlvis import methods, optimizer
from rlvis.errors import ConfigError
from rlvis.data import digits, sources
from rlvis.envs import photometric
from rlvis.evaluators import suite
from rlvis.models import vit


def eval_encoder(config: ml_collections.ConfigDict, override: str | None = None) -> str:
    """ "ema" or "online": which encoder to score. "auto" (the default) scores each method as its paper does —
    the EMA encoder where the recipe has one, the online encoder otherwise."""
    choice = override or config.eval.encoder
    if choice == "auto":
        return "ema" if methods.has_ema_encoder(config) else "online"
    return choice


def params_key(encoder: str) -> str:
    """The train-state entry that holds `encoder`'s parameters."""
    return {"ema": "ema_params", "online": "params"}[encoder]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict, device_count: int, check_data_paths: bool = True) -> None:
    """Raise ConfigError naming the first impossible field. `check_data_paths=False` is for commands that read
    no data (rlvis.bench's synthetic batches)."""
    c = config
    _require(c.method in methods.NAMES, f"config.method={c.method!r} is not one of {methods.NAMES}")
    missing = sorted(methods.sections(c.method).keys() - c.keys())
    _require(
        not missing,
        f"config.method={c.method!r} reads config section(s) {missing} that this config lacks: build "
        f"it for the method (configs/demo.py:method={c.method}) rather than changing config.method",
    )
    for name in ("total_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        _require(c[name] > 0, f"config.{name}={c[name]} must be positive")
    for name in ("annotation", "bootstrap"):
        size = c.batch[name]
        _require(
            size > 0 and size % device_count == 0,
            f"config.batch.{name}={size} must be a positive multiple of the {device_count} devices",
        )
    _require(c.batch.annotation >= 2, "config.batch.annotation must be at least 2 (the softmax needs negatives)")
    _require(c.env.views >= 2, f"config.env.views={c.env.views} must be at least 2 (a transition needs two views)")
    lo, hi = c.env.scale
    _require(0 < lo <= hi <= 1, f"config.env.scale={tuple(c.env.scale)} must satisfy 0 < min <= max <= 1")
    lo, hi = c.env.annotation_scale  # max > 1: zoom-out crops (crop_env.reset)
    _require(0 < lo <= hi, f"config.env.annotation_scale={tuple(c.env.annotation_scale)} must satisfy 0 < min <= max")
    lo, hi = c.env.ratio
    _require(0 < lo <= hi, f"config.env.ratio={tuple(c.env.ratio)} must satisfy 0 < min <= max")
    _require(c.env.action_bins >= 2, f"config.env.action_bins={c.env.action_bins} must be at least 2")
    try:
        shape = vit.variant_shape(c.model.variant)
    except ValueError as e:
        raise ConfigError(f"config.model.variant: {e}") from None
    _require(
        c.env.view_size % shape.patch == 0,
        f"config.env.view_size={c.env.view_size} must be a multiple of the patch size {shape.patch}",
    )
    _require(
        c.eval.scene_view_size % shape.patch == 0,
        f"config.eval.scene_view_size={c.eval.scene_view_size} must be a multiple of the patch size {shape.patch}",
    )
    _validate_data(c, check_data_paths)
    canvas_field = "scene_canvas" if c.data.format == "demo" else "canvas"
    _require(
        c.env.view_size <= c.data[canvas_field],
        f"config.env.view_size={c.env.view_size} exceeds config.data.{canvas_field}={c.data[canvas_field]}",
    )
    _require(
        c.data.digit_size[1] <= c.data.scene_min_size <= c.data.scene_canvas,
        "config.data: need digit_size max <= scene_min_size <= scene_canvas",
    )
    _require(
        0.0 <= c.data.get("annotation_scene_fraction", 0.0) <= 1.0,
        f"config.data.annotation_scene_fraction={c.data.get('annotation_scene_fraction')} must be in [0, 1]",
    )
    lo, hi = c.data.digits_per_scene
    _require(
        1 <= lo <= hi <= digits.MAX_DIGITS,
        f"config.data.digits_per_scene={(lo, hi)} must satisfy 1 <= min <= max <= {digits.MAX_DIGITS}",
    )
    _require(
        c.model.decoder_width % c.model.decoder_heads == 0,
        "config.model.decoder_width must be divisible by config.model.decoder_heads",
    )
    _require(
        methods.get(c).ANNOTATES or "foresight" not in c.evals,
        f"config.evals.foresight needs an annotation distribution, which {c.method} has not; remove it",
    )
    _require(
        0.0 <= c.ema.start <= c.ema.end <= 1.0,
        f"config.ema.start={c.ema.start}, end={c.ema.end} must satisfy 0 <= start <= end <= 1",
    )
    methods.validate(c)  # the method's own sections
    _require(
        c.model.compute_dtype in ("float32", "bfloat16"),
        f"config.model.compute_dtype={c.model.compute_dtype!r} must be 'float32' or 'bfloat16'",
    )
    _require(
        c.sharding.strategy in ("replicate", "fsdp"),
        f"config.sharding.strategy={c.sharding.strategy!r} is not one of ('replicate', 'fsdp')",
    )
    for rule in c.sharding.fsdp_rules:
        try:
            re.compile(rule)
        except re.error as e:
            raise ConfigError(f"config.sharding.fsdp_rules: {rule!r} is not a regex ({e})") from None
    _require(c.optim.lr > 0, "config.optim.lr must be positive")
    accum = c.optim.grad_accum_steps
    _require(accum >= 1, f"config.optim.grad_accum_steps={accum} must be >= 1")
    _require(
        accum == 1 or methods.bootstraps(c),
        "config.optim.grad_accum_steps > 1 splits the bootstrap batch; a base method alone has none",
    )
    centred = image_vocabulary(c) and c.ab.center_target  # micro-batches would centre on their own
    _require(
        accum == 1 or not centred,
        "config.ab.center_target centres the target over the step's bootstrap views, which "
        "config.optim.grad_accum_steps > 1 splits into micro-batches; set one of them off",
    )
    _require(
        c.batch.bootstrap % (accum * device_count) == 0,
        f"config.batch.bootstrap={c.batch.bootstrap} must be a multiple of grad_accum_steps × devices "
        f"({accum} × {device_count})",
    )
    _require(c.optim.grad_clip >= 0, "config.optim.grad_clip must be >= 0 (0 = no clipping)")
    _require(c.optim.weight_decay >= 0 and c.optim.weight_decay_end >= 0, "config.optim weight decays must be >= 0")
    rules_error = optimizer.check_rules(c)
    _require(rules_error is None, rules_error)
    _require(0 < c.optim.b2 < 1, f"config.optim.b2={c.optim.b2} must be in (0, 1)")
    _require(
        0 <= c.optim.warmup_steps <= c.total_steps,
        f"config.optim.warmup_steps={c.optim.warmup_steps} must be in [0, total_steps]",
    )
    _require(
        c.eval.encoder in ("auto", "ema", "online"),
        f"config.eval.encoder={c.eval.encoder!r} must be 'auto', 'ema' or 'online'",
    )
    _require(c.eval.digits_per_class >= 4, "config.eval.digits_per_class must be at least 4")
    _require(c.eval.scenes >= 20, "config.eval.scenes must be at least 20")
    _require(c.eval.foresight_scenes >= 1, "config.eval.foresight_scenes must be at least 1")
    for name, entry in c.evals.items():
        error = suite.check_entry(name, entry)
        _require(error is None, error)
        _require(
            entry.type != "tfds_tasks" or not (entry.final or entry.every) or bool(entry.get("name")),
            f"config.evals.{name}.name must name the TFDS dataset when the evaluator runs",
        )
        _require(
            entry.type != "detection" or not (entry.final or entry.every) or bool(entry.get("root")),
            f"config.evals.{name}.root must name the dataset's folder when the evaluator runs "
            f"(--config.evals.{name}.root=...)",
        )


def _validate_data(c: ml_collections.ConfigDict, check_paths: bool) -> None:
    """Formats and paths; a path that does not exist is a one-line error here, before any compute."""
    _require(
        c.data.format == "demo" or "path" in c.data,
        f"config.data.format={c.data.format!r}: this config holds the embedded demo's data fields only; build it "
        f"with the file fields (configs/demo.py:data={c.data.format}, or configs/cc12m.py)",
    )
    _require(
        c.data.format != "demo" or "path" not in c.data,
        "config.data.format='demo' in a config built for files; use configs/demo.py without data=",
    )
    bootstrap = c.data.get("bootstrap")
    streams = [("config.data", c.data)] + (
        [("config.data.bootstrap", bootstrap)] if bootstrap is not None and bootstrap.format else []
    )
    for field, spec in streams:
        _require(spec.format in sources.FORMATS, f"{field}.format={spec.format!r} is not one of {sources.FORMATS}")
        if spec.format == "demo":
            _require(field == "config.data", "config.data.bootstrap.format='demo' needs config.data.format='demo'")
            continue
        if spec.format == "tfds":
            _require(bool(spec.name), f"{field}.name must name the TFDS dataset (e.g. 'imagenet2012')")
        elif check_paths:
            _require(bool(spec.path), f"{field}.path is empty; point it at the {spec.format} data")
            remote = spec.path.startswith(("gs://", "s3://"))
            _require(
                not remote or spec.format == "webdataset",
                f"{field}.path={spec.path!r}: {spec.format} data is read from local or mounted paths (e.g. "
                "gcsfuse); of the file formats, webdataset tars are read from buckets",
            )
            _require(
                remote or os.path.exists(spec.path) or any(ch in spec.path for ch in "*?[{"),
                f"{field}.path={spec.path!r} does not exist",
            )
        _require(spec.frame_stride >= 1, f"{field}.frame_stride={spec.frame_stride} must be >= 1")
    if c.data.format != "demo":
        _require(
            1 <= c.data.min_side <= c.data.canvas,
            f"config.data.min_side={c.data.min_side} must be in [1, config.data.canvas={c.data.canvas}]",
        )


# Fields a resumed run may change: they affect neither the trained model nor the data it sees.
RESUMABLE_CHANGES = (
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "data.read_threads",
    "data.prefetch",
    "data.worker_processes",
    "optim.skip_nonfinite",
    "sharding.strategy",
    "sharding.fsdp_rules",
    "sharding.fsdp_min_size",
    "data.index_dir",
    "data.bootstrap.index_dir",
    "eval.encoder",
    "eval.probe_steps",
    "eval.knn_k",
    "eval.knn_temperature",
    "eval.scenes",
    "eval.foresight_scenes",
    "eval.scene_view_size",
)
RESUMABLE_PREFIXES = ("evals.",)  # which evaluators run, and when


def image_vocabulary(c: ml_collections.ConfigDict) -> bool:
    """AB with image annotations scored by the base head (AB_SimCLR): only its target has logits to centre."""
    return methods.bootstraps(c) and methods.get(c).IMAGE_ANNOTATIONS


# Fields that change nothing unless the run's method reads them: a change elsewhere is no reason to refuse a resume.
READ_ONLY_WHEN = {"ab.center_target": image_vocabulary}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def check_resume(saved: dict, config: ml_collections.ConfigDict, allow_change: bool = False) -> str:
    """Refuse to resume a checkpoint written under a config that changes the model, schedules or data, naming
    the fields; with `allow_change` return them ("" when none) for the caller to report instead.

    Both configs hold only the fields their method reads, so a field in one and not the other is a change too.
    `eval.digits_per_class` is such a field: it moves digits between pre-training and the held-out sets. A field
    the method does not read (READ_ONLY_WHEN) may change: the method cannot differ, as `method` is itself checked.
    """
    before, now = (_flatten(json.loads(json.dumps(tree))) for tree in (saved, config.to_dict()))  # tuples → lists
    read = lambda k: k not in READ_ONLY_WHEN or READ_ONLY_WHEN[k](config)
    changed = sorted(
        k
        for k in before.keys() | now.keys()
        if before.get(k) != now.get(k)
        and k not in RESUMABLE_CHANGES
        and not k.startswith(RESUMABLE_PREFIXES)
        and read(k)
    )
    detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
    if changed and not allow_change:
        raise ConfigError(
            f"the checkpoint in this workdir was trained with a different config ({detail}); "
            "use a new --workdir, restore those values, or pass --allow_config_change"
        )
    return detail


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """ "ab_simclr+ab.use_ema_target=False+env.views=3" → a copy of `config` with that method, its sections in place
    of the other method's (their defaults), and those fields (values read as Python literals, else as strings); an
    unknown field is a ConfigError naming it."""
    method, *overrides = variant.split("+")
    _require(method in methods.NAMES, f"variant {variant!r}: method {method!r} is not one of {methods.NAMES}")
    config = with_method(config, method)
    for override in overrides:
        field, sep, text = override.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = field.split(".")
        node = config
        try:
            for parent in parents:
                node = node[parent]
            _require(bool(sep) and leaf in node, f"variant {variant!r}: unknown field {field!r}")
            node[leaf] = value
        except (KeyError, AttributeError, TypeError) as e:
            raise ConfigError(f"variant {variant!r}: cannot set {field}={text!r} ({e})") from None
    return config


def fit_to_method(config: ml_collections.ConfigDict, method: str) -> None:
    """Make `config` (unlocked) hold what `method` reads, in place: the previous method's own sections go, the new
    one's come with their defaults (a section both read keeps its values; a grayscale demo's `augment` has no
    colour-only fields), the demo's annotation-stream mixture only for methods without captions, a file config's
    bootstrap-stream source only for AB methods, and the foresight evaluator only where there is p(ℓ | x). The one
    place these rules live: configs/demo.py builds its configs with it, and `with_method` swaps methods with it."""
    old = methods.sections(config.method) if config.get("method") in methods.NAMES else {}
    new, family = methods.sections(method), methods.FAMILIES[methods.base_name(method)]
    demo = config.data.format == "demo"
    for section in old.keys() - new.keys():
        del config[section]
    for section, fields in new.items():
        if section not in config:
            config[section] = ml_collections.ConfigDict(fields)
            if section == "augment" and demo:  # grayscale digits: the colour-only augmentations never apply
                for field in photometric.COLOUR_ONLY:
                    del config.augment[field]
    if demo and not family.CAPTIONS:  # the annotation stream: this share scenes, the rest centred digits
        config.data.annotation_scene_fraction = config.data.get("annotation_scene_fraction", 0.0)
    elif "annotation_scene_fraction" in config.data:
        del config.data["annotation_scene_fraction"]
    if not demo and method.startswith("ab_") and "bootstrap" not in config.data:  # its own source, when set
        config.data.bootstrap = ml_collections.ConfigDict(sources.stream_fields(""))
    elif not method.startswith("ab_") and "bootstrap" in config.data:
        del config.data["bootstrap"]
    if not family.ANNOTATES and "foresight" in config.evals:
        del config.evals["foresight"]  # nothing to foresee with
    config.method = method


def with_method(config: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
    """A copy of `config` for `method` (`fit_to_method`)."""
    config = copy.deepcopy(config)
    with config.unlocked():
        fit_to_method(config, method)
    return config


def method_configs(
    base: ml_collections.ConfigDict,
    rows: list[str],
    device_count: int,
    check_data_paths: bool = True,
    views_per_step: int = 0,
) -> dict:
    """One config per method (or variant, see `apply_variant`); within a family (SimCLR, DINO) every method encodes
    as many views per step as the most expensive one, which is the AB variant: the base method alone gets a larger
    annotation batch. `views_per_step` > 0 instead sets every base method's budget to that number (baselines of
    other families, e.g. MAE, next to an AB method's count)."""
    configs = {row: apply_variant(base, row) for row in rows}
    budgets: dict[str, int] = {}
    for config in configs.values():
        family = methods.base_name(config.method)
        budgets[family] = max(budgets.get(family, 0), methods.encoded_views_per_step(config))
    for config in configs.values():
        budget = views_per_step or budgets[methods.base_name(config.method)]
        if not methods.bootstraps(config):
            config.optim.grad_accum_steps = 1  # it splits the bootstrap batch, which a base method does not read
            views_per_image = methods.encoded_views_per_step(config) / config.batch.annotation  # SLIP: 2, SiLC: 1.75
            per_device = max(1, int(budget / views_per_image) // device_count)
            config.batch.annotation = per_device * device_count
            # SLIP's and SiLC's extra views are a rounded share of the batch: step down until within the budget.
            while methods.encoded_views_per_step(config) > budget and config.batch.annotation > device_count:
                config.batch.annotation -= device_count
        validate(config, device_count, check_data_paths)
    return configs
