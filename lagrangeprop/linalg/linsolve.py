"""Linear solves with a block Jacobian ``A_SS``: sparse LU, Krylov, and singularity reports.

- :func:`factor`: ``splu`` (or LAPACK) of the row- and column-equilibrated ``Â = R A_SS C``
  (:func:`equilibrate`: powers of two, so no rounding is added); the
  singularity test (SPEC §1: reciprocal condition estimate < 1e-14) is judged on ``Â``, so a
  well-posed block in mismatched units (a diode's ``1e12`` next to ``1e-15``) is never reported
  singular. A failed or numerically singular factorization raises :class:`SingularSystemError`
  with a diagnosis (:func:`diagnose`, also on ``Â``): exactly zero rows and columns, and for
  small blocks the equations that are linear combinations of others (a null vector of ``Âᵀ``
  from the SVD, reported as coefficients of the original equations), as OpenMDAO's
  DirectSolver reports them.
- :func:`krylov`: ``gmres``/``bicgstab`` on a ``LinearOperator`` with a preconditioner;
  the true residual is checked afterwards and a solve that misses the tolerance raises
  :class:`ConvergenceError` instead of returning a wrong multiplier. With the matrix at hand the
  check is per equation (:func:`backward_error`, ``|Ax - b|_i / (|A||x| + |b|)_i``, SPEC §1
  "Scale"): an equation in small units is not drowned by one in large units.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> from lagrangeprop.linalg.linsolve import krylov
>>> A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
>>> x = krylov(A, np.array([1.0, 2.0]), "gmres", names=["a", "b"])
>>> bool(np.allclose(A @ x, [1.0, 2.0], atol=1e-12))
True
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import ConvergenceError, SingularSystemError

__all__ = ["RCOND_MIN", "LIN_RTOL", "DENSE_MAX", "DenseLU", "SparseLU", "equilibrate", "factor",
           "fill_ratio", "ilu", "krylov", "stationary",
           "diagnose", "entry_names"]

RCOND_MIN = 1e-14      # SPEC §1: reciprocal condition estimate below this is singular
LIN_RTOL = 1e-12       # Krylov stopping tolerance, relative to ||b||
LIN_ACCEPT = 1e-10     # the true residual a Krylov answer must reach (else ConvergenceError)
SVD_MAX = 400          # blocks up to this size get the dense SVD diagnosis
DENSE_MAX = 128        # blocks up to this size assemble A_SS dense and factor it with LAPACK

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


def _scaled(A, r, c):
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


def entry_names(names: list[str], sizes: list[int], shapes: list[tuple]) -> list[str]:
    """``y1``, ``u[3]``, ``u[1, 2]``: a name per scalar entry of a stacked block vector."""
    out = []
    for name, size, shape in zip(names, sizes, shapes):
        if shape == ():
            out.append(name)
        else:
            out.extend(f"{name}[{', '.join(map(str, np.unravel_index(i, shape)))}]" for i in range(size))
    return out


def _short(items: list[str], k: int = 6) -> str:
    return ", ".join(items[:k]) + (f", ... ({len(items)} in all)" if len(items) > k else "")


def diagnose(A: sp.spmatrix, labels: list[str], r: np.ndarray | None = None,
             c: np.ndarray | None = None, reduced: bool = False) -> str:
    """Why ``A`` (rows = equations, columns = variables, both labelled) is singular.

    ``A`` is the equilibrated ``R A_SS C`` (:func:`equilibrate`; ``r``, ``c`` its scale factors, ``None``
    = 1): every nonzero row and column has its largest entry in ``[1/2, 2)``, so a zero row or column
    is one of ``A_SS`` itself, not an equation in small units. The dependent equations are reported
    as a combination of the original ones (coefficients ``u_i r_i``), the undetermined variables
    from the null vector ``C v``. ``reduced``: ``A`` is the Schur complement ``S`` on the block's
    states (the intermediates eliminated), ``labels`` the states' entries.
    """
    of = "S, the reduced Jacobian on the states" if reduced else "A_SS"
    A = sp.csr_matrix(A)
    if not np.isfinite(A.data).all():   # the SVD below would raise LinAlgError
        return f"{of} has NaN or inf entries at this point (a derivative is infinite there)"
    tiny = 1e-300
    absA = abs(A)
    zero_rows = np.flatnonzero(np.asarray(absA.max(axis=1).todense()).ravel() <= tiny)
    zero_cols = np.flatnonzero(np.asarray(absA.max(axis=0).todense()).ravel() <= tiny)
    msgs = []
    if zero_cols.size:
        msgs.append(f"variable(s) {_short([labels[j] for j in zero_cols])} enter none of the "
                    f"block's equations (zero column of {of})")
    if zero_rows.size:
        msgs.append(f"the equation(s) of {_short([labels[i] for i in zero_rows])} depend on no "
                    f"block variable (zero row of {of})")
    if not msgs and A.shape[0] <= SVD_MAX:
        U, s, Vt = np.linalg.svd(A.toarray())
        if s.size and s[-1] <= max(s[0], 1e-300) * 1e-10:
            # which equations and variables take part: judged on the equilibrated (unit-free) vectors;
            # the combination is reported with the coefficients of the original equations, u_i r_i
            uh, vh = U[:, -1], Vt[-1]
            u = uh if r is None else uh * r
            rows = np.flatnonzero(np.abs(uh) > 1e-8 * np.abs(uh).max())
            cols = np.flatnonzero(np.abs(vh) > 1e-8 * np.abs(vh).max())
            combo = " + ".join(f"{u[i] / u[rows[0]]:.3g}·c[{labels[i]}]" for i in rows[:6])
            elim = ", with the intermediates eliminated," if reduced else ""
            msgs.append(f"the equations of {_short([labels[i] for i in rows])}{elim} are linearly "
                        f"dependent ({combo} = 0 to first order)")
            msgs.append(f"the variables {_short([labels[j] for j in cols])} are not determined "
                        f"(null vector of {'S' if reduced else 'A_SS'})")
    return "; ".join(msgs)


def _singular(block, A, where: str, reason: str, rcond: float, labels, r=None, c=None,
              reduced: bool = False) -> SingularSystemError:
    from ..blocks.blockops import describe
    why = diagnose(A, labels, r, c, reduced)
    return SingularSystemError(
        f"the Jacobian A_SS of block [{describe(block)}] is {reason}"
        + (" (judged on its Schur complement on the states)" if reduced else "") + f" {where}"
        + (f": {why}" if why else "") + ". The implicit function theorem needs it nonsingular: "
        "check that every block variable enters its equations and that no equation is a "
        "combination of the others (or start from a different guess=)",
        nodes=block.names, rcond=rcond)


def labels_of(block) -> list[str]:
    if "labels" not in block.cache:
        block.cache["labels"] = entry_names(block.names, block.sizes, block.shapes)
    return block.cache["labels"]


def factor(block, A, where: str, labels: list[str] | None = None):
    """LU of ``A_SS`` (sparse ``splu``, or LAPACK for a dense ndarray); when it looks singular,
    the LU of its equilibration ``Â = R A_SS C`` (:func:`equilibrate`) decides: singular or
    numerically singular ``Â`` -> SingularSystemError. The condition estimate is the same for
    both: ``min|U_ii| / max|U_ii|`` of ``Â``'s factors (SPEC §1: below ``RCOND_MIN`` is singular).
    ``labels``: the entries of the states when ``A`` is the Schur complement on them
    (:mod:`lagrangeprop.blocks.eliminate`), whose diagnosis then speaks of the reduced system."""
    if A.shape[0] == 0:
        return None
    reduced = labels is not None
    labels = labels_of(block) if labels is None else labels
    # A_SS as it is first (most blocks are well scaled: no extra work, the old factors exactly); a
    # factorization that looks singular is judged again after equilibration, which decides
    lu, rcond = _lu(A, None, None)
    if rcond >= RCOND_MIN:
        return lu
    r, c = equilibrate(A)
    Ah = _scaled(A, r, c)
    if r is not None or c is not None:
        lu, rcond = _lu(Ah, r, c)
    if lu is None:
        raise _singular(block, Ah, where, "singular", 0.0, labels, r, c, reduced)
    if not rcond >= RCOND_MIN:
        raise _singular(block, Ah, where, f"numerically singular (reciprocal condition estimate "
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


def ilu(A: sp.csc_matrix):
    """An incomplete-LU preconditioner ``M ≈ A⁻¹`` (or ``None`` when spilu fails), of the equilibrated
    ``R A C`` (:func:`equilibrate`) when ``A`` is badly scaled: spilu's drop tolerance is absolute,
    so on the raw matrix it would drop every entry of an equation in small units."""
    r, c = equilibrate(A)
    try:
        fac = spla.spilu(sp.csc_matrix(_scaled(A, r, c)), drop_tol=1e-6, fill_factor=20)
    except RuntimeError:
        return None
    return fac if r is None and c is None else SparseLU(fac, r, c)


def backward_error(A, b: np.ndarray):
    """``x ↦ max_i |A x - b|_i / (|A| |x| + |b|)_i``: the componentwise (Oettli–Prager) backward
    error of ``x`` for ``A x = b``, every equation measured against the magnitudes of its own terms
    (a ``1e-300`` floor avoids ``0/0`` only). ``A``: an ndarray or a scipy.sparse matrix."""
    absA = np.abs(A) if isinstance(A, np.ndarray) else abs(sp.csr_matrix(A))
    babs = np.abs(np.asarray(b, dtype=np.float64))

    def residual(x: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            r = np.abs(A @ x - b) / np.maximum(absA @ np.abs(x) + babs, 1e-300)
        return float(r.max()) if r.size and not np.isnan(r).any() else (0.0 if not r.size else float("nan"))
    return residual


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
        f"{kind} did not converge on the {what} of block [{_short(list(names), 8)}]: relative "
        f"residual {history[-1]:.2e} > {LIN_ACCEPT:g} after {len(history)} attempt(s) of "
        f"{maxiter} iterations; use linear_solver='direct' (or 'gmres' with a better-conditioned "
        "formulation)", nodes=names, iterations=maxiter * len(history), history=history)


GATE = 1e-12           # stationary iteration: estimated error / max|x| at which the residual is checked


def _step(x_new: np.ndarray, x: np.ndarray, watch) -> float:
    """``max|x_new - x|`` over the watched slices."""
    return max(float(np.abs(x_new[a:b] - x[a:b]).max()) if b > a else 0.0 for a, b in watch)


def _size(x: np.ndarray, watch) -> float:
    """``max|x|`` over the watched slices."""
    return max(float(np.abs(x[a:b]).max()) if b > a else 0.0 for a, b in watch)


def stationary(F, x0, residual, *, watch=None, names=(), what: str = "linear solve",
               maxiter: int = 1000) -> np.ndarray:
    """The stationary iteration ``x ← F(x)`` (``F`` affine: a Gauss–Seidel sweep of a contractive
    block) from ``x0`` (``None``: zero, and ``F(None)`` is ``F(0)``).

    ``watch`` (slices ``(start, stop)``, default everything) are the entries the next sweep reads:
    when they stop moving, so does the rest. With ``q`` the observed ratio of successive steps on
    them, the error estimate ``step·q/(1-q)`` (``step`` itself while ``q`` is unknown) is compared
    with ``1e-12·max|x|``; then ``residual(x) <= 1e-10`` decides. A failed check continues with a
    hundredfold tighter estimate, three times at most; then ConvergenceError, as for a step that
    is not finite or ``maxiter`` sweeps.
    """
    x = x0
    prev, gate, history = np.inf, GATE, []
    for it in range(maxiter):
        x_new = F(x)
        if it == 0:
            if x_new.size == 0:
                return x_new
            watch = ((0, x_new.size),) if watch is None else tuple(watch)
            xmax = 0.0 if x is None else _size(x, watch)   # an upper bound of max|x| on the watched entries
        step = _size(x_new, watch) if x is None else _step(x_new, x, watch)
        x = x_new
        history.append(step)
        if not np.isfinite(step):
            break
        xmax += step                     # max|x_new| <= max|x| + step: exact only near the end
        if step == 0.0:
            est = 0.0
        elif prev == np.inf:
            est = step
        else:
            q = min(max(step / prev, 0.1), 0.9) if prev > 0 else 0.9
            est = step * q / (1.0 - q)
        prev = step
        if est <= gate * xmax and est <= gate * (xmax := _size(x, watch)):
            res = residual(x)
            if res <= LIN_ACCEPT:
                return x
            history.append(res)
            gate *= 1e-2
            if gate < 1e-16:
                break
    raise ConvergenceError(
        f"the fixed-point sweep did not converge on the {what} of block [{_short(list(names), 8)}] "
        f"(last step {history[-1]:.2e} after {len(history)} sweeps); use linear_solver='gmres' "
        "or 'direct'", nodes=names, iterations=len(history), history=history)
