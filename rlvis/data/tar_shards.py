"""Random access into webdataset tar shards (img2dataset's output, or the pre-crawled `cc12m-train-NNNN.tar`).

Tars have no index, so the usual loaders stream them: no global shuffle and no exact resume. Re-encoding
hundreds of GB to get random access is what users refuse to do. Instead we index each tar once — for every
sample key, the byte offset and size of its image member and its caption member, read from the tar headers with
the standard `tarfile` module — and read members with positioned reads (`os.pread`, thread-safe, no seeking
state). The source is then an ordinary Grain random-access source: a global index shuffle, and resume from one
number (rlvis/data/pipeline.py).

Shards may also sit in a bucket (`gs://bucket/cc12m/{00000..02175}.tar`, or `s3://`): they are listed in
parallel, indexed by streaming each tar's headers once, and read by one ranged request per sample (image and
caption are adjacent members). A transient error (timeout, 5xx, a dropped connection) is retried with backoff and
counted (`retries`); a missing bucket or object, or a permission error, is one line at start-up naming the URL.

Index files sit next to each local tar (`00000.tar.rlvis-index.npz`), in `index_dir` when the data folder is
read-only, and for a bucket's tars by default in a local cache (~/.cache/rlvis/tar-index, keyed by the URL).
Each is written atomically after its shard is read, so an interrupted build resumes where it stopped,
and it records the tar's size so a changed tar is re-indexed. A truncated tar keeps the samples whose members are
complete; the truncated shards are named when training starts and by the command below.

    python -m rlvis.data.tar_shards --data=/data/cc12m [--index_dir=/cache/cc12m-index] [--threads=16]
"""

import concurrent.futures
import glob
import hashlib
import os
import re
import tarfile
import threading
import time
import uuid
from collections.abc import Sequence

import numpy as np
import tqdm
from absl import flags

from rlvis import cli, storage

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS = ("txt",)
INDEX_SUFFIX = ".rlvis-index.npz"
INDEX_VERSION = 1


def expand_braces(pattern: str) -> list[str]:
    """`cc12m-train-{0000..2175}.tar` → the 2,176 names, zero padding kept (webdataset's shard notation)."""
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") else 0
    return [
        name
        for number in range(int(first), int(last) + 1)
        for name in expand_braces(pattern[: match.start()] + str(number).zfill(width) + pattern[match.end() :])
    ]


def _file_system(url: str):
    import fsspec

    storage.bucket_settings()  # before the file system is created
    return fsspec.core.url_to_fs(url)[0]


def _remote_shards(path: str, threads: int, progress: bool) -> list[str]:
    """find_shards for a bucket URL: the objects are checked in parallel, and every problem names its URL."""
    fs, scheme = _file_system(path), path.split("://")[0]
    missing = []
    try:
        if any(c in path for c in "*?["):
            shards = sorted(f"{scheme}://{name}" for name in fs.glob(path))
        elif not path.endswith(".tar") and "{" not in path:
            shards = sorted(f"{scheme}://{name}" for name in fs.ls(path, detail=False) if name.endswith(".tar"))
        else:
            shards = expand_braces(path)
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                found = tqdm.tqdm(
                    pool.map(fs.exists, shards),
                    total=len(shards),
                    unit="shard",
                    leave=False,
                    desc=f"rlvis: listing {path}",
                    disable=not progress or len(shards) < 100,
                )
                missing = [shard for shard, ok in zip(shards, found) if not ok]
    except PermissionError as error:
        raise FileNotFoundError(f"no permission to read {path}: {error}") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"not found: {path} (no such bucket or folder)") from None
    if missing:
        raise FileNotFoundError(
            f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if not shards:
        raise FileNotFoundError(f"no .tar shards at {path}")
    return shards


def find_shards(path: str, threads: int = 8, progress: bool = False) -> list[str]:
    """A folder (every `*.tar` in it, sorted), a brace pattern, or a glob → tar paths (local or in a bucket);
    one-line errors otherwise."""
    if storage.is_remote(path):
        return _remote_shards(path, threads, progress)
    if os.path.isdir(path):
        shards = sorted(glob.glob(os.path.join(path, "*.tar")))
        if not shards:
            raise FileNotFoundError(f"no .tar shards in {path}")
        return shards
    shards = sorted(glob.glob(path)) if any(c in path for c in "*?[") else expand_braces(path)
    missing = [shard for shard in shards if not os.path.isfile(shard)]
    if not shards or missing:
        raise FileNotFoundError(
            f"shard not found: {missing[0] if missing else path}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return shards


def index_path(shard: str, index_dir: str | None) -> str:
    if index_dir is None and storage.is_remote(shard):
        index_dir = os.path.join(os.path.expanduser("~"), ".cache", "rlvis", "tar-index")
        return os.path.join(
            index_dir, hashlib.sha1(shard.encode()).hexdigest()[:16] + "-" + os.path.basename(shard) + INDEX_SUFFIX
        )
    if index_dir is None:
        return shard + INDEX_SUFFIX
    return os.path.join(index_dir, os.path.basename(shard) + INDEX_SUFFIX)


def _split_name(name: str) -> tuple[str, str]:
    """webdataset convention: the key is the path up to the first dot of the basename, the rest the extension."""
    directory, base = os.path.split(name)
    stem, _, extension = base.partition(".")
    return os.path.join(directory, stem), extension.lower()


def build_shard_index(shard: str) -> dict[str, np.ndarray]:
    """Read one tar's headers → per-sample image/caption offsets and sizes (-1 when a sample has no caption)."""
    samples: dict[str, list[int]] = {}  # key → [image offset, image size, caption offset, caption size]
    truncated = False
    tar_size = _size(shard)
    stream = (
        _file_system(shard).open(shard, "rb", block_size=8 << 20) if storage.is_remote(shard) else open(shard, "rb")
    )
    try:
        with stream, tarfile.open(fileobj=stream, mode="r:") as tar:
            for member in tar:
                if not member.isfile() or member.offset_data + member.size > tar_size:
                    truncated |= member.isfile()
                    continue
                key, extension = _split_name(member.name)
                entry = samples.setdefault(key, [-1, -1, -1, -1])
                if extension in IMAGE_EXTENSIONS:
                    entry[0:2] = [member.offset_data, member.size]
                elif extension in CAPTION_EXTENSIONS:
                    entry[2:4] = [member.offset_data, member.size]
    except (tarfile.ReadError, EOFError):  # a truncated or damaged tail: keep what was read before it
        truncated = True
    keys = [key for key, entry in samples.items() if entry[0] >= 0]  # samples without an image are not samples
    table = np.asarray([samples[key] for key in keys], np.int64).reshape(-1, 4)
    return dict(
        keys=np.asarray(keys, dtype=str),
        table=table,
        tar_size=np.int64(tar_size),
        truncated=np.bool_(truncated),
        version=np.int64(INDEX_VERSION),
    )


def _size(shard: str) -> int:
    return int(_file_system(shard).size(shard)) if storage.is_remote(shard) else os.path.getsize(shard)


def _load_valid_index(shard: str, index_dir: str | None) -> dict[str, np.ndarray] | None:
    path = index_path(shard, index_dir)
    if not os.path.exists(path):
        return None
    with np.load(path) as index:
        index = dict(index)
    if int(index["version"]) != INDEX_VERSION or int(index["tar_size"]) != _size(shard):
        return None  # written by another version, or the tar changed since: rebuild
    return index


def _write_index(shard: str, index_dir: str | None, index: dict[str, np.ndarray]) -> None:
    path = index_path(shard, index_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{uuid.uuid4().hex}.npz"  # unique across hosts sharing the data folder
    np.savez(temporary, **index)
    os.replace(temporary, path)  # atomic: a killed build leaves no half-written index


def build_indexes(
    shards: Sequence[str], index_dir: str | None = None, threads: int = 8, progress: bool = True
) -> list[dict[str, np.ndarray]]:
    """Index every shard that lacks a valid index (resumable), in parallel; return all indexes in shard order."""
    if index_dir is not None:
        os.makedirs(index_dir, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # a size request per bucket shard: in parallel
        indexes = list(
            tqdm.tqdm(
                pool.map(lambda shard: _load_valid_index(shard, index_dir), shards),
                total=len(shards),
                unit="shard",
                desc="rlvis: checking tar indexes",
                disable=not progress or len(shards) < 100,
                leave=False,
            )
        )
    todo = [i for i, index in enumerate(indexes) if index is None]

    def build(i: int) -> tuple[int, dict[str, np.ndarray]]:
        index = build_shard_index(shards[i])
        _write_index(shards[i], index_dir, index)
        return i, index

    if todo:
        with (
            concurrent.futures.ThreadPoolExecutor(threads) as pool,
            tqdm.tqdm(
                total=len(shards),
                initial=len(shards) - len(todo),
                unit="shard",
                disable=not progress,
                desc="rlvis: indexing tar shards",
            ) as bar,
        ):
            for i, index in pool.map(build, todo):
                indexes[i] = index
                bar.update(1)
    return indexes


class TarShardSource:
    """Grain random-access source over indexed tar shards: record i → dict(image bytes, caption, key).

    Picklable and thread-safe: each record opens its shard, reads with `os.pread` (no shared file position) and
    closes it, so thousands of shards never exhaust the open-file limit; the open costs microseconds next to the
    decode. A bucket's shard is read by one ranged request per record. A sample whose caption member is missing
    gets caption None, and a record that cannot be read gets empty image bytes; decoding decides what that means
    (an empty image is skipped and counted).
    """

    max_attempts, backoff_seconds = 5, 0.2  # reads of a bucket object

    def __init__(self, path: str, index_dir: str | None = None, threads: int = 8, progress: bool = True):
        self.path, self.index_dir = path, index_dir
        self.retries, self._retry_lock = 0, threading.Lock()
        self.shards = find_shards(path, threads, progress)
        indexes = build_indexes(self.shards, index_dir, threads, progress)
        self.truncated_shards = [shard for shard, index in zip(self.shards, indexes) if bool(index["truncated"])]
        self._shard_of = np.concatenate([np.full(len(index["keys"]), i, np.int32) for i, index in enumerate(indexes)])
        self._table = np.concatenate([index["table"] for index in indexes])
        self._keys = np.concatenate([index["keys"] for index in indexes])
        if not len(self._keys):
            raise FileNotFoundError(f"no images in the tar shards at {path}")

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TarShardSource(path={self.path!r}, shards={len(self.shards)}, samples={len(self)})"

    def __getitem__(self, index: int) -> dict:
        image_offset, image_size, caption_offset, caption_size = (int(v) for v in self._table[index])
        shard, key = self.shards[int(self._shard_of[index])], str(self._keys[index])
        if storage.is_remote(shard):
            return self._getitems([index])[0]

        def read(offset: int, size: int) -> bytes:
            data = os.pread(descriptor, size, offset)
            return data if len(data) == size else b""  # the tar shrank under us: an empty record, skipped later

        descriptor = os.open(shard, os.O_RDONLY)
        try:
            caption = (
                read(caption_offset, caption_size).decode("utf-8", errors="replace") if caption_offset >= 0 else None
            )
            return dict(image=read(image_offset, image_size), caption=caption, key=key)
        finally:
            os.close(descriptor)

    def _getitems(self, indices: Sequence[int]) -> list[dict]:
        """Records of a batch (Grain's batched read). From a bucket: one concurrent round of ranged reads, so a
        batch keeps as many requests in flight as it has records."""
        if not self.shards or not storage.is_remote(self.shards[0]):
            return [self[index] for index in indices]
        spans = [self._span(index) for index in indices]
        return [
            self._record(index, start, end, data)
            for index, (_, start, end), data in zip(indices, spans, self._read_ranges(spans))
        ]

    def _span(self, index: int) -> tuple[str, int, int]:
        """(shard, start, end): the bytes holding record `index`'s image and caption members, adjacent in a
        webdataset tar, so one ranged read gets both."""
        image_offset, image_size, caption_offset, caption_size = (int(v) for v in self._table[index])
        members = [(image_offset, image_size)] + ([(caption_offset, caption_size)] if caption_offset >= 0 else [])
        start, end = min(o for o, _ in members), max(o + n for o, n in members)
        return self.shards[int(self._shard_of[index])], start, end

    def _record(self, index: int, start: int, end: int, data: bytes) -> dict:
        """Record `index` cut out of the bytes read from [start, end) (its `_span`)."""
        image_offset, image_size, caption_offset, caption_size = (int(v) for v in self._table[index])
        key = str(self._keys[index])
        if len(data) != end - start:  # unreadable after retries, or the object shrank: skipped
            return dict(image=b"", caption=None, key=key)
        caption = (
            data[caption_offset - start : caption_offset - start + caption_size].decode("utf-8", errors="replace")
            if caption_offset >= 0
            else None
        )
        return dict(image=data[image_offset - start : image_offset - start + image_size], caption=caption, key=key)

    def _read_ranges(self, spans: list[tuple[str, int, int]]) -> list[bytes]:
        """Bytes [start, end) of bucket objects, read concurrently (fsspec's `cat_ranges`). Reads that fail
        transiently (timeouts, 5xx, dropped connections) are retried together with backoff and counted in
        `retries` (this process's reads; Grain worker processes count their own); one still failing after
        `max_attempts` gives b"", a record that decoding skips."""
        data, pending = [b""] * len(spans), list(range(len(spans)))
        fs = _file_system(spans[0][0])
        for attempt in range(self.max_attempts):
            try:
                results = fs.cat_ranges(*map(list, zip(*(spans[i] for i in pending))), on_error="return")
            except Exception as error:
                results = [error] * len(pending)
            failed = []
            for i, result in zip(pending, results):
                if isinstance(result, bytes):  # whole, or short because the object shrank: no retry mends that
                    data[i] = result if len(result) == spans[i][2] - spans[i][1] else b""
                elif isinstance(result, (FileNotFoundError, PermissionError)) or "Forbidden" in str(result):
                    raise (
                        PermissionError(f"{spans[i][0]}: {result}")
                        if not isinstance(result, FileNotFoundError)
                        else result
                    )
                elif isinstance(result, (TypeError, ValueError, AttributeError)):  # a bug, not the network
                    raise result
                else:
                    failed.append(i)
            if not failed:
                break
            with self._retry_lock:
                self.retries += len(failed)
            pending = failed
            if attempt + 1 < self.max_attempts:
                time.sleep(self.backoff_seconds * 2**attempt)
        return data

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_retry_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _retry_lock=threading.Lock())


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "data", None, "Folder of .tar shards, a brace pattern or a glob.", required=True, flag_values=flag_values
    )
    flags.DEFINE_string(
        "index_dir", None, "Where to write indexes (default: next to each tar).", flag_values=flag_values
    )
    flags.DEFINE_integer("threads", 8, "Shards indexed in parallel.", lower_bound=1, flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    try:
        source = TarShardSource(args.data, args.index_dir, args.threads)
    except FileNotFoundError as error:
        cli.fail(str(error))
    print(
        f"rlvis: {len(source):,} samples in {len(source.shards)} shards"
        + (
            f"; {len(source.truncated_shards)} truncated: {source.truncated_shards[:3]}"
            if source.truncated_shards
            else ""
        )
    )


if __name__ == "__main__":
    main()
