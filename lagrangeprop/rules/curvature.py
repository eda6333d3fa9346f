"""Second-order rules: the directional derivative of each op's VJP (for exact Hessians).

For an op ``y = f(a_0, ..., a_k)`` and a fixed cotangent ``g``, ``vjp_i(g) = (∂f/∂a_i)ᵀ g``.
Moving the arguments along tangents ``ȧ_j`` changes it by the *curvature term*

    ``S_i(g, ȧ) = Σ_j ∂²<g, f>/∂a_i ∂a_j · ȧ_j``,

so ``d/dε vjp_i(g + ε ġ, a + ε ȧ) = vjp_i(ġ) + S_i(g, ȧ)``. Forward-over-reverse
Hessian-vector products (:mod:`lagrangeprop.solve.tangent`) and the Lagrangian Hessian
``∇²L = -Σ_d λ_d ∇²c_d`` of the full-space optimizer are sums of these terms.

Linear ops (add, sum, getitem, reshape, ...) and piecewise-linear ones (abs, maximum,
minimum, where) have ``S = 0``; elementwise ops are given by their second partials
``f_ij``; bilinear ops (matmul, dot) reuse their own VJP with the other argument
replaced by its tangent. An op without a rule here (a user op from ``lp.primitive``)
falls back to a central difference of its VJP along ``ȧ``, with a warning.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules.registry import get
>>> x = np.array([0.5])
>>> curvature(get("sin"), 0, np.ones(1), np.sin(x), [x], {}, [np.ones(1)])   # -sin(x)
array([-0.47942554])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .registry import REGISTRY, Primitive, unbroadcast

__all__ = ["RULES", "curvature", "has_rule"]

# rule(i, g, ans, args, params, tans) -> S_i (broadcastable to ans or args[i]'s shape) or None
Rule = Callable[..., Any]
RULES: dict[str, Rule | None] = {}

F64 = np.float64


def _f(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=F64)


# ---------------------------------------------------------------- zero curvature
# Linear in their differentiable arguments, or piecewise linear (zero a.e.).
for _name in ("add", "subtract", "negative", "identity", "sum", "mean", "reshape", "transpose",
              "getitem", "concatenate", "stack", "where", "abs", "maximum", "minimum"):
    RULES[_name] = None


# ---------------------------------------------------------------- elementwise
# S_i = g · Σ_j f_ij ȧ_j with the second partials f_ij(ans, *args) (None = 0).


def _elementwise(name: str, hess: Callable[..., list]) -> None:
    def rule(i, g, ans, args, params, tans):
        with np.errstate(all="ignore"):
            row = hess(_f(ans), *[_f(a) for a in args])[i]
            total = None
            for fij, t in zip(row, tans):
                if fij is None or t is None:
                    continue
                term = fij * t
                total = term if total is None else total + term
        return None if total is None else g * total
    RULES[name] = rule


_elementwise("multiply", lambda ans, x, y: [[None, 1.0], [1.0, None]])
_elementwise("divide", lambda ans, x, y: [[None, -1.0 / y**2], [-1.0 / y**2, 2.0 * x / y**3]])
_elementwise("square", lambda ans, x: [[2.0]])
_elementwise("exp", lambda ans, x: [[ans]])
_elementwise("log", lambda ans, x: [[-1.0 / x**2]])
_elementwise("log1p", lambda ans, x: [[-1.0 / (1.0 + x) ** 2]])
_elementwise("sqrt", lambda ans, x: [[-0.25 / (ans * x)]])
_elementwise("sin", lambda ans, x: [[-ans]])
_elementwise("cos", lambda ans, x: [[-ans]])
_elementwise("tan", lambda ans, x: [[2.0 * ans * (1.0 + ans**2)]])
_elementwise("tanh", lambda ans, x: [[-2.0 * ans * (1.0 - ans**2)]])
_elementwise("sigmoid", lambda ans, x: [[ans * (1.0 - ans) * (1.0 - 2.0 * ans)]])


def _logaddexp_hess(ans, x, y):
    # a = e^(x-ans), b = e^(y-ans), a + b = 1: the Hessian is ab [[1, -1], [-1, 1]]
    ab = np.exp(x - ans) * np.exp(y - ans)
    return [[ab, -ab], [-ab, ab]]


_elementwise("logaddexp", _logaddexp_hess)


def _power_hess(ans, x, p):
    # matches the first-order rules: p x^(p-1) (exactly 0 where p == 0) and
    # ans·log x for x > 0 (else 0)
    pos = x > 0
    logx = np.log(np.where(pos, x, 1.0))
    fxx = np.where((p == 0) | (p == 1), 0.0, p * (p - 1.0) * x ** np.where((p == 0) | (p == 1), 1.0, p - 2.0))
    fxp = np.where(pos, x ** np.where(pos, p - 1.0, 1.0) * (1.0 + p * logx), 0.0)
    fpp = np.where(pos, ans * logx**2, 0.0)
    return [[fxx, fxp], [fxp, fpp]]


_elementwise("power", _power_hess)


# ---------------------------------------------------------------- bilinear
# f(a, b) bilinear: ∂²<g, f>/∂a ∂b · ḃ = vjp_a(g) evaluated with b := ḃ.


def _bilinear(name: str) -> None:
    def rule(i, g, ans, args, params, tans):
        j = 1 - i
        if tans[j] is None:
            return None
        moved = list(args)
        moved[j] = np.reshape(tans[j], np.shape(args[j]))
        return REGISTRY[name].vjp(i, g, ans, moved, params)
    RULES[name] = rule


_bilinear("matmul")
_bilinear("dot")


# ---------------------------------------------------------------- reductions


def _logsumexp(i, g, ans, args, params, tans):
    # vjp = G·w with w = softmax along axis; d/dε = G·(ẇ) = G·w·(ȧ - Σ_axis w ȧ)
    if tans[0] is None:
        return None
    lse, total = REGISTRY["logsumexp"], REGISTRY["sum"]
    x = _f(args[0])
    gw = lse.vjp(0, g, ans, [x], params)
    mean_t = lse.jvp(0, tans[0], ans, [x], params)     # Σ w ȧ, the reduced shape
    spread = total.vjp(0, mean_t, ans, [x], params)     # broadcast back along axis
    return gw * (tans[0] - spread)


RULES["logsumexp"] = _logsumexp


def _softmax(i, g, ans, args, params, tans):
    # vjp = s (g - Σ g s); d/dε = ṡ (g - Σ g s) - s Σ g ṡ   (sums along axis)
    if tans[0] is None:
        return None
    axis = params.get("axis", -1)
    axis = tuple(axis) if isinstance(axis, list) else axis
    s = _f(ans)
    sdot = REGISTRY["softmax"].jvp(0, tans[0], ans, args, params)
    return (sdot * (g - np.sum(g * s, axis=axis, keepdims=True))
            - s * np.sum(g * sdot, axis=axis, keepdims=True))


RULES["softmax"] = _softmax


# ---------------------------------------------------------------- dispatch
_warned: set[str] = set()


def has_rule(prim: Primitive) -> bool:
    """Whether ``prim`` has an exact second-order rule (not the difference fallback)."""
    return not prim.differentiable or (not prim.user and prim.name in RULES)


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
        rule = RULES[prim.name]
        if rule is None:
            return None
        tans = [None if t is None or k in prim.nondiff else _f(t) for k, t in enumerate(tans)]
        out = rule(i, g, ans, args, params, tans)
    else:
        out = _fallback(prim, i, g, ans, args, params, tans)
    if out is None:
        return None
    return np.array(unbroadcast(out, np.shape(args[i])), dtype=F64)
