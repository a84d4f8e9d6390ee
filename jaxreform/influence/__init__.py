"""Influence functions: HVPs, inverse-HVP solvers, I_up,loss and I_pert,loss.

See :mod:`.scores` for the definitions and :mod:`.solvers` for the solvers' settings.
"""

from jaxreform.influence.hvp import (
    dense_hessian,
    dense_matrix,
    flat_hvp,
    flat_matvec,
    hvp,
    largest_eigenvalue,
    softmax_ggn_vp,
)
from jaxreform.influence.scores import (
    checked_inverse_hvp,
    chunked_vmap,
    curvature_product,
    example_loss_from_apply,
    influence_input_gradients,
    influence_on_loss,
    inverse_hvp,
    make_objective,
    reference_gradients,
    top_hessian_eigenvalue,
)
from jaxreform.influence.solvers import (
    CURVATURES,
    SOLVERS,
    SolveReport,
    SolverConfig,
    check_report,
    solve_cg,
    solve_exact,
    solve_lissa,
)

__all__ = [
    "CURVATURES", "SOLVERS", "SolveReport", "SolverConfig", "check_report",
    "checked_inverse_hvp", "chunked_vmap", "curvature_product", "dense_hessian",
    "dense_matrix", "example_loss_from_apply", "flat_hvp", "flat_matvec", "hvp",
    "influence_input_gradients", "influence_on_loss", "inverse_hvp", "largest_eigenvalue",
    "make_objective", "reference_gradients", "solve_cg", "solve_exact", "solve_lissa",
    "softmax_ggn_vp", "top_hessian_eigenvalue",
]
