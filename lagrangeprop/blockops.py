"""A cyclic block as a nonlinear system: ``c_S(z_S)``, ``A_SS`` and its matrix-free products.

A block S stacks its members' values into ``z_S`` (member k at ``offsets[k]``). Its
constraints are ``c_d = z_d - f_d(args)`` (explicit) or ``c_d = r_d(args)`` (residual)
and ``A_SS = ∂c_S/∂z_S``. Everything here works from the primitives' rules only:
the assembled ``A_SS`` from ``jac``, the products ``A_SS v`` / ``A_SSᵀ w`` from
``jvp`` / ``vjp``, and the Gauss–Seidel sweeps (forward substitution with the part of
``A_SS`` that follows the block order) used both as a fixed-point iteration and as a
Krylov preconditioner.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); a = prog.variable("a"); b = prog.variable("b")
>>> _ = prog.define(a, 0.5 * b + x); _ = prog.define(b, 0.25 * a); _ = prog.output(a + b, name="o")
>>> sol = prog.solve(x=1.0)
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'multiply_1']
>>> A = block_jacobian(blk, sol._vals, sol._states[id(blk)].ans)   # rows/cols in block order
>>> A.toarray().tolist()
[[1.0, 0.0, -1.0], [-0.25, 1.0, 0.0], [0.0, -0.5, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .schedule import Block

__all__ = ["BlockState", "describe", "gather", "scatter", "stack", "split", "block_residual",
           "block_jacobian", "has_jac", "matvec", "rmatvec", "sweep", "rsweep", "sweep_rate",
           "residual_norm", "converged"]


@dataclass
class BlockState:
    """What a forward block solve leaves for the adjoint and tangent solves.

    ``ans``: op outputs of the members at the solution (the VJP/JVP rules' ``ans``);
    ``lu``/``A``: sparse LU and ``A_SS`` at the solution when a direct method made them;
    ``method``: the forward method used; ``iterations``/``history``: the residual history;
    ``cache``: per-solve linear-algebra objects (ILU preconditioner, linear solver choice).
    """

    ans: dict[int, np.ndarray] = field(default_factory=dict)
    lu: object = None
    A: sp.spmatrix | None = None
    iterations: int = 0
    history: list = field(default_factory=list)
    method: str = ""
    cache: dict = field(default_factory=dict)


def describe(block: Block) -> str:
    """``a, b, c`` (at most 8 names) for error messages."""
    shown = block.names[:8]
    return ", ".join(shown) + (f", ... ({len(block.names)} nodes)" if len(block.names) > 8 else "")


# ------------------------------------------------------------- vector layout
def gather(block: Block, vals: list) -> np.ndarray:
    """``z_S`` from the value slots."""
    return np.concatenate([np.ravel(vals[n]).astype(np.float64) for n in block.nodes])


def scatter(block: Block, vals: list, z: np.ndarray) -> None:
    """Write ``z_S`` back into the value slots (copies)."""
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        vals[n] = np.array(z[off:off + size]).reshape(shape)


def stack(block: Block, parts: list) -> np.ndarray:
    """One flat vector from per-member parts (``None`` = zero)."""
    return np.concatenate([np.zeros(size) if p is None
                           else np.broadcast_to(np.asarray(p, dtype=np.float64), shape).ravel()
                           for size, shape, p in zip(block.sizes, block.shapes, parts)])


def split(block: Block, x: np.ndarray) -> list:
    """Per-member arrays (member shapes) from a flat vector."""
    return [np.array(x[off:off + size]).reshape(shape)
            for off, size, shape in zip(block.offsets, block.sizes, block.shapes)]


def residual_norm(c: np.ndarray) -> float:
    return float(np.max(np.abs(c))) if c.size else 0.0


def converged(c: np.ndarray, z: np.ndarray, tol: float) -> bool:
    """SPEC's scaled test ``max|c| <= tol * max(1, max|z|)``."""
    return residual_norm(c) <= tol * max(1.0, residual_norm(z))


# ---------------------------------------------------------- c_S and A_SS
def block_residual(block: Block, vals: list) -> tuple[np.ndarray, dict]:
    """``c_S`` at the current member values, and each member's op output."""
    ans, parts = {}, []
    for s in block.steps:
        a = np.asarray(s.prim.value([vals[u] for u in s.args], s.params), dtype=np.float64)
        ans[s.node] = a
        parts.append(np.ravel(a) if s.residual else np.ravel(vals[s.node] - a))
    return (np.concatenate(parts) if parts else np.zeros(0)), ans


def has_jac(block: Block) -> bool:
    """Whether every member op has a sparse Jacobian rule (needed to assemble ``A_SS``)."""
    if "has_jac" not in block.cache:
        block.cache["has_jac"] = all(s.prim.has_jac for s in block.steps)
    return block.cache["has_jac"]


def block_jacobian(block: Block, vals: list, ans: dict) -> sp.csc_matrix:
    """``A_SS = ∂c_S/∂z_S`` assembled from the ops' sparse ``jac`` rules (explicit zeros removed)."""
    rows, cols, data = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
    for k, s in enumerate(block.steps):
        r0 = block.offsets[k]
        if not s.residual:
            size = block.sizes[k]
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
                      shape=(block.size, block.size)).tocsc()
    A.sum_duplicates()
    A.eliminate_zeros()
    return A


# ---------------------------------------------- matrix-free A v and Aᵀ w
def _member_tangent(block: Block, k: int, parts: list, vals: list, ans: dict, only=None):
    """``Σ_u ∂op_k/∂z_u t_u`` over block arguments ``u`` (``only(m)`` filters positions)."""
    s = block.steps[k]
    args = [vals[u] for u in s.args]
    out = None
    for pos, u in s.diff:
        m = block.position.get(u)
        if m is None or parts[m] is None or (only is not None and not only(m)):
            continue
        t = s.prim.jvp(pos, parts[m], ans[s.node], args, s.params)
        if t is not None:
            out = t if out is None else out + t
    return out


def matvec(block: Block, vals: list, ans: dict, v: np.ndarray) -> np.ndarray:
    """``A_SS v`` from JVP rules: ``v_d - J_d v`` (explicit) or ``∂r_d/∂z v`` (residual)."""
    parts = split(block, v)
    out = []
    for k, s in enumerate(block.steps):
        t = _member_tangent(block, k, parts, vals, ans)
        if s.residual:
            out.append(np.zeros(block.sizes[k]) if t is None else np.ravel(t))
        else:
            out.append(np.ravel(parts[k]) if t is None else np.ravel(parts[k] - t))
    return np.concatenate(out)


def rmatvec(block: Block, vals: list, ans: dict, w: np.ndarray) -> np.ndarray:
    """``A_SSᵀ w`` from VJP rules: ``w_u - Σ_explicit J_duᵀ w_d + Σ_residual (∂r_d/∂z_u)ᵀ w_d``."""
    parts = split(block, w)
    acc = [np.array(p) if not s.residual else None for p, s in zip(parts, block.steps)]
    for k, s in enumerate(block.steps):
        _pull(block, k, parts[k], vals, ans, acc, -1.0 if not s.residual else 1.0)
    return stack(block, acc)


def _pull(block, k, g, vals, ans, acc, sign, only=None) -> None:
    """``acc_u += sign · (∂op_k/∂z_u)ᵀ g`` over block arguments ``u``."""
    s = block.steps[k]
    args = [vals[u] for u in s.args]
    for pos, u in s.diff:
        m = block.position.get(u)
        if m is None or (only is not None and not only(m)):
            continue
        ct = s.prim.vjp(pos, g, ans[s.node], args, s.params)
        if ct is None:
            continue
        acc[m] = sign * ct if acc[m] is None else acc[m] + sign * ct


# ------------------------------------- Gauss–Seidel sweeps (explicit blocks)
# Split A_SS = M - N with M = I - J_L, J_L the dependencies on members *earlier* in the
# block order. M⁻¹ r is one forward substitution in block order (M⁻ᵀ r one backward
# substitution); M⁻¹N is the linearized Gauss–Seidel iteration, whose spectral radius
# is the contraction rate of the forward fixed-point sweep.
def sweep(block: Block, vals: list, ans: dict, r: np.ndarray, lower: bool = True) -> np.ndarray:
    """``M⁻¹ r`` (``lower=True``) or ``M⁻¹ N r`` (``lower=False``: the linearized sweep)."""
    rp = split(block, r)
    t: list = [None] * len(block.steps)
    for k in range(len(block.steps)):
        if lower:
            d = _member_tangent(block, k, t, vals, ans, only=lambda m, k=k: m < k)
            t[k] = rp[k] if d is None else rp[k] + d
        else:
            # N r uses r on later-or-same members, M⁻¹ the updated earlier ones
            mixed = [t[m] if m < k else rp[m] for m in range(len(block.steps))]
            d = _member_tangent(block, k, mixed, vals, ans)
            t[k] = np.zeros(block.shapes[k]) if d is None else d
    return stack(block, t)


def rsweep(block: Block, vals: list, ans: dict, r: np.ndarray, lower: bool = True) -> np.ndarray:
    """``M⁻ᵀ r`` (``lower=True``) or ``M⁻ᵀ Nᵀ r`` (``lower=False``): backward substitution
    with VJP rules in reverse block order (the transposed sweep, one VJP per edge)."""
    rp = split(block, r)
    if lower:
        acc = rp
    else:   # Nᵀ r: edges into later-or-same members, with the old values
        acc = [None] * len(block.steps)
        for k in range(len(block.steps)):
            _pull(block, k, rp[k], vals, ans, acc, 1.0, only=lambda m, k=k: m >= k)
        acc = [np.zeros(shape) if a is None else a for a, shape in zip(acc, block.shapes)]
    for k in reversed(range(len(block.steps))):
        _pull(block, k, acc[k], vals, ans, acc, 1.0, only=lambda m, k=k: m < k)
    return stack(block, acc)


def sweep_rate(block: Block, vals: list, ans: dict, iters: int = 10, seed: int = 0) -> float:
    """Estimate of the Gauss–Seidel contraction rate ρ(M⁻¹N) by power iteration."""
    x = np.random.default_rng(seed).standard_normal(block.size)
    norms = []
    for _ in range(iters):
        x = sweep(block, vals, ans, x, lower=False)
        nx = float(np.linalg.norm(x))
        norms.append(nx)
        if nx == 0.0 or not np.isfinite(nx):
            return 0.0 if nx == 0.0 else np.inf
        x /= nx
    tail = norms[len(norms) // 2:]
    return float(np.exp(np.mean(np.log(tail))))
