"""Assembly of ``A_SS = ∂c_S/∂z_S`` from a linearization: the fixed sparsity pattern and its fill.

Rows and columns are in the block order (:mod:`lagrangeprop.blocks.layout`). Explicit members
contribute ``I - J``, residual members ``∂r/∂z``. The pattern (every local entry's slot in the
CSC data array, and its flat position in a dense matrix) is computed once per block; each
assembly then only fills numbers in.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'a.multiply']
>>> A = block_jacobian(blk, sol._vals, sol._states[id(blk)].ans)   # rows/cols in block order
>>> A.toarray().tolist()
[[1.0, 0.0, -1.0], [-0.25, 1.0, 0.0], [0.0, -0.5, 1.0]]
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Block
from .kernels import as_float64
from .linearization import Linearization, linearize, static_edges
from .state import cache_of

try:     # scipy's O(nnz) COO -> CSR placement (duplicates kept) and per-row index sort
    from scipy.sparse._sparsetools import coo_tocsr as _coo_tocsr, csr_sort_indices as _csr_sort_indices
except ImportError:  # pragma: no cover - a scipy without the private module
    _coo_tocsr = _csr_sort_indices = None

__all__ = ["csc_slots", "assemble", "dense_jacobian", "block_jacobian"]


class _Pattern:
    """Index maps of ``A_SS``'s assembly, computed once per block: every local entry's slot
    in the CSC data array and its flat position in a dense matrix; per edge, the slice of
    the entry list its local partial fills."""

    def __init__(self, block: Block, lin: Linearization):
        n = block.size
        it = np.int32 if n < 2**31 else np.int64       # index arrays: half the memory of int64
        rows, cols, self.keys, self.fill, self.fill_sign = [], [], [], [], []
        n_id = 0
        for k, s in enumerate(block.steps):
            if not s.residual:
                idx = np.arange(block.offsets[k], block.offsets[k] + block.sizes[k], dtype=it)
                rows.append(idx); cols.append(idx)
                n_id += idx.size
        self.n_id = n_id
        at = n_id
        for k, row in enumerate(lin.edges):
            r0 = block.offsets[k]
            sign = 1.0 if block.steps[k].residual else -1.0
            for e in row:
                c0 = block.offsets[e.m]
                if e.p is not None:
                    n_out, n_arg = int(np.prod(e.out_shape)), int(np.prod(e.arg_shape))
                    rows.append(np.arange(r0, r0 + n_out, dtype=it))
                    cols.append(np.broadcast_to(np.arange(c0, c0 + n_arg, dtype=it).reshape(e.arg_shape),
                                                e.out_shape).ravel())
                    self.keys.append(None)
                    # a scalar output fills one entry; else a view of the slice in the output's shape
                    self.fill.append((at, n_out, e.out_shape if e.out_shape != () else None))
                else:
                    J = e.jac()
                    if J is None:
                        self.keys.append(False)
                        self.fill.append(None)
                        self.fill_sign.append(sign)
                        continue
                    n_out = J.nnz
                    rows.append(np.repeat(np.arange(r0, r0 + J.shape[0], dtype=it), np.diff(J.indptr)))
                    cols.append(J.indices.astype(it) + it(c0))
                    self.keys.append(J)
                    self.fill.append((at, n_out, False))
                self.fill_sign.append(sign)
                at += n_out
        self.size = at
        self.all_negative = all(sg < 0 for f, sg in zip(self.fill, self.fill_sign) if f is not None and f[1])
        rows = np.concatenate(rows) if rows else np.zeros(0, it)
        cols = np.concatenate(cols) if cols else np.zeros(0, it)
        self.n = n
        # flat positions in a dense matrix: only small blocks are ever assembled dense
        self.flat = rows.astype(np.int64) * n + cols if n * n <= 16 * 10**6 else None
        self.indptr, self.indices, self.slot = csc_slots(rows, cols, n)
        del rows, cols
        self.indptr.flags.writeable = self.indices.flags.writeable = False   # shared by every assembled A
        self.nnz = self.indices.size
        self.last = None      # (a weak reference to the data last scattered, what each partial was)

    @property
    def sign(self) -> np.ndarray:
        """The sign of every local entry (+1: identity and residual rows, -1: ``-J`` of explicit rows);
        kept for small blocks only (the dense assembly's hot path), large ones rarely need it."""
        out = getattr(self, "_sign", None)
        if out is None:
            out = np.ones(self.size)
            for f, sg in zip(self.fill, self.fill_sign):
                if f is not None and sg < 0:
                    out[f[0]:f[0] + f[1]] = sg
            if self.size <= 1 << 16:
                self._sign = out
        return out

    def matches(self, lin: Linearization) -> bool:
        i = 0
        for row in lin.edges:
            for e in row:
                if e.p is None:
                    J, K = e.jac(), self.keys[i]
                    if K is False or J is None:
                        if not (K is False and J is None):
                            return False
                    elif J is not K and not (J.shape == K.shape and J.nnz == K.nnz
                                             and np.array_equal(J.indptr, K.indptr)
                                             and np.array_equal(J.indices, K.indices)):
                        return False
                elif self.keys[i] is not None:
                    return False
                i += 1
        return i == len(self.keys)


def csc_slots(rows: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The canonical CSC structure (``indptr``, sorted duplicate-free ``indices``) of an ``n×n``
    matrix with entries at ``(rows, cols)``, and each entry's slot in its data array (duplicates
    share a slot). Without a global sort: scipy places the entries column by column in
    O(nnz) and sorts each (short) column; a sort of all ``col·n + row`` keys took seconds at
    10⁷ entries.

    Examples
    --------
    >>> import numpy as np
    >>> indptr, indices, slot = csc_slots(np.array([1, 0, 1, 1]), np.array([0, 1, 0, 1]), 2)
    >>> indptr.tolist(), indices.tolist(), slot.tolist()
    ([0, 1, 3], [1, 0, 1], [0, 1, 0, 2])
    """
    m = rows.size
    if _coo_tocsr is None or m >= 2**31 or n >= 2**31:    # pragma: no cover - fallback
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        uniq, slot = np.unique(cols * n + rows, return_inverse=True)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // max(n, 1), minlength=n))])
        return indptr.astype(np.int32), (uniq % max(n, 1)).astype(np.int32), slot.ravel()
    # the CSR layout of Aᵀ is the CSC layout of A; the data carry each entry's number (int32 throughout)
    Bp, Bj, Bx = np.empty(n + 1, np.int32), np.empty(m, np.int32), np.empty(m, np.int32)
    _coo_tocsr(n, n, m, cols.astype(np.int32, copy=False), rows.astype(np.int32, copy=False),
               np.arange(m, dtype=np.int32), Bp, Bj, Bx)
    _csr_sort_indices(n, Bp, Bj, Bx)
    new = np.ones(m, dtype=bool)                  # first of its (column, row) run
    if m:
        np.not_equal(Bj[1:], Bj[:-1], out=new[1:])
        new[Bp[:-1][np.diff(Bp) > 0]] = True      # a column's first entry is new even if the rows repeat
    first = np.cumsum(new, dtype=np.int32)
    slot = np.empty(m, dtype=np.int32)
    slot[Bx] = first - 1
    del Bx
    indptr = np.concatenate([np.zeros(1, np.int32), first])[Bp]
    return indptr, Bj[new], slot


def _pattern(block: Block, lin: Linearization) -> _Pattern:
    c = cache_of(block)
    pat = c.pattern
    if pat is None or not pat.matches(lin):
        pat = c.pattern = _Pattern(block, lin)
    return pat


# A_SS = ∂c_S/∂z_S: I - J_d for an explicit row d, ∂r_d/∂z for a residual row (SPEC §1).
def assemble(block: Block, lin: Linearization, dense: bool = False, prev=None):
    """``A_SS`` at the linearization's point: a CSC matrix (explicit zeros kept, the pattern
    is fixed per block; its index arrays read-only) or, with ``dense=True``, an ndarray. ``prev``: the
    block's previous ``A_SS``, whose unchanged entries need not be written again."""
    lin.jacobians()
    pat = _pattern(block, lin)
    n = block.size
    if not dense and pat.size == pat.nnz:
        return _scatter(pat, lin, n, prev)
    data = np.empty(pat.size)
    data[:pat.n_id] = 1.0
    i = 0
    for row in lin.edges:
        for e in row:
            f = pat.fill[i]
            i += 1
            if f is None:
                continue
            at, n_out, shape = f
            if shape is None:
                data[at] = e.p
            elif shape is False:
                data[at:at + n_out] = e.J.data
            else:
                data[at:at + n_out].reshape(shape)[...] = e.p
    if pat.all_negative:
        np.negative(data[pat.n_id:], out=data[pat.n_id:])
    else:
        data *= pat.sign
    if dense and pat.flat is not None:
        return np.bincount(pat.flat, weights=data, minlength=n * n).reshape(n, n)
    vals = np.bincount(pat.slot, weights=data, minlength=pat.nnz)
    # copies of the index arrays: callers may prune the matrix in place (eliminate_zeros)
    return sp.csc_matrix((vals, pat.indices.copy(), pat.indptr.copy()), shape=(n, n))


def _scatter(pat: _Pattern, lin: Linearization, n: int, prev=None) -> sp.csc_matrix:
    """:func:`assemble` when no two local entries share a slot (the usual case): every partial,
    its sign applied, goes straight to its slots of the CSC data, one pass and no temporary.

    ``prev``: the block's previous matrix from this function; its data are copied and only the
    partials that changed are written again (a scalar partial of another value, a Jacobian that
    is not the pattern's constant one, every array partial)."""
    last = pat.last
    reuse = (prev is not None and last is not None and last[0]() is prev.data and prev.data.size == pat.nnz)
    slot = pat.slot
    if reuse:
        vals, marks = prev.data.copy(), last[1]
    else:
        vals, marks = np.empty(pat.nnz), None
        vals[slot[:pat.n_id]] = 1.0
    new_marks = []
    i = 0
    for row in lin.edges:
        for e in row:
            f = pat.fill[i]
            i += 1
            if f is None:
                new_marks.append(None)
                continue
            at, n_out, shape = f
            p = e.J.data if shape is False else e.p
            # what says this partial is unchanged: its float value, or the pattern's own (constant) Jacobian
            mark = (float(p) if np.ndim(p) == 0 else None) if shape is not False else (
                e.J if e.J is pat.keys[i - 1] else None)
            new_marks.append(mark)
            if marks is not None and mark is not None and (marks[i - 1] is mark or marks[i - 1] == mark):
                continue
            where = slot[at:at + n_out]
            sign = pat.fill_sign[i - 1]
            if shape is None or np.ndim(p) == 0:
                vals[where] = -p if sign < 0 else p
            else:
                p = np.broadcast_to(p, shape).ravel() if shape is not False and np.shape(p) != shape else np.ravel(p)
                vals[where] = -p if sign < 0 else p
    pat.last = (weakref.ref(vals), new_marks)
    # the pattern's index arrays, shared read-only (a caller that prunes copies them first)
    return sp.csc_matrix((vals, pat.indices, pat.indptr), shape=(n, n), copy=False)


def _ew_plan(block: Block, lin: Linearization | None):
    """For a block whose every edge is elementwise (a partial rule per edge, e.g. Sellar): per member
    ``(node, operand ids, nondiff, [(partial, slot, n_out, shape)])`` in the assembly pattern's order,
    so that :func:`dense_jacobian` fills ``A_SS`` without building a :class:`Linearization`; ``None``
    for other blocks. Built once from a linearization ``lin``."""
    c = cache_of(block)
    if c.ew_plan is not False:
        return c.ew_plan
    if not all(kind == "ew" for row in static_edges(block) for _, _, kind, _ in row):
        c.ew_plan = None
        return None
    if lin is None:
        return None
    pat = _pattern(block, lin)
    plan, i = [], 0
    for s, row in zip(block.steps, static_edges(block)):
        edges = []
        for _, _, _, d in row:
            at, n_out, shape = pat.fill[i]
            edges.append((d, at, n_out, shape))
            i += 1
        if edges:
            plan.append((s.node, tuple(s.args), s.prim.nondiff, edges))
    c.ew_plan = (pat, plan)
    return c.ew_plan


def dense_jacobian(block: Block, vals: list, ans: dict):
    """``A_SS`` as a dense ndarray straight from the partial rules when every edge is elementwise
    (the same numbers as ``assemble(..., dense=True)``), else ``None``."""
    hit = cache_of(block).ew_plan
    if hit is False:
        hit = _ew_plan(block, Linearization(block, vals, ans))
    if hit is None or hit[0].flat is None:
        return None
    pat, plan = hit
    data = np.empty(pat.size)
    data[:pat.n_id] = 1.0
    for node, arg_ids, nd, edges in plan:
        a_k = ans[node]
        fargs = [as_float64(a_k), *[vals[a] if i in nd else as_float64(vals[a]) for i, a in enumerate(arg_ids)]]
        for d, at, n_out, shape in edges:
            if shape is None:
                data[at] = d(*fargs)
            else:
                data[at:at + n_out].reshape(shape)[...] = d(*fargs)
    if pat.all_negative:
        np.negative(data[pat.n_id:], out=data[pat.n_id:])
    else:
        data *= pat.sign
    n = block.size
    return np.bincount(pat.flat, weights=data, minlength=n * n).reshape(n, n)


def block_jacobian(block: Block, vals: list, ans: dict) -> sp.csc_matrix:
    """``A_SS = ∂c_S/∂z_S`` assembled from the ops' sparse ``jac`` rules (explicit zeros removed)."""
    A = assemble(block, linearize(block, vals, ans))
    A.indices, A.indptr = A.indices.copy(), A.indptr.copy()    # pruned in place below
    A.eliminate_zeros()
    return A
