"""Membership inference against Shokri et al.'s CIFAR-10 CNN: every attack, per-class precision.

A thin driver over :mod:`jaxreform.attacks.membership_job` (also ``jaxreform attack
membership``), whose docstring gives the setting.

Usage:
    python experiments/membership_cifar10.py --data-dir ../shared/data --out runs/mia-cifar10
    python experiments/membership_cifar10.py --data-dir ../shared/data --train-size 500 \
        --shadows 8 --epochs 15 --out runs/mia-small     # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse

from jaxreform.attacks.membership_job import (
    MembershipJobConfig,
    render_markdown,
    run_membership_job,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-size", type=int, default=2500, help="N, the target's members")
    parser.add_argument("--shadows", type=int, default=16, help="K (even)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--features", default="32,64", help="filters of the two convolutions")
    parser.add_argument("--flip", action="store_true", help="LiRA: also query mirrored images")
    parser.add_argument("--shokri-disjoint", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args()


def main():
    args = parse_args()
    config = MembershipJobConfig(
        data_dir=args.data_dir, train_size=args.train_size, shadows=args.shadows,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        features=tuple(int(f) for f in args.features.split(",")), flip=args.flip,
        shokri_disjoint=args.shokri_disjoint, seed=args.seed)
    payload = run_membership_job(config, args.out, overwrite=args.overwrite)
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
