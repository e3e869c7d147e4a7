"""A Grain random-access source over a TFDS dataset already prepared as ArrayRecord — no TensorFlow.

Why: the real image data sets (ImageNet, Food101, Oxford-IIIT Pets, ...) are TFDS builders. Prepared with
`file_format="array_record"` they can be read by index through `tfds.data_source`, which needs only numpy,
array_record and PIL, so Grain can shuffle and shard them globally like the embedded digits. (`tfds.load` /
`as_dataset` need TensorFlow; so does reading the default TFRecord format.)

It opens the reader as `tfds.data_source` does (`tfds.builder` + `as_data_source`) but never downloads:
`tfds.data_source` defaults to download=True, and with download=False a registered dataset that is not prepared
is reported as "file format TFRECORD is not supported" and an unknown one with a list of every TFDS dataset; here
each such case is one line.

Prepare once, where the builder's own dependencies (often TensorFlow) are installed:
    tfds.builder("food101", data_dir=D, file_format="array_record").download_and_prepare()

Decoding: records carry the *encoded* image bytes, decoded by rlvis/data/decode.py like every other format (one
place converts modes and counts bad records). TFDS's own TF-free image decoder (`Image.decode_example_np`) would
return a palette PNG as palette indices and an RGBA PNG or a CMYK JPEG as 4 channels, where TensorFlow converts.
"""

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

_ARRAY_RECORD = "array_record"


class TFDSSource:
    """Random access to one split of a TFDS dataset prepared as ArrayRecord.

    `source[i]` is `dict(image=encoded bytes, caption=str or None, key=str)`. A ClassLabel `caption_key` gives the label's name. Picklable: the TFDS
    reader is dropped when pickled and reopened on first use.
    """

    def __init__(
        self, name: str, split: str, data_dir: str | None, image_key: str = "image", caption_key: str | None = None
    ):
        self.name, self.split, self.data_dir = name, split, data_dir
        self.image_key, self.caption_key = image_key, caption_key
        self._lock = threading.Lock()
        self._source = self._open()
        self._len = len(self._source)

    def _where(self) -> str:
        data_dir = self.data_dir or tfds.core.constants.DATA_DIR
        return f"TFDS dataset {self.name!r} split {self.split!r} in data_dir {data_dir!r}"

    def _open(self) -> Sequence[dict]:
        """Opens the TFDS ArrayRecord reader; a missing or unusable dataset raises one clear line."""
        try:
            builder = tfds.builder(self.name, data_dir=self.data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            raise FileNotFoundError(
                f"{self._where()}: not found (prepare it with file_format='array_record')"
            ) from None
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"{self._where()}: not prepared at {builder.data_dir} (prepare it with file_format='array_record')"
            )
        formats = {f.value for f in builder.info.available_file_formats()}
        if _ARRAY_RECORD not in formats:
            raise FileNotFoundError(
                f"{self._where()}: prepared as {sorted(formats)}, not array_record; "
                f"re-prepare it with file_format='array_record'"
            )
        features = builder.info.features
        for key in (self.image_key, self.caption_key):
            if key is not None and key not in features:
                raise ValueError(f"{self._where()}: no feature {key!r}; features are {sorted(features)}")
        caption_feature = features[self.caption_key] if self.caption_key else None
        is_label = isinstance(caption_feature, tfds.features.ClassLabel)
        self.label_names = list(caption_feature.names) if is_label else None
        # Skip TFDS's decoding of every uint8 image feature: ours is decoded by decode.py, the others are unused.
        decoders = {
            key: tfds.decode.SkipDecoding()
            for key, feature in features.items()
            if isinstance(feature, tfds.features.Image) and feature.np_dtype == np.uint8
        }
        if self.image_key not in decoders:
            raise ValueError(f"{self._where()}: feature {self.image_key!r} is not a uint8 image")
        try:
            return builder.as_data_source(split=self.split, decoders=decoders, file_format=_ARRAY_RECORD)
        except ValueError as error:  # unknown split or bad slice
            raise ValueError(f"{self._where()}: {str(error).splitlines()[0]}") from None

    def _reader(self) -> Sequence[dict]:
        if self._source is None:
            with self._lock:
                if self._source is None:
                    self._source = self._open()
        return self._source

    def _element(self, index: int, example: dict[str, Any]) -> dict:
        return dict(
            image=example[self.image_key], caption=self._caption(example), key=f"{self.name}:{self.split}:{index}"
        )

    def _caption(self, example: dict[str, Any]) -> str | None:
        if self.caption_key is None:
            return None
        value = example[self.caption_key]
        if self.label_names is not None:
            return self.label_names[int(value)]
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return str(value.item() if isinstance(value, np.generic) else value)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict:
        return self._element(int(index) % max(self._len, 1), self.example(index))

    def example(self, index: int) -> dict[str, Any]:
        """The whole TFDS example (every feature, the image still encoded): for labels that other features define,
        such as VTAB's CLEVR counts and distances."""
        index = int(index)
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for {self!r}")
        return self._reader()[index % self._len]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """Batched read (array_record reads the records in parallel); Grain calls it `_getitems`."""
        indices = [int(i) % self._len for i in indices]
        return [self._element(i, ex) for i, ex in zip(indices, self._reader().__getitems__(indices))]

    _getitems = __getitems__

    def __repr__(self) -> str:
        return (
            f"TFDSSource(name={self.name!r}, split={self.split!r}, data_dir={self.data_dir!r}, "
            f"image_key={self.image_key!r}, caption_key={self.caption_key!r}, len={self._len})"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_source"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
