"""Membership inference on CIFAR-10 against clean, reformed and DP-SGD targets, by size.

For each training size N and each defence, one ``jaxreform attack membership`` run
(:func:`jaxreform.attacks.membership_job.run_membership_job`; its docstring gives the setting).
Writes ``table.md`` / ``table.json`` (target train and test accuracy and their gap, beside
Shokri's precision, the loss-threshold advantage, and LiRA's AUC and TPR at 1% FPR), a per-class
precision chart of Shokri's attack (full prediction vectors, the paper's) at the largest N,
``class_precision.png``, and ``trend.png``: precision and train-test gap against N, one line
per defence (the paper's trend: precision falls as N grows, tracking the gap).

    python experiments/membership_defences.py --data-dir ../shared/data --out runs/mia-defences
    python experiments/membership_defences.py --data-dir ../shared/data --train-sizes 500 \
        --defences none,autoencoder,influence,dp-sgd --dp-epsilon 8 --out runs/mia-defences --resume

Defences: ``none``, ``autoencoder`` and ``influence`` (the reformers) and ``dp-sgd`` (the
target and every shadow trained with DP-SGD to ``--dp-epsilon``).

The paper's sizes (2,500 to 15,000, 30 epochs, 16 shadows, 32/64 filters) take hours per size
on two CPU cores; the defaults are a reduced setting. ``--resume`` reuses a run whose report
holds the same resolved configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxreform import _validate, plots, report
from jaxreform.cli import exit_on_error
from jaxreform.attacks import membership_job
from jaxreform.data.cifar10 import CLASS_NAMES

SHOKRI = "shokri, full vector"
LIRA = "lira online, fixed variance"
DEFENCES = ("none", "autoencoder", "influence", "dp-sgd")
COLUMNS = ["N", "defence", "train accuracy", "test accuracy", "gap", "Shokri precision",
           "threshold advantage", "LiRA AUC", "LiRA TPR at 1% FPR", "seconds"]




def table_row(size: int, defence: str, payload: dict) -> list:
    """One row of the table from a membership report."""
    accuracy, attacks = payload["target_accuracy"], payload["attacks"]
    return [size, defence, accuracy["train"], accuracy["test"],
            accuracy["train"] - accuracy["test"], attacks[SHOKRI]["precision"],
            attacks["loss threshold"]["advantage"], attacks[LIRA]["auc"],
            attacks[LIRA]["tpr_at_1%_fpr"], payload["seconds"]]


def main(argv=None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-sizes", default="250,500,1000",
                        help="comma-separated N (default: 250,500,1000)")
    parser.add_argument("--defences", default="none,autoencoder",
                        help="comma-separated, from none, autoencoder, influence, dp-sgd "
                             "(default: none,autoencoder)")
    parser.add_argument("--dp-epsilon", type=float, default=8.0,
                        help="epsilon of the dp-sgd defence")
    parser.add_argument("--shadows", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--features", default="8,16", help="filters of the two convolutions")
    parser.add_argument("--autoencoder-steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in args.train_sizes.split(",")]
    defences = args.defences.split(",")
    for defence in defences:
        _validate.check_choice("defence", defence, DEFENCES)
    rows, payloads = [], {}
    for size in sizes:
        for defence in defences:
            config = membership_job.MembershipJobConfig(
                data_dir=args.data_dir, train_size=size, shadows=args.shadows,
                epochs=args.epochs, features=tuple(int(f) for f in args.features.split(",")),
                reformer="none" if defence == "dp-sgd" else defence,
                dp_epsilon=args.dp_epsilon if defence == "dp-sgd" else None,
                autoencoder_steps=args.autoencoder_steps, seed=args.seed)
            folder = out / f"n{size}_{defence}"
            payload = (report.matching_report(
                folder, config, lambda p: table_row(size, defence, p)) if args.resume else None)
            if payload is None:
                payload = membership_job.run_membership_job(config, folder, overwrite=True)
            payloads[size, defence] = payload
            rows.append(table_row(size, defence, payload))
            print(rows[-1], flush=True)
    largest = max(sizes)
    plots.grouped_bars(
        {label: {defence: payloads[largest, defence]["attacks"][SHOKRI]["class_precision"][c]
                 for defence in defences} for c, label in enumerate(CLASS_NAMES)},
        out / "class_precision.png", ylabel="attack precision",
        title=f"Shokri et al.'s attack, per class, N = {largest}")
    plots.lines({f"{measure}, {defence}": [row[column] for row in rows if row[1] == defence]
                 for defence in defences
                 for measure, column in (("Shokri precision", 5), ("train-test gap", 4))},
                sizes, out / "trend.png", xlabel="target training size N", ylabel="value",
                title="membership precision and generalisation gap against N")
    table = report.markdown_table(COLUMNS, rows)
    (out / "table.md").write_text(
        "# Membership inference on CIFAR-10: clean and defended targets\n\n"
        f"{args.shadows} shadows, {args.epochs} epochs, filters {args.features}.\n\n{table}\n\n"
        "![per-class precision](class_precision.png)\n\n![trend](trend.png)\n",
        encoding="utf-8")
    report.write_json(out / "table.json", {"columns": COLUMNS, "rows": rows, "args": vars(args)})
    print(table)
    return rows


if __name__ == "__main__":
    sys.exit(exit_on_error(main))
