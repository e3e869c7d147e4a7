"""Grain pipelines for the two training streams, and the host → global `jax.Array` step.

Each stream starts as a `grain.MapDataset`: index source → per-process slice → seeded global index shuffle →
repeat → per-element map (the demo's `random_map` generator is seeded by (seed, index), so a resumed run makes
exactly the same images; real data is decoded by `DecodeRecord`) → `IterDataset` with read threads → per-host
batch. The iterator's state is a checkpoint item.

The host only produces a fixed canvas plus the valid (height, width) of each image; views are made on device.

Bad records on real data: `DecodeRecord` turns each into a marker naming its reason, and `SkipBadRecords` drops
the marker and adds it to the next good record's `skipped` counts. The counts therefore travel inside the batch:
they are exact, resume with the iterator state, and are summed over all hosts on device like any metric.
"""

import zlib
from collections.abc import Iterator

import grain
import ml_collections
import numpy as np

from rlvis import config_lib, methods
from rlvis.data import decode
from rlvis.data import digits as digits_lib
from rlvis.data import sources, text

SKIP = "skip_reason"
MAX_CONSECUTIVE_BAD = 1000  # beyond this the path is not image data, and saying so beats spinning forever


class ComposeScene(grain.transforms.RandomMap):
    """Scene index → multi-digit scene on the fixed canvas (the bootstrap stream's "decode")."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict,
                 with_labels: bool = False):
        self.images, self.labels, self.with_labels = images, labels, with_labels
        self.kwargs = dict(canvas=config.scene_canvas, min_size=config.scene_min_size,
                           digits_per_scene=tuple(config.digits_per_scene), digit_size=tuple(config.digit_size))

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        scene = digits_lib.compose_scene(rng, self.images, self.labels, **self.kwargs)
        labelled = dict(digit_boxes=scene["boxes"], digit_labels=scene["labels"]) if self.with_labels else {}
        return dict(image=scene["image"], valid=scene["valid"], **labelled)


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


class DigitOrScene(ComposeScene):
    """Element → a scene with probability `scene_fraction`, else a random held-in digit centred on a 32-px image
    in the top-left of the scene canvas (valid region 32 × 32, so crops never see the padding). The annotation
    stream of the scene-only (fraction 1) and curated + scene mixture baselines."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict,
                 scene_fraction: float):
        super().__init__(images, labels, config)
        self.scene_fraction = scene_fraction

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        if rng.random() < self.scene_fraction:
            return super().random_map(element, rng)
        digit = digits_lib.centred_digit(self.images[rng.integers(len(self.images))])
        image = np.zeros((self.kwargs["canvas"], self.kwargs["canvas"], 1), np.uint8)
        image[:digit["image"].shape[0], :digit["image"].shape[1]] = digit["image"]
        return dict(image=image, valid=digit["valid"])


class CentredDigit(grain.transforms.Map):
    """Digit index → the digit centred on a 32-px canvas (the annotation stream's "decode"), with its class as
    `label` when `labels` is given (the oracle reward)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None):
        self.images, self.labels = images, labels

    def map(self, element: int) -> dict:
        digit = digits_lib.centred_digit(self.images[element])
        return digit if self.labels is None else dict(digit, label=self.labels[element])


class DecodeRecord(grain.transforms.RandomMap):
    """Raw record (rlvis/data/sources.py) → dict(image canvas, valid[, caption tokens]), or {SKIP: reason}.

    A record with several captions (COCO's five) gets one drawn per visit: the generator is seeded by the element's
    index, which grows every epoch, so epochs see different captions and a resumed run sees the same ones.
    """

    def __init__(self, canvas: int, min_side: int, caption_length: int | None):
        self.canvas, self.min_side, self.caption_length = canvas, min_side, caption_length

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        try:
            element = {}
            if self.caption_length:  # before decoding: a captionless record is cheap to reject
                captions = record.get("captions") or [record.get("caption")]
                caption = (captions[rng.integers(len(captions))] or "").strip()
                if not caption:
                    raise decode.BadRecord("no_caption")
                element["caption"] = text.encode(caption, self.caption_length)
            image = decode.decode(record["image"], self.canvas)
            element["image"], element["valid"] = decode.fit_to_canvas(image, self.canvas, self.min_side)
            return element
        except decode.BadRecord as bad:
            return {SKIP: bad.reason}


class SkipBadRecords(grain.IterDataset):
    """Drops `{SKIP: reason}` markers; each good element carries `skipped`, the counts dropped just before it."""

    def __iter__(self) -> grain.DatasetIterator:
        return _SkipBadRecordsIterator(self._parent.__iter__())


class _SkipBadRecordsIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)
        self._pending = np.zeros(len(decode.SKIP_REASONS), np.int32)

    def __next__(self) -> dict:
        consecutive = 0
        while True:
            element = next(self._parent)
            if SKIP not in element:
                element["skipped"], self._pending = self._pending, np.zeros_like(self._pending)
                return element
            self._pending[decode.SKIP_REASONS.index(element[SKIP])] += 1
            consecutive += 1
            if consecutive >= MAX_CONSECUTIVE_BAD:
                raise RuntimeError(f"{consecutive} consecutive records could not be decoded (last reason: "
                                   f"{element[SKIP]}); is config.data pointing at image data?")

    def get_state(self) -> dict:
        return {"parent": self._parent.get_state(), "pending": self._pending.tolist()}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self._pending = np.asarray(state["pending"], np.int32)


def _read_options(config: ml_collections.ConfigDict) -> grain.ReadOptions:
    """Threads, not processes: decode releases the GIL, and on 2 cores threads measured faster
    (`rlvis.data.throughput`)."""
    return grain.ReadOptions(num_threads=config.data.read_threads, prefetch_buffer_size=config.data.prefetch)


def _stream(source_len: int, transform: grain.transforms.Map | grain.transforms.RandomMap, *, seed: int,
            global_batch: int, process_index: int, process_count: int,
            config: ml_collections.ConfigDict) -> grain.IterDataset:
    ds = grain.MapDataset.range(source_len)[process_index::process_count]
    ds = ds.seed(seed).shuffle().repeat()
    ds = ds.random_map(transform) if isinstance(transform, grain.transforms.RandomMap) else ds.map(transform)
    return ds.batch(global_batch // process_count, drop_remainder=True).to_iter_dataset(_read_options(config))


def stream_spec(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The data spec of stream `name`: `config.data` itself, or for the bootstrap stream `config.data.bootstrap`
    where its `format` is set (decoupled streams: e.g. captioned CC12M annotations, COCO bootstrap images)."""
    if name == "bootstrap" and config.data.bootstrap.format:
        return config.data.bootstrap
    return config.data


def file_stream(spec: ml_collections.ConfigDict, config: ml_collections.ConfigDict, *, seed: int, global_batch: int,
                captions: bool, process_index: int, process_count: int) -> grain.IterDataset:
    """A stream over images on disk: open the source, slice per process, shuffle globally, decode, skip, batch."""
    field = "config.data.bootstrap" if spec is config.data.bootstrap else "config.data"
    try:
        source = sources.open_source(spec)
    except FileNotFoundError as error:  # found at start-up, before any compute: one line naming the field
        raise config_lib.ConfigError(f"{field}: {error}") from None
    except PermissionError as error:
        raise config_lib.ConfigError(f"{field}: cannot write next to the data ({error.strerror}: "
                                     f"{error.filename}); set {field}.index_dir to a writable folder") from None
    for shard in getattr(source, "truncated_shards", []):
        print(f"rlvis: {shard} is truncated; its complete samples are used", flush=True)
    if len(source) < process_count:
        raise ValueError(f"{spec.path}: {len(source)} records cannot be split over {process_count} processes")
    ds = grain.MapDataset.source(source)[process_index::process_count].seed(seed).shuffle().repeat()
    ds = ds.random_map(DecodeRecord(config.data.canvas, config.data.min_side,
                                    config.clip.caption_length if captions else None))
    ds = SkipBadRecords(ds.to_iter_dataset(_read_options(config)))
    ds = ds.batch(global_batch // process_count, drop_remainder=True)
    if config.data.worker_processes:  # each worker runs the pipeline above on its share of the batches
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.worker_processes))
    return ds


def training_streams(config: ml_collections.ConfigDict, process_index: int,
                     process_count: int) -> dict[str, grain.IterDataset]:
    """The annotation and bootstrap streams (only the annotation one for a base method), sliced for this process.

    On the embedded demo the annotation stream is single centred digits (curated, unlabeled: the ImageNet
    analogue) for the SimCLR and DINO methods — or scenes, or a mixture, with `data.annotation_scene_fraction` —
    and captioned scenes (the CC12M / COCO-captions analogue) for the
    CLIP methods; the bootstrap stream is multi-digit scenes. On real data each stream reads its `stream_spec`;
    the CLIP methods' annotation stream keeps only captioned records.
    """
    kwargs = dict(process_index=process_index, process_count=process_count)
    captions = methods.get(config).CAPTIONS
    names = ("annotation", "bootstrap") if methods.bootstraps(config) else ("annotation",)
    streams, splits = {}, None
    for offset, name in enumerate(names):
        spec = stream_spec(config, name)
        seed, batch = config.seed + offset, config.batch[name]
        if spec.format != "demo":
            streams[name] = file_stream(spec, config, seed=seed, global_batch=batch,
                                        captions=captions and name == "annotation", **kwargs)
            continue
        splits = splits or digits_lib.load_digits(config.eval.digits_per_class)
        images, labels = splits.pretrain_images, splits.pretrain_labels
        oracle = config.ab.reward == "oracle"  # the streams then carry the digits' classes and boxes
        if name == "bootstrap":
            streams[name] = _stream(config.data.num_scenes, ComposeScene(images, labels, config.data, oracle),
                                    seed=seed, global_batch=batch, config=config, **kwargs)
        elif captions:
            streams[name] = _stream(config.data.num_scenes,
                                    CaptionedScene(images, labels, config.data, config.clip.caption_length),
                                    seed=config.seed + 2, global_batch=batch, config=config, **kwargs)
        elif config.data.annotation_scene_fraction > 0:
            streams[name] = _stream(config.data.num_scenes,
                                    DigitOrScene(images, labels, config.data, config.data.annotation_scene_fraction),
                                    seed=seed, global_batch=batch, config=config, **kwargs)
        else:
            streams[name] = _stream(len(images), CentredDigit(images, labels if oracle else None), seed=seed,
                                    global_batch=batch, config=config, **kwargs)
    return streams


def image_channels(config: ml_collections.ConfigDict) -> int:
    """Grayscale for the embedded digits, RGB for everything read from disk (decode converts every mode)."""
    return 1 if config.data.format == "demo" else 3


def digest(batch: dict[str, np.ndarray]) -> int:
    """A cheap fingerprint of a host batch, logged so a resumed run can be shown to see the same batches."""
    return zlib.crc32(np.ascontiguousarray(batch["image"]).tobytes()) ^ zlib.crc32(batch["valid"].tobytes())


def next_batches(iterators: dict[str, Iterator]) -> dict[str, dict[str, np.ndarray]]:
    return {name: next(it) for name, it in iterators.items()}
