"""One Orbax checkpoint step = train state + JSON metadata, which holds the config and where each data stream
stands (`data_position`: one global element index per stream, the same on every process; rlvis/data/pipeline.py).

Saving the data position is what makes resume exact (big_vision and dinov2 restart their data from scratch), and
keeping it one number rather than per-process iterator states is what lets a run resume on another number of
processes. Saves
are asynchronous; Orbax writes into a temporary folder and renames it when complete, so a half-written step is
never listed by `latest_step` and never restored.

The metadata carries `FORMAT`, the version of the state's layout; a checkpoint of another version is refused in one
line rather than restored into a network it no longer fits.
"""

import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from rlvis import storage
from rlvis.errors import ConfigError

# The train state's layout: 2 = each method's heads handed to the network, its own config sections, the `ema`
# section. Checkpoints of version 1 (rlvis before that) are refused.
FORMAT = 2


class FormatError(ConfigError):
    """A checkpoint written in another format version: the message says which."""


def check_format(meta: dict, where: str) -> None:
    version = meta.get("format", 1)
    if version != FORMAT:
        raise FormatError(
            f"{where}: checkpoint format {version}, this rlvis reads format {FORMAT}; train a new run "
            "(or evaluate it with the rlvis release that wrote it)"
        )


def check_writable(workdir: str) -> None:
    """Create the workdir and write a probe file in it: an unwritable disk is a one-line error before any compute."""
    if str(workdir).startswith("s3://"):  # tensorstore has an S3 driver, but Orbax builds a malformed path for it
        raise ConfigError(
            f"--workdir={workdir}: Orbax {ocp.__version__} cannot write checkpoints to s3:// (data can "
            "be read from S3); use a gs:// or local workdir"
        )
    probe = storage.path(workdir) / f".rlvis-write-test-{os.getpid()}"
    try:
        (storage.path(workdir) / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except Exception as error:
        if not isinstance(error, OSError) and not storage.is_remote(workdir):
            raise
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
        raise ConfigError(f"--workdir={workdir} is not writable: {reason}") from None


class Checkpointer:
    def __init__(self, directory: str, keep: int):
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(
            storage.absolute(directory),
            item_handlers=handlers,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta, format=FORMAT))
            ),
            force=True,
        )

    def meta(self, step: int) -> dict:
        """The JSON metadata alone: cheap, and readable whatever the state's shapes. Refuses another format."""
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        check_format(meta, f"step {step} in {self.manager.directory}")
        return meta

    def restore(self, step: int, abstract_state) -> tuple[object, dict]:
        """Restore into `abstract_state` (ShapeDtypeStructs carrying the *target* shardings, which may be those of
        another device count than the one that saved)."""
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        )
        return restored.state, restored.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def abstract_like(tree, shardings):
    """ShapeDtypeStructs of `tree` (arrays or ShapeDtypeStructs) with the given target shardings."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def checkpoint_dir(workdir: str) -> str:
    return storage.join(storage.absolute(workdir), "checkpoints")


def checkpoint_steps(workdir: str) -> list[int]:
    """Committed checkpoint steps of a workdir (a half-written one is never listed), oldest first."""
    directory = checkpoint_dir(workdir)
    if not storage.path(directory).exists():
        return []
    manager = ocp.CheckpointManager(directory)
    steps = list(manager.all_steps())
    manager.close()
    return steps


def saved_config(workdir: str, step: int) -> ml_collections.ConfigDict:
    """The config a checkpoint was written under (its JSON metadata only: cheap)."""
    manager = ocp.CheckpointManager(checkpoint_dir(workdir), item_handlers={"meta": ocp.JsonCheckpointHandler()})
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    manager.close()
    check_format(meta, f"step {step} in {workdir}")
    return ml_collections.ConfigDict(meta["config"])


def load_run(workdir: str, step: int | None = None) -> tuple[ml_collections.ConfigDict, dict, int]:
    """(the run's config, its train state as saved, the step) for `step` or the latest one; no data iterators.

    The config comes from the checkpoint's own metadata, so evaluation needs nothing but the workdir. The state is
    restored from Orbax's saved metadata onto the default device, whatever device layout wrote it.
    """
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no committed checkpoint in {checkpoint_dir(workdir)}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {workdir}; steps: {steps}")
    manager = ocp.CheckpointManager(
        checkpoint_dir(workdir),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
    )
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    )
    manager.close()
    check_format(restored.meta, f"step {step} in {workdir}")
    return ml_collections.ConfigDict(restored.meta["config"]), restored.state, step
