"""Training K shadow models at once: vmap vs a Python loop vs lax.map, as ratios in one run.

For a dense family (MLP, 256 hidden units) and a convolutional one (Shokri et al.'s CIFAR-10
CNN, :class:`jaxreform.attacks.membership_models.ShokriCifarCNN`), K models each train one
epoch on their own t real CIFAR-10 images (the rows of a ``[K, t]`` index into one pool), with
the same jitted single-model epoch (:func:`jaxreform.train.make_epoch_fn`) under three
many-model strategies:

- ``loop``: a Python loop over the K models, each calling ``jit(epoch)`` (compiled once);
- ``vmap``: ``jit(vmap(epoch))`` over stacked parameters (what the library uses for dense
  models, and for every model off CPU);
- ``lax.map``: ``jit(lax.map(epoch))`` over the stacked models inside one program.

Same data, same keys, same epochs: the vmap and loop results are also compared parameter by
parameter (max abs difference) and by test accuracy, so a faster strategy cannot be a
different computation. Memory is XLA's compiled estimate (arguments + temporaries) of one
call. Seconds are the median of ``--repeats`` calls after a warm-up (compile) call.

Measured on the shared 2-core CPU (jax 0.10.2, load average about 4.5 from other jobs, so
seconds are inflated; ratios come from one run each):

======================================  ========  ========  ========  ===================
K = 16 models, 1 epoch                  loop s    vmap s    lax.map   memory loop / vmap
======================================  ========  ========  ========  ===================
MLP-256, 512 images each, batch 32      0.800     0.923     0.992     25 / 529 MiB
MLP-256, 512 images each, batch 128     0.622     0.598     0.470     26 / 529 MiB
paper CNN, 32 images each, batch 32     27.2      64.0      not run   42 / 905 MiB
======================================  ========  ========  ========  ===================

So vmap is 0.87x / 1.04x the loop for these dense models and 0.42x for the CNN (the library
picks the loop there); lax.map was not run for the CNN (an earlier measurement: 28x slower).
vmap and loop agree to 1e-4 in every parameter and give the same test accuracy.

Usage: python benchmarks/bench_shadows.py --data-dir ../shared/data [--models 16]
       [--train-size 256] [--families dense,conv] [--strategies loop,vmap,lax.map]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform.attacks import membership as mia
from jaxreform.attacks.membership_models import ShokriCifarCNN
from jaxreform.data.cifar10 import load_cifar10
from jaxreform.models import MLP
from jaxreform.train import TrainConfig, accuracy, cross_entropy_loss, make_epoch_fn


def median_seconds(fn, repeats):
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up; and the output."""
    out = jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def memory_mib(jitted, *args) -> float:
    """XLA's estimate of the arguments + temporaries of one call, in MiB (NaN if unknown)."""
    try:
        stats = jitted.lower(*args).compile().memory_analysis()
        return (stats.argument_size_in_bytes + stats.temp_size_in_bytes) / 2**20
    except Exception:  # noqa: BLE001  (not every backend reports it)
        return float("nan")


def strategies(module, inputs, labels, index, config, keys):
    """``{name: () -> stacked params}`` for the three strategies, plus the memory of each."""
    optimizer = config.make_optimizer()
    epoch = make_epoch_fn(cross_entropy_loss(module.apply), optimizer, config.batch_size)
    stacked = mia.init_stacked(jax.random.key(0), module, inputs[:1], index.shape[0])
    state = jax.vmap(optimizer.init)(stacked)
    rows = jnp.asarray(index)

    def one(params, opt_state, key, x, y):
        return epoch(params, opt_state, key, (x, y))[0]

    vmapped = jax.jit(jax.vmap(one))
    mapped = jax.jit(lambda p, s, k, x, y: jax.lax.map(lambda a: one(*a), (p, s, k, x, y)))
    single = jax.jit(epoch)
    own = [(inputs[r], labels[r]) for r in rows]
    both = (inputs[rows], labels[rows])  # [K, t, ...]: every strategy gets its data gathered

    def loop():
        trained = []
        for i in range(index.shape[0]):
            p = jax.tree.map(lambda leaf: leaf[i], stacked)
            trained.append(single(p, optimizer.init(p), keys[i], own[i])[0])
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trained)

    first = jax.tree.map(lambda leaf: leaf[0], stacked)
    memory = {
        "loop": memory_mib(single, first, optimizer.init(first), keys[0], own[0]),
        "vmap": memory_mib(vmapped, stacked, state, keys, *both),
        "lax.map": memory_mib(mapped, stacked, state, keys, *both),
    }
    runs = {"loop": loop, "vmap": lambda: vmapped(stacked, state, keys, *both),
            "lax.map": lambda: mapped(stacked, state, keys, *both)}
    return runs, memory


def bench_family(name, module, data, args):
    inputs, labels, test_x, test_y = data
    index = np.asarray(jax.random.permutation(jax.random.key(1), inputs.shape[0]))
    index = index[: args.models * args.train_size].reshape(args.models, args.train_size)
    keys = jax.random.split(jax.random.key(2), args.models)
    config = TrainConfig(epochs=1, batch_size=args.batch_size, learning_rate=1e-3)
    runs, memory = strategies(module, inputs, labels, index, config, keys)
    results = {}
    for strategy in args.strategies:
        seconds, params = median_seconds(runs[strategy], args.repeats)
        first = jax.tree.map(lambda leaf: leaf[0], params)
        results[strategy] = (seconds, params, accuracy(module.apply, first, test_x, test_y))
        print(f"  {name:<6} {strategy:<8} {seconds:>9.3f} s   memory {memory[strategy]:>8.1f} MiB"
              f"   model 0 test accuracy {results[strategy][2]:.4f}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default="dense,conv")
    parser.add_argument("--strategies", default="loop,vmap,lax.map")
    args = parser.parse_args()
    args.strategies = args.strategies.split(",")
    needed = args.models * args.train_size
    dataset = load_cifar10(args.data_dir, max_per_split=max(needed, 1000))
    data = (jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels),
            jnp.asarray(dataset.test_inputs[:1000]), jnp.asarray(dataset.test_labels[:1000]))
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}); K = {args.models} "
          f"models x {args.train_size} CIFAR-10 images, batch {args.batch_size}, 1 epoch; "
          f"median of {args.repeats} after a warm-up", flush=True)
    families = {"dense": MLP(10, hidden_sizes=(256,)), "conv": ShokriCifarCNN()}
    table = []
    for name in args.families.split(","):
        module = families[name]
        results = bench_family(name, module, data, args)
        params = module.init(jax.random.key(0), data[0][:1])
        rule = mia.choose_strategy(params)
        loop_s = results["loop"][0] if "loop" in results else float("nan")
        diff = (max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
            jax.tree.leaves(results["vmap"][1]), jax.tree.leaves(results["loop"][1])))
            if {"vmap", "loop"} <= results.keys() else float("nan"))
        table.append((name, rule, {s: loop_s / r[0] for s, r in results.items()}, diff))
    print(f"\n{'family':<7} {'library picks':<14} " + " ".join(
        f"{'loop/' + s:>13}" for s in args.strategies) + f" {'|vmap - loop|':>14}")
    for name, rule, speedups, diff in table:
        print(f"{name:<7} {rule:<14} " + " ".join(f"{speedups[s]:>13.2f}" for s in
                                                  args.strategies) + f" {diff:>14.2e}")
    print("(loop/<strategy> > 1: that strategy is faster than the Python loop)")


if __name__ == "__main__":
    main()
