"""Elimination of a block's explicit intermediates: Newton on the states only (SPEC §1).

A block S splits into *states* T (every residual member, plus a feedback set of explicit
members that breaks every cycle among the explicit ones) and *intermediates* I, explicit
members that, given ``z_T`` and the outside values, evaluate in a topological order. The
forward solve iterates on ``z_T`` alone with the reduced residual
``g_T(z_T) = c_T(z_T, z_I(z_T))`` (the intermediates by forward substitution, so they are
consistent at every iterate). In the order (T, I), ``A_II`` is unit lower triangular, and

- ``A_SS ż = b``:  ``S ż_T = b_T - A_TI A_II⁻¹ b_I``, ``ż_I = A_II⁻¹ (b_I - A_IT ż_T)``;
- ``A_SSᵀ λ = b``: ``Sᵀ λ_T = b_T - A_ITᵀ A_II⁻ᵀ b_I``, ``λ_I = A_II⁻ᵀ (b_I - A_TIᵀ λ_T)``;

with the Schur complement ``S = A_TT - A_TI A_II⁻¹ A_IT`` (``det A_SS = det S``), the reduced
Jacobian ``∂g_T/∂z_T``. :class:`ReducedLU` solves both on full block vectors, like an LU
of ``A_SS``.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]
>>> [blk.names[k] for k in split_members(blk)[0]], [blk.names[k] for k in split_members(blk)[1]]
(['multiply_1'], ['a', 'b'])
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..compile.schedule import Block
from ..errors import SingularSystemError
from ..linalg import direct
from ..linalg.amg import AMGInverse
from ..linalg.direct import fill_ratio
from ..linalg.krylov import backward_error, krylov
from ..linalg.petsc import PETScInverse
from .layout import labels_of
from .residual import evaluate, evaluators
from .state import cache_of

__all__ = ["split_members", "state_size", "substitute", "residual", "Partition", "ReducedLU", "inner_solver",
           "factor", "reduced_factor", "reduced_krylov"]


def split_members(block: Block) -> tuple[list[int], list[int]]:
    """``(states, intermediates)`` as member positions; intermediates in evaluation order.

    The feedback set is greedy (not minimum): within each cyclic strongly connected
    component of the explicit members' dependency graph, the member with the largest
    ``in-degree × out-degree`` (ties: latest in block order) becomes a state, until no
    cycle is left. Cached (``BlockCache.split``).
    """
    c = cache_of(block)
    if c.split is not None:
        return c.split
    pos = block.position
    explicit = [k for k, s in enumerate(block.steps) if not s.residual]
    states = {k for k, s in enumerate(block.steps) if s.residual}
    G = nx.DiGraph()
    G.add_nodes_from(explicit)
    for k in explicit:
        for u in block.steps[k].args:          # every operand, differentiable or not: evaluation order
            m = pos.get(u)
            if m is not None and m not in states:
                G.add_edge(m, k)
    while True:
        cyclic = [c for c in nx.strongly_connected_components(G)
                  if len(c) > 1 or G.has_edge(next(iter(c)), next(iter(c)))]
        if not cyclic:
            break
        for comp in cyclic:
            sub = G.subgraph(comp)
            k = max(sorted(comp), key=lambda n: (sub.in_degree(n) * sub.out_degree(n), n))
            states.add(k)
            G.remove_node(k)
    order = list(nx.lexicographical_topological_sort(G))
    c.split = (sorted(states), order)
    return c.split


def substitute(block: Block, vals: list) -> None:
    """Evaluate the intermediates from the states (forward substitution, in place)."""
    fns = evaluators(block)
    steps = block.steps
    for k in split_members(block)[1]:
        vals[steps[k].node] = evaluate(block, k, vals, fns[k])


def residual(block: Block, vals: list) -> tuple[np.ndarray, dict]:
    """:func:`substitute`, then ``c_S`` and the op outputs like ``block_residual`` (each op
    evaluated once; the intermediates' entries of ``c_S`` are exactly zero)."""
    fns = evaluators(block)
    steps = block.steps
    ans = {}
    T, inter = split_members(block)
    for k in inter:
        a = evaluate(block, k, vals, fns[k])
        vals[steps[k].node] = ans[steps[k].node] = a
    c = np.zeros(block.size)
    for k in T:
        s = steps[k]
        a = ans[s.node] = evaluate(block, k, vals, fns[k])
        off = block.offsets[k]
        c[off:off + block.sizes[k]] = np.ravel(a) if s.residual else np.ravel(vals[s.node] - a)
    return c, ans


def _indices(block: Block) -> tuple[np.ndarray, np.ndarray]:
    """Scalar indices of the states and (in evaluation order) the intermediates."""
    c = cache_of(block)
    if c.indices is None:
        T, inter = split_members(block)

        def idx(ks):
            parts = [np.arange(block.offsets[k], block.offsets[k] + block.sizes[k]) for k in ks]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        c.indices = (idx(T), idx(inter))
    return c.indices


def _spans(block: Block) -> tuple:
    """:func:`_indices` as slices where they are contiguous ranges (else the index arrays). Cached."""
    c = cache_of(block)
    if c.spans is None:
        def span(idx):
            if idx.size and idx[-1] - idx[0] + 1 == idx.size and np.all(np.diff(idx) == 1):
                return slice(int(idx[0]), int(idx[-1]) + 1)
            return idx
        c.spans = tuple(span(idx) for idx in _indices(block))
    return c.spans


def state_size(block: Block) -> int:
    """How many scalar unknowns Newton iterates on (the states; the Schur complement's size)."""
    return int(_indices(block)[0].size)


def _lower_blocks(block: Block, A_II: sp.csr_matrix) -> tuple[np.ndarray, dict]:
    """Member bounds in ``A_II`` and its nonzero strictly lower blocks ``{(j, m): CSR}``
    (``j`` depends on ``m``, both positions in the intermediates' order)."""
    _, inter = split_members(block)
    where = {k: j for j, k in enumerate(inter)}
    bounds = np.concatenate([[0], np.cumsum([block.sizes[k] for k in inter])]).astype(np.int64)
    blocks = {}
    for j, k in enumerate(inter):
        preds = sorted({where[m] for m in (block.position.get(u) for u in block.steps[k].args) if m in where})
        if not preds:
            continue
        R = A_II[bounds[j]:bounds[j + 1]]
        for m in preds:
            L = R[:, bounds[m]:bounds[m + 1]]
            if L.nnz:
                blocks[(j, m)] = L.tocsr()
    return bounds, blocks


class _Maps:
    """Where each sub-block of :class:`Partition` takes its entries from in ``A.data``, for one
    sparsity pattern of ``A`` (``A_SS``'s pattern is fixed per block): slicing a matrix whose
    data are the entry numbers gives, once, index maps that later partitions apply with one
    gather per sub-block instead of slicing again (seconds at 10⁶ unknowns)."""

    __slots__ = ("indptr", "indices", "subs")

    def __init__(self, block: Block, A):
        self.indptr, self.indices = A.indptr.copy(), A.indices.copy()
        numbered = sp.csc_matrix((np.arange(1, A.nnz + 1, dtype=np.float64), A.indices, A.indptr), shape=A.shape)
        t, i = _spans(block)            # slices where contiguous: submatrices without fancy indexing
        R = numbered.tocsr()
        del numbered
        R_T, R_I = R[t], R[i]
        parts = {"A_TT": R_T[:, t], "A_TI": R_T[:, i], "A_IT": R_I[:, t]}
        bounds, lower = _lower_blocks(block, R_I[:, i].tocsr())
        parts.update({key: L for key, L in lower.items()})
        self.subs = {}
        for key, M in parts.items():
            M = M.tocsr()
            n = M.shape[0]
            diagonal = (M.shape[1] == n and M.nnz == n and np.array_equal(M.indptr, np.arange(n + 1))
                        and np.array_equal(M.indices, np.arange(n)))
            where = M.data.astype(np.int32 if A.nnz < 2**31 else np.int64)
            where -= 1
            self.subs[key] = (None if diagonal else M.indptr, None if diagonal else M.indices, M.shape, where)
        self.subs["bounds"] = bounds

    def matches(self, A) -> bool:
        return (A.indptr.shape == self.indptr.shape and A.indices.shape == self.indices.shape
                and np.array_equal(A.indptr, self.indptr) and np.array_equal(A.indices, self.indices))

    def take(self, key, data: np.ndarray):
        indptr, indices, shape, where = self.subs[key]
        if indptr is None:
            return _Diag(data[where])
        return sp.csr_matrix((data[where], indices, indptr), shape=shape)


class _Diag:
    """A diagonal sub-block (an elementwise partial) kept as its diagonal: a product is one multiply."""

    __slots__ = ("d", "shape")

    def __init__(self, d: np.ndarray):
        self.d, self.shape = d, (d.size, d.size)

    @property
    def T(self) -> _Diag:
        return self

    def tocsr(self) -> sp.csr_matrix:
        return sp.diags(self.d, format="csr")

    def __matmul__(self, x):
        if sp.issparse(x):
            return self.tocsr() @ x
        return self.d * x if np.ndim(x) == 1 else self.d[:, None] * x


class Partition:
    """``A_SS`` in the order (states T, intermediates I): ``A_TT``, ``A_TI``, ``A_IT`` and the
    unit lower triangular ``A_II`` as its nonzero member blocks (module docstring)."""

    __slots__ = ("t", "i", "ts", "is_", "A", "A_TT", "A_TI", "A_IT", "bounds", "blocks")

    def __init__(self, block: Block, A):
        self.t, self.i = t, i = _indices(block)
        self.ts, self.is_ = _spans(block)       # slices where contiguous: views, not gathers
        self.A = A
        if isinstance(A, sp.csc_matrix) and A.has_canonical_format:
            c = cache_of(block)
            maps = c.partition_maps
            if maps is None or not maps.matches(A):
                maps = c.partition_maps = _Maps(block, A)
            data = A.data
            self.A_TT, self.A_TI, self.A_IT = (maps.take(k, data) for k in ("A_TT", "A_TI", "A_IT"))
            self.bounds = maps.subs["bounds"]
            self.blocks = {k: maps.take(k, data) for k in maps.subs if isinstance(k, tuple)}
            return
        A = sp.csr_matrix(A)
        A_T, A_I = A[t], A[i]
        self.A_TT, self.A_TI = A_T[:, t].tocsr(), A_T[:, i].tocsr()
        self.A_IT = A_I[:, t].tocsr()
        self.bounds, self.blocks = _lower_blocks(block, A_I[:, i].tocsr())

    def schur(self) -> sp.csc_matrix:
        """``S = A_TT - A_TI A_II⁻¹ A_IT`` (``A_II⁻¹ A_IT`` by block forward substitution)."""
        bd = self.bounds
        A_TT, A_TI, A_IT = (M.tocsr() if isinstance(M, _Diag) else M for M in (self.A_TT, self.A_TI, self.A_IT))
        X = [A_IT[bd[j]:bd[j + 1]] for j in range(len(bd) - 1)]
        for (j, m), L in self.blocks.items():          # keys in increasing j: X_m is final
            X[j] = X[j] - L @ X[m]
        return (A_TT - A_TI @ sp.vstack(X, format="csr")).tocsc()

    def tri(self, b: np.ndarray, trans: bool, overwrite: bool = False) -> np.ndarray:
        """``A_II⁻¹ b`` (forward substitution) or ``A_II⁻ᵀ b`` (backward), member by member; in place
        in ``b`` with ``overwrite`` (a float64 temporary of the caller)."""
        x = b if overwrite and b.dtype == np.float64 else np.array(b, dtype=np.float64)
        bd = self.bounds
        if not trans:
            for (j, m), L in self.blocks.items():
                x[bd[j]:bd[j + 1]] -= L @ x[bd[m]:bd[m + 1]]
        else:
            for (j, m), L in reversed(self.blocks.items()):
                x[bd[m]:bd[m + 1]] -= L.T @ x[bd[j]:bd[j + 1]]
        return x

    def smatvec(self, v: np.ndarray, trans: bool) -> np.ndarray:
        """``S v`` or ``Sᵀ v`` without forming ``S``."""
        if not trans:
            out = -(self.A_TI @ self.tri(self.A_IT @ v, False, overwrite=True))
        else:
            out = -(self.A_IT.T @ self.tri(self.A_TI.T @ v, True, overwrite=True))
        if self.A_TT.nnz if sp.issparse(self.A_TT) else True:
            out += self.A_TT.T @ v if trans else self.A_TT @ v
        return out

    def rhs(self, b: np.ndarray, trans: bool) -> np.ndarray:
        """The reduced right-hand side ``b_T - A_TI A_II⁻¹ b_I`` (transposed:
        ``b_T - A_ITᵀ A_II⁻ᵀ b_I``)."""
        if not trans:
            return b[self.ts] - self.A_TI @ self.tri(b[self.is_], False)
        return b[self.ts] - self.A_IT.T @ self.tri(b[self.is_], True)

    def expand(self, xt: np.ndarray, b: np.ndarray, trans: bool) -> np.ndarray:
        """The full solution from its states: ``x_I = A_II⁻¹ (b_I - A_IT x_T)`` (transposed:
        ``A_II⁻ᵀ (b_I - A_TIᵀ x_T)``)."""
        x = np.empty_like(b)
        x[self.ts] = xt
        x[self.is_] = self.tri(b[self.is_] - (self.A_TI.T @ xt if trans else self.A_IT @ xt), trans)
        return x


    def operator(self) -> spla.LinearOperator:
        """``S`` as a ``LinearOperator`` (:meth:`smatvec`; ``rmatvec``: ``Sᵀ``)."""
        n = self.t.size
        return spla.LinearOperator((n, n), matvec=lambda v: self.smatvec(v, False),
                                   rmatvec=lambda v: self.smatvec(v, True), dtype=float)

    def check(self, b: np.ndarray, trans: bool):
        """``x_T ↦`` the componentwise backward error of the full solution :meth:`expand` gives, on
        ``A_SS x = b`` (``A_SSᵀ x = b``): every equation of the block on its own terms (SPEC §1)."""
        err = backward_error(self.A.T if trans else self.A, b)
        return lambda xt: err(self.expand(xt, b, trans))


class ReducedLU:
    """``A_SS`` solves through the LU of the Schur complement on the states (module docstring)."""

    __slots__ = ("part", "lu", "fill")

    def __init__(self, part: Partition, lu, fill: float):
        self.part, self.lu, self.fill = part, lu, fill

    def solve(self, b: np.ndarray, trans: str = "N", x0: np.ndarray | None = None) -> np.ndarray:
        """``A_SS⁻¹ b`` (``A_SS⁻ᵀ b``); ``x0`` (a full block vector) starts an iterative inner solver."""
        b = np.asarray(b, dtype=np.float64)
        tr = trans != "N"
        if not isinstance(self.lu, AMGInverse):
            return self.part.expand(self.lu.solve(self.part.rhs(b, tr), trans="T" if tr else "N"), b, tr)
        if b.ndim == 2:
            return np.stack([self.solve(b[:, k], trans) for k in range(b.shape[1])], axis=1)
        # iterative: warm-started, and a full-accuracy answer checked on the whole block, per equation
        xt = self.lu.solve(self.part.rhs(b, tr), trans="T" if tr else "N",
                           x0=None if x0 is None else np.asarray(x0)[self.part.t],
                           residual=None if self.lu.loose else self.part.check(b, tr))
        return self.part.expand(xt, b, tr)


def inner_solver(lu):
    """The solver of the states behind a Schur-complement :class:`ReducedLU`, else ``lu`` itself."""
    return lu.lu if isinstance(lu, ReducedLU) else lu


def factor(block: Block, A, where: str, labels: list[str] | None = None):
    """:func:`lagrangeprop.linalg.direct.factor` of ``A`` for this block: its singularity report
    names the block's unknowns, or the entries ``labels`` of the states when ``A`` is the Schur
    complement on them (the diagnosis then speaks of the reduced system)."""
    reduced = labels is not None
    return direct.factor(A, where, names=block.names, labels=labels_of(block) if labels is None else labels,
                         reduced=reduced)


def reduced_factor(block: Block, A, where: str):
    """An LU-like solver of ``A_SS`` (``solve(b, trans)``), and its fill ratio.

    Large sparse blocks with intermediates factor only the Schur complement on the
    states; small (dense) blocks and blocks without intermediates factor ``A_SS``. Singularity
    is judged on the reduced state system (SPEC §1): a small block whose equilibrated ``A_SS``
    looks singular is solved through its Schur complement when that is regular; a singular
    Schur complement raises, its diagnosis naming the states (a large block tries ``A_SS``
    itself first). When ``BlockCache.use_amg`` is set (see
    :func:`lagrangeprop.blocks.policy.solve_forward`), sparse blocks get an
    :class:`~lagrangeprop.linalg.amg.AMGInverse` of the Schur complement instead of an LU
    (solves with it "at Newton iteration ..." are loose: the next step corrects them).
    """
    _, i = _indices(block)
    cache = cache_of(block)
    if cache.use_petsc and not isinstance(A, np.ndarray) and A.shape[0]:    # PETSc KSP + AMG (petsc.py)
        loose = where.startswith("at Newton")
        if i.size == 0:
            return PETScInverse(A, cache, names=block.names, loose=loose), 1.0
        part = Partition(block, A)
        return ReducedLU(part, PETScInverse(part.schur(), cache, names=block.names, loose=loose), 1.0), 1.0
    if cache.use_amg and not isinstance(A, np.ndarray) and A.shape[0]:
        # AMG-preconditioned Krylov instead of an LU (amg.py); Newton steps solve loosely
        loose = where.startswith("at Newton")
        if i.size == 0:
            return AMGInverse(A, cache, names=block.names, loose=loose), 1.0
        # matrix-free on the states: S v by smatvec; S is formed only to build a hierarchy (the
        # first Newton matrix; a warm solve of the same block forms none)
        part = Partition(block, A)
        inv = AMGInverse(part.operator(), cache, names=block.names, loose=loose, matrix=part.schur,
                         key=("schur", A.nnz))
        return ReducedLU(part, inv, 1.0), 1.0
    if i.size == 0 or A.shape[0] == 0:
        lu = factor(block, A, where)
        return lu, (fill_ratio(lu, A) if lu is not None else 1.0)
    if isinstance(A, np.ndarray):
        try:
            lu = factor(block, A, where)
            return lu, fill_ratio(lu, A)
        except SingularSystemError:
            pass
        # SPEC §1: singularity is judged on the reduced state system. A chain of intermediates with
        # large gains (exp(v/Vt) ~ 1e11 feeding Is·(...), 1e-12·a next to 1e12·a) leaves the full A_SS
        # ill-conditioned even after equilibration while the Schur complement is well conditioned:
        # solve through it then; when it is singular too, its diagnosis names the states
        part = Partition(block, sp.csr_matrix(A))
        return ReducedLU(part, _schur_factor(block, part, part.schur(), where), 1.0), 1.0
    part = Partition(block, A)
    S = part.schur()
    try:
        lu = _schur_factor(block, part, S, where)
    except SingularSystemError as reduced:
        try:
            lu = factor(block, sp.csc_matrix(A), where)
        except SingularSystemError:
            raise reduced from None
        return lu, fill_ratio(lu, A)
    fill = (lu.L.nnz + lu.U.nnz) / max(S.nnz, 1) if hasattr(lu, "L") else 1.0
    return ReducedLU(part, lu, fill), fill


def _schur_factor(block: Block, part: Partition, S, where: str):
    """The LU of the Schur complement ``S``; singular -> SingularSystemError naming the states' entries."""
    labels = labels_of(block)
    return factor(block, S, where, labels=[labels[j] for j in part.t])


def reduced_krylov(block: Block, part: Partition, b: np.ndarray, trans: bool, kind: str, pre: ReducedLU, *,
                   what: str, residual, maxiter=None, x0: np.ndarray | None = None) -> np.ndarray:
    """``A_SS x = b`` (or ``A_SSᵀ x = b``) by Krylov on the Schur complement of ``part``,
    preconditioned by the (stale) Schur LU ``pre``; ``residual`` checks the full solution."""
    n = part.t.size
    S = spla.LinearOperator((n, n), matvec=lambda v: part.smatvec(v, trans), dtype=float)
    if isinstance(pre.lu, AMGInverse):    # one V-cycle, not a whole inner solve
        M = pre.lu.operator(trans)
    else:
        M = spla.LinearOperator((n, n), matvec=lambda r: pre.lu.solve(r, trans="T" if trans else "N"), dtype=float)
    xt = krylov(S, part.rhs(b, trans), kind, M=M, names=block.names, what=what, maxiter=maxiter,
                residual=lambda v: residual(part.expand(v, b, trans)), x0=None if x0 is None else x0[part.t])
    return part.expand(xt, b, trans)
