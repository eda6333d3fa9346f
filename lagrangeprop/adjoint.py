"""The multipliers: ∂L/∂z = 0, i.e. ``Aᵀ λ = e_o·seed`` (SPEC §1, condition 2).

On the acyclic part ``A = I - J`` is unit lower triangular in topological order and
the solve is back-substitution, read in reverse like autograd's ``backward_pass``:
``λ_u = [u = o]·seed + Σ_{d ∈ children(u)} (∂f_d/∂z_u)ᵀ λ_d``. A cyclic block S
solves ``A_SSᵀ λ_S = b_S`` with everything outside S already accumulated into
``b_S`` (:mod:`lagrangeprop.blocks`). Inputs end with ``λ_x = ∂L/∂x = ∇_x z_o``.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: x * x, x=3.0).solve(x=3.0)
>>> float(sol.grad["x"])
6.0
"""

from __future__ import annotations

import numpy as np

from . import blocks
from .options import SolveOptions
from .schedule import Schedule, Step

__all__ = ["run_adjoint", "accumulate"]


def accumulate(step: Step, g, ans, vals: list, lam: list, sign: float = 1.0,
               skip: dict | None = None) -> None:
    """``λ_u += sign · (∂op_d/∂z_u)ᵀ g`` for every differentiable argument ``u`` of ``d``.

    ``sign`` is +1 for explicit constraints (``-∂c_d/∂z_u = ∂f_d/∂z_u``) and -1 for
    residual ones (``c_d = r_d``); arguments in ``skip`` (block members) are left out.
    """
    args = [vals[a] for a in step.args]
    for pos, u in step.diff:
        if skip is not None and u in skip:
            continue
        ct = step.prim.vjp(pos, g, ans, args, step.params)
        if ct is None:
            continue
        if sign != 1.0:
            ct = -ct
        prev = lam[u]
        lam[u] = ct if prev is None else prev + ct


def run_adjoint(sched: Schedule, vals: list, seed: np.ndarray, states: dict,
                opts: SolveOptions) -> list:
    """All multipliers (``None`` where identically zero), indexed by node id."""
    lam: list = [None] * len(sched.names)
    lam[sched.output] = seed
    for step in reversed(sched.steps):
        if type(step) is Step:
            g = lam[step.node]
            if g is not None:
                accumulate(step, g, vals[step.node], vals, lam)
        else:
            rhs = [lam[n] for n in step.nodes]
            if all(r is None for r in rhs):
                continue
            state = states[id(step)]
            lam_s = blocks.solve_adjoint(step, vals, rhs, state, opts)
            for s, ls in zip(step.steps, lam_s):
                lam[s.node] = ls
            for s, ls in zip(step.steps, lam_s):
                accumulate(s, ls, state.ans[s.node], vals, lam,
                           -1.0 if s.residual else 1.0, step.position)
    return lam
