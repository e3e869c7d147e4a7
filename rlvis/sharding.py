"""Mesh, shardings and global batch assembly.

One `data` axis over all devices; batches are split along it and parameters are replicated (FSDP rules come
with the scale-out issue). Axis types are `Auto`: newer JAX defaults to explicit axes, which breaks sharded
updates written for automatic propagation (DESIGN.md).
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,), axis_types=(AxisType.Auto,))


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
