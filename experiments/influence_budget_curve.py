"""Accuracy against distortion budget: noise across, regardless of, and along influence.

On MNIST with softmax regression (the seed's setting), computes every training point's
influence input-gradient once (one direction, and one per class), then for each budget
(relative L2 change, 10% to 100% by default) and each noise mode (orthogonal = the reformer,
isotropic = the uninformed control, along = the adversarial control) reforms the training set,
trains softmax regression on it and measures test accuracy. Writes ``report.json``,
``report.md`` and ``budget_curve.png`` (one plot, all curves) to ``--out``.

Usage:
    python experiments/influence_budget_curve.py --data-dir ../shared/data --out runs/curve
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxreform import data, models, reformers, report, train  # noqa: E402

MODES = ("orthogonal", "isotropic", "along")


def accuracy_of(key, inputs, labels, test_inputs, test_labels, config):
    """Test accuracy of softmax regression trained on ``(inputs, labels)``."""
    module = models.SoftmaxRegression(num_classes=10)
    init_key, fit_key = jax.random.split(key)
    params = module.init(init_key, inputs[:1])
    fitted = train.fit(fit_key, train.cross_entropy_loss(module.apply), params,
                       (inputs, labels), config, progress=False)
    return train.accuracy(module.apply, fitted.params, test_inputs, test_labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budgets", type=float, nargs="+",
                        default=[0.1, 0.2, 0.3, 0.5, 0.75, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    with report.report_folder(args.out, overwrite=args.overwrite) as staging:
        key = jax.random.key(args.seed)
        dataset = data.load_mnist(args.data_dir)
        x, y = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
        x_test, y_test = jnp.asarray(dataset.test_inputs), jnp.asarray(dataset.test_labels)
        config = train.TrainConfig(epochs=10, batch_size=128, learning_rate=1e-3)
        clean = accuracy_of(key, x, y, x_test, y_test, config)
        curves, seconds = {}, {}
        for per_class in (False, True):
            variant = "per-class subspace" if per_class else "one direction"
            start = time.perf_counter()
            directions, info = reformers.InfluenceReformer(per_class=per_class).directions(
                key, x, y, progress=False)
            seconds[variant] = time.perf_counter() - start
            for mode in MODES:
                if per_class and mode == "isotropic":
                    continue  # the same as with one direction: isotropic ignores directions
                name = f"{mode}" if mode == "isotropic" else f"{mode}, {variant}"
                curves[name] = []
                for budget in args.budgets:
                    result = reformers.reform_with_noise(jax.random.fold_in(key, 7), x,
                                                         directions, budget=budget, mode=mode)
                    accuracy = accuracy_of(key, result.reformed, y, x_test, y_test, config)
                    curves[name].append(accuracy)
                    print(f"{name:<34} budget {budget:4.2f}: accuracy {accuracy:.4f}",
                          flush=True)
        figure, axis = plt.subplots(figsize=(6.4, 4.2))
        for name, values in curves.items():
            axis.plot(args.budgets, values, marker="o", label=name,
                      linestyle="--" if "per-class" in name else "-")
        axis.axhline(clean, color="k", linewidth=0.8, linestyle=":", label="clean")
        axis.set_xlabel("budget: relative L2 change of each training image")
        axis.set_ylabel("test accuracy (softmax regression)")
        axis.set_title(f"MNIST, {len(y):,} training images")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(staging / "budget_curve.png", dpi=100)
        plt.close(figure)
        result = {"clean_accuracy": clean, "budgets": args.budgets, "accuracy": curves,
                  "direction_seconds": seconds, "data": dataset.summary(),
                  "versions": report.package_versions(),
                  "files": ["report.json", "report.md", "budget_curve.png"]}
        report.write_json(staging / report.REPORT_JSON, result)
        rows = [[name, *values] for name, values in curves.items()]
        (staging / report.REPORT_MD).write_text(
            "# Influence reformer: accuracy against budget\n\n"
            f"Clean accuracy {clean:.4f}.\n\n"
            + report.markdown_table(["noise", *[f"{b:.2f}" for b in args.budgets]], rows)
            + "\n\n![curve](budget_curve.png)\n", encoding="utf-8")
    print(f"report in {args.out}")


if __name__ == "__main__":
    main()
