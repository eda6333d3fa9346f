"""The per-step pullback kernels of the compiled path (:mod:`lagrangeprop.solve.compiled`).

The generated adjoint calls these for a step whose plan item carries a kernel
(:mod:`lagrangeprop.compile.plan`); they compute what
:func:`~lagrangeprop.solve.local.accumulate` computes, with the same numpy calls:

- :func:`adjoint_raw` for a :class:`~lagrangeprop.compile.plan.RawKernel` (an elementwise
  built-in on float64 arguments): ``g · ∂f/∂z_u`` from the op's bare partials;
- :func:`adjoint_matmul` for a :class:`~lagrangeprop.compile.plan.MatmulKernel`: ``np.matmul``'s
  two products, large ones into pooled buffers (:mod:`lagrangeprop.compile.buffers`);
- :func:`gather_entries` for a run of ``getitem`` steps that read entries of one array (the
  coefficients ``c[k]`` of a polynomial): their scatters into ``λ_x`` as one.

The interpreters (:func:`~lagrangeprop.solve.forward.forward_reference`,
:func:`~lagrangeprop.solve.adjoint.adjoint_reference`) use none of them.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> from lagrangeprop.compile.plan import plan_of
>>> sched = lp.trace(lambda x: lp.sin(x) * x, x=np.array([0.5, 1.0])).compile()
>>> item = plan_of(sched).items[-1]             # the product sin(x) * x
>>> x = np.array([0.5, 1.0])
>>> vals, lam = [x, np.sin(x), np.sin(x) * x], [None, None, np.ones(2)]
>>> adjoint_raw(item.kernel, lam[2], vals[2], vals, lam)
>>> bool(np.array_equal(lam[0], np.sin(x)) and np.array_equal(lam[1], x))
True
"""

from __future__ import annotations

import numpy as np

from ..compile.buffers import keep, take
from ..compile.plan import MatmulKernel, RawKernel
from ..errors import ShapeError
from .local import accumulate

__all__ = ["adjoint_raw", "adjoint_matmul", "gather_entries"]

_ND, _F64_DTYPE = np.ndarray, np.dtype(np.float64)
_SCALARS = (float, np.float64)


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


def gather_entries(pulls: tuple, x, gs: tuple, ans: tuple, prev):
    """``λ_x`` after the pull-backs of entries ``z_k = x[i_k]`` (distinct ``i_k``, in this
    order) with multipliers ``gs`` (``None``: zero): one scatter ``acc[i_k] += g_k`` into
    zeros, then ``prev + acc``, the same numbers as one scatter and one sum per entry (each
    entry of ``acc`` is ``0 + g_k``; adding the other entries' zeros changes no number).
    Anything but a float64 array and float multipliers: one pull-back at a time, the op's rule."""
    if x.__class__ is _ND and x.dtype is _F64_DTYPE and all(g is None or g.__class__ in _SCALARS for g in gs):
        acc = None
        for p, g in zip(pulls, gs):
            if g is not None:
                if acc is None:
                    acc = np.zeros(x.shape)
                acc[p.index] += g
        if acc is None:
            return prev
        return acc if prev is None else prev + acc
    for p, g, a in zip(pulls, gs, ans):
        if g is not None:
            u = p.step.args[0]
            lam = {u: prev}
            try:
                accumulate(p.step, g, a, {u: x}, lam)
            except ShapeError as exc:
                raise ShapeError(f"node {p.name!r}: {exc}") from None
            prev = lam[u]
    return prev
