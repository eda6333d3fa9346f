"""np.linalg.norm: one entry for every ord and axis, with all its rules.

The value is ``numpy.linalg.norm`` itself. Every norm is a reduction over its axes (one axis
or all for a vector norm, two for a matrix norm) with a weight ``W = dn/dx`` of ``x``'s
shape, so the VJP is ``expand(ḡ) · W``, the JVP ``Σ_axes ẋ · W``, the Jacobian the
reduction pattern with ``W`` as data and the curvature ``expand(ḡ) · dW[ẋ]`` (zero for the
piecewise-linear ords). Ties follow autograd's ``max``/``min``: the weight is split equally
between the entries that attain the maximum; ``abs`` has derivative 0 at 0.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.array([3.0, -4.0])
>>> norm = get("norm")
>>> n = norm.value([x], {"ord": None, "axis": None, "keepdims": False})
>>> float(n), norm.vjp(0, 1.0, n, [x], {"ord": None, "axis": None, "keepdims": False}).tolist()
(5.0, [0.6, -0.8])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .arrays import as_f64 as _f
from .decompositions import svd_parts, svd_push
from .registry import Primitive, Tape, register

__all__ = ["norm_kind"]

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple
INF = math.inf


def norm_kind(ndim: int, ord: Any, axis: Any) -> tuple[str, tuple[int, ...]]:
    """``("vector", axes)`` or ``("matrix", (row, col))``: what numpy's norm computes."""
    if axis is None:
        if ord is None or (ord in ("f", "fro") and ndim == 2) or (ord == 2 and ndim == 1):
            return "vector2", tuple(range(ndim))
        axis = tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = tuple(a % ndim for a in axes)
    return ("vector" if len(axes) == 1 else "matrix"), axes


def _kd(params: Params, x: np.ndarray) -> tuple[str, tuple[int, ...]]:
    return norm_kind(x.ndim, params.get("ord"), params.get("axis"))


def _expand(g: Any, x_shape: tuple, axes: tuple, keepdims: bool) -> np.ndarray:
    g = _f(g)
    if not keepdims:
        g = g.reshape([1 if k in axes else n for k, n in enumerate(x_shape)])
    return g


def _choose(values: np.ndarray, axes: Any, lowest: bool) -> np.ndarray:
    """1 where ``values`` attains its max (min) along ``axes``, split equally between ties."""
    best = (np.min if lowest else np.max)(values, axis=axes, keepdims=True)
    hit = (values == best).astype(np.float64)
    return hit / np.sum(hit, axis=axes, keepdims=True)


def _spectral(x: np.ndarray, axes: tuple, ord: Any, t: np.ndarray | None = None) -> np.ndarray:
    """``W = dn/dx`` of the 2, -2 and nuclear norms (``dW[t]`` when ``t`` is given)."""
    y = np.moveaxis(x, axes, (-2, -1))
    u, s, v = svd_parts(y, {})
    if t is not None:
        du, _, dv = svd_push((u, s, v), np.moveaxis(t, axes, (-2, -1)), {})
    pick = slice(None) if ord == "nuc" else (slice(0, 1) if ord == 2 else slice(-1, None))
    u, v = u[..., pick], v[..., pick]
    if t is None:
        m = u @ np.swapaxes(v, -1, -2)
    else:
        m = du[..., pick] @ np.swapaxes(v, -1, -2) + u @ np.swapaxes(dv[..., pick], -1, -2)
    return np.moveaxis(m, (-2, -1), axes)


# n = ‖x‖ over its axes: W = dn/dx (x / n for the 2-norm and Frobenius, sign(x)|x|^(p-1) /
# n^(p-1) for p-norms, sign(x) on the maximizing entries for inf and the matrix 1/inf norms,
# U Vᵀ (or u₁ v₁ᵀ, u_k v_kᵀ) for the nuclear (2, -2) norms).
def _weights(x: np.ndarray, n: np.ndarray, params: Params) -> np.ndarray:
    kind, axes = _kd(params, x)
    ord = params.get("ord")
    n = _expand(n, x.shape, axes, params.get("keepdims", False))
    with np.errstate(all="ignore"):
        if kind == "vector2" or ord in (None, 2, "f", "fro") and not (kind == "matrix" and ord == 2):
            return x / n
        if kind == "vector":
            if ord == 0:
                return np.zeros_like(x)
            if ord == 1:
                return np.sign(x)
            if ord in (INF, -INF):
                return np.sign(x) * _choose(np.abs(x), axes, ord < 0)
            return np.sign(x) * np.abs(x) ** (ord - 1) / n ** (ord - 1)
        row, col = axes
        if ord in (1, -1):
            sums = np.sum(np.abs(x), axis=row, keepdims=True)
            return np.sign(x) * _choose(sums, col, ord < 0)
        if ord in (INF, -INF):
            sums = np.sum(np.abs(x), axis=col, keepdims=True)
            return np.sign(x) * _choose(sums, row, ord < 0)
        return _spectral(x, axes, ord)


# dW[ẋ]: 2-norm: ẋ/n - x ṅ/n²; p-norm: (p-1)(|x|^(p-2) n^(1-p) ẋ - s|x|^(p-1) n^(-p) ṅ)
# with ṅ = Σ W ẋ; zero for the piecewise-linear ords; the SVD's tangents for the spectral ones.
def _dweights(x: np.ndarray, n: np.ndarray, t: np.ndarray, params: Params) -> np.ndarray | None:
    kind, axes = _kd(params, x)
    ord = params.get("ord")
    keep = params.get("keepdims", False)
    W = _weights(x, n, params)
    n = _expand(n, x.shape, axes, keep)
    ndot = np.sum(W * t, axis=axes, keepdims=True)
    with np.errstate(all="ignore"):
        if kind == "vector2" or ord in (None, 2, "f", "fro") and not (kind == "matrix" and ord == 2):
            return t / n - x * ndot / (n * n)
        if kind == "vector" and ord not in (0, 1, INF, -INF):
            p = float(ord)
            ax = np.abs(x)
            return (p - 1) * (ax ** (p - 2) * n ** (1 - p) * t - np.sign(x) * ax ** (p - 1) * n ** (-p) * ndot)
        if kind == "matrix" and ord in (2, -2, "nuc"):
            return _spectral(x, axes, ord, t)
    return None


def _axes_of(x: np.ndarray, params: Params) -> tuple[int, ...]:
    return _kd(params, x)[1]


def _vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    x = _f(args[0])
    return _expand(g, x.shape, _axes_of(x, params), params.get("keepdims", False)) * _weights(x, ans, params)


def _jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    x = _f(args[0])
    out = np.sum(t * _weights(x, ans, params), axis=_axes_of(x, params), keepdims=True)
    return out.reshape(np.shape(ans))


def _jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    x = _f(args[0])
    axes = _axes_of(x, params)
    kd_shape = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
    n_out = int(np.prod(kd_shape, dtype=np.int64))
    rows = np.broadcast_to(np.arange(n_out).reshape(kd_shape), x.shape).ravel()
    data = _weights(x, ans, params).ravel()
    return sp.csr_matrix((data, (rows, np.arange(x.size))), shape=(n_out, x.size))


def _curvature(i, g, ans, args, params, tans):
    if tans[0] is None:
        return None
    x = _f(args[0])
    dW = _dweights(x, ans, tans[0], params)
    if dW is None:
        return None
    return _expand(g, x.shape, _axes_of(x, params), params.get("keepdims", False)) * dW


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    return np.linalg.norm(_f(x), ord=ord, axis=axis, keepdims=keepdims)


def _norm_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    if set(params) - {"ord", "axis", "keepdims"} or not s:
        return None
    kind, axes = norm_kind(len(s), params.get("ord"), params.get("axis"))
    if kind == "matrix" and len(axes) != 2:
        return None   # numpy's error
    if params.get("keepdims", False):
        return tuple(1 if k in axes else n for k, n in enumerate(s))
    return tuple(n for k, n in enumerate(s) if k not in axes)


# ---------------------------------------------------------------- the tapes
def _autograd_norm(anp: Any) -> Callable[..., Any]:
    """numpy's algorithm in autograd's elementary ops (its own norm rule covers few ords)."""
    def norm(x, ord=None, axis=None, keepdims=False):
        kind, axes = norm_kind(anp.ndim(x), ord, axis)
        if kind == "vector2" or ord in (None, 2, "f", "fro") and not (kind == "matrix" and ord == 2):
            out = anp.sqrt(anp.sum(x * x, axis=axes))
        elif kind == "vector":
            ax = anp.abs(x)
            if ord == 0:
                out = anp.sum(anp.where(x != 0, 1.0, 0.0), axis=axes)
            elif ord in (INF, -INF):
                out = (anp.min if ord < 0 else anp.max)(ax, axis=axes)
            else:
                out = anp.sum(ax ** ord, axis=axes) ** (1.0 / ord)
        else:
            row, col = axes
            pick = anp.min if ord in (-1, -2, -INF) else anp.max
            if ord in (1, -1):
                out = pick(anp.sum(anp.abs(x), axis=row), axis=col - (col > row))
            elif ord in (INF, -INF):
                out = pick(anp.sum(anp.abs(x), axis=col), axis=row - (row > col))
            else:
                s = anp.linalg.svd(anp.moveaxis(x, axes, (-2, -1)), compute_uv=False)
                out = anp.sum(s, axis=-1) if ord == "nuc" else pick(s, axis=-1)
        if keepdims:
            out = anp.reshape(out, tuple(1 if k in axes else n for k, n in enumerate(anp.shape(x))))
        return out
    return norm


def _torch_norm(torch: Any) -> Callable[..., Any]:
    def norm(x, ord=None, axis=None, keepdims=False):
        if ord == "f":
            ord = "fro"
        kind, axes = norm_kind(x.dim(), ord, axis)
        if kind == "vector2":
            return torch.linalg.vector_norm(x, 2, dim=axes, keepdim=keepdims)
        if kind == "vector":
            return torch.linalg.vector_norm(x, 2 if ord is None else ord, dim=axes, keepdim=keepdims)
        return torch.linalg.matrix_norm(x, "fro" if ord is None else ord, dim=axes, keepdim=keepdims)
    return norm


register(Primitive("norm", _norm, nargs=1, vjp=_vjp, jvp=_jvp, jac=_jac, curvature=_curvature,
                   shape_rule=_norm_shape, tape=Tape(autograd=_autograd_norm, torch=_torch_norm)))
