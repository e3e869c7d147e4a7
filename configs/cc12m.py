"""Paper scale: CC12M, ViT-S/16, Table 7 of Ghosh & Levine 2025 per method (docs/method.md, paper-scale recipe).

    python -m rlvis.main --config=configs/cc12m.py:method=ab_clip --config.data.path=/data/cc12m --workdir=...

`data.path` is the folder img2dataset wrote (`--output_format webdataset`: 00000.tar, 00000.parquet,
00000_stats.json, ...), a brace pattern such as `/data/cc12m/cc12m-train-{0000..2175}.tar` (the pre-crawled copy),
or, with `--config.data.format=parquet`, img2dataset's parquet output. The tars are indexed once on first use
(`python -m rlvis.data.tar_shards --data=...` does it ahead of time, resumably).

Methods and arguments are those of configs/demo.py (`method=NAME`, `tiny`, `evals=table1|coco|epic_kitchens`:
the paper's evaluation tables, rlvis/evaluators/presets.py); `tiny` keeps these hyperparameters'
structure at test size, so a test trains this preset end to end on a small shard folder.

Table 7, per base method (AB follows its base; [INF] marks our reading where the table is silent):
  * simclr: RRC(0.08, 1) + flip + colour jitter, 2 views, lr 1e-3, warm-up 10 ImageNet epochs (1,563 steps at
    8,192), weight decay 0.04 → 0.4, no clipping, no EMA for the baseline (AB: target EMA 0.996 → 1).
  * dino: 2 global RRC(0.4, 1) + 8 local RRC(0.05, 0.4) at 96 px, lr 1e-3, same warm-up, weight decay 0.04 → 0.4,
    clipping 1.0, teacher EMA 0.996 → 1, 65,536 prototypes, teacher temperature 0.04 → 0.07 [INF: DINO defaults].
  * clip: RRC(0.5, 1), lr 1e-3, warm-up 1 CC12M epoch (≈ 1,339 steps), weight decay 0.1, β2 0.98, no clipping;
    AB_CLIP's target EMA is fixed at 0.996. Text tower S.
  * mae: RRC(0.2, 1) + flip, lr 2.4e-3, β2 0.95, weight decay 0.05, 10k warm-up steps, 75 % masking; decoder
    [INF: 512 wide, 8 deep, 16 heads, MAE's ViT-L decoder]; 8,192 images per step, one view each.
  * ijepa: RRC(0.3, 1), lr 1e-3, warm-up 40 ImageNet epochs, weight decay 0.04 → 0.4, no clipping, target EMA
    0.996 → 1, 4,096 images per step; 4 target blocks of scale 0.15–0.2 and aspect 0.75–1.5, a context block of
    0.85–1; predictor [INF: 384 wide, 6 deep, 12 heads; I-JEPA's ViT-H predictor is 384 × 12].
  * slip: CLIP's settings (β2 0.98, weight decay 0.1, 1 CC12M epoch warm-up) [INF: Table 7 gives none]; CLIP on
    4,096 captioned images, SimCLR (RRC(0.08, 1) + colour + flip, temperature 0.1) on 2,048 of them, ratio 1.
  * silc: CLIP's settings [INF]; CLIP on 4,096, DINO on 512 of them (2 global + 8 local), teacher EMA fixed 0.996.
  * clip_aug: CLIP's settings and batch; its one view RRC(0.08, 1) + colour jitter, grayscale, blur 0.5,
    solarisation 0.2 and flip [INF: the strong augmentation of Fini et al. 2023].
  * Batches: effective 8,192 views. AB: bootstrap 1,024 images × 4 views; annotation 4,096 views
    (CLIP 4,096 captions, SimCLR 2,048 images × 2 [INF], DINO 512 images × 10 = 5,120 [INF]). Baselines alone:
    SimCLR 4,096 × 2, DINO 1,024 × 10, CLIP 8,192.
  * 800M seen views ≈ 97,700 steps at 8,192; annotation decoder "S" (width 384, 6 heads) [INF: depth 2].
"""

import ml_collections

from configs import demo
from rlvis import methods
from rlvis.evaluators import presets

EFFECTIVE_BATCH = 8192
TOTAL_STEPS = 800_000_000 // EFFECTIVE_BATCH  # 97,656
IMAGENET_EPOCH_STEPS = 1_281_167 // EFFECTIVE_BATCH  # Table 7's warm-ups are given in ImageNet/CC12M epochs
CC12M_EPOCH_STEPS = 10_968_539 // EFFECTIVE_BATCH


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = demo.parse_arg(arg)
    if args["long"]:
        raise ValueError("configs/cc12m.py: 'long' is a demo size; cc12m's length is config.total_steps")
    c = demo.get_config(f"method={args['method']},data={args['data'] if args['data'] != 'demo' else 'webdataset'}")
    base, bootstrapping = methods.base_name(c.method), methods.bootstraps(c)
    c.total_steps = TOTAL_STEPS
    c.log_every, c.checkpoint_every, c.keep_checkpoints = 100, 2000, 3

    # the demo's scene fields stay: they shape the held-out digit probes
    c.data.canvas = 256  # img2dataset --image_size 256 (keep_ratio); the pre-crawled copy is 512 short side
    c.data.min_side = 64
    c.data.read_threads = 32
    c.data.prefetch = 4

    c.env.view_size = 224
    c.env.views = 4
    c.env.scale = (0.05, 1.0)
    c.env.annotation_scale = (0.08, 1.0)  # SimCLR's RRC
    c.model.variant = "S/16"
    c.model.proj_dim = 256
    c.model.proj_hidden = 2048
    c.model.decoder_width, c.model.decoder_heads, c.model.decoder_depth = 384, 6, 2
    c.eval.scene_view_size = 64
    if "foresight" in c.evals:  # digit sanity checks only: foresight is for demo data
        del c.evals["foresight"]

    if "dino" in c:
        c.dino.prototypes = 65_536
        c.dino.local_views = 8
        c.dino.local_size = 96
        c.dino.warmup_teacher_temp, c.dino.teacher_temp = 0.04, 0.07  # DINO's own
        c.dino.teacher_temp_warmup_steps = 30 * IMAGENET_EPOCH_STEPS
        c.dino.freeze_last_layer_steps = IMAGENET_EPOCH_STEPS
    if "clip" in c:
        c.clip.text_variant = "S"
        c.clip.caption_length = 128  # bytes; CC12M captions are mostly shorter
    if "augment" in c:
        c.augment.flip = 0.5

    captioned = methods.get(c).CAPTIONS  # CLIP and the baselines built on it take CLIP's optimiser settings
    c.optim.lr = 1e-3
    c.optim.b2 = 0.98 if captioned else 0.999
    c.optim.grad_clip = 1.0 if base == "dino" else 0.0
    c.optim.weight_decay, c.optim.weight_decay_end = (0.1, 0.1) if captioned else (0.04, 0.4)
    c.optim.warmup_steps = CC12M_EPOCH_STEPS if captioned else 10 * IMAGENET_EPOCH_STEPS
    c.ema.start, c.ema.end = (0.996, 0.996) if base == "clip" else (0.996, 1.0)  # SiLC: fixed by its recipe
    if bootstrapping:
        c.ab.center_target = False  # the paper's target: the demo's centring was found on the embedded data only
    c.model.box_attention = False  # the paper's value head, for the same reason

    if base == "mae":
        c.env.annotation_scale = (0.2, 1.0)
        c.optim.lr, c.optim.b2, c.optim.warmup_steps = 2.4e-3, 0.95, 10_000
        c.optim.weight_decay = c.optim.weight_decay_end = 0.05
        c.mae.decoder_width, c.mae.decoder_depth, c.mae.decoder_heads = 512, 8, 16

    if base == "ijepa":
        c.optim.warmup_steps = 40 * IMAGENET_EPOCH_STEPS
        c.ijepa.predictor_width, c.ijepa.predictor_depth, c.ijepa.predictor_heads = 384, 6, 12

    annotation_images = (
        {"clip": 4096, "simclr": 2048, "dino": 512}
        if bootstrapping
        else {
            "clip": 8192,
            "simclr": 4096,
            "dino": 1024,
            "mae": 8192,
            "ijepa": 4096,
            "slip": 4096,
            "silc": 4096,
            "clip_aug": 8192,
        }
    )
    c.batch.annotation = annotation_images[base]
    c.batch.bootstrap = EFFECTIVE_BATCH // 8

    if args["tiny"]:  # same structure, test size: a few steps on a small shard folder
        c.total_steps, c.log_every, c.checkpoint_every = 4, 1, 2
        c.data.canvas, c.data.min_side, c.data.read_threads = 64, 16, 2
        c.env.view_size, c.env.views = 32, 3
        c.model.variant, c.model.proj_dim, c.model.proj_hidden = "tiny/8", 32, 32
        c.model.decoder_width, c.model.decoder_heads, c.model.decoder_depth = 32, 4, 1
        if "dino" in c:
            c.dino.prototypes, c.dino.local_views, c.dino.local_size = 32, 2, 16
            c.dino.teacher_temp_warmup_steps = c.dino.freeze_last_layer_steps = 2
        if "clip" in c:
            c.clip.text_variant, c.clip.caption_length = "tiny", 48
        if "mae" in c:
            c.mae.decoder_width, c.mae.decoder_depth, c.mae.decoder_heads = 32, 1, 4
        if "ijepa" in c:
            c.ijepa.predictor_width, c.ijepa.predictor_depth, c.ijepa.predictor_heads = 32, 1, 4
        c.optim.warmup_steps = 2
        c.batch.annotation, c.batch.bootstrap = 8, 4
        c.eval.digits_per_class, c.eval.scenes, c.eval.probe_steps, c.eval.knn_k = 20, 200, 50, 5
        c.eval.foresight_scenes = 40
    if args["evals"]:  # a paper table's evaluators (rlvis/evaluators/presets.py), e.g. evals=table1
        presets.apply(c, args["evals"])
    return c
