"""Grain pipelines for the two training streams, and the host → global `jax.Array` step.

Each stream is one global sequence of elements, a `grain.MapDataset`: a seeded shuffle of the source's indices,
epoch after epoch → the element made from its index (the demo's generators and `DecodeRecord` are seeded by the
global element index, so any process, in any run, makes exactly the same element k). Each process reads its
block of every global batch (`ProcessBatches`), prefetched by threads. Where a stream stands is the index of the
global element it reads next: one number per stream, the same on every process, saved with each checkpoint — so
a run resumes exactly, on the same or on another number of processes.

The host only produces a fixed canvas plus the valid (height, width) of each image; views are made on device.

Bad records on real data: `UsableRecords` counts each by reason in its element's `skipped` and puts the next
usable record of the sequence in its place.
"""

import concurrent.futures
import zlib
from collections.abc import Iterator, Sequence

import grain
import ml_collections
import numpy as np

from rlvis import methods
from rlvis.errors import ConfigError
from rlvis.data import decode
from rlvis.data import digits as digits_lib
from rlvis.data import sources, text

MAX_CONSECUTIVE_BAD = 1000  # beyond this the path is not image data, and saying so beats spinning forever


class ComposeScene(grain.transforms.RandomMap):
    """Scene index → multi-digit scene on the fixed canvas (the bootstrap stream's "decode")."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict):
        self.images, self.labels = images, labels
        self.kwargs = dict(
            canvas=config.scene_canvas,
            min_size=config.scene_min_size,
            digits_per_scene=tuple(config.digits_per_scene),
            digit_size=tuple(config.digit_size),
        )

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        scene = digits_lib.compose_scene(rng, self.images, self.labels, **self.kwargs)
        # the scene's ground truth rides along: the diagnostic rewards (rlvis/objectives/rewards.py) read it
        return dict(
            image=scene["image"], valid=scene["valid"], digit_boxes=scene["boxes"], digit_labels=scene["labels"]
        )


class CaptionedScene(ComposeScene):
    """Scene index → scene + its caption as byte tokens: the annotation stream of the CLIP methods."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict, caption_length: int):
        super().__init__(images, labels, config)
        self.caption_length = caption_length

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        scene = digits_lib.compose_scene(rng, self.images, self.labels, **self.kwargs)
        return dict(
            image=scene["image"],
            valid=scene["valid"],
            caption=text.encode(digits_lib.caption(scene), self.caption_length),
        )


class DigitOrScene(ComposeScene):
    """Element → a scene with probability `scene_fraction`, else a random held-in digit centred on a 32-px image
    in the top-left of the scene canvas (valid region 32 × 32, so crops never see the padding). The annotation
    stream of the scene-only (fraction 1) and curated + scene mixture baselines."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, config: ml_collections.ConfigDict, scene_fraction: float
    ):
        super().__init__(images, labels, config)
        self.scene_fraction = scene_fraction

    def random_map(self, element: int, rng: np.random.Generator) -> dict:
        if rng.random() < self.scene_fraction:
            scene = super().random_map(element, rng)
            return dict(image=scene["image"], valid=scene["valid"])  # the digits' fields have no ground truth
        digit = digits_lib.centred_digit(self.images[rng.integers(len(self.images))])
        image = np.zeros((self.kwargs["canvas"], self.kwargs["canvas"], 1), np.uint8)
        image[: digit["image"].shape[0], : digit["image"].shape[1]] = digit["image"]
        return dict(image=image, valid=digit["valid"])


class CentredDigit(grain.transforms.Map):
    """Digit index → the digit centred on a 32-px canvas (the annotation stream's "decode"), with its class as
    `label` (ground truth that only the diagnostic rewards read)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def map(self, element: int) -> dict:
        return dict(digits_lib.centred_digit(self.images[element]), label=self.labels[element])


class DecodeRecord:
    """Raw record (rlvis/data/sources.py) → dict(image canvas, valid[, caption tokens]); `decode.BadRecord` when it
    cannot be used.

    A record with several captions (COCO's five) gets one drawn per visit with the element's generator, seeded by
    the element's global index, which grows every epoch: epochs see different captions, a resumed run the same ones.
    """

    def __init__(self, canvas: int, min_side: int, caption_length: int | None):
        self.canvas, self.min_side, self.caption_length = canvas, min_side, caption_length

    def __call__(self, record: dict, rng: np.random.Generator) -> dict:
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


class UsableRecords(grain.MapDataset):
    """Global element k → the record `order[k]` of `source`, decoded, with `skipped`: a one-hot count by reason
    when that record could not be used. Such an element holds the first usable record after it in the global
    order instead (one duplicate per bad record in an epoch), so the batch keeps its shape.

    Element k depends on k alone, never on what came before it: that is what lets a run resume on another number
    of processes from one number (`ProcessBatches`). The counts are exact — each bad record is counted once, at
    its own place in the epoch — and travel inside the batch, so they resume with it and are summed over hosts on
    device like any metric. A batch's records are fetched together (one concurrent round of ranged reads from a
    bucket) and decoded by `threads` threads: decode releases the GIL.
    """

    def __init__(self, order: grain.MapDataset, source, decoder: DecodeRecord, seed: int, threads: int):
        super().__init__(order)
        self._source, self._decoder, self._seed, self._threads = source, decoder, seed, threads

    def __len__(self) -> int:
        return len(self._parent)

    def __str__(self) -> str:
        return "UsableRecords"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._element(index, self._source[self._parent[index]])

    def _getitems(self, indices: Sequence[int]) -> list[dict]:
        positions = [self._parent[index] for index in indices]
        with concurrent.futures.ThreadPoolExecutor(max(1, self._threads)) as pool:
            if hasattr(self._source, "_getitems"):  # one batched read (bucket tars), then decode in parallel
                return list(pool.map(self._element, indices, self._source._getitems(positions)))
            return list(
                pool.map(lambda index, position: self._element(index, self._source[position]), indices, positions)
            )  # each read in its thread too (a mounted bucket)

    def _element(self, index: int, record: dict) -> dict:
        skipped = np.zeros(len(decode.SKIP_REASONS), np.int32)
        rng = np.random.default_rng([self._seed, index])
        try:
            return dict(self._decoder(record, rng), skipped=skipped)
        except decode.BadRecord as bad:
            skipped[decode.SKIP_REASONS.index(bad.reason)] = 1
            reason = bad.reason
        for offset in range(1, MAX_CONSECUTIVE_BAD):
            try:
                return dict(self._decoder(self._source[self._parent[index + offset]], rng), skipped=skipped)
            except decode.BadRecord as bad:
                reason = bad.reason
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_BAD} consecutive records could not be decoded (last reason: "
            f"{reason}); is config.data pointing at image data?"
        )


class ProcessBatches(grain.MapDataset):
    """This process's batches of a global stream, from global element `start` on: of every global batch (B
    consecutive elements) process p of n reads the p-th block of B/n.

    The processes' batches, concatenated in process order, are therefore the global batch whatever n is, and where
    a stream stands is one number — the global element it reads next — the same on every process. A run saved by
    2 processes resumes on 1 or on 4 and reads exactly the global batches it would have read without stopping:
    no record read twice or skipped. (Grain's `ElasticIterator` keeps the same one-number state but deals each
    global batch out with a stride, so its global batch is a permutation that depends on n.) Whole batches are the unit, so Grain worker processes, which take every
    W-th item, produce the same sequence as threads.
    """

    def __init__(self, parent: grain.MapDataset, start: int, global_batch: int, process_index: int, process_count: int):
        super().__init__(parent)
        if global_batch % process_count:
            raise ValueError(f"a global batch of {global_batch} cannot be split over {process_count} processes")
        self._start, self._global_batch = start, global_batch
        self._local_batch = global_batch // process_count
        self._offset = process_index * self._local_batch

    def __len__(self) -> int:
        return (len(self._parent) - self._start) // self._global_batch

    def __str__(self) -> str:
        return f"ProcessBatches(start={self._start}, offset={self._offset}, local_batch={self._local_batch})"

    def element_indices(self, index: int) -> range:
        """The global elements of this process's batch `index`."""
        first = self._start + index * self._global_batch + self._offset
        return range(first, first + self._local_batch)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        elements = self._parent._getitems(list(self.element_indices(index)))
        return {key: np.stack([element[key] for element in elements]) for key in elements[0]}


def _local_batches(
    elements: grain.MapDataset,
    *,
    start: int,
    global_batch: int,
    process_index: int,
    process_count: int,
    config: ml_collections.ConfigDict,
) -> grain.IterDataset:
    """Global elements → this process's batches from global element `start` on; `data.prefetch` batches are
    made ahead, two at a time (each batch's elements by `data.read_threads` threads where they are files)."""
    batches = ProcessBatches(elements, start, global_batch, process_index, process_count)
    return batches.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=config.data.prefetch))


def _stream(
    source_len: int,
    transform: grain.transforms.Map | grain.transforms.RandomMap,
    *,
    seed: int,
    config: ml_collections.ConfigDict,
    **layout,
) -> grain.IterDataset:
    """A demo stream: a seeded global shuffle of `range(source_len)`, epoch after epoch, made into images by
    `transform` (seeded by the global element index: the same images on any number of processes)."""
    ds = grain.MapDataset.range(source_len).seed(seed).shuffle().repeat()
    ds = ds.random_map(transform) if isinstance(transform, grain.transforms.RandomMap) else ds.map(transform)
    return _local_batches(ds, config=config, **layout)


def stream_spec(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The data spec of stream `name`: `config.data` itself, or for the bootstrap stream `config.data.bootstrap`
    where its `format` is set (decoupled streams: e.g. captioned CC12M annotations, COCO bootstrap images)."""
    if name == "bootstrap" and config.data.get("bootstrap") and config.data.bootstrap.format:
        return config.data.bootstrap
    return config.data


def file_stream(
    spec: ml_collections.ConfigDict,
    config: ml_collections.ConfigDict,
    *,
    seed: int,
    captions: bool,
    global_batch: int,
    process_index: int,
    process_count: int,
    start: int = 0,
) -> grain.IterDataset:
    """A stream over images on disk: open the source, shuffle it globally epoch after epoch, decode (replacing and
    counting bad records), and batch this process's share from global element `start` on."""
    field = "config.data.bootstrap" if spec is config.data.get("bootstrap") else "config.data"
    try:
        source = sources.open_source(spec)
    except FileNotFoundError as error:  # found at start-up, before any compute: one line naming the field
        raise ConfigError(f"{field}: {error}") from None
    except PermissionError as error:
        raise ConfigError(
            f"{field}: cannot write next to the data ({error.strerror}: "
            f"{error.filename}); set {field}.index_dir to a writable folder"
        ) from None
    for shard in getattr(source, "truncated_shards", []):
        print(f"rlvis: {shard} is truncated; its complete samples are used", flush=True)
    order = grain.MapDataset.range(len(source)).seed(seed).shuffle().repeat()
    decoder = DecodeRecord(config.data.canvas, config.data.min_side, config.clip.caption_length if captions else None)
    ds = _local_batches(
        UsableRecords(order, source, decoder, seed, config.data.read_threads),
        start=start,
        global_batch=global_batch,
        process_index=process_index,
        process_count=process_count,
        config=config,
    )
    if config.data.worker_processes:  # each worker runs the pipeline above on its share of the batches
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.worker_processes))
    return ds


def stream_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return ("annotation", "bootstrap") if methods.bootstraps(config) else ("annotation",)


def training_streams(
    config: ml_collections.ConfigDict, process_index: int, process_count: int, position: dict[str, int] | None = None
) -> dict[str, grain.IterDataset]:
    """The annotation and bootstrap streams (only the annotation one for a base method): this process's share of
    each, from global element `position[name]` on (0 for a new run; a checkpoint saves the position).

    On the embedded demo the annotation stream is single centred digits (curated, unlabeled: the ImageNet
    analogue) for the SimCLR and DINO methods — or scenes, or a mixture, with `data.annotation_scene_fraction` —
    and captioned scenes (the CC12M / COCO-captions analogue) for the
    CLIP methods; the bootstrap stream is multi-digit scenes. On real data each stream reads its `stream_spec`;
    the CLIP methods' annotation stream keeps only captioned records.
    """
    captions = methods.get(config).CAPTIONS
    streams, splits = {}, None
    for offset, name in enumerate(stream_names(config)):
        spec = stream_spec(config, name)
        seed = config.seed + offset
        layout = dict(
            start=(position or {}).get(name, 0),
            global_batch=config.batch[name],
            process_index=process_index,
            process_count=process_count,
        )
        if spec.format != "demo":
            streams[name] = file_stream(spec, config, seed=seed, captions=captions and name == "annotation", **layout)
            continue
        splits = splits or digits_lib.load_digits(config.eval.digits_per_class)
        images, labels = splits.pretrain_images, splits.pretrain_labels
        if name == "bootstrap":
            streams[name] = _stream(
                config.data.num_scenes, ComposeScene(images, labels, config.data), seed=seed, config=config, **layout
            )
        elif captions:
            streams[name] = _stream(
                config.data.num_scenes,
                CaptionedScene(images, labels, config.data, config.clip.caption_length),
                seed=config.seed + 2,
                config=config,
                **layout,
            )
        elif config.data.get("annotation_scene_fraction", 0) > 0:
            streams[name] = _stream(
                config.data.num_scenes,
                DigitOrScene(images, labels, config.data, config.data.annotation_scene_fraction),
                seed=seed,
                config=config,
                **layout,
            )
        else:
            streams[name] = _stream(len(images), CentredDigit(images, labels), seed=seed, config=config, **layout)
    return streams


def digest(batch: dict[str, np.ndarray]) -> int:
    """A cheap fingerprint of a host batch, logged so a resumed run can be shown to see the same batches."""
    return zlib.crc32(np.ascontiguousarray(batch["image"]).tobytes()) ^ zlib.crc32(batch["valid"].tobytes())


def next_batches(iterators: dict[str, Iterator]) -> dict[str, dict[str, np.ndarray]]:
    return {name: next(it) for name, it in iterators.items()}


def advance(position: dict[str, int], config: ml_collections.ConfigDict) -> dict[str, int]:
    """The streams' position after one more step (one global batch of each)."""
    return {name: index + config.batch[name] for name, index in position.items()}
