"""Mesh, shardings and global batch assembly.

One `data` axis over all devices; batches are split along it. The train state (parameters, EMA parameters,
optimizer moments) is either replicated (`sharding.strategy="replicate"`: data parallel) or, with "fsdp", each
array whose path matches one of `sharding.fsdp_rules` (regexes over "params/encoder/.../kernel"-style paths) is
split along its largest dimension that the device count divides, if it has at least `fsdp_min_size` elements;
XLA then gathers parameters where they are used (ZeRO-3 / big_vision's fsdp rule). Axis types are `Auto`: newer
JAX defaults to explicit axes, which breaks sharded updates written for automatic propagation.
"""

import re

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A `data` axis over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(devices or jax.devices()), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local_batch, mesh: Mesh):
    """This process's slice of the batch (numpy pytree) → global `jax.Array`s sharded on the data axis.

    The same call serves 1 and N processes: each process passes only the rows it read.
    """
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def fsdp_spec(shape: tuple[int, ...], devices: int) -> PartitionSpec:
    """Split the largest dimension the device count divides; replicate when none does."""
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % devices == 0:
            return PartitionSpec(*([None] * axis + [DATA_AXIS]))
    return PartitionSpec()


def state_shardings(state_shape, mesh: Mesh, config: ml_collections.ConfigDict):
    """NamedShardings for every leaf of the train state, by the configured strategy (module docstring)."""
    if config.strategy == "replicate":
        return jax.tree.map(lambda _: replicated(mesh), state_shape)
    rules = [re.compile(rule) for rule in config.fsdp_rules]
    devices = mesh.devices.size

    def leaf_sharding(path, leaf) -> NamedSharding:
        name = _path_name(path)
        if leaf.size >= config.fsdp_min_size and any(rule.search(name) for rule in rules):
            return NamedSharding(mesh, fsdp_spec(leaf.shape, devices))
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(leaf_sharding, state_shape)
