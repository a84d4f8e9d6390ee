"""Accuracy against distortion budget: noise across, regardless of, and along influence.

On MNIST, computes every training point's influence input-gradient once (one direction, and
one per class), then for each budget (relative L2 change, 10% to 100% by default) and each
noise mode (orthogonal = the reformer, isotropic = the uninformed control, along = the
adversarial control) reforms the training set, trains the same model on it and measures test
accuracy. Writes ``report.json``, ``report.md`` and ``budget_curve.png`` (one plot, all
curves) to ``--out``.

The seed's setting is softmax regression (the default). ``--model mlp|cnn`` runs the same
reformer on the deeper models; their Hessian is indefinite away from an exact minimum, so use
``--curvature gauss-newton`` with some ``--damping`` there (CG on the Hessian stalled for
the CNN), and ``--num-train`` to bound the time on a CPU.

Usage:
    python experiments/influence_budget_curve.py --data-dir ../shared/data --out runs/curve
    python experiments/influence_budget_curve.py --data-dir ../shared/data --model cnn \
        --num-train 6000 --curvature gauss-newton --damping 0.1 --hvp-chunk-size 500 \
        --variants one \
        --budgets 0.3 0.5 1.0 --out runs/curve-cnn
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxreform import data, influence, models, reformers, report, train  # noqa: E402

MODES = ("orthogonal", "isotropic", "along")


def accuracy_of(key, model, inputs, labels, test_inputs, test_labels, config):
    """Test accuracy of ``model`` (a key of ``models.CLASSIFIERS``) trained on
    ``(inputs, labels)``."""
    module = models.CLASSIFIERS[model](num_classes=10)
    params = train.fit_classifier(key, module, inputs, labels, config)
    return train.accuracy(module.apply, params, test_inputs, test_labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budgets", type=float, nargs="+",
                        default=[0.1, 0.2, 0.3, 0.5, 0.75, 1.0])
    parser.add_argument("--model", default="softmax", choices=tuple(models.CLASSIFIERS))
    parser.add_argument("--num-train", type=int, default=None,
                        help="a random subset of this many training images (default: all)")
    parser.add_argument("--num-test", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--solver", default="cg", choices=influence.SOLVERS)
    parser.add_argument("--curvature", default="hessian", choices=influence.CURVATURES)
    parser.add_argument("--damping", type=float, default=0.0)
    parser.add_argument("--hvp-chunk-size", type=int, default=None,
                        help="examples per chunk of the solver's curvature products (memory)")
    parser.add_argument("--variants", nargs="+", default=["one", "per-class"],
                        choices=["one", "per-class"],
                        help="one influence direction, and/or one per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    with report.report_folder(args.out, overwrite=args.overwrite) as staging:
        key = jax.random.key(args.seed)
        dataset = data.load_mnist(args.data_dir)
        dataset = data.take_subset(dataset, jax.random.fold_in(key, 1),
                                   num_train=args.num_train, num_test=args.num_test)
        x, y = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
        x_test, y_test = jnp.asarray(dataset.test_inputs), jnp.asarray(dataset.test_labels)
        config = train.TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3)
        solver = influence.SolverConfig(method=args.solver, curvature=args.curvature,
                                        damping=args.damping, tolerance=1e-4)
        clean = accuracy_of(key, args.model, x, y, x_test, y_test, config)
        print(f"clean {args.model}: accuracy {clean:.4f}", flush=True)
        curves, seconds, solves = {}, {}, {}
        for per_class in sorted({v == "per-class" for v in args.variants}):
            variant = "per-class subspace" if per_class else "one direction"
            start = time.perf_counter()
            directions, info = reformers.InfluenceReformer(
                per_class=per_class, model=args.model, solver=solver, train_config=config,
                hvp_chunk_size=args.hvp_chunk_size).directions(key, x, y, progress=False)
            seconds[variant] = time.perf_counter() - start
            solves[variant] = {name: info[name] for name in
                               ("solver_iterations", "solver_relative_residual") if name in info}
            print(f"{variant}: directions in {seconds[variant]:.1f} s, {solves[variant]}",
                  flush=True)
            for mode in MODES:
                if per_class and mode == "isotropic":
                    continue  # the same as with one direction: isotropic ignores directions
                name = f"{mode}" if mode == "isotropic" else f"{mode}, {variant}"
                curves[name] = []
                for budget in args.budgets:
                    result = reformers.reform_with_noise(jax.random.fold_in(key, 7), x,
                                                         directions, budget=budget, mode=mode)
                    accuracy = accuracy_of(key, args.model, result.reformed, y, x_test, y_test,
                                           config)
                    curves[name].append(accuracy)
                    print(f"{name:<34} budget {budget:4.2f}: accuracy {accuracy:.4f}",
                          flush=True)
        figure, axis = plt.subplots(figsize=(6.4, 4.2))
        for name, values in curves.items():
            axis.plot(args.budgets, values, marker="o", label=name,
                      linestyle="--" if "per-class" in name else "-")
        axis.axhline(clean, color="k", linewidth=0.8, linestyle=":", label="clean")
        axis.set_xlabel("budget: relative L2 change of each training image")
        axis.set_ylabel(f"test accuracy ({args.model})")
        axis.set_title(f"MNIST, {len(y):,} training images, {args.model}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(staging / "budget_curve.png", dpi=100)
        plt.close(figure)
        result = {"config": vars(args), "model": args.model, "clean_accuracy": clean,
                  "budgets": args.budgets, "accuracy": curves, "direction_seconds": seconds,
                  "solves": solves, "data": dataset.summary(),
                  "versions": report.package_versions(),
                  "files": ["report.json", "report.md", "budget_curve.png"]}
        report.write_json(staging / report.REPORT_JSON, result)
        rows = [[name, *values] for name, values in curves.items()]
        (staging / report.REPORT_MD).write_text(
            f"# Influence reformer: accuracy against budget ({args.model})\n\n"
            f"Clean accuracy {clean:.4f}; {len(y):,} training images; solver "
            f"{args.solver} on the {args.curvature} (damping {args.damping}): {solves}.\n\n"
            + report.markdown_table(["noise", *[f"{b:.2f}" for b in args.budgets]], rows)
            + "\n\n![curve](budget_curve.png)\n", encoding="utf-8")
    print(f"report in {args.out}")


if __name__ == "__main__":
    main()
