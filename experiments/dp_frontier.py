"""Privacy-utility frontier on MNIST: clean, DP-SGD, autoencoder reformer and its DP variants.

Each point is one main-job run (``jaxreform.pipeline.run_main_job``, softmax regression task
model), so each has its full report folder under ``--out``. The summary table gives, per
variant: test accuracy, relative L2 change of the training data, the loss-threshold membership
advantage, and every ε with what it covers; ``frontier.png`` plots accuracy against the ε of
the released task model (non-private variants at the right edge, marked "no DP").

    python experiments/dp_frontier.py --data-dir ../shared/data --out results/dp_frontier
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jaxreform import pipeline, report, train  # noqa: E402

VARIANTS = {
    "clean (no reformer)": dict(reformer="none"),
    "DP-SGD task model eps=1": dict(reformer="none", dp_epsilon=1.0),
    "DP-SGD task model eps=4": dict(reformer="none", dp_epsilon=4.0),
    "autoencoder reformer": dict(reformer="autoencoder"),
    "(a) DP autoencoder eps=2": dict(reformer="dp-autoencoder", dp_autoencoder_epsilon=2.0),
    "(a)+(b) + DP task model eps=2": dict(reformer="dp-autoencoder", dp_autoencoder_epsilon=2.0,
                                          dp_epsilon=2.0),
    "(c) noised codes eps=8, code 32": dict(reformer="dp-autoencoder", code_noise_epsilon=8.0,
                                            code_size=32),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, points = [], []
    for index, (name, settings) in enumerate(VARIANTS.items()):
        config = pipeline.RunConfig(
            dataset="mnist", data_dir=args.data_dir, seed=args.seed, num_train=args.num_train,
            classifier=train.TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3),
            autoencoder_training=train.TrainConfig(epochs=args.epochs, batch_size=128,
                                                   learning_rate=1e-3),
            **settings)
        payload = pipeline.run_main_job(config, out / f"variant_{index}", overwrite=True,
                                        progress=False)
        results = payload["results"]
        guarantees = results["privacy"]
        model_eps = next((g["epsilon"] for g in guarantees if g["covers"].startswith(
            "the released task model")), None)
        distances = results["distances"]
        rows.append([name, results["reformed"]["test_accuracy"],
                     distances["l2"]["mean"] if distances else None,
                     results["membership_inference"]["reformed"]["advantage"],
                     "; ".join(f"ε={g['epsilon']:.2f} on {g['covers'].split(' (')[0]}"
                               for g in guarantees) or "none"])
        points.append((name, model_eps, results["reformed"]["test_accuracy"]))
        print(rows[-1], flush=True)
    clean_accuracy = rows[0][1]
    table = report.markdown_table(
        ["variant", "test accuracy", "relative L2 change", "MIA advantage", "DP guarantees"],
        rows)
    (out / "frontier.md").write_text(
        f"# Privacy-utility frontier, MNIST, softmax regression, {args.epochs} epochs\n\n"
        f"{table}\n\nNon-private clean accuracy: {clean_accuracy:.4f}.\n")
    report.write_json(out / "frontier.json", {"rows": rows, "args": vars(args)})
    figure, axis = plt.subplots(figsize=(6, 4))
    finite = [e for _, e, _ in points if e is not None]
    right = 2 * max(finite) if finite else 10.0
    for name, eps, accuracy in points:
        x = eps if eps is not None else right
        axis.scatter([x], [accuracy], label=name)
    axis.axvline(right, color="grey", linestyle=":", linewidth=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("ε of the released task model (right edge: no DP on the model)")
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "frontier.png", dpi=120)
    print(table)


if __name__ == "__main__":
    main()
