"""Jacobians as matrix passes: many tangents (or multipliers) at once, one column each.

The tangent pass with a matrix of seeds ``E`` in place of one ``ẋ`` gives
``Ż = dz/dx · E`` (``A Ż = -(∂c/∂x) E``); the multiplier pass with identity rows gives
``Λ`` with ``AᵀΛ = E_o``. Each step applies its local sparse Jacobian (``jac`` rule);
a cyclic block solves all columns against its one factorization. Both passes are
:mod:`lagrangeprop.solve.walk` passes.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: x ** 2, x=3.0)
>>> sol = prog.solve(x=3.0)
>>> float(jacobian_z(sol)["out"]["x"])
6.0
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import blocks
from ..compile.schedule import Block, Schedule, Step, live_nodes
from ..errors import InputError
from ..options import SolveOptions
from .finite import check_finite_pass
from .inputs import scalar
from .walk import ForwardLinear, ReverseLinear, add_to, drop_dead, sign, walk

__all__ = ["forward_matrix", "reverse_matrix", "output_jacobian", "input_jacobian", "jacobian_z"]


def _block_solve(block: Block, vals: list, B: np.ndarray, state, opts: SolveOptions,
                 transpose: bool) -> np.ndarray:
    """All right-hand sides (columns of ``B``) against the block's one factorization."""
    lu = getattr(state, "lu", None)
    if lu is not None and opts.linear_solver in ("auto", "direct"):
        return lu.solve(np.asarray(B, dtype=np.float64), trans="T" if transpose else "N")
    solve = blocks.solve_adjoint if transpose else blocks.solve_tangent
    cols = []
    for k in range(B.shape[1]):
        parts = solve(block, vals, [B[off:off + size, k].reshape(shape) for off, size, shape
                                    in zip(block.offsets, block.sizes, block.shapes)], state, opts)
        cols.append(np.concatenate([np.ravel(p) for p in parts]))
    return np.stack(cols, axis=1)


def _stacked_solve(block: Block, vals: list, parts: list, state, opts, transpose: bool) -> list:
    """The members' column blocks (``None`` = zero) solved together, split back per member."""
    ncol = next(p.shape[1] for p in parts if p is not None)
    B = np.concatenate([np.zeros((size, ncol)) if p is None else p
                        for size, p in zip(block.sizes, parts)])
    X = _block_solve(block, vals, B, state, opts, transpose)
    return [X[off:off + size] for off, size in zip(block.offsets, block.sizes)]


def _local_jac(step: Step, pos: int, ans, vals: list):
    return step.prim.jac(pos, ans, [vals[a] for a in step.args], step.params)


class _Forward(ForwardLinear):
    """``Ż_d = Σ_u J_du Ż_u`` with the local Jacobians ``J_du = ∂op_d/∂z_u``."""

    __slots__ = ()

    def push(self, step: Step, ans, members):
        Z, vals, total = self.seq, self.vals, None
        for pos, u in step.diff:
            if Z[u] is None or (members is not None and u in members):
                continue
            J = _local_jac(step, pos, ans, vals)
            if J is not None:
                t = np.asarray(J @ Z[u])
                total = t if total is None else total + t
        return total

    def solve(self, block: Block, rhs: list, state) -> list:
        return _stacked_solve(block, self.vals, rhs, state, self.opts, transpose=False)


class _Reverse(ReverseLinear):
    """``Λ_u += sign · J_duᵀ Λ_d`` with the local Jacobians ``J_du = ∂op_d/∂z_u``."""

    __slots__ = ()

    def pull(self, step: Step, ans, members) -> None:
        Lam, vals = self.seq, self.vals
        G, sgn = Lam[step.node], sign(step)
        for pos, u in step.diff:
            if members is not None and u in members:
                continue
            J = _local_jac(step, pos, ans, vals)
            if J is not None:
                add_to(Lam, u, sgn * np.asarray(J.T @ G))

    def solve(self, block: Block, rhs: list, state) -> list:
        return _stacked_solve(block, self.vals, rhs, state, self.opts, transpose=True)


# A Ż = -(∂c/∂x) E: the tangent pass with one column per seed direction.
def forward_matrix(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                   seeds: dict[int, np.ndarray], every: bool = False) -> list:
    """``Ż_v = dz_v/dx · E`` (rows: v's entries, columns: seed directions) for the nodes the
    output depends on, or for every node with ``every=True`` (only those are checked, as in
    :func:`~lagrangeprop.solve.tangent.tangent_pass`)."""
    Z: list = [None] * len(sched.names)
    for i, E in seeds.items():
        Z[i] = E
    with np.errstate(all="ignore"):     # non-finite entries are reported below, not warned about
        walk(sched, _Forward(vals, states, opts, Z))
    if not every:
        drop_dead(Z, live_nodes(sched))
    check_finite_pass(sched, vals, Z, "tangent")
    return Z


# Aᵀ Λ = E_o: the multiplier pass with one column per output entry.
def reverse_matrix(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                   seed: np.ndarray) -> list:
    """``Λ_v = (dz_o/dz_v)ᵀ``-style multipliers with one column per output entry."""
    Lam: list = [None] * len(sched.names)
    Lam[sched.output] = seed
    with np.errstate(all="ignore"):     # non-finite entries are reported below, not warned about
        walk(sched, _Reverse(vals, states, opts, Lam), reverse=True)
    check_finite_pass(sched, vals, Lam, "multiplier")
    return Lam


def output_jacobian(sched: Schedule, vals: list, states: dict, opts: SolveOptions, x: int,
                    mode: str) -> np.ndarray:
    """``dz_o/dx`` of shape ``out.shape + x.shape``; ``mode="auto"``: forward when ``x`` is
    no larger than the output, else reverse."""
    n_in = int(np.prod(sched.shapes[x], dtype=int))
    n_out = int(np.prod(sched.shapes[sched.output], dtype=int))
    if mode == "auto":
        mode = "forward" if n_in <= n_out else "reverse"
    if mode == "forward":
        J = forward_matrix(sched, vals, states, opts, {x: np.eye(n_in)})[sched.output]
        J = np.zeros((n_out, n_in)) if J is None else J
    elif mode == "reverse":
        L = reverse_matrix(sched, vals, states, opts, np.eye(n_out))[x]
        J = np.zeros((n_out, n_in)) if L is None else L.T
    else:
        raise InputError(f"mode={mode!r}: choose 'auto', 'forward' or 'reverse'")
    return np.asarray(J).reshape(sched.shapes[sched.output] + sched.shapes[x])


def input_jacobian(sched: Schedule, vals: list, inputs: list[int]) -> sp.csr_matrix:
    """``∂c/∂x`` (rows: the constraints in ``sched.defined`` order; columns: the given
    inputs, stacked) from the ops' sparse ``jac`` rules."""
    col0, off = {}, 0
    for i in inputs:
        col0[i] = off
        off += int(np.prod(sched.shapes[i], dtype=int))
    rows, cols, data, r0 = [], [], [], 0
    for n in sched.defined:
        step = sched.step_of[n]
        ans = None
        for pos, u in step.diff:
            if u not in col0:
                continue
            if ans is None:
                ans = step.prim.value([vals[a] for a in step.args], step.params)
            J = _local_jac(step, pos, ans, vals)
            if J is None:
                continue
            J = sp.coo_matrix(J)
            rows.append(J.row + r0); cols.append(J.col + col0[u]); data.append(-sign(step) * J.data)
        r0 += int(np.prod(sched.shapes[n], dtype=int))
    if not data:
        return sp.csr_matrix((r0, off))
    return sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(r0, off))


# dz/dx = -A⁻¹ ∂c/∂x (the implicit function theorem): every input column pushed at once.
def jacobian_z(sol) -> dict:
    """``dz/dx = -A⁻¹ ∂c/∂x`` for every node of a solved program.

    Returns ``{node: {input: array of shape node.shape + input.shape}}`` for every input
    and defined node (inputs: identity for themselves). All input columns are pushed
    through at once; a cyclic block solves them against its one factorization.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program()
    >>> x = prog.input("x"); w = prog.variable("w")
    >>> _ = prog.residual(w, w**3 + w - x); _ = prog.output(2.0 * w, name="o")
    >>> jz = prog.solve(x=2.0).jacobian_z()      # w = 1: dw/dx = 1/(3w² + 1)
    >>> float(jz["w"]["x"]), float(jz["o"]["x"])
    (0.25, 0.5)
    """
    sched = sol.schedule
    sizes = {i: int(np.prod(sched.shapes[i], dtype=int)) for i in sched.inputs}
    total = sum(sizes.values())
    seeds, col0, off = {}, {}, 0
    for i in sched.inputs:
        E = np.zeros((sizes[i], total))
        E[:, off:off + sizes[i]] = np.eye(sizes[i])
        seeds[i], col0[i] = E, off
        off += sizes[i]
    Z = forward_matrix(sched, sol._vals, sol._states, sol.options, seeds, every=True)
    out = {}
    for v in [*sched.inputs, *sched.defined]:
        Zv = np.zeros((int(np.prod(sched.shapes[v], dtype=int)), total)) if Z[v] is None else Z[v]
        out[sched.names[v]] = {
            sched.names[i]: scalar(np.asarray(Zv[:, col0[i]:col0[i] + sizes[i]]).reshape(
                sched.shapes[v] + sched.shapes[i]))
            for i in sched.inputs}
    return out
