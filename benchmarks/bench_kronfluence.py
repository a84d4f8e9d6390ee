"""jaxreform's CG influence against kronfluence's EK-FAC, on MNIST logistic regression.

One run, two questions:

1. Speed: score ``--queries`` test points against all n training points (n = 60,000 by
   default). jaxreform: reference gradients, one CG solve per query (vmapped), per-example
   gradients (vmapped). kronfluence: EK-FAC factors, then pairwise scores. End-to-end seconds.
2. Accuracy: on a ``--loo-train`` subset (leave-one-out retraining at full scale costs hours
   on 2 CPU cores), both methods score the same query, the top ``--removals`` points by
   |CG influence| are removed one at a time and the model retrained (Newton-CG, vmapped),
   and each method's Pearson r with the actual change of the query loss is reported.

Both use the same trained weights (copied into a ``torch.nn.Linear``) and the same damping
λ = 0.01 (the model's L2 penalty; kronfluence's Hessian has no weight-decay term, so it is
given as damping). kronfluence is a PyTorch library: install it only for this benchmark, e.g.
``pip install torch torchvision kronfluence`` in a separate environment with jaxreform.

Usage: python benchmarks/bench_kronfluence.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import data, influence, models, train
from jaxreform.influence import validation

L2 = 0.01


def train_to_optimum(x, y):
    module = models.SoftmaxRegression(num_classes=10)
    example_loss = influence.example_loss_from_apply(module.apply)
    params = module.init(jax.random.key(0), x[:1])
    params = train.fit(jax.random.key(1), train.cross_entropy_loss(module.apply, l2_penalty=L2),
                       params, (x, y), train.TrainConfig(epochs=10, learning_rate=3e-3),
                       progress=False).params
    polished = validation.newton_minimize(example_loss, params, x, y, jnp.ones((1, len(y))),
                                          l2_penalty=L2, steps=3)
    return example_loss, jax.tree.map(lambda leaf: leaf[0], polished.params)


def jaxreform_scores(example_loss, params, x, y, qx, qy):
    """``[n, q]`` predicted change of each query loss when each training point is removed."""
    start = time.perf_counter()
    gradients = jax.vmap(lambda a, b: influence.reference_gradients(
        example_loss, params, a[None], b[None]), out_axes=1)(qx, qy)
    s_ref, _ = influence.checked_inverse_hvp(None, example_loss, params, (x, y), gradients,
                                             influence.SolverConfig(tolerance=1e-5),
                                             l2_penalty=L2)
    scores = influence.influence_on_loss(example_loss, params, x, y, s_ref)
    scores = jax.block_until_ready(-scores / len(y))
    return np.asarray(scores), time.perf_counter() - start


def kronfluence_scores(params, x, y, qx, qy):
    """``[n, q]`` kronfluence pairwise scores (EK-FAC) and the seconds they took."""
    import torch
    import torch.nn.functional as F
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    class LogisticTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            inputs, labels = batch
            logits = model(inputs)
            if sample:
                with torch.no_grad():
                    labels = torch.multinomial(torch.softmax(logits, -1), 1).flatten()
            return F.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            inputs, labels = batch
            return F.cross_entropy(model(inputs), labels, reduction="sum")

    linear = torch.nn.Linear(784, 10)
    kernel = np.asarray(params["params"]["linear"]["kernel"])
    bias = np.asarray(params["params"]["linear"]["bias"])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias.copy()))
    model = torch.nn.Sequential(torch.nn.Flatten(), linear)

    def dataset(inputs, labels):
        return torch.utils.data.TensorDataset(torch.from_numpy(np.array(inputs)),
                                              torch.from_numpy(np.array(labels)).long())

    start = time.perf_counter()
    task = LogisticTask()
    model = prepare_model(model, task)
    with tempfile.TemporaryDirectory() as folder:
        analyzer = Analyzer(analysis_name="mnist", model=model, task=task, output_dir=folder,
                            disable_tqdm=True)
        analyzer.fit_all_factors(factors_name="ekfac", dataset=dataset(x, y),
                                 per_device_batch_size=1000,
                                 factor_args=FactorArguments(strategy="ekfac"),
                                 overwrite_output_dir=True)
        factor_seconds = time.perf_counter() - start
        analyzer.compute_pairwise_scores(
            scores_name="scores", factors_name="ekfac", query_dataset=dataset(qx, qy),
            train_dataset=dataset(x, y), per_device_query_batch_size=len(qy),
            per_device_train_batch_size=1000,
            score_args=ScoreArguments(damping_factor=L2 * len(y)), overwrite_output_dir=True)
        scores = analyzer.load_pairwise_scores("scores")["all_modules"].numpy().T
    return scores, factor_seconds, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--loo-train", type=int, default=5000)
    parser.add_argument("--removals", type=int, default=30)
    args = parser.parse_args()
    dataset = data.load_mnist(args.data_dir)
    x, y = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
    qx = jnp.asarray(dataset.test_inputs[:args.queries])
    qy = jnp.asarray(dataset.test_labels[:args.queries])

    example_loss, params = train_to_optimum(x, y)
    _, first_seconds = jaxreform_scores(example_loss, params, x, y, qx, qy)  # with compiling
    ours, our_seconds = jaxreform_scores(example_loss, params, x, y, qx, qy)
    theirs, factor_seconds, their_seconds = kronfluence_scores(params, x, y, qx, qy)
    agreement = np.mean([np.corrcoef(ours[:, q], theirs[:, q])[0, 1]
                         for q in range(args.queries)])

    # Leave-one-out on a subset: the query with the highest loss, top removals by |CG score|.
    sx, sy = x[:args.loo_train], y[:args.loo_train]
    example_loss, sub_params = train_to_optimum(sx, sy)
    test_x, test_y = jnp.asarray(dataset.test_inputs), jnp.asarray(dataset.test_labels)
    losses = jax.vmap(example_loss, in_axes=(None, 0, 0))(sub_params, test_x, test_y)
    t = int(jnp.argmax(losses))
    sub_ours, _ = jaxreform_scores(example_loss, sub_params, sx, sy, test_x[t:t + 1],
                                   test_y[t:t + 1])
    sub_theirs, _, _ = kronfluence_scores(sub_params, sx, sy, test_x[t:t + 1], test_y[t:t + 1])
    removed = np.argsort(-np.abs(sub_ours[:, 0]))[:args.removals]
    retrained = validation.newton_minimize(example_loss, sub_params, sx, sy,
                                           validation.leave_one_out_masks(len(sy), removed),
                                           l2_penalty=L2, steps=2)
    actual = np.asarray(jax.vmap(lambda p: example_loss(p, test_x[t], test_y[t]))(
        retrained.params) - example_loss(sub_params, test_x[t], test_y[t]))
    r_ours = np.corrcoef(actual, sub_ours[removed, 0])[0, 1]
    r_theirs = np.corrcoef(actual, sub_theirs[removed, 0])[0, 1]

    print(f"MNIST logistic regression, λ = {L2}; {len(y)} training points, {args.queries} "
          f"queries; backend {jax.default_backend()}")
    print(f"{'':<44} {'jaxreform CG':>13} {'kronfluence':>12}")
    print("-" * 71)
    print(f"{'seconds, end to end (jaxreform compiled)':<44} {our_seconds:>13.2f} "
          f"{their_seconds:>12.2f}")
    print(f"{'seconds, jaxreform first call with compiling':<44} {first_seconds:>13.2f}")
    print(f"{'  of which factors (kronfluence EK-FAC)':<44} {'':>13} {factor_seconds:>12.2f}")
    print(f"{'ratio kronfluence / jaxreform (compiled)':<44} {their_seconds / our_seconds:>13.2f}")
    print(f"{'ratio kronfluence / jaxreform (first call)':<44} "
          f"{their_seconds / first_seconds:>13.2f}")
    print(f"{'mean Pearson r between the two methods':<44} {agreement:>13.4f}")
    print(f"{f'Pearson r with LOO retraining (n={args.loo_train}, k={args.removals})':<44} "
          f"{r_ours:>13.4f} {r_theirs:>12.4f}")
    print(f"(LOO models' largest final gradient norm {float(retrained.gradient_norm.max()):.1e})")


if __name__ == "__main__":
    main()
