"""Matrix-free products with ``A_SS``, Gauss–Seidel sweeps, and the sweep solve of explicit blocks.

The products ``A_SS v`` / ``A_SSᵀ w`` come from the local partials (:mod:`lagrangeprop.blocks.linearization`),
never from an assembled matrix. The sweeps split ``A_SS = M - N`` with ``M = I - J_L``, ``J_L`` the
dependencies on members earlier in the block order: forward substitution with ``M`` is both a
fixed-point iteration and a Krylov preconditioner. :func:`sweep_solve` solves ``A_SS x = b`` or
``A_SSᵀ x = b`` with them, warm-started from the block's last answer when the right-hand side
barely changed.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'a.multiply']
>>> ans = sol._states[id(blk)].ans
>>> matvec(blk, sol._vals, ans, np.array([1.0, 0.0, 0.0])).tolist()     # the first column of A_SS
[1.0, -0.25, 0.0]
>>> x = sweep_solve(blk, sol._vals, ans, None, np.array([1.0, 0.0, 0.0]), "sweep", True, what="example")
>>> bool(np.allclose(rmatvec(blk, sol._vals, ans, x), [1.0, 0.0, 0.0]))
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..compile.schedule import Block
from ..linalg import stationary as _stationary
from ..linalg.krylov import backward_error, krylov
from .assembly import assemble
from .layout import member_slices, views
from .linearization import Linearization, linearize
from .residual import has_jac
from .state import cache_of

__all__ = ["matvec", "rmatvec", "sweep", "rsweep", "sweep_affine", "rsweep_affine", "sweep_solve", "sweep_rate",
           "warm_start", "remember_answer"]


def _edge_order(lin: Linearization) -> tuple:
    """The linearization's edges as ``(k, edge)``: those into a member from an *earlier* one (the
    Gauss–Seidel ``M = I - J_L`` part) in block order, and the others (``N``: later or the same
    member) in block order; cached on ``lin``."""
    order = getattr(lin, "_order", None)
    if order is None:
        lower = [(k, e) for k, row in enumerate(lin.edges) for e in row if e.m < k]
        upper = [(k, e) for k, row in enumerate(lin.edges) for e in row if e.m >= k]
        order = lin._order = (lower, upper, lower[::-1])
    return order


def matvec(block: Block, vals: list, ans: dict, v: np.ndarray) -> np.ndarray:
    """``A_SS v`` from the local partials: ``v_d - J_d v`` (explicit) or ``∂r_d/∂z v`` (residual)."""
    lin = linearize(block, vals, ans)
    v = np.asarray(v, dtype=np.float64)
    acc = np.zeros(block.size)
    vv, av = views(block, v), views(block, acc)
    for k, row in enumerate(lin.edges):
        o = av[k]
        for e in row:
            e.jvp_into(vv[e.m], o)
    (sl, explicit) = member_slices(block)
    if len(explicit) == len(sl):
        return np.subtract(v, acc, out=acc)
    for k in explicit:                       # explicit rows: v_d - J_d v
        a, b, _ = sl[k]
        np.subtract(v[a:b], acc[a:b], out=acc[a:b])
    return acc


def rmatvec(block: Block, vals: list, ans: dict, w: np.ndarray) -> np.ndarray:
    """``A_SSᵀ w``: ``w_u - Σ_explicit J_duᵀ w_d + Σ_residual (∂r_d/∂z_u)ᵀ w_d``."""
    lin = linearize(block, vals, ans)
    w = np.asarray(w, dtype=np.float64)
    (sl, explicit) = member_slices(block)
    if len(explicit) == len(sl):
        out, g = np.array(w), np.negative(w)     # g: w with the explicit members' parts negated
    else:
        out = np.zeros(block.size)
        g = np.array(w)
        for k in explicit:
            a, b, _ = sl[k]
            out[a:b] = w[a:b]
            np.negative(g[a:b], out=g[a:b])
    gv, ov = views(block, g), views(block, out)
    for k, row in enumerate(lin.edges):
        for e in row:
            e.vjp_into(gv[k], ov[e.m])
    return out


# ------------------------------------- Gauss–Seidel sweeps (explicit blocks)
# Split A_SS = M - N with M = I - J_L, J_L the dependencies on members *earlier* in the
# block order. M⁻¹ r is one forward substitution in block order (M⁻ᵀ r one backward
# substitution); M⁻¹N is the linearized Gauss–Seidel iteration, whose spectral radius
# is the contraction rate of the forward fixed-point sweep.
def sweep_affine(block: Block, lin: Linearization, b: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """``M⁻¹ (b + N x)`` (``x=None``: ``M⁻¹ b``): one linearized Gauss–Seidel sweep from ``x``."""
    t = np.array(b, dtype=np.float64)
    tv = views(block, t)
    if x is None:
        for k, e in _edge_order(lin)[0]:
            e.jvp_into(tv[e.m], tv[k])
        return t
    xv = views(block, x)
    for k, row in enumerate(lin.edges):       # member k is final once its own edges are in
        o = tv[k]
        for e in row:
            e.jvp_into(tv[e.m] if e.m < k else xv[e.m], o)
    return t


def rsweep_affine(block: Block, lin: Linearization, b: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """``M⁻ᵀ (b + Nᵀ x)`` (``x=None``: ``M⁻ᵀ b``): one transposed Gauss–Seidel sweep from ``x``
    (backward substitution with the local partials in reverse block order, one VJP per edge)."""
    acc = np.array(b, dtype=np.float64)
    av = views(block, acc)
    _, upper, lower_rev = _edge_order(lin)
    if x is not None:
        xv = views(block, x)
        for k, e in upper:
            e.vjp_into(xv[k], av[e.m])
    for k, e in lower_rev:
        e.vjp_into(av[k], av[e.m])
    return acc


def sweep(block: Block, vals: list, ans: dict, r: np.ndarray, lower: bool = True) -> np.ndarray:
    """``M⁻¹ r`` (``lower=True``) or ``M⁻¹ N r`` (``lower=False``: the linearized sweep)."""
    lin = linearize(block, vals, ans)
    r = np.asarray(r, dtype=np.float64)
    return sweep_affine(block, lin, r) if lower else sweep_affine(block, lin, np.zeros(block.size), r)


def rsweep(block: Block, vals: list, ans: dict, r: np.ndarray, lower: bool = True) -> np.ndarray:
    """``M⁻ᵀ r`` (``lower=True``) or ``M⁻ᵀ Nᵀ r`` (``lower=False``): the transposed sweep."""
    lin = linearize(block, vals, ans)
    r = np.asarray(r, dtype=np.float64)
    return rsweep_affine(block, lin, r) if lower else rsweep_affine(block, lin, np.zeros(block.size), r)


def _watch(block: Block, lin: Linearization, trans: bool) -> list:
    """The slices of ``x`` that ``N x`` (``Nᵀ x`` with ``trans``) reads: a sweep from ``x`` depends on
    those entries alone."""
    upper = _edge_order(lin)[1]
    ks = sorted({k for k, _ in upper} if trans else {e.m for _, e in upper})
    sl = member_slices(block)[0]
    return [sl[k][:2] for k in ks]


def remember_answer(block: Block, b: np.ndarray, x: np.ndarray, trans: bool) -> None:
    """Keep ``x``, the answer to ``A_SS x = b`` (``A_SSᵀ x = b``), as the next solve's warm start."""
    c = cache_of(block)
    if trans:
        c.warm_adjoint = (b, x)
    else:
        c.warm_tangent = (b, x)


def warm_start(block: Block, b: np.ndarray, bnorm: float, trans: bool):
    """The block's last answer to a system of this kind (adjoint or tangent) when its
    right-hand side was close to ``b`` (a repeated solve), else ``None`` (start from zero)."""
    c = cache_of(block)
    hit = c.warm_adjoint if trans else c.warm_tangent
    if hit is None:
        return None
    b_old, x_old = hit
    if b_old.shape != b.shape or x_old.shape != (block.size,):
        return None
    return x_old if float(np.linalg.norm(b - b_old)) <= 0.5 * bnorm else None


# explicit blocks up to this many unknowns assemble A_SS for the per-equation check of a sweep solve
CHECK_DENSE_MAX_UNKNOWNS = 128


def sweep_solve(block: Block, vals: list, ans: dict, A, b: np.ndarray, kind: str, trans: bool, *,
                what: str) -> np.ndarray:
    """``A_SS x = b`` (``A_SSᵀ x = b`` with ``trans``) for an explicit block by Gauss–Seidel sweeps:
    the stationary iteration itself (``kind="sweep"``) or ``gmres``/``bicgstab`` on the
    sweep-preconditioned system ``(I - M⁻¹N) x = M⁻¹ b``.

    ``A``: the assembled ``A_SS`` when the forward solve made one (else the local partials' products).
    Warm start: the iteration starts from the block's last answer to the same kind of system when the
    right-hand side barely changed (a program solved again at nearby inputs); the answer is verified
    on the true residual either way, so the start changes the number of sweeps only.
    """
    lin = linearize(block, vals, ans)
    n = block.size
    b = np.asarray(b, dtype=np.float64)
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return np.zeros(n)
    if A is None and n <= CHECK_DENSE_MAX_UNKNOWNS and has_jac(block):
        A = assemble(block, lin, dense=True)     # small: assembled, so the answer is checked per equation
    if A is not None:
        At = A.T if trans else A

        def op(x):
            return At @ x
    else:
        def op(x):
            return rmatvec(block, vals, ans, x) if trans else matvec(block, vals, ans, x)

    if A is not None:     # per equation (SPEC §1 "Scale")
        residual = backward_error(A.T if trans else A, b)
    else:
        def residual(x):
            r = op(x)
            r -= b
            return float(np.linalg.norm(r)) / bnorm
    x0 = warm_start(block, b, bnorm, trans)
    aff = rsweep_affine if trans else sweep_affine
    if kind == "sweep":     # x ← M⁻ᵀ(b + Nᵀx) (M⁻¹(b + Nx)), the Gauss–Seidel iteration itself
        x = _stationary.stationary(lambda x: aff(block, lin, b, x), x0, residual, watch=_watch(block, lin, trans),
                       names=block.names, what=what)
    else:
        zero = np.zeros(n)
        G = spla.LinearOperator((n, n), matvec=lambda x: x - aff(block, lin, zero, x), dtype=float)
        x = krylov(G, aff(block, lin, b), kind, names=block.names, what=what, residual=residual, x0=x0)
    # kept without copies: the callers split x into new arrays and drop b
    remember_answer(block, b, x, trans)
    return x


def sweep_rate(block: Block, vals: list, ans: dict, iters: int = 10, seed: int = 0) -> float:
    """Estimate of the Gauss–Seidel contraction rate ρ(M⁻¹N) by power iteration."""
    x = np.random.default_rng(seed).standard_normal(block.size)
    norms = []
    lin = linearize(block, vals, ans)   # noqa: F841  (kept alive across the sweeps)
    for _ in range(iters):
        x = sweep(block, vals, ans, x, lower=False)
        nx = float(np.linalg.norm(x))
        norms.append(nx)
        if nx == 0.0 or not np.isfinite(nx):
            return 0.0 if nx == 0.0 else np.inf
        x /= nx
    tail = norms[len(norms) // 2:]
    return float(np.exp(np.mean(np.log(tail))))
