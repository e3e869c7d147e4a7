"""`config.evals` entries for each of the paper's evaluation tables, so one argument scores a paper-scale run.

    python -m rlvis.main --config=configs/cc12m.py:method=ab_clip,evals=table1 ...
    python -m rlvis.evaluate --workdir=runs/cc12m --evals=table1 [--evals_root=/data/tfds] [--probe=steps=2000]

  * `table1` — CC12M / ImageNet pre-training: ImageNet-1k, Food101, Oxford-IIIT Pets, RESISC45, SUN397 (their mean
    without ImageNet is the paper's "Avg Cls"), VTAB's CLEVR/Count and CLEVR/Distance; linear and decoder probes.
    TFDS datasets prepared as ArrayRecord under `root` (empty: TFDS's default data dir).
  * `tfds` — one TFDS dataset named on the command line (`--config.evals.tfds.name=...`): linear, kNN, few-shot.
  * `coco` — COCO pre-training: detection and box-conditioned classification on COCO 2017 (`root`: the COCO folder).
  * `epic_kitchens` — EpicKitchens pre-training: the same two on VISOR's sparse annotations (`root`: VISOR's folder).
Splits follow VTAB where it defines them (RESISC45: train = first 60 %, test = last 20 %; CLEVR: test = validation,
the test split has no labels). Each dataset is capped at `max_train` / `max_test` images because the probes train
on tokens cached in host memory (ViT-S/16 at 224 px: 0.3 MB per image); docs/evaluation.md gives the cost.
"""

import ast
import dataclasses

import ml_collections

from rlvis.evaluators import sequence_probe

MAX_TRAIN, MAX_TEST = 50_000, 10_000
# dataset: (TFDS name, train split, test split, task)
TABLE1 = {
    "imagenet": ("imagenet2012", "train", "validation", "label"),
    "food101": ("food101", "train", "validation", "label"),
    "pets": ("oxford_iiit_pet", "train", "test", "label"),
    "resisc45": ("resisc45", "train[:60%]", "train[80%:]", "label"),
    "sun397": ("sun397", "train", "test", "label"),
    "clevr_count": ("clevr", "train", "validation", "clevr_count"),
    "clevr_distance": ("clevr", "train", "validation", "clevr_distance"),
}


def decoder_settings() -> dict:
    """The paper-scale decoder probe's fields, as a config entry's `decoder`."""
    return dataclasses.asdict(sequence_probe.ProbeSettings())


def table1(root: str = "") -> dict:
    return {
        name: dict(
            type="tfds_tasks",
            final=True,
            every=0,
            name=tfds_name,
            data_dir=root,
            train_split=train,
            test_split=test,
            label_key="label",
            task=task,
            probes=("linear", "decoder"),
            decoder=decoder_settings(),
            max_train=MAX_TRAIN,
            max_test=MAX_TEST,
        )
        for name, (tfds_name, train, test, task) in TABLE1.items()
    }


def tfds(root: str = "") -> dict:
    """One TFDS dataset of the user's choice: `evals=tfds` plus `--config.evals.tfds.name=NAME`."""
    return dict(
        tfds=dict(
            type="tfds_tasks",
            final=True,
            every=0,
            name="",
            data_dir=root,
            train_split="train",
            test_split="test",
            label_key="label",
            task="label",
            probes=("linear", "knn", "fewshot"),
            decoder=decoder_settings(),
            max_train=10_000,
            max_test=5_000,
        )
    )


def coco(root: str = "") -> dict:
    return dict(
        coco=dict(
            type="detection",
            final=True,
            every=0,
            format="coco",
            root=root,
            name="coco",
            train_split="train2017",
            test_split="val2017",
            max_objects=100,
            decoder=decoder_settings(),
            max_train=MAX_TRAIN,
            max_test=5_000,
        )
    )


def epic_kitchens(root: str = "") -> dict:
    return dict(
        visor=dict(
            type="detection",
            final=True,
            every=0,
            format="visor",
            root=root,
            name="visor",
            train_split="train",
            test_split="val",
            max_objects=100,
            decoder=decoder_settings(),
            max_train=MAX_TRAIN,
            max_test=MAX_TEST,
        )
    )


PRESETS = {"table1": table1, "tfds": tfds, "coco": coco, "epic_kitchens": epic_kitchens}


def parse_probe(text: str) -> dict:
    """ "depth=2,width=64,steps=300" → the decoder probe fields it sets (a smaller probe for a quick look)."""
    fields = {field.name for field in dataclasses.fields(sequence_probe.ProbeSettings)}
    probe = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in fields or not value:
            raise ValueError(f"probe setting {item!r}: use KEY=VALUE with KEY one of {sorted(fields)}")
        probe[key] = ast.literal_eval(value)
    return probe


def apply(config: ml_collections.ConfigDict, name: str, root: str = "", probe: dict | None = None) -> None:
    """Add preset `name`'s entries to `config.evals` (the run's own entries stay, e.g. its digit sanity checks);
    `probe` overrides fields of their decoder probe."""
    if name not in PRESETS:
        raise ValueError(f"evals={name!r} is not a preset; presets are {sorted(PRESETS)}")
    with config.unlocked():
        for entry_name, entry in PRESETS[name](root).items():
            entry["decoder"].update(probe or {})
            config.evals[entry_name] = entry
