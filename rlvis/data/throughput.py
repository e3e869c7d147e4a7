"""Measure the host input pipeline alone: images/s of a stream for each path × threads × worker-processes setting.

    python -m rlvis.data.throughput --config=configs/cc12m.py --config.data.path=/data/cc12m \
        [--paths=/data/cc12m,gs://bucket/cc12m] [--loopback_bucket] [--threads=1,2,4,8] [--processes=0,2,4]

Decode dominates the host's work, and whether threads or worker processes win depends on the machine (cores,
GIL contention from the Python parts, memory bandwidth): measure on the machine that will train, then set
`config.data.read_threads` and `config.data.worker_processes`. `--paths` measures the same settings on several
copies of the data (local disk against a bucket); `--loopback_bucket` adds a copy of the first path's tars in a
GCS server on loopback (rlvis/gcs_emulator.py), which isolates what reading through the bucket API costs. Prints
one JSON line per setting, with `vs_first`: its images/s over the first path's at the same setting.
"""

import atexit
import json
import os
import time

from absl import flags

from rlvis import cli, storage
from rlvis.data import pipeline, tar_shards

MAX_LOOPBACK_BYTES = 4 << 30


def define_flags(flag_values: flags.FlagValues) -> None:
    cli.define_config("Config file, e.g. configs/cc12m.py.", flag_values, lock_config=False)
    cli.define_numbers("threads", (1, 2, 4), "Grain read threads to try.", flag_values, kind=int)
    cli.define_numbers("processes", (0, 2), "Grain worker processes to try (0 = threads only).", flag_values, kind=int)
    flags.DEFINE_list(
        "paths",
        [],
        "Data paths to measure, each with every setting (default: config.data.path).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "loopback_bucket",
        False,
        "Also measure the first path's tars copied into a GCS server on loopback (needs the test extra).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("batches", 30, "Batches timed per setting, after 3 warm-up batches.", flag_values=flag_values)
    flags.DEFINE_enum(
        "stream", "annotation", ["annotation", "bootstrap"], "Which stream to read.", flag_values=flag_values
    )


def measure(config, threads: int, processes: int, batches: int, stream: str) -> dict:
    config.data.read_threads, config.data.worker_processes = threads, processes
    iterator = iter(pipeline.training_streams(config, 0, 1)[stream])
    for _ in range(3):
        next(iterator)
    start, images, skipped = time.perf_counter(), 0, 0
    for _ in range(batches):
        batch = next(iterator)
        images += len(batch["image"])
        skipped += int(batch["skipped"].sum()) if "skipped" in batch else 0
    seconds = time.perf_counter() - start
    iterator.close()  # its prefetch threads stop reading now, not at exit
    return dict(
        threads=threads,
        processes=processes,
        images_per_s=round(images / seconds, 1),
        batches=batches,
        batch=len(batch["image"]),
        skipped=skipped,
    )


def copy_to_loopback_bucket(path: str):
    """Start a loopback GCS server (stopped at exit, once the read threads are done), point this process's gs:// at
    it and upload the tars of `path` → the bucket URL to read them from."""
    from rlvis import gcs_emulator

    server = gcs_emulator.Emulator()
    atexit.register(server.stop)
    os.environ.update(storage.emulator_environment(server.url))
    bucket = server.create_bucket("rlvis-throughput")
    shards = tar_shards.find_shards(path)
    if sum(os.path.getsize(shard) for shard in shards) > MAX_LOOPBACK_BYTES:
        cli.fail(
            f"--loopback_bucket keeps a copy of every tar of {path} in memory: point it at a folder of a few "
            f"shards (at most {MAX_LOOPBACK_BYTES >> 30} GiB)"
        )
    for shard in shards:
        with open(shard, "rb") as f:
            storage.path(f"{bucket}/data/{os.path.basename(shard)}").write_bytes(f.read())
    return f"{bucket}/data"


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    config, paths = args.config, list(args.paths) or [args.config.data.path]
    if args.loopback_bucket:
        if config.data.format != "webdataset" or any(storage.is_remote(path) for path in paths):
            cli.fail(
                "--loopback_bucket copies local tar shards and points this process's gs:// at its server: use "
                "a webdataset config and local --paths"
            )
        os.environ.update(storage.emulator_environment(None))  # before gcsfs is imported
        paths.append(copy_to_loopback_bucket(paths[0]))
    first = {}
    for processes in args.processes:
        for threads in args.threads:
            for path in paths:  # side by side, so that a drift in the machine's speed hits both alike
                config.data.path = path
                result = dict(path=path, **measure(config, threads, processes, args.batches, args.stream))
                reference = first.setdefault((threads, processes), result["images_per_s"])
                print(json.dumps(dict(result, vs_first=round(result["images_per_s"] / reference, 3))), flush=True)


if __name__ == "__main__":
    main()
