"""Direct solvers for a block Jacobian ``A_SS``: dense LAPACK LU, sparse ``splu``, equilibration.

:func:`factor` factors ``A_SS`` as it is; when the factors look singular (SPEC §1: reciprocal
condition estimate < 1e-14) it factors the row- and column-equilibrated ``Â = R A_SS C``
(:func:`equilibrate`: powers of two, so no rounding is added) and lets ``Â`` decide, so a
well-posed block in mismatched units (a diode's ``1e12`` next to ``1e-15``) is never reported
singular. A failed or numerically singular factorization raises :class:`SingularSystemError`
with the report of :mod:`lagrangeprop.linalg.diagnose`. :class:`DenseLU` and :class:`SparseLU`
offer splu's ``solve(b, trans)`` for ``A_SS`` itself.

Examples
--------
>>> import numpy as np
>>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
>>> lu = factor(A, "here", names=["a", "b"], labels=["a", "b"])
>>> bool(np.allclose(A @ lu.solve(np.array([1.0, 2.0])), [1.0, 2.0]))
True
>>> factor(np.zeros((1, 1)), "here", names=["a"], labels=["a"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lagrangeprop.errors.SingularSystemError: the Jacobian A_SS of block [a] is singular here: variable(s) a ...
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .diagnose import singular_error

__all__ = ["RCOND_MIN", "DENSE_MAX_UNKNOWNS", "DenseLU", "SparseLU", "equilibrate", "scaled", "factor",
           "fill_ratio"]

RCOND_MIN = 1e-14      # SPEC §1: reciprocal condition estimate below this is singular
DENSE_MAX_UNKNOWNS = 128   # blocks up to this many unknowns assemble A_SS dense and factor it with LAPACK

_getrf, _getrs = scipy.linalg.get_lapack_funcs(("getrf", "getrs"), (np.zeros(1),))


def _rows(v: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """``diag(v) b`` for a vector or a matrix of right-hand sides (``v=None``: ``b``)."""
    if v is None:
        return b
    return b * (v if b.ndim == 1 else v[:, None])


def equilibrate(A, rows_only: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Row and column scale factors ``r``, ``c`` (powers of two) such that every nonzero column of
    ``R A C`` peaks in ``[1, 2)`` and every nonzero row in ``[1/2, 2)`` (rows first, then columns; a
    zero row or column keeps the factor 1); ``None`` for a factor that is 1 everywhere
    (``rows_only``: ``c`` is not computed)."""
    absA = np.abs(A) if isinstance(A, np.ndarray) else abs(sp.csc_matrix(A))

    def pow2(m):
        m = np.asarray(m, dtype=np.float64).ravel()
        if m.size and 1.0 <= m.min() and m.max() < 2.0:     # already in range (most blocks): no scaling
            return None
        e = np.frexp(m)[1] - 1                 # m = f·2^(e+1), f ∈ [1/2, 1): 2^-e brings m into [1, 2)
        e[~((m > 0) & np.isfinite(m))] = 0     # zero (or non-finite) rows and columns keep 1
        return None if not e.any() else np.ldexp(1.0, -e)
    dense = isinstance(absA, np.ndarray)
    r = pow2(absA.max(axis=1) if dense else absA.max(axis=1).toarray())
    if rows_only:
        return r, None
    if r is not None:
        absA = absA * r[:, None] if dense else sp.diags(r) @ absA
    c = pow2(absA.max(axis=0) if dense else absA.max(axis=0).toarray())
    return r, c


def scaled(A, r, c):
    """``R A C``: a new matrix of the same kind (dense, or CSC)."""
    if r is None and c is None:
        return A
    if isinstance(A, np.ndarray):
        out = A if r is None else A * r[:, None]
        return out if c is None else out * c[None, :]
    out = sp.csc_matrix(A)
    if r is not None:
        out = sp.diags(r) @ out
    if c is not None:
        out = out @ sp.diags(c)
    return sp.csc_matrix(out)


class DenseLU:
    """LAPACK ``getrf`` factors of a small dense equilibrated ``Â = R A_SS C`` with splu's
    ``solve(b, trans)`` for ``A_SS`` itself: ``A⁻¹ b = C Â⁻¹ R b``, ``A⁻ᵀ b = R Â⁻ᵀ C b``."""

    __slots__ = ("lu", "piv", "r", "c")

    def __init__(self, lu: np.ndarray, piv: np.ndarray, r: np.ndarray | None = None, c: np.ndarray | None = None):
        self.lu, self.piv, self.r, self.c = lu, piv, r, c

    def solve(self, b: np.ndarray, trans: str = "N") -> np.ndarray:
        tr = trans != "N"
        b = np.asarray(b, dtype=np.float64)
        x, _ = _getrs(self.lu, self.piv, _rows(self.c if tr else self.r, b), trans=1 if tr else 0)
        return _rows(self.r if tr else self.c, x)


class SparseLU:
    """``splu`` of the equilibrated ``Â = R A_SS C``, solving with ``A_SS`` (like :class:`DenseLU`);
    ``L``, ``U``: the factors of ``Â``."""

    __slots__ = ("lu", "r", "c")

    def __init__(self, lu, r: np.ndarray | None, c: np.ndarray | None):
        self.lu, self.r, self.c = lu, r, c

    @property
    def L(self):
        return self.lu.L

    @property
    def U(self):
        return self.lu.U

    def solve(self, b: np.ndarray, trans: str = "N") -> np.ndarray:
        tr = trans != "N"
        b = np.asarray(b, dtype=np.float64)
        x = self.lu.solve(_rows(self.c if tr else self.r, b), trans="T" if tr else "N")
        return _rows(self.r if tr else self.c, x)


def factor(A, where: str, *, names: list[str], labels: list[str], reduced: bool = False):
    """LU of ``A_SS`` (sparse ``splu``, or LAPACK for a dense ndarray); when it looks singular,
    the LU of its equilibration ``Â = R A_SS C`` (:func:`equilibrate`) decides: singular or
    numerically singular ``Â`` -> SingularSystemError. The condition estimate is the same for
    both: ``min|U_ii| / max|U_ii|`` of ``Â``'s factors (SPEC §1: below ``RCOND_MIN`` is singular).

    ``names``: the block's unknowns (the message names them); ``labels``: one per scalar entry
    (the diagnosis names them); ``reduced``: ``A`` is the Schur complement on the states
    (:mod:`lagrangeprop.blocks.eliminate`), whose diagnosis then speaks of the reduced system.
    """
    if A.shape[0] == 0:
        return None
    # A_SS as it is first (most blocks are well scaled: no extra work, the old factors exactly); a
    # factorization that looks singular is judged again after equilibration, which decides
    lu, rcond = _lu(A, None, None)
    if rcond >= RCOND_MIN:
        return lu
    r, c = equilibrate(A)
    Ah = scaled(A, r, c)
    if r is not None or c is not None:
        lu, rcond = _lu(Ah, r, c)
    if lu is None:
        raise singular_error(names, Ah, where, "singular", 0.0, labels, r, c, reduced)
    if not rcond >= RCOND_MIN:
        raise singular_error(names, Ah, where, f"numerically singular (reciprocal condition estimate "
                             f"{rcond:.2e} < {RCOND_MIN:g}, after row and column equilibration)", rcond,
                             labels, r, c, reduced)
    return lu


def _lu(Ah, r, c) -> tuple:
    """``(solver, rcond)`` of ``Â`` (``solver=None``: an exactly zero pivot or a failed splu; rcond 0)."""
    if isinstance(Ah, np.ndarray):
        lu, piv, info = _getrf(Ah)
        if info > 0:      # an exactly zero pivot (splu raises RuntimeError there)
            return None, 0.0
        d = np.abs(np.diagonal(lu))
        out = DenseLU(lu, piv, r, c)
    else:
        try:
            inner = spla.splu(sp.csc_matrix(Ah))
        except RuntimeError:
            return None, 0.0
        d = np.abs(inner.U.diagonal())
        out = inner if r is None and c is None else SparseLU(inner, r, c)
    rcond = float(d.min() / d.max()) if d.size and d.max() > 0 else 0.0
    return out, (rcond if rcond == rcond else 0.0)


def fill_ratio(lu, A: sp.spmatrix) -> float:
    """``nnz(L + U) / nnz(A)``: how much the factorization filled in (1 for dense LU)."""
    if isinstance(lu, DenseLU):
        return 1.0
    return (lu.L.nnz + lu.U.nnz) / max(A.nnz, 1)
