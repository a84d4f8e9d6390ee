"""Differential privacy: DP-SGD with fast per-example clipping, and its accounting.

- :mod:`~jaxreform.dp.accounting`: ε for a DP-SGD run and σ for a target ε, through
  ``dp-accounting`` (RDP or PLD); never a home-made bound.
- :mod:`~jaxreform.dp.clipping`: the sum of per-example clipped gradients (ghost clipping
  for Dense/Conv models, ``vmap`` microbatches for anything else).
- :mod:`~jaxreform.dp.sgd`: DP-SGD with Poisson sampling as an optax chain, and ``fit_dp``.
"""

from jaxreform.dp.accounting import (
    Guarantee,
    dpsgd_epsilon,
    dpsgd_noise_multiplier,
    gaussian_mechanism_epsilon,
    gaussian_mechanism_noise,
)
from jaxreform.dp.clipping import clipped_gradient_sum, cross_entropy_example_loss
from jaxreform.dp.sgd import DpFitResult, DpSgdConfig, fit_dp, gaussian_noise_average

__all__ = [
    "DpFitResult", "DpSgdConfig", "Guarantee", "clipped_gradient_sum",
    "cross_entropy_example_loss", "dpsgd_epsilon", "dpsgd_noise_multiplier", "fit_dp",
    "gaussian_mechanism_epsilon", "gaussian_mechanism_noise", "gaussian_noise_average",
]
