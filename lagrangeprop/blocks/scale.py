"""The scale each constraint is judged against (SPEC §1 "Scale").

Every convergence test, line search, Krylov stopping test and certificate in lagrangeprop measures a
constraint violation *per constraint entry*, relative to that entry's own scale ``s_d``:

    converged  ⇔  max_d |c_d| / s_d <= tol

never relative to a maximum over the block or program (a 1e15 intermediate ``Is·exp(w/Vt)`` in one
equation must not make an O(1) violation of another look small).

The scale ``s_d`` (elementwise, the shape of ``c_d``):

- explicit ``c_d = z_d - f_d``: ``s_d = max(1, |z_d|)``.
- residual ``c_d = r_d``: the magnitude ``M`` of the *terms* of the residual expression, found by
  walking the expression through the block's own arithmetic members:

  ========================  =========================================================
  ``a + b``, ``a - b``      ``max(M(a), M(b))``   (the terms of a sum: its arguments)
  ``-a``                    ``M(a)``
  ``a * b``                 ``M(a) · M(b)``       (so ``Is·exp(w/Vt)`` has its own size)
  ``a / b``                 ``M(a) / |b|``
  ``a ** p`` (``p > 0``)    ``M(a) ** p``;  ``square(a)``: ``M(a)²``
  ``sum(a)``, ``mean(a)``    ``max M(a)`` over the summed axes (``/n`` for a mean)
  reshape, transpose,       the same op on ``M`` of the arguments (stacked equations keep
  getitem, concatenate,     each equation's own scale)
  stack, identity
  anything else             ``|value|``           (``A @ b``, exp, log, inputs, constants, other blocks)
  ========================  =========================================================

  A residual whose root op is ``A @ b`` has the terms ``A_ij b_j``: ``|A| @ M(b)``. When the root
  op is none of these (``log(w / x)``, ``sin(w)``, a user op), its value has no terms to compare
  with: the scale is ``max(1, M(args))``
  (elementwise when the arguments broadcast to the residual's shape, else their largest entry).
  A tiny absolute floor (``TINY = 1e-300``) avoids ``0/0`` only.

So the diode ``1e-15·exp(w/Vt) - x`` is judged against ``max(|1e-15·exp(w/Vt)|, |x|)``: at the guess
``w = 0.9`` (``|r| ≈ 1.27``, scale 1.27) it is far from converged, at the root (scale ``1e-3``) an
accuracy of ``tol·1e-3`` is required.

Why no floor of 1: a floor of 1 on a residual would accept any ``|r| < tol``, and with it any point
of a residual whose terms are all tiny (``1e-15·exp(w/Vt) - 1e-3`` near its root, or currents in
amperes). A floor of 1 on the residual's unknown inside its terms fails the same way once a
coefficient is large: Robertson's ``3e7·y2² + 1e4·y2·y3 - 0.04·y1`` at ``y2 ≈ 4e-5`` has terms of
``0.04`` but would be judged against ``3e7`` (a 4% error in ``y2`` accepted). So every value enters
with its own magnitude. The price is paid only at a root where every term vanishes (``A w = 0``,
``w³ + w = 0``): Newton then iterates until the terms underflow to zero, a few extra steps for a
regular root (quadratic, or at the rate of rounding for a linear block); a root whose Jacobian is
singular there is not a solution the implicit function theorem can differentiate anyway.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); w = prog.variable("w")
>>> _ = prog.residual(w, 1e-15 * lp.exp(w / 0.025875) - x); _ = prog.output(w * 1.0, name="o")
>>> blk = prog.compile().blocks[0]
>>> sol = prog.solve(x=1e-3, guess={"w": 0.7})
>>> s = constraint_scale(blk, sol._vals)
>>> bool(abs(s[blk.position[blk.nodes[0]]] - 1e-3) < 1e-12)
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Block
from .state import cache_of

__all__ = ["TINY", "ROUNDING", "constraint_scale", "constraint_noise", "scaled_max", "explicit_scale"]

TINY = 1e-300
_DEPTH = 64          # the walk through a block's arithmetic members stops here (|value| beyond)
_UNCOVERED = (ValueError, TypeError, AttributeError, NotImplementedError)   # -> |value| instead
_ARITH = frozenset({"add", "subtract", "negative", "multiply", "divide", "power", "square"})
_CONTRACTIONS = frozenset({"matmul", "dot"})
_SUMMING = _CONTRACTIONS | {"sum", "mean"}
ROUNDING = 8.0       # c_d within ROUNDING·eps·T_d of zero is zero: the rounding of evaluating it
_EPS = float(np.finfo(np.float64).eps)
_STRUCTURE = frozenset({"identity", "copy", "reshape", "transpose", "getitem", "concatenate", "stack"})


def _absval(v) -> np.ndarray:
    if sp.issparse(v):
        return abs(v)
    return np.abs(np.asarray(v, dtype=np.float64))


def explicit_scale(z) -> np.ndarray:
    """``max(1, |z|)`` elementwise: the scale of an explicit constraint ``c_d = z_d - f_d``."""
    return np.maximum(1.0, np.abs(z))


def _terms(block: Block, k: int, vals: list, memo: dict, depth: int, sums: bool = False):
    """``M`` of member ``k``'s op output computed from its arguments (module docstring), or ``None``
    when its op is not arithmetic. ``sums``: the summed size ``T`` of the terms instead (a sum's
    entries and a product's ``A_ij b_j`` added, not their largest), which bounds the rounding."""
    s = block.steps[k]
    name = s.prim.name
    if s.prim.user:
        return None
    args = s.args
    if name in _STRUCTURE:
        # moving or stacking entries moves their terms: the same op on the magnitudes
        return np.asarray(s.prim.value([_mag(block, u, vals, memo, depth, sums) for u in args], s.params),
                          dtype=np.float64)
    if name in ("sum", "mean"):
        # the terms of a sum are its entries: their largest magnitude (over the same axes), /n for a mean
        m = np.broadcast_to(_mag(block, args[0], vals, memo, depth, sums), np.shape(vals[args[0]]))
        axis = s.params.get("axis")
        keep = bool(s.params.get("keepdims", False))
        out = np.sum(m, axis=axis, keepdims=keep) if sums else np.max(m, axis=axis, keepdims=keep, initial=0.0)
        return out / max(1, m.size // max(1, np.size(out))) if name == "mean" else out
    if sums and name in _CONTRACTIONS and not s.params:
        # T of (A @ b)_i: the summed size of its terms A_ij b_j, |A| @ T(b)
        a, b = (_mag(block, u, vals, memo, depth, sums) for u in args)
        return np.asarray(a @ b if name == "matmul" or sp.issparse(a) else np.dot(a, b), dtype=np.float64)
    if s.params or name not in _ARITH:
        return None
    if name in ("add", "subtract"):
        return np.maximum(_mag(block, args[0], vals, memo, depth, sums), _mag(block, args[1], vals, memo, depth, sums))
    if name == "negative":
        return _mag(block, args[0], vals, memo, depth, sums)
    if name == "square":
        m = _mag(block, args[0], vals, memo, depth, sums)
        return m * m
    if name == "multiply":
        return _mag(block, args[0], vals, memo, depth, sums) * _mag(block, args[1], vals, memo, depth, sums)
    if name == "divide":
        b = np.abs(np.asarray(vals[args[1]], dtype=np.float64))
        return _mag(block, args[0], vals, memo, depth, sums) / np.where(b > 0, b, np.inf)
    # power
    p = vals[args[1]]
    if args[1] in block.position or np.ndim(p) or not float(p) > 0:
        return None
    return _mag(block, args[0], vals, memo, depth, sums) ** float(p)


def _mag(block: Block, u: int, vals: list, memo: dict, depth: int, sums: bool = False):
    """``M(u)`` (``T(u)`` with ``sums``): the magnitude of the terms behind the value of node ``u``
    (module docstring)."""
    hit = memo.get(u)
    if hit is not None:
        return hit
    k = block.position.get(u)
    v = vals[u]
    if k is None or depth > _DEPTH:
        out = _absval(v)
    elif block.steps[k].residual:
        out = _absval(v)                         # the residual's unknown: its own magnitude
    else:
        with np.errstate(all="ignore"):
            try:
                out = _terms(block, k, vals, memo, depth + 1, sums)
            except _UNCOVERED:      # shapes the rules above do not cover
                out = None
        if out is None or np.shape(out) != np.shape(v):
            out = _absval(v)
    memo[u] = out
    return out


def _residual_scale(block: Block, k: int, vals: list, memo: dict) -> np.ndarray:
    s = block.steps[k]
    shape = block.shapes[k]
    out = None
    with np.errstate(all="ignore"):
        try:
            out = _terms(block, k, vals, memo, 1)
            if out is None and s.prim.name == "matmul" and not s.prim.user and not s.params:
                # A @ b at the root: the terms of row i are A_ij b_j, so |A| @ M(b)
                a, b = (_mag(block, u, vals, memo, 1) for u in s.args)
                out = np.asarray(a @ b, dtype=np.float64)
            if out is None:     # a non-arithmetic root op: max(1, M(args))
                ms = [_mag(block, u, vals, memo, 1) for i, u in enumerate(s.args) if i not in s.prim.nondiff]
                # a sparse operand (a matrix constant) counts by its largest entry: never densified
                ms = [np.float64(m.max()) if sp.issparse(m) else m for m in ms]
                try:
                    out = np.maximum.reduce([np.broadcast_to(m, shape) for m in ms] + [np.ones(shape)])
                except ValueError:
                    out = np.full(shape, max([1.0] + [float(np.max(m)) for m in ms if np.size(m)]))
        except _UNCOVERED:
            out = None
    if out is None or np.shape(out) != shape:
        out = np.full(shape, float(np.max(out)) if out is not None and np.size(out) else 1.0)
    return np.maximum(np.asarray(out, dtype=np.float64), TINY)


def _residual_members(block: Block) -> list:
    """``(k, start, stop)`` of the block's residual members; cached."""
    c = cache_of(block)
    hit = c.residual_members
    if hit is None:
        hit = c.residual_members = [(k, off, off + size) for k, (s, off, size) in
                                               enumerate(zip(block.steps, block.offsets, block.sizes))
                                               if s.residual]
    return hit


def constraint_scale(block: Block, vals: list, z: np.ndarray | None = None) -> np.ndarray:
    """The scale of every entry of ``c_S`` at the current values (block vector layout); ``z``: the
    members' stacked values when the caller has them (``gather(block, vals)`` otherwise)."""
    if z is None:
        z = np.concatenate([np.ravel(vals[n]) for n in block.nodes]) if block.nodes else np.zeros(0)
    out = np.maximum(1.0, np.abs(z))             # explicit members; residual members overwritten
    memo: dict = {}
    for k, a, b in _residual_members(block):
        out[a:b] = np.ravel(np.broadcast_to(_residual_scale(block, k, vals, memo), block.shapes[k]))
    return out


def constraint_noise(block: Block, vals: list) -> np.ndarray | None:
    """``ROUNDING·eps·T_d`` for every entry of ``c_S`` (block vector layout; 0 for explicit members), or
    ``None`` when no residual of the block sums terms (no matmul, dot, sum or mean: the rounding is
    then far below any tolerance).

    ``T_d`` is the summed size of the terms of ``r_d`` (``|A| @ |b|`` for a product, ``Σ|a_i|`` for a
    sum): evaluating ``r_d`` in floating point errs by up to about ``eps·T_d``, so a violation below
    it is no violation at all, only the rounding of computing it. ``L @ u - λeᵘ - f`` on a fine grid
    has ``T ≈ 8/h²·|u|`` against ``|r|``'s scale ``max(|L u|, λeᵘ, |f|) ~ 1``: at h = 1/1001 the
    rounding alone is ``1.2e-10`` of the scale, above the default ``tol``.
    """
    c = cache_of(block)
    if c.sums is None:
        c.sums = any(s.residual for s in block.steps) and any(
            s.prim.name in _SUMMING and not s.prim.user for s in block.steps)
    if not c.sums:
        return None
    out = np.zeros(block.size)
    memo: dict = {}
    for k, a, b in _residual_members(block):
        with np.errstate(all="ignore"):
            try:
                t = _terms(block, k, vals, memo, 1, sums=True)
            except _UNCOVERED:
                t = None
        if t is None or np.shape(t) != block.shapes[k]:
            continue                             # no summed terms at this root: no allowance
        out[a:b] = np.ravel(t)
    return ROUNDING * _EPS * out


def scaled_max(c: np.ndarray, scale: np.ndarray, noise: np.ndarray | None = None) -> float:
    """``max |c| / scale`` (0 for an empty vector; NaN when ``c`` holds one); with ``noise``,
    ``max max(|c| - noise, 0) / scale``: a violation within the rounding of evaluating the
    constraint (:func:`constraint_noise`) counts as none."""
    if not c.size:
        return 0.0
    with np.errstate(all="ignore"):
        r = np.abs(c) / scale if noise is None else np.maximum(np.abs(c) - noise, 0.0) / scale
    return float(r.max()) if not np.isnan(r).any() else float("nan")
