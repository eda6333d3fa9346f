"""Cyclic blocks: forward solve of ``c_S(z_S) = 0`` and the block linear solves (SPEC §1).

By the implicit function theorem, when ``A_SS = ∂c_S/∂z_S`` is nonsingular at the solution
the block defines ``z_S(z_outside)``, and the multiplier and tangent equations restricted to
S are linear systems with ``A_SS``:

- forward: ``c_S(z_S; z_outside) = 0`` (:mod:`lagrangeprop.blocks.nonlinear`);
- adjoint: ``A_SSᵀ λ_S = b_S - Σ_{d ∉ S} (∂c_d/∂z_S)ᵀ λ_d`` (:func:`solve_adjoint`);
- tangent: ``A_SS ż_S = -Σ_{u ∉ S} (∂c_S/∂z_u) ż_u`` (:func:`solve_tangent`).

``method="auto"`` and ``linear_solver="auto"`` decide per block from its size and structure
(cached in ``block.cache``): small blocks use Newton and ``splu``; large explicit blocks
whose Gauss–Seidel sweep contracts (rate < 0.9, estimated by power iteration) use Anderson
sweeps forward and transposed sweeps (or sweep-preconditioned gmres) backward (no
factorization, whose fill-in can be huge); blocks whose Schur complement on the states has
at least ``amg.AMG_MIN`` unknowns use Newton with AMG-preconditioned cg/gmres when pyamg is
installed (:mod:`lagrangeprop.linalg.amg`; sparse LU if AMG fails); other large blocks use Newton
and ``splu``, switching to the Krylov path when the LU fill-in explodes. Iterative adjoint
and tangent solves warm-start from the block's last answer when the right-hand side barely
changed. The rest of the code only calls the functions in ``__all__``.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); w = prog.variable("w")
>>> _ = prog.residual(w, w**3 + w - x); _ = prog.output(w * 1.0, name="o")
>>> sol = prog.solve(x=2.0)                   # w = 1, dw/dx = 1/(3w² + 1)
>>> round(float(sol.values["w"]), 10), round(float(sol.grad["x"]), 10)
(1.0, 0.25)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from . import nonlinear
from .blockops import (BlockState, assemble, block_jacobian, block_residual, describe, has_jac, linearize,
                       matvec, remember_answer, rmatvec, split, stack, sweep_rate, sweep_solve, warm_start)
from ..linalg import amg
from .eliminate import Partition, ReducedLU, reduced_factor, reduced_krylov, state_size
from ..errors import ConvergenceError
from ..linalg.linsolve import DENSE_MAX, backward_error, ilu, krylov
from ..options import SolveOptions
from ..compile.schedule import Block

__all__ = ["BlockState", "solve_forward", "solve_adjoint", "solve_tangent", "block_residual",
           "block_jacobian", "choose_method", "choose_linear_solver", "summary"]

SMALL = 256        # blocks up to this many unknowns: Newton + splu, always cheap
RATE_MAX = 0.9     # Gauss–Seidel contraction below which sweeps / Krylov beat a factorization
FILL_MAX = 40.0    # nnz(L+U)/nnz(A) above which a factorization counts as exploded

_SOLVERS = {"newton": nonlinear.newton, "newton-krylov": nonlinear.newton_krylov,
            "fixed-point": nonlinear.fixed_point, "anderson": nonlinear.anderson}


def _rate(block: Block, vals: list, ans: dict | None = None) -> float:
    """Cached estimate of the block's Gauss–Seidel contraction rate (explicit blocks)."""
    if "rate" not in block.cache:
        if ans is None:
            with np.errstate(all="ignore"):
                _, ans = block_residual(block, vals)
        with np.errstate(all="ignore"):
            block.cache["rate"] = sweep_rate(block, vals, ans)
    return block.cache["rate"]


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
    if block.size <= SMALL and has_jac(block):
        return "newton"
    if block.explicit and _rate(block, vals) < RATE_MAX:
        return "fixed-point" if _rate(block, vals) < 0.5 else "anderson"
    if not has_jac(block) or block.cache.get("fill", 0.0) > FILL_MAX:
        return "newton-krylov"
    return "newton"


def use_amg(block: Block, opts: SolveOptions) -> bool:
    """Whether this block's linear systems go to AMG-preconditioned Krylov (:mod:`lagrangeprop.linalg.amg`):
    ``linear_solver="amg"`` on a sparse block, or ``"auto"`` on one whose Schur complement has at
    least ``AMG_MIN`` unknowns, when pyamg is installed and AMG did not already fail on this block."""
    if block.size <= DENSE_MAX or not has_jac(block):
        return False
    if opts.linear_solver == "amg":
        return True
    return (opts.linear_solver == "auto" and not block.cache.get("amg_failed")
            and state_size(block) >= amg.AMG_MIN and amg.available())


def _inner(lu):
    """The solver of the states behind a Schur-complement ``ReducedLU``, else ``lu`` itself."""
    return lu.lu if isinstance(lu, ReducedLU) else lu


def _drop_amg(block: Block) -> None:
    """AMG failed on this block (indefinite or non-elliptic): sparse LU from now on (auto only)."""
    block.cache["use_amg"], block.cache["amg_failed"] = False, True
    block.cache.pop("amg", None)


def _tighten(state: BlockState) -> None:
    """Solves with the forward's AMG operators after the forward are to full accuracy (not Newton-loose)."""
    for lu in (state.lu, state.cache.get("stale_lu")):
        inner = _inner(lu)
        if isinstance(inner, amg.AMGInverse):
            inner.loose = False


def solve_forward(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Solve the block's constraints for its members; fills ``vals``.

    Raises ConvergenceError (no convergence, non-finite residual) or SingularSystemError.
    """
    block.cache["use_amg"] = use_amg(block, opts)
    try:
        state = _solve_forward(block, vals, opts, guess)
    except ConvergenceError:
        if not (block.cache["use_amg"] and opts.linear_solver == "auto"):
            raise
        _drop_amg(block)          # AMG-Krylov Newton steps failed: sparse LU from the start
        state = _solve_forward(block, vals, opts, guess)
    _tighten(state)
    return state


def _solve_forward(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    if opts.method == "auto" and block.explicit and "rate" not in block.cache and not (
            block.size <= SMALL and has_jac(block)):
        nonlinear.initial(block, vals, guess)     # the rate estimate looks at the start (each solver starts itself)
    method = choose_method(block, vals, opts)
    try:
        return _SOLVERS[method](block, vals, opts, guess)
    except ConvergenceError:
        if opts.method != "auto" or method not in ("anderson", "newton-krylov"):
            raise
        # auto: a sweep that does not contract after all -> Newton from the same start
        return _SOLVERS["newton" if has_jac(block) else "newton-krylov"](block, vals, opts, guess)


# ------------------------------------------------------------ linear solves
def choose_linear_solver(block: Block, vals: list, state: BlockState, opts: SolveOptions) -> str:
    """``direct``, ``gmres``, ``bicgstab`` or (auto only) ``sweep``, the transposed
    Gauss–Seidel fixed-point iteration, for this block at this solution."""
    if opts.linear_solver != "auto":
        return opts.linear_solver
    if "linear" in state.cache:
        return state.cache["linear"]
    if block.size <= SMALL or state.lu is not None or (block.cache.get("use_amg") and state.method == "newton"):
        choice = "direct"
    elif "stale_lu" in state.cache:
        choice = "gmres"     # preconditioned by the last Newton factorization
    elif not has_jac(block):
        choice = "gmres"
    elif block.explicit and _rate(block, vals, state.ans) < RATE_MAX:
        # a strongly contracting sweep converges faster alone than inside scipy's gmres
        choice = "sweep" if _rate(block, vals, state.ans) < 0.5 else "gmres"
    elif block.cache.get("fill", 0.0) > FILL_MAX:
        choice = "gmres"
    else:
        choice = "direct"
    state.cache["linear"] = choice
    return choice


def _matrix(block: Block, vals: list, state: BlockState):
    if state.A is None:
        state.A = assemble(block, linearize(block, vals, state.ans), dense=block.size <= DENSE_MAX)
    return state.A


def _direct(block, vals, state, b, trans: bool) -> np.ndarray:
    if state.lu is None:
        A = _matrix(block, vals, state)
        state.lu, fill = reduced_factor(block, A, "at the solution")
        block.cache["fill"] = max(fill, block.cache.get("fill", 0.0))
    lu = state.lu
    if isinstance(_inner(lu), amg.AMGInverse):     # an iterative solve after all: warm start it
        x = lu.solve(b, trans="T" if trans else "N", x0=warm_start(block, b, float(np.linalg.norm(b)), trans))
        remember_answer(block, b, x, trans)
        return x
    return lu.solve(b, trans="T" if trans else "N")


def _iterative(block, vals, state, b, kind: str, trans: bool) -> np.ndarray:
    n, ans = block.size, state.ans
    what = "adjoint (A_SSᵀ λ = b)" if trans else "tangent (A_SS ż = b)"
    if block.explicit:   # Gauss–Seidel sweeps, alone or preconditioning Krylov; warm-started
        return sweep_solve(block, vals, ans, state.A, b, kind, trans, what=what)
    # the operator: the assembled A_SS (the forward solve's, else assembled here when every op has a
    # jac rule: the ILU preconditioner needs it anyway, and the answer is then checked per equation),
    # else the VJP/JVP rules (checked on ||A x - b|| / ||b||)
    bnorm = max(float(np.linalg.norm(b)), 1e-300)
    if state.A is None and has_jac(block):
        _matrix(block, vals, state)
    if state.A is not None:
        A = Am = state.A.T if trans else state.A
        residual = backward_error(Am, b)      # per equation (SPEC §1 "Scale")
    else:
        fn = (lambda w: rmatvec(block, vals, ans, w)) if trans else (lambda v: matvec(block, vals, ans, v))
        A = spla.LinearOperator((n, n), matvec=fn, dtype=float)

        def residual(x):
            return float(np.linalg.norm(A.matvec(x) - b)) / bnorm
    M = None
    stale = state.cache.get("stale_lu")
    cap = 40 if stale is not None and state.cache.get("linear") == "gmres" else None
    x0 = warm_start(block, b, bnorm, trans)      # the last answer, when b barely changed
    if isinstance(stale, ReducedLU) and state.A is not None:
        # Krylov on the Schur complement (a quarter of Bratu's unknowns), the stale Schur LU preconditioning
        if "partition" not in state.cache:
            state.cache["partition"] = Partition(block, state.A)
        x = reduced_krylov(block, state.cache["partition"], b, trans, kind, stale, what=what,
                           residual=residual, maxiter=cap, x0=x0)
        remember_answer(block, b, x, trans)
        return x
    if state.lu is not None and not isinstance(_inner(state.lu), amg.AMGInverse):
        # the forward's factorization at the solution (linear blocks): an exact preconditioner
        lu = state.lu
        M = spla.LinearOperator((n, n), matvec=lambda r: lu.solve(r, trans="T" if trans else "N"), dtype=float)
    elif stale is not None:  # the LU of a nearby Newton iterate: a near-exact preconditioner
        M = spla.LinearOperator((n, n), matvec=lambda r: stale.solve(r, trans="T" if trans else "N"),
                                dtype=float)
    elif has_jac(block):     # ILU of A_SS as the preconditioner
        if "ilu" not in state.cache:
            state.cache["ilu"] = ilu(_matrix(block, vals, state))
        fac = state.cache["ilu"]
        if fac is not None:
            M = spla.LinearOperator((n, n), matvec=lambda r: fac.solve(r, trans="T" if trans else "N"),
                                    dtype=float)
    # a stale LU that needs many iterations is worse than a new factorization (auto falls back)
    x = krylov(A, b, kind, M=M, names=block.names, what=what, residual=residual, maxiter=cap, x0=x0)
    remember_answer(block, b, x, trans)
    return x


def _solve(block, vals, rhs, state, opts, trans: bool) -> list:
    b = stack(block, rhs)
    choice = state.cache["used"] = choose_linear_solver(block, vals, state, opts)
    with np.errstate(all="ignore"):
        if choice == "amg" or (choice == "direct" and block.cache.get("use_amg")):
            try:        # "direct" with the AMG operator of the Schur complement at the solution
                return split(block, _direct(block, vals, state, b, trans))
            except ConvergenceError:
                if opts.linear_solver != "auto":
                    raise
                _drop_amg(block)
                state.lu = None
                return split(block, _direct(block, vals, state, b, trans))
        if choice == "direct":
            return split(block, _direct(block, vals, state, b, trans))
        # the local partials at the solution live as long as the state (the block holds them weakly)
        state.cache["lin"] = linearize(block, vals, state.ans)
        try:
            return split(block, _iterative(block, vals, state, b, choice, trans))
        except ConvergenceError:
            if opts.linear_solver != "auto":
                raise
            # auto: the sweep or Krylov stalled -> gmres, then a factorization after all
            if choice == "sweep":
                state.cache["linear"] = "gmres"
                try:
                    return split(block, _iterative(block, vals, state, b, "gmres", trans))
                except ConvergenceError:
                    if not has_jac(block):
                        raise
            state.cache["linear"] = "direct"
            return split(block, _direct(block, vals, state, b, trans))


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



def _linear_kind(block: Block, state: BlockState) -> str:
    lu = state.lu
    inner = _inner(lu)
    on = f" of the Schur complement ({state_size(block)} states)" if isinstance(lu, ReducedLU) else ""
    if isinstance(inner, amg.AMGInverse):
        return ("cg" if inner.symmetric else "gmres") + " with an AMG V-cycle" + on
    if inner is not None:
        return ("dense LU (LAPACK)" if hasattr(inner, "piv") else "sparse LU (splu)") + on
    choice = state.cache.get("linear") or state.cache.get("used")
    if choice == "sweep":
        return "transposed Gauss–Seidel sweeps"
    return choice or "not solved (no multiplier reached the block)"


def summary(block: Block, state: BlockState) -> str:
    """One line on how a block was solved: size, forward method and residual, adjoint solver.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program()
    >>> x = prog.input("x"); w = prog.variable("w")
    >>> _ = prog.residual(w, w**3 + w - x); _ = prog.output(w * 1.0, name="o")
    >>> sol = prog.solve(x=2.0)
    >>> blk = sol.schedule.blocks[0]
    >>> for part in summary(blk, sol._states[id(blk)]).split("; "):
    ...     print(part)  # doctest: +ELLIPSIS
    [w, power_1, add_2]: 3 unknowns (Newton on 1 state, the rest eliminated)
    forward newton, ...max|c| ...
    adjoint dense LU (LAPACK)
    """
    n = block.size
    head = f"[{describe(block)}]: {n} unknown{'s' if n != 1 else ''}"
    k = state_size(block)
    if state.method == "newton" and k < n:
        head += f" (Newton on {k} state{'s' if k != 1 else ''}, the rest eliminated)"
    last = state.history[-1] if state.history else float("nan")
    return (f"{head}; forward {state.method}, {state.iterations} iteration{'s' if state.iterations != 1 else ''}, "
            f"scaled max|c| {last:.1e} (max_d |c_d|/s_d); adjoint {_linear_kind(block, state)}")
