"""A tiny img2dataset-style webdataset folder, with every kind of bad record users meet, made by the tests.

Layout as img2dataset writes it: `00000.tar` holding `{key}.jpg`, `{key}.txt`, `{key}.json` (9-digit keys: shard
id then index), a metadata-only `00000.parquet` and `00000_stats.json` beside each tar.
"""

import io
import json
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CANVAS = 64


def encode(image: np.ndarray, fmt: str = "JPEG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    pil = Image.fromarray(image)
    pil = pil.convert(mode) if mode else pil
    pil.save(buffer, fmt)
    return buffer.getvalue()


def picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour gradients plus a block: real structure, and JPEG keeps it close."""
    y, x = np.mgrid[:height, :width] / max(height, width)
    image = np.stack([y, x, 1 - y], axis=-1) * rng.uniform(100, 255, size=3)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    image[top : top + height // 3, left : left + width // 3] = rng.uniform(0, 255, size=3)
    return image.astype(np.uint8)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# (kind, expected skip reason when the stream needs captions, when it does not)
BAD_KINDS = {
    "zero_byte": ("empty", "empty"),
    "random_bytes": ("corrupt", "corrupt"),
    "truncated_jpeg": ("corrupt", "corrupt"),
    "too_small": ("too_small", "too_small"),
    "no_caption": ("no_caption", None),
    "empty_caption": ("no_caption", None),
}
GOOD_ODD_KINDS = ("grayscale", "cmyk", "png_alpha", "huge", "progressive")


def make_webdataset(folder: str, good_per_shard: int = 6, truncate_last_shard: bool = True) -> dict:
    """Two shards. Shard 0: good images, one of every odd-but-valid kind, one of every bad kind. Shard 1: good images,
    the tar cut in the middle of its last image when `truncate_last_shard`. Returns what a reader must find."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    expected = {"captions": {}, "images": {}, "bad": {}}
    for shard in range(2):
        samples = []
        for i in range(good_per_shard):
            samples.append(
                (
                    "good",
                    encode(picture(rng, int(rng.integers(40, 120)), int(rng.integers(40, 120)))),
                    f"a picture number {shard}-{i}",
                )
            )
        if shard == 0:
            base = picture(rng, 80, 100)
            samples += [
                ("grayscale", encode(base[..., 0]), "gray"),
                ("cmyk", encode(base, mode="CMYK"), "cmyk"),
                ("png_alpha", encode(np.dstack([base, np.full((80, 100), 128, np.uint8)]), "PNG"), "alpha"),
                ("huge", encode(picture(rng, 2000, 3000)), "huge"),
                ("progressive", _progressive(base), "progressive"),
            ]
            good = encode(base)
            samples += [
                ("zero_byte", b"", "zero"),
                ("random_bytes", rng.bytes(500), "noise"),
                ("truncated_jpeg", good[: len(good) // 2], "cut"),
                ("too_small", encode(base[:8, :8]), "tiny"),
                ("no_caption", good, None),
                ("empty_caption", good, "  "),
            ]
        tar_path = os.path.join(folder, f"{shard:05d}.tar")
        rows = []
        with tarfile.open(tar_path, "w") as tar:
            for index, (kind, image, caption) in enumerate(samples):
                key = f"{shard:05d}{index:04d}"
                _add(tar, f"{key}.jpg", image)
                if caption is not None:
                    _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", json.dumps({"key": key, "caption": caption, "status": "success"}).encode())
                expected["images"][key], expected["captions"][key] = image, caption
                if kind in BAD_KINDS:
                    expected["bad"][key] = kind
                rows.append({"key": key, "caption": caption or "", "status": "success"})
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, f"{shard:05d}.parquet"))
        with open(os.path.join(folder, f"{shard:05d}_stats.json"), "w") as f:
            json.dump({"successes": len(samples), "failures": 0}, f)
        if shard == 1 and truncate_last_shard:
            last_key = f"{shard:05d}{len(samples) - 1:04d}"
            with tarfile.open(tar_path) as tar:
                member = tar.getmember(f"{last_key}.jpg")
            with open(tar_path, "r+b") as f:
                f.truncate(member.offset_data + member.size // 2)
            for key in (last_key,):
                del expected["images"][key], expected["captions"][key]
    return expected


def _progressive(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", progressive=True)
    return buffer.getvalue()


def make_parquet(folder: str, rows: int = 7, row_group_size: int = 3) -> list[dict]:
    """img2dataset `--output_format parquet`: `key`, `jpg` (bytes), `txt` columns; small row groups."""
    rng = np.random.default_rng(1)
    os.makedirs(folder, exist_ok=True)
    records = [{"key": f"0000{i:05d}", "jpg": encode(picture(rng, 48, 64)), "txt": f"caption {i}"} for i in range(rows)]
    records[2]["jpg"] = b""
    pq.write_table(pa.Table.from_pylist(records), os.path.join(folder, "00000.parquet"), row_group_size=row_group_size)
    return records
