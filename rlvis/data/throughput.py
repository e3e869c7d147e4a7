"""Measure the host input pipeline alone: images/s of a stream for each threads × worker-processes setting.

    python -m rlvis.data.throughput --config=configs/cc12m.py --config.data.path=/data/cc12m \
        [--threads=1,2,4,8] [--processes=0,2,4] [--batches=30]

Decode dominates the host's work, and whether threads or worker processes win depends on the machine (cores,
GIL contention from the Python parts, memory bandwidth): measure on the machine that will train, then set
`config.data.read_threads` and `config.data.worker_processes`. Prints one JSON line per setting.
"""

import json
import time

from absl import flags

from rlvis import cli
from rlvis.data import pipeline

def define_flags(flag_values: flags.FlagValues) -> None:
    cli.define_config("Config file, e.g. configs/cc12m.py.", flag_values, lock_config=False)
    cli.define_numbers("threads", (1, 2, 4), "Grain read threads to try.", flag_values, kind=int)
    cli.define_numbers("processes", (0, 2), "Grain worker processes to try (0 = threads only).", flag_values,
                       kind=int)
    flags.DEFINE_integer("batches", 30, "Batches timed per setting, after 3 warm-up batches.",
                         flag_values=flag_values)
    flags.DEFINE_enum("stream", "annotation", ["annotation", "bootstrap"], "Which stream to read.",
                      flag_values=flag_values)


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
    return dict(threads=threads, processes=processes, images_per_s=round(images / seconds, 1),
                batches=batches, batch=len(batch["image"]), skipped=skipped)


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    for processes in args.processes:
        for threads in args.threads:
            print(json.dumps(measure(args.config, threads, processes, args.batches, args.stream)), flush=True)


if __name__ == "__main__":
    main()
