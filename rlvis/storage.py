"""Where runs live: a local folder or a bucket URL (`gs://bucket/runs/x`, `s3://bucket/runs/x`), one API for both.

Every file rlvis writes beside its checkpoints (metrics, results, evaluation JSON, plots, exports) goes through
`etils.epath`, the path library Orbax and Grain already use: local paths are plain files, `gs://` goes through
gcsfs and `s3://` through s3fs (Orbax's arrays go through tensorstore, which reads bucket URLs itself). Two things
differ on a bucket and are handled here: an object is written whole in one request (so a write is atomic there,
and locally a temporary file plus a rename makes it so), and objects cannot be appended to (`AppendLog` rewrites).

Pointing at a GCS emulator instead of Google (tests, offline development) is a matter of environment variables,
set before the first bucket access; `emulator_environment` lists them.
"""

import functools
import io
import json
import os
import uuid

from etils import epath

REMOTE_SCHEMES = ("gs://", "s3://")


def is_remote(location: str | os.PathLike) -> bool:
    return str(location).startswith(REMOTE_SCHEMES)


@functools.cache
def bucket_settings() -> None:
    """Bucket access through gcsfs/s3fs, with no cached listings. epath would use TensorFlow's gfile where
    TensorFlow is installed (common on TPU VMs), which ignores these settings and reads s3:// only with
    tensorflow-io. fsspec's file systems remember a folder's contents, so a process that polls for new
    checkpoints (`rlvis.evaluate --watch`, a resumed run, the tests) would never see them. Set before the first
    bucket access creates the file system (lazily: importing rlvis must not read fsspec's environment)."""
    os.environ.setdefault("EPATH_USE_TF", "false")
    import fsspec.config

    for protocol in ("gs", "gcs", "s3"):
        fsspec.config.conf.setdefault(protocol, {}).setdefault("use_listings_cache", False)


def path(location: str | os.PathLike) -> epath.Path:
    """A path object for a local path (made absolute) or a bucket URL."""
    if is_remote(location):
        bucket_settings()
        return epath.Path(location)
    return epath.Path(os.path.abspath(location))


def absolute(location: str | os.PathLike) -> str:
    """A local path made absolute; a URL as it is."""
    if is_remote(location):
        bucket_settings()
        return str(location)
    return os.path.abspath(location)


def join(location: str | os.PathLike, *parts: str) -> str:
    """`os.path.join` that keeps a bucket URL a URL."""
    return str(epath.Path(location).joinpath(*parts)) if is_remote(location) else os.path.join(location, *parts)


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write a whole file so that a reader sees the old contents or the new, never a part: one object upload on
    a bucket; a temporary file renamed over the old one locally. Parent folders are created."""
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(location):
        target.write_bytes(data)
        return
    temporary = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk leaves no temporary behind
        raise


def write_text(location: str | os.PathLike, text: str) -> None:
    write_bytes(location, text.encode())


def write_json(location: str | os.PathLike, value, indent: int | None = 2) -> None:
    write_text(location, json.dumps(value, indent=indent))


def read_json(location: str | os.PathLike):
    return json.loads(path(location).read_text())


def save_figure(figure, location: str | os.PathLike, **savefig_kwargs) -> str:
    """A matplotlib figure as a PNG at a local path or URL (matplotlib itself writes only local files)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_kwargs)
    write_bytes(location, buffer.getvalue())
    return str(location)


class AppendLog:
    """A text file that grows by lines (metrics.jsonl). Locally lines are appended; a bucket object cannot be
    appended to, so there the whole file is rewritten from the lines this writer holds (read once at the start)."""

    def __init__(self, location: str | os.PathLike):
        self.location = str(location)
        self._lines: list[str] | None = None  # a bucket log's contents, loaded on first use

    def read_lines(self) -> list[str]:
        target = path(self.location)
        return target.read_text().splitlines(keepends=True) if target.exists() else []

    def replace(self, lines: list[str]) -> None:
        """Rewrite the file with `lines` (each ending in a newline)."""
        if is_remote(self.location):
            self._lines = list(lines)
        write_text(self.location, "".join(lines))

    def append(self, line: str) -> None:
        if not is_remote(self.location):
            target = path(self.location)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "a") as f:
                f.write(line)
            return
        if self._lines is None:
            self._lines = self.read_lines()
        self._lines.append(line)
        write_text(self.location, "".join(self._lines))


def emulator_environment(url: str | None) -> dict[str, str]:
    """Environment variables that send every gs:// access of this process to a GCS emulator at `url`
    (e.g. "http://127.0.0.1:4443") with no credentials: gcsfs (through epath) and tensorstore (through Orbax).
    The credential ones are read when gcsfs/fsspec are imported, so set them before that (`url=None` gives those
    alone); the endpoints are read at each access and may follow once the emulator is up."""
    credentials = {
        "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: no credentials (else it probes the GCE metadata server)
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # gcsfs: no gRPC bucket-type lookup (an emulator has none)
        "NO_GCE_CHECK": "true",  # google-auth: do not look for a GCE metadata server
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # tensorstore: a fixed bearer token, no credential search
    }
    if url is None:
        return credentials
    return {
        **credentials,
        "STORAGE_EMULATOR_HOST": url,  # gcsfs and google-cloud-storage: the API endpoint
        "TENSORSTORE_GCS_HTTP_URL": url,
    }  # tensorstore (Orbax's arrays): the API endpoint
