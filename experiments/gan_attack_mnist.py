"""The GAN attack of Hitaj et al. (2017) on MNIST, undefended and under each defence.

One ``jaxreform attack gan`` run (:func:`jaxreform.collab.job.run_gan_job`) per defence, all with
the same collaboration (participant 0 holds digits 0-4, the adversary 5-9, victim digit 3):
none, the autoencoder reformer (every participant), the influence reformer (the victim's
data only), and record-level DP on the uploads at a few ε. Writes one
table (``table.md`` / ``table.json``: final and peak judge victim-rate, SSIM to the nearest
victim image, shared-model accuracy; the mean is over the measured rounds after round 0,
steadier than the last round alone) and one plot (``attack.png``: every measure against the
round, one line per defence), beside each run's report folder.

    python experiments/gan_attack_mnist.py --data-dir ../shared/data --out results/gan_mnist

``--resume`` reuses a defence's report made with the same resolved configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jaxreform import plots, report
from jaxreform.cli import exit_on_error
from jaxreform.collab import dssgd, gan, job

COLUMNS = ["defence", "shared accuracy", "judge victim rate", "mean victim rate",
           "peak victim rate",
           "first round ≥ 50%", "nearest SSIM", "generator restarts", "ε (record-level)",
           "s / round"]


def defences(args) -> dict[str, job.GanJobConfig]:
    """The runs of the table, by name."""
    base = job.GanJobConfig(
        data_dir=args.data_dir, max_per_participant=args.max_per_participant,
        eval_every=args.eval_every, seed=args.seed,
        attack=gan.GanAttackConfig(victim_class=args.victim_class),
        collab=dssgd.CollabConfig(rounds=args.rounds))
    runs = {"none": base,
            "autoencoder": dataclasses.replace(base, reformer="autoencoder"),
            "influence (victim only)": dataclasses.replace(base, reformer="influence")}
    for epsilon in args.dp_epsilons:
        runs[f"DP ε={epsilon:g}"] = dataclasses.replace(
            base, collab=dataclasses.replace(base.collab, dp_epsilon=epsilon))
    return runs




def table_row(name: str, payload: dict) -> list:
    """One row of the table from a GAN-attack report."""
    history = payload["history"]
    first = next((row["round"] for row in history if row["victim_rate"] >= 0.5), None)
    epsilons = [g["epsilon"] for g in payload["privacy"]]
    trained = [row["victim_rate"] for row in history if row["round"] > 0]
    return [name, payload["final"]["shared_accuracy"], payload["final"]["victim_rate"],
            sum(trained) / len(trained), max(row["victim_rate"] for row in history),
            "never" if first is None else first,
            payload["final"]["nearest_ssim"], payload["final"].get("generator_restarts", 0),
            max(epsilons) if epsilons else "none",
            payload["seconds_per_round"]]


def main(argv=None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--victim-class", type=int, default=3)
    parser.add_argument("--dp-epsilons", type=lambda t: [float(v) for v in t.split(",")],
                        default=[8.0, 1.0])
    parser.add_argument("--max-per-participant", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, histories = [], {}
    for index, (name, config) in enumerate(defences(args).items()):
        folder = out / f"run_{index}"
        payload = (report.matching_report(folder, config, lambda p: table_row(name, p))
                   if args.resume else None)
        if payload is None:
            payload = job.run_gan_job(config, folder, overwrite=True, progress=not args.quiet)
        rows.append(table_row(name, payload))
        histories[name] = payload["history"]
        print(rows[-1], flush=True)
    plots.attack_rounds(histories, out / "attack.png")
    table = report.markdown_table(COLUMNS, rows)
    (out / "table.md").write_text(
        f"# GAN attack on collaborative MNIST (victim digit {args.victim_class}, "
        f"{args.rounds} rounds)\n\n{table}\n\nFolders: "
        + ", ".join(f"run_{i} = {name}" for i, name in enumerate(histories))
        + "\n\n![attack against round](attack.png)\n", encoding="utf-8")
    report.write_json(out / "table.json", {"columns": COLUMNS, "rows": rows,
                                           "args": vars(args)})
    print(table)
    return rows


if __name__ == "__main__":
    sys.exit(exit_on_error(main))
