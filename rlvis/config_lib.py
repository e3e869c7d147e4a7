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
from rlvis.data import digits, sources
from rlvis.evaluators import suite
from rlvis.models import vit



def eval_encoder(config: ml_collections.ConfigDict, override: str | None = None) -> str:
    """"ema" or "online": which encoder to score. "auto" (the default) scores each method as its paper does —
    the EMA encoder where the recipe has one, the online encoder otherwise."""
    choice = override or config.eval.encoder
    if choice == "auto":
        return "ema" if methods.has_ema_encoder(config) else "online"
    return choice


def params_key(encoder: str) -> str:
    """The train-state entry that holds `encoder`'s parameters."""
    return {"ema": "ema_params", "online": "params"}[encoder]


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict, device_count: int, check_data_paths: bool = True) -> None:
    """Raise ConfigError naming the first impossible field. `check_data_paths=False` is for commands that read
    no data (rlvis.bench's synthetic batches)."""
    c = config
    _require(c.method in methods.NAMES, f"config.method={c.method!r} is not one of {methods.NAMES}")
    for name in ("total_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        _require(c[name] > 0, f"config.{name}={c[name]} must be positive")
    for name in ("annotation", "bootstrap"):
        size = c.batch[name]
        _require(size > 0 and size % device_count == 0,
                 f"config.batch.{name}={size} must be a positive multiple of the {device_count} devices")
    _require(c.batch.annotation >= 2, "config.batch.annotation must be at least 2 (the softmax needs negatives)")
    _require(c.env.views >= 2, f"config.env.views={c.env.views} must be at least 2 (a transition needs two views)")
    lo, hi = c.env.scale
    _require(0 < lo <= hi <= 1, f"config.env.scale={tuple(c.env.scale)} must satisfy 0 < min <= max <= 1")
    _require(0 <= c.env.local_views < c.env.views,
             f"config.env.local_views={c.env.local_views} must be in [0, env.views={c.env.views}): a local view moves "
             "from an independent one")
    lo, hi = c.env.local_zoom
    _require(0 < lo <= hi, f"config.env.local_zoom={tuple(c.env.local_zoom)} must satisfy 0 < min <= max")
    _require(c.env.local_pan >= 0, f"config.env.local_pan={c.env.local_pan} must be at least 0")
    lo, hi = c.env.annotation_scale  # max > 1: zoom-out crops (crop_env.reset)
    _require(0 < lo <= hi, f"config.env.annotation_scale={tuple(c.env.annotation_scale)} must satisfy 0 < min <= max")
    lo, hi = c.env.ratio
    _require(0 < lo <= hi, f"config.env.ratio={tuple(c.env.ratio)} must satisfy 0 < min <= max")
    _require(c.env.action_bins >= 2, f"config.env.action_bins={c.env.action_bins} must be at least 2")
    try:
        shape = vit.variant_shape(c.model.variant)
    except ValueError as e:
        raise ConfigError(f"config.model.variant: {e}") from None
    _require(c.env.view_size % shape.patch == 0,
             f"config.env.view_size={c.env.view_size} must be a multiple of the patch size {shape.patch}")
    _require(c.eval.scene_view_size % shape.patch == 0,
             f"config.eval.scene_view_size={c.eval.scene_view_size} must be a multiple of the patch size {shape.patch}")
    _validate_data(c, check_data_paths)
    canvas_field = "scene_canvas" if c.data.format == "demo" else "canvas"
    _require(c.env.view_size <= c.data[canvas_field],
             f"config.env.view_size={c.env.view_size} exceeds config.data.{canvas_field}={c.data[canvas_field]}")
    _require(c.data.digit_size[1] <= c.data.scene_min_size <= c.data.scene_canvas,
             "config.data: need digit_size max <= scene_min_size <= scene_canvas")
    _require(0.0 <= c.data.annotation_scene_fraction <= 1.0,
             f"config.data.annotation_scene_fraction={c.data.annotation_scene_fraction} must be in [0, 1]")
    lo, hi = c.data.digits_per_scene
    _require(1 <= lo <= hi <= digits.MAX_DIGITS,
             f"config.data.digits_per_scene={(lo, hi)} must satisfy 1 <= min <= max <= {digits.MAX_DIGITS}")
    _require(c.model.decoder_width % c.model.decoder_heads == 0,
             "config.model.decoder_width must be divisible by config.model.decoder_heads")
    _require(0.0 <= c.ab.gamma < 1.0, f"config.ab.gamma={c.ab.gamma} must be in [0, 1)")
    _require(not (c.ab.exclude_source and c.ab.gamma > 0) or c.env.views >= 3,
             "config.ab.exclude_source with gamma > 0 needs config.env.views >= 3 (a next move other than going back)")
    for section, field in (("ab", "shared_vocabulary"), ("model", "value_residual")):  # both need an embedding space
        _require(not c[section][field] or methods.get(c).EMBEDDING_ANNOTATIONS,
                 f"config.{section}.{field} is for SimCLR and CLIP bases (DINO's annotations are its prototypes)")
    queue = c.ab.annotation_queue
    _require(queue >= 0 and queue % c.batch.annotation == 0, f"config.ab.annotation_queue={queue} must be a "
             f"multiple of config.batch.annotation={c.batch.annotation} (whole steps of annotations), or 0")
    _require(not queue or image_vocabulary(c), "config.ab.annotation_queue is for AB_SimCLR (annotations that are "
             "images, kept as the target network embedded them)")
    for field, clash in (("source_prior", c.ab.source_prior), ("target_walk", c.ab.target_walk),
                         ("reward", c.ab.reward == "oracle")):
        _require(not (queue and clash), f"config.ab.annotation_queue cannot be combined with config.ab.{field}="
                 f"{c.ab[field]!r}: it reads the step's own annotations only")
    _require(not c.ab.target_walk or methods.get(c).IMAGE_ANNOTATIONS,
             "config.ab.target_walk is for the SimCLR base (its annotations are images scored by the base head)")
    _require(0.0 < c.mae.mask_ratio < 1.0, f"config.mae.mask_ratio={c.mae.mask_ratio} must be in (0, 1)")
    for section, field in (("ijepa", "scale"), ("ijepa", "target_scale"), ("ijepa", "context_scale"),
                           ("slip", "scale"), ("clip_aug", "scale")):
        lo, hi = c[section][field]
        _require(0 < lo <= hi <= 1, f"config.{section}.{field}={tuple(c[section][field])} must satisfy "
                                    "0 < min <= max <= 1")
    lo, hi = c.ijepa.target_aspect
    _require(0 < lo <= hi, f"config.ijepa.target_aspect={(lo, hi)} must satisfy 0 < min <= max")
    _require(c.ijepa.targets >= 1, "config.ijepa.targets must be at least 1")
    _require(0 < c.ijepa.context_fraction < 1, "config.ijepa.context_fraction must be in (0, 1)")
    _require(c.ijepa.predictor_width % c.ijepa.predictor_heads == 0,
             "config.ijepa.predictor_width must be divisible by config.ijepa.predictor_heads")
    for section, field in (("slip", "ssl_fraction"), ("silc", "dino_fraction")):
        _require(0 < c[section][field] <= 1, f"config.{section}.{field}={c[section][field]} must be in (0, 1]")
    for section, field in (("clip_aug", "blur"), ("clip_aug", "solarize")):
        _require(0 <= c[section][field] <= 1, f"config.{section}.{field}={c[section][field]} must be in [0, 1]")
    _require(methods.base_name(c.method) not in ("slip", "silc") or c.batch.annotation >= 2,
             f"config.batch.annotation={c.batch.annotation}: {c.method}'s self-supervised loss needs 2 images")
    _require(c.slip.temperature > 0, "config.slip.temperature must be positive")
    _require(methods.get(c).ANNOTATES or not (c.evals.foresight.final or c.evals.foresight.every),
             f"config.evals.foresight needs an annotation distribution, which {c.method} has not; turn it off")
    _require(c.ab.reward in ("base", "oracle"), f"config.ab.reward={c.ab.reward!r} must be 'base' or 'oracle'")
    _require(c.ab.reward == "base" or (c.method == "ab_simclr" and c.data.format == "demo"
                                       and not c.data.bootstrap.format and c.data.annotation_scene_fraction == 0),
             "config.ab.reward='oracle' needs ab_simclr on the embedded demo data with digit annotations "
             "(the only stream whose labels are known)")
    _require(0.0 <= c.ab.oracle_fraction <= 1.0 and (c.ab.reward == "oracle" or c.ab.oracle_fraction == 1.0),
             f"config.ab.oracle_fraction={c.ab.oracle_fraction} must be in [0, 1] and needs config.ab.reward='oracle'")
    _require(c.model.action_encoding in ("bins", "fourier"),
             f"config.model.action_encoding={c.model.action_encoding!r} must be 'bins' or 'fourier'")
    _require(0.0 <= c.ab.ema_start <= c.ab.ema_end <= 1.0,
             f"config.ab.ema_start={c.ab.ema_start}, ema_end={c.ab.ema_end} must satisfy 0 <= start <= end <= 1")
    _require(c.simclr.temperature > 0, "config.simclr.temperature must be positive")
    _require(c.ab.target_temperature >= 0, "config.ab.target_temperature must be >= 0 (0 = the base method's own)")
    _require(c.ab.base_loss_weight >= 0, "config.ab.base_loss_weight must be >= 0")
    _require(c.dino.prototypes >= 2, f"config.dino.prototypes={c.dino.prototypes} must be at least 2")
    _require(c.dino.local_views >= 0, "config.dino.local_views must be >= 0")
    _require(c.dino.local_size % shape.patch == 0,
             f"config.dino.local_size={c.dino.local_size} must be a multiple of the patch size {shape.patch}")
    for name in ("global_scale", "local_scale"):
        lo, hi = c.dino[name]
        _require(0 < lo <= hi <= 1, f"config.dino.{name}={tuple(c.dino[name])} must satisfy 0 < min <= max <= 1")
    _require(0 < c.dino.warmup_teacher_temp and 0 < c.dino.teacher_temp and 0 < c.dino.student_temp,
             "config.dino temperatures must be positive")
    _require(0 <= c.dino.center_momentum < 1, "config.dino.center_momentum must be in [0, 1)")
    try:
        vit.variant_shape(f"{c.clip.text_variant}/1")
    except ValueError:
        raise ConfigError(f"config.clip.text_variant={c.clip.text_variant!r} is not a known shape name") from None
    _require(c.clip.caption_length >= 3, "config.clip.caption_length must leave room for BOS, a byte and EOS")
    lo, hi = c.clip.scale
    _require(0 < lo <= hi <= 1, f"config.clip.scale={tuple(c.clip.scale)} must satisfy 0 < min <= max <= 1")
    _require(c.clip.init_temperature > 0, "config.clip.init_temperature must be positive")
    for name in ("jitter_prob", "grayscale", "blur", "solarize", "flip"):
        _require(0.0 <= c.augment[name] <= 1.0, f"config.augment.{name}={c.augment[name]} must be a probability")
    _require(c.model.compute_dtype in ("float32", "bfloat16"),
             f"config.model.compute_dtype={c.model.compute_dtype!r} must be 'float32' or 'bfloat16'")
    _require(c.sharding.strategy in ("replicate", "fsdp"),
             f"config.sharding.strategy={c.sharding.strategy!r} is not one of ('replicate', 'fsdp')")
    for rule in c.sharding.fsdp_rules:
        try:
            re.compile(rule)
        except re.error as e:
            raise ConfigError(f"config.sharding.fsdp_rules: {rule!r} is not a regex ({e})") from None
    _require(c.optim.lr > 0, "config.optim.lr must be positive")
    accum = c.optim.grad_accum_steps
    _require(accum >= 1, f"config.optim.grad_accum_steps={accum} must be >= 1")
    _require(accum == 1 or methods.bootstraps(c),
             "config.optim.grad_accum_steps > 1 splits the bootstrap batch; a base method alone has none")
    centred = c.ab.center_target and image_vocabulary(c)  # micro-batches would centre on their own
    _require(accum == 1 or not centred,
             "config.ab.center_target centres the target over the step's bootstrap views, which "
             "config.optim.grad_accum_steps > 1 splits into micro-batches; set one of them off")
    _require(c.batch.bootstrap % (accum * device_count) == 0,
             f"config.batch.bootstrap={c.batch.bootstrap} must be a multiple of grad_accum_steps × devices "
             f"({accum} × {device_count})")
    _require(c.optim.grad_clip >= 0, "config.optim.grad_clip must be >= 0 (0 = no clipping)")
    _require(c.optim.weight_decay >= 0 and c.optim.weight_decay_end >= 0, "config.optim weight decays must be >= 0")
    rules_error = optimizer.check_rules(c)
    _require(rules_error is None, rules_error)
    _require(0 < c.optim.b2 < 1, f"config.optim.b2={c.optim.b2} must be in (0, 1)")
    _require(0 <= c.optim.warmup_steps <= c.total_steps,
             f"config.optim.warmup_steps={c.optim.warmup_steps} must be in [0, total_steps]")
    _require(c.eval.encoder in ("auto", "ema", "online"),
             f"config.eval.encoder={c.eval.encoder!r} must be 'auto', 'ema' or 'online'")
    _require(c.eval.digits_per_class >= 4, "config.eval.digits_per_class must be at least 4")
    _require(c.eval.scenes >= 20, "config.eval.scenes must be at least 20")
    _require(c.eval.foresight_scenes >= 1, "config.eval.foresight_scenes must be at least 1")
    for name, entry in c.evals.items():
        error = suite.check_entry(name, entry)
        _require(error is None, error)
        _require(entry.type != "tfds_tasks" or not (entry.final or entry.every) or bool(entry.get("name")),
                 f"config.evals.{name}.name must name the TFDS dataset when the evaluator runs")
        _require(entry.type != "detection" or not (entry.final or entry.every) or bool(entry.get("root")),
                 f"config.evals.{name}.root must name the dataset's folder when the evaluator runs "
                 f"(--config.evals.{name}.root=...)")


def _validate_data(c: ml_collections.ConfigDict, check_paths: bool) -> None:
    """Formats and paths; a path that does not exist is a one-line error here, before any compute."""
    streams = [("config.data", c.data)] + ([("config.data.bootstrap", c.data.bootstrap)]
                                           if c.data.bootstrap.format and methods.bootstraps(c) else [])
    for field, spec in streams:
        _require(spec.format in sources.FORMATS, f"{field}.format={spec.format!r} is not one of {sources.FORMATS}")
        if spec.format == "demo":
            _require(field == "config.data", "config.data.bootstrap.format='demo' needs config.data.format='demo'")
            continue
        _require(c.data.format != "demo", f"{field}.format={spec.format!r} needs config.data.format to read files "
                 "too: the demo's grayscale canvases and files' RGB canvases cannot share one model input")
        if spec.format == "tfds":
            _require(bool(spec.name), f"{field}.name must name the TFDS dataset (e.g. 'imagenet2012')")
        elif check_paths:
            _require(bool(spec.path), f"{field}.path is empty; point it at the {spec.format} data")
            remote = spec.path.startswith(("gs://", "s3://"))
            _require(not remote or spec.format == "webdataset",
                     f"{field}.path={spec.path!r}: {spec.format} data is read from local or mounted paths (e.g. "
                     "gcsfuse); of the file formats, webdataset tars are read from buckets")
            _require(remote or os.path.exists(spec.path) or any(ch in spec.path for ch in "*?[{"),
                     f"{field}.path={spec.path!r} does not exist")
        _require(spec.frame_stride >= 1, f"{field}.frame_stride={spec.frame_stride} must be >= 1")
    if c.data.format != "demo":
        _require(1 <= c.data.min_side <= c.data.canvas,
                 f"config.data.min_side={c.data.min_side} must be in [1, config.data.canvas={c.data.canvas}]")


# Fields a resumed run may change: they affect neither the trained model nor the data it sees.
RESUMABLE_CHANGES = ("log_every", "checkpoint_every", "keep_checkpoints", "data.read_threads", "data.prefetch",
                     "data.worker_processes",
                     "optim.skip_nonfinite", "debug.nan_loss_at_step", "sharding.strategy", "sharding.fsdp_rules",
                     "sharding.fsdp_min_size",
                     "data.index_dir", "data.bootstrap.index_dir",
                     "eval.encoder", "eval.probe_steps", "eval.knn_k", "eval.knn_temperature", "eval.scenes",
                     "eval.foresight_scenes", "eval.scene_view_size")
RESUMABLE_PREFIXES = ("evals.",)  # which evaluators run, and when


def image_vocabulary(c: ml_collections.ConfigDict) -> bool:
    """AB with image annotations scored by the base head (AB_SimCLR): only its target has logits to centre and
    annotation embeddings to keep in a queue."""
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

    `eval.digits_per_class` is such a field: it moves digits between pre-training and the held-out sets. A field
    the method does not read (READ_ONLY_WHEN) may change: the method cannot differ, as `method` is itself checked.
    """
    before, now = (_flatten(json.loads(json.dumps(tree))) for tree in (saved, config.to_dict()))  # tuples → lists
    read = lambda k: k not in READ_ONLY_WHEN or READ_ONLY_WHEN[k](config)  # noqa: E731
    changed = sorted(k for k in before.keys() | now.keys()
                     if before.get(k) != now.get(k) and k not in RESUMABLE_CHANGES
                     and not k.startswith(RESUMABLE_PREFIXES) and read(k))
    detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
    if changed and not allow_change:
        raise ConfigError(f"the checkpoint in this workdir was trained with a different config ({detail}); "
                          "use a new --workdir, restore those values, or pass --allow_config_change")
    return detail


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """"ab_simclr+ab.use_ema_target=False+env.views=3" → a copy of `config` with that method and those fields (values
    read as Python literals, else as strings); an unknown field is a ConfigError naming it."""
    method, *overrides = variant.split("+")
    config = copy.deepcopy(config)
    config.method = method
    if method in methods.NAMES and not methods.get(config).ANNOTATES:  # nothing to foresee with, as configs/demo.py
        config.evals.foresight.final, config.evals.foresight.every = False, 0
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


def method_configs(base: ml_collections.ConfigDict, rows: list[str], device_count: int,
                   check_data_paths: bool = True, views_per_step: int = 0) -> dict:
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
