"""Grain pipelines for the two training streams, and the host → global `jax.Array` step.

Each stream is a `grain.MapDataset`: index source → per-process slice → seeded global index shuffle → repeat →
per-element `random_map` (its generator is seeded by (seed, index), so a resumed run makes exactly the same
images) → per-host batch → `IterDataset` with read threads. The iterator's state is a checkpoint item.

The host only produces a fixed canvas plus the valid (height, width) of each image; views are made on device.
"""

import zlib
from collections.abc import Iterator

import grain
import ml_collections
import numpy as np

from rlvis import config_lib
from rlvis.data import digits as digits_lib
from rlvis.data import text


class ComposeScene(grain.transforms.RandomMap):
    """Scene index → multi-digit scene on the fixed canvas (the bootstrap stream's "decode")."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict):
        self.images, self.labels = images, labels
        self.kwargs = dict(canvas=config.scene_canvas, min_size=config.scene_min_size,
                           digits_per_scene=tuple(config.digits_per_scene), digit_size=tuple(config.digit_size))

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        scene = digits_lib.compose_scene(rng, self.images, self.labels, **self.kwargs)
        return dict(image=scene["image"], valid=scene["valid"])


class CaptionedScene(ComposeScene):
    """Scene index → scene + its caption as byte tokens: the annotation stream of the CLIP methods."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict,
                 caption_length: int):
        super().__init__(images, labels, config)
        self.caption_length = caption_length

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        scene = digits_lib.compose_scene(rng, self.images, self.labels, **self.kwargs)
        return dict(image=scene["image"], valid=scene["valid"],
                    caption=text.encode(digits_lib.caption(scene), self.caption_length))


class CentredDigit(grain.transforms.Map):
    """Digit index → the digit centred on a 32-px canvas (the annotation stream's "decode")."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def map(self, element: int) -> dict:
        return digits_lib.centred_digit(self.images[element])


def _stream(source_len: int, transform: grain.transforms.Map | grain.transforms.RandomMap, *, seed: int,
            global_batch: int, process_index: int, process_count: int) -> grain.MapDataset:
    ds = grain.MapDataset.range(source_len)[process_index::process_count]
    ds = ds.seed(seed).shuffle().repeat()
    ds = ds.random_map(transform) if isinstance(transform, grain.transforms.RandomMap) else ds.map(transform)
    return ds.batch(global_batch // process_count, drop_remainder=True)


def training_streams(config: ml_collections.ConfigDict, splits: digits_lib.DigitSplits, process_index: int,
                     process_count: int) -> dict[str, grain.MapDataset]:
    """The annotation and bootstrap streams of the embedded demo, sliced for this process.

    The annotation stream is single centred digits (curated, unlabeled: the ImageNet analogue) for the SimCLR and
    DINO methods, and captioned scenes (the CC12M / COCO-captions analogue) for the CLIP methods.
    """
    kwargs = dict(process_index=process_index, process_count=process_count)
    if config_lib.base_method(config) == "clip":
        annotation = _stream(config.data.num_scenes,
                             CaptionedScene(splits.pretrain_images, splits.pretrain_labels, config.data,
                                            config.clip.caption_length),
                             seed=config.seed + 2, global_batch=config.batch.annotation, **kwargs)
    else:
        annotation = _stream(len(splits.pretrain_images), CentredDigit(splits.pretrain_images),
                             seed=config.seed, global_batch=config.batch.annotation, **kwargs)
    return {
        "annotation": annotation,
        "bootstrap": _stream(config.data.num_scenes,
                             ComposeScene(splits.pretrain_images, splits.pretrain_labels, config.data),
                             seed=config.seed + 1, global_batch=config.batch.bootstrap, **kwargs),
    }


def make_iterator(ds: grain.MapDataset, config: ml_collections.ConfigDict) -> grain.DatasetIterator:
    """A checkpointable iterator; threads, not processes, because decode here releases the GIL (DESIGN.md)."""
    options = grain.ReadOptions(num_threads=config.data.read_threads, prefetch_buffer_size=config.data.prefetch)
    return iter(ds.to_iter_dataset(options))


def digest(batch: dict[str, np.ndarray]) -> int:
    """A cheap fingerprint of a host batch, logged so a resumed run can be shown to see the same batches."""
    return zlib.crc32(np.ascontiguousarray(batch["image"]).tobytes()) ^ zlib.crc32(batch["valid"].tobytes())


def next_batches(iterators: dict[str, Iterator]) -> dict[str, dict[str, np.ndarray]]:
    return {name: next(it) for name, it in iterators.items()}
