"""Every on-disk format rlvis reads, by name: `config.data.format` → a Grain random-access source.

Each source returns raw records, `dict(image=<encoded bytes or uint8 array>, caption=<str or None>, key=<str>)`;
decoding, the canvas and skipping bad records happen once, in rlvis/data/decode.py, for all of them.

    webdataset    img2dataset `--output_format webdataset` (00000.tar + .parquet + _stats.json), or the pre-crawled
                  `cc12m-train-{0000..2175}.tar`: a folder, a brace pattern or a glob (rlvis/data/tar_shards.py)
    parquet       img2dataset `--output_format parquet`: `jpg` and `txt` columns (rlvis/data/parquet_shards.py)
    coco          COCO 2017: `{path}/{split}/*.jpg` + `{path}/annotations/captions_{split}.json` (rlvis/data/coco.py)
    image_folder  any folder of images, with or without class subfolders; EpicKitchens frame folders with
                  `frame_stride` (rlvis/data/image_folder.py)
    tfds          a TFDS dataset prepared as ArrayRecord, read with `tfds.data_source`, no TensorFlow
                  (`path` = data_dir, `name`, `split`; rlvis/data/tfds_source.py)
"""

import ml_collections

FORMATS = ("demo", "webdataset", "parquet", "coco", "image_folder", "tfds")


def open_source(spec: ml_collections.ConfigDict):
    """A stream spec (format, path, split, name, index_dir, frame_stride) → the source; one-line errors if absent."""
    if spec.format == "webdataset":
        from rlvis.data.tar_shards import TarShardSource

        return TarShardSource(spec.path, spec.index_dir or None)
    if spec.format == "parquet":
        from rlvis.data.parquet_shards import ParquetSource

        return ParquetSource(spec.path)
    if spec.format == "coco":
        from rlvis.data.coco import COCOSource

        return COCOSource(spec.path, spec.split or "train2017")
    if spec.format == "image_folder":
        from rlvis.data.image_folder import ImageFolderSource

        return ImageFolderSource(spec.path, stride=spec.frame_stride)
    if spec.format == "tfds":
        from rlvis.data.tfds_source import TFDSSource

        return TFDSSource(
            spec.name, split=spec.split or "train", data_dir=spec.path or None, caption_key=spec.caption_key or None
        )
    raise ValueError(f"config.data format {spec.format!r} is not one of {FORMATS}")


def image_channels(config: ml_collections.ConfigDict) -> int:
    """Grayscale for the embedded digits, RGB for everything read from disk (decode converts every mode)."""
    return 1 if config.data.format == "demo" else 3


def stream_fields(data_format: str) -> dict:
    """A stream's `config.data` fields: where its images come from, in `data_format`."""
    return dict(format=data_format, path="", split="", name="", index_dir="", frame_stride=1, caption_key="")


CANVAS = 256  # real images: longer side resized to this, aspect kept (img2dataset --image_size 256)


def canvas(config: ml_collections.ConfigDict) -> int:
    """The host canvas images read from files are fitted into: the run's own, or for a demo run scored on a dataset
    (`rlvis.evaluate --evals=...`), the default."""
    return config.data.get("canvas", CANVAS)
