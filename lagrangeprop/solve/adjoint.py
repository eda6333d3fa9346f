"""The multipliers: ∂L/∂z = 0, i.e. ``Aᵀ λ = e_o·seed`` (SPEC §1, condition 2).

On the acyclic part ``A = I - J`` is unit lower triangular in topological order and the solve
is back-substitution, read in reverse like autograd's ``backward_pass``:
``λ_u = [u = o]·seed + Σ_{d ∈ children(u)} (∂f_d/∂z_u)ᵀ λ_d``. A cyclic block S solves
``A_SSᵀ λ_S = b_S`` with everything outside S already accumulated into ``b_S``
(:mod:`lagrangeprop.blocks.policy`). Inputs end with ``λ_x = ∂L/∂x = ∇_x z_o``.

:func:`adjoint_reference` is the interpreter: one reverse loop, each op's rules.
:func:`run_adjoint`, what a solve calls, runs the generated code
(:mod:`~lagrangeprop.solve.compiled`) and falls back to the interpreter, which the tests hold
it to.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: x * x, x=3.0).solve(x=3.0)
>>> float(sol.grad["x"])
6.0
"""

from __future__ import annotations

import numpy as np

from . import compiled
from ..compile.schedule import Schedule, Step
from ..errors import ShapeError
from ..options import SolveOptions
from .finite import check_finite_pass
from .local import accumulate, block_adjoint

__all__ = ["run_adjoint", "adjoint_reference"]


def run_adjoint(sched: Schedule, vals: list, seed: np.ndarray, states: dict,
                opts: SolveOptions) -> list:
    """All multipliers (``None`` where identically zero), indexed by node id: the generated
    code while ``compiled.ENABLED`` (:mod:`~lagrangeprop.solve.compiled`), else (and where
    Python's float arithmetic raised) :func:`adjoint_reference`. A non-finite multiplier
    raises :class:`~lagrangeprop.errors.NonFiniteError`."""
    lam = compiled.adjoint(sched, vals, seed, states, opts) if compiled.ENABLED else None
    if lam is None:   # (the compiled pass tests its own multipliers)
        lam = adjoint_reference(sched, vals, seed, states, opts)
    return lam


# Aᵀλ = e_o·seed by back-substitution in reverse topological order:
# λ_u += (∂f_d/∂z_u)ᵀ λ_d for every argument u of each step d (autograd's backward_pass);
# a block S solves A_SSᵀ λ_S = b_S and passes λ_S on to its arguments the same way
def adjoint_reference(sched: Schedule, vals: list, seed: np.ndarray, states: dict,
                      opts: SolveOptions) -> list:
    """:func:`run_adjoint` as a plain reverse walk of the schedule with each op's rules
    (the interpreter).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> from lagrangeprop.options import SolveOptions
    >>> from lagrangeprop.solve.forward import forward_reference, initial_values
    >>> sched = lp.trace(lambda x: x * x, x=3.0).compile()
    >>> vals = initial_values(sched, {sched.index["x"]: np.float64(3.0)})
    >>> states = forward_reference(sched, vals, SolveOptions.make())
    >>> lam = adjoint_reference(sched, vals, np.float64(1.0), states, SolveOptions.make())
    >>> float(lam[sched.index["x"]])
    6.0
    """
    lam: list = [None] * len(sched.names)
    # a private copy: no gradient may alias the caller's seed array
    lam[sched.output] = seed.copy() if isinstance(seed, np.ndarray) else seed
    with np.errstate(all="ignore"):
        for step in reversed(sched.steps):
            if type(step) is not Step:
                block_adjoint(step, vals, lam, states, opts)
                continue
            g = lam[step.node]
            if g is None:
                continue
            try:
                accumulate(step, g, vals[step.node], vals, lam)
            except ShapeError as exc:
                raise ShapeError(f"node {sched.names[step.node]!r}: {exc}") from None
    check_finite_pass(sched, vals, lam, "multiplier")
    return lam
