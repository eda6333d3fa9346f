"""A cyclic block as a nonlinear system: ``c_S(z_S)``, ``A_SS`` and its matrix-free products.

A block S stacks its members' values into ``z_S`` (member k at ``offsets[k]``). Its
constraints are ``c_d = z_d - f_d(args)`` (explicit) or ``c_d = r_d(args)`` (residual)
and ``A_SS = ∂c_S/∂z_S``. Everything here works from the primitives' rules only:
the assembled ``A_SS`` from ``jac``, the products ``A_SS v`` / ``A_SSᵀ w`` from
``jvp`` / ``vjp``, and the Gauss–Seidel sweeps (forward substitution with the part of
``A_SS`` that follows the block order) used both as a fixed-point iteration and as a
Krylov preconditioner.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); a = prog.variable("a"); b = prog.variable("b")
>>> _ = prog.define(a, 0.5 * b + x); _ = prog.define(b, 0.25 * a); _ = prog.output(a + b, name="o")
>>> sol = prog.solve(x=1.0)
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'multiply_1']
>>> A = block_jacobian(blk, sol._vals, sol._states[id(blk)].ans)   # rows/cols in block order
>>> A.toarray().tolist()
[[1.0, 0.0, -1.0], [-0.25, 1.0, 0.0], [0.0, -0.5, 1.0]]
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..rules.arrays import unbroadcast
from ..compile.schedule import Block

try:     # scipy's CSR product kernel (y += A x); the public ``@`` is the fallback
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - a scipy without the private module
    _csr_matvec = None
try:     # scipy's O(nnz) COO -> CSR placement (duplicates kept) and per-row index sort
    from scipy.sparse._sparsetools import coo_tocsr as _coo_tocsr, csr_sort_indices as _csr_sort_indices
except ImportError:  # pragma: no cover - a scipy without the private module
    _coo_tocsr = _csr_sort_indices = None
_CSR = (sp.csr_matrix, sp.csr_array)

__all__ = ["BlockState", "describe", "gather", "scatter", "stack", "split", "block_residual", "evaluate",
           "block_jacobian", "dense_jacobian", "has_jac", "csc_slots", "Linearization", "linearize", "remember",
           "assemble",
           "matvec", "rmatvec",
           "sweep", "rsweep", "sweep_affine", "rsweep_affine", "sweep_solve", "sweep_rate",
           "warm_start", "remember_answer",
           "residual_norm", "converged"]


@dataclass
class BlockState:
    """What a forward block solve leaves for the adjoint and tangent solves.

    ``ans``: op outputs of the members at the solution (the VJP/JVP rules' ``ans``);
    ``lu``/``A``: sparse LU and ``A_SS`` at the solution when a direct method made them;
    ``method``: the forward method used; ``iterations``/``history``: the residual history;
    ``cache``: per-solve linear-algebra objects (ILU preconditioner, linear solver choice).
    """

    ans: dict[int, np.ndarray] = field(default_factory=dict)
    lu: object = None
    A: sp.spmatrix | None = None
    iterations: int = 0
    history: list = field(default_factory=list)
    method: str = ""
    cache: dict = field(default_factory=dict)


def describe(block: Block) -> str:
    """``a, b, c`` (at most 8 names) for error messages."""
    shown = block.names[:8]
    return ", ".join(shown) + (f", ... ({len(block.names)} nodes)" if len(block.names) > 8 else "")


# ------------------------------------------------------------- vector layout
def gather(block: Block, vals: list) -> np.ndarray:
    """``z_S`` from the value slots."""
    return np.concatenate([np.ravel(vals[n]) for n in block.nodes]).astype(np.float64, copy=False)


def scatter(block: Block, vals: list, z: np.ndarray) -> None:
    """Write ``z_S`` back into the value slots (copies)."""
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        vals[n] = np.array(z[off:off + size]).reshape(shape)


def stack(block: Block, parts: list) -> np.ndarray:
    """One flat vector from per-member parts (``None`` = zero)."""
    out = np.zeros(block.size)
    for (a, b, shape), p in zip(_layout(block)[0], parts):
        if p is not None:       # broadcast into the member's slice
            if shape is None:
                out[a:b] = p
            else:
                out[a:b].reshape(shape)[...] = p
    return out


def split(block: Block, x: np.ndarray) -> list:
    """Per-member arrays (member shapes) from a flat vector."""
    return [np.array(x[off:off + size]).reshape(shape)
            for off, size, shape in zip(block.offsets, block.sizes, block.shapes)]


def residual_norm(c: np.ndarray) -> float:
    """``max|c|`` (0 for an empty vector; NaN when ``c`` holds one)."""
    return float(np.abs(c).max()) if c.size else 0.0


def converged(c: np.ndarray, z: np.ndarray, tol: float) -> bool:
    """The explicit constraints' test, per entry (SPEC §1 "Scale"): ``|c_d| <= tol·max(1, |z_d|)``
    for every ``d`` (never against ``max|z|`` over the block). Residual constraints are judged by
    :func:`lagrangeprop.blocks.scale.constraint_scale`."""
    if not c.size:
        return True
    with np.errstate(all="ignore"):
        r = np.abs(c) / np.maximum(1.0, np.abs(z))
    return bool(np.all(r <= tol))


# ---------------------------------------------------------- c_S and A_SS
def _evaluators(block: Block) -> list:
    """Per member, the bare numpy function of an elementwise built-in op (no params, no
    non-differentiable operands), a sparse-matrix product (:func:`_spmatmul`), else ``None``
    (the op's ``value``); cached per block."""
    if "eval" not in block.cache:
        out = []
        for s in block.steps:
            p = s.prim
            fn = getattr(p, "raw_fn", None)
            ok = getattr(p, "elementwise", False) and fn is not None and not p.user and not p.nondiff \
                and not s.params
            if not ok and p.name == "matmul" and not p.user and not s.params:
                out.append(lambda a, b, p=p: _spmatmul(a, b, p))
            else:
                out.append(fn if ok else None)
        block.cache["eval"] = out
    return block.cache["eval"]


def _spmatmul(a, b, prim) -> np.ndarray:
    """``a @ b``: scipy's CSR kernel directly for a float64 CSR matrix times a float64 vector (the same
    kernel and result as ``a @ b``, without the operator dispatch), else the op's ``value``."""
    if (_csr_matvec is not None and type(a) in _CSR and type(b) is np.ndarray and a.dtype == np.float64
            and b.dtype == np.float64 and b.ndim == 1 and a.shape[1] == b.shape[0] and b.flags.c_contiguous):
        y = np.zeros(a.shape[0])
        try:
            _csr_matvec(a.shape[0], a.shape[1], a.indptr, a.indices, a.data, b, y)
            return y
        except (TypeError, ValueError):  # pragma: no cover - unusual index dtypes
            pass
    return prim.value((a, b), {})


def evaluate(block: Block, k: int, vals: list, fn=None) -> np.ndarray:
    """The op output of member ``k`` at the current values (float64 ndarray)."""
    s = block.steps[k]
    args = [vals[u] for u in s.args]
    if fn is not None:
        # a member is float64, so the op computes in float64; only the container may differ
        a = fn(*args)
        if type(a) is np.ndarray and a.dtype is _F64:
            return a
        return np.asarray(a, dtype=np.float64)
    return np.asarray(s.prim.value(args, s.params), dtype=np.float64)


def block_residual(block: Block, vals: list) -> tuple[np.ndarray, dict]:
    """``c_S`` at the current member values, and each member's op output."""
    ans, parts = {}, []
    for k, (s, fn) in enumerate(zip(block.steps, _evaluators(block))):
        a = evaluate(block, k, vals, fn)
        ans[s.node] = a
        parts.append(np.ravel(a) if s.residual else np.ravel(vals[s.node] - a))
    return (np.concatenate(parts) if parts else np.zeros(0)), ans


def has_jac(block: Block) -> bool:
    """Whether every member op has a sparse Jacobian rule (needed to assemble ``A_SS``)."""
    if "has_jac" not in block.cache:
        block.cache["has_jac"] = all(s.prim.has_jac for s in block.steps)
    return block.cache["has_jac"]


# ------------------------------------------- the linearization at one point
# Every block edge u -> d (u a member, d a member with u among its differentiable
# arguments) carries the local partial ∂op_d/∂z_u. A Linearization evaluates them once
# at a point (elementwise ops: the partial array; ops with a sparse rule: the CSR matrix,
# when assembling or when it is as cheap as the rule) and then applies them with plain
# numpy in every product, sweep and assembly at that point.
_F64 = np.dtype(np.float64)


def _float(a):
    return a if type(a) is np.ndarray and a.dtype is _F64 else np.asarray(a, dtype=np.float64)


class _Edge:
    """``∂op_k/∂z_m`` at one point: ``jvp(t)`` (arg -> out shape), ``vjp(g)`` (out -> arg shape)."""

    __slots__ = ("k", "m", "pos", "step", "args", "ans", "p", "J", "JT", "bcast", "arg_shape", "out_shape")

    def __init__(self, k, m, pos, step, args, ans, memo, kind, d, const, fargs, arg_shape, out_shape):
        self.k, self.m, self.pos, self.step, self.args, self.ans = k, m, pos, step, args, ans
        self.arg_shape, self.out_shape = arg_shape, out_shape
        self.p = self.J = self.JT = None
        self.bcast = arg_shape != out_shape
        if kind == "ew":
            self.p = d(*fargs)
        elif memo is not None and (k, pos) in memo:
            self.J, self.JT = memo[(k, pos)]
        elif kind == "maybe-spmat" and sp.issparse(args[1 - pos]):
            # a constant sparse operand: the Jacobian never changes, kept between solves
            W = args[1 - pos]
            hit = const.get((k, pos))
            if hit is not None and hit[0] is W:
                self.J, self.JT = hit[1], hit[2]
            else:
                if pos == 1 and W.ndim == 2 and len(self.arg_shape) == 1:
                    self.J = sp.csr_matrix(W, dtype=np.float64)      # d(W z)/dz = W
                else:
                    self.jac()
                if self.J is not False:
                    self.JT = self.J.T.tocsr()
                const[(k, pos)] = (W, self.J, self.JT)

    def jac(self):
        """The CSR local Jacobian (``None`` = zero); computed once."""
        if self.J is None and self.p is None:
            s = self.step
            J = s.prim.jac(self.pos, self.ans, self.args, s.params)
            self.J = False if J is None else J
        return self.J if self.J is not False else None

    def jvp(self, t):
        if self.p is not None:
            out = t if (np.isscalar(self.p) and self.p == 1.0) else t * self.p
            return np.broadcast_to(out, self.out_shape) if self.bcast else out
        J = self.J if self.J is not None else None
        if J is False:
            return None
        if J is not None:
            return (J @ np.ravel(t)).reshape(self.out_shape)
        s = self.step
        return s.prim.jvp(self.pos, t, self.ans, self.args, s.params)

    def vjp(self, g):
        if self.p is not None:
            out = g if (np.isscalar(self.p) and self.p == 1.0) else g * self.p
            return unbroadcast(out, self.arg_shape) if self.bcast or np.shape(out) != self.arg_shape else out
        if self.J is False:
            return None
        if self.J is not None:
            if self.JT is None:
                self.JT = self.J.T.tocsr()
            return (self.JT @ np.ravel(g)).reshape(self.arg_shape)
        s = self.step
        return s.prim.vjp(self.pos, g, self.ans, self.args, s.params)

    # in-place forms for the sweeps and products: ``out += J t`` / ``out += Jᵀ g`` into a view of
    # a block vector, without temporaries for unit partials and sparse Jacobians
    def jvp_into(self, t, out) -> None:
        p = self.p
        if p is not None:
            if type(p) is float and p == 1.0:
                out += t
            else:
                out += t * p
            return
        J = self.J
        if J is False:
            return
        if J is not None:
            _spmv_into(J, t, out)
            return
        d = self.jvp(t)
        if d is not None:
            out += d

    def vjp_into(self, g, out) -> None:
        p = self.p
        if p is not None:
            if not self.bcast and type(p) is float and p == 1.0:
                out += g
            elif self.bcast:     # p broadcasts to the output's shape, so only then do the shapes differ
                out += unbroadcast(g * p, self.arg_shape)
            else:
                out += g * p
            return
        if self.J is False:
            return
        if self.J is not None:
            if self.JT is None:
                self.JT = self.J.T.tocsr()
            _spmv_into(self.JT, g, out)
            return
        ct = self.vjp(g)
        if ct is not None:
            out += ct


def _spmv_into(J, x: np.ndarray, out: np.ndarray) -> None:
    """``out += J @ x`` (``x``, ``out`` flat-contiguous views); scipy's CSR kernel directly when it applies
    (no temporary, none of the operator dispatch, which costs as much as a small product)."""
    if (_csr_matvec is not None and type(J) in _CSR and J.dtype == np.float64 and x.dtype == np.float64
            and x.flags.c_contiguous and out.flags.c_contiguous and J.shape == (out.size, x.size)):
        try:
            _csr_matvec(J.shape[0], J.shape[1], J.indptr, J.indices, J.data, x.reshape(-1), out.reshape(-1))
            return
        except (TypeError, ValueError):  # pragma: no cover - unusual index dtypes
            pass
    out += np.reshape(J @ np.ravel(x), out.shape)


class Linearization:
    """The block's local partials at the point ``(vals, ans)``, per member: ``edges[k]``.

    ``memo`` (optional, one forward solve long) keeps the Jacobians of edges that stay
    constant while only the members move (linear ops of outside operands, e.g. ``W @ z``).
    """

    def __init__(self, block: Block, vals: list, ans: dict, memo: dict | None = None):
        self.block, self.vals, self.ans, self.memo = block, vals, ans, memo
        self.edges: list[list[_Edge]] = []
        const = block.cache.setdefault("const_jac", {})
        shapes = block.shapes
        for k, (s, static) in enumerate(zip(block.steps, _static_edges(block))):
            row = []
            if static:
                args = [vals[a] for a in s.args]
                a_k = ans[s.node]
                out_shape = np.shape(a_k)
                fargs = None
                for m, pos, kind, d in static:
                    if kind == "ew" and fargs is None:   # the partials' float64 operands, once per op
                        nd = s.prim.nondiff
                        fargs = [_float(a_k)] + [a if i in nd else _float(a) for i, a in enumerate(args)]
                    row.append(_Edge(k, m, pos, s, args, a_k, memo, kind, d, const, fargs, shapes[m], out_shape))
            self.edges.append(row)

    def jacobians(self) -> None:
        """Compute every non-elementwise edge's CSR Jacobian (for assembly)."""
        memo = self.memo
        for k, row in enumerate(self.edges):
            s = self.block.steps[k]
            # an op linear in each argument (prim.linear): its Jacobian w.r.t. its only member
            # argument depends on operands outside the block alone, which a forward solve never changes
            const = memo is not None and s.prim.linear and not s.prim.user and \
                sum(1 for _, u in s.diff if u in self.block.position) == 1
            for e in row:
                if e.p is None:
                    J = e.jac()
                    if const and (k, e.pos) not in memo and J is not None:
                        memo[(k, e.pos)] = (J, e.JT)


def _static_edges(block: Block) -> list:
    """Per member, its block edges ``(m, pos, kind, partial)`` (value-independent, cached):
    ``ew`` elementwise op with a partial rule, ``maybe-spmat`` matmul with an outside
    operand (its Jacobian when that is a constant sparse matrix), ``gen`` anything else
    (the op's sparse ``jac`` or its JVP/VJP rules)."""
    if "edges" not in block.cache:
        out = []
        for s in block.steps:
            prim, row = s.prim, []
            partials = getattr(prim, "raw_partials", None)
            for pos, u in s.diff:
                m = block.position.get(u)
                if m is None:
                    continue
                if getattr(prim, "elementwise", False) and partials is not None and not prim.user:
                    if partials[pos] is not None:          # None: the op ignores this argument
                        row.append((m, pos, "ew", partials[pos]))
                elif prim.name == "matmul" and not prim.user and any(
                        block.position.get(a) is None and a != u for a in s.args):
                    row.append((m, pos, "maybe-spmat", None))
                else:
                    row.append((m, pos, "gen", None))
            out.append(row)
        block.cache["edges"] = out
    return block.cache["edges"]


def linearize(block: Block, vals: list, ans: dict) -> Linearization:
    """The :class:`Linearization` at ``(vals, ans)``, cached for the latest such pair."""
    ref = block.cache.get("lin")
    hit = ref() if ref is not None else None
    if hit is not None and hit.vals is vals and hit.ans is ans:
        return hit
    lin = Linearization(block, vals, ans)
    remember(block, lin)
    return lin


def remember(block: Block, lin: Linearization) -> None:
    """Make ``lin`` the block's current linearization, held weakly: whoever needs it (a
    forward solve, a ``BlockState``) keeps it alive, the block never keeps a solved point."""
    block.cache["lin"] = weakref.ref(lin)


class _Pattern:
    """Index maps of ``A_SS``'s assembly, computed once per block: every local entry's slot
    in the CSC data array and its flat position in a dense matrix; per edge, the slice of
    the entry list its local partial fills."""

    def __init__(self, block: Block, lin: Linearization):
        n = block.size
        rows, cols, signs, self.keys, self.fill = [], [], [], [], []
        n_id = 0
        for k, s in enumerate(block.steps):
            if not s.residual:
                idx = np.arange(block.offsets[k], block.offsets[k] + block.sizes[k])
                rows.append(idx); cols.append(idx); signs.append(np.ones(idx.size))
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
                    rows.append(r0 + np.arange(n_out))
                    cols.append(c0 + np.broadcast_to(np.arange(n_arg).reshape(e.arg_shape), e.out_shape).ravel())
                    self.keys.append(None)
                    # a scalar output fills one entry; else a view of the slice in the output's shape
                    self.fill.append((at, n_out, e.out_shape if e.out_shape != () else None))
                else:
                    J = e.jac()
                    if J is None:
                        self.keys.append(False)
                        self.fill.append(None)
                        continue
                    n_out = J.nnz
                    rows.append(r0 + np.repeat(np.arange(J.shape[0]), np.diff(J.indptr)))
                    cols.append(c0 + J.indices)
                    self.keys.append(J)
                    self.fill.append((at, n_out, False))
                signs.append(np.full(n_out, sign))
                at += n_out
        self.size = at
        self.sign = np.concatenate(signs) if signs else np.zeros(0)
        self.all_negative = bool(np.all(self.sign[n_id:] < 0))
        rows = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
        cols = np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)
        self.n = n
        # flat positions in a dense matrix: only small blocks are ever assembled dense
        self.flat = rows * n + cols if n * n <= 16 * 10**6 else None
        self.indptr, self.indices, self.slot = csc_slots(rows, cols, n)
        self.nnz = self.indices.size

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
        uniq, slot = np.unique(cols * n + rows, return_inverse=True)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // max(n, 1), minlength=n))])
        return indptr.astype(np.int32), (uniq % max(n, 1)).astype(np.int32), slot.ravel()
    # the CSR layout of Aᵀ is the CSC layout of A; the data carry each entry's number
    Bp, Bj, Bx = np.empty(n + 1, np.int32), np.empty(m, np.int32), np.empty(m, np.int64)
    _coo_tocsr(n, n, m, cols.astype(np.int32), rows.astype(np.int32), np.arange(m, dtype=np.int64), Bp, Bj, Bx)
    _csr_sort_indices(n, Bp, Bj, Bx)
    new = np.ones(m, dtype=bool)                  # first of its (column, row) run
    if m:
        new[1:] = Bj[1:] != Bj[:-1]
        new[Bp[:-1][np.diff(Bp) > 0]] = True      # a column's first entry is new even if the rows repeat
    first = np.cumsum(new)
    slot = np.empty(m, dtype=np.int64)
    slot[Bx] = first - 1
    indptr = np.concatenate([[0], first])[Bp].astype(np.int32)
    return indptr, Bj[new], slot


def _pattern(block: Block, lin: Linearization) -> _Pattern:
    pat = block.cache.get("pattern")
    if pat is None or not pat.matches(lin):
        pat = _Pattern(block, lin)
        block.cache["pattern"] = pat
    return pat


def assemble(block: Block, lin: Linearization, dense: bool = False):
    """``A_SS`` at the linearization's point: a CSC matrix (explicit zeros kept, the pattern
    is fixed per block) or, with ``dense=True``, an ndarray."""
    lin.jacobians()
    pat = _pattern(block, lin)
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
    n = block.size
    if dense and pat.flat is not None:
        return np.bincount(pat.flat, weights=data, minlength=n * n).reshape(n, n)
    vals = np.bincount(pat.slot, weights=data, minlength=pat.nnz)
    # copies of the index arrays: callers may prune the matrix in place (eliminate_zeros)
    return sp.csc_matrix((vals, pat.indices.copy(), pat.indptr.copy()), shape=(n, n))


def _ew_plan(block: Block, lin: Linearization | None):
    """For a block whose every edge is elementwise (a partial rule per edge, e.g. Sellar): per member
    ``(node, operand ids, nondiff, [(partial, slot, n_out, shape)])`` in the assembly pattern's order,
    so that :func:`dense_jacobian` fills ``A_SS`` without building a :class:`Linearization`; ``None``
    for other blocks. Built once from a linearization ``lin``."""
    if "ew_plan" in block.cache:
        return block.cache["ew_plan"]
    if not all(kind == "ew" for row in _static_edges(block) for _, _, kind, _ in row):
        block.cache["ew_plan"] = None
        return None
    if lin is None:
        return None
    pat = _pattern(block, lin)
    plan, i = [], 0
    for s, row in zip(block.steps, _static_edges(block)):
        edges = []
        for _, _, _, d in row:
            at, n_out, shape = pat.fill[i]
            edges.append((d, at, n_out, shape))
            i += 1
        if edges:
            plan.append((s.node, tuple(s.args), s.prim.nondiff, edges))
    block.cache["ew_plan"] = (pat, plan)
    return block.cache["ew_plan"]


def dense_jacobian(block: Block, vals: list, ans: dict):
    """``A_SS`` as a dense ndarray straight from the partial rules when every edge is elementwise
    (the same numbers as ``assemble(..., dense=True)``), else ``None``."""
    hit = block.cache.get("ew_plan", False)
    if hit is False:
        hit = _ew_plan(block, Linearization(block, vals, ans))
    if hit is None or hit[0].flat is None:
        return None
    pat, plan = hit
    data = np.empty(pat.size)
    data[:pat.n_id] = 1.0
    for node, arg_ids, nd, edges in plan:
        a_k = ans[node]
        fargs = [_float(a_k), *[vals[a] if i in nd else _float(vals[a]) for i, a in enumerate(arg_ids)]]
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
    A.eliminate_zeros()
    return A


# ---------------------------------------------- matrix-free A v and Aᵀ w
def _layout(block: Block) -> tuple:
    """Per member ``(start, stop, shape or None)`` (``None``: a flat slice already has the member's
    shape), and the explicit members' positions; cached per block."""
    if "layout" not in block.cache:
        sl = tuple((off, off + size, None if shape == (size,) else shape)
                   for off, size, shape in zip(block.offsets, block.sizes, block.shapes))
        block.cache["layout"] = (sl, tuple(k for k, s in enumerate(block.steps) if not s.residual))
    return block.cache["layout"]


def _views(block: Block, x: np.ndarray) -> list:
    """Per-member views (member shapes) into a flat block vector."""
    return [x[a:b] if shape is None else x[a:b].reshape(shape) for a, b, shape in _layout(block)[0]]


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
    vv, av = _views(block, v), _views(block, acc)
    for k, row in enumerate(lin.edges):
        o = av[k]
        for e in row:
            e.jvp_into(vv[e.m], o)
    (sl, explicit) = _layout(block)
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
    (sl, explicit) = _layout(block)
    if len(explicit) == len(sl):
        out, g = np.array(w), np.negative(w)     # g: w with the explicit members' parts negated
    else:
        out = np.zeros(block.size)
        g = np.array(w)
        for k in explicit:
            a, b, _ = sl[k]
            out[a:b] = w[a:b]
            np.negative(g[a:b], out=g[a:b])
    gv, ov = _views(block, g), _views(block, out)
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
    tv = _views(block, t)
    if x is None:
        for k, e in _edge_order(lin)[0]:
            e.jvp_into(tv[e.m], tv[k])
        return t
    xv = _views(block, x)
    for k, row in enumerate(lin.edges):       # member k is final once its own edges are in
        o = tv[k]
        for e in row:
            e.jvp_into(tv[e.m] if e.m < k else xv[e.m], o)
    return t


def rsweep_affine(block: Block, lin: Linearization, b: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """``M⁻ᵀ (b + Nᵀ x)`` (``x=None``: ``M⁻ᵀ b``): one transposed Gauss–Seidel sweep from ``x``
    (backward substitution with the local partials in reverse block order, one VJP per edge)."""
    acc = np.array(b, dtype=np.float64)
    av = _views(block, acc)
    _, upper, lower_rev = _edge_order(lin)
    if x is not None:
        xv = _views(block, x)
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
    sl = _layout(block)[0]
    return [sl[k][:2] for k in ks]


def remember_answer(block: Block, b: np.ndarray, x: np.ndarray, trans: bool) -> None:
    """Keep ``x``, the answer to ``A_SS x = b`` (``A_SSᵀ x = b``), as the next solve's warm start."""
    block.cache["warm_T" if trans else "warm_N"] = (b, x)


def warm_start(block: Block, b: np.ndarray, bnorm: float, trans: bool):
    """The block's last answer to a system of this kind (adjoint or tangent) when its
    right-hand side was close to ``b`` (a repeated solve), else ``None`` (start from zero)."""
    hit = block.cache.get("warm_T" if trans else "warm_N")
    if hit is None:
        return None
    b_old, x_old = hit
    if b_old.shape != b.shape or x_old.shape != (block.size,):
        return None
    return x_old if float(np.linalg.norm(b - b_old)) <= 0.5 * bnorm else None


_CHECK_DENSE = 128      # explicit blocks up to this size assemble A_SS for the per-equation check of a sweep solve


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
    from ..linalg.linsolve import backward_error, krylov, stationary
    lin = linearize(block, vals, ans)
    n = block.size
    b = np.asarray(b, dtype=np.float64)
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return np.zeros(n)
    if A is None and n <= _CHECK_DENSE and has_jac(block):
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
        x = stationary(lambda x: aff(block, lin, b, x), x0, residual, watch=_watch(block, lin, trans),
                       names=block.names, what=what)
    else:
        import scipy.sparse.linalg as spla
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
