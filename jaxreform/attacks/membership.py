"""Membership inference: Shokri shadow models, the loss threshold, and LiRA (online/offline).

Shapes: n examples of a pool; t training examples per shadow; s shadow models; k classes;
a query augmentations (1 without augmentation).

**Training many models.** Shadow models share the target's architecture and are trained
together by one of two strategies over the same jitted single-model epoch
(:func:`jaxreform.train.make_epoch_fn`):

=========  =====================================================================================
``vmap``   parameters stacked on a leading ``[s]`` axis; one ``jit(vmap(epoch))`` call per epoch.
``loop``   a Python loop over the models, each calling the same ``jit(epoch)`` (compiled once).
=========  =====================================================================================

:func:`choose_strategy` (:func:`jaxreform.parallel.choose_strategy`) picks ``loop`` on CPU and
``vmap`` on GPU and TPU, from measurements on a 2-core CPU with jax 0.10: for 16 of the paper's
CIFAR CNNs with XLA convolutions vmap ran 0.42x the loop (XLA:CPU turns a vmapped convolution
into a grouped convolution), and for 16 CIFAR-10 MLPs (3,072 inputs, 256 hidden units, 512
images each) 0.87x at batch 32 and 1.04x at batch 128 (``benchmarks/bench_shadows.py``); the
1.9x for dense models reported elsewhere did not reproduce here. Pass ``strategy=`` explicitly
to override it.

**Shokri et al.** Shadow models are trained on their own "in" data; their sorted prediction
vectors on "in" and "out" data train one attack model per class
(:class:`~jaxreform.attacks.membership_models.AttackMLP`); the attack models then label the
target's members and non-members. The features are *log*-probabilities (floored at -30),
standardised per class, a monotone transform that keeps near-1 confidences apart; sorted
high to low by default (``sort=True``, as in later work), or in class order (``sort=False``,
the original paper's full vector, where each class's model sees the true class's
probability at a fixed place). The second is much stronger: on a 1,000-image CIFAR-10 pool
with an MLP target (train/test accuracy 64%/29%, 8 shadows) it reached AUC 0.686 where the
sorted vector reached 0.532 (tests/test_membership.py).

**LiRA (Carlini et al.)** compares the target's logit-scaled confidence
``phi = log(p_y / (1 - p_y))`` on each example with Gaussians fitted to the shadows'
confidences on that example when it was in (online) or out of their training sets.

.. warning:: Precision depends on the base rate: every evaluation here requires as many
   members as non-members (see :func:`balanced_subsets`), as the papers' numbers assume.

References:
    Shokri, Stronati, Song, Shmatikov. "Membership Inference Attacks Against Machine Learning
    Models", IEEE S&P 2017. https://arxiv.org/abs/1610.05820
    Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning: Analyzing the
    Connection to Overfitting", CSF 2018. https://arxiv.org/abs/1709.01604
    Carlini, Chien, Nasr, Song, Terzis, Tramer. "Membership Inference Attacks From First
    Principles", IEEE S&P 2022. https://arxiv.org/abs/2112.03199
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.stats import norm

from jaxreform import _validate, metrics
from jaxreform.parallel import STRATEGIES, choose_strategy
from jaxreform.attacks.membership_models import AttackMLP
from jaxreform.errors import ConfigError, InvalidDataError, TrainingDivergedError
from jaxreform.train import TrainConfig, batched_logits, cross_entropy_loss, make_epoch_fn

log = logging.getLogger(__name__)

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]
MIN_SHADOWS_PER_SIDE = 2
_LOG_PROB_FLOOR = -30.0


# ----------------------------------------------------------------------------------------------
# Training many models of one architecture.


def init_stacked(key: jax.Array, model: nn.Module, sample_input: jax.Array, num_models: int):
    """Initialises ``num_models`` independent copies of ``model``, stacked on axis 0.

    Args:
        key: One key; model i uses ``fold_in(key, i)``.
        model: A Flax module.
        sample_input: ``[b, ...]`` a batch with the input shape (values unused).
        num_models: s.

    Returns:
        A parameter pytree whose every leaf has a leading ``[s]`` axis.
    """
    _validate.check_integers(num_models=num_models)
    _validate.check_positive(num_models=num_models)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_models))
    return jax.vmap(lambda k: model.init(k, sample_input))(keys)


def _model(stacked: Params, i: int) -> Params:
    return jax.tree.map(lambda leaf: leaf[i], stacked)


def _check_index(name: str, index, pool_size: int) -> np.ndarray:
    index = np.asarray(index)
    if index.ndim != 2 or not np.issubdtype(index.dtype, np.integer) or index.size == 0:
        raise InvalidDataError(f"{name} must be a non-empty integer array [s, t] of example "
                               f"indices, got shape {index.shape} and dtype {index.dtype}.")
    if index.min() < 0 or index.max() >= pool_size:
        raise InvalidDataError(f"{name} holds indices in [{index.min()}, {index.max()}] but the "
                               f"pool has {pool_size} examples.")
    return index


def train_models(
    key: jax.Array,
    apply_fn: ApplyFn,
    stacked_params: Params,
    inputs: jax.Array,
    labels: jax.Array,
    index: np.ndarray,
    config: TrainConfig,
    *,
    strategy: str = "auto",
) -> Params:
    """Trains s models of one architecture, model i on ``inputs[index[i]]``.

    Args:
        key: Model i shuffles with ``fold_in(key, i)``, so both strategies give the same runs.
        apply_fn: ``apply_fn(params, x [b, ...]) -> [b, k]`` logits.
        stacked_params: Initial parameters, leaves ``[s, ...]`` (:func:`init_stacked`).
        inputs: ``[n, ...]`` the pool of examples.
        labels: ``[n]`` int labels.
        index: ``[s, t]`` int, the training examples of each model (t >= batch size).
        config: Epochs, batch size, optimizer (one config for all models).
        strategy: ``"vmap"``, ``"loop"`` or ``"auto"`` (:func:`choose_strategy`). Memory:
            ``vmap`` gathers all s training sets at once (``[s, t, ...]`` inside the jitted
            epoch); ``loop`` holds one model's set at a time.

    Returns:
        The trained parameters, leaves ``[s, ...]``.

    Raises:
        ConfigError: for an unknown strategy, or t < batch size.
        InvalidDataError: if ``index`` does not fit the pool or the number of models.
        TrainingDivergedError: if a model's training loss becomes NaN or Inf.
    """
    _validate.check_choice("strategy", strategy, STRATEGIES)
    index = _check_index("index", index, len(labels))
    num_models = jax.tree.leaves(stacked_params)[0].shape[0]
    if index.shape[0] != num_models:
        raise InvalidDataError(f"index has {index.shape[0]} rows but {num_models} models are "
                               "stacked; give one row of training indices per model.")
    if index.shape[1] < config.batch_size:
        raise ConfigError(f"each model has {index.shape[1]} training examples, fewer than "
                          f"batch_size={config.batch_size}; lower the batch size.")
    if strategy == "auto":
        strategy = choose_strategy(_model(stacked_params, 0))
    optimizer = config.make_optimizer()
    epoch = make_epoch_fn(cross_entropy_loss(apply_fn, l2_penalty=config.l2_penalty),
                          optimizer, config.batch_size)
    model_keys = [jax.random.fold_in(key, i) for i in range(num_models)]
    start = time.perf_counter()
    run = _train_vmap if strategy == "vmap" else _train_loop
    params, losses = run(epoch, optimizer, stacked_params, (inputs, labels), index, model_keys,
                         config.epochs)
    _check_losses(losses, config)
    log.info("trained %d models (%s) on %d examples each for %d epochs in %.1f s", num_models,
             strategy, index.shape[1], config.epochs, time.perf_counter() - start)
    return params


def _train_vmap(epoch, optimizer, stacked, data, index, model_keys, epochs):
    def one_epoch(params, opt_state, key, rows, inputs, labels):
        return epoch(params, opt_state, key, (inputs[rows], labels[rows]))

    step = jax.jit(jax.vmap(one_epoch, in_axes=(0, 0, 0, 0, None, None)))
    opt_state = jax.vmap(optimizer.init)(stacked)
    keys = jnp.stack([jax.random.split(k, epochs) for k in model_keys], axis=1)  # [epochs, s]
    rows = jnp.asarray(index)
    inputs, labels = jnp.asarray(data[0]), jnp.asarray(data[1])
    losses = []
    for epoch_keys in keys:
        stacked, opt_state, loss = step(stacked, opt_state, epoch_keys, rows, inputs, labels)
        losses.append(loss)
    return stacked, np.asarray(jnp.stack(losses, axis=1))  # [s, epochs]


def _train_loop(epoch, optimizer, stacked, data, index, model_keys, epochs):
    step = jax.jit(epoch)
    inputs, labels = np.asarray(data[0]), np.asarray(data[1])
    trained, losses = [], []
    for i, model_key in enumerate(model_keys):
        params = _model(stacked, i)
        opt_state = optimizer.init(params)
        own = (jnp.asarray(inputs[index[i]]), jnp.asarray(labels[index[i]]))
        model_losses = []
        for epoch_key in jax.random.split(model_key, epochs):
            params, opt_state, loss = step(params, opt_state, epoch_key, own)
            model_losses.append(loss)
        trained.append(params)
        losses.append(jnp.stack(model_losses))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trained), np.asarray(
        jnp.stack(losses))


def _check_losses(losses: np.ndarray, config: TrainConfig) -> None:
    bad = ~np.isfinite(losses)
    if bad.any():
        model, epoch = (int(i) for i in np.argwhere(bad)[0])
        raise TrainingDivergedError(
            f"shadow model {model}: training loss became {losses[model, epoch]} in epoch "
            f"{epoch + 1}; lower learning_rate (now {config.learning_rate}).")


def stacked_logits(
    apply_fn: ApplyFn, stacked_params: Params, inputs: jax.Array, *, strategy: str = "auto",
    batch_size: int = 1000,
) -> jax.Array:
    """Logits of every model on the same inputs.

    Args:
        apply_fn: ``apply_fn(params, x [b, ...]) -> [b, k]``.
        stacked_params: Leaves ``[s, ...]``.
        inputs: ``[n, ...]``.
        strategy: As in :func:`train_models`.
        batch_size: Examples per forward pass.

    Returns:
        ``[s, n, k]`` float32.
    """
    _validate.check_choice("strategy", strategy, STRATEGIES)
    if strategy == "auto":
        strategy = choose_strategy(_model(stacked_params, 0))
    inputs = jnp.asarray(inputs)
    batch_size = min(batch_size, inputs.shape[0])
    if strategy == "vmap":
        return jax.vmap(lambda p: batched_logits(apply_fn, p, inputs, batch_size))(stacked_params)
    num_models = jax.tree.leaves(stacked_params)[0].shape[0]
    return jnp.stack([batched_logits(apply_fn, _model(stacked_params, i), inputs, batch_size)
                      for i in range(num_models)])


# ----------------------------------------------------------------------------------------------
# Who trains on what.


def shadow_splits(
    key: jax.Array, pool_size: int, num_shadows: int, train_size: int, *, disjoint: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Draws Shokri's shadow datasets: for each shadow, ``t`` "in" and ``t`` "out" examples.

    Args:
        key: Determines the draw.
        pool_size: n, the attacker's examples (disjoint from the target's own data).
        num_shadows: s.
        train_size: t, each shadow's training-set size (= its out-set size).
        disjoint: True: all ``2 s t`` examples distinct (needs ``2 s t <= n``). False: each
            shadow draws its ``2 t`` examples independently (shadows share examples).

    Returns:
        ``(in_index [s, t], out_index [s, t])`` int64; within a row the two never overlap.

    Raises:
        ConfigError: if the pool is too small for the sizes asked.
    """
    _validate.check_integers(pool_size=pool_size, num_shadows=num_shadows, train_size=train_size)
    _validate.check_positive(pool_size=pool_size, num_shadows=num_shadows, train_size=train_size)
    needed = 2 * num_shadows * train_size if disjoint else 2 * train_size
    if needed > pool_size:
        raise ConfigError(
            f"{num_shadows} shadows of {train_size} training examples need {needed} "
            f"{'distinct ' if disjoint else ''}examples but the pool has {pool_size}; lower "
            f"num_shadows or train_size{', or pass disjoint=False' if disjoint else ''}.")
    if disjoint:
        order = np.asarray(jax.random.permutation(key, pool_size))[:needed]
        rows = order.reshape(num_shadows, 2 * train_size)
    else:
        keys = jax.random.split(key, num_shadows)
        rows = np.stack([np.asarray(jax.random.permutation(k, pool_size))[: 2 * train_size]
                         for k in keys])
    return rows[:, :train_size].astype(np.int64), rows[:, train_size:].astype(np.int64)


def lira_masks(key: jax.Array, num_examples: int, num_models: int) -> np.ndarray:
    """Random training sets for LiRA: every example in exactly half of the models.

    Examples are dealt in random order, each to the ``s/2`` least-loaded models (ties broken
    at random), so every model trains on ``floor(n/2)`` examples: for odd n, each model that
    would get ``ceil(n/2)`` drops its last-dealt example (a different one per model), which
    is then in ``s/2 - 1`` models. The training sets of any two models are random halves.

    Args:
        key: Determines the draw.
        num_examples: n, the pool size.
        num_models: s, even and >= 2.

    Returns:
        ``[s, n]`` bool, True where model i trains on example j.

    Raises:
        ConfigError: if s is odd or below 2, or n < 2.
    """
    _validate.check_integers(num_examples=num_examples, num_models=num_models)
    if num_models < 2 or num_models % 2:
        raise ConfigError(f"num_models must be even and >= 2 (each example in half of the "
                          f"models), got num_models={num_models}.")
    if num_examples < 2:
        raise ConfigError(f"num_examples must be >= 2, got num_examples={num_examples}.")
    order_key, tie_key = jax.random.split(key)
    order = np.asarray(jax.random.permutation(order_key, num_examples))
    ties = np.asarray(jax.random.uniform(tie_key, (num_examples, num_models)))
    mask = np.zeros((num_models, num_examples), dtype=bool)
    loads = np.zeros(num_models)
    half = num_models // 2
    for j, example in enumerate(order):
        chosen = np.argpartition(loads + ties[j], half - 1)[:half]
        mask[chosen, example] = True
        loads[chosen] += 1
    dropped: set[int] = set()
    for model in np.flatnonzero(loads > num_examples // 2):  # drop distinct examples
        held = [int(e) for e in order[mask[model, order]][::-1] if int(e) not in dropped]
        mask[model, held[0]] = False
        dropped.add(held[0])
    return mask


def mask_to_index(mask: np.ndarray) -> np.ndarray:
    """``[s, n]`` bool with the same count per row ``-> [s, t]`` int64 training indices."""
    mask = np.asarray(mask, dtype=bool)
    counts = mask.sum(axis=1)
    if mask.ndim != 2 or counts.min() != counts.max():
        raise InvalidDataError(f"every model must train on the same number of examples to be "
                               f"stacked; counts range over [{counts.min()}, {counts.max()}].")
    return np.stack([np.flatnonzero(row) for row in mask]).astype(np.int64)


def balanced_subsets(
    key: jax.Array, num_members: int, num_nonmembers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices that keep ``min(n1, n0)`` members and as many non-members, sorted, by ``key``."""
    size = min(num_members, num_nonmembers)
    if size == 0:
        raise InvalidDataError("an evaluation needs at least one member and one non-member.")
    k1, k0 = jax.random.split(key)
    pick = lambda k, n: np.sort(np.asarray(jax.random.permutation(k, n))[:size])  # noqa: E731
    return pick(k1, num_members), pick(k0, num_nonmembers)


def check_disjoint(member_inputs, nonmember_inputs) -> None:
    """Raises InvalidDataError if an example appears among both members and non-members.

    Args:
        member_inputs: ``[n1, ...]``.
        nonmember_inputs: ``[n0, ...]`` (compared byte for byte, row by row).
    """
    def digests(rows):
        rows = np.ascontiguousarray(np.asarray(rows))
        return {hashlib.blake2b(r.tobytes(), digest_size=16).digest(): i
                for i, r in enumerate(rows.reshape(rows.shape[0], -1))}

    members = digests(member_inputs)
    shared = [(i, members[d]) for d, i in digests(nonmember_inputs).items() if d in members]
    if shared:
        nonmember, member = min(shared)
        raise InvalidDataError(
            f"members and non-members overlap: {len(shared)} example(s) appear in both (e.g. "
            f"member {member} = non-member {nonmember}); an example cannot be both.")


# ----------------------------------------------------------------------------------------------
# Metrics shared by the attacks.


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """The outcome of one membership attack on balanced members and non-members.

    Attributes:
        name: e.g. ``"shokri"``, ``"loss threshold"``, ``"lira online"``.
        member_scores: ``[n1]`` higher = more member-like.
        nonmember_scores: ``[n0]``.
        metrics: :func:`jaxreform.metrics.threshold_attack_metrics` at the attack's own
            decision threshold (precision, recall, AUC, advantage, TPR at 0.1% / 1% FPR, ...).
        class_precision: ``[k]`` precision among examples of each class (NaN: none predicted).
        class_recall: ``[k]`` recall among members of each class.
    """

    name: str
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    metrics: dict
    class_precision: np.ndarray
    class_recall: np.ndarray

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr [p], tpr [p])`` for :func:`jaxreform.plots.roc_loglog`."""
        fpr, tpr = metrics.roc_points(jnp.asarray(self.member_scores),
                                      jnp.asarray(self.nonmember_scores))
        return np.asarray(fpr), np.asarray(tpr)


def _check_labels(name: str, labels, size: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (size,):
        raise InvalidDataError(f"{name} must have shape [{size}] (one per score), got "
                               f"{labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or \
            labels.max() >= num_classes:
        raise InvalidDataError(f"{name} must be integers in [0, {num_classes - 1}].")
    return labels


def score_attack(
    name: str, member_scores, nonmember_scores, threshold: float, member_labels,
    nonmember_labels, num_classes: int,
) -> AttackResult:
    """Every metric of "member if score >= threshold", overall and per class.

    Args:
        name: The attack's name in reports.
        member_scores: ``[n1]``; nonmember_scores: ``[n0]``, with n1 = n0 (balanced).
        threshold: The attack's decision threshold on the score.
        member_labels: ``[n1]`` classes; nonmember_labels: ``[n0]``.
        num_classes: k.

    Raises:
        InvalidDataError: if the sets are unbalanced, scores are not finite, labels do not
            match the scores, or a class has no member or no non-member.
    """
    members, nonmembers = np.asarray(member_scores), np.asarray(nonmember_scores)
    if members.ndim != 1 or nonmembers.ndim != 1 or members.size != nonmembers.size:
        raise InvalidDataError(
            f"members {members.shape} and non-members {nonmembers.shape} must be two [n] "
            "score vectors of the same size (a balanced evaluation); subsample the larger "
            "with balanced_subsets().")
    member_labels = _check_labels("member_labels", member_labels, members.size, num_classes)
    nonmember_labels = _check_labels("nonmember_labels", nonmember_labels, nonmembers.size,
                                     num_classes)
    for group, labels in (("members", member_labels), ("non-members", nonmember_labels)):
        missing = sorted(set(range(num_classes)) - set(labels.tolist()))
        if missing:
            raise InvalidDataError(f"class(es) {missing} have no {group}: per-class precision "
                                   "and recall need examples of every class on both sides.")
    summary = metrics.threshold_attack_metrics(members, nonmembers, threshold)
    precision, recall = np.empty(num_classes), np.empty(num_classes)
    for c in range(num_classes):
        tp = np.sum(members[member_labels == c] >= threshold)
        fp = np.sum(nonmembers[nonmember_labels == c] >= threshold)
        precision[c] = tp / (tp + fp) if tp + fp else np.nan
        recall[c] = tp / np.sum(member_labels == c)
    return AttackResult(name, members, nonmembers, summary, precision, recall)


# ----------------------------------------------------------------------------------------------
# The loss threshold (Yeom et al.).


def loss_threshold_attack(
    member_losses, nonmember_losses, member_labels, nonmember_labels, num_classes: int, *,
    threshold: float | None = None,
) -> AttackResult:
    """Member if the target's loss on the example is at most ``threshold``.

    Args:
        member_losses: ``[n1]`` per-example losses of training points.
        nonmember_losses: ``[n0]`` of held-out points (n0 = n1).
        member_labels, nonmember_labels: ``[n1]``, ``[n0]`` classes.
        num_classes: k.
        threshold: τ; None: the mean member loss (Yeom et al.'s mean training loss).

    Returns:
        An :class:`AttackResult` whose scores are negated losses (``metrics["threshold"]``
        is τ on the loss).
    """
    member_losses = np.asarray(member_losses, dtype=np.float64)
    tau = float(member_losses.mean()) if threshold is None else float(threshold)
    result = score_attack("loss threshold", -member_losses, -np.asarray(nonmember_losses),
                          -tau, member_labels, nonmember_labels, num_classes)
    result.metrics["threshold"] = tau
    return result


# ----------------------------------------------------------------------------------------------
# Shokri et al.: one attack model per class on sorted prediction vectors.


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackModelConfig:
    """How the per-class attack models are trained (full-batch Adam, all classes at once).

    Attributes:
        hidden_size: Width of the attack MLP's hidden layer.
        steps: Full-batch optimisation steps.
        learning_rate: Adam step size.
        weight_decay: Decoupled weight decay (AdamW); the attack sets are small (a few
            hundred rows per class), and without it the attack models memorise them.
    """

    hidden_size: int = 64
    steps: int = 300
    learning_rate: float = 1e-2
    weight_decay: float = 1e-2

    def __post_init__(self):
        _validate.check_integers(hidden_size=self.hidden_size, steps=self.steps)
        _validate.check_positive(hidden_size=self.hidden_size, steps=self.steps,
                                 learning_rate=self.learning_rate)
        _validate.check_finite_numbers(weight_decay=self.weight_decay)
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")


def sorted_prediction_features(logits: jax.Array, *, sort: bool = True) -> jax.Array:
    """``[..., k]`` logits ``-> [..., k]`` log-probabilities floored at -30, sorted high to low
    (``sort=False``: in class order, the full vector of Shokri et al.'s original attack, in
    which the per-class model sees the true class's probability at a fixed place)."""
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    ordered = -jnp.sort(-log_probs, axis=-1) if sort else log_probs
    return jnp.maximum(ordered, _LOG_PROB_FLOOR)


def shadow_attack_data(
    apply_fn: ApplyFn, stacked_params: Params, inputs, labels, in_index, out_index, *,
    strategy: str = "auto", sort: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attack models' training set: each shadow's features on its in and out examples.

    Args:
        apply_fn: The shadows' ``apply_fn``.
        stacked_params: Trained shadows, leaves ``[s, ...]``.
        inputs: ``[n, ...]`` the pool; labels: ``[n]``.
        in_index, out_index: ``[s, t]`` from :func:`shadow_splits`.
        strategy: As in :func:`train_models`.
        sort: Sorted features (default) or the full vector in class order; pass the same
            value to :func:`shokri_attack`.

    Returns:
        ``(features [2 s t, k], labels [2 s t], is_member [2 s t] bool)``.
    """
    in_index = _check_index("in_index", in_index, len(labels))
    out_index = _check_index("out_index", out_index, len(labels))
    num_models = jax.tree.leaves(stacked_params)[0].shape[0]
    if in_index.shape[0] != num_models or out_index.shape[0] != num_models:
        raise InvalidDataError(f"in_index {in_index.shape} and out_index {out_index.shape} "
                               f"need one row per shadow model ({num_models}).")
    if strategy == "auto":
        strategy = choose_strategy(_model(stacked_params, 0))
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    features, classes, member = [], [], []
    for i in range(num_models):
        params = _model(stacked_params, i)
        for rows, is_in in ((in_index[i], True), (out_index[i], False)):
            logits = batched_logits(apply_fn, params, jnp.asarray(inputs[rows]),
                                    min(1000, len(rows)))
            features.append(np.asarray(sorted_prediction_features(logits, sort=sort)))
            classes.append(labels[rows])
            member.append(np.full(len(rows), is_in))
    return np.concatenate(features), np.concatenate(classes), np.concatenate(member)


def train_attack_models(
    key: jax.Array, features, labels, is_member, num_classes: int,
    config: AttackModelConfig = AttackModelConfig(),
) -> Params:
    """Trains one :class:`AttackMLP` per class, all classes at once (vmap, padded + masked).

    Args:
        key: Initialisation of class c's model uses ``fold_in(key, c)``.
        features: ``[N, k]`` from :func:`sorted_prediction_features`.
        labels: ``[N]`` true classes of the examples; is_member: ``[N]`` bool.
        num_classes: k.
        config: Width, steps, learning rate.

    Returns:
        ``{"params": stacked MLP params [k, ...], "mean": [k, k], "std": [k, k]}`` (per-class
        feature standardisation).

    Raises:
        InvalidDataError: if shapes disagree, or a class lacks members or non-members.
    """
    features, labels = np.asarray(features, np.float32), np.asarray(labels)
    is_member = np.asarray(is_member, bool)
    if features.ndim != 2 or labels.shape != features.shape[:1] or is_member.shape != labels.shape:
        raise InvalidDataError(f"features {features.shape}, labels {labels.shape} and is_member "
                               f"{is_member.shape} must be [N, k], [N] and [N].")
    for c in range(num_classes):
        for side, want in (("members", True), ("non-members", False)):
            if not np.any((labels == c) & (is_member == want)):
                raise InvalidDataError(f"class {c} has no shadow {side}: its attack model "
                                       "cannot be trained; use more or larger shadow sets.")
    largest = max(int(np.sum(labels == c)) for c in range(num_classes))
    x, y, w = (np.zeros((num_classes, largest, features.shape[1]), np.float32),
               np.zeros((num_classes, largest), np.float32),
               np.zeros((num_classes, largest), np.float32))
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        x[c, : len(rows)], y[c, : len(rows)], w[c, : len(rows)] = features[rows], is_member[
            rows], 1.0
    return _fit_attack_models(key, jnp.asarray(x), jnp.asarray(y), jnp.asarray(w), config)


def _fit_attack_models(key, x, y, w, config):
    model = AttackMLP(config.hidden_size)
    optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)

    def fit_one(class_key, x, y, w):
        total = w.sum()
        mean = (w[:, None] * x).sum(0) / total
        std = jnp.sqrt((w[:, None] * (x - mean) ** 2).sum(0) / total) + 1e-6
        z = (x - mean) / std

        def loss(params):
            logits = model.apply(params, z)
            return jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, y)) / total

        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        params = model.init(class_key, z[:1])
        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None,
                                      length=config.steps)
        return {"params": params, "mean": mean, "std": std}

    class_keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(x.shape[0]))
    return jax.jit(jax.vmap(fit_one))(class_keys, x, y, w)


def attack_model_scores(attack: Params, features, labels, *, hidden_size: int = 64) -> np.ndarray:
    """Membership logits ``[N]`` (member if > 0) of ``features [N, k]`` with classes ``[N]``:
    each example is scored by its own class's attack model."""
    features, labels = jnp.asarray(features, jnp.float32), jnp.asarray(labels)
    num_classes, width = attack["mean"].shape
    if features.ndim != 2 or features.shape[1] != width or labels.shape != features.shape[:1]:
        raise InvalidDataError(f"features {features.shape} and labels {labels.shape} must be "
                               f"[N, {width}] and [N] to match the attack models.")
    model = AttackMLP(hidden_size)
    scores = jax.vmap(lambda a: model.apply(a["params"], (features - a["mean"]) / a["std"]))(
        attack)  # [k, N]
    return np.asarray(jnp.take_along_axis(scores, labels[None, :], axis=0)[0])


def shokri_attack(
    attack: Params, apply_fn: ApplyFn, target_params: Params, members, nonmembers,
    num_classes: int, *, hidden_size: int = 64, sort: bool = True,
) -> AttackResult:
    """Runs trained per-class attack models against a target.

    Args:
        attack: From :func:`train_attack_models`.
        apply_fn: The target's ``apply_fn``; target_params: its parameters.
        members: ``(x [n1, ...], y [n1])`` the target's training examples.
        nonmembers: ``(x [n0, ...], y [n0])`` examples it never saw (n0 = n1).
        num_classes: k.
        hidden_size: As in the :class:`AttackModelConfig` used for training.
        sort: As in the :func:`shadow_attack_data` call that built the training set.

    Returns:
        An :class:`AttackResult` (threshold: attack logit 0, i.e. probability 1/2).

    Raises:
        InvalidDataError: if members and non-members overlap, are unbalanced, or their
            prediction vectors do not match the attack models.
    """
    check_disjoint(members[0], nonmembers[0])
    scores = []
    for x, y in (members, nonmembers):
        logits = batched_logits(apply_fn, target_params, jnp.asarray(x), min(1000, len(y)))
        if logits.shape[-1] != attack["mean"].shape[-1]:
            raise InvalidDataError(f"the target predicts {logits.shape[-1]} classes but the "
                                   f"attack models were trained on {attack['mean'].shape[-1]}.")
        features = sorted_prediction_features(logits, sort=sort)
        scores.append(attack_model_scores(attack, features, y, hidden_size=hidden_size))
    name = "shokri" if sort else "shokri, full vector"
    return score_attack(name, scores[0], scores[1], 0.0, members[1], nonmembers[1],
                        num_classes)


# ----------------------------------------------------------------------------------------------
# LiRA (Carlini et al.) on logit-scaled confidences.


def logit_confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``phi = log(p_y / (1 - p_y))`` of the true class, computed stably from logits.

    Args:
        logits: ``[..., k]``.
        labels: ``[...]`` int, broadcastable against ``logits[..., 0]``.

    Returns:
        ``[...]`` float32: ``z_y - logsumexp_{j != y} z_j``.
    """
    logits = jnp.asarray(logits, jnp.float32)
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    true = jnp.sum(jnp.where(one_hot, logits, 0.0), axis=-1)
    others = jax.nn.logsumexp(jnp.where(one_hot, -jnp.inf, logits), axis=-1)
    return true - others


def stacked_confidences(
    apply_fn: ApplyFn, stacked_params: Params, inputs, labels, *, flip: bool = False,
    strategy: str = "auto",
) -> np.ndarray:
    """LiRA's signal for every model and example, optionally on mirrored queries too.

    Args:
        apply_fn: ``apply_fn(params, x) -> logits``; stacked_params: leaves ``[s, ...]``.
        inputs: ``[n, H, W, C]`` (or any ``[n, ...]`` when ``flip`` is False).
        labels: ``[n]``.
        flip: Also query each image mirrored left-right (a = 2), as Carlini et al.'s
            augmentation.
        strategy: As in :func:`train_models`.

    Returns:
        ``[s, n, a]`` float32 logit-scaled confidences.
    """
    views = [jnp.asarray(inputs)] + ([jnp.asarray(inputs)[:, :, ::-1]] if flip else [])
    labels = jnp.asarray(labels)
    return np.stack([np.asarray(logit_confidence(
        stacked_logits(apply_fn, stacked_params, v, strategy=strategy), labels[None, :]))
        for v in views], axis=-1)


def _as_three_axes(name: str, array, expect_models: bool) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    ndim = array.ndim - (1 if expect_models else 0)
    if ndim == 1:
        array = array[..., None]
    elif ndim != 2:
        expected = "[s, n] or [s, n, a]" if expect_models else "[n] or [n, a]"
        raise InvalidDataError(f"{name} must be {expected}, got shape {array.shape}.")
    _validate.check_finite(name, array)
    return array


def _gaussian_fit(values, mask, fixed_variance):
    """Per-example mean ``[n, a]`` and std (per example, or one pooled value) of the masked
    rows of ``values [s, n, a]``."""
    count = mask.sum(axis=0)[:, None]
    mean = (values * mask[..., None]).sum(axis=0) / count
    var = ((values - mean) ** 2 * mask[..., None]).sum(axis=0) / np.maximum(count - 1, 1)
    if fixed_variance:
        var = np.broadcast_to(var.mean(axis=0), var.shape)
    return mean, np.sqrt(np.maximum(var, 1e-12))


def lira_scores(
    target_confidence, shadow_confidence, shadow_in, *, online: bool = True,
    fixed_variance: bool = False,
) -> np.ndarray:
    """LiRA's per-example membership score (higher = more member-like).

    Online: ``sum_a [log N(phi; mu_in, sigma_in) - log N(phi; mu_out, sigma_out)]``, a
    log-likelihood ratio (member if > 0). Offline: the mean over augmentations of
    ``(phi - mu_out) / sigma_out``, a one-sided test against the out distribution. With
    ``fixed_variance`` every example shares one sigma per side (the mean of the per-example
    variances), which Carlini et al. recommend when shadows are few.

    Args:
        target_confidence: ``[n]`` or ``[n, a]`` the target's phi on each example.
        shadow_confidence: ``[s, n]`` or ``[s, n, a]`` the shadows' phi.
        shadow_in: ``[s, n]`` bool, True where shadow i trained on example j.
        online: Use the in-Gaussians too.
        fixed_variance: One variance per side instead of one per example.

    Returns:
        ``[n]`` float64 scores.

    Raises:
        InvalidDataError: if shapes disagree or values are not finite.
        ConfigError: if an example has fewer than 2 shadows out (or, online, in) of training.
    """
    target = _as_three_axes("target_confidence", target_confidence, expect_models=False)
    shadows = _as_three_axes("shadow_confidence", shadow_confidence, expect_models=True)
    shadow_in = np.asarray(shadow_in)
    if shadow_in.dtype != bool or shadow_in.shape != shadows.shape[:2] or \
            shadows.shape[1:] != target.shape:
        raise InvalidDataError(
            f"shapes disagree: target_confidence {target.shape}, shadow_confidence "
            f"{shadows.shape}, shadow_in {shadow_in.shape} {shadow_in.dtype}; expected [n, a], "
            "[s, n, a] and a bool [s, n] with the same s, n and a.")
    _check_shadow_counts(shadow_in, online)
    mu_out, sigma_out = _gaussian_fit(shadows, ~shadow_in, fixed_variance)
    if not online:
        return ((target - mu_out) / sigma_out).mean(axis=1)
    mu_in, sigma_in = _gaussian_fit(shadows, shadow_in, fixed_variance)
    ratio = norm.logpdf(target, mu_in, sigma_in) - norm.logpdf(target, mu_out, sigma_out)
    return np.asarray(ratio, dtype=np.float64).sum(axis=1)


def _check_shadow_counts(shadow_in: np.ndarray, online: bool) -> None:
    sides = (("out", (~shadow_in).sum(axis=0)),) + ((("in", shadow_in.sum(axis=0)),)
                                                       if online else ())
    for side, counts in sides:
        short = np.flatnonzero(counts < MIN_SHADOWS_PER_SIDE)
        if short.size:
            raise ConfigError(
                f"LiRA {'online' if online else 'offline'} needs at least "
                f"{MIN_SHADOWS_PER_SIDE} shadow models {side} of training for every example, "
                f"but {short.size} of {counts.size} examples have fewer (e.g. example "
                f"{short[0]}: {counts[short[0]]}); train more shadows (about 16 or more, "
                "with lira_masks so each example is in half of them).")


def lira_attack(
    target_confidence, shadow_confidence, shadow_in, target_in, labels, num_classes: int, *,
    online: bool = True, fixed_variance: bool = False, offline_alpha: float = 0.05,
) -> AttackResult:
    """LiRA against a target trained on ``target_in`` of the pool (see :func:`lira_scores`).

    Args:
        target_confidence: ``[n]`` or ``[n, a]``; shadow_confidence: ``[s, n(, a)]``;
        shadow_in: ``[s, n]`` bool.
        target_in: ``[n]`` bool, True for the target's members; as many True as False.
        labels: ``[n]`` classes of the pool.
        num_classes: k.
        online, fixed_variance: As in :func:`lira_scores`.
        offline_alpha: Offline decision level: member if the out-Gaussian's upper tail
            probability of phi is below it (threshold ``Phi^-1(1 - alpha)`` on the z-score).
            The online threshold is a likelihood ratio of 1.

    Returns:
        An :class:`AttackResult` named ``"lira online|offline, per-example|fixed variance"``.
    """
    target_in = np.asarray(target_in)
    labels = _check_labels("labels", labels, target_in.size, num_classes)
    if target_in.dtype != bool or target_in.ndim != 1:
        raise InvalidDataError(f"target_in must be a bool [n] mask, got {target_in.dtype} "
                               f"{target_in.shape}.")
    _validate.check_fraction(offline_alpha=offline_alpha)
    scores = lira_scores(target_confidence, shadow_confidence, shadow_in, online=online,
                         fixed_variance=fixed_variance)
    threshold = 0.0 if online else float(norm.ppf(1.0 - offline_alpha))
    name = (f"lira {'online' if online else 'offline'}, "
            f"{'fixed' if fixed_variance else 'per-example'} variance")
    return score_attack(name, scores[target_in], scores[~target_in], threshold,
                        labels[target_in], labels[~target_in], num_classes)


def roc_curves(results: list[AttackResult]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (fpr, tpr)}`` of several attacks, for :func:`jaxreform.plots.roc_loglog`."""
    return {result.name: result.roc() for result in results}


__all__ = [
    "AttackModelConfig", "AttackResult", "attack_model_scores", "balanced_subsets",
    "check_disjoint", "choose_strategy", "init_stacked", "lira_attack", "lira_masks",
    "lira_scores", "logit_confidence", "loss_threshold_attack", "mask_to_index", "roc_curves",
    "score_attack", "shadow_attack_data", "shadow_splits", "shokri_attack", "stacked_confidences",
    "stacked_logits", "sorted_prediction_features", "train_attack_models", "train_models",
]
