"""Influence-reformer speed on MNIST softmax regression, as ratios within one run.

Measures, after training the model and solving for s_ref once (CG):

- vmapped: the influence input-gradients of all n training points, one jitted, chunked vmap;
- looped: the same jitted per-example function called from a Python loop over examples. The
  loop is timed on ``--loop-examples`` points and extrapolated linearly to n (a full loop over
  60,000 would take minutes and say nothing more);
- the end-to-end time of the reformer's ``fit`` (train, solve, directions, noise).

Usage: python benchmarks/bench_influence.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jaxreform import data, influence, models, reformers, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--loop-examples", type=int, default=2000)
    args = parser.parse_args()
    dataset = data.load_mnist(args.data_dir)
    x, y = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
    n = x.shape[0]
    module = models.SoftmaxRegression(num_classes=10)
    params = module.init(jax.random.key(0), x[:1])
    params = train.fit(jax.random.key(1), train.cross_entropy_loss(module.apply, l2_penalty=0.01),
                       params, (x, y), train.TrainConfig(epochs=5), progress=False).params
    example_loss = influence.example_loss_from_apply(module.apply)
    gradient = influence.reference_gradients(example_loss, params, x[:1000], y[:1000])
    start = time.perf_counter()
    s_ref, _ = influence.checked_inverse_hvp(None, example_loss, params, (x, y), gradient,
                                             influence.SolverConfig(), l2_penalty=0.01)
    solve_seconds = time.perf_counter() - start

    vmapped = jax.jit(lambda xs, ys: influence.influence_input_gradients(
        example_loss, params, xs, ys, s_ref))
    jax.block_until_ready(vmapped(x, y))  # compile
    start = time.perf_counter()
    jax.block_until_ready(vmapped(x, y))
    vmapped_seconds = time.perf_counter() - start

    one = jax.jit(lambda xi, yi: influence.influence_input_gradients(
        example_loss, params, xi[None], yi[None], s_ref)[0])
    jax.block_until_ready(one(x[0], y[0]))  # compile
    start = time.perf_counter()
    for i in range(args.loop_examples):
        jax.block_until_ready(one(x[i], y[i]))
    loop_seconds = (time.perf_counter() - start) / args.loop_examples * n

    start = time.perf_counter()
    reformers.InfluenceReformer(budget=0.3).fit(jax.random.key(2), x, y, progress=False)
    fit_seconds = time.perf_counter() - start

    print(f"data: {dataset.source}, n = {n}; backend {jax.default_backend()}")
    print(f"{'what':<52} {'seconds':>9}")
    print("-" * 62)
    print(f"{'CG solve for s_ref (one reference direction)':<52} {solve_seconds:>9.2f}")
    print(f"{'input-gradients, vmapped (all n)':<52} {vmapped_seconds:>9.2f}")
    print(f"{'input-gradients, Python loop (extrapolated to n)':<52} {loop_seconds:>9.2f}")
    print(f"{'ratio loop / vmapped':<52} {loop_seconds / vmapped_seconds:>9.1f}")
    print(f"{'reformer fit end to end (train 10 ep., solve, noise)':<52} {fit_seconds:>9.2f}")


if __name__ == "__main__":
    main()
