"""Algebraic-multigrid (AMG) preconditioned Krylov solves for very large blocks (optional: pyamg).

A sparse LU of a 2-D PDE block with ``10⁶`` unknowns costs minutes and gigabytes of fill-in.
An AMG V-cycle costs a few sweeps over ``A`` and, as the preconditioner of conjugate gradients
(symmetric ``A``) or gmres, solves to 1e-12 in a few tens of cycles whatever the grid size.
:class:`AMGInverse` offers the LU interface ``solve(b, trans)`` on top of it, so a Newton
step, the adjoint ``A_SSᵀ λ = b`` and the tangent ``A_SS ż = b`` use it unchanged
(with elimination, on the Schur complement of the states, SPEC §1).

The hierarchy (pyamg's classical ``ruge_stuben_solver``) is the expensive part; it is built
once and kept on the block (``BlockCache.amg``) while the block's sparsity pattern stays the same: a
hierarchy built from a nearby matrix (an earlier Newton iterate, an earlier solve of the
same program) is still an excellent preconditioner, and it is rebuilt only when the Krylov
iteration count doubles. Singular systems are not diagnosed here (there is no pivot to
look at): a Krylov solve that misses its tolerance raises :class:`ConvergenceError`, and
``linear_solver="auto"`` then falls back to a sparse LU, whose singularity report names
the variables.

Install with ``pip install "lagrangeprop[amg]"``.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> from lagrangeprop.linalg import amg
>>> T = sp.diags([-np.ones(49), 2 * np.ones(50), -np.ones(49)], [-1, 0, 1])
>>> A = (sp.kron(sp.identity(50), T) + sp.kron(T, sp.identity(50))).tocsr()   # 2-D Laplacian
>>> b = np.ones(2500)
>>> if amg.available():
...     x = amg.AMGInverse(A).solve(b)
... else:
...     x = sp.linalg.spsolve(A.tocsc(), b)
>>> bool(np.linalg.norm(A @ x - b) <= 1e-10 * np.linalg.norm(b))
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import ConvergenceError, InputError
from ..options import PYAMG_MISSING, pyamg_installed
from .krylov import LIN_ACCEPT, LIN_RTOL, krylov

__all__ = ["AMG_MIN", "available", "require", "HierarchySlot", "AMGInverse", "hierarchy_for"]

AMG_MIN = 40_000      # auto: Schur complements with at least this many unknowns use AMG instead of a sparse LU
REBUILD = 2.0         # rebuild a reused hierarchy when a solve needs this many times its first count
FORWARD_RTOL = 1e-4  # Newton steps: the next step corrects the rest (SPEC's test is on c); <= 1e-3 below
MAXITER = 150         # Krylov iterations per solve (a V-cycle each; 8-30 where AMG suits the system)


def available() -> bool:
    """Whether pyamg is installed (it is imported only when a solve uses it)."""
    return pyamg_installed()


def require() -> None:
    """Raise :class:`InputError` with the install command when pyamg is missing."""
    if not available():
        raise InputError(PYAMG_MISSING)


def _symmetric(A: sp.csr_matrix) -> bool:
    D = abs(A - A.T)
    scale = float(abs(A).max()) if A.nnz else 0.0
    return not D.nnz or float(D.max()) <= 1e-13 * scale


def _build(A: sp.csr_matrix, symmetric: bool):
    # classical (Ruge–Stüben) AMG: on the Bratu Schur complement (N = 1000) it needs 8 cg iterations
    # to 1e-12 where smoothed aggregation needs 15, at a similar setup cost
    import pyamg
    try:
        with np.errstate(all="ignore"):
            return pyamg.ruge_stuben_solver(A)
    except Exception as exc:      # pyamg raises assorted errors on matrices it cannot coarsen
        raise ConvergenceError(f"the AMG setup failed on a system of {A.shape[0]} unknowns ({exc}); "
                               "use linear_solver='direct'") from None


class _Hierarchy:
    """A pyamg hierarchy (and, for non-symmetric matrices, one of ``Aᵀ``) with its first iteration counts;
    ``key`` names the matrices it serves (a pattern's nnz, or the owner's token of an operator)."""

    __slots__ = ("shape", "key", "symmetric", "ml", "mlT", "first")

    def __init__(self, A: sp.csr_matrix, symmetric: bool, key):
        self.shape, self.key, self.symmetric = A.shape, key, symmetric
        self.ml = _build(A, symmetric)
        self.mlT = None
        self.first: dict = {}

    def preconditioner(self, matrix, trans: bool) -> spla.LinearOperator:
        """The V-cycle of ``A`` (``Aᵀ``); ``matrix()`` gives ``A`` for a first hierarchy of ``Aᵀ``."""
        if trans and not self.symmetric:
            if self.mlT is None:
                self.mlT = _build(matrix().T.tocsr(), False)
            return self.mlT.aspreconditioner(cycle="V")
        return self.ml.aspreconditioner(cycle="V")


class HierarchySlot:
    """Where a hierarchy is kept between solves: ``amg`` (``None`` until one is built). A block's
    :class:`~lagrangeprop.blocks.state.BlockCache` has the same attribute and serves as one."""

    __slots__ = ("amg",)

    def __init__(self):
        self.amg: _Hierarchy | None = None


def hierarchy_for(cache, A, symmetric: bool | None = None, key=None, matrix=None) -> tuple[_Hierarchy, bool]:
    """The hierarchy in ``cache.amg`` when it was built for ``A``'s shape and ``key`` (default: the
    pattern size ``A.nnz``) and symmetry (``None``: whichever it was judged), else a new one built from
    ``matrix()`` (default ``A``; its symmetry judged there when ``symmetric`` is ``None``) and kept
    there; and whether it is new."""
    key = A.nnz if key is None else key
    h = cache.amg
    if h is not None and h.shape == A.shape and h.key == key and symmetric in (None, h.symmetric):
        return h, False
    M = A if matrix is None else sp.csr_matrix(matrix(), dtype=np.float64)
    h = cache.amg = _Hierarchy(M, _symmetric(M) if symmetric is None else symmetric, key)
    return h, True


def _full_rtol(residual) -> float:
    """Where a full-accuracy Krylov solve stops: ``LIN_RTOL`` (relative to ``‖b‖``), or ``LIN_ACCEPT``
    when the caller checks the answer per equation (``residual``), the level that check demands
    (``krylov`` restarts tighter from there when it is not met)."""
    return LIN_RTOL if residual is None else LIN_ACCEPT


class _Counter:
    """A Krylov callback counting iterations."""

    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def __call__(self, *_):
        self.n += 1


class AMGInverse:
    """Solves with a sparse matrix ``A`` (or ``Aᵀ``) by AMG-preconditioned cg/gmres, like an LU's ``solve``.

    ``cache`` (anything with an ``amg`` attribute: a block's ``BlockCache``, default a new
    :class:`HierarchySlot`) keeps the hierarchy between matrices of the same pattern;
    ``loose=True`` solves to ``rtol`` (default :data:`FORWARD_RTOL`; Newton sets its forcing term
    there) without raising (Newton steps);
    otherwise the relative residual must reach 1e-10 (``krylov``, or the caller's ``residual``) or
    :class:`ConvergenceError`.

    Matrix-free: ``A`` a ``LinearOperator`` (with ``rmatvec``) and ``matrix()`` the matrix it applies,
    formed only when a hierarchy is built (none kept for ``key``, or the kept one got worse); the
    symmetry (cg or gmres) is judged on that matrix and kept with the hierarchy. ``symmetric``: the
    caller's judgement of a matrix ``A`` (default: judged here).
    """

    __slots__ = ("A", "symmetric", "cache", "names", "loose", "rtol", "iterations", "key", "_matrix")

    def __init__(self, A, cache=None, *, names=(), loose: bool = False, matrix=None, key=None,
                 symmetric: bool | None = None):
        require()
        self.cache = HierarchySlot() if cache is None else cache
        self.names, self.loose, self.rtol = list(names), loose, FORWARD_RTOL
        self.iterations: list[int] = []
        if matrix is None:
            self.A = sp.csr_matrix(A, dtype=np.float64)
            self.key, self._matrix = self.A.nnz, None
            self.symmetric = _symmetric(self.A) if symmetric is None else symmetric
        else:
            self.A, self.key, self._matrix = A, key, matrix
            self.symmetric = self._hierarchy()[0].symmetric

    def _hierarchy(self) -> tuple[_Hierarchy, bool]:
        if self._matrix is None:
            return hierarchy_for(self.cache, self.A, self.symmetric)
        h, fresh = hierarchy_for(self.cache, self.A, None, self.key, self._matrix)
        self.symmetric = h.symmetric
        return h, fresh

    def _matrix_now(self):
        return self.A if self._matrix is None else self._matrix()

    def precondition(self, r: np.ndarray, trans: bool = False) -> np.ndarray:
        """One V-cycle: ``≈ A⁻¹ r`` (``≈ A⁻ᵀ r``)."""
        return self.operator(trans).matvec(r)

    def operator(self, trans: bool) -> spla.LinearOperator:
        """The V-cycle as a ``LinearOperator`` (a Krylov preconditioner)."""
        return self._hierarchy()[0].preconditioner(self._matrix_now, trans)

    def solve(self, b: np.ndarray, trans: str = "N", x0: np.ndarray | None = None, residual=None) -> np.ndarray:
        """``A⁻¹ b`` (``A⁻ᵀ b``); ``x0`` starts the Krylov iteration (a warm start); ``residual(x)``, the
        relative residual a full-accuracy answer must bring below 1e-10 (default: ``krylov``'s)."""
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 2:
            return np.stack([self.solve(b[:, k], trans) for k in range(b.shape[1])], axis=1)
        tr = trans != "N"
        while True:
            h, fresh = self._hierarchy()
            tick = _Counter()
            x = self._krylov(b, tr, h.preconditioner(self._matrix_now, tr), tick, x0, residual)
            self.iterations.append(tick.n)
            if x is not None:
                # V-cycles per digit of residual reduction: comparable across forcing terms
                digits = max(1.0, -np.log10(self.rtol if self.loose else _full_rtol(residual)))
                if x0 is None:   # a warm start's count says nothing about the hierarchy
                    first = h.first.setdefault((tr, self.loose), max(tick.n, 1) / digits)
                else:
                    first = h.first.get((tr, self.loose), tick.n / digits)
                if tick.n > REBUILD * first * digits + 2:
                    self.cache.amg = None       # the reused hierarchy got worse: a fresh one next time
                return x
            if fresh:
                raise ConvergenceError(
                    f"AMG-preconditioned Krylov did not converge on a system of {self.A.shape[0]} unknowns "
                    f"(block [{', '.join(self.names[:8])}]); use linear_solver='direct'", nodes=self.names,
                    iterations=tick.n)
            self.cache.amg = None               # a hierarchy from another matrix failed: build one for this
            if self._matrix is None:            # ... and judge this matrix's symmetry (a kept one may be stale)
                self.symmetric = _symmetric(self.A)

    def _krylov(self, b, trans: bool, M, tick, x0=None, residual=None):
        A = self.A.T if trans else self.A
        if self.loose:
            kind = "cg" if self.symmetric else "gmres"
            bn = float(np.linalg.norm(b))
            if bn == 0.0:
                return np.zeros_like(b)
            restart, rtol = min(60, MAXITER), self.rtol
            if kind == "cg":
                x, _ = spla.cg(A, b, x0=x0, rtol=rtol, atol=0.0, maxiter=MAXITER, M=M, callback=tick)
            else:
                x, _ = spla.gmres(A, b, x0=x0, rtol=rtol, atol=0.0, restart=restart,
                                  maxiter=max(1, MAXITER // restart), M=M, callback=tick, callback_type="pr_norm")
            # a loose step is accepted at twice its forcing term (Newton's line search judges the rest)
            ok = np.all(np.isfinite(x)) and float(np.linalg.norm(A @ x - b)) <= min(0.9, max(1e-3, 2 * rtol)) * bn
            return x if ok else None
        kinds = ("cg", "gmres") if self.symmetric else ("gmres",)
        for kind in kinds:      # cg needs a definite matrix: gmres when it does not get there
            try:
                return krylov(A, b, kind, M=M, names=self.names, what="AMG-preconditioned solve",
                              maxiter=MAXITER, callback=tick, x0=x0, residual=residual,
                              rtol=_full_rtol(residual))
            except ConvergenceError:
                if kind == kinds[-1]:
                    return None
        return None
