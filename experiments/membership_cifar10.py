"""Membership inference against Shokri et al.'s CIFAR-10 CNN: every attack, per-class precision.

Setting (the paper's target; sizes 2,500 / 5,000 / 10,000 / 15,000 via --train-size N):

1. draw 2N training-split images as the candidate pool; the target trains on one random half
   (its members) and never sees the other (its non-members), so evaluation is balanced;
2. train K shadow models of the target's architecture, each on a random half of the same pool
   (:func:`lira_masks`: every candidate is in about K/2 shadows), all with the library's
   many-model strategy (a Python loop over one jitted epoch for this CNN on CPU);
3. attack the target with the loss threshold, LiRA online/offline x per-example/fixed
   variance (optionally with mirrored queries), and Shokri's per-class attack models on
   sorted and on full prediction vectors, trained on the same shadows' in/out predictions.

Reusing LiRA's shadows for Shokri's attack models is a stronger attacker than the paper's
(whose shadow data is disjoint from the target's candidates); pass --shokri-disjoint to train
Shokri's shadows on test-split images instead (K more models).

Writes to --out: ``results.json`` (every metric, per-class precision and recall, the target's
train/test accuracy, the config) and ``roc.png`` (log-log ROC of all attacks).

Usage:
    python experiments/membership_cifar10.py --data-dir ../shared/data --out runs/mia-cifar10
    python experiments/membership_cifar10.py --data-dir ../shared/data --train-size 500 \
        --shadows 8 --epochs 15 --out runs/mia-small     # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import plots
from jaxreform.attacks import membership as mia
from jaxreform.attacks.membership_models import ShokriCifarCNN
from jaxreform.data.cifar10 import CLASS_NAMES, load_cifar10
from jaxreform.train import TrainConfig, accuracy, per_example_losses


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
    return parser.parse_args()


def train_target_and_shadows(key, model, pool, args):
    """Returns (stacked params [K + 1]: target first, masks [K + 1, 2N])."""
    masks = mia.lira_masks(jax.random.fold_in(key, 0), len(pool[1]), args.shadows + 2)
    masks = masks[: args.shadows + 1]
    params = mia.init_stacked(jax.random.fold_in(key, 1), model, pool[0][:1], len(masks))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate)
    params = mia.train_models(jax.random.fold_in(key, 2), model.apply, params, *pool,
                              mia.mask_to_index(masks), config)
    return params, masks, config


def shokri(key, model, params, masks, pool, test, target, args, config):
    """Shokri's attack models (sorted, then full vector) on the shadows (or on K disjoint
    shadows), run on the target."""
    shadows = jax.tree.map(lambda leaf: leaf[1:], params)
    inputs, labels = pool
    in_index, out_index = mia.mask_to_index(masks[1:]), mia.mask_to_index(~masks[1:])
    if args.shokri_disjoint:
        inputs, labels = test
        in_index, out_index = mia.shadow_splits(jax.random.fold_in(key, 3), len(labels),
                                                args.shadows, args.train_size, disjoint=False)
        shadows = mia.init_stacked(jax.random.fold_in(key, 4), model, inputs[:1], args.shadows)
        shadows = mia.train_models(jax.random.fold_in(key, 5), model.apply, shadows, inputs,
                                   labels, in_index, config)
    members = masks[0]
    results = []
    for sort in (True, False):  # sorted vector (later work) and full vector (the paper)
        features, classes, member = mia.shadow_attack_data(model.apply, shadows, inputs, labels,
                                                           in_index, out_index, sort=sort)
        attack = mia.train_attack_models(jax.random.fold_in(key, 6), features, classes, member,
                                         10)
        results.append(mia.shokri_attack(attack, model.apply, target,
                                         (pool[0][members], pool[1][members]),
                                         (pool[0][~members], pool[1][~members]), 10, sort=sort))
    return results


def run_attacks(key, model, params, masks, pool, test, args, config):
    target = jax.tree.map(lambda leaf: leaf[0], params)
    members = masks[0]
    confidences = mia.stacked_confidences(model.apply, params, *pool, flip=args.flip)
    results = [mia.lira_attack(confidences[0], confidences[1:], masks[1:], members, pool[1], 10,
                               online=online, fixed_variance=fixed)
               for online in (True, False) for fixed in (False, True)]
    losses = np.asarray(per_example_losses(model.apply, target, *pool))
    results.append(mia.loss_threshold_attack(losses[members], losses[~members],
                                             pool[1][members], pool[1][~members], 10))
    results.extend(shokri(key, model, params, masks, pool, test, target, args, config))
    return target, results


def print_tables(results, target_accuracy):
    print(f"\ntarget accuracy: train {target_accuracy['train']:.4f}, "
          f"test {target_accuracy['test']:.4f}")
    print(f"\n{'attack':<36} {'precision':>9} {'recall':>7} {'AUC':>6} {'adv.':>6} "
          f"{'TPR@0.1%':>9} {'TPR@1%':>7}")
    for r in results:
        m = r.metrics
        print(f"{r.name:<36} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['auc']:>6.3f} "
              f"{m['advantage']:>6.3f} {m['tpr_at_0.1%_fpr']:>9.3f} {m['tpr_at_1%_fpr']:>7.3f}")
    print("\nper-class precision")
    short = [r.name.replace("lira ", "").replace(", per-example variance", "/ex")
             .replace(", fixed variance", "/fixed").replace(" threshold", "").replace(", full vector", "/full") for r in results]
    print(f"{'class':<11}" + "".join(f"{name:>15}" for name in short))
    for c, name in enumerate(CLASS_NAMES):
        print(f"{name:<11}" + "".join(f"{r.class_precision[c]:>15.3f}" for r in results))


def main():
    args = parse_args()
    start = time.perf_counter()
    key = jax.random.key(args.seed)
    dataset = load_cifar10(args.data_dir)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 10),
                                              len(dataset.train_labels)))[: 2 * args.train_size]
    pool = (dataset.train_inputs[order], dataset.train_labels[order])
    test = (dataset.test_inputs, dataset.test_labels)
    model = ShokriCifarCNN(features=tuple(int(f) for f in args.features.split(",")))
    params, masks, config = train_target_and_shadows(key, model, pool, args)
    target, results = run_attacks(key, model, params, masks, pool, test, args, config)
    members = masks[0]
    target_accuracy = {
        "train": accuracy(model.apply, target, jnp.asarray(pool[0][members]), pool[1][members]),
        "test": accuracy(model.apply, target, jnp.asarray(test[0]), test[1]),
    }
    print_tables(results, target_accuracy)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.roc_loglog(mia.roc_curves(results), out / "roc.png",
                     title="membership inference on CIFAR-10")
    report = {"config": vars(args), "dataset": dataset.summary(),
              "target_accuracy": target_accuracy, "seconds": time.perf_counter() - start,
              "attacks": {r.name: {**r.metrics,
                                   "class_precision": r.class_precision.tolist(),
                                   "class_recall": r.class_recall.tolist()} for r in results}}
    (out / "results.json").write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    print(f"\nwrote {out / 'results.json'} and {out / 'roc.png'} "
          f"({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
