"""COCOSource on a tiny COCO-format tree: bytes, captions, normalised boxes, missing files, pickling, errors."""

import io
import json
import pickle

import grain
import numpy as np
import pytest
from PIL import Image

from rlvis.data.coco import COCOSource


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4), (value, 0, 255 - value)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _assert_records_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert a[name].dtype == b[name].dtype
            np.testing.assert_array_equal(a[name], b[name])
        else:
            assert a[name] == b[name]


@pytest.fixture
def coco(tmp_path):
    """Four listed images (JSON order ≠ name order): two real JPEGs, a zero-byte file, and one missing on disk."""
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    written = {"000000000002.jpg": _jpeg(10), "000000000001.jpg": _jpeg(200), "000000000003.jpg": b""}
    for name, data in written.items():
        (tmp_path / "val2017" / name).write_bytes(data)
    images = [
        dict(id=2, file_name="000000000002.jpg", width=200, height=100),
        dict(id=1, file_name="000000000001.jpg", width=8, height=4),
        dict(id=3, file_name="000000000003.jpg", width=10, height=10),
        dict(id=4, file_name="000000000004.jpg", width=10, height=10),
    ]  # listed, not on disk
    captions = [
        dict(id=30, image_id=2, caption="A second caption.\n"),
        dict(id=10, image_id=2, caption=" A first caption. "),
        dict(id=20, image_id=1, caption="The only caption."),
        dict(id=40, image_id=4, caption="Missing image."),
        dict(id=50, image_id=99, caption="Not a listed image."),
    ]
    (tmp_path / "annotations/captions_val2017.json").write_text(json.dumps(dict(images=images, annotations=captions)))
    instances = [
        dict(id=7, image_id=2, category_id=18, iscrowd=0, bbox=[50, 10, 100, 40]),  # → (.1, .25, .4, .5)
        dict(id=5, image_id=2, category_id=1, iscrowd=0, bbox=[180, 90, 40, 20]),  # spills over: clipped
        dict(id=6, image_id=2, category_id=1, iscrowd=1, bbox=[0, 0, 200, 100]),  # crowd: kept apart
        dict(id=8, image_id=2, category_id=3, iscrowd=0, bbox=[5, 5, 0, 10]),  # no area: left out
        dict(id=9, image_id=3, category_id=44, iscrowd=0, bbox=[0, 0, 10, 5]),  # → (0, 0, .5, 1)
    ]
    categories = [
        dict(id=1, name="person"),
        dict(id=3, name="car"),
        dict(id=18, name="dog"),
        dict(id=44, name="bottle"),
    ]
    (tmp_path / "annotations/instances_val2017.json").write_text(
        json.dumps(dict(images=images, annotations=instances, categories=categories))
    )
    return tmp_path, written


def test_records_bytes_captions_and_boxes(coco):
    root, written = coco
    source = COCOSource(root, split="val2017")
    assert len(source) == 4
    assert [source[i]["key"] for i in range(4)] == [f"val2017/00000000000{n}.jpg" for n in (1, 2, 3, 4)]

    first, second, empty, missing = (source[i] for i in range(4))
    for record in (first, second, empty, missing):
        assert set(record) == {
            "image",
            "caption",
            "captions",
            "key",
            "boxes",
            "box_labels",
            "crowd_boxes",
            "crowd_labels",
        }
        assert record["boxes"].dtype == np.float32 and record["boxes"].shape[1:] == (4,)
        assert record["box_labels"].dtype == np.int32
    assert first["image"] == written["000000000001.jpg"]  # exact bytes, not decoded
    assert second["image"] == written["000000000002.jpg"]

    # All captions, in annotation-id order, whitespace stripped; `caption` is the first.
    assert second["captions"] == ["A first caption.", "A second caption."]
    assert second["caption"] == "A first caption."
    assert first["captions"] == ["The only caption."] and first["caption"] == "The only caption."
    assert empty["captions"] == [] and empty["caption"] is None

    # Hand-computed (y0, x0, h, w) fractions of (height 100, width 200), in annotation-id order.
    np.testing.assert_allclose(
        second["boxes"],
        [
            [0.9, 0.9, 0.1, 0.1],  # id 5: [180, 90, 40, 20] clipped
            [0.1, 0.25, 0.4, 0.5],
        ],
        rtol=1e-6,
    )  # id 7: [50, 10, 100, 40]
    np.testing.assert_array_equal(second["box_labels"], [1, 18])
    np.testing.assert_allclose(empty["boxes"], [[0.0, 0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(empty["box_labels"], [44])
    assert first["boxes"].shape == (0, 4) and first["box_labels"].shape == (0,)
    # The crowd region, apart from the boxes: COCO's AP ignores detections on it.
    np.testing.assert_allclose(second["crowd_boxes"], [[0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(second["crowd_labels"], [1])
    assert first["crowd_boxes"].shape == (0, 4) and first["crowd_labels"].dtype == np.int32
    assert source.categories[18] == "dog"


def test_zero_byte_and_missing_images_return_empty_bytes(coco):
    root, _ = coco
    source = COCOSource(root, split="val2017")
    assert source[2]["image"] == b""  # zero-byte file on disk
    assert source[3]["image"] == b""  # listed in the JSON, missing on disk: decode skips it as "empty"
    assert source[3]["caption"] == "Missing image."
    assert source[-1]["key"] == source[3]["key"]
    with pytest.raises(IndexError):
        source[4]


def test_records_do_not_alias_the_source(coco):
    root, _ = coco
    source = COCOSource(root, split="val2017")
    record = source[1]
    record["boxes"][:] = 0
    record["captions"].append("mutated")
    assert source[1]["boxes"][0, 0] == np.float32(0.9) and len(source[1]["captions"]) == 2


def test_without_instances_file_boxes_are_empty(coco):
    root, _ = coco
    (root / "annotations/instances_val2017.json").unlink()
    source = COCOSource(root, split="val2017")
    for i in range(len(source)):
        assert source[i]["boxes"].shape == (0, 4) and source[i]["boxes"].dtype == np.float32
        assert source[i]["box_labels"].shape == (0,) and source[i]["box_labels"].dtype == np.int32
    assert source[1]["captions"] == ["A first caption.", "A second caption."]
    assert "boxes=none" in repr(source)


def test_pickle_round_trip_and_grain_source(coco):
    root, _ = coco
    source = COCOSource(root, split="val2017")
    restored = pickle.loads(pickle.dumps(source))
    dataset = grain.MapDataset.source(source)
    for i in range(len(source)):
        _assert_records_equal(restored[i], source[i])
        _assert_records_equal(dataset[i], source[i])


def test_missing_paths_raise_one_line(coco, tmp_path):
    root, _ = coco
    missing_root = tmp_path / "no_coco_here"
    with pytest.raises(FileNotFoundError) as error:
        COCOSource(missing_root)
    assert str(missing_root / "train2017") in str(error.value) and "\n" not in str(error.value)

    (root / "train2017").mkdir()  # images folder present, captions file absent
    with pytest.raises(FileNotFoundError) as error:
        COCOSource(root, split="train2017")
    message = str(error.value)
    assert str(root / "annotations/captions_train2017.json") in message and "\n" not in message

    with pytest.raises(FileNotFoundError, match="empty"):
        COCOSource("")
