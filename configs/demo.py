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

from rlvis import methods
from rlvis.evaluators import presets


def parse_arg(arg: str | None) -> dict:
    """"tiny,method=simclr" → {"tiny": True, "method": "simclr"} (big_vision's `parse_arg` convention)."""
    parsed = {"tiny": False, "long": False, "method": "ab_simclr", "evals": ""}
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in parsed or (key in ("tiny", "long")) == bool(value):
            raise ValueError(f"configs/demo.py: unknown argument {item!r}; use 'tiny' or 'long', 'method=NAME' "
                             f"and 'evals=PRESET'")
        parsed[key] = value or True
    if parsed["method"] not in methods.NAMES:
        raise ValueError(f"configs/demo.py: method={parsed['method']!r} is not one of {methods.NAMES}")
    if parsed["evals"] and parsed["evals"] not in presets.PRESETS:
        raise ValueError(f"configs/demo.py: evals={parsed['evals']!r} is not one of {sorted(presets.PRESETS)}")
    return parsed


def stream_fields(data_format: str) -> dict:
    """Where a stream's images come from (rlvis/data/sources.py lists the formats)."""
    return dict(format=data_format, path="", split="", name="", index_dir="", frame_stride=1, caption_key="")


def data_config(data_format: str) -> ml_collections.ConfigDict:
    """`config.data`: the annotation stream's source, the host canvas, and `bootstrap` — the bootstrap stream's own
    source when its `format` is set (decoupled streams), else the annotation stream's."""
    data = ml_collections.ConfigDict(stream_fields(data_format))
    data.bootstrap = ml_collections.ConfigDict(stream_fields(""))
    data.canvas = 256  # real images: longer side resized to this, aspect kept (img2dataset --image_size 256)
    data.min_side = 32  # images whose shorter side is smaller are skipped as "too_small"
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

    c.data = data_config("demo")
    c.data.scene_canvas = 64  # fixed canvas; each scene's own size is drawn in [scene_min_size, canvas]
    c.data.scene_min_size = 40
    c.data.digits_per_scene = (1, 4)
    c.data.digit_size = (16, 28)  # digits are rescaled to this many pixels before placement
    c.data.annotation_scene_fraction = 0.0  # SimCLR/DINO annotation stream: this share scenes, the rest digits
    c.data.num_scenes = 100_000  # distinct scenes per epoch (generated from the seed, never stored)
    c.data.read_threads = 2  # Grain host threads; on 2 cores threads beat worker processes
    c.data.prefetch = 4
    c.data.worker_processes = 0  # files only: Grain worker processes on top of the threads (rlvis.data.throughput)

    c.batch = ml_collections.ConfigDict()
    c.batch.annotation = 64  # annotation images per step (each gives 2 SimCLR views)
    c.batch.bootstrap = 32  # bootstrap images per step (each gives `env.views` views)

    c.env = ml_collections.ConfigDict()
    c.env.view_size = 32
    c.env.views = 4  # views per bootstrap image; all n(n-1) ordered pairs are transitions
    c.env.scale = (0.05, 1.0)  # RandomResizedCrop area range for bootstrap views (paper)
    c.env.ratio = (3 / 4, 4 / 3)
    c.env.local_views = 0  # of the `views`, this many are a small move from another view (crop_env.rollout_views)
    c.env.local_pan = 0.25  # a local view's centre moves up to this many box sides per axis
    c.env.local_zoom = (0.7, 1.0)  # and its sides scale by a factor in this range
    c.env.annotation_scale = (0.25, 1.0)  # SimCLR crops of a centred digit; 0.08 leaves too little digit
    c.env.action_bins = 33  # bins per action coordinate → 4 tokens per action; odd: "stay" has its own bin

    c.model = ml_collections.ConfigDict()
    c.model.variant = "mu/8"  # width 64, depth 4, 4 heads, patch 8 (see rlvis/models/vit.py)
    c.model.proj_dim = 64  # SimCLR / AB annotation embedding size
    c.model.proj_hidden = 128
    c.model.decoder_depth = 1
    c.model.decoder_width = 64
    c.model.decoder_heads = 4
    c.model.action_encoding = "bins"  # value-head queries: "bins" (4 quantised tokens) or "fourier" (value_head.py)
    c.model.source_positions = False  # value head: sinusoidal cell positions added to the source view's tokens
    # value head: cross-attention starts on the source cells under the destination box (value_head.py); on by
    # default, the lever that made the head use the move (docs/findings.md)
    c.model.box_attention = True
    c.model.value_residual = False  # SimCLR/CLIP: φ_AB(x, a) = the source view's annotation embedding + a change
    c.model.normalize_value = True  # False: the value embedding's length is a per-prediction confidence
    c.model.compute_dtype = "float32"  # "bfloat16": encoder compute in bf16, parameters and optimizer in f32
    c.model.remat = False  # recompute encoder activations in the backward pass (less memory, more compute)

    c.simclr = ml_collections.ConfigDict()
    c.simclr.temperature = 0.1

    # DINO (Caron et al. 2021), scaled down: K prototypes, multi-crop, centred and sharpened EMA teacher.
    c.dino = ml_collections.ConfigDict()
    c.dino.prototypes = 256
    c.dino.global_scale = (0.4, 1.0)  # paper Table 7
    c.dino.local_scale = (0.05, 0.4)
    c.dino.local_views = 4  # paper: 8
    c.dino.local_size = 16  # paper: 96 px locals for 224 px globals
    c.dino.student_temp = 0.1
    c.dino.warmup_teacher_temp = 0.02  # sharper than DINO's 0.04 → 0.07, which collapse at this scale
    c.dino.teacher_temp = 0.02  # (docs/findings.md)
    c.dino.teacher_temp_warmup_steps = 600
    c.dino.center_momentum = 0.9
    c.dino.norm_last_layer = True  # False: learned prototype gains (DINO's choice for ViT-S; see DINOHead)
    c.dino.freeze_last_layer_steps = 300  # prototypes frozen at first (DINO: 1 epoch); see rlvis/methods/dino.py

    # CLIP (Radford et al. 2021): captioned scenes, byte-level captions, learned temperature.
    c.clip = ml_collections.ConfigDict()
    c.clip.text_variant = "mu"  # text tower shape (paper: S); see rlvis/models/text.py
    c.clip.caption_length = 48  # byte tokens incl. BOS/EOS; the longest demo caption is 42
    c.clip.scale = (0.5, 1.0)  # RandomResizedCrop of the captioned image (paper Table 7)
    c.clip.init_temperature = 0.07

    # MAE (He et al. 2022): most patches hidden, the encoder reads the rest, a light decoder paints the hidden ones.
    c.mae = ml_collections.ConfigDict()
    c.mae.mask_ratio = 0.75  # paper
    c.mae.norm_pix = True  # targets: each patch's pixels over its own mean and variance (the paper's choice)
    c.mae.decoder_width = 64  # the paper's decoder is 512 wide, 8 deep for ViT-L; at demo scale the encoder's width
    c.mae.decoder_depth = 2
    c.mae.decoder_heads = 4

    # I-JEPA (Assran et al. 2023): predict target-block features from a context block (rlvis/methods/ijepa.py).
    c.ijepa = ml_collections.ConfigDict()
    c.ijepa.scale = (0.3, 1.0)  # RandomResizedCrop (paper Table 7), no other augmentation
    c.ijepa.targets = 4  # target blocks per image (paper)
    c.ijepa.target_scale = (0.15, 0.2)  # fraction of the patch grid per target block (paper)
    c.ijepa.target_aspect = (0.75, 1.5)  # (paper)
    c.ijepa.context_scale = (0.85, 1.0)  # the context block, aspect 1, before the targets are removed (paper)
    c.ijepa.context_fraction = 0.3  # patches the context encoder reads, a fixed share of the grid [INF: about what
    #                                 I-JEPA's context keeps once the targets are cut out; XLA needs a fixed count]
    c.ijepa.predictor_width = 32  # narrower than the encoder (paper: 384 for ViT-H's 1,280)
    c.ijepa.predictor_depth = 2  # (paper: 12 at ViT-H; demo scale)
    c.ijepa.predictor_heads = 4

    # SLIP (Mu et al. 2022): CLIP + SimCLR on the captioned images (rlvis/methods/slip.py).
    c.slip = ml_collections.ConfigDict()
    c.slip.ssl_fraction = 0.5  # captioned images that also give SimCLR views (Table 7: CLIP 4,096 + SimCLR 2,048)
    c.slip.scale = (0.08, 1.0)  # SimCLR's RandomResizedCrop; colour from `augment`
    c.slip.temperature = 0.1  # (SLIP)
    c.slip.loss_weight = 1.0  # SimCLR loss per unit CLIP loss (Table 7: ratio 1.0)

    # SiLC (Naeem et al. 2023): CLIP + DINO on the captioned images, EMA teacher fixed at ab.ema_start.
    c.silc = ml_collections.ConfigDict()
    c.silc.dino_fraction = 0.125  # captioned images that also give DINO's multi-crop (Table 7: 4,096 + 512)
    c.silc.loss_weight = 1.0  # (Table 7: ratio 1.0); DINO's own settings come from `dino`

    # CLIP + Aug (Fini et al. 2023): CLIP's one view strongly augmented (rlvis/methods/clip_aug.py).
    c.clip_aug = ml_collections.ConfigDict()
    c.clip_aug.scale = (0.08, 1.0)  # SimCLR's crop range instead of CLIP's (0.5, 1); colour from `augment`
    c.clip_aug.blur = 0.5  # [INF] BYOL-style probabilities; Fini et al.'s code leaves them as flags
    c.clip_aug.solarize = 0.2

    c.ab = ml_collections.ConfigDict()
    c.ab.gamma = 0.0  # 0 = ICML objective; > 0 adds γ·max_a' Q_ema(ℓ|x',a') (project-page form)
    c.ab.target_temperature = 0.0  # AB_SimCLR: temperature of p_ema(ℓ | x') in the TD target; 0 = simclr.temperature
    # AB_SimCLR: remove each annotation's mean target logit over the bootstrap batch (on by default: the lever that
    # made the value head foresee, docs/findings.md); the other methods have no such target and ignore it
    c.ab.center_target = True
    c.ab.target_walk = False  # AB_SimCLR: target Σ_m p(m | x') p(ℓ | m), one more step on the annotation graph
    c.ab.source_prior = False  # Q logits = decoder logits + log p(ℓ | x) of the source view (objectives/bootstrap.py)
    c.ab.shared_vocabulary = False  # SimCLR/CLIP: ψ_AB = the base head's annotation embedding (stop-gradient)
    c.ab.annotation_queue = 0  # AB_SimCLR: the last this-many annotations (target network) join the vocabulary
    c.ab.exclude_source = False  # γ > 0: leave the move back to the source view out of max_a' (objectives/td.py)
    c.ab.loss_weight = 1.0  # paper Table 7 "loss ratio"
    c.ab.ema_start = 0.99  # target momentum, cosine to ema_end; paper 0.996 is for ~100k steps, 0.99 for thousands
    c.ab.ema_end = 1.0
    c.ab.use_ema_target = True  # ablation: False = the online network (stop-gradient) makes the AB targets
    c.ab.base_loss_weight = 1.0  # ablation: 0 = no annotation (base) loss
    c.ab.action_tokens = True  # ablation: False = a mask token for every action (invariance)
    c.ab.photometric_bootstrap = False  # ablation: True = colour augmentation on bootstrap views too (no flips)
    c.ab.reward = "base"  # "oracle" (AB_SimCLR on demo data): the scenes' true digit classes (objectives/bootstrap.py)
    c.ab.oracle_fraction = 1.0  # with reward="oracle": the fraction of each batch's scenes given it (the rest: base)

    # SimCLR's photometric augmentation of the annotation views, on device (rlvis/envs/photometric.py).
    c.augment = ml_collections.ConfigDict()
    c.augment.jitter_prob = 0.8
    c.augment.brightness = 0.4
    c.augment.contrast = 0.4
    c.augment.saturation = 0.4  # RGB only
    c.augment.hue = 0.1  # RGB only
    c.augment.grayscale = 0.2  # RGB only
    c.augment.blur = 0.0  # Gaussian blur probability (SimCLR at 224 px: 0.5; DINO 1.0 / 0.1 and BYOL-style)
    c.augment.solarize = 0.0  # solarisation probability (BYOL, DINO's second view: 0.2)
    c.augment.flip = 0.0  # SimCLR uses 0.5; digits are not mirror-symmetric, so the demo does not flip

    c.sharding = ml_collections.ConfigDict()
    c.sharding.strategy = "replicate"  # or "fsdp": parameters and optimizer state split over devices (sharding.py)
    c.sharding.fsdp_rules = (".*",)  # regexes over state paths, e.g. ("encoder/.*kernel",)
    c.sharding.fsdp_min_size = 2 ** 12  # smaller arrays stay replicated: splitting them costs more than it saves

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

    c.debug = ml_collections.ConfigDict()
    c.debug.nan_loss_at_step = -1  # fault injection (tests): the loss and gradients of this step become NaN

    # Evaluators by name (rlvis/evaluators/suite.py): `type` is a module of rlvis/evaluators, `final` runs it at the
    # end and in `rlvis.evaluate`, `every` > 0 also at the start, every that many steps and at the end (monitor.jsonl).
    c.evals = ml_collections.ConfigDict()
    c.evals.demo = dict(type="demo_tasks", final=True, every=0)
    c.evals.foresight = dict(type="foresight", final=True, every=600)
    c.evals.digits = dict(type="digit_monitor", final=False, every=600)
    c.evals.tfds = dict(type="tfds_tasks", final=False, every=0, name="", data_dir="", train_split="train",
                        test_split="test", label_key="label", task="label", probes=("linear", "knn", "fewshot"),
                        decoder=presets.decoder_settings(), max_train=10_000,
                        max_test=5_000)  # on: final=True and a name; `probes` may add "decoder"

    c.eval = ml_collections.ConfigDict()  # settings the evaluators share
    c.eval.encoder = "auto"  # encoder the evaluations score: "ema", "online", or "auto" (config_lib.eval_encoder)
    c.eval.digits_per_class = 200  # held-out digits per class, never seen in pre-training
    c.eval.scenes = 2000  # held-out scenes (half for probe training, half for test)
    c.eval.foresight_scenes = 400  # held-out scenes for the foresight evaluator (env.views views each, all pairs)
    c.eval.scene_view_size = 64  # scenes are probed at native resolution (see rlvis/evaluators/demo_tasks.py)
    c.eval.probe_steps = 300
    c.eval.knn_k = 20
    c.eval.knn_temperature = 0.07

    if not methods.FAMILIES[methods.base_name(c.method)].ANNOTATES:  # no p(ℓ | x) to foresee with
        c.evals.foresight.final, c.evals.foresight.every = False, 0
    if args["tiny"] and args["long"]:
        raise ValueError("configs/demo.py: 'tiny' and 'long' are two sizes; pick one")
    if args["long"]:
        c.total_steps = 9600
    if args["tiny"]:
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
        c.dino.prototypes = 32
        c.dino.local_views = 2
        c.dino.teacher_temp_warmup_steps = 3
        c.clip.text_variant = "tiny"
        c.mae.decoder_width, c.mae.decoder_depth = 32, 1
        c.ijepa.predictor_width, c.ijepa.predictor_depth = 32, 1
        c.eval.digits_per_class = 20
        c.eval.scenes = 200
        c.eval.foresight_scenes = 40
        c.evals.foresight.every = 0  # foresight is scored once, in the final evaluation: a faster test loop
        c.eval.probe_steps = 50
        c.eval.knn_k = 5
    if args["evals"]:
        presets.apply(c, args["evals"])
    return c
