"""DP-SGD step cost as ratios to the non-private step, in one run (never asserted in tests).

For each model at batch 256 on real MNIST: one jitted non-private SGD step; one DP-SGD step
with ghost clipping (jaxreform's default); one with ``vmap`` per-example gradients
(microbatches of 32, the generic fallback). With ``--opacus PYTHON`` it also runs
``benchmarks/opacus_step.py`` in that interpreter (a separate venv with torch and opacus,
installed only for this benchmark) on the same architectures, batch and data, and prints its
ratios beside ours.

    python benchmarks/bench_dp.py [--data-dir DIR] [--opacus /path/to/venv/bin/python]

Memory: ghost clipping keeps the activations and output gradients of each layer plus the
per-example *convolution* kernel gradients (b × kh·kw·c_in·c_out); ``vmap`` keeps
``microbatch × #params`` per-example gradients.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from bench_training import median_seconds

from jaxreform import data, dp, models, report

BATCH = 256
MODELS = {
    "softmax": lambda: models.SoftmaxRegression(10),
    "mlp_784_1000_10": lambda: models.MLP(10, (1000,)),
    "cnn_32_64": lambda: models.SmallCNN(10),
}


def bench_model(module, x, y, repeats, steps):
    params = module.init(jax.random.key(0), x[:1])
    optimizer = optax.sgd(0.1)
    state = optimizer.init(params)
    mask = jnp.ones(x.shape[0])

    def plain(p, s):
        grads = jax.grad(lambda q: dp.cross_entropy_example_loss(module.apply(q, x), y).mean())(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    def private(method):
        noise = optax.chain(dp.gaussian_noise_average(1.0, 1.0, float(x.shape[0]),
                                                      jax.random.key(1)), optimizer)

        def step(carry, _):
            p, s = carry
            clipped = dp.clipped_gradient_sum(module.apply, p, x, y, mask, 1.0,
                                              dp.cross_entropy_example_loss, method=method)
            updates, s = noise.update(clipped.grad_sum, s, p)
            return (optax.apply_updates(p, updates), s), None
        return noise.init(params), step

    def scanned(step, carry):
        fn = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps)[0])
        return lambda: fn(carry)

    times = {"plain": median_seconds(scanned(lambda c, _: (plain(*c), None), (params, state)),
                                     repeats) / steps}
    for method in ("ghost", "vmap"):
        noise_state, step = private(method)
        times[method] = median_seconds(scanned(step, (params, noise_state)), repeats) / steps
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed scan")
    parser.add_argument("--opacus", default=None, help="python of a venv with torch + opacus")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    dataset = data.load_dataset("mnist", args.data_dir)
    x = jnp.asarray(dataset.train_inputs[:BATCH])
    y = jnp.asarray(dataset.train_labels[:BATCH])
    results = {name: bench_model(make(), x, y, args.repeats, args.steps)
               for name, make in MODELS.items()}
    opacus = {}
    if args.opacus:
        script = Path(__file__).with_name("opacus_step.py")
        out = subprocess.run([args.opacus, str(script), "--batch", str(BATCH),
                              "--data-dir", str(args.data_dir or "")],
                             capture_output=True, text=True, check=True)
        opacus = json.loads(out.stdout.strip().splitlines()[-1])
    rows = []
    for name, t in results.items():
        row = [name, 1e3 * t["plain"], 1e3 * t["ghost"], t["ghost"] / t["plain"],
               1e3 * t["vmap"], t["vmap"] / t["plain"]]
        if opacus:
            o = opacus[name]
            row += [1e3 * o["plain"], 1e3 * o["private"], o["private"] / o["plain"]]
        rows.append(row)
    header = ["model (batch 256)", "plain ms", "ghost ms", "ghost / plain", "vmap ms",
              "vmap / plain"]
    if opacus:
        header += ["torch ms", "opacus ms", "opacus / torch"]
    print(report.markdown_table(header, rows))
    print(f"backend: {jax.default_backend()}, devices: {jax.device_count()}")
    if args.json:
        report.write_json(Path(args.json), {"jaxreform": results, "opacus": opacus})


if __name__ == "__main__":
    main()
