"""Training-loop speed as ratios within one run (never asserted in tests).

Compares, on real MNIST (embedded subset unless --data-dir), for softmax regression and an MLP:

- one epoch as one jitted ``lax.scan`` (``train.make_epoch_fn``) vs a Python loop that calls a
  jitted single step per minibatch;
- K models trained together by ``vmap`` over stacked params vs a Python loop over the K models
  (each with its jitted scan epoch).

Usage: python benchmarks/bench_training.py [--data-dir DIR] [--models 8] [--repeats 3]
Prints a table of median seconds and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxreform import data, models, train


def median_seconds(fn, repeats):
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(module, x, y, batch_size, num_models, repeats):
    optimizer = optax.adam(1e-3)
    loss_fn = train.cross_entropy_loss(module.apply)
    params = module.init(jax.random.key(0), x[:1])
    state = optimizer.init(params)
    epoch = train.make_epoch_fn(loss_fn, optimizer, batch_size)
    scan_epoch = jax.jit(epoch)

    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(loss_fn)(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def looped_epoch():
        p, s = params, state
        order = jax.random.permutation(jax.random.key(1), x.shape[0])
        for i in range(x.shape[0] // batch_size):
            index = order[i * batch_size:(i + 1) * batch_size]
            p, s = step(p, s, (x[index], y[index]))
        return p

    keys = jax.random.split(jax.random.key(2), num_models)
    stacked = jax.vmap(module.init, in_axes=(0, None))(keys, x[:1])
    stacked_state = jax.vmap(optimizer.init)(stacked)
    vmapped = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, None)))

    def loop_over_models():
        outs = []
        for i in range(num_models):
            p = jax.tree.map(lambda leaf: leaf[i], stacked)
            outs.append(scan_epoch(p, optimizer.init(p), keys[i], (x, y))[0])
        return outs

    scan_s = median_seconds(lambda: scan_epoch(params, state, keys[0], (x, y))[0], repeats)
    loop_s = median_seconds(looped_epoch, repeats)
    vmap_s = median_seconds(lambda: vmapped(stacked, stacked_state, keys, (x, y))[0], repeats)
    models_loop_s = median_seconds(loop_over_models, repeats)
    return scan_s, loop_s, vmap_s, models_loop_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    dataset = data.load_mnist(args.data_dir)
    x, y = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
    print(f"data: {dataset.source}, {x.shape[0]} examples; backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s); K = {args.models}; median of {args.repeats}")
    header = (f"{'model':<10} {'scan epoch s':>12} {'step loop s':>12} {'loop/scan':>10} "
              f"{'vmap K s':>10} {'K loop s':>10} {'loop/vmap':>10}")
    print(header)
    print("-" * len(header))
    for name, module in (("softmax", models.SoftmaxRegression(10)),
                         ("mlp-256", models.MLP(10, hidden_sizes=(256,)))):
        scan_s, loop_s, vmap_s, models_loop_s = bench(module, x, y, args.batch_size,
                                                      args.models, args.repeats)
        print(f"{name:<10} {scan_s:>12.3f} {loop_s:>12.3f} {loop_s / scan_s:>10.2f} "
              f"{vmap_s:>10.3f} {models_loop_s:>10.3f} {models_loop_s / vmap_s:>10.2f}")


if __name__ == "__main__":
    main()
