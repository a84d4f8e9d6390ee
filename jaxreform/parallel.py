"""Scaling past one device with ``jax.sharding``: examples split across a 1-D device mesh.

Parameters stay replicated; the arrays of examples are split along their leading axis, and
``jit`` (XLA's SPMD partitioner) inserts the collectives. The same code runs on one device.
Try it on CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxreform.errors import ConfigError

DATA_AXIS = "data"
STRATEGIES = ("auto", "vmap", "loop")


def choose_strategy(params=None, *, backend: str | None = None) -> str:
    """How to train or run many models of one architecture at once: ``"vmap"`` over
    parameters stacked on a leading axis, or ``"loop"``, a Python loop over one jitted model.

    The rule is measured, not assumed. On the 2-core CPU this library is developed on
    (jax 0.10) the loop was never beaten by more than a few percent and often won:
    ``benchmarks/bench_shadows.py``, 16 MLPs 0.87-1.04x and 16 CIFAR CNNs 0.42x (vmap turns
    XLA convolutions into grouped convolutions); ``benchmarks/bench_training.py``, 8 models
    0.65x (softmax) and 0.87x (MLP); ``benchmarks/bench_collab.py``, one DSSGD round 1.0x (2
    MLP participants), 0.79x (8 MLPs), 0.93-0.95x (small CNNs, patch convolutions). So CPU
    gets the loop for every family. On GPU and TPU, where one stacked program fills the device
    and grouped convolutions are fast, vmap is used (not yet measured here: no accelerator).

    Args:
        params: One model's parameter pytree (unused by the current rule; kept so that a
            per-family rule can return without changing callers).
        backend: ``"cpu"``, ``"gpu"``, ``"tpu"``; None: ``jax.default_backend()``.

    Returns:
        ``"loop"`` on CPU, else ``"vmap"``.
    """
    del params
    backend = backend or jax.default_backend()
    return "loop" if backend == "cpu" else "vmap"


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
