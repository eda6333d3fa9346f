"""PETSc KSP solves (conjugate gradients or gmres, algebraic multigrid) through petsc4py (optional).

The same job as :mod:`~lagrangeprop.linalg.amg` on PETSc's engine: :class:`PETScInverse` offers
the LU interface ``solve(b, trans)`` for a Newton step ``A δ = -c``, the adjoint ``Aᵀ λ = b`` and
the tangent ``A ż = b`` of a block (with elimination, on the Schur complement of the states).
KSP is ``cg`` for a symmetric ``A`` (``gmres`` with right preconditioning otherwise, and when cg
meets an indefinite preconditioner); the preconditioner is hypre's BoomerAMG when the PETSc
build has hypre, else PETSc's own GAMG. Both stop on the *unpreconditioned* residual, and the
answer is then verified per equation (:func:`~lagrangeprop.linalg.krylov.backward_error`, the
same 1e-10 as every Krylov answer), else :class:`ConvergenceError`.

MPI. Under ``mpiexec -n P`` every rank runs the whole program (the residual and the Jacobian are
evaluated redundantly on every rank in this first version); the *linear solve* is distributed:
rank ``r`` owns a contiguous range of rows of ``A`` (PETSc's default split), ``b`` is scattered
by those rows, and the solution is gathered back to every rank (``VecScatter`` to all).

The transposed solve uses a second KSP on the transposed matrix (non-symmetric ``A``), whose
preconditioner is built on first use. Preconditioners are kept per owner (a block's cache) and
reused for later matrices of the same shape and pattern (``PCSetReusePreconditioner``), like
pyamg's hierarchy, and rebuilt when a solve needs more than twice its first iteration count.
KSP options can be changed from PETSc's options database with the prefix ``lp_``, e.g.
``PETSC_OPTIONS="-lp_ksp_type bcgs -lp_pc_type gamg"``.

Install: ``apt-get install python3-petsc4py`` (Debian's build, used from a venv made by Debian's
python3 with ``--system-site-packages``); PyPI has only source builds (``pip install petsc petsc4py``
compiles PETSc).

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> from lagrangeprop.linalg import petsc
>>> T = sp.diags([-np.ones(29), 2 * np.ones(30), -np.ones(29)], [-1, 0, 1])
>>> A = (sp.kron(sp.identity(30), T) + sp.kron(T, sp.identity(30))).tocsr()   # 2-D Laplacian
>>> b = np.ones(900)
>>> x = petsc.PETScInverse(A).solve(b) if petsc.available() else sp.linalg.spsolve(A.tocsc(), b)
>>> bool(np.linalg.norm(A @ x - b) <= 1e-10 * np.linalg.norm(b))
True
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp

from ..errors import ConvergenceError, InputError
from ..options import PETSC_MISSING, petsc_installed
from .diagnose import short_list
from .krylov import LIN_ACCEPT, LIN_RTOL, backward_error

__all__ = ["FORWARD_RTOL", "MAXITER", "available", "require", "PETScInverse", "ownership"]

FORWARD_RTOL = 1e-4   # Newton steps (loose): the next step corrects the rest, as in amg.py
MAXITER = 300         # Krylov iterations per solve
REBUILD = 2.0         # rebuild a reused preconditioner when a solve needs this many times its first count

_PETSC = None
_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # owner -> _Solvers (reused PCs)


def available() -> bool:
    """Whether petsc4py is installed (found, not imported)."""
    return petsc_installed()


def _petsc():
    """petsc4py's ``PETSc`` module, imported on first use; InputError naming the install when missing."""
    global _PETSC
    if _PETSC is None:
        if not available():
            raise InputError(PETSC_MISSING)
        try:
            from petsc4py import PETSc
        except ImportError as exc:      # found but unusable: usually numpy's ABI (Debian's build wants numpy<2)
            raise InputError(f"{PETSC_MISSING}; petsc4py is installed but does not import ({exc}): "
                             "Debian's build needs numpy<2 and scipy<1.14 in a venv of /usr/bin/python3") from None
        _PETSC = PETSc
    return _PETSC


def require() -> None:
    """Raise :class:`InputError` with the install command when petsc4py is missing or unusable."""
    _petsc()


def ownership(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an ``n``-row matrix owned by ``rank`` of ``size`` (PETSc's default split:
    ``n // size`` rows each, one more on the first ``n % size`` ranks).

    >>> [ownership(7, 2, r) for r in range(2)]
    [(0, 4), (4, 7)]
    """
    q, rem = divmod(n, size)
    lo = rank * q + min(rank, rem)
    return lo, lo + q + (rank < rem)


def _symmetric(A: sp.csr_matrix) -> bool:
    D = abs(A - A.T)
    scale = float(abs(A).max()) if A.nnz else 0.0
    return not D.nnz or float(D.max()) <= 1e-13 * scale


def _pc_type(PETSc) -> str:
    has = getattr(PETSc.Sys, "hasExternalPackage", None)
    try:
        return "hypre" if has is not None and has("hypre") else "gamg"
    except Exception:      # pragma: no cover - very old petsc4py
        return "gamg"


class _KSP:
    """One KSP on one distributed matrix (``A`` or ``Aᵀ``), its preconditioner reusable."""

    __slots__ = ("ksp", "mat", "kind", "first", "shape", "nnz")

    def __init__(self, PETSc, M, kind: str):
        self.ksp = ksp = PETSc.KSP().create(comm=M.getComm())
        self.kind, self.first, self.mat = kind, {}, M
        self.shape, self.nnz = M.getSize(), None
        ksp.setOptionsPrefix("lp_")
        ksp.setType(kind)
        if kind == "gmres":
            ksp.setPCSide(PETSc.PC.Side.RIGHT)      # so gmres can stop on the unpreconditioned residual
            ksp.setGMRESRestart(60)
        ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
        pc = ksp.getPC()
        pc.setType(_pc_type(PETSc))
        if pc.getType() == "hypre":
            pc.setHYPREType("boomeramg")
        ksp.setOperators(M)
        ksp.setFromOptions()

    def operators(self, M, reuse: bool) -> None:
        """A new matrix of the same pattern; ``reuse``: keep the preconditioner built for the old one."""
        self.ksp.getPC().setReusePreconditioner(reuse)
        self.ksp.setOperators(M)
        old, self.mat = self.mat, M
        if old is not M:
            old.destroy()


class _Solvers:
    """What one owner keeps: the KSP of ``A`` and (non-symmetric) of ``Aᵀ``, with the pattern they serve."""

    __slots__ = ("shape", "nnz", "symmetric", "ksp", "kspT", "stale")

    def __init__(self, shape, nnz, symmetric):
        self.shape, self.nnz, self.symmetric = shape, nnz, symmetric
        self.ksp = self.kspT = None
        self.stale = set()       # which of "N", "T" must rebuild their preconditioner at the next matrix


class PETScInverse:
    """Solves with a sparse matrix ``A`` (or ``Aᵀ``) by PETSc KSP + AMG, like an LU's ``solve``.

    ``A`` (a scipy.sparse matrix, the same on every rank) is distributed by rows over
    ``PETSc.COMM_WORLD``; ``owner`` (any object that supports weak references, e.g. a block's
    cache) keeps the preconditioner for the next matrix of the same pattern; ``loose=True`` solves
    to :data:`FORWARD_RTOL` (Newton steps), else the answer must pass the 1e-10 per-equation check.
    ``names`` (the block's nodes) go into the errors.
    """

    __slots__ = ("A", "symmetric", "owner", "names", "loose", "iterations", "_mats", "_slot", "_petsc")

    def __init__(self, A, owner=None, *, names=(), loose: bool = False):
        self._petsc = _petsc()
        self.A = sp.csr_matrix(A, dtype=np.float64)
        self.A.sort_indices()
        if self.A.shape[0] != self.A.shape[1]:
            raise InputError(f"PETScInverse needs a square matrix, got shape {self.A.shape}")
        self.symmetric = _symmetric(self.A)
        self.names, self.loose, self.owner = list(names), loose, owner
        self.iterations: list[int] = []
        self._mats: dict = {}
        slot = _KEPT.get(owner) if owner is not None else None
        if slot is None or slot.shape != self.A.shape or slot.nnz != self.A.nnz or slot.symmetric != self.symmetric:
            slot = _Solvers(self.A.shape, self.A.nnz, self.symmetric)
            if owner is not None:
                _KEPT[owner] = slot
        self._slot = slot

    @property
    def rows(self) -> tuple[int, int]:
        """The rows ``[lo, hi)`` of ``A`` this rank owns in the distributed solve."""
        comm = self._petsc.COMM_WORLD
        return ownership(self.A.shape[0], comm.getSize(), comm.getRank())

    def describe(self) -> str:
        """What solves with it, for reports: ``"PETSc cg with hypre, 2 rank(s)"``."""
        k = self._slot.ksp
        ksp, pc = (k.ksp.getType(), k.ksp.getPC().getType()) if k is not None else (
            "cg" if self.symmetric else "gmres", _pc_type(self._petsc))
        return f"PETSc {ksp} with {pc}, {self._petsc.COMM_WORLD.getSize()} rank(s)"

    # ------------------------------------------------------------ distribution
    def _mat(self, trans: bool):
        """``A`` (or ``Aᵀ``) as a PETSc AIJ matrix whose rank-local rows are this rank's range."""
        key = trans and not self.symmetric
        if key not in self._mats:
            PETSc = self._petsc
            comm = PETSc.COMM_WORLD
            B = self.A.T.tocsr() if key else self.A
            B.sort_indices()
            n = B.shape[0]
            lo, hi = ownership(n, comm.getSize(), comm.getRank())
            rows = B[lo:hi]
            M = PETSc.Mat().createAIJ(size=((hi - lo, n), (hi - lo, n)), comm=comm,
                                      csr=(rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType),
                                           rows.data))
            M.assemble()
            self._mats[key] = M
        return self._mats[key]

    def _ksp(self, trans: bool) -> _KSP:
        key = "T" if trans and not self.symmetric else "N"
        slot = self._slot
        M = self._mat(trans)
        k = slot.kspT if key == "T" else slot.ksp
        if k is None:
            k = _KSP(self._petsc, M, "cg" if self.symmetric else "gmres")
            if key == "T":
                slot.kspT = k
            else:
                slot.ksp = k
        elif k.mat is not M:
            k.operators(M, reuse=key not in slot.stale)
            slot.stale.discard(key)
        return k

    # ------------------------------------------------------------------ solves
    def solve(self, b: np.ndarray, trans: str = "N", x0: np.ndarray | None = None) -> np.ndarray:
        """``A⁻¹ b`` (``A⁻ᵀ b``, ``trans != "N"``) on every rank; ``x0`` starts the iteration."""
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 2:
            return np.stack([self.solve(b[:, k], trans) for k in range(b.shape[1])], axis=1)
        tr = trans != "N"
        if not np.any(b):
            return np.zeros_like(b)
        A = self.A.T if tr else self.A
        check = backward_error(A, b)
        bn = float(np.linalg.norm(b))
        rtol = FORWARD_RTOL if self.loose else LIN_RTOL
        x, history = x0, []
        for _ in range(3):       # a restart from the last iterate recovers lost precision
            x, its, reason = self._run(b, tr, x, rtol)
            self.iterations.append(its)
            if self.loose:
                res = float(np.linalg.norm(A @ x - b)) / bn if np.all(np.isfinite(x)) else np.nan
                if np.isfinite(res) and res <= 1e-3:
                    return x
            else:
                res = check(x) if np.all(np.isfinite(x)) else np.nan
                if np.isfinite(res) and res <= LIN_ACCEPT:
                    return x
            history.append(res)
            if not np.isfinite(res):
                break
            rtol *= 1e-2
        raise ConvergenceError(
            f"PETSc KSP did not converge on a system of {A.shape[0]} unknowns (block "
            f"[{short_list(self.names, 8)}]): residual {history[-1]:.2e} after {len(history)} attempt(s), "
            f"last reason {reason}; use linear_solver='direct' (whose failure names the singular "
            "equations) or other KSP options (PETSC_OPTIONS='-lp_ksp_type ... -lp_pc_type ...')",
            nodes=self.names, iterations=sum(self.iterations), history=history)

    def _run(self, b: np.ndarray, trans: bool, x0, rtol: float):
        """One KSP solve: scatter ``b`` by rows, solve, gather ``x`` to every rank."""
        PETSc = self._petsc
        k = self._ksp(trans)
        M = k.mat
        lo, hi = M.getOwnershipRange()
        bv, xv = M.createVecLeft(), M.createVecRight()
        bv.setArray(b[lo:hi])
        ksp = k.ksp
        if x0 is not None:
            xv.setArray(np.asarray(x0, dtype=np.float64)[lo:hi])
        ksp.setInitialGuessNonzero(x0 is not None)
        ksp.setTolerances(rtol=rtol, atol=0.0, max_it=MAXITER)
        ksp.solve(bv, xv)
        reason, its = ksp.getConvergedReason(), ksp.getIterationNumber()
        if k.kind == "cg" and reason == PETSc.KSP.ConvergedReason.DIVERGED_INDEFINITE_PC:
            ksp.setType("gmres")           # cg needs a definite preconditioner: gmres from here on
            ksp.setPCSide(PETSc.PC.Side.RIGHT)
            k.kind = "gmres"
            ksp.setInitialGuessNonzero(False)
            ksp.solve(bv, xv)
            reason, its = ksp.getConvergedReason(), its + ksp.getIterationNumber()
        first = k.first.setdefault(self.loose, max(its, 1)) if x0 is None else k.first.get(self.loose, its)
        if its > REBUILD * first + 2:           # the reused preconditioner got worse: a fresh one next matrix
            self._slot.stale.add("T" if trans and not self.symmetric else "N")
        scatter, xall = PETSc.Scatter().toAll(xv)
        scatter.scatter(xv, xall, addv=PETSc.InsertMode.INSERT_VALUES, mode=PETSc.ScatterMode.FORWARD)
        x = np.array(xall.getArray(), dtype=np.float64)
        for obj in (scatter, xall, bv, xv):
            obj.destroy()
        return x, its, int(reason)
