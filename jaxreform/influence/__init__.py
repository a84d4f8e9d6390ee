"""Influence functions: HVPs, inverse-HVP solvers, I_up,loss and I_pert,loss.

See :mod:`.scores` for the definitions and :mod:`.solvers` for the solvers' settings.
"""

from jaxreform.influence.hvp import dense_hessian, flat_hvp, hvp, largest_eigenvalue
from jaxreform.influence.scores import (
    checked_inverse_hvp,
    chunked_vmap,
    example_loss_from_apply,
    influence_input_gradients,
    influence_on_loss,
    inverse_hvp,
    make_objective,
    reference_gradients,
    top_hessian_eigenvalue,
)
from jaxreform.influence.solvers import (
    SOLVERS,
    SolveReport,
    SolverConfig,
    check_report,
    solve_cg,
    solve_exact,
    solve_lissa,
)

__all__ = [
    "SOLVERS", "SolveReport", "SolverConfig", "check_report", "checked_inverse_hvp",
    "chunked_vmap", "dense_hessian", "example_loss_from_apply", "flat_hvp", "hvp",
    "influence_input_gradients", "influence_on_loss", "inverse_hvp", "largest_eigenvalue",
    "make_objective", "reference_gradients", "solve_cg", "solve_exact", "solve_lissa",
    "top_hessian_eigenvalue",
]
