"""One collaborative-learning round: every participant's local steps by vmap vs a Python loop.

:func:`jaxreform.collab.dssgd.make_round` runs N participants' local training (the same jitted
single-participant function) either as ``jit(vmap(...))`` over the participants or as a
Python loop over them; :func:`jaxreform.parallel.choose_strategy` picks the loop on CPU and vmap
on accelerators. This prints, for the MLP and the small CNN
shared models and N = 2 and 8 participants (real MNIST digits, 20 local steps of 64, θ_u = 0.1,
with the adversary's 32 generated rows per step), the median seconds per round of each
strategy, their ratio, the rule's choice, and the largest difference between the two
strategies' new shared parameters (the same computation, so it must be ~1e-6).
Also the generator phase of the attack (50 steps of 64 samples) for scale.

    python benchmarks/bench_collab.py --data-dir ../shared/data

Measured on the shared 2-core CPU (jax 0.10.2, another experiment running; ratios from one run):

=================  ============  ========  ========  =============
shared model       participants  loop s    vmap s    vmap speed-up
=================  ============  ========  ========  =============
MLP-256            2             0.116     0.116     1.00
small CNN          2             5.63      6.03      0.93
MLP-256            8             0.449     0.571     0.79
small CNN          8             22.4      23.6      0.95
=================  ============  ========  ========  =============

Both strategies give the same parameters (max difference 1e-7). The generator phase of a
round (50 steps of 64 samples) took 1.8 s, so it, not the participants, dominates a round with
the MLP shared model.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from bench_shadows import median_seconds
from jaxreform import data, models, parallel
from jaxreform.collab import dssgd, gan


def main(argv=None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    dataset = data.LOADERS["mnist"](args.data_dir)
    config = dssgd.CollabConfig(local_steps=20, batch_size=64, upload_fraction=0.1)
    rows = []
    splits = {2: [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)], 8: [(c,) for c in range(8)]}
    for participants_count, classes in splits.items():
        participants = dssgd.split_by_class(dataset.train_inputs, dataset.train_labels,
                                            classes, max_per_participant=2000)
        plan = dssgd.plan_local_steps(config, participants.counts)
        sizes = dssgd.poisson_sizes(jax.random.key(0), participants.counts, plan,
                                    config.local_steps)
        extra = jax.random.uniform(jax.random.key(1), (config.local_steps, 32, 28, 28, 1))
        extra_labels = jnp.full((config.local_steps, 32), 10, jnp.int32)
        weights = jnp.zeros(participants_count).at[-1].set(1.0)
        for family, module in (("MLP-256", models.MLP(num_classes=11, hidden_sizes=(256,))),
                               ("small CNN", models.SmallCNN(num_classes=11))):
            shared = module.init(jax.random.key(2), participants.inputs[0, :1])
            timings, outputs = {}, {}
            for strategy in ("loop", "vmap"):
                round_fn = dssgd.make_round(module.apply, config, plan, strategy=strategy)
                timings[strategy], outputs[strategy] = median_seconds(
                    lambda: round_fn(shared, jax.random.key(3), participants, sizes, extra,
                                     extra_labels, weights), args.repeats)
            difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                             zip(jax.tree.leaves(outputs["loop"][0]),
                                 jax.tree.leaves(outputs["vmap"][0])))
            rows.append([family, participants_count, timings["loop"], timings["vmap"],
                         timings["loop"] / timings["vmap"], parallel.choose_strategy(shared),
                         difference])
            print(rows[-1], flush=True)
    generator = gan.generator_for((28, 28, 1))
    attack = gan.GanAttackConfig()
    module = models.MLP(num_classes=11, hidden_sizes=(256,))
    shared = module.init(jax.random.key(2), jnp.zeros((1, 28, 28, 1)))
    gen_params = generator.init(jax.random.key(4), jnp.zeros((1, attack.latent_size)))
    train_generator = gan.make_generator_training(generator, module.apply, attack)
    state = attack.optimizer().init(gen_params)
    seconds, _ = median_seconds(lambda: train_generator(gen_params, state, shared,
                                                        jax.random.key(5)), args.repeats)
    header = ["shared model", "participants", "loop s", "vmap s", "vmap speed-up",
              "rule picks", "max |Δ params|"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                for v in row) + " |")
    print(f"\ngenerator phase ({attack.generator_steps} steps of {attack.generator_batch}): "
          f"{seconds:.3f} s")
    return rows


if __name__ == "__main__":
    main()
