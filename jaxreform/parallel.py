"""Scaling past one device with ``jax.sharding``: examples split across a 1-D device mesh.

Parameters stay replicated; the arrays of examples are split along their leading axis, and
``jit`` (XLA's SPMD partitioner) inserts the collectives. The same code runs on one device.
Try it on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxreform.errors import ConfigError

DATA_AXIS = "data"
STRATEGIES = ("auto", "vmap", "loop")


def choose_strategy(params, *, backend: str | None = None) -> str:
    """How to train or run many models of one architecture at once.

    ``vmap`` over parameters stacked on a leading axis turns each convolution into a grouped
    convolution, which XLA:CPU runs far slower than the same convolutions one model at a time
    (measured in ``benchmarks/bench_shadows.py``: 16 of Shokri et al.'s CIFAR-10 CNNs 7x
    slower than a loop of one jitted step); dense layers become batched matmuls and gain.

    Args:
        params: One model's parameter pytree (or a stacked one: only leaf ranks are read,
            and a stacked dense model's 3-axis kernels still count as dense).
        backend: ``"cpu"``, ``"gpu"``, ``"tpu"``; None: ``jax.default_backend()``.

    Returns:
        ``"loop"`` (a Python loop over one jitted model) for a convolutional model on CPU,
        else ``"vmap"``.
    """
    backend = backend or jax.default_backend()
    convolutional = any(jnp.ndim(leaf) >= 4 for leaf in jax.tree.leaves(params))
    return "loop" if convolutional and backend == "cpu" else "vmap"


def data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``"data"`` over the first ``num_devices`` devices (default: all)."""
    devices = jax.devices()
    count = len(devices) if num_devices is None else num_devices
    if not 0 < count <= len(devices):
        raise ConfigError(f"num_devices must lie in [1, {len(devices)}], got {count}.")
    return Mesh(np.array(devices[:count]), (DATA_AXIS,))


def shard_examples(arrays: tuple, mesh: Mesh) -> tuple:
    """Places each ``[n, ...]`` array split along n across ``mesh``.

    Raises:
        ConfigError: if n is not a multiple of the number of devices (drop or pad first).
    """
    devices = mesh.devices.size
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    placed = []
    for array in arrays:
        if array.shape[0] % devices:
            raise ConfigError(
                f"{array.shape[0]} examples cannot be split evenly over {devices} devices; "
                f"use a multiple of {devices}.")
        placed.append(jax.device_put(array, sharding))
    return tuple(placed)


def replicate(tree, mesh: Mesh):
    """Places every leaf of ``tree`` whole on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
