"""Command-line entry point.

    python -m rlvis.main --config=configs/demo.py --workdir=runs/demo [--config.total_steps=200]

Re-running the same command on a workdir that holds a checkpoint resumes from it.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rlvis import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/demo.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_STOP_AT_STEP = flags.DEFINE_integer(
    "stop_at_step", None, "Checkpoint and exit once this step is reached (schedules unchanged); for job time limits.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a workdir whose checkpoint was written under a config that differs in "
    "fields that change the model or data (refused by default; the fields are printed).")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, but a bad --config override is one line naming it, not a traceback (exit code 2)."""
    try:
        remaining = flags.FLAGS(argv)
        _CONFIG.value.keys()  # ml_collections reports a bad config file lazily: fail here, not mid-run
        return remaining
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        if isinstance(e, (AttributeError, KeyError)):  # ml_collections: a field the locked config lacks
            field = str(e).strip("\"'")
            culprit = next((a for a in argv if a.startswith("--config.") and field in a.split("=")[0]), field)
            message = f"unknown config field {field!r} in {culprit}"
        elif isinstance(e, OSError):  # the config file itself: its last line names the cause
            message = f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}"
        else:
            message = str(e).splitlines()[0]
        print(f"rlvis: config error: {message}", file=sys.stderr)
        sys.exit(2)


def initialize_distributed() -> None:
    """Join JAX's multi-host runtime when launched as one of several processes; a single process skips it.

    Explicit (launch/slurm_gpu.sbatch's fallback, or any launcher): RLVIS_COORDINATOR_ADDRESS=host:port,
    RLVIS_NUM_PROCESSES, RLVIS_PROCESS_ID. Otherwise an `srun` job step with several tasks (not merely an allocation
    of several: a plain `python` in `salloc -n 8` is one process), or a TPU pod slice with several workers, is
    detected by `jax.distributed.initialize()` itself.
    """
    import jax
    if os.environ.get("RLVIS_COORDINATOR_ADDRESS"):
        if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over TCP
        jax.distributed.initialize(coordinator_address=os.environ["RLVIS_COORDINATOR_ADDRESS"],
                                   num_processes=int(os.environ["RLVIS_NUM_PROCESSES"]),
                                   process_id=int(os.environ["RLVIS_PROCESS_ID"]))
    elif int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO; --verbosity=0 shows it
    initialize_distributed()
    from rlvis import train  # imported here so that a bad flag fails before JAX starts

    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _STOP_AT_STEP.value, _ALLOW_CONFIG_CHANGE.value)
    except config_lib.ConfigError as e:
        print(f"rlvis: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"rlvis: training stopped: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=parse_flags)
