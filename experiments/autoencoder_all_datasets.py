"""The seed's autoencoder-reformer table on MNIST, CIFAR-10, Adult and ClaMP malware.

For each dataset, one main-job run (``jaxreform.pipeline.run_main_job``, softmax regression;
a convolutional autoencoder for the images, ``--image-autoencoder dense`` for a dense one, and
a dense autoencoder for tabular data; images use a BCE reconstruction with a sigmoid code,
tabular data an MSE one with a linear code) gives: clean and reformed test accuracy and their
difference (the seed: within 5 points), the mean relative L0 / L2 / L∞ change of the
training data (the seed: at least 45% on MNIST and CIFAR-10), the loss-threshold membership
advantage before and after, and the reforming overhead (time to reform / time to train the
clean model).

    python experiments/autoencoder_all_datasets.py --data-dir ../shared/data --out runs/ae_all

``--num-train`` / ``--num-test`` / ``--epochs`` / ``--image-epochs`` shrink it (CI runs a
reduced version). Each dataset's full report folder is kept under ``--out`` and its row is read
back from that folder's ``report.json``; the table is ``table.md`` and ``table.json``. With
``--resume`` a dataset whose report folder already holds a report of exactly the same resolved
configuration is not run again (the full table takes about an hour on two CPU cores, most of
it the CIFAR-10 autoencoder, so an interrupted run need not start over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxreform import pipeline, report, train
from jaxreform.cli import exit_on_error

DATASETS = ("mnist", "cifar10", "adult", "malware")
IMAGES = ("mnist", "cifar10")
COLUMNS = ["dataset", "train / test", "autoencoder", "epochs", "clean accuracy",
           "reformed accuracy",
           "difference (points)", "within 5 points", "L0 change", "L2 change", "L∞ change",
           "MIA advantage clean", "MIA advantage reformed", "reform overhead"]


def dataset_config(name: str, args) -> pipeline.RunConfig:
    """The main-job configuration of one dataset's row."""
    image = name in IMAGES
    epochs = (args.image_epochs or args.epochs) if image else args.epochs
    architecture = args.image_autoencoder if image else "dense"
    hidden = {"conv": (16, 32), "dense": (512,) if image else (64,)}[architecture]
    return pipeline.RunConfig(
        dataset=name, data_dir=args.data_dir, reformer="autoencoder", seed=args.seed,
        num_train=args.num_train, num_test=args.num_test,
        classifier=train.TrainConfig(epochs=epochs, batch_size=128, learning_rate=1e-3),
        autoencoder_training=train.TrainConfig(epochs=epochs, batch_size=128,
                                               learning_rate=1e-3),
        autoencoder_architecture=architecture, autoencoder_hidden=hidden)




def table_row(payload: dict) -> list:
    """One row of the table from a main-job report (``report.json`` as a dict)."""
    config, results = payload["config"], payload["results"]
    drop = results["accuracy_drop"]
    d = results["distances"]
    mia = results["membership_inference"]
    architecture = (f"{config['autoencoder_architecture']} "
                    f"{tuple(config['autoencoder_hidden'])}")
    return [config["dataset"], f"{payload['data']['num_train']} / {payload['data']['num_test']}",
            architecture, config["classifier"]["epochs"],
            results["clean"]["test_accuracy"], results["reformed"]["test_accuracy"],
            -100 * drop, drop <= 0.05, d["l0"]["mean"], d["l2"]["mean"], d["linf"]["mean"],
            mia["clean"]["advantage"], mia["reformed"]["advantage"],
            results["timing"]["reform_overhead"]]


def run_one(name: str, args, out: Path) -> tuple[list, bool]:
    """One dataset's row and whether it was reused from a previous report (``--resume``)."""
    config = dataset_config(name, args)
    payload = report.matching_report(out / name, config, table_row) if args.resume else None
    reused = payload is not None
    if not reused:
        payload = pipeline.run_main_job(config, out / name, overwrite=True,
                                        progress=not args.quiet)
    return table_row(payload), reused


def main(argv=None) -> list[list]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None,
                        help="folder with the datasets (default: $JAXREFORM_DATA_DIR)")
    parser.add_argument("--out", required=True,
                        help="folder for the table and one report folder per dataset")
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, from {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs of the autoencoder and of the task model (default: 10)")
    parser.add_argument("--image-epochs", type=int, default=3,
                        help="epochs for the image datasets (default: 3; 0: same as --epochs)")
    parser.add_argument("--num-train", type=int, default=None,
                        help="first n training examples of each dataset (default: all)")
    parser.add_argument("--num-test", type=int, default=None,
                        help="first n test examples (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-autoencoder", default="conv", choices=("dense", "conv"),
                        help="autoencoder of the image datasets (default: conv; tabular data: "
                             "always dense)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse a dataset's report made with the same configuration")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    names = args.datasets.split(",")
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, reused = [], []
    for name in names:
        row, was_reused = run_one(name, args, out)
        rows.append(row)
        if was_reused:
            reused.append(name)
        print(row, flush=True)
    table = report.markdown_table(COLUMNS, rows)
    note = (f"\n\nReused from an earlier run with the same configuration: "
            f"{', '.join(reused)}.\n" if reused else "\n")
    (out / "table.md").write_text(
        "# Autoencoder reformer on every dataset (softmax regression)"
        f"\n\n{table}{note}", encoding="utf-8")
    report.write_json(out / "table.json", {"columns": COLUMNS, "rows": rows,
                                           "reused": reused, "args": vars(args)})
    print(table + note)
    return rows


if __name__ == "__main__":
    sys.exit(exit_on_error(main))
