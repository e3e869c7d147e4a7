"""AB_SimCLR on the embedded digit scenes: the default run, on CPU in minutes.

    python -m rlvis.main --config=configs/demo.py --workdir=runs/demo

Arguments after the colon, comma-separated: `tiny` (seconds, used by the tests), `long` (the regime where the value
head foresees best so far: 9,600 steps, twice the default, about 20 minutes alone on 2 cores; see
docs/findings.md), `method=NAME` and `evals=PRESET` (adds a paper table's evaluators:
rlvis/evaluators/presets.py), e.g.
`--config=configs/demo.py:method=simclr` or `--config=configs/demo.py:tiny,method=simclr`. Methods:
  * `ab_simclr` (default) — SimCLR base loss + annotation bootstrapping;
  * `simclr`    — the SimCLR baseline alone (annotation stream only);
  * `ab_dino`   — DINO base loss (2 global + `dino.local_views` local crops) + annotation bootstrapping;
  * `dino`      — the DINO baseline alone;
  * `ab_clip`   — CLIP on captioned scenes ("a 3 left of a 7") + annotation bootstrapping on uncaptioned scenes;
  * `clip`      — the CLIP baseline alone;
  * `mae`       — MAE (masked pixel reconstruction), a baseline of the paper's tables (no AB variant);
  * `ijepa`     — I-JEPA (masked latent prediction against an EMA target encoder), a baseline;
  * `slip`      — SLIP: CLIP + SimCLR on the captioned scenes, a baseline;
  * `silc`      — SiLC: CLIP + DINO self-distillation (fixed-momentum EMA teacher), a baseline;
  * `clip_aug`  — CLIP + Aug: CLIP with SimCLR-strength augmentation of its one view, a baseline.
Any field can be overridden: `--config.total_steps=200 --config.ab.gamma=0.5`.

The config holds only the sections the method reads: `simclr` for (ab_)simclr, `dino` for (ab_)dino and silc, `clip`
for the captioned methods, `ab` for the AB variants… (each method file's `settings()` in rlvis/methods). The data
section holds the embedded demo's fields; `data=FORMAT` (e.g. `data=webdataset`) gives it a file format's fields
instead (paths, canvas, the bootstrap stream's own source), as configs/cc12m.py does.

Table 5 ablations are config fields of `ab`: `use_ema_target=False` (the online network, stop-gradient, makes the
AB target; DINO's own teacher keeps its EMA), `base_loss_weight=0` (no annotation loss), `action_tokens=False`
(every action becomes the same mask query: invariance instead of equivariance), `photometric_bootstrap=True`
(SimCLR's colour augmentations on the bootstrap views too, never flips), plus `gamma`, `exclude_source` and
`env.views`.

Streams (docs/method.md, decoupled as in the paper's best COCO/EK results):
  * annotation stream: single centred held-in MNIST digits (the "curated ImageNet" analogue) → SimCLR base loss;
    the annotation batch's views are the vocabulary of the bootstrap softmax.
  * bootstrap stream: multi-digit scenes on a 64-px canvas (the "COCO" analogue), 4 views each with
    RandomResizedCrop(0.05, 1) and no photometric augmentation → AB TD loss.

Sizes are measured on a 2-core machine: a width-64 ViT with patch 8 on 32-px views
(16 tokens) trains fast enough on CPU to beat a random-init encoder within minutes.
"""

import ml_collections

from rlvis import config_lib, methods
from rlvis.data import sources
from rlvis.evaluators import presets


def parse_arg(arg: str | None) -> dict:
    """ "tiny,method=simclr" → {"tiny": True, "method": "simclr"} (big_vision's `parse_arg` convention)."""
    parsed = {"tiny": False, "long": False, "method": "ab_simclr", "evals": "", "data": "demo"}
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in parsed or (key in ("tiny", "long")) == bool(value):
            raise ValueError(
                f"configs/demo.py: unknown argument {item!r}; use 'tiny' or 'long', 'method=NAME', "
                "'evals=PRESET' and 'data=FORMAT'"
            )
        parsed[key] = value or True
    if parsed["method"] not in methods.NAMES:
        raise ValueError(f"configs/demo.py: method={parsed['method']!r} is not one of {methods.NAMES}")
    if parsed["evals"] and parsed["evals"] not in presets.PRESETS:
        raise ValueError(f"configs/demo.py: evals={parsed['evals']!r} is not one of {sorted(presets.PRESETS)}")
    if parsed["data"] not in sources.FORMATS:
        raise ValueError(f"configs/demo.py: data={parsed['data']!r} is not one of {sources.FORMATS}")
    return parsed


def data_config(data_format: str) -> ml_collections.ConfigDict:
    """`config.data`. The demo scenes' shape is always there (it shapes the held-out digit probes too); a file
    format adds the stream's source and the host canvas (`config_lib.fit_to_method` adds what the method reads:
    the demo's annotation-stream mixture, the bootstrap stream's own source)."""
    data = ml_collections.ConfigDict(dict(format=data_format))
    data.scene_canvas = 64  # fixed canvas; each scene's own size is drawn in [scene_min_size, canvas]
    data.scene_min_size = 40
    data.digits_per_scene = (1, 4)
    data.digit_size = (16, 28)  # digits are rescaled to this many pixels before placement
    data.num_scenes = 100_000  # distinct scenes per epoch (generated from the seed, never stored)
    data.read_threads = 2  # Grain host threads; on 2 cores threads beat worker processes
    data.prefetch = 4
    if data_format != "demo":
        data.update(sources.stream_fields(data_format))
        data.canvas = sources.CANVAS  # real images: longer side resized to this, aspect kept
        data.min_side = 32  # images whose shorter side is smaller are skipped as "too_small"
        data.worker_processes = 0  # Grain worker processes on top of the threads (rlvis.data.throughput)
    return data


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg)
    c = ml_collections.ConfigDict()
    c.method = args["method"]
    c.seed = 0
    c.total_steps = 4800
    c.log_every = 50
    c.checkpoint_every = 300
    c.keep_checkpoints = 2
    c.data = data_config(args["data"])

    c.batch = ml_collections.ConfigDict()
    c.batch.annotation = 64  # annotation images per step (each gives 2 SimCLR views)
    c.batch.bootstrap = 32  # bootstrap images per step (each gives `env.views` views)

    c.env = ml_collections.ConfigDict()
    c.env.view_size = 32
    c.env.views = 4  # views per bootstrap image; all n(n-1) ordered pairs are transitions
    c.env.scale = (0.05, 1.0)  # RandomResizedCrop area range for bootstrap views (paper)
    c.env.ratio = (3 / 4, 4 / 3)
    c.env.annotation_scale = (0.25, 1.0)  # SimCLR crops of a centred digit; 0.08 leaves too little digit
    c.env.action_bins = 33  # bins per action coordinate → 4 tokens per action; odd: "stay" has its own bin

    c.model = ml_collections.ConfigDict()
    c.model.variant = "mu/8"  # width 64, depth 4, 4 heads, patch 8 (see rlvis/models/vit.py)
    c.model.proj_dim = 64  # SimCLR / AB annotation embedding size
    c.model.proj_hidden = 128
    c.model.decoder_depth = 1
    c.model.decoder_width = 64
    c.model.decoder_heads = 4
    # value head: cross-attention starts on the source cells under the destination box (rlvis's departure, on by
    # default: docs/method.md)
    c.model.box_attention = True
    c.model.compute_dtype = "float32"  # "bfloat16": encoder compute in bf16, parameters and optimizer in f32
    c.model.remat = False  # recompute encoder activations in the backward pass (less memory, more compute)

    # Every run keeps an EMA of its weights: the AB target network, DINO's and I-JEPA's teachers, `eval.encoder=ema`.
    c.ema = ml_collections.ConfigDict()
    c.ema.start = 0.99  # momentum, cosine to `end`; the paper's 0.996 is for ~100k steps, 0.99 for thousands
    c.ema.end = 1.0

    c.sharding = ml_collections.ConfigDict()
    c.sharding.strategy = "replicate"  # or "fsdp": parameters and optimizer state split over devices (sharding.py)
    c.sharding.fsdp_rules = (".*",)  # regexes over state paths, e.g. ("encoder/.*kernel",)
    c.sharding.fsdp_min_size = 2**12  # smaller arrays stay replicated: splitting them costs more than it saves

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 100
    c.optim.weight_decay = 0.05
    c.optim.weight_decay_end = 0.05  # cosine from weight_decay to this (DINO/SimCLR in Table 7: 0.04 → 0.4)
    c.optim.b2 = 0.999
    c.optim.grad_clip = 1.0  # global norm; 0 = no clipping
    c.optim.rules = ()  # parameter groups: ((regex, dict(lr_mult=, wd_mult=, frozen_steps=)), ...); rlvis/optimizer.py
    c.optim.grad_accum_steps = 1  # >1: the bootstrap batch in micro-batches (train.accumulate_gradients); no centring
    c.optim.skip_nonfinite = False  # True: a step with a non-finite loss/gradient is undone and counted, not fatal

    # Evaluators by name (rlvis/evaluators/suite.py): `type` is a module of rlvis/evaluators, `final` runs it at the
    # end and in `rlvis.evaluate`, `every` > 0 also at the start, every that many steps and at the end (monitor.jsonl).
    # `evals=PRESET` adds a paper table's (a TFDS dataset, COCO, EpicKitchens: rlvis/evaluators/presets.py).
    c.evals = ml_collections.ConfigDict()
    c.evals.demo = dict(type="demo_tasks", final=True, every=0)
    c.evals.foresight = dict(type="foresight", final=True, every=600)  # for methods with p(ℓ | x)
    c.evals.digits = dict(type="digit_monitor", final=False, every=600)

    c.eval = ml_collections.ConfigDict()  # settings the evaluators share
    c.eval.encoder = "auto"  # encoder the evaluations score: "ema", "online", or "auto" (config_lib.eval_encoder)
    c.eval.digits_per_class = 200  # held-out digits per class, never seen in pre-training
    c.eval.scenes = 2000  # held-out scenes (half for probe training, half for test)
    c.eval.foresight_scenes = 400  # held-out scenes for the foresight evaluator (env.views views each, all pairs)
    c.eval.scene_view_size = 64  # scenes are probed at native resolution (see rlvis/evaluators/demo_tasks.py)
    c.eval.probe_steps = 300
    c.eval.knn_k = 20
    c.eval.knn_temperature = 0.07

    # The method's own sections (rlvis/methods/<method>.py `settings()`; `ab` for the AB variants), and the data and
    # evaluator fields that depend on the method.
    config_lib.fit_to_method(c, c.method)

    if args["tiny"] and args["long"]:
        raise ValueError("configs/demo.py: 'tiny' and 'long' are two sizes; pick one")
    if args["long"]:
        c.total_steps = 9600
    if args["tiny"]:
        shrink(c)
    if args["evals"]:
        presets.apply(c, args["evals"])
    return c


def shrink(c: ml_collections.ConfigDict) -> None:
    """The `tiny` size: seconds on CPU, the same structure (the tests' config)."""
    c.total_steps = 6
    c.log_every = 1
    c.checkpoint_every = 3
    c.batch.annotation = 16
    c.batch.bootstrap = 8
    c.env.views = 3
    c.data.num_scenes = 256
    c.model.variant = "tiny/8"
    c.model.proj_dim = 32
    c.model.proj_hidden = 32
    c.model.decoder_width = 32
    c.optim.warmup_steps = 2
    if "dino" in c:
        c.dino.prototypes = 32
        c.dino.local_views = 2
        c.dino.teacher_temp_warmup_steps = 3
    if "clip" in c:
        c.clip.text_variant = "tiny"
    if "mae" in c:
        c.mae.decoder_width, c.mae.decoder_depth = 32, 1
    if "ijepa" in c:
        c.ijepa.predictor_width, c.ijepa.predictor_depth = 32, 1
    c.eval.digits_per_class = 20
    c.eval.scenes = 200
    c.eval.foresight_scenes = 40
    if "foresight" in c.evals:
        c.evals.foresight.every = 0  # foresight is scored once, in the final evaluation: a faster test loop
    c.eval.probe_steps = 50
    c.eval.knn_k = 5
