"""A cyclic block (SPEC §1 "Cyclic programs"): its residual, linearization, assembly, elimination,
the forward methods, the linear solves, and the policy that picks them.

Modules, bottom to top:

- :mod:`~lagrangeprop.blocks.state`: the typed per-block cache and the per-solve ``BlockState``;
- :mod:`~lagrangeprop.blocks.kernels`, :mod:`~lagrangeprop.blocks.layout`: numeric kernels, the stacked
  vector ``z_S``;
- :mod:`~lagrangeprop.blocks.residual`, :mod:`~lagrangeprop.blocks.scale`: ``c_S`` and the scale each
  constraint is judged against;
- :mod:`~lagrangeprop.blocks.linearization`, :mod:`~lagrangeprop.blocks.assembly`,
  :mod:`~lagrangeprop.blocks.sweeps`: the local partials, ``A_SS``, matrix-free products and sweeps;
- :mod:`~lagrangeprop.blocks.eliminate`: Newton on the states, the Schur complement, factorizations;
- :mod:`~lagrangeprop.blocks.iteration`, :mod:`~lagrangeprop.blocks.newton`,
  :mod:`~lagrangeprop.blocks.fixed_point`: the forward methods;
- :mod:`~lagrangeprop.blocks.linear`: the adjoint and tangent linear solves by a given method;
- :mod:`~lagrangeprop.blocks.policy`: which method and solver (the one place that decides);
- :mod:`~lagrangeprop.blocks.report`: one line on how a block was solved.

The other layers use the names below.
"""

from .assembly import block_jacobian
from .eliminate import split_members
from .policy import choose_linear_solver, choose_method, solve_adjoint, solve_forward, solve_tangent
from .report import summary
from .residual import block_residual
from .scale import ROUNDING, TINY, constraint_noise, constraint_scale, explicit_scale, scaled_max
from .state import BlockState

__all__ = ["BlockState", "solve_forward", "solve_adjoint", "solve_tangent", "choose_method",
           "choose_linear_solver", "summary", "block_residual", "block_jacobian", "split_members",
           "constraint_scale", "constraint_noise", "explicit_scale", "scaled_max", "TINY", "ROUNDING"]
