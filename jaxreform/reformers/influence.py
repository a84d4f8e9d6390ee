"""The influence-function reformer: noise orthogonal to each example's influence gradient.

For each training point z = (x, y), the input-gradient of its influence on a reference loss,
``I_pert,loss(z) = -∇θL_refᵀ H⁻¹ ∇x∇θL(z)`` (Koh & Liang 2017), is the direction in
which moving x changes the trained model's reference loss fastest. Adversarial examples move along
it; this reformer moves *across* it: Gaussian noise with its component along the direction(s)
removed, scaled to a relative L2 budget. The training data change a lot while, to first order,
the model trained on them does not.

Steps of :meth:`InfluenceReformer.fit`: hold out a validation split as the reference set;
train the task model on the rest (with L2 penalty λ, so the Hessian is positive definite for
softmax regression); one inverse-HVP for the reference gradient (or one per class); one
vmapped input-gradient per training example; noise by :mod:`.influence_noise`. Deployment
is unchanged (the transform is the identity): only the training data are reformed.

Reference: Koh & Liang, "Understanding Black-box Predictions via Influence Functions",
ICML 2017, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import _validate, influence, models, train
from jaxreform.data.core import subset_indices
from jaxreform.errors import ConfigError
from jaxreform.reformers.identity import _identity
from jaxreform.reformers.influence_noise import NOISE_MODES, reform_with_noise

# Above this, a relative change is no longer "reforming" the data but replacing it.
MAX_BUDGET = 10.0


@dataclasses.dataclass(frozen=True)
class InfluenceFitted:
    """Result of :meth:`InfluenceReformer.fit`.

    Attributes:
        reformed_train: ``[n, ...]`` reformed training inputs.
        directions: ``[n, ...]`` or ``[n, r, ...]`` influence input-gradients used.
        info: Settings and diagnostics (solver residual, residual cosine, achieved budget).
    """

    reformed_train: jax.Array
    directions: jax.Array
    info: dict
    transform = staticmethod(_identity)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InfluenceReformer:
    """Reforms training data with noise across their influence input-gradients.

    Attributes:
        budget: Relative L2 change of every example, ``||x' - x|| / ||x||`` (e.g. 0.3).
        noise: ``"orthogonal"`` (the reformer), or the controls ``"isotropic"`` / ``"along"``.
        model: Task model used for influence: ``"softmax"``, ``"mlp"`` or ``"cnn"``.
        per_class: One reference direction per class (project out a k-dim subspace).
        l2_penalty: λ of the model's training objective (Koh & Liang: 0.01).
        solver: Inverse-HVP solver; non-convex models (mlp, cnn) need damping > 0.
        validation_fraction: Share of the training data held out as the reference set.
        train_config: How the influence model is trained.
        clip: Valid input range, e.g. ``(0.0, 1.0)``; None leaves values unclipped.
        chunk_size: Examples per vmapped chunk of the input gradients (memory).
        hvp_chunk_size: Examples per chunk of the curvature products in the solve; None
            takes all at once (fine for softmax regression, too much memory for a CNN on
            thousands of images: its patches alone take gigabytes).
    """

    name: str = dataclasses.field(default="influence", init=False)
    budget: float = 0.3
    noise: str = "orthogonal"
    model: str = "softmax"
    per_class: bool = False
    l2_penalty: float = 0.01
    solver: influence.SolverConfig = influence.SolverConfig(method="cg", tolerance=1e-4)
    validation_fraction: float = 0.1
    train_config: train.TrainConfig = train.TrainConfig(epochs=10, batch_size=128,
                                                        learning_rate=1e-3)
    clip: tuple[float, float] | None = None
    chunk_size: int = 512
    hvp_chunk_size: int | None = None

    def __post_init__(self):
        _validate.check_finite_numbers(budget=self.budget, l2_penalty=self.l2_penalty)
        if not 0 < self.budget <= MAX_BUDGET:
            raise ConfigError(f"budget must lie in (0, {MAX_BUDGET}] (a relative L2 change), "
                              f"got budget={self.budget!r}.")
        _validate.check_choice("noise", self.noise, NOISE_MODES)
        _validate.check_choice("model", self.model, models.CLASSIFIERS)
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("validation_fraction must lie in (0, 1), got "
                              f"{self.validation_fraction!r}.")
        if self.l2_penalty < 0:
            raise ConfigError(f"l2_penalty must be >= 0, got {self.l2_penalty!r}.")
        if self.hvp_chunk_size is not None:
            _validate.check_integers(hvp_chunk_size=self.hvp_chunk_size)
            _validate.check_positive(hvp_chunk_size=self.hvp_chunk_size)
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise ConfigError(f"clip must be (low, high) with low < high, got {self.clip!r}.")

    def directions(self, key, inputs, labels, *, progress: bool = True):
        """Trains the influence model and returns ``(directions, info)`` for every example."""
        n = inputs.shape[0]
        split_key, init_key, fit_key, solve_key = jax.random.split(key, 4)
        num_reference = max(1, int(round(self.validation_fraction * n)))
        reference = subset_indices(split_key, n, num_reference)
        fit_mask = np.ones(n, bool)
        fit_mask[reference] = False
        fit_x, fit_y = inputs[fit_mask], labels[fit_mask]
        num_classes = int(jnp.max(labels)) + 1
        module = models.CLASSIFIERS[self.model](num_classes=num_classes)
        params = module.init(init_key, inputs[:1])
        trained = train.fit(fit_key, train.cross_entropy_loss(module.apply,
                                                              l2_penalty=self.l2_penalty),
                            params, (fit_x, fit_y), self.train_config, progress=progress,
                            description="influence model").params
        example_loss = influence.example_loss_from_apply(module.apply)
        gradient = influence.reference_gradients(
            example_loss, trained, inputs[reference], labels[reference],
            num_classes=num_classes if self.per_class else None)
        s_ref, report = influence.checked_inverse_hvp(
            solve_key, example_loss, trained, (fit_x, fit_y), gradient, self.solver,
            l2_penalty=self.l2_penalty, hvp_chunk_size=self.hvp_chunk_size)
        directions = influence.influence_input_gradients(
            example_loss, trained, inputs, labels, s_ref, chunk_size=self.chunk_size)
        info = {
            "influence_model": self.model,
            "reference_examples": num_reference,
            "num_directions": int(s_ref.shape[1]) if s_ref.ndim == 2 else 1,
            "solver": dataclasses.asdict(self.solver),
            "solver_relative_residual": float(jnp.max(report.relative_residual)),
            "solver_iterations": int(jnp.max(report.iterations)),
        }
        return directions, info

    def fit(self, key, inputs, labels, *, progress: bool = True) -> InfluenceFitted:
        """Reforms ``inputs [n, ...]`` (labels ``[n]``); see the module docstring.

        Raises:
            InvalidDataError: on NaN/Inf inputs or mismatched labels.
            SolverError: if the inverse-HVP solve fails (the message names the setting).
        """
        _validate.check_examples("influence reformer inputs", inputs,
                                 "influence reformer labels", labels)
        inputs, labels = jnp.asarray(inputs, jnp.float32), jnp.asarray(labels)
        direction_key, noise_key = jax.random.split(key)
        directions, info = self.directions(direction_key, inputs, labels, progress=progress)
        result = reform_with_noise(noise_key, inputs, directions, budget=self.budget,
                                   mode=self.noise, clip=self.clip)
        info.update({
            "budget": self.budget,
            "noise": self.noise,
            "per_class": self.per_class,
            "l2_penalty": self.l2_penalty,
            "clip": list(self.clip) if self.clip else None,
            "achieved_relative_l2_mean": float(jnp.mean(result.relative_l2)),
            "residual_cosine_mean": float(jnp.mean(result.residual_cosine)),
            "residual_cosine_max": float(jnp.max(result.residual_cosine)),
        })
        return InfluenceFitted(reformed_train=result.reformed, directions=directions, info=info)
