"""The policy of a cyclic block: which forward method and which linear solver, and what to do on failure.

By the implicit function theorem, when ``A_SS = ∂c_S/∂z_S`` is nonsingular at the solution
the block defines ``z_S(z_outside)``, and the multiplier and tangent equations restricted to
S are linear systems with ``A_SS``:

- forward: ``c_S(z_S; z_outside) = 0`` (:mod:`~lagrangeprop.blocks.newton`, :mod:`~lagrangeprop.blocks.fixed_point`);
- adjoint: ``A_SSᵀ λ_S = b_S - Σ_{d ∉ S} (∂c_d/∂z_S)ᵀ λ_d`` (:func:`solve_adjoint`);
- tangent: ``A_SS ż_S = -Σ_{u ∉ S} (∂c_S/∂z_u) ż_u`` (:func:`solve_tangent`).

This module is the one place that decides; the mechanisms take what they are given.
``method="auto"`` and ``linear_solver="auto"`` decide per block from its size and structure
(the measurements kept in ``BlockCache``): blocks up to ``DIRECT_MAX_UNKNOWNS`` use Newton and a
direct LU; large explicit blocks whose Gauss–Seidel sweep contracts (rate < ``RATE_MAX``,
estimated by power iteration) use fixed-point/Anderson sweeps forward and transposed sweeps (or
sweep-preconditioned gmres) backward (no factorization, whose fill-in can be huge); blocks whose
Schur complement on the states has at least ``amg.AMG_MIN`` unknowns use Newton with
AMG-preconditioned cg/gmres when pyamg is installed (sparse LU if AMG fails); other large blocks
use Newton and ``splu``, switching to the Krylov path when the LU fill-in explodes
(``FILL_MAX``). Under ``auto`` a method that fails falls back: sweeps to Newton, AMG to LU,
sweeps or Krylov to gmres and then a factorization.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = cubic()   # the residual w³ + w - x = 0 (o = w) solved at x = 2: conftest.py; w = 1, dw/dx = 1/(3w² + 1)
>>> round(float(sol.values["w"]), 10), round(float(sol.grad["x"]), 10)
(1.0, 0.25)
>>> blk = sol.schedule.blocks[0]
>>> state, opts = sol._states[id(blk)], SolveOptions()
>>> choose_method(blk, sol._vals, opts), choose_linear_solver(blk, sol._vals, state, opts)
('newton', 'direct')
"""

from __future__ import annotations

import numpy as np

from ..compile.schedule import Block
from ..errors import ConvergenceError
from ..linalg import amg
from ..linalg.petsc import PETScInverse
from ..linalg.direct import DENSE_MAX_UNKNOWNS
from ..options import SolveOptions
from . import dense, fixed_point, newton
from .diagnosis import DIAGNOSE_MAX_UNKNOWNS
from .eliminate import inner_solver, reduced_factor, state_size
from .iteration import initial
from .layout import split, stack
from .linear import direct, iterative, matrix
from .linearization import linearize
from .residual import block_residual, has_jac
from .state import BlockState, cache_of
from .sweeps import sweep_rate

__all__ = ["DIRECT_MAX_UNKNOWNS", "RATE_MAX", "FILL_MAX", "choose_method", "use_amg", "choose_linear_solver",
           "solve_forward", "solve_adjoint", "solve_tangent"]

DIRECT_MAX_UNKNOWNS = 256   # blocks up to this many unknowns: Newton + a direct LU, always cheap
RATE_MAX = 0.9     # Gauss–Seidel contraction below which sweeps / Krylov beat a factorization
FILL_MAX = 40.0    # nnz(L+U)/nnz(A) above which a factorization counts as exploded

_SOLVERS = {"newton": newton.newton, "newton-krylov": newton.newton_krylov,
            "fixed-point": fixed_point.fixed_point, "anderson": fixed_point.anderson}


def _rate(block: Block, vals: list, ans: dict | None = None) -> float:
    """Cached estimate of the block's Gauss–Seidel contraction rate (explicit blocks)."""
    cache = cache_of(block)
    if cache.rate is None:
        if ans is None:
            with np.errstate(all="ignore"):
                _, ans = block_residual(block, vals)
        with np.errstate(all="ignore"):
            cache.rate = sweep_rate(block, vals, ans)
    return cache.rate


# ------------------------------------------------------------------ forward
def choose_method(block: Block, vals: list, opts: SolveOptions) -> str:
    """The forward method for this block (``vals`` holds the starting point)."""
    m = opts.method
    if m in ("fixed-point", "anderson") and not block.explicit:
        m = "newton"       # sweeps need explicit constraints; residual blocks use Newton
    if m == "newton" and not has_jac(block):
        m = "newton-krylov"
    if m != "auto":
        return m
    if block.size <= DIRECT_MAX_UNKNOWNS and has_jac(block):
        return "newton"
    if block.explicit and _rate(block, vals) < RATE_MAX:
        return "fixed-point" if _rate(block, vals) < 0.5 else "anderson"
    if not has_jac(block) or cache_of(block).fill > FILL_MAX:
        return "newton-krylov"
    return "newton"


def use_amg(block: Block, opts: SolveOptions) -> bool:
    """Whether this block's linear systems go to AMG-preconditioned Krylov (:mod:`lagrangeprop.linalg.amg`):
    ``linear_solver="amg"`` on a sparse block, or ``"auto"`` on one whose Schur complement has at
    least ``AMG_MIN`` unknowns, when pyamg is installed and AMG did not already fail on this block."""
    if block.size <= DENSE_MAX_UNKNOWNS or not has_jac(block):
        return False
    if opts.linear_solver == "amg":
        return True
    return (opts.linear_solver == "auto" and not cache_of(block).amg_failed
            and state_size(block) >= amg.AMG_MIN and amg.available())


def _drop_amg(block: Block) -> None:
    """AMG failed on this block (indefinite or non-elliptic): sparse LU from now on (auto only)."""
    cache = cache_of(block)
    cache.use_amg, cache.amg_failed, cache.amg = False, True, None


def _tighten(state: BlockState) -> None:
    """Solves with the forward's AMG operators after the forward are to full accuracy (not Newton-loose)."""
    for lu in (state.lu, state.stale_lu):
        inner = inner_solver(lu)
        if isinstance(inner, (amg.AMGInverse, PETScInverse)):
            inner.loose = False


def solve_forward(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Solve the block's constraints for its members; fills ``vals``.

    Raises ConvergenceError (no convergence, non-finite residual) or SingularSystemError.
    """
    cache = cache_of(block)
    if cache.dense and opts.method in ("auto", "newton") and dense.ENABLED:
        # a small block of scalar math ops whose generated code exists (dense.code_of: at most
        # dense.MAX_UNKNOWNS unknowns, every op with a Jacobian rule): what the general choice
        # below makes of it (Newton; no AMG or PETSc under DENSE_MAX_UNKNOWNS), without asking
        cache.use_amg = cache.use_petsc = False
        return dense.dense_newton(block, vals, opts, guess)
    cache.use_amg = use_amg(block, opts)
    cache.use_petsc = opts.linear_solver == "petsc" and block.size > DENSE_MAX_UNKNOWNS and has_jac(block)
    try:
        state = _solve_forward(block, vals, opts, guess)
    except ConvergenceError:
        if not (cache.use_amg and opts.linear_solver == "auto"):
            raise
        _drop_amg(block)          # AMG-Krylov Newton steps failed: sparse LU from the start
        state = _solve_forward(block, vals, opts, guess)
    _tighten(state)
    return state


def _solve_forward(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    if opts.method == "auto" and block.explicit and cache_of(block).rate is None and not (
            block.size <= DIRECT_MAX_UNKNOWNS and has_jac(block)):
        initial(block, vals, guess)     # the rate estimate looks at the start (each solver starts itself)
    method = choose_method(block, vals, opts)
    if method == "newton" and dense.applies(block, vals):
        # small blocks of scalar math ops: the dense Newton on generated code (the generic Newton
        # on failure, whose errors are then raised)
        return dense.dense_newton(block, vals, opts, guess)
    try:
        return _SOLVERS[method](block, vals, opts, guess)
    except ConvergenceError as exc:
        if opts.method != "auto" or method not in ("anderson", "newton-krylov", "newton"):
            raise
        if method == "newton":
            # auto: exact Newton steps that overshoot into a near-singular direction (a saturating tanh
            # under a weak coupling) crawl on the line search, where the truncated Krylov steps of
            # Newton–Krylov do not: it starts again from the same start; its failure raises Newton's error
            try:
                return _SOLVERS["newton-krylov"](block, vals, opts, guess)
            except ConvergenceError:
                raise exc from None
        # auto: a sweep that does not contract after all -> Newton from the same start
        return _SOLVERS["newton" if has_jac(block) else "newton-krylov"](block, vals, opts, guess)


# ------------------------------------------------------------ linear solves
def choose_linear_solver(block: Block, vals: list, state: BlockState, opts: SolveOptions) -> str:
    """``direct``, ``gmres``, ``bicgstab`` or (auto only) ``sweep``, the transposed
    Gauss–Seidel fixed-point iteration, for this block at this solution."""
    if opts.linear_solver != "auto":
        return opts.linear_solver
    if state.linear is not None:
        return state.linear
    if ((block.size <= DIRECT_MAX_UNKNOWNS and has_jac(block)) or state.lu is not None
            or (cache_of(block).use_amg and state.method == "newton")):
        choice = "direct"
    elif state.stale_lu is not None:
        choice = "gmres"     # preconditioned by the last Newton factorization
    elif not has_jac(block):
        choice = "gmres"
    elif block.explicit and _rate(block, vals, state.ans) < RATE_MAX:
        # a strongly contracting sweep converges faster alone than inside scipy's gmres
        choice = "sweep" if _rate(block, vals, state.ans) < 0.5 else "gmres"
    elif cache_of(block).fill > FILL_MAX:
        choice = "gmres"
    else:
        choice = "direct"
    state.linear = choice
    return choice


def _solve(block: Block, vals: list, rhs: list, state: BlockState, opts: SolveOptions, trans: bool) -> list:
    """The block linear solve by the chosen solver, with the ``auto`` fallbacks."""
    if opts.linear_solver in ("auto", "direct") and isinstance(state.A, np.ndarray) and dense.applies(block, vals):
        out = dense.linear_solve(block, state, rhs, trans, vals)   # a dense block, on floats
        if out is not None:
            state.used = state.linear = "direct"
            return out
    b = stack(block, rhs)
    if not np.isfinite(b).all():
        # a NaN or inf multiplier (tangent) from outside: the answer is not finite either, and the pass's
        # finiteness check names the node it came from (a Krylov solver would report "no convergence")
        return split(block, np.full(block.size, np.nan))
    choice = state.used = choose_linear_solver(block, vals, state, opts)
    with np.errstate(all="ignore"):
        if choice in ("amg", "petsc") or (choice == "direct" and cache_of(block).use_amg):
            try:        # "direct" with the AMG operator of the Schur complement at the solution
                return split(block, direct(block, vals, state, b, trans))
            except ConvergenceError:
                if opts.linear_solver != "auto":
                    raise
                _drop_amg(block)
                state.lu = None
                return split(block, direct(block, vals, state, b, trans))
        if choice == "direct":
            return split(block, direct(block, vals, state, b, trans))
        # the local partials at the solution live as long as the state (the block holds them weakly)
        state.lin = linearize(block, vals, state.ans)
        try:
            return split(block, iterative(block, vals, state, b, choice, trans))
        except ConvergenceError:
            if opts.linear_solver != "auto":
                _explain(block, vals, state)
                raise
            # auto: the sweep or Krylov stalled -> gmres, then a factorization after all
            if choice == "sweep":
                state.linear = "gmres"
                try:
                    return split(block, iterative(block, vals, state, b, "gmres", trans))
                except ConvergenceError:
                    if not has_jac(block):
                        raise
            state.linear = "direct"
            return split(block, direct(block, vals, state, b, trans))


def _explain(block: Block, vals: list, state: BlockState) -> None:
    """A Krylov solve at the solution stalled: raise the true cause when it is one (an infinite
    entry of ``A_SS``: NonFiniteError; a singular ``A_SS``: SingularSystemError), else return."""
    if has_jac(block) and block.size <= DIAGNOSE_MAX_UNKNOWNS:
        reduced_factor(block, matrix(block, vals, state), "at the solution")


# A_SSᵀ λ_S = b_S - Σ_{d ∉ S} (∂c_d/∂z_S)ᵀ λ_d: the outside terms are already in rhs.
def solve_adjoint(block: Block, vals: list, rhs: list, state: BlockState,
                  opts: SolveOptions) -> list:
    """Multipliers of the block's constraints from the accumulated right-hand side."""
    return _solve(block, vals, rhs, state, opts, trans=True)


# A_SS ż_S = -Σ_{u ∉ S} (∂c_S/∂z_u) ż_u: the outside terms are already in rhs.
def solve_tangent(block: Block, vals: list, rhs: list, state: BlockState,
                  opts: SolveOptions) -> list:
    """Tangents of the block's members from the accumulated right-hand side (one rhs per call)."""
    return _solve(block, vals, rhs, state, opts, trans=False)
