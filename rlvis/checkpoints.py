"""One Orbax checkpoint step = train state + JSON metadata, which holds the config and where each data stream
stands (`data_position`: one global element index per stream, the same on every process; rlvis/data/pipeline.py).

Saving the data position is what makes resume exact (big_vision and dinov2 restart their data from scratch), and
keeping it one number rather than per-process iterator states is what lets a run resume on another number of
processes. Saves
are asynchronous; Orbax writes into a temporary folder and renames it when complete, so a half-written step is
never listed by `latest_step` and never restored.
"""

import importlib.util
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from rlvis import storage


def check_writable(workdir: str) -> None:
    """Create the workdir and write a probe file in it: an unwritable disk is a one-line error before any compute."""
    from rlvis.config_lib import ConfigError
    if str(workdir).startswith("s3://"):  # tensorstore has an S3 driver, but Orbax builds a malformed path for it
        raise ConfigError(f"--workdir={workdir}: Orbax {ocp.__version__} cannot write checkpoints to s3:// (data can "
                          "be read from S3); use a gs:// or local workdir")
    probe = storage.path(workdir) / f".rlvis-write-test-{os.getpid()}"
    try:
        (storage.path(workdir) / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except Exception as error:  # noqa: BLE001 — disks raise OSError; bucket clients their own HTTP/auth errors
        if not isinstance(error, OSError) and not storage.is_remote(workdir):
            raise
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
        raise ConfigError(f"--workdir={workdir} is not writable: {reason}") from None


class Checkpointer:
    def __init__(self, directory: str, keep: int):
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(
            storage.absolute(directory), item_handlers=handlers,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def meta(self, step: int) -> dict:
        """The JSON metadata alone: cheap, and readable whatever the state's shapes."""
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, step: int, abstract_state) -> tuple[object, dict]:
        """Restore into `abstract_state` (ShapeDtypeStructs carrying the *target* shardings, which may be those of
        another device count than the one that saved)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
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
    return with_current_defaults(meta["config"])


# Fields whose default changed after they were added: a config saved before the field existed ran with this value,
# not today's default.
BEFORE_THE_FIELD = {("ab", "center_target"): False, ("model", "box_attention"): False}


def with_current_defaults(saved: dict) -> ml_collections.ConfigDict:
    """A config saved by an older rlvis lacks the fields added since; they take the defaults of configs/demo.py
    (the base every preset builds on), which is how such runs behaved, or the value of BEFORE_THE_FIELD where the
    default has changed since. Saved values are never changed, so old checkpoints stay loadable by evaluation,
    export and search. Without the repository's configs/ (a bare package install) the saved config is returned as
    it is."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo.py")
    if not os.path.exists(path):
        return ml_collections.ConfigDict(saved)
    spec = importlib.util.spec_from_file_location("rlvis_default_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        defaults = module.get_config(f"method={saved['method']}").to_dict()
    except (KeyError, ValueError):  # a method today's configs do not know: use the saved config as it is
        return ml_collections.ConfigDict(saved)
    for (section, field), value in BEFORE_THE_FIELD.items():
        defaults[section][field] = value

    def merge(default: dict, ours: dict) -> dict:
        return {**{key: merge(value, ours[key]) if isinstance(value, dict) and isinstance(ours.get(key), dict)
                   else ours.get(key, value) for key, value in default.items()},
                **{key: value for key, value in ours.items() if key not in default}}
    if "evals" not in saved and "final" in saved.get("eval", {}):
        saved = {**saved, "evals": evals_from_lists(saved["eval"], defaults["evals"])}
    return ml_collections.ConfigDict(merge(defaults, saved))


def evals_from_lists(saved_eval: dict, default_evals: dict) -> dict:
    """`config.evals` for a config that named its evaluators in lists (eval.final, eval.monitor every
    eval.monitor_every steps, eval.tfds), so that such a run is evaluated with the evaluators it chose."""
    old_names = {"demo": "demo", "foresight": "foresight", "digits": "digit_monitor", "tfds": "tfds"}
    evals = {}
    for name, entry in default_evals.items():
        old = old_names.get(name, name)
        evals[name] = {**entry, "final": old in saved_eval.get("final", ()),
                       "every": saved_eval.get("monitor_every", 0) if old in saved_eval.get("monitor", ()) else 0}
        if name == "tfds":
            evals[name].update(saved_eval.get("tfds", {}))
    return evals


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
    manager = ocp.CheckpointManager(checkpoint_dir(workdir), item_handlers={
        "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                              meta=ocp.args.JsonRestore()))
    manager.close()
    return with_current_defaults(restored.meta["config"]), restored.state, step
