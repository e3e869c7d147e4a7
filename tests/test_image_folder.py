"""ImageFolderSource: exact bytes, sorted order, ImageFolder labels, per-folder stride, pickling, one-line errors."""

import io
import pickle

import grain
import numpy as np
import pytest
from PIL import Image

from rlvis.data.image_folder import ImageFolderSource


def _write_image(path, fmt: str = "JPEG", value: int = 0) -> bytes:
    """A tiny real image file; returns its bytes as written to disk."""
    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (value, 255 - value, 7)).save(buffer, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@pytest.fixture
def classed(tmp_path):
    """ImageNet-style tree: two classes, one nested folder, a PNG, an upper-case extension and two non-images."""
    written = {
        "dog/b.jpg": _write_image(tmp_path / "dog/b.jpg", value=1),
        "dog/a.JPEG": _write_image(tmp_path / "dog/a.JPEG", value=2),
        "cat/sub/c.png": _write_image(tmp_path / "cat/sub/c.png", "PNG", value=3),
        "cat/d.jpg": _write_image(tmp_path / "cat/d.jpg", value=4),
    }
    (tmp_path / "cat/notes.txt").write_text("not an image")
    (tmp_path / "dog/e.gif").write_bytes(b"GIF89a")  # not among the extensions
    return tmp_path, written


def test_bytes_order_labels_and_classes(classed):
    root, written = classed
    source = ImageFolderSource(root)
    assert len(source) == 4
    keys = [source[i]["key"] for i in range(len(source))]
    assert keys == ["cat/d.jpg", "cat/sub/c.png", "dog/a.JPEG", "dog/b.jpg"]
    assert source.classes == ["cat", "dog"]
    np.testing.assert_array_equal(source.labels, [0, 0, 1, 1])
    assert source.labels.dtype == np.int32
    for i in range(len(source)):
        record = source[i]
        assert set(record) == {"image", "caption", "key", "label"}
        assert record["image"] == written[record["key"]]  # exact bytes as on disk, not decoded
        assert record["caption"] is None
        assert record["label"] == (0 if record["key"].startswith("cat/") else 1)
        assert isinstance(record["label"], int)
    assert source[np.int64(1)]["key"] == "cat/sub/c.png"  # Grain may index with numpy integers
    assert "images=4" in repr(source) and "classes=2" in repr(source)


def test_plain_folder_has_no_labels(tmp_path):
    _write_image(tmp_path / "top.jpg")
    _write_image(tmp_path / "album/x.png", "PNG")
    source = ImageFolderSource(str(tmp_path))
    assert [source[i]["key"] for i in range(len(source))] == ["album/x.png", "top.jpg"]
    assert source.labels is None and source.classes is None
    assert all(source[i]["label"] == -1 for i in range(len(source)))


def test_extensions_are_case_insensitive_and_configurable(classed):
    root, _ = classed
    source = ImageFolderSource(root, extensions=(".PNG",))
    assert [source[i]["key"] for i in range(len(source))] == ["cat/sub/c.png"]


def test_stride_keeps_every_kth_frame_per_video_folder(tmp_path):
    """EpicKitchens layout: each video folder is thinned on its own, starting from its first frame."""
    for video, frames in (("P01_01", 7), ("P01_02", 3)):
        for frame in range(1, frames + 1):
            _write_image(tmp_path / f"P01/rgb_frames/{video}/frame_{frame:010d}.jpg", value=frame)
    source = ImageFolderSource(tmp_path, stride=3)
    keys = [source[i]["key"] for i in range(len(source))]
    assert keys == [f"P01/rgb_frames/P01_01/frame_{f:010d}.jpg" for f in (1, 4, 7)] + [
        f"P01/rgb_frames/P01_02/frame_{f:010d}.jpg" for f in (1,)
    ]
    assert len(ImageFolderSource(tmp_path)) == 10
    with pytest.raises(ValueError, match="stride"):
        ImageFolderSource(tmp_path, stride=0)


def test_zero_byte_and_corrupt_files_are_returned_not_raised(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    source = ImageFolderSource(tmp_path)
    records = {source[i]["key"]: source[i]["image"] for i in range(len(source))}
    assert records == {"empty.jpg": b"", "broken.png": b"\x89PNG truncated"}


def test_pickle_round_trip_and_grain_source(classed):
    root, _ = classed
    source = ImageFolderSource(root)
    restored = pickle.loads(pickle.dumps(source))
    dataset = grain.MapDataset.source(source)
    for i in range(len(source)):
        assert restored[i] == source[i]
        assert dataset[i] == source[i]


def test_missing_path_and_empty_folder_raise_one_line(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as error:
        ImageFolderSource(missing)
    assert str(missing) in str(error.value) and "\n" not in str(error.value)

    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text/readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError) as error:
        ImageFolderSource(tmp_path / "only_text")
    assert str(tmp_path / "only_text") in str(error.value) and "\n" not in str(error.value)

    with pytest.raises(FileNotFoundError, match="empty"):
        ImageFolderSource("")
