"""Command-line entry point.

    python -m rlvis.main --config=configs/demo.py --workdir=runs/demo [--config.total_steps=200]

Re-running the same command on a workdir that holds a checkpoint resumes from it.
"""

import os
import sys

from absl import flags

from rlvis import cli, config_lib


def define_flags(flag_values: flags.FlagValues) -> None:
    cli.define_config("Config file, e.g. configs/demo.py[:arg].", flag_values)
    flags.DEFINE_string(
        "workdir", None, "Where checkpoints, metrics and results go.", required=True, flag_values=flag_values
    )
    flags.DEFINE_integer(
        "stop_at_step",
        None,
        "Checkpoint and exit once this step is reached (schedules unchanged); for job time limits.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "allow_config_change",
        False,
        "Resume a workdir whose checkpoint was written under a config "
        "that differs in fields that change the model or data (refused by default; the fields are "
        "printed).",
        flag_values=flag_values,
    )
    cli.define_numbers(
        "profile",
        (0, 0),
        "START,COUNT: trace COUNT steps after the first START into WORKDIR/profile (TensorBoard's profile plugin, "
        "Perfetto; rlvis/profiling.py). 0,0: no trace.",
        flag_values,
        kind=int,
    )


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
        jax.distributed.initialize(
            coordinator_address=os.environ["RLVIS_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["RLVIS_NUM_PROCESSES"]),
            process_id=int(os.environ["RLVIS_PROCESS_ID"]),
        )
    elif int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(define_flags, argv, __doc__)
    initialize_distributed()
    from rlvis import train  # imported here so that a bad flag fails before JAX starts

    try:
        if len(args.profile) != 2:
            raise config_lib.ConfigError(f"--profile={','.join(map(str, args.profile))} must be START,COUNT")
        train.train_and_evaluate(
            args.config, args.workdir, args.stop_at_step, args.allow_config_change, profile=tuple(args.profile)
        )
    except config_lib.ConfigError as e:
        print(f"rlvis: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"rlvis: training stopped: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
