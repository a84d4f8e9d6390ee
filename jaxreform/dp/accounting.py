"""Privacy accounting for DP-SGD and the Gaussian mechanism, delegated to ``dp-accounting``.

Nothing here computes a privacy bound itself: every ε comes from Google's ``dp_accounting``
package, either its Rényi-DP accountant (``"rdp"``) or its privacy-loss-distribution
accountant (``"pld"``, the tighter of the two). DP-SGD with Poisson sampling is described as
the event ``SelfComposed(PoissonSampled(q, Gaussian(σ)), T)`` under the add-or-remove-one
neighbouring relation, as in Abadi et al. (2016).

Why today's numbers sit below the paper's: for q = 0.01, σ = 4, δ = 1e-5 and 10,000 steps,
Abadi et al. report ε ≈ 1.26 from their moments accountant, which evaluated a bound on the
log moments at a few integer orders. The RDP accountant uses a tighter bound over a finer
grid of orders (ε ≈ 1.035) and the PLD accountant composes the numerically exact privacy-loss
distribution (ε ≈ 0.947). All three describe the same training run; only the analysis
improved.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import dp_accounting
from dp_accounting import pld, rdp

from jaxreform import _validate
from jaxreform.errors import ConfigError

ACCOUNTANTS = ("rdp", "pld")
# Largest noise multiplier the calibration searches; a target ε that needs more is refused
# (training with σ > 1000 learns nothing useful in any practical number of steps).
MAX_NOISE_MULTIPLIER = 1000.0
# Smallest one; an ε met even at σ = 0.01 is refused as meaningless.
MIN_NOISE_MULTIPLIER = 1e-2


def check_delta(delta: float, num_examples: int | None = None) -> None:
    """Refuses δ outside (0, 1), and δ ≥ 1/n when the dataset size n is known.

    δ ≥ 1/n would allow a mechanism that publishes one whole record at random.
    """
    _validate.check_finite_numbers(delta=delta)
    if not 0.0 < delta < 1.0:
        raise ConfigError(f"delta must lie in (0, 1), got delta={delta!r}.")
    if num_examples is not None and delta >= 1.0 / num_examples:
        raise ConfigError(
            f"delta={delta!r} is not below 1/n = {1.0 / num_examples:.3g} for n={num_examples} "
            "training examples; such a delta permits leaking a whole record. Use a smaller delta."
        )


def _check_sgd_settings(sampling_rate: float, noise_multiplier: float, steps: int) -> None:
    _validate.check_finite_numbers(sampling_rate=sampling_rate, noise_multiplier=noise_multiplier)
    if not 0.0 < sampling_rate <= 1.0:
        raise ConfigError(f"sampling_rate must lie in (0, 1], got {sampling_rate!r}.")
    _validate.check_positive(noise_multiplier=noise_multiplier)
    _validate.check_integers(steps=steps)
    _validate.check_positive(steps=steps)


def dpsgd_event(sampling_rate: float, noise_multiplier: float, steps: int) -> dp_accounting.DpEvent:
    """The ``dp_accounting`` event of ``steps`` Poisson-sampled Gaussian DP-SGD steps."""
    _check_sgd_settings(sampling_rate, noise_multiplier, steps)
    step = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(step, steps)


def _make_accountant(accountant: str) -> dp_accounting.PrivacyAccountant:
    _validate.check_choice("accountant", accountant, ACCOUNTANTS)
    return rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()


def event_epsilon(event: dp_accounting.DpEvent, delta: float, accountant: str = "pld") -> float:
    """ε at ``delta`` of any ``dp_accounting`` event, by the named accountant."""
    check_delta(delta)
    ledger = _make_accountant(accountant)
    ledger.compose(event)
    return float(ledger.get_epsilon(delta))


def dpsgd_epsilon(sampling_rate: float, noise_multiplier: float, steps: int, delta: float,
                  accountant: str = "pld") -> float:
    """ε of DP-SGD with Poisson sampling rate q, noise multiplier σ, T steps, at δ.

    Example: ``dpsgd_epsilon(0.01, 4.0, 10_000, 1e-5, "rdp")`` ≈ 1.035 (``"pld"``: ≈ 0.947).
    """
    return event_epsilon(dpsgd_event(sampling_rate, noise_multiplier, steps), delta, accountant)


def dpsgd_noise_multiplier(target_epsilon: float, sampling_rate: float, steps: int, delta: float,
                           accountant: str = "pld",
                           other_events: Sequence[dp_accounting.DpEvent] = ()) -> float:
    """The smallest σ (to ~0.1% relative) whose DP-SGD run reaches ``target_epsilon`` at δ.

    ``other_events`` are composed with the run and share the budget (e.g. a DP-PCA step
    before training).

    Raises:
        ConfigError: if the target is not positive, or not reached even at
            ``MAX_NOISE_MULTIPLIER`` within ``steps`` (train for fewer steps or at a lower
            sampling rate, or accept a larger ε).
    """
    _validate.check_finite_numbers(target_epsilon=target_epsilon)
    _validate.check_positive(target_epsilon=target_epsilon)
    _check_sgd_settings(sampling_rate, 1.0, steps)
    check_delta(delta)
    def whole_run(sigma):
        run = dpsgd_event(sampling_rate, sigma, steps)
        return dp_accounting.ComposedDpEvent([*other_events, run]) if other_events else run

    at_most = event_epsilon(whole_run(MAX_NOISE_MULTIPLIER), delta, accountant)
    if at_most > target_epsilon:
        raise ConfigError(
            f"no noise multiplier up to {MAX_NOISE_MULTIPLIER:g} reaches epsilon={target_epsilon} "
            f"with sampling rate {sampling_rate} over {steps} steps (it gives {at_most:.3g}); "
            "train for fewer steps, sample less, or accept a larger epsilon.")

    def calibrate(name, lower, upper):
        return dp_accounting.calibrate_dp_mechanism(
            lambda: _make_accountant(name),
            whole_run, target_epsilon, delta,
            bracket_interval=dp_accounting.ExplicitBracketInterval(lower, upper), tol=1e-3)

    # RDP bounds ε from above, so its σ is an upper end for the tighter PLD search. The lower
    # end stays well above 0: the PLD of a tiny σ needs a huge discretisation grid.
    if event_epsilon(whole_run(MIN_NOISE_MULTIPLIER), delta, "rdp") <= target_epsilon:
        raise ConfigError(
            f"epsilon={target_epsilon} is met even with noise multiplier "
            f"{MIN_NOISE_MULTIPLIER:g} (sampling rate {sampling_rate}, {steps} steps): a "
            "guarantee this weak is no guarantee; choose a smaller epsilon.")
    sigma = calibrate("rdp", MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER)
    if accountant == "pld":
        lower = max(0.25, 0.5 * sigma)
        if event_epsilon(whole_run(lower), delta, "pld") <= target_epsilon:
            raise ConfigError(
                f"epsilon={target_epsilon} needs a noise multiplier below {lower:.3g}, outside "
                "what the PLD accountant is calibrated for here; choose a smaller epsilon or "
                "use the RDP accountant (accountant='rdp', --accountant rdp where offered).")
        sigma = calibrate("pld", lower, sigma)
    return float(sigma)


def gaussian_mechanism_epsilon(noise_multiplier: float, delta: float,
                               accountant: str = "pld") -> float:
    """ε of one Gaussian mechanism whose noise std is ``noise_multiplier`` × its sensitivity."""
    _validate.check_finite_numbers(noise_multiplier=noise_multiplier)
    _validate.check_positive(noise_multiplier=noise_multiplier)
    return event_epsilon(dp_accounting.GaussianDpEvent(noise_multiplier), delta, accountant)


def gaussian_mechanism_noise(target_epsilon: float, delta: float, accountant: str = "pld") -> float:
    """The noise multiplier of one Gaussian mechanism that reaches ``target_epsilon`` at δ."""
    _validate.check_finite_numbers(target_epsilon=target_epsilon)
    _validate.check_positive(target_epsilon=target_epsilon)
    check_delta(delta)
    lower = 0.1  # the PLD grid of a smaller sigma is impractically large
    if gaussian_mechanism_epsilon(lower, delta, accountant) <= target_epsilon:
        raise ConfigError(f"epsilon={target_epsilon} needs a noise multiplier below {lower}; "
                          "such a mechanism protects nothing worth stating.")
    return float(dp_accounting.calibrate_dp_mechanism(
        lambda: _make_accountant(accountant),
        dp_accounting.GaussianDpEvent,
        target_epsilon, delta,
        bracket_interval=dp_accounting.ExplicitBracketInterval(lower, MAX_NOISE_MULTIPLIER),
        tol=1e-4,
    ))


@dataclasses.dataclass(frozen=True)
class Guarantee:
    """An (ε, δ) statement and exactly what it protects, for reports.

    Attributes:
        epsilon: ε at ``delta`` (``math.inf`` when no guarantee holds).
        delta: δ.
        accountant: ``"rdp"`` or ``"pld"``.
        covers: What the bound is about, e.g. "the released task-model parameters".
        mechanism: The mechanism and its settings, in words.
    """

    epsilon: float
    delta: float
    accountant: str
    covers: str
    mechanism: str

    def as_dict(self) -> dict:
        """JSON-ready fields (ε = inf becomes None)."""
        out = dataclasses.asdict(self)
        if not math.isfinite(self.epsilon):
            out["epsilon"] = None
        return out
