"""Collaborative learning and the GAN attack on it (Hitaj et al. 2017).

- :mod:`~jaxreform.collab.dssgd`: distributed selective SGD over stacked participants, with
  optional record-level DP on every upload.
- :mod:`~jaxreform.collab.gan`: the adversary's generator, its training against the shared
  model, and the automatic measures of the attack's success.
- :mod:`~jaxreform.collab.job`: the report-writing job behind ``jaxreform attack gan``.
"""

from jaxreform.collab.dssgd import (
    CollabConfig,
    Participants,
    check_class_sets,
    make_round,
    select_largest,
    split_by_class,
)
from jaxreform.collab.gan import GanAttackConfig, attack_success, generator_for

__all__ = [
    "CollabConfig", "GanAttackConfig", "Participants", "attack_success", "check_class_sets",
    "generator_for", "make_round", "select_largest", "split_by_class",
]
