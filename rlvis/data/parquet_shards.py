"""Random access into img2dataset's `--output_format parquet` shards (image bytes in a `jpg` column, caption in `txt`).

Parquet is columnar and compressed per column chunk, so the smallest unit one can read is a row group: a record is
served by reading its row group (img2dataset writes small ones) and keeping the last few groups in an LRU cache.
Random access therefore reads about one row group per record; at CC12M scale prefer the webdataset output, whose
tars rlvis reads member by member (rlvis/data/tar_shards.py).
"""

import collections
import glob
import os
import threading

import numpy as np
import pyarrow
import pyarrow.parquet as pq

CACHED_GROUPS = 4


class ParquetSource:
    """Grain random-access source over parquet files: record i → dict(image bytes, caption, key)."""

    def __init__(self, path: str, image_column: str = "jpg", caption_column: str = "txt"):
        self.path, self.image_column, self.caption_column = path, image_column, caption_column
        files = sorted(glob.glob(os.path.join(path, "*.parquet"))) if os.path.isdir(path) else sorted(glob.glob(path))
        if not files:
            raise FileNotFoundError(f"no .parquet files at {path}")
        self.files, locations = [], []
        for file in files:
            try:
                metadata = pq.ParquetFile(file).metadata
            except (OSError, pyarrow.ArrowException) as error:
                raise FileNotFoundError(f"unreadable parquet file {file}: {error}") from None
            names = metadata.schema.names
            if image_column not in names:
                continue  # img2dataset's webdataset output puts a metadata-only parquet beside each tar
            self.files.append(file)
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                locations.append(
                    np.stack([np.full(rows, len(self.files) - 1), np.full(rows, group), np.arange(rows)], axis=1)
                )
        if not self.files:
            raise FileNotFoundError(
                f"no parquet file at {path} has an image column {image_column!r} "
                "(webdataset metadata? use data.format='webdataset')"
            )
        self._locations = np.concatenate(locations).astype(np.int64)
        self._init_cache()

    def _init_cache(self) -> None:
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._locations)

    def __repr__(self) -> str:
        return f"ParquetSource(path={self.path!r}, files={len(self.files)}, rows={len(self)})"

    def _row_group(self, file: int, group: int) -> dict[str, list]:
        with self._lock:
            if (file, group) in self._cache:
                self._cache.move_to_end((file, group))
                return self._cache[(file, group)]
        parquet = pq.ParquetFile(self.files[file])
        columns = [c for c in (self.image_column, self.caption_column, "key") if c in parquet.schema_arrow.names]
        table = parquet.read_row_group(group, columns=columns).to_pydict()
        with self._lock:
            self._cache[(file, group)] = table
            while len(self._cache) > CACHED_GROUPS:
                self._cache.popitem(last=False)
        return table

    def __getitem__(self, index: int) -> dict:
        file, group, row = (int(v) for v in self._locations[index])
        table = self._row_group(file, group)
        caption = table[self.caption_column][row] if self.caption_column in table else None
        key = table["key"][row] if "key" in table else f"{os.path.basename(self.files[file])}:{group}:{row}"
        return dict(image=table[self.image_column][row] or b"", caption=caption, key=str(key))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_cache"], state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_cache()
