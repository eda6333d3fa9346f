"""The fast path: the forward and adjoint passes over the execution plan.

The same mathematics as the reference interpreters
(:func:`~lagrangeprop.solve.forward.forward_reference`,
:func:`~lagrangeprop.solve.adjoint.adjoint_reference`), with the special cases that make
small programs cheap, each on a typed item of :mod:`lagrangeprop.compile.plan`:

- :class:`~lagrangeprop.compile.plan.RawKernel`: the op's bare numpy function and partials
  (no :meth:`Primitive.value` / :meth:`Primitive.vjp` conversions), a scalar step inlined;
- :class:`~lagrangeprop.compile.plan.MatmulKernel`: ``np.matmul`` and its two products;
- :class:`~lagrangeprop.compile.plan.Group`: many scalar constraints as one numpy call on a
  register array ``S`` (values) / ``L`` (multipliers), one scatter-add per argument position;
- large results written into pooled buffers (:mod:`lagrangeprop.compile.buffers`).

Steps without a kernel and blocks use the reference's own rules (:mod:`~lagrangeprop.solve.local`).
``tests/test_kernels.py`` holds this path against the reference.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> from lagrangeprop.compile.plan import plan_of
>>> from lagrangeprop.options import SolveOptions
>>> sched = lp.trace(lambda x: lp.sin(x) * x, x=0.5).compile()
>>> vals = [np.float64(0.5), None, None]
>>> states, registers, finite = forward_plan(plan_of(sched), vals, SolveOptions.make())
>>> bool(vals[2] == np.sin(0.5) * 0.5), finite
(True, True)
"""

from __future__ import annotations

import numpy as np

from .. import blocks
from ..compile.buffers import keep, take
from ..compile.plan import BlockItem, MatmulKernel, Plan, RawKernel, StepItem
from ..errors import ShapeError
from ..options import SolveOptions
from .finite import values_finite
from .local import accumulate, as_value, block_adjoint

__all__ = ["forward_plan", "adjoint_plan", "adjoint_raw", "adjoint_matmul"]

_ND, _F64_TYPE, _F64_DTYPE = np.ndarray, np.float64, np.dtype(np.float64)


# ------------------------------------------------------------------ forward
def forward_plan(plan: Plan, vals: list, opts: SolveOptions, guess: dict | None = None
                 ) -> tuple[dict, np.ndarray | None, bool]:
    """Fill ``vals`` for every defined node; returns the block solver states, the register
    array of grouped scalars (``None`` without groups) and whether every value is finite."""
    bufs = plan.bufs
    states: dict = {}
    S = np.empty(plan.nslots) if plan.nslots else None
    finite = True
    with np.errstate(all="ignore"):
        for k, i in plan.init:
            S[k] = vals[i]
        for item in plan.items:
            cls = item.__class__
            if cls is StepItem:
                step, slot, kernel = item
                # the bare function (a kernel) or prim.fn: Primitive.value's conversions only
                # when the result needs them
                if kernel is not None:
                    fn, args, buffer = kernel.fn, kernel.args, kernel.buffer
                    if buffer >= 0:   # a large result: into a free buffer of an earlier solve
                        buf = take(bufs, buffer)
                        out = fn(*[vals[a] for a in args], out=buf)
                        if buf is None:
                            keep(bufs, buffer, out)
                        del buf
                    elif len(args) == 2:
                        out = fn(vals[args[0]], vals[args[1]])
                    elif len(args) == 1:
                        out = fn(vals[args[0]])
                    else:
                        out = fn(*[vals[a] for a in args])
                else:
                    out = step.prim.fn(*[vals[a] for a in step.args], **step.params)
                cls = out.__class__
                if cls is not _F64_TYPE and (cls is not _ND or out.dtype is not _F64_DTYPE):
                    out = as_value(out)
                vals[step.node] = out
                if slot >= 0:
                    S[slot] = out
            elif cls is BlockItem:
                block = item.block
                states[id(block)] = blocks.solve_forward(block, vals, opts, guess or {})
                for k, i in item.slots:
                    S[k] = vals[i]
            else:   # a Group
                out = item.prim.raw_fn(*[S[a] for a in item.args])
                S[item.out] = out
                for i, v in zip(item.nodes, out):
                    vals[i] = v
                if finite and not np.isfinite(out).all():
                    finite = False
        finite = finite and values_finite(plan, vals)    # (overflowing square sums are allowed)
    return states, S, finite


# ------------------------------------------------------------------ adjoint
def adjoint_plan(plan: Plan, names: list[str], output: int, vals: list, seed, states: dict,
                 opts: SolveOptions) -> list:
    """All multipliers (``None`` where identically zero), indexed by node id; ``vals`` may
    carry the forward pass's registers as ``vals.scalars``. No finiteness test."""
    bufs = plan.bufs
    lam: list = [None] * len(names)
    # a private copy: ±1 partials pass multipliers on without copying, and no gradient
    # may alias the caller's seed array
    lam[output] = seed.copy() if seed.__class__ is _ND else seed
    if plan.nslots:
        S = getattr(vals, "scalars", None)
        if S is None or len(S) != plan.nslots:
            S = np.array([vals[i] for i in plan.slot_ids], dtype=np.float64)
        L = np.zeros(plan.nslots)
    with np.errstate(all="ignore"):
        for item in reversed(plan.items):
            cls = item.__class__
            if cls is StepItem:
                step, slot, kernel = item
                if slot >= 0:
                    _pull(lam, step.node, L[slot])
                g = lam[step.node]
                if g is None:
                    continue
                if kernel is None:
                    try:
                        accumulate(step, g, vals[step.node], vals, lam)
                    except ShapeError as exc:
                        raise ShapeError(f"node {names[step.node]!r}: {exc}") from None
                elif kernel.__class__ is RawKernel:
                    sc = kernel.scalar
                    if sc is None:
                        adjoint_raw(kernel, g, vals[step.node], vals, lam)
                        continue
                    # a scalar step, inline (adjoint_raw's numbers)
                    u, d, x, c = sc
                    prev = lam[u]
                    if d is not None:
                        ct = g * d(vals[step.node], vals[x])
                    elif x >= 0:
                        ct = g * vals[x]
                    elif c == 1.0:
                        lam[u] = g if prev is None else prev + g
                        continue
                    else:
                        lam[u] = -g if prev is None else prev - g
                        continue
                    lam[u] = ct if prev is None else prev + ct
                else:
                    adjoint_matmul(step, kernel, g, vals, lam, bufs)
            elif cls is BlockItem:
                for k, i in item.slots:
                    _pull(lam, i, L[k])
                block_adjoint(item.block, vals, lam, states, opts)
            else:   # a Group: every member's cotangent at once
                g = L[item.out]
                for k, i in item.mixed:
                    if lam[i] is not None:
                        g[k] += lam[i]
                for i, v in zip(item.nodes, g):
                    lam[i] = v
                ans, args = S[item.out], [S[a] for a in item.args]
                partials = item.prim.raw_partials
                for pos, sel, slots, unique in item.diff:
                    if partials[pos] is None:
                        continue
                    ct = g * partials[pos](ans, *args)
                    if sel is not None:
                        ct = ct[sel]
                    if unique:
                        L[slots] += ct
                    else:
                        np.add.at(L, slots, ct)
    for k, i in plan.finals:
        _pull(lam, i, L[k])
    return lam


def _pull(lam: list, i: int, v) -> None:
    prev = lam[i]
    lam[i] = v if prev is None else prev + v


def adjoint_raw(kernel: RawKernel, g, ans, vals: list, lam: list) -> None:
    """:func:`~lagrangeprop.solve.local.accumulate` for a raw kernel (elementwise op, float64
    arguments): the op's cotangent ``g · ∂f/∂z_u`` from its bare partials, summed over broadcast
    axes exactly as :func:`~lagrangeprop.rules.arrays.unbroadcast` (axes precomputed by the
    plan). A ±1 partial gives ``±g`` itself (multipliers are never modified in place, so sharing
    ``g`` is safe); ``prev - g`` equals ``prev + (-1·g)`` exactly in IEEE arithmetic."""
    ids = kernel.args
    for u, d, c, red, a in kernel.partials:
        prev = lam[u]
        if c is None:
            if a >= 0:
                ct = g * vals[a]
            else:
                if len(ids) == 1:
                    p = d(ans, vals[ids[0]])
                elif len(ids) == 2:
                    p = d(ans, vals[ids[0]], vals[ids[1]])
                else:
                    p = d(ans, *[vals[k] for k in ids])
                if p.__class__ is _ND and p.base is None and p.shape == g.shape and p.dtype is _F64_DTYPE \
                        and p is not ans and not any(p is vals[k] for k in ids):
                    # a fresh temporary of the partial (no value, argument or multiplier is
                    # it): scale it in place, g * p elementwise as the product below
                    ct = np.multiply(g, p, out=p)
                else:
                    ct = g * p
        elif red is None:
            if c == 1.0:
                lam[u] = g if prev is None else prev + g
            else:
                lam[u] = -g if prev is None else prev - g
            continue
        else:
            ct = g
        if red is not None:
            lead, kept = red
            if lead:
                ct = ct.sum(axis=lead)
            if kept:
                ct = ct.sum(axis=kept, keepdims=True)
            if c == -1.0:
                ct = -ct
        lam[u] = ct if prev is None else prev + ct


def adjoint_matmul(step, kernel: MatmulKernel, g, vals: list, lam: list, bufs: list) -> None:
    """:func:`~lagrangeprop.solve.local.accumulate` for ``a @ b`` with float64 matrices: the
    rule's products ``g bᵀ`` and ``aᵀ g`` (the same numpy calls), large ones into a free pool
    buffer."""
    a, b = vals[kernel.args[0]], vals[kernel.args[1]]
    if g.__class__ is not _ND or g.dtype is not _F64_DTYPE or g.ndim != 2:
        accumulate(step, g, vals[step.node], vals, lam)
        return
    for pos, u, k in kernel.cotangents:
        buf = take(bufs, k) if k >= 0 else None
        ct = np.matmul(g, b.T, out=buf) if pos == 0 else np.matmul(a.T, g, out=buf)
        if k >= 0 and buf is None:
            keep(bufs, k, ct)
        del buf
        prev = lam[u]
        # ct is this call's own array: the sum goes into it (prev + ct, the same numbers)
        lam[u] = ct if prev is None else np.add(prev, ct, out=ct)
