"""The block linear solves ``A_SSᵀ x = b`` (adjoint) and ``A_SS x = b`` (tangent), by a given method.

:func:`direct` uses the forward solve's factorization at the solution or makes one
(:func:`~lagrangeprop.blocks.eliminate.reduced_factor`: LU, Schur-complement LU or AMG);
:func:`iterative` runs ``sweep``/``gmres``/``bicgstab`` — Gauss–Seidel sweeps for explicit
blocks (:func:`~lagrangeprop.blocks.sweeps.sweep_solve`), else Krylov on the assembled ``A_SS``
(or on the VJP/JVP products) preconditioned by the forward's factorization, a stale Newton LU, or
ILU. Which method runs, and what to do when it fails, is decided in :mod:`lagrangeprop.blocks.policy`.
Iterative answers warm-start the next solve of the same kind when its right-hand side is close.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; state = sol._states[id(blk)]
>>> e = np.array([1.0, 0.0, 0.0])
>>> bool(np.allclose(direct(blk, sol._vals, state, e, True), iterative(blk, sol._vals, state, e, "gmres", True)))
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..compile.schedule import Block
from ..linalg import amg
from ..linalg.direct import DENSE_MAX_UNKNOWNS
from ..linalg.krylov import backward_error, ilu, krylov
from .assembly import assemble
from .eliminate import ChainPartition, Partition, ReducedLU, chain_schur, inner_solver, reduced_factor, reduced_krylov
from .linearization import linearize
from .residual import has_jac
from .state import BlockState, cache_of
from .sweeps import matvec, remember_answer, rmatvec, sweep_solve, warm_start

__all__ = ["matrix", "direct", "iterative"]


def matrix(block: Block, vals: list, state: BlockState):
    """``A_SS`` at the solution (``state.A``), assembled on first use (dense for small blocks)."""
    if state.A is None:
        state.A = assemble(block, linearize(block, vals, state.ans), dense=block.size <= DENSE_MAX_UNKNOWNS)
    return state.A


def direct(block: Block, vals: list, state: BlockState, b: np.ndarray, trans: bool) -> np.ndarray:
    """``A_SS⁻ᵀ b`` (``trans``) or ``A_SS⁻¹ b`` with the factorization at the solution (made on first use)."""
    cache = cache_of(block)
    if state.lu is None and state.A is None and state.lin is not None and cache.use_amg and not cache.use_petsc:
        # an AMG block whose Newton formed S by the chain rule: S at the solution, A_SS never assembled;
        # its symmetry the kept hierarchy's (cg falls back to gmres when its answer fails the check)
        S = chain_schur(block, state.lin)
        if S is not None:
            h = cache.amg
            sym = h.symmetric if h is not None and h.shape == S.shape and h.key == S.nnz else None
            inv = amg.AMGInverse(S, cache, names=block.names, symmetric=sym)
            state.lu = ReducedLU(ChainPartition(block, state.lin), inv, 1.0)
    if state.lu is None:
        A = matrix(block, vals, state)
        schur = None
        if cache.use_amg and not cache.use_petsc and not isinstance(A, np.ndarray):
            schur = chain_schur(block, state.lin if state.lin is not None else linearize(block, vals, state.ans))
        state.lu, fill = reduced_factor(block, A, "at the solution", schur=schur)
        cache.fill = max(fill, cache.fill)
    lu = state.lu
    if isinstance(inner_solver(lu), amg.AMGInverse):     # an iterative solve after all: warm start it
        x = lu.solve(b, trans="T" if trans else "N", x0=warm_start(block, b, float(np.linalg.norm(b)), trans))
        remember_answer(block, b, x, trans)
        return x
    return lu.solve(b, trans="T" if trans else "N")


def iterative(block: Block, vals: list, state: BlockState, b: np.ndarray, kind: str, trans: bool) -> np.ndarray:
    """``A_SSᵀ x = b`` (``trans``) or ``A_SS x = b`` by ``kind`` (``sweep``, ``gmres``, ``bicgstab``), verified."""
    n, ans = block.size, state.ans
    what = "adjoint (A_SSᵀ λ = b)" if trans else "tangent (A_SS ż = b)"
    if block.explicit:   # Gauss–Seidel sweeps, alone or preconditioning Krylov; warm-started
        return sweep_solve(block, vals, ans, state.A, b, kind, trans, what=what)
    # the operator: the assembled A_SS (the forward solve's, else assembled here when every op has a
    # jac rule: the ILU preconditioner needs it anyway, and the answer is then checked per equation),
    # else the VJP/JVP rules (checked on ||A x - b|| / ||b||)
    bnorm = max(float(np.linalg.norm(b)), 1e-300)
    if state.A is None and has_jac(block):
        matrix(block, vals, state)
    if state.A is not None:
        A = Am = state.A.T if trans else state.A
        residual = backward_error(Am, b)      # per equation (SPEC §1 "Scale")
    else:
        fn = (lambda w: rmatvec(block, vals, ans, w)) if trans else (lambda v: matvec(block, vals, ans, v))
        A = spla.LinearOperator((n, n), matvec=fn, dtype=float)

        def residual(x):
            return float(np.linalg.norm(A.matvec(x) - b)) / bnorm
    M = None
    stale = state.stale_lu
    cap = 40 if stale is not None and state.linear == "gmres" else None
    x0 = warm_start(block, b, bnorm, trans)      # the last answer, when b barely changed
    if isinstance(stale, ReducedLU) and state.A is not None:
        # Krylov on the Schur complement (a quarter of Bratu's unknowns), the stale Schur LU preconditioning
        if state.partition is None:
            state.partition = Partition(block, state.A)
        x = reduced_krylov(block, state.partition, b, trans, kind, stale, what=what,
                           residual=residual, maxiter=cap, x0=x0)
        remember_answer(block, b, x, trans)
        return x
    if state.lu is not None and not isinstance(inner_solver(state.lu), amg.AMGInverse):
        # the forward's factorization at the solution (linear blocks): an exact preconditioner
        lu = state.lu
        M = spla.LinearOperator((n, n), matvec=lambda r: lu.solve(r, trans="T" if trans else "N"), dtype=float)
    elif stale is not None:  # the LU of a nearby Newton iterate: a near-exact preconditioner
        M = spla.LinearOperator((n, n), matvec=lambda r: stale.solve(r, trans="T" if trans else "N"),
                                dtype=float)
    elif has_jac(block):     # ILU of A_SS as the preconditioner
        if state.ilu is False:
            state.ilu = ilu(matrix(block, vals, state))
        fac = state.ilu
        if fac is not None:
            M = spla.LinearOperator((n, n), matvec=lambda r: fac.solve(r, trans="T" if trans else "N"),
                                    dtype=float)
    # a stale LU that needs many iterations is worse than a new factorization (auto falls back)
    x = krylov(A, b, kind, M=M, names=block.names, what=what, residual=residual, maxiter=cap, x0=x0)
    remember_answer(block, b, x, trans)
    return x
