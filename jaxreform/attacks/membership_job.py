"""The membership-inference job behind ``jaxreform attack membership`` (CIFAR-10).

Setting (Shokri et al.'s CIFAR-10 target; their sizes 2,500 / 5,000 / 10,000 / 15,000):

1. draw 2N training-split images as the candidate pool; the target trains on one random half
   (its members) and never sees the other (its non-members), so evaluation is balanced;
2. train K shadow models of the target's architecture, each on a random half of the same pool
   (:func:`~jaxreform.attacks.membership.lira_masks`), with the library's many-model strategy;
3. attack the target with the chosen methods: the loss threshold (Yeom et al.), LiRA online
   and offline × per-example and fixed variance (Carlini et al.), and Shokri's per-class
   attack models on sorted and on full prediction vectors.

Reusing LiRA's shadows for Shokri's attack models is a stronger attacker than the paper's
(whose shadow data is disjoint from the target's candidates); ``shokri_disjoint`` trains
Shokri's shadows on test-split images instead. :func:`run_membership_job` writes
``report.json`` (every metric, per-class precision and recall, target accuracy, config),
``report.md`` and ``roc.png`` (log-log ROC of every attack) into a report folder.

Defence (``reformer="autoencoder"``): the data owner fits the convolutional autoencoder
reformer on its members only, discards the decoder and trains the target on the codes; the
deployed model is target ∘ encoder, so a query with an image is a query with its code. The
shadow models are trained on codes of the same encoder: this attacker knows the deployed
encoder, a stronger one than a black-box attacker, so the defence is not flattered.

Defence (``dp_epsilon``): DP-SGD (Abadi et al. 2016; :func:`jaxreform.dp.fit_dp`, Poisson
lots, per-example clipping, σ from dp-accounting) trains the target to (ε, δ) on its members.
The attacker knows the training algorithm, so every shadow (and Shokri's disjoint shadows) is
trained with the same DP-SGD settings; the K + 1 runs go one after another (each is one jitted
step per lot; on CPU the loop is the library's many-model strategy for CNNs anyway). Combined
with ``reformer="autoencoder"``, DP-SGD trains on the codes.

Defence (``reformer="influence"``): every model's training images are moved by noise
orthogonal to their influence directions (:class:`~jaxreform.reformers.InfluenceReformer` with
softmax regression as the influence model, the seed's choice, clipped to [0, 1]) at
``influence_budget`` relative L2 change. The data owner fits the reformer on the target's
members; the attacker fits it on each shadow's training set, so the shadows mimic the
target's training. The deployed model reads raw images, and the attacks query the original
(unreformed) images, which are the records the attacker holds.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxreform import _validate, dp, plots, report
from jaxreform.attacks import membership as mia
from jaxreform.attacks.membership_models import ShokriCifarCNN
from jaxreform.data.cifar10 import CLASS_NAMES, load_cifar10
from jaxreform.errors import ConfigError
from jaxreform.metrics import summarize_distances
from jaxreform.reformers import InfluenceReformer
from jaxreform.reformers import autoencoder as ae
from jaxreform.train import TrainConfig, accuracy, per_example_losses

METHODS = ("all", "threshold", "lira", "shokri")
REFORMERS = ("none", "autoencoder", "influence")
MIN_INFLUENCE_MEMBERS = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class MembershipJobConfig:
    """Settings of one membership-inference run.

    Attributes:
        data_dir: Folder holding ``cifar10/`` (or ``cifar-10-batches-bin/``).
        method: ``"all"``, ``"threshold"``, ``"lira"`` or ``"shokri"``.
        train_size: N, the target's members (as many non-members).
        shadows: K shadow models (even, at least 2 for LiRA).
        epochs, batch_size, learning_rate: Training of the target and of every shadow.
        features: Filters of the target CNN's two convolutions.
        flip: LiRA: also query mirrored images.
        shokri_disjoint: Train Shokri's shadows on test-split images (K more models).
        reformer: ``"none"``, ``"autoencoder"`` or ``"influence"`` (the defences; see the
            module docstring).
        autoencoder_steps: Adam steps of the defence's autoencoder (batch 128; rounded up to
            whole epochs over the members). Counted in steps because the members are few: 5
            epochs over 250 images are 10 steps, which leaves the codes near their
            initialisation and the target unable to learn from them.
        influence_budget: Relative L2 change of the influence defence.
        dp_epsilon: If set, the target and every shadow train with DP-SGD to this ε (the
            defence; see the module docstring), for ``epochs`` epochs with lots of
            ``batch_size`` and Adam at ``learning_rate``.
        dp_delta: δ of the DP guarantee (below 1/N).
        dp_clip_norm: Per-example gradient clip norm C.
        seed: The seed of every random choice.
    """

    data_dir: str | None = None
    method: str = "all"
    train_size: int = 2500
    shadows: int = 16
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    features: tuple[int, ...] = (32, 64)
    flip: bool = False
    shokri_disjoint: bool = False
    reformer: str = "none"
    autoencoder_steps: int = 400
    influence_budget: float = 0.3
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_clip_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        _validate.check_choice("membership method", self.method, METHODS)
        _validate.check_choice("reformer for membership inference", self.reformer, REFORMERS)
        _validate.check_positive(influence_budget=self.influence_budget)
        _validate.check_integers(autoencoder_steps=self.autoencoder_steps)
        _validate.check_positive(autoencoder_steps=self.autoencoder_steps)
        _validate.check_integers(train_size=self.train_size, shadows=self.shadows,
                                 epochs=self.epochs, batch_size=self.batch_size)
        _validate.check_positive(train_size=self.train_size, shadows=self.shadows,
                                 epochs=self.epochs, batch_size=self.batch_size,
                                 learning_rate=self.learning_rate)
        if self.batch_size > self.train_size:
            raise ConfigError(f"batch_size={self.batch_size} exceeds the {self.train_size} "
                              "examples each model trains on; lower --batch-size.")
        if self.reformer == "influence":
            InfluenceReformer(budget=self.influence_budget)  # refuses a bad budget now
            if self.train_size < MIN_INFLUENCE_MEMBERS:
                raise ConfigError(f"the influence defence needs train_size >= "
                                  f"{MIN_INFLUENCE_MEMBERS}: its influence model holds out 10% "
                                  f"of each training set as the reference, got "
                                  f"{self.train_size}.")
            if self.shokri_disjoint:
                raise ConfigError("shokri_disjoint trains extra shadows on test images, which "
                                  "the influence defence would have to reform as well; not "
                                  "supported.")
        if self.dp_epsilon is not None:
            # Checks ε, δ and C the way the DP-SGD run will (δ against N comes at plan time).
            self.dp_config()
        if self.shadows < 2 or self.shadows % 2:
            raise ConfigError(f"shadows must be even and at least 2 (each example is in half "
                              f"of them), got {self.shadows}.")

    def dp_config(self) -> dp.DpSgdConfig:
        """The DP-SGD settings of the target and of every shadow (needs ``dp_epsilon``)."""
        return dp.DpSgdConfig(target_epsilon=self.dp_epsilon, delta=self.dp_delta,
                              clip_norm=self.dp_clip_norm, epochs=self.epochs,
                              expected_batch_size=self.batch_size, optimizer="adam",
                              learning_rate=self.learning_rate)

    def runs(self, name: str) -> bool:
        """Whether attack family ``name`` is part of this run."""
        return self.method in ("all", name)


def draw_masks(key, pool_size: int, config: MembershipJobConfig) -> np.ndarray:
    """``[K + 1, 2N]`` membership masks: the target's first, then each shadow's."""
    masks = mia.lira_masks(jax.random.fold_in(key, 0), pool_size, config.shadows + 2)
    return masks[: config.shadows + 1]


def train_stack(key, model, params, inputs, labels, index, config: MembershipJobConfig):
    """Trains the stacked models (model i on ``inputs[index[i]]``) as the job's target was
    trained: :func:`membership.train_models`, or DP-SGD one model at a time when
    ``config.dp_epsilon`` is set. Returns (params, the DP plans: one per model, or None)."""
    if config.dp_epsilon is None:
        train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                                   learning_rate=config.learning_rate)
        return mia.train_models(key, model.apply, params, inputs, labels, index,
                                train_config), None
    # Every model trains on as many rows, so σ is calibrated to ε once and reused.
    dp_config = config.dp_config()
    dp_config = dataclasses.replace(
        dp_config, target_epsilon=None,
        noise_multiplier=dp_config.plan(index.shape[1]).noise_multiplier)
    trained, plans = [], []
    # Known shortcoming: one model at a time. On CPU that is the many-model strategy anyway
    # (parallel.choose_strategy); a vmapped DP-SGD would need every model's Poisson lots
    # padded to one size, and only an accelerator would gain from it.
    for i, rows in enumerate(tqdm(index, desc="DP-SGD models", leave=False)):
        result = dp.fit_dp(jax.random.fold_in(key, i), model.apply,
                           dp.cross_entropy_example_loss,
                           jax.tree.map(lambda leaf, i=i: leaf[i], params),
                           (jnp.asarray(inputs[rows]), jnp.asarray(labels[rows])),
                           dp_config, progress=False,
                           description=f"DP-SGD model {i}")
        trained.append(result.params)
        plans.append(result.plan)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trained), plans


def train_target_and_shadows(key, model, pool, masks, config: MembershipJobConfig,
                             training=None):
    """Returns (stacked params [K + 1], target first; DP plans or None).

    ``training``: optional ``((inputs, labels), index [K + 1, N])`` the models train on
    instead of ``pool`` and ``masks`` (the influence defence's per-model reformed sets).
    """
    params = mia.init_stacked(jax.random.fold_in(key, 1), model, pool[0][:1], len(masks))
    (inputs, labels), index = training or (pool, mia.mask_to_index(masks))
    return train_stack(jax.random.fold_in(key, 2), model, params, inputs, labels, index,
                       config)


def influence_training_sets(key, pool, masks, config: MembershipJobConfig):
    """Each model's training set, reformed by an influence reformer fitted on that set.

    Returns:
        ``((inputs [(K + 1)·N, ...], labels), index [K + 1, N], info)``: model m trains on
        rows ``m·N .. (m + 1)·N - 1``.
    """
    inputs, labels = pool
    index = mia.mask_to_index(masks)
    reformer = InfluenceReformer(
        model="softmax", budget=config.influence_budget, clip=(0.0, 1.0),
        train_config=TrainConfig(epochs=10, batch_size=min(128, index.shape[1] // 2)))
    # (train_size >= MIN_INFLUENCE_MEMBERS keeps that batch at least 10.)
    start = time.perf_counter()
    blocks, cosines = [], []
    for m, rows in enumerate(tqdm(index, desc="influence reformer per model", leave=False)):
        fitted = reformer.fit(jax.random.fold_in(key, m), jnp.asarray(inputs[rows]),
                              jnp.asarray(labels[rows]), progress=False)
        blocks.append(np.asarray(fitted.reformed_train))
        cosines.append(fitted.info.get("residual_cosine_max", 0.0))
    info = {"reformer": "influence", "budget": config.influence_budget,
            "influence_model": "softmax", "clip": [0.0, 1.0],
            "residual_cosine_max": float(max(cosines)),
            "seconds": time.perf_counter() - start,
            "member_distances": summarize_distances(inputs[index[0]], blocks[0])}
    reformed_index = np.arange(index.size).reshape(index.shape)
    return (np.concatenate(blocks), labels[index.reshape(-1)]), reformed_index, info


def _shokri(key, model, params, masks, pool, test, target, config):
    shadows = jax.tree.map(lambda leaf: leaf[1:], params)
    inputs, labels = pool
    in_index, out_index = mia.mask_to_index(masks[1:]), mia.mask_to_index(~masks[1:])
    if config.shokri_disjoint:
        inputs, labels = test
        in_index, out_index = mia.shadow_splits(jax.random.fold_in(key, 3), len(labels),
                                                config.shadows, config.train_size,
                                                disjoint=False)
        shadows = mia.init_stacked(jax.random.fold_in(key, 4), model, inputs[:1], config.shadows)
        shadows, _ = train_stack(jax.random.fold_in(key, 5), model, shadows, inputs, labels,
                                 in_index, config)
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


def run_attacks(key, model, params, masks, pool, test, config):
    """Every chosen attack against the target (model 0); returns (target params, results)."""
    target = jax.tree.map(lambda leaf: leaf[0], params)
    members = masks[0]
    results = []
    if config.runs("lira"):
        confidences = mia.stacked_confidences(model.apply, params, *pool, flip=config.flip)
        results += [mia.lira_attack(confidences[0], confidences[1:], masks[1:], members,
                                    pool[1], 10, online=online, fixed_variance=fixed)
                    for online in (True, False) for fixed in (False, True)]
    if config.runs("threshold"):
        losses = np.asarray(per_example_losses(model.apply, target, *pool))
        results.append(mia.loss_threshold_attack(losses[members], losses[~members],
                                                 pool[1][members], pool[1][~members], 10))
    if config.runs("shokri"):
        results += _shokri(key, model, params, masks, pool, test, target, config)
    return target, results


def _apply_defence(key, pool, test, members, config: MembershipJobConfig):
    """Returns (pool, test, defence info) as the target and shadows see them: the images
    themselves, or the codes of an autoencoder fitted on the target's members only."""
    if config.reformer in ("none", "influence"):  # influence: see influence_training_sets
        return pool, test, {"reformer": "none"}
    batch_size = min(128, config.train_size)
    epochs = math.ceil(config.autoencoder_steps / math.ceil(config.train_size / batch_size))
    reformer = ae.AutoencoderReformer(
        architecture="conv", hidden_sizes=(16, 32),
        train_config=TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=1e-3))
    start = time.perf_counter()
    fitted = reformer.fit(key, jnp.asarray(pool[0][members]), progress=False)
    pool_codes = np.asarray(fitted.transform(jnp.asarray(pool[0])))
    test_codes = np.asarray(fitted.transform(jnp.asarray(test[0])))
    info = {"reformer": "autoencoder", **fitted.info, "seconds": time.perf_counter() - start,
            "member_distances": summarize_distances(pool[0][members], pool_codes[members])}
    return (pool_codes, pool[1]), (test_codes, test[1]), info


def run(config: MembershipJobConfig, out: Path) -> dict:
    """Runs the job and writes ``report.json``, ``report.md`` and ``roc.png`` into ``out``."""
    start = time.perf_counter()
    key = jax.random.key(config.seed)
    dataset = load_cifar10(config.data_dir)
    if 2 * config.train_size > len(dataset.train_labels):
        raise ConfigError(f"train_size={config.train_size} needs {2 * config.train_size} "
                          f"candidates; the training split has {len(dataset.train_labels)}.")
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 10),
                                              len(dataset.train_labels)))[: 2 * config.train_size]
    pool = (dataset.train_inputs[order], dataset.train_labels[order])
    test = (dataset.test_inputs, dataset.test_labels)
    model = ShokriCifarCNN(features=tuple(config.features))
    masks = draw_masks(key, len(pool[1]), config)
    pool, test, defence = _apply_defence(jax.random.fold_in(key, 20), pool, test, masks[0],
                                         config)
    training = None
    if config.reformer == "influence":
        reformed, index, defence = influence_training_sets(jax.random.fold_in(key, 20), pool,
                                                           masks, config)
        training = (reformed, index)
    params, plans = train_target_and_shadows(key, model, pool, masks, config, training)
    if plans is not None:
        covers = ("each member of the target's training set" if config.reformer == "none" else
                  "the classifier's training on the reformed data only: the reformer used the "
                  "members without DP, so the members themselves have no guarantee")
        defence["dp"] = {"covers": covers,
                         "epsilon": plans[0].epsilon, "delta": config.dp_delta,
                         "noise_multiplier": plans[0].noise_multiplier,
                         "sampling_rate": plans[0].sampling_rate, "steps": plans[0].steps,
                         "clip_norm": config.dp_clip_norm,
                         "accountant": config.dp_config().accountant}
    target, results = run_attacks(key, model, params, masks, pool, test, config)
    members = masks[0]
    target_accuracy = {
        "train": accuracy(model.apply, target, jnp.asarray(pool[0][members]), pool[1][members]),
        "test": accuracy(model.apply, target, jnp.asarray(test[0]), test[1]),
    }
    plots.roc_loglog(mia.roc_curves(results), out / "roc.png",
                     title="membership inference on CIFAR-10")
    payload = {
        "jaxreform_report": 1, "command": "attack membership",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": dataclasses.asdict(config), "data": dataset.summary(), "defence": defence,
        "versions": report.package_versions(), "target_accuracy": target_accuracy,
        "seconds": time.perf_counter() - start,
        "attacks": {r.name: {**r.metrics, "class_precision": r.class_precision.tolist(),
                             "class_recall": r.class_recall.tolist()} for r in results},
        "files": ["report.json", "report.md", "roc.png"],
    }
    report.write_json(out / report.REPORT_JSON, payload)
    (out / report.REPORT_MD).write_text(render_markdown(payload), encoding="utf-8")
    return payload


def run_membership_job(config: MembershipJobConfig, out_dir, *, overwrite: bool = False) -> dict:
    """:func:`run` inside an atomic report folder (see :mod:`jaxreform.report`)."""
    with report.report_folder(out_dir, overwrite=overwrite) as staging:
        return run(config, staging)


def _defence_lines(defence: dict) -> list[str]:
    lines = []
    if defence["reformer"] != "none":
        change = defence["member_distances"]["l2"]["mean"]
    if defence["reformer"] == "influence":
        lines += [f"Defence: every model trains on its images moved by noise orthogonal to their "
                  f"influence directions (softmax influence model, budget "
                  f"{defence['budget']:g}, clipped to [0, 1]; mean relative L2 change of the "
                  f"members {change:.3f}, largest residual |cosine| "
                  f"{defence['residual_cosine_max']:.2g}; {defence['seconds']:.0f} s). The "
                  "attacks query the original images.", ""]
    elif defence["reformer"] == "autoencoder":
        lines += [f"Defence: the target and the shadows train on the codes of a convolutional "
                  f"autoencoder {tuple(defence['hidden_sizes'])} fitted on the target's members "
                  f"only ({defence['train_config']['epochs']} epochs, "
                  f"{defence['seconds']:.0f} s); final reconstruction loss "
                  f"{defence['reconstruction_loss'][-1]:.4f}; mean relative L2 change of the "
                  f"members {change:.3f}. The attacker holds the deployed encoder.", ""]
    if "dp" in defence:
        guarantee = defence["dp"]
        lines += [f"Defence: DP-SGD, (ε = {guarantee['epsilon']:.3g}, δ = {guarantee['delta']:g})"
                  f" for {guarantee['covers']} ({guarantee['accountant']} accountant; σ = "
                  f"{guarantee['noise_multiplier']:.3g}, q = {guarantee['sampling_rate']:.3g}, "
                  f"{guarantee['steps']} steps, C = {guarantee['clip_norm']:g}). Every shadow is "
                  "trained with the same DP-SGD settings.", ""]
    return lines


def render_markdown(payload: dict) -> str:
    """``report.md``: target accuracy, one row per attack, per-class precision."""
    config, attacks = payload["config"], payload["attacks"]
    keys = ("precision", "recall", "auc", "advantage", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")
    lines = [f"# jaxreform attack membership: CIFAR-10, N = {config['train_size']}, "
             f"K = {config['shadows']} shadows, reformer {config['reformer']}"
             + (f", DP-SGD ε = {config['dp_epsilon']:g}" if config.get("dp_epsilon") else ""),
             "",
             f"Target (Shokri et al.'s CNN) accuracy: train "
             f"{payload['target_accuracy']['train']:.4f}, test "
             f"{payload['target_accuracy']['test']:.4f}. {payload['seconds']:.0f} s.", "",
             *_defence_lines(payload["defence"]),
             report.markdown_table(["attack", *keys],
                                   [[name, *(a[k] for k in keys)] for name, a in attacks.items()]),
             "", "## Per-class precision", "",
             report.markdown_table(["class", *attacks],
                                   [[label, *(a["class_precision"][c] for a in attacks.values())]
                                    for c, label in enumerate(CLASS_NAMES)]),
             "", "![log-log ROC](roc.png)", ""]
    return "\n".join(lines)
