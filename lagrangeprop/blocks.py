"""Cyclic blocks: forward solve of ``c_S(z_S) = 0`` and the block linear solves.

A block S (a strongly connected component, a self-loop or a residual constraint)
stacks its members' values into ``z_S``. Its constraints are
``c_d = z_d - f_d(args)`` (explicit) or ``c_d = r_d(args)`` (residual), and its
Jacobian ``A_SS = ∂c_S/∂z_S`` is assembled from the primitives' sparse ``jac`` rules.

Forward: Newton on ``A_SS δ = -c_S`` (sparse LU, backtracking line search).
Adjoint: ``A_SSᵀ λ_S = b_S`` with the factorization of the final Newton iterate.
Tangent: ``A_SS ż_S = b_S`` with the same factorization.

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

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .errors import ConvergenceError, SingularSystemError
from .options import SolveOptions
from .schedule import Block

__all__ = ["BlockState", "solve_forward", "solve_adjoint", "solve_tangent",
           "block_residual", "block_jacobian"]

RCOND_MIN = 1e-14


@dataclass
class BlockState:
    """What a forward block solve leaves for the adjoint and tangent solves."""

    ans: dict[int, np.ndarray] = field(default_factory=dict)  # op outputs at the solution
    lu: object = None              # splu of A_SS at the solution (or None)
    A: sp.spmatrix | None = None   # A_SS at the solution
    iterations: int = 0
    history: list = field(default_factory=list)


# ----------------------------------------------------------------- helpers
def _names(block: Block) -> str:
    shown = block.names[:8]
    return ", ".join(shown) + (f", ... ({len(block.names)} nodes)" if len(block.names) > 8 else "")


def _gather(block: Block, vals: list) -> np.ndarray:
    return np.concatenate([np.ravel(vals[n]).astype(np.float64) for n in block.nodes])


def _scatter(block: Block, vals: list, z: np.ndarray) -> None:
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        vals[n] = z[off:off + size].reshape(shape)


def block_residual(block: Block, vals: list) -> tuple[np.ndarray, dict]:
    """``c_S`` at the current member values, and each member's op output."""
    ans, parts = {}, []
    for s in block.steps:
        a = np.asarray(s.prim.value([vals[u] for u in s.args], s.params), dtype=np.float64)
        ans[s.node] = a
        parts.append(np.ravel(a) if s.residual else np.ravel(vals[s.node] - a))
    return np.concatenate(parts), ans


def block_jacobian(block: Block, vals: list, ans: dict) -> sp.csc_matrix:
    """``A_SS = ∂c_S/∂z_S`` assembled from the ops' sparse ``jac`` rules."""
    rows, cols, data = [], [], []
    for k, s in enumerate(block.steps):
        r0 = block.offsets[k]
        if not s.residual:
            size = int(np.size(vals[s.node]))
            idx = np.arange(r0, r0 + size)
            rows.append(idx); cols.append(idx); data.append(np.ones(size))
        args = [vals[u] for u in s.args]
        sign = 1.0 if s.residual else -1.0
        for pos, u in s.diff:
            m = block.position.get(u)
            if m is None:
                continue
            J = s.prim.jac(pos, ans[s.node], args, s.params)
            if J is None:
                continue
            J = sp.coo_matrix(J)
            rows.append(J.row + r0); cols.append(J.col + block.offsets[m])
            data.append(sign * J.data)
    A = sp.coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(block.size, block.size))
    return A.tocsc()


def _factor(block: Block, A: sp.csc_matrix, where: str):
    """Sparse LU of ``A_SS``; singular or numerically singular -> SingularSystemError."""
    try:
        lu = spla.splu(A)
    except RuntimeError as exc:
        raise SingularSystemError(
            f"the Jacobian of block [{_names(block)}] is singular {where} ({exc}); the implicit "
            "function theorem needs it nonsingular: check that every block variable enters its "
            "equations and that no equation is a combination of the others",
            nodes=block.names, rcond=0.0) from None
    d = np.abs(lu.U.diagonal())
    rcond = float(d.min() / d.max()) if d.size and d.max() > 0 else 0.0
    if rcond < RCOND_MIN:
        raise SingularSystemError(
            f"the Jacobian of block [{_names(block)}] is numerically singular {where} "
            f"(reciprocal condition estimate {rcond:.2e} < {RCOND_MIN:g})",
            nodes=block.names, rcond=rcond)
    return lu


# ------------------------------------------------------------------ forward
def _initial(block: Block, vals: list, guess: dict) -> None:
    """Start from the user's guess, else 0; explicit members without a guess are
    then evaluated once in order (a Gauss-Seidel sweep) when that is finite."""
    for n, shape in zip(block.nodes, block.shapes):
        vals[n] = (np.broadcast_to(np.asarray(guess[n], dtype=np.float64), shape).copy()
                   if n in guess else np.zeros(shape))
    with np.errstate(all="ignore"):
        for s in block.steps:
            if not s.residual and s.node not in guess:
                v = np.asarray(s.prim.value([vals[u] for u in s.args], s.params), dtype=np.float64)
                if np.all(np.isfinite(v)):
                    vals[s.node] = v


def solve_forward(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Solve the block's constraints for its members; fills ``vals``."""
    return newton(block, vals, opts, guess)


def newton(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Newton's method on ``c_S(z_S) = 0`` with backtracking; fills ``vals``."""
    _initial(block, vals, guess)
    maxiter = opts.maxiter or 50
    state = BlockState()
    z = _gather(block, vals)
    c, ans = block_residual(block, vals)
    for it in range(maxiter + 1):
        norm = float(np.max(np.abs(c))) if c.size else 0.0
        state.history.append(norm)
        if not np.isfinite(norm) or not np.all(np.isfinite(z)):
            raise ConvergenceError(
                f"block [{_names(block)}]: non-finite residual at Newton iteration {it}; "
                "give a better starting point with guess={...}",
                nodes=block.names, iterations=it, history=state.history)
        A = block_jacobian(block, vals, ans)
        lu = _factor(block, A, f"at Newton iteration {it}")
        if norm <= opts.tol * max(1.0, float(np.max(np.abs(z)))):
            state.ans, state.lu, state.A, state.iterations = ans, lu, A, it
            return state
        if it == maxiter:
            break
        delta = lu.solve(-c)
        alpha = 1.0
        while True:
            z_new = z + alpha * delta
            _scatter(block, vals, z_new)
            with np.errstate(all="ignore"):
                c_new, ans_new = block_residual(block, vals)
            new = float(np.max(np.abs(c_new)))
            if (np.isfinite(new) and new <= (1 - 1e-4 * alpha) * norm) or alpha < 1e-3:
                break
            alpha *= 0.5
        z, c, ans = z_new, c_new, ans_new
    raise ConvergenceError(
        f"block [{_names(block)}] did not converge in {maxiter} Newton iterations "
        f"(last residual {state.history[-1]:.3e}, tol {opts.tol:g}); raise maxiter=, "
        "give guess= values closer to the solution, or try method='fixed-point'",
        nodes=block.names, iterations=maxiter, history=state.history)


# ------------------------------------------------------------ linear solves
def _stack(block: Block, parts: list) -> np.ndarray:
    return np.concatenate([np.zeros(size) if p is None else np.ravel(p).astype(np.float64)
                           for size, p in zip(block.sizes, parts)])


def _split(block: Block, x: np.ndarray) -> list:
    return [x[off:off + size].reshape(shape)
            for off, size, shape in zip(block.offsets, block.sizes, block.shapes)]


# A_SSᵀ λ_S = b_S - Σ_{d ∉ S} (∂c_d/∂z_S)ᵀ λ_d: the outside terms are already in rhs.
def solve_adjoint(block: Block, vals: list, rhs: list, state: BlockState,
                  opts: SolveOptions) -> list:
    """Multipliers of the block's constraints from the accumulated right-hand side."""
    b = _stack(block, rhs)
    lam = state.lu.solve(b, trans="T")
    return _split(block, lam)


# A_SS ż_S = -Σ_{u ∉ S} (∂c_S/∂z_u) ż_u: the outside terms are already in rhs.
def solve_tangent(block: Block, vals: list, rhs: list, state: BlockState,
                  opts: SolveOptions) -> list:
    """Tangents of the block's members from the accumulated right-hand side."""
    b = _stack(block, rhs)
    return _split(block, state.lu.solve(b))
