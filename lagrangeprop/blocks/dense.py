"""Dense Newton for small cyclic blocks on generated residual and Jacobian code (issue 14).

A block of at most :data:`MAX_UNKNOWNS` scalar unknowns whose members are all ``math``-form ops
(:func:`lagrangeprop.compile.blockgen.generable`: Sellar, scalar fixed points and residuals) is
solved by the same Newton iteration as :func:`lagrangeprop.blocks.newton.newton`, on Python floats
instead of the generic sparse machinery: ``c_S`` and the dense ``A_SS`` come from the block's
generated functions (:mod:`lagrangeprop.compile.blockgen`), the step from the LAPACK LU of
``A_SS``'s Schur complement on the states (generated too; LAPACK's LU through
:func:`~lagrangeprop.blocks.eliminate.factor`, which judges singularity on the equilibrated
reduced system, SPEC §1), and the stopping test is :mod:`lagrangeprop.blocks.scale`'s
per-constraint one. The adjoint and tangent (:func:`linear_solve`) solve with the LU of the dense
``A_SS`` at the solution, made as :func:`lagrangeprop.blocks.linear.direct` makes it (the same
singularity test and report).

Iterates, line search, polishing step and stopping test are the generic Newton's, so the two
reach the same root to rounding. Whenever the dense iteration does not succeed (a non-finite
point, a singular ``A_SS``, no convergence in ``maxiter``, a guess of another shape) the block is
solved again from its start by the generic :func:`~lagrangeprop.blocks.newton.newton`, which then
converges or raises its own error: errors are the generic path's, by construction.

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.options import SolveOptions
>>> sol = cubic()   # the residual w³ + w - x = 0 (o = w) solved at x = 2: conftest.py
>>> blk = sol.schedule.blocks[0]; vals = list(sol._vals)
>>> applies(blk, vals)
True
>>> state = try_dense(blk, vals, SolveOptions(), {})
>>> state.method, round(float(vals[blk.nodes[0]]), 12), state.A.shape, state.iterations
('newton', 1.0, (3, 3), 1)
"""

from __future__ import annotations

import math

import numpy as np

from ..compile.blockgen import BlockCode, generable, generate_block
from ..compile.schedule import Block
from ..errors import SingularSystemError
from ..options import SolveOptions
from ..progress import report
from .eliminate import factor, reduced_factor, split_members
from .layout import labels_of
from .iteration import MAXITER, settled
from .newton import newton
from .residual import has_jac
from .scale import constraint_scale
from .state import BlockState, cache_of

__all__ = ["ENABLED", "MAX_UNKNOWNS", "applies", "code_of", "try_dense", "dense_newton", "linear_solve",
           "adjoint"]

ENABLED = True      # False: every block takes the generic path (tests compare the two)
MAX_UNKNOWNS = 32   # blocks up to this many scalar unknowns

_FLOAT_ERRORS = (ArithmeticError, ValueError)   # Python floats raise where numpy gives NaN/inf
_F64_TYPE, _F64_DTYPE = np.float64, np.dtype(np.float64)


def code_of(block: Block, vals: list) -> BlockCode | None:
    """The block's generated functions, or ``None`` when it does not qualify; cached
    (``BlockCache.dense``; the outside operands' kinds are fixed by the schedule)."""
    c = cache_of(block)
    if c.dense is False:
        ok = block.size <= MAX_UNKNOWNS and has_jac(block) and generable(block, vals)
        c.dense = generate_block(block, *split_members(block)) if ok else None
    return c.dense


def applies(block: Block, vals: list) -> bool:
    """Whether :func:`dense_newton` solves this block (``vals``: the values at the start)."""
    return ENABLED and block.size <= MAX_UNKNOWNS and code_of(block, vals) is not None


def dense_newton(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Newton on the generated code (:func:`try_dense`), else the generic Newton; fills ``vals``."""
    state = try_dense(block, vals, opts, guess)
    return state if state is not None else newton(block, vals, opts, guess)


# A_SSᵀ λ_S = b_S (adjoint) or A_SS ż_S = b_S (tangent), with the LU of A_SS at the solution
def linear_solve(block: Block, state: BlockState, rhs: list, trans: bool, vals: list | None = None) -> list | None:
    """The block's linear solve on a dense state (scalar members), the factorization of ``state.A``
    made on first use as :func:`lagrangeprop.blocks.linear.direct` makes it (the same singularity
    test and report); per member a 0-d array, as :func:`~lagrangeprop.blocks.layout.split` gives.
    ``None`` for a right-hand side that is not one real scalar per member (the generic solve).
    With ``vals`` (the values at the solution) the adjoint solves by elimination (:func:`_tsolve`)."""
    x = _solve_floats(block, state, rhs, trans, vals)
    return None if x is None else [np.array(t) for t in x]


def _real_scalar(r) -> bool:
    cls = r.__class__
    if cls is float or cls is _F64_TYPE:
        return True
    if cls is np.ndarray:
        return r.shape == () and r.dtype.kind in "fiu"
    return np.shape(r) == () and np.isrealobj(r)


def _solve_floats(block: Block, state: BlockState, rhs: list, trans: bool, vals: list | None,
                  za: tuple | None = None) -> list | None:
    """:func:`linear_solve`'s solution as Python floats (``None``: not one real scalar per member);
    ``za``: the members' values and op outputs at the solution as floats, when the caller has them."""
    for r in rhs:
        if r is not None and not _real_scalar(r):
            return None
    if trans and vals is not None:
        code = cache_of(block).dense
        if code:
            x = _tsolve(block, code, state, vals, [0.0 if r is None else float(r) for r in rhs], za)
            if x is not None:
                return x
    if state.lu is None:
        state.lu, _ = reduced_factor(block, state.A, "at the solution")
    b = np.array([0.0 if r is None else float(r) for r in rhs])
    with np.errstate(all="ignore"):
        x = state.lu.solve(b, trans="T" if trans else "N")
    return x.tolist()


# A_SSᵀ λ_S = b_S - Σ_{d ∉ S} (∂c_d/∂z_S)ᵀ λ_d (the outside terms already in lam[S]), then
# λ_u += sign·(∂f_s/∂z_u) λ_s for the arguments u outside S, by the block's generated pull-back
def adjoint(block: Block, vals: list, lam: list, state: BlockState, linear_solver: str) -> bool:
    """The block's adjoint on a dense state (:func:`try_dense`'s), as
    :func:`lagrangeprop.solve.local.block_adjoint` computes it with ``solve_adjoint`` and the
    members' VJP rules; ``False`` (nothing written) where that generic path must run instead."""
    if linear_solver not in ("auto", "direct") or state.A.__class__ is not np.ndarray:
        return False
    code = cache_of(block).dense
    if not code or code.pullback is None or not ENABLED:
        return False
    rhs = [lam[n] for n in block.nodes]
    ans = state.ans
    za = ([float(vals[n]) for n in block.nodes], [float(ans[n]) for n in block.nodes])
    x = _solve_floats(block, state, rhs, True, vals, za)
    if x is None:
        return False
    state.used = state.linear = "direct"
    for n, t in zip(block.nodes, x):
        lam[n] = np.array(t)
    code.pullback(lam, vals, za[0], za[1], x)
    return True


# A_SSᵀ λ = b by elimination of the intermediates (blockgen's tsweep): F(λ_T) = Sᵀ λ_T + F(0), so
# Sᵀ λ_T = -F(0) from m + 1 sweeps, then one more for every λ
def _tsolve(block: Block, code: BlockCode, state: BlockState, vals: list, b: list,
            za: tuple | None = None) -> list | None:
    """``A_SSᵀ λ = b`` on floats through the states' reduced system ``Sᵀ`` at the solution; ``None``
    where ``Sᵀ`` looks singular or the arithmetic overflowed (the LU of ``A_SS`` then decides)."""
    if za is None:
        za = ([float(vals[n]) for n in block.nodes], [float(state.ans[n]) for n in block.nodes])
    z, a = za
    m = len(code.states)
    sweep = code.tsweep
    try:
        _, f0 = sweep(vals, z, a, b, [0.0] * m)
        zero = [0.0] * len(b)
        cols = [sweep(vals, z, a, zero, [1.0 if i == j else 0.0 for i in range(m)])[1] for j in range(m)]
        if m == 1:
            s = cols[0][0]
            if s == 0.0 or s - s != 0.0:
                return None
            lt = [-f0[0] / s]
        else:
            M = np.array(cols).T
            if not np.isfinite(M).all():
                return None
            labels = labels_of(block)
            try:
                lu = factor(block, M, "at the solution", labels=[labels[t] for t in code.states])
            except SingularSystemError:
                return None
            lt = lu.solve(-np.array(f0)).tolist()
        x, _ = sweep(vals, z, a, b, lt)
    except _FLOAT_ERRORS:
        return None
    return x if _finite(x) else None


def _evaluate(code: BlockCode, vals: list, z: list):
    """``(z, c, a)`` at the states of ``z`` (intermediates substituted), ``None`` where Python's
    float arithmetic raised (a point numpy would make non-finite)."""
    try:
        return code.residual(vals, z)
    except _FLOAT_ERRORS:
        return None


def _start(block: Block, code: BlockCode, vals: list, guess: dict) -> list | None:
    """:func:`lagrangeprop.blocks.iteration.initial` on floats: the guess, else 0, then one sweep of
    the free explicit members; ``None`` for a guess that is not a scalar (the generic start decides)."""
    z, free = [], []
    for n, s in zip(block.nodes, block.steps):
        if n in guess:
            g = guess[n]
            if g.__class__ is not np.ndarray or g.dtype is not _F64_DTYPE:
                g = np.asarray(g, dtype=np.float64)
            if g.shape != ():
                return None
            z.append(float(g))
            free.append(False)
        else:
            z.append(0.0)
            free.append(not s.residual)
    return code.start(vals, z, free)


def _store(block: Block, vals: list, z) -> None:
    for n, v in zip(block.nodes, z):
        vals[n] = np.array(v)


def try_dense(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState | None:
    """The dense Newton on the block's generated code; fills ``vals`` and returns the state, or
    ``None`` when it did not succeed (module docstring)."""
    code = code_of(block, vals)
    if code is None:
        return None
    with np.errstate(all="ignore"):
        return _newton(block, code, vals, opts, guess)


def _scaled(c, scale) -> tuple[float, float]:
    """``max|c / s|`` and ``||c / s||₂`` (both NaN when an entry, or the sum of squares, is not finite)."""
    m = s2 = 0.0
    for ci, si in zip(c, scale):
        t = ci / si
        s2 += t * t
        t = abs(t)
        if t > m:
            m = t
    if s2 - s2 != 0.0:
        return math.nan, math.nan
    return m, math.sqrt(s2)


def _finite(z) -> bool:
    for t in z:
        if t - t != 0.0:
            return False
    return True


def _scale(block: Block, code: BlockCode, vals: list, z) -> list:
    """The states' constraint scales (SPEC §1 "Scale"): ``max(1, |z_d|)`` in an explicit block; with
    residual members, :func:`~lagrangeprop.blocks.scale.constraint_scale` at ``z`` (written to ``vals``)."""
    if block.explicit:
        return [max(1.0, abs(z[t])) for t in code.states]
    _store(block, vals, z)
    s = constraint_scale(block, vals, np.array(z))
    return [float(s[t]) for t in code.states]


class _Scalar:
    """The LU of a 1×1 Schur complement ``S = [s]`` (nonzero and finite), as ``DenseLU.solve``."""

    __slots__ = ("s",)

    def __init__(self, s: float) -> None:
        self.s = s

    def solve(self, b: list) -> list:
        return [b[0] / self.s]


def _factor(block: Block, code: BlockCode, vals: list, z, a, where: str):
    """A solver of the states' Newton system ``S δ_T = -c_T``; singular -> SingularSystemError naming
    the states (judged on the reduced system, SPEC §1)."""
    try:
        S = code.reduced(vals, z, a)
    except _FLOAT_ERRORS:      # an infinite partial (numpy's inf): the generic Newton decides
        raise SingularSystemError(f"non-finite Jacobian {where}", nodes=block.names) from None
    if len(S) == 1:    # as LAPACK's 1×1 LU: singular only at an exactly zero (or non-finite) pivot
        if S[0] != 0.0 and S[0] - S[0] == 0.0:
            return _Scalar(S[0])
    m = len(code.states)
    labels = labels_of(block)
    lu = factor(block, np.array(S).reshape(m, m), where, labels=[labels[t] for t in code.states])
    return _Dense(lu)


class _Dense:
    """``DenseLU.solve`` on lists."""

    __slots__ = ("lu",)

    def __init__(self, lu) -> None:
        self.lu = lu

    def solve(self, b: list) -> list:
        return self.lu.solve(np.array(b)).tolist()


def _step_size(z_new: list, z_old: list) -> float:
    """:func:`lagrangeprop.blocks.iteration.step_size` on Python floats."""
    return max((abs(a - b) / max(1.0, abs(a)) for a, b in zip(z_new, z_old)), default=0.0)


def _moved(z, states: tuple, delta: list, alpha: float) -> list:
    """The states of ``z`` moved by ``α δ_T`` (the intermediates follow in ``residual``)."""
    out = list(z)
    for t, d in zip(states, delta):
        out[t] = z[t] + alpha * d
    return out


# S δ_T = -c_T(z) on the states (S: the Schur complement of A_SS, the intermediates by forward
# substitution), z_T ← z_T + α δ_T with α halved until ||c/s||₂ decreases (Armijo); stop when
# max_d |c_d| / s_d <= tol (SPEC §1 "Scale")
def _newton(block: Block, code: BlockCode, vals: list, opts: SolveOptions, guess: dict) -> BlockState | None:
    start = _start(block, code, vals, guess)
    if start is None:
        return None
    at = _evaluate(code, vals, start)
    if at is None:
        return None
    z, c, a = at
    tol, T = opts.tol, code.states
    maxiter = opts.maxiter or MAXITER["newton"]
    state = BlockState(method="newton")
    lu = None
    polished, moved = False, math.inf
    for it in range(maxiter + 1):
        state.iterations = it
        if not _finite(z):
            return None
        scale = _scale(block, code, vals, z)
        cn, norm2 = _scaled(c, scale)
        state.history.append(cn)
        report(block.names, "newton", it, cn, tol)     # lagrangeprop.progress (solve(verbose=))
        if cn != cn:
            return None
        done = cn <= tol                              # max_d |c_d| / s_d <= tol
        if done and it < maxiter and cn > 1e-14 and (not polished or not settled(moved, tol)):
            polished = True     # one more (quadratically convergent) step, more while the last was large
        elif done:
            try:
                A = code.jacobian(vals, z, a)       # A_SS at the solution: the adjoint factors it
            except _FLOAT_ERRORS:                   # an infinite partial: the generic Newton decides
                return None
            _store(block, vals, z)
            state.ans = {node: np.array(v) for node, v in zip(block.nodes, a)}
            state.A = np.array(A).reshape(block.size, block.size)
            return state
        if it == maxiter:
            return None
        neg_c = [-t for t in c]
        if lu is not None and polished and done:       # the polishing step: a chord step with the old LU
            at = _evaluate(code, vals, _moved(z, T, lu.solve(neg_c), 1.0))
            if at is not None and _scaled(at[1], scale)[1] <= 0.25 * norm2:
                moved = _step_size(at[0], z)
                z, c, a = at
                continue
        try:
            lu = _factor(block, code, vals, z, a, f"at Newton iteration {it}")
        except SingularSystemError:
            return None
        at = _line_search(block, code, vals, z, lu.solve(neg_c), norm2, scale)
        if at is None:
            return None
        moved = _step_size(at[0], z)
        z, c, a = at
    return None


def _line_search(block: Block, code: BlockCode, vals: list, z, delta: list, cnorm2: float, scale: list):
    """Backtracking on the scaled ``||c / s||₂`` (Armijo, halving down to 2⁻¹⁰) like the generic
    Newton's (an equation whose terms are all zero at ``z`` takes its scale at the full step);
    ``None`` when even the shortest step is a non-finite point."""
    alpha = 1.0
    zero = [si <= 1e-290 for si in scale]
    s = scale
    while True:
        at = _evaluate(code, vals, _moved(z, code.states, delta, alpha))
        if at is not None:
            if alpha == 1.0 and any(zero):
                s = [max(t, si) if k else si for k, t, si in zip(zero, _scale(block, code, vals, at[0]), scale)]
            if _scaled(at[1], s)[1] <= (1 - 1e-4 * alpha) * cnorm2:     # False for NaN
                return at
        if alpha < 1e-3:
            return at
        alpha *= 0.5
