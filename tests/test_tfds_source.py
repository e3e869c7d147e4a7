"""TFDSSource over a real TFDS ArrayRecord dataset, built here without TensorFlow.

The builder below is a genuine `tfds.core.GeneratorBasedBuilder` prepared with `file_format="array_record"` into
tmp_path (no downloads). It is not registered, so `TFDSSource` finds it from the files alone, exactly as a fresh
process would read a prepared ImageNet or Food101.
"""

import io
import json
import pickle
import shutil

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from rlvis.data import decode
from rlvis.data.tfds_source import TFDSSource

NAME = "rlvis_tiny_captions"
LABELS = ["cat", "dog", "fish"]
CORRUPT = b"\x89PNG\r\n\x1a\n truncated"  # stored as is: TFDS does not check encoded bytes
NUM = 8


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _images() -> list[Image.Image | None]:
    """RGB images of varied sizes, a palette and an RGBA one (TFDS's own numpy decoder returns those wrong), and
    a last example (None) whose bytes are CORRUPT."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (5 + i, 3 + 2 * i, 3), dtype=np.uint8)) for i in range(NUM - 3)]
    images.append(Image.fromarray(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)).quantize(colors=8))  # mode P
    images.append(Image.fromarray(rng.integers(0, 256, (4, 6, 4), dtype=np.uint8), mode="RGBA"))
    return images + [None]


def _encoded(image: Image.Image | None) -> bytes:
    return CORRUPT if image is None else _png(image)


class RlvisTinyCaptions(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: `dataset_info_from_configs` would read metadata files beside this module.
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),  # fed encoded bytes: no TF needed to encode
                    "mask": tfds.features.Image(shape=(None, None, 1)),
                    "caption": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=LABELS),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, image in enumerate(_images()):
            mask = Image.fromarray(np.full((4, 4), i, np.uint8))
            yield f"ex{i}", dict(image=_encoded(image), mask=_png(mask), caption=f"caption {i}", label=i % len(LABELS))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("tfds"))
    RlvisTinyCaptions(data_dir=root, file_format="array_record").download_and_prepare()
    return root


def _index(caption: str) -> int:
    return int(caption.removeprefix("caption "))


def test_reads_exact_pixels_and_captions(data_dir):
    source = TFDSSource(NAME, "train", data_dir, caption_key="caption")
    assert len(source) == NUM
    images = _images()
    seen = set()
    for i in range(len(source)):
        element = source[i]
        assert set(element) == {"image", "caption", "key"}
        j = _index(element["caption"])
        assert element["key"] == f"{NAME}:train:{i}"
        seen.add(j)
        if images[j] is None:  # undecodable: passed on as bytes for the pipeline's decode step to count and skip
            with pytest.raises(decode.BadRecord, match="corrupt"):
                decode.decode(element["image"], 64)
            continue
        if images[j].mode == "RGBA":  # transparent → black, like the canvas padding
            expected = Image.alpha_composite(Image.new("RGBA", images[j].size, (0, 0, 0, 255)), images[j])
        expected = np.asarray((expected if images[j].mode == "RGBA" else images[j]).convert("RGB"))
        pixels = decode.decode(element["image"], 64)  # palette → colours, as TensorFlow would decode
        assert pixels.dtype == np.uint8 and pixels.shape == expected.shape
        np.testing.assert_array_equal(pixels, expected)
    assert seen == set(range(NUM))  # every example, once


def test_class_label_caption_and_no_caption(data_dir):
    texts = TFDSSource(NAME, "train", data_dir, caption_key="caption")
    labels = TFDSSource(NAME, "train", data_dir, caption_key="label")
    plain = TFDSSource(NAME, "train", data_dir)
    for i in range(NUM):
        assert labels[i]["caption"] == LABELS[_index(texts[i]["caption"]) % len(LABELS)]
        assert plain[i]["caption"] is None
        np.testing.assert_array_equal(plain[i]["image"], texts[i]["image"])


def test_encoded_bytes_are_the_written_png(data_dir):
    source = TFDSSource(NAME, "train", data_dir, caption_key="caption")
    images = _images()
    for i in range(NUM):
        element = source[i]
        assert element["image"] == _encoded(images[_index(element["caption"])])


def test_batched_read_split_slice_and_grain(data_dir):
    source = TFDSSource(NAME, "train", data_dir, caption_key="caption")
    batch = source.__getitems__([3, 0, 3])
    assert [e["key"] for e in batch] == [source[i]["key"] for i in (3, 0, 3)]
    np.testing.assert_array_equal(batch[0]["image"], source[3]["image"])
    assert len(TFDSSource(NAME, "train[:3]", data_dir)) == 3
    dataset = grain.MapDataset.source(source).seed(0).shuffle()
    assert sorted(dataset[i]["key"] for i in range(NUM)) == sorted(source[i]["key"] for i in range(NUM))
    with pytest.raises(IndexError):
        source[NUM]


def test_pickle_round_trip(data_dir):
    source = TFDSSource(NAME, "train", data_dir, caption_key="label")
    source[0]  # an open reader must not stop pickling
    clone = pickle.loads(pickle.dumps(source))
    assert repr(clone) == repr(source) and len(clone) == NUM and NAME in repr(clone)
    for i in range(NUM):
        assert clone[i]["caption"] == source[i]["caption"] and clone[i]["key"] == source[i]["key"]
        np.testing.assert_array_equal(clone[i]["image"], source[i]["image"])


def _one_line_error(error_type, *args) -> str:
    with pytest.raises(error_type) as info:
        TFDSSource(*args)
    message = str(info.value)
    chained = info.value.__cause__ or (None if info.value.__suppress_context__ else info.value.__context__)
    assert "\n" not in message and chained is None  # no TFDS traceback or dataset list hangs off it
    return message


def test_missing_dataset_is_one_clear_line(tmp_path):
    empty = str(tmp_path / "empty")
    message = _one_line_error(FileNotFoundError, "no_such_dataset", "validation", empty)
    assert "'no_such_dataset'" in message and "'validation'" in message and empty in message
    # A dataset TFDS knows (its builder code is registered) but nobody prepared here.
    message = _one_line_error(FileNotFoundError, "food101", "train", empty)
    assert "'food101'" in message and "'train'" in message and empty in message and "not prepared" in message


def test_tfrecord_only_dataset_is_one_clear_line(data_dir, tmp_path):
    # As if prepared with TFDS's default format: the same files, with dataset_info saying tfrecord.
    shutil.copytree(f"{data_dir}/{NAME}", tmp_path / NAME)
    info_path = tmp_path / NAME / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps(info | {"fileFormat": "tfrecord"}))
    message = _one_line_error(FileNotFoundError, NAME, "train", str(tmp_path))
    assert f"'{NAME}'" in message and "tfrecord" in message and "file_format='array_record'" in message


def test_unknown_split_and_feature(data_dir):
    message = _one_line_error(ValueError, NAME, "test", data_dir)
    assert f"'{NAME}'" in message and "'test'" in message
    message = _one_line_error(ValueError, NAME, "train", data_dir, "image", "captions")
    assert "'captions'" in message and "'caption'" in message
