"""The linearization of a block at one point: the local partial ``∂op_d/∂z_u`` of every block edge.

Every block edge u -> d (u a member, d a member with u among its differentiable arguments)
carries the local partial ``∂op_d/∂z_u``. A :class:`Linearization` evaluates them once at a point
(elementwise ops: the partial array; ops with a sparse rule: the CSR matrix, when assembling or
when it is as cheap as the rule) and then applies them with plain numpy in every product, sweep
and assembly at that point.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'a.multiply']
>>> lin = linearize(blk, sol._vals, sol._states[id(blk)].ans)
>>> [(k, e.m) for k, row in enumerate(lin.edges) for e in row]     # (member, the member it reads)
[(0, 2), (1, 0), (2, 1)]
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Block
from ..rules.arrays import unbroadcast
from .kernels import as_float64, spmv_into
from .state import cache_of

try:     # scipy's CSC product kernel (y += A x), applied to J's CSR arrays it gives y += Jᵀ x
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
except ImportError:  # pragma: no cover - a scipy without the private module
    _csc_matvec = None

__all__ = ["Edge", "Linearization", "static_edges", "linearize", "remember"]


class Edge:
    """``∂op_k/∂z_m`` at one point: ``jvp(t)`` (arg -> out shape), ``vjp(g)`` (out -> arg shape)."""

    __slots__ = ("k", "m", "pos", "step", "args", "ans", "p", "J", "JT", "bcast", "arg_shape", "out_shape", "const")

    def __init__(self, k, m, pos, step, args, ans, memo, kind, d, const, fargs, arg_shape, out_shape):
        self.k, self.m, self.pos, self.step, self.args, self.ans = k, m, pos, step, args, ans
        self.arg_shape, self.out_shape = arg_shape, out_shape
        self.p = self.J = self.JT = self.const = None
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
                hit = const[(k, pos)] = [W, self.J, None]           # Jᵀ made by the first vjp that needs it
            self.const = hit

    def jac(self):
        """The CSR local Jacobian (``None`` = zero); computed once."""
        if self.J is None and self.p is None:
            s = self.step
            J = s.prim.jac(self.pos, self.ans, self.args, s.params)
            self.J = False if J is None else J
        return self.J if self.J is not False else None

    def _jt(self):
        """``Jᵀ`` as CSR, made once (and kept with a constant operand's Jacobian)."""
        if self.JT is None:
            self.JT = self.J.T.tocsr()
            if self.const is not None:
                self.const[2] = self.JT
        return self.JT

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
            return (self._jt() @ np.ravel(g)).reshape(self.arg_shape)
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
            spmv_into(J, t, out)
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
        J = self.J
        if J is not None:
            if self.JT is None and _rmatvec_into(J, g, out):    # Jᵀ g on J's own arrays: no copy of Jᵀ
                return
            spmv_into(self._jt(), g, out)
            return
        ct = self.vjp(g)
        if ct is not None:
            out += ct

    def abs_into(self, t, out, trans: bool) -> None:
        """``out += |∂op_k/∂z_m| t`` (``|·|ᵀ t`` with ``trans``): the magnitudes of a backward error."""
        if self.p is not None:
            out += np.abs(self.p) * t
            return
        J = self.jac()
        if J is not None:
            A = type(J)((np.abs(J.data), J.indices, J.indptr), shape=J.shape)
            out += ((A.T @ np.ravel(t)) if trans else (A @ np.ravel(t))).reshape(out.shape)

    def terms(self, trans: bool) -> float:
        """How many terms this edge adds to one entry of ``J t`` (``Jᵀ g``): 1 for an elementwise partial
        (a broadcast one sums ``out/arg`` of them transposed), a CSR row's (column's) most, else ``inf``."""
        if self.p is not None:
            return max(1, int(np.prod(self.out_shape)) // max(1, int(np.prod(self.arg_shape)))) \
                if trans and self.bcast else 1
        J = self.jac()
        if J is None or not isinstance(J, sp.csr_matrix):
            return 0 if J is None else float("inf")
        return int(np.bincount(J.indices).max() if trans else np.diff(J.indptr).max()) if J.nnz else 0


def _rmatvec_into(J, g, out) -> bool:
    """``out += Jᵀ g`` by scipy's CSC kernel on a float64 CSR ``J`` (``Jᵀ``'s CSC form is ``J``'s CSR
    arrays); ``False`` when it does not apply."""
    if (_csc_matvec is None or type(J) not in (sp.csr_matrix, sp.csr_array) or J.dtype != np.float64
            or g.dtype != np.float64 or not (g.flags.c_contiguous and out.flags.c_contiguous)
            or out.dtype != np.float64 or J.shape != (g.size, out.size)):
        return False
    try:
        _csc_matvec(J.shape[1], J.shape[0], J.indptr, J.indices, J.data, g.reshape(-1), out.reshape(-1))
    except (TypeError, ValueError):  # pragma: no cover - unusual index dtypes
        return False
    return True


class Linearization:
    """The block's local partials at the point ``(vals, ans)``, per member: ``edges[k]``.

    ``memo`` (optional, one forward solve long) keeps the Jacobians of edges that stay
    constant while only the members move (linear ops of outside operands, e.g. ``W @ z``).
    """

    def __init__(self, block: Block, vals: list, ans: dict, memo: dict | None = None):
        self.block, self.vals, self.ans, self.memo = block, vals, ans, memo
        self.edges: list[list[Edge]] = []
        const = cache_of(block).const_jac
        shapes = block.shapes
        for k, (s, static) in enumerate(zip(block.steps, static_edges(block))):
            row = []
            if static:
                args = [vals[a] for a in s.args]
                a_k = ans[s.node]
                out_shape = np.shape(a_k)
                fargs = None
                for m, pos, kind, d in static:
                    if kind == "ew" and fargs is None:   # the partials' float64 operands, once per op
                        nd = s.prim.nondiff
                        fargs = [as_float64(a_k)] + [a if i in nd else as_float64(a) for i, a in enumerate(args)]
                    row.append(Edge(k, m, pos, s, args, a_k, memo, kind, d, const, fargs, shapes[m], out_shape))
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


def static_edges(block: Block) -> list:
    """Per member, its block edges ``(m, pos, kind, partial)`` (value-independent, cached):
    ``ew`` elementwise op with a partial rule, ``maybe-spmat`` matmul with an outside
    operand (its Jacobian when that is a constant sparse matrix), ``gen`` anything else
    (the op's sparse ``jac`` or its JVP/VJP rules)."""
    c = cache_of(block)
    if c.edges is None:
        out = []
        for s in block.steps:
            prim, row = s.prim, []
            partials = prim.raw_partials
            for pos, u in s.diff:
                m = block.position.get(u)
                if m is None:
                    continue
                if prim.elementwise and partials is not None and not prim.user:
                    if partials[pos] is not None:          # None: the op ignores this argument
                        row.append((m, pos, "ew", partials[pos]))
                elif prim.name == "matmul" and not prim.user and any(
                        block.position.get(a) is None and a != u for a in s.args):
                    row.append((m, pos, "maybe-spmat", None))
                else:
                    row.append((m, pos, "gen", None))
            out.append(row)
        c.edges = out
    return c.edges


def linearize(block: Block, vals: list, ans: dict) -> Linearization:
    """The :class:`Linearization` at ``(vals, ans)``, cached for the latest such pair."""
    ref = cache_of(block).lin
    hit = ref() if ref is not None else None
    if hit is not None and hit.vals is vals and hit.ans is ans:
        return hit
    lin = Linearization(block, vals, ans)
    remember(block, lin)
    return lin


def remember(block: Block, lin: Linearization) -> None:
    """Make ``lin`` the block's current linearization, held weakly: whoever needs it (a
    forward solve, a ``BlockState``) keeps it alive, the block never keeps a solved point."""
    cache_of(block).lin = weakref.ref(lin)
