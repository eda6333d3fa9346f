"""Krylov solvers for a block Jacobian: ``gmres``/``bicgstab``/``cg``, ILU, and the answer's check.

:func:`krylov` runs scipy's solver on a ``LinearOperator`` with a preconditioner and then checks
the true residual: a solve that misses the tolerance raises :class:`ConvergenceError` instead of
returning a wrong multiplier. With the matrix at hand the check is per equation
(:func:`backward_error`, ``|Ax - b|_i / (|A||x| + |b|)_i``, SPEC §1 "Scale"): an equation in small
units is not drowned by one in large units. :func:`ilu` is the incomplete-LU preconditioner of the
equilibrated matrix.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
>>> x = krylov(A, np.array([1.0, 2.0]), "gmres", names=["a", "b"])
>>> bool(np.allclose(A @ x, [1.0, 2.0], atol=1e-12))
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import ConvergenceError
from .diagnose import short_list
from .direct import SparseLU, equilibrate, scaled

__all__ = ["LIN_RTOL", "LIN_ACCEPT", "ilu", "backward_error", "krylov"]

LIN_RTOL = 1e-12       # Krylov stopping tolerance, relative to ||b||
LIN_ACCEPT = 1e-10     # the true residual a Krylov answer must reach (else ConvergenceError)


def ilu(A: sp.csc_matrix):
    """An incomplete-LU preconditioner ``M ≈ A⁻¹`` (or ``None`` when spilu fails), of the equilibrated
    ``R A C`` (:func:`equilibrate`) when ``A`` is badly scaled: spilu's drop tolerance is absolute,
    so on the raw matrix it would drop every entry of an equation in small units."""
    r, c = equilibrate(A)
    try:
        fac = spla.spilu(sp.csc_matrix(scaled(A, r, c)), drop_tol=1e-6, fill_factor=20)
    except RuntimeError:
        return None
    return fac if r is None and c is None else SparseLU(fac, r, c)


def backward_error(A, b: np.ndarray):
    """``x ↦ max_i |A x - b|_i / (|A| |x| + |b|)_i``: the componentwise (Oettli–Prager) backward
    error of ``x`` for ``A x = b``, every equation measured against the magnitudes of its own terms
    (a ``1e-300`` floor avoids ``0/0`` only). ``A``: an ndarray or a scipy.sparse matrix."""
    absA = np.abs(A) if isinstance(A, np.ndarray) else _abs(A)
    babs = np.abs(np.asarray(b, dtype=np.float64))

    def residual(x: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            r = np.abs(A @ x - b) / np.maximum(absA @ np.abs(x) + babs, 1e-300)
        return float(r.max()) if r.size and not np.isnan(r).any() else (0.0 if not r.size else float("nan"))
    return residual


def _abs(A):
    """``|A|`` of a sparse matrix; a CSR or CSC one shares its index arrays (only the data are new)."""
    if isinstance(A, (sp.csr_matrix, sp.csc_matrix)):
        return type(A)((np.abs(A.data), A.indices, A.indptr), shape=A.shape, copy=False)
    return abs(sp.csr_matrix(A))


def krylov(A, b: np.ndarray, kind: str, *, M=None, names=(), x0=None, rtol: float = LIN_RTOL,
           maxiter: int | None = None, what: str = "linear solve", residual=None, callback=None) -> np.ndarray:
    """Solve ``A x = b`` with ``gmres``, ``bicgstab`` or (symmetric definite ``A``) ``cg``; verify the answer.

    ``A`` and ``M`` are anything ``scipy.sparse.linalg.aslinearoperator`` accepts.
    ``residual(x)`` gives the relative residual to verify (default: :func:`backward_error` per
    equation when ``A`` is a matrix, ``||Ax - b|| / ||b||`` for an operator; pass the
    unpreconditioned one when ``A`` is a preconditioned operator). It must reach 1e-10, else
    ConvergenceError (naming ``names``): never a silently wrong answer.
    ``callback`` is called once per (inner) iteration.
    """
    matrix = A if isinstance(A, np.ndarray) or sp.issparse(A) else None
    A = spla.aslinearoperator(A)
    n = A.shape[0]
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return np.zeros(n)
    if residual is None and matrix is not None:
        residual = backward_error(matrix, b)
    elif residual is None:
        def residual(x):
            return float(np.linalg.norm(A.matvec(x) - b)) / bnorm
    maxiter = maxiter or max(100, min(n, 2000))
    history: list = []
    x = None if x0 is None else np.array(x0, dtype=np.float64)
    b0, M0, A0 = b, (None if M is None else spla.aslinearoperator(M)), A
    weigh = matrix is not None and kind != "cg"
    if weigh:
        absA = np.abs(matrix) if isinstance(matrix, np.ndarray) else abs(sp.csr_matrix(matrix))
        babs = np.abs(b0)
        if x is None and M0 is not None:
            x = M0.matvec(b0)          # the preconditioner's estimate: the first attempt's weights
    for attempt in range(3):   # a restart from the last iterate recovers lost precision
        if weigh:
            # iterate on W A x = W b with W = 1/(|A||x| + |b|) at the current estimate (powers of two): the
            # Krylov residual is then the componentwise backward error, every equation measured against
            # its own terms (an adjoint equation λ_exp = 1e-15·λ_mul next to ones of size 25); cg keeps A
            den = babs if x is None else absA @ np.abs(x) + babs
            top = float(den.max()) if den.size else 0.0
            ok = den > 1e-200 * top
            w = np.ones(n)
            w[ok] = np.exp2(-np.ceil(np.log2(den[ok])))
            A = spla.LinearOperator((n, n), matvec=lambda v, w=w: w * A0.matvec(v), dtype=float)
            if M0 is not None:
                M = spla.LinearOperator((n, n), matvec=lambda v, w=w: M0.matvec(v / w), dtype=float)
            b = w * b0
        if kind == "gmres":
            restart = min(n, 60, maxiter)
            x, info = spla.gmres(A, b, x0=x, rtol=rtol, atol=0.0, restart=restart,
                                 maxiter=max(1, maxiter // restart + 1), M=M, callback=callback,
                                 callback_type="pr_norm")
        elif kind == "bicgstab":
            x, info = spla.bicgstab(A, b, x0=x, rtol=rtol, atol=0.0, maxiter=maxiter, M=M, callback=callback)
        elif kind == "cg":
            x, info = spla.cg(A, b, x0=x, rtol=rtol, atol=0.0, maxiter=maxiter, M=M, callback=callback)
        else:  # pragma: no cover - options are validated upstream
            raise ValueError(kind)
        res = residual(x) if np.all(np.isfinite(x)) else float("nan")
        history.append(res)
        if np.isfinite(res) and res <= LIN_ACCEPT:
            return x
        if not np.isfinite(res) or (info > 0 and attempt > 0 and res > 0.5 * history[-2]):
            break
        rtol *= 1e-2
    raise ConvergenceError(
        f"{kind} did not converge on the {what} of block [{short_list(list(names), 8)}]: relative "
        f"residual {history[-1]:.2e} > {LIN_ACCEPT:g} after {len(history)} attempt(s) of "
        f"{maxiter} iterations; use linear_solver='direct' (or 'gmres' with a better-conditioned "
        "formulation)", nodes=names, iterations=maxiter * len(history), history=history)
