"""A block split into states and intermediates (SPEC §1), and ``A_SS`` partitioned accordingly.

:func:`split_members` picks the states T (every residual member, plus a feedback set of the
explicit ones) and the intermediates I (evaluation order); :class:`Partition` holds ``A_SS`` in
that order, ``A_TT``, ``A_TI``, ``A_IT`` and the unit lower triangular ``A_II`` by member blocks,
and applies the Schur complement ``S = A_TT - A_TI A_II⁻¹ A_IT`` with or without forming it
(:mod:`lagrangeprop.blocks.eliminate` solves with it). The index maps that cut ``A_SS`` into these
parts are made once per sparsity pattern (``BlockCache.partition_maps``).

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; state = sol._states[id(blk)]
>>> part = Partition(blk, state.A)
>>> S = part.schur().toarray()             # 1 - 0.25·0.5: the one state's reduced Jacobian
>>> S.round(6).tolist(), bool(np.allclose(part.smatvec(np.ones(1), False), S @ np.ones(1)))
([[0.875]], True)
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..compile.schedule import Block
from ..linalg.krylov import backward_error
from .state import cache_of

__all__ = ["split_members", "state_size", "Partition"]


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
    sparsity pattern of ``A`` (``A_SS``'s pattern is fixed per block): made once, in O(nnz) from
    the entries' rows and columns (slicing took seconds at 10⁶ unknowns), and applied by later
    partitions with one gather per sub-block; a diagonal sub-block's map gives its diagonal."""

    __slots__ = ("indptr", "indices", "subs")

    def __init__(self, block: Block, A):
        # the assembly's read-only index arrays are kept as they are (then matched by identity)
        shared = not (A.indptr.flags.writeable or A.indices.flags.writeable)
        self.indptr, self.indices = (A.indptr, A.indices) if shared else (A.indptr.copy(), A.indices.copy())
        self.subs = {}
        self._cut(block, A)

    def _cut(self, block: Block, A) -> None:
        """One vectorized pass over ``A``'s entries (no slicing, O(nnz)): each entry's part and its row
        and column in that part; a part's CSR structure from its entries, their numbers the map."""
        n, it = A.shape[0], (np.int32 if A.nnz < 2**31 else np.int64)
        t, i = _indices(block)
        _, inter = split_members(block)
        pos = np.empty(n, dtype=it)                  # an unknown's place among the states or the intermediates
        pos[t], pos[i] = np.arange(t.size, dtype=it), np.arange(i.size, dtype=it)
        in_t = np.zeros(n, dtype=bool)
        in_t[t] = True
        rows = A.indices
        cols = np.repeat(np.arange(n, dtype=it), np.diff(A.indptr))
        rt, ct = in_t[rows], in_t[cols]
        every = np.arange(A.nnz, dtype=it)
        for key, mask, shape in (("A_TT", rt & ct, (t.size, t.size)), ("A_TI", rt & ~ct, (t.size, i.size)),
                                 ("A_IT", ~rt & ct, (i.size, t.size))):
            k = every[mask]
            self._part(key, k, pos[rows[k]], pos[cols[k]], shape, csc=key == "A_TI")
        del rt, ct, cols
        # the strictly lower member blocks of A_II: member j reads member m (evaluation order); the
        # entries of m's columns are one contiguous range of A.data (CSC)
        where = {k: j for j, k in enumerate(inter)}
        bounds = np.concatenate([[0], np.cumsum([block.sizes[k] for k in inter])]).astype(np.int64)
        offsets, sizes = block.offsets, block.sizes
        for j, kj in enumerate(inter):
            preds = sorted({where[m] for m in (block.position.get(u) for u in block.steps[kj].args) if m in where})
            r0, r1 = offsets[kj], offsets[kj] + sizes[kj]
            for m in preds:
                km = inter[m]
                a, b = A.indptr[offsets[km]], A.indptr[offsets[km] + sizes[km]]
                r = rows[a:b]
                k = every[a:b][(r >= r0) & (r < r1)]
                if k.size:
                    self._part((j, m), k, pos[rows[k]] - bounds[j], pos[_cols(A, k)] - bounds[m],
                               (sizes[kj], sizes[km]))
        self.subs["bounds"] = bounds
        # per intermediate member j: its rows of A_IT (a row range of the CSR) and its columns of A_TI
        # (a column range of the CSC), views of the maps above
        for key, part in (("IT", "A_IT"), ("TI", "A_TI")):
            indptr, indices, shape, where, fmt = self.subs[part]
            for j in range(len(inter)):
                lo, hi = int(bounds[j]), int(bounds[j + 1])
                ip = indptr[lo:hi + 1]
                a, b = int(ip[0]), int(ip[-1])
                if b > a:
                    sub = (hi - lo, shape[1]) if key == "IT" else (shape[0], hi - lo)
                    self._store((key, j), ip - a, indices[a:b], sub, where[a:b], fmt)

    def _part(self, key, k: np.ndarray, r: np.ndarray, c: np.ndarray, shape: tuple, csc: bool = False) -> None:
        """The sub-block ``key`` of the entries numbered ``k`` at local rows ``r`` and columns ``c``."""
        M = sp.coo_matrix((k, (r, c)), shape=shape)
        M = M.tocsc() if csc else M.tocsr()
        M.sort_indices()
        self._store(key, M.indptr, M.indices, shape, M.data, "csc" if csc else "csr")

    def _store(self, key, indptr, indices, shape, where, fmt) -> None:
        n = shape[0]
        diagonal = (key not in ("A_TI", "A_IT") and shape[1] == n and where.size == n
                    and np.array_equal(indptr, np.arange(n + 1)) and np.array_equal(indices, np.arange(n)))
        self.subs[key] = (None, None, shape, where, fmt) if diagonal else (indptr, indices, shape, where, fmt)

    def matches(self, A) -> bool:
        if A.indptr is self.indptr and A.indices is self.indices:
            return True
        return (A.indptr.shape == self.indptr.shape and A.indices.shape == self.indices.shape
                and np.array_equal(A.indptr, self.indptr) and np.array_equal(A.indices, self.indices))

    def take(self, key, data: np.ndarray):
        indptr, indices, shape, where, fmt = self.subs[key]
        if indptr is None:
            return _Diag(data[where])
        return (sp.csc_matrix if fmt == "csc" else sp.csr_matrix)((data[where], indices, indptr), shape=shape)


def _cols(A, k: np.ndarray) -> np.ndarray:
    """The columns of the CSC entries numbered ``k`` (sorted): where they fall among ``A.indptr``."""
    return np.searchsorted(A.indptr, k, side="right") - 1


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

    def __ne__(self, other):     # like a sparse matrix's: the entries that differ, as a sparse matrix
        return self.tocsr() != (other.tocsr() if isinstance(other, _Diag) else other)

    __hash__ = None


class Partition:
    """``A_SS`` in the order (states T, intermediates I): ``A_TT``, ``A_TI``, ``A_IT`` and the
    unit lower triangular ``A_II`` as its nonzero member blocks (module docstring). The products use
    ``A_IT`` by the intermediate members' rows and ``A_TI`` by their columns (``it``, ``ti``: a
    diagonal one is a multiply, an empty one is skipped)."""

    __slots__ = ("t", "i", "ts", "is_", "A", "A_TT", "it", "ti", "bounds", "blocks", "_whole")

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
            self.A_TT = maps.take("A_TT", data)
            self.bounds = bd = maps.subs["bounds"]
            self.blocks = {k: maps.take(k, data) for k in maps.subs if isinstance(k[0], int)}
            self.it, self.ti = ([(slice(int(bd[k[1]]), int(bd[k[1] + 1])), maps.take(k, data))
                                 for k in maps.subs if k[0] == kind] for kind in ("IT", "TI"))
            self._whole = lambda key: maps.take(key, data)
            return
        A = sp.csr_matrix(A)
        A_T, A_I = A[t], A[i]
        self.A_TT = A_T[:, t].tocsr()
        A_TI, A_IT = A_T[:, i].tocsc(), A_I[:, t].tocsr()
        self.bounds, self.blocks = _lower_blocks(block, A_I[:, i].tocsr())
        bd = self.bounds
        sl = [slice(int(bd[j]), int(bd[j + 1])) for j in range(len(bd) - 1)]
        self.it = [(s, A_IT[s]) for s in sl if A_IT[s].nnz]
        self.ti = [(s, A_TI[:, s]) for s in sl if A_TI[:, s].nnz]
        self._whole = {"A_TI": A_TI.tocsr(), "A_IT": A_IT}.get

    @property
    def A_TI(self) -> sp.spmatrix:
        return self._whole("A_TI")

    @property
    def A_IT(self) -> sp.spmatrix:
        return self._whole("A_IT")

    def schur(self) -> sp.csc_matrix:
        """``S = A_TT - A_TI A_II⁻¹ A_IT`` (``A_II⁻¹ A_IT`` by block forward substitution)."""
        bd = self.bounds
        nt = self.t.size
        X = [sp.csr_matrix((int(bd[j + 1] - bd[j]), nt)) for j in range(len(bd) - 1)]
        for s, M in self.it:
            X[np.searchsorted(bd, s.start)] = M.tocsr()
        for (j, m), L in self.blocks.items():          # keys in increasing j: X_m is final
            X[j] = X[j] - L @ X[m]
        S = self.A_TT.tocsr() if isinstance(self.A_TT, _Diag) else self.A_TT
        for s, M in self.ti:
            S = S - (M.tocsr() if isinstance(M, _Diag) else M) @ X[np.searchsorted(bd, s.start)]
        return sp.csc_matrix(S)

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

    def _to_i(self, x: np.ndarray, trans: bool) -> np.ndarray:
        """``A_IT x`` (``A_TIᵀ x`` with ``trans``): a vector on the intermediates, zero where no member reads T."""
        y = np.zeros((self.i.size,) + np.shape(x)[1:])
        for s, M in (self.ti if trans else self.it):
            y[s] = M.T @ x if trans else M @ x
        return y

    def _to_t(self, y: np.ndarray, trans: bool) -> np.ndarray:
        """``A_TI y`` (``A_ITᵀ y`` with ``trans``): a vector on the states."""
        out = np.zeros((self.t.size,) + np.shape(y)[1:])
        for s, M in (self.it if trans else self.ti):
            out += M.T @ y[s] if trans else M @ y[s]
        return out

    def smatvec(self, v: np.ndarray, trans: bool) -> np.ndarray:
        """``S v`` or ``Sᵀ v`` without forming ``S``."""
        out = self._to_t(self.tri(self._to_i(v, trans), trans, overwrite=True), trans)
        np.negative(out, out=out)
        if self.A_TT.nnz if sp.issparse(self.A_TT) else True:
            out += self.A_TT.T @ v if trans else self.A_TT @ v
        return out

    def rhs(self, b: np.ndarray, trans: bool) -> np.ndarray:
        """The reduced right-hand side ``b_T - A_TI A_II⁻¹ b_I`` (transposed:
        ``b_T - A_ITᵀ A_II⁻ᵀ b_I``)."""
        return b[self.ts] - self._to_t(self.tri(b[self.is_], trans), trans)

    def expand(self, xt: np.ndarray, b: np.ndarray, trans: bool) -> np.ndarray:
        """The full solution from its states: ``x_I = A_II⁻¹ (b_I - A_IT x_T)`` (transposed:
        ``A_II⁻ᵀ (b_I - A_TIᵀ x_T)``)."""
        x = np.empty_like(b)
        x[self.ts] = xt
        x[self.is_] = self.tri(b[self.is_] - self._to_i(xt, trans), trans, overwrite=True)
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


