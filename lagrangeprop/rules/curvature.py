"""Second-order terms: the directional derivative of each op's VJP (for exact Hessians).

For an op ``y = f(a_0, ..., a_k)`` and a fixed cotangent ``g``, ``vjp_i(g) = (∂f/∂a_i)ᵀ g``.
Moving the arguments along tangents ``ȧ_j`` changes it by the *curvature term*

    ``S_i(g, ȧ) = Σ_j ∂²<g, f>/∂a_i ∂a_j · ȧ_j``,

so ``d/dε vjp_i(g + ε ġ, a + ε ȧ) = vjp_i(ġ) + S_i(g, ȧ)``. Forward-over-reverse
Hessian-vector products (:mod:`lagrangeprop.solve.tangent`) and the Lagrangian Hessian
``∇²L = -Σ_d λ_d ∇²c_d`` of the full-space optimizer are sums of these terms.

This module is the dispatch only: each op's rule is its entry's ``curvature`` field,
written next to the op in its family module (:func:`~lagrangeprop.rules.registry.zero_curvature`
for linear and piecewise-linear ops). An op without one (a user op from
``lp.primitive``) falls back to a central difference of its VJP along ``ȧ``, with a warning.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.array([0.5])
>>> curvature(get("sin"), 0, np.ones(1), np.sin(x), [x], {}, [np.ones(1)])   # -sin(x)
array([-0.47942554])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .arrays import unbroadcast
from .registry import Primitive, zero_curvature

__all__ = ["curvature", "has_rule"]

F64 = np.float64


def _f(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=F64)


# ---------------------------------------------------------------- dispatch
_warned: set[str] = set()


def has_rule(prim: Primitive) -> bool:
    """Whether ``prim`` has an exact second-order rule (not the difference fallback)."""
    return not prim.differentiable or (not prim.user and prim.curvature is not None)


def _fallback(prim, i, g, ans, args, params, tans):
    """Central difference of ``vjp_i(g)`` along the argument tangents (user ops)."""
    if prim.name not in _warned:
        _warned.add(prim.name)
        warnings.warn(
            f"op {prim.name!r} has no second-order rule: its curvature term in Hessian-vector "
            "products uses a central difference of its VJP (about 1e-8 accurate, not exact)",
            UserWarning, stacklevel=4)
    scale = max((float(np.max(np.abs(t))) for t in tans if t is not None and np.size(t)), default=0.0)
    if scale == 0.0:
        return None
    size = max((float(np.max(np.abs(a))) for a, t in zip(args, tans) if t is not None and np.size(a)),
               default=1.0)
    h = np.cbrt(np.finfo(F64).eps) * max(1.0, size) / scale
    out = []
    for sgn in (1.0, -1.0):
        moved = [a if t is None else _f(a) + sgn * h * _f(t).reshape(np.shape(a)) for a, t in zip(args, tans)]
        vj = prim.vjp(i, g, prim.value(moved, params), moved, params)
        out.append(np.zeros(np.shape(args[i])) if vj is None else vj)
    return (out[0] - out[1]) / (2.0 * h)


def curvature(prim: Primitive, i: int, g: Any, ans: Any, args: Sequence[Any], params: dict,
              tans: Sequence[Any]) -> np.ndarray | None:
    """``S_i = Σ_j ∂²<g, prim>/∂a_i ∂a_j · ȧ_j`` with the shape of ``args[i]``; ``None`` = 0.

    ``tans`` holds one tangent per argument (``None`` = zero, e.g. constants).
    """
    if prim._is_zero(i, args) or all(t is None for t in tans):
        return None
    g = np.broadcast_to(_f(g), np.shape(ans))
    if has_rule(prim):
        rule = prim.curvature
        if rule is zero_curvature:
            return None
        tans = [None if t is None or k in prim.nondiff else _f(t) for k, t in enumerate(tans)]
        out = rule(i, g, ans, args, params, tans)
    else:
        out = _fallback(prim, i, g, ans, args, params, tans)
    if out is None:
        return None
    return np.array(unbroadcast(out, np.shape(args[i])), dtype=F64)
