"""Collaborative learning by distributed selective SGD (Shokri and Shmatikov, CCS 2015).

N participants hold disjoint sets of classes. Each round every participant downloads the shared
parameters, trains on its own data for a few local steps, and uploads the largest fraction
θ_u (by magnitude) of its parameter change; the server adds the uploads to the shared model.

Simplifications, stated so the numbers can be read right:

- Participants train in parallel from the same download (a synchronous round); the paper's
  participants may also upload in turn. Downloads are always complete (θ_d = 1).
- Optional record-level differential privacy: every participant's local steps are DP-SGD
  (Poisson sampling, per-example clipping, Gaussian noise; :mod:`jaxreform.dp`), so an upload,
  and everything the shared model learns from it, is (ε, δ)-DP with respect to each of that
  participant's records, composed over all rounds by ``dp-accounting``. This differs from
  Shokri and Shmatikov's per-parameter Laplace/sparse-vector uploads; it is the record-level
  guarantee the DP-SGD baseline of this library gives, and the one Hitaj et al. argue does
  not stop their attack (the attack needs the class, not a record).

Data are held as ``[N, n_max, ...]`` arrays padded per participant with a ``[N]`` count of real
rows; every local step draws a uniformly random subset of a participant's own rows. All
participants step together by the many-model strategy of
:func:`jaxreform.parallel.choose_strategy` (a loop over one jitted participant on CPU, where
it measured as fast or faster; ``vmap`` over stacked copies on accelerators).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxreform import _validate
from jaxreform.dp import accounting, clipping
from jaxreform.errors import ConfigError

Params = dict


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollabConfig:
    """Settings of the collaborative training.

    Attributes:
        rounds: Upload rounds.
        local_steps: SGD steps each participant takes per round.
        batch_size: Examples per local step (DP: the expected Poisson batch size).
        learning_rate: Local SGD learning rate.
        upload_fraction: θ_u in (0, 1], the fraction of parameters whose change is uploaded
            (the largest changes by magnitude).
        dp_epsilon: Record-level ε of each participant's uploads over all rounds; None: no DP.
        dp_delta: δ of that guarantee.
        dp_clip_norm: Per-example gradient clipping norm C of the DP local steps.
    """

    rounds: int = 30
    local_steps: int = 20
    batch_size: int = 64
    learning_rate: float = 0.05
    upload_fraction: float = 0.1
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_clip_norm: float = 1.0

    def __post_init__(self):
        _validate.check_integers(rounds=self.rounds, local_steps=self.local_steps,
                                 batch_size=self.batch_size)
        _validate.check_positive(rounds=self.rounds, local_steps=self.local_steps,
                                 batch_size=self.batch_size, learning_rate=self.learning_rate,
                                 dp_clip_norm=self.dp_clip_norm)
        if not 0.0 < self.upload_fraction <= 1.0:
            raise ConfigError(f"upload_fraction (θ_u) must lie in (0, 1], got "
                              f"{self.upload_fraction}.")
        if self.dp_epsilon is not None:
            _validate.check_positive(dp_epsilon=self.dp_epsilon)
            accounting.check_delta(self.dp_delta)


class Participants(NamedTuple):
    """Every participant's private data, padded to a common row count.

    Attributes:
        inputs: ``[N, n_max, ...]``.
        labels: ``[N, n_max]`` int32 (padding rows: 0, never drawn).
        counts: ``[N]`` int32 real rows of each participant.
        class_sets: The classes each participant holds.
    """

    inputs: jax.Array
    labels: jax.Array
    counts: jax.Array
    class_sets: tuple[tuple[int, ...], ...]


def check_class_sets(class_sets, num_classes: int, *, adversary: int | None = None,
                     victim_class: int | None = None) -> tuple[tuple[int, ...], ...]:
    """Validates who holds which classes; returns them as tuples of ints.

    Raises:
        ConfigError: fewer than two participants, an empty or overlapping class set, a class
            outside ``[0, num_classes)``, an adversary index out of range, a victim class no
            participant holds, or an adversary that holds the victim class itself.
    """
    sets = tuple(tuple(int(c) for c in classes) for classes in class_sets)
    if len(sets) < 2:
        raise ConfigError(f"collaborative learning needs at least two participants, got "
                          f"{len(sets)}.")
    seen: dict[int, int] = {}
    for index, classes in enumerate(sets):
        if not classes:
            raise ConfigError(f"participant {index} holds no class.")
        if len(set(classes)) < len(classes):
            raise ConfigError(f"participant {index} lists a class twice: {list(classes)}.")
        for c in classes:
            if not 0 <= c < num_classes:
                raise ConfigError(f"participant {index} holds class {c}, outside "
                                  f"[0, {num_classes}).")
            if c in seen:
                raise ConfigError(f"class {c} is held by participants {seen[c]} and {index}; "
                                  "class sets must be disjoint.")
            seen[c] = index
    if adversary is not None and not 0 <= adversary < len(sets):
        raise ConfigError(f"adversary must index one of the {len(sets)} participants, got "
                          f"{adversary}.")
    if victim_class is not None:
        if victim_class not in seen:
            raise ConfigError(f"victim class {victim_class} is held by no participant "
                              f"(participants hold {sorted(seen)}).")
        if adversary is not None and seen[victim_class] == adversary:
            raise ConfigError(f"the adversary (participant {adversary}) holds the victim class "
                              f"{victim_class} itself; the attack targets another's class.")
    return sets


def participant_rows(labels: np.ndarray, class_sets, *,
                     max_per_participant: int | None = None) -> list[np.ndarray]:
    """Each participant's row indices: every example of its classes (the first
    ``max_per_participant`` of them in the given order, if set)."""
    groups = []
    for classes in class_sets:
        rows = np.flatnonzero(np.isin(labels, classes))[:max_per_participant]
        if rows.size == 0:
            raise ConfigError(f"no example of classes {list(classes)} in the data.")
        groups.append(rows)
    return groups


def split_by_class(inputs: np.ndarray, labels: np.ndarray, class_sets, *,
                   max_per_participant: int | None = None) -> Participants:
    """Gives each participant its :func:`participant_rows`, padded to one row count."""
    groups = participant_rows(labels, class_sets, max_per_participant=max_per_participant)
    n_max = max(len(rows) for rows in groups)
    padded = np.stack([np.concatenate([rows, np.full(n_max - len(rows), rows[0])])
                       for rows in groups])
    return Participants(jnp.asarray(inputs[padded]), jnp.asarray(labels[padded], jnp.int32),
                        jnp.asarray([len(rows) for rows in groups], jnp.int32),
                        tuple(tuple(classes) for classes in class_sets))


def draw_rows(key: jax.Array, count: jax.Array, n_max: int, size: int) -> jax.Array:
    """``[size]`` distinct row indices drawn uniformly from ``[0, count)`` (count traced;
    needs ``size <= count``)."""
    scores = jnp.where(jnp.arange(n_max) < count, jax.random.uniform(key, (n_max,)), -1.0)
    return jax.lax.top_k(scores, size)[1]


def select_largest(delta: Params, fraction: float) -> Params:
    """Keeps the ``ceil(fraction · P)`` entries of ``delta`` largest in magnitude, zeroes the
    rest (ties at the threshold are kept); the selective upload of DSSGD."""
    flat, unravel = ravel_pytree(delta)
    if fraction >= 1.0:
        return delta
    keep = max(1, math.ceil(fraction * flat.size))
    threshold = jax.lax.top_k(jnp.abs(flat), keep)[0][-1]
    return unravel(jnp.where(jnp.abs(flat) >= threshold, flat, 0.0))


class LocalPlan(NamedTuple):
    """Static shape of the local steps: rows per step, and the DP noise (0: no DP)."""

    padded_batch: int
    noise_multiplier: float
    sampling_rates: tuple[float, ...]


def plan_local_steps(config: CollabConfig, counts) -> LocalPlan:
    """Batch shape and, with DP, the noise multiplier σ that gives every participant
    ``config.dp_epsilon`` over all rounds (the participant with the fewest records, whose
    sampling rate is highest, sets σ)."""
    counts = [int(c) for c in np.asarray(counts)]
    if not counts:
        raise ConfigError("no participants.")
    smallest = int(np.argmin(counts))
    if counts[smallest] < config.batch_size:
        raise ConfigError(f"participant {smallest} holds {counts[smallest]} examples, fewer than "
                          f"the local batch size {config.batch_size}; lower the batch size or "
                          "give it more data.")
    rates = tuple(config.batch_size / c for c in counts)
    if config.dp_epsilon is None:
        return LocalPlan(config.batch_size, 0.0, rates)
    for count in counts:
        accounting.check_delta(config.dp_delta, count)
    steps = config.rounds * config.local_steps
    sigma = accounting.dpsgd_noise_multiplier(config.dp_epsilon, max(rates), steps,
                                              config.dp_delta)
    # Batches are padded to batch + 6 std (+8): a Poisson size above it has probability below
    # 1e-9 per step, and :func:`poisson_sizes` raises rather than truncate it, since a
    # truncated batch would no longer be the sampled one the accountant assumes.
    padded = int(math.ceil((config.batch_size + 6 * math.sqrt(config.batch_size) + 8) / 8) * 8)
    # Padding may exceed a small participant's count: its Poisson size never does, and
    # :func:`draw_rows` puts real rows first, so only masked rows repeat.
    return LocalPlan(min(padded, max(counts)), sigma, rates)


def dp_guarantees(config: CollabConfig, plan: LocalPlan) -> list[accounting.Guarantee]:
    """Each participant's record-level guarantee (empty without DP)."""
    if config.dp_epsilon is None:
        return []
    steps = config.rounds * config.local_steps
    return [accounting.Guarantee(
        epsilon=accounting.dpsgd_epsilon(rate, plan.noise_multiplier, steps, config.dp_delta),
        delta=config.dp_delta, accountant="pld",
        covers=f"each record of participant {index}, through everything it uploads",
        mechanism=(f"DP-SGD local steps: Poisson rate {rate:.4g}, σ = "
                   f"{plan.noise_multiplier:.4g}, clip {config.dp_clip_norm}, {steps} steps"))
        for index, rate in enumerate(plan.sampling_rates)]


def poisson_sizes(key: jax.Array, counts, plan: LocalPlan, steps: int) -> jax.Array:
    """``[N, steps]`` Poisson batch sizes (DP) or the fixed batch size (no DP)."""
    num = len(plan.sampling_rates)
    if plan.noise_multiplier == 0.0:
        return jnp.full((num, steps), plan.padded_batch, jnp.int32)
    sizes = jax.vmap(lambda k, n, q: jax.random.binomial(k, n, q, (steps,)))(
        jax.random.split(key, num), jnp.asarray(counts, jnp.float32),
        jnp.asarray(plan.sampling_rates, jnp.float32))
    if int(jnp.max(sizes)) > plan.padded_batch:
        raise ConfigError(f"a Poisson batch of {int(jnp.max(sizes))} rows exceeds the padded "
                          f"size {plan.padded_batch}; lower batch_size or give participants "
                          "more data.")
    return sizes.astype(jnp.int32)


def make_local_training(apply_fn: Callable, config: CollabConfig, plan: LocalPlan) -> Callable:
    """One participant's local steps from the downloaded parameters.

    Returns:
        ``train(params, key, inputs [n_max, ...], labels [n_max], count, sizes [steps],
        extra_inputs [steps, f, ...], extra_labels [steps, f], extra_weight) -> (selected
        update, mean loss)``: ``extra_*`` are rows added to every step with weight
        ``extra_weight`` (the adversary's generated samples; 0 for everyone else), and the
        update is the parameter change after :func:`select_largest`.
    """
    optimizer = optax.sgd(config.learning_rate)
    dp = plan.noise_multiplier > 0.0

    def train(params, key, inputs, labels, count, sizes, extra_inputs, extra_labels,
              extra_weight):
        def step(carry, step_inputs):
            current, opt_state = carry
            step_key, size, fake_x, fake_y = step_inputs
            rows = draw_rows(jax.random.fold_in(step_key, 0), count, inputs.shape[0],
                             plan.padded_batch)
            batch_x = jnp.concatenate([inputs[rows], fake_x])
            batch_y = jnp.concatenate([labels[rows], fake_y])
            mask = jnp.concatenate([(jnp.arange(plan.padded_batch) < size).astype(jnp.float32),
                                    jnp.full(fake_y.shape, extra_weight, jnp.float32)])
            if dp:
                clipped = clipping.clipped_gradient_sum(
                    apply_fn, current, batch_x, batch_y, mask, config.dp_clip_norm,
                    clipping.cross_entropy_example_loss)
                noise = _gaussian_like(jax.random.fold_in(step_key, 1), clipped.grad_sum,
                                       plan.noise_multiplier * config.dp_clip_norm)
                grads = jax.tree.map(lambda g, z: (g + z) / config.batch_size,
                                     clipped.grad_sum, noise)
                loss = clipped.loss_sum / jnp.maximum(mask.sum(), 1.0)
            else:
                def batch_loss(p):
                    losses = clipping.cross_entropy_example_loss(apply_fn(p, batch_x), batch_y)
                    return jnp.sum(mask * losses) / jnp.maximum(mask.sum(), 1.0)
                loss, grads = jax.value_and_grad(batch_loss)(current)
            updates, opt_state = optimizer.update(grads, opt_state, current)
            return (optax.apply_updates(current, updates), opt_state), loss

        keys = jax.random.split(key, sizes.shape[0])
        (local, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                          (keys, sizes, extra_inputs, extra_labels))
        delta = jax.tree.map(jnp.subtract, local, params)
        return select_largest(delta, config.upload_fraction), losses.mean()

    return train


def _gaussian_like(key: jax.Array, tree: Params, std: float) -> Params:
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [std * jax.random.normal(k, leaf.shape, leaf.dtype)
                                        for k, leaf in zip(keys, leaves)])


def make_round(apply_fn: Callable, config: CollabConfig, plan: LocalPlan, *,
               strategy: str) -> Callable:
    """One round for all participants: local training from ``shared``, then the server adds
    every selected update.

    Returns:
        ``round(shared, key, participants, sizes [N, steps], extra_inputs [steps, f, ...],
        extra_labels [steps, f], extra_weights [N]) -> (new shared params, [N] mean local
        losses)``. With ``strategy="vmap"`` it is one jitted call; with ``"loop"`` a Python
        loop over N calls of one jitted participant (faster for convolutions on CPU).
    """
    _validate.check_choice("strategy", strategy, ("vmap", "loop"))
    train = make_local_training(apply_fn, config, plan)
    one = jax.jit(train)
    all_at_once = jax.jit(jax.vmap(train, in_axes=(None, 0, 0, 0, 0, 0, None, None, 0)))

    def run(shared, key, participants, sizes, extra_inputs, extra_labels, extra_weights):
        num = participants.counts.shape[0]
        keys = jax.random.split(key, num)
        if strategy == "vmap":
            updates, losses = all_at_once(shared, keys, participants.inputs,
                                          participants.labels, participants.counts, sizes,
                                          extra_inputs, extra_labels, extra_weights)
            total = jax.tree.map(lambda u: u.sum(axis=0), updates)
        else:
            total, losses = None, []
            for i in range(num):
                update, loss = one(shared, keys[i], participants.inputs[i],
                                   participants.labels[i], participants.counts[i], sizes[i],
                                   extra_inputs, extra_labels, extra_weights[i])
                total = update if total is None else jax.tree.map(jnp.add, total, update)
                losses.append(loss)
            losses = jnp.stack(losses)
        return jax.tree.map(jnp.add, shared, total), losses

    return run
