"""Reductions (sum, mean, logsumexp, max, min, prod, all, any, count_nonzero) and softmax,
each one entry with all its rules.

``y = reduce(x, axis)`` is described by its weights ``dy/dx`` (1 for sum, 1/n for mean,
``exp(x - y)`` for logsumexp): the cotangent is ``g`` re-expanded along the reduced axes
times the weights, the JVP the reduction of ``t * w``, the Jacobian a 0/1 pattern with the
weights as data (:func:`reduction`). ``max``/``min`` split the cotangent equally among
tied extremes (autograd's rule); ``prod``'s weights are the products of the *other*
entries (exact at zeros, no division); ``all``, ``any`` and ``count_nonzero`` have no
derivative.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.arange(6.0).reshape(2, 3)
>>> (3 * get("mean").vjp(0, np.ones(2), np.mean(x, axis=1), [x], {"axis": 1})).tolist()
[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.special

from .arrays import as_f64 as _f
from .arrays import axis_param as _axis
from .arrays import normalize_axes as _axes
from .arrays import size as _size
from .registry import Primitive, Tape, register, zero_curvature
from .shapes import reduced_axes

__all__ = ["reduction"]

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple


def _expand(g: Any, x_shape: tuple, axis: Any, keepdims: bool) -> np.ndarray:
    """``g`` (shape of a reduction of x) broadcast back to ``x_shape``."""
    g = _f(g)
    if not keepdims:
        g = g.reshape([1 if k in _axes(axis, len(x_shape)) else n for k, n in enumerate(x_shape)])
    return np.broadcast_to(g, x_shape)


def _reduction_jac(weights: Any, x_shape: tuple, axis: Any) -> sp.csr_matrix:
    """``dy/dx`` for ``y = sum(weights * x, axis)``: row = reduced position of each x element."""
    reduced = _axes(axis, len(x_shape))
    kd_shape = tuple(1 if k in reduced else n for k, n in enumerate(x_shape))
    n_out, n_in = _size(np.empty(kd_shape)), _size(np.empty(x_shape))
    rows = np.broadcast_to(np.arange(n_out).reshape(kd_shape), x_shape).ravel()
    data = np.broadcast_to(_f(weights), x_shape).ravel()
    return sp.csr_matrix((data, (rows, np.arange(n_in))), shape=(n_out, n_in))


def _reduction_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    if set(params) - {"axis", "keepdims"}:
        return None
    (s,) = shapes
    axes = reduced_axes(params.get("axis"), len(s))
    if axes is None or not s:   # 0-d: scipy's logsumexp keeps a dimension; numpy decides
        return None
    if params.get("keepdims", False):
        return tuple(1 if k in axes else n for k, n in enumerate(s))
    return tuple(n for k, n in enumerate(s) if k not in axes)


# y = reduce(x, axis): x̄ = expand(ȳ) · w with w = dy/dx; ẏ = reduce(ẋ · w).
def reduction(name: str, value: Callable[..., Any], weights: Callable[..., Any], *,
              curvature: Callable[..., Any], tape: Tape, linear: bool | None = None) -> Primitive:
    """Register ``value(x, axis, keepdims)`` with dy/dx weights ``weights(ans, x, axis, keepdims)``.

    ``linear`` (default: zero curvature) must be False for a piecewise-linear op, whose
    weights depend on ``x`` (max, min)."""

    def fn(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return value(_f(x), axis=_axis(axis), keepdims=keepdims)

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        x = _f(args[0])
        axis, keepdims = params.get("axis"), params.get("keepdims", False)
        w = weights(ans, x, axis, keepdims)
        if w.__class__ is float and np.ndim(g) == 0:   # a full reduction: every entry is g * w
            return np.full(x.shape, g * w)
        return _expand(g, x.shape, axis, keepdims) * w

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        x = _f(args[0])
        axis, keepdims = params.get("axis"), params.get("keepdims", False)
        return np.sum(t * weights(ans, x, axis, keepdims), axis=_axis(axis), keepdims=keepdims)

    def jac(i: int, ans: Any, args: Args, params: Params) -> Any:
        x = _f(args[0])
        axis, keepdims = params.get("axis"), params.get("keepdims", False)
        return _reduction_jac(weights(ans, x, axis, keepdims), x.shape, axis)

    linear = curvature is zero_curvature if linear is None else linear
    return register(Primitive(name, fn, nargs=1, vjp=vjp, jvp=jvp, jac=jac, curvature=curvature,
                              shape_rule=_reduction_shape, linear=linear, tape=tape))


# ---------------------------------------------------------------- the tape equivalents
def _torch_dims(x: Any, axis: Any) -> tuple:
    if axis is None:
        return tuple(range(x.dim()))
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def _torch_reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A torch reduction with numpy's ``axis``/``keepdims`` (0-d input: reduced as a 1-vector)."""
    def op(x, axis=None, keepdims=False):
        if x.dim() == 0:
            return fn(x.reshape(1), (0,), False).reshape(())
        return fn(x, _torch_dims(x, axis), keepdims)
    return op


def _autograd_reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda x, axis=None, keepdims=False: fn(x, axis=_axis(axis), keepdims=keepdims)


def _autograd_logsumexp(anp: Any) -> Callable[..., Any]:
    import autograd.scipy.special as asp   # optional dependency: only when a tape runs
    return _autograd_reduce(asp.logsumexp)


# ---------------------------------------------------------------- sum, mean, logsumexp
def _mean_weights(ans: Any, x: np.ndarray, axis: Any, keepdims: bool) -> float:
    n = _size(x) // max(_size(ans), 1)
    return 1.0 / n if n else 0.0


def _logsumexp_weights(ans: Any, x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    return np.exp(x - _expand(ans, x.shape, axis, keepdims))


_total = reduction("sum", np.sum, lambda ans, x, axis, keepdims: 1.0, curvature=zero_curvature,
                   tape=Tape(autograd=lambda anp: _autograd_reduce(anp.sum),
                             torch=lambda torch: _torch_reduce(lambda x, d, k: torch.sum(x, dim=d, keepdim=k))))
reduction("mean", np.mean, _mean_weights, curvature=zero_curvature,
          tape=Tape(autograd=lambda anp: _autograd_reduce(anp.mean),
                    torch=lambda torch: _torch_reduce(lambda x, d, k: torch.mean(x, dim=d, keepdim=k))))


def _logsumexp_curvature(i, g, ans, args, params, tans):
    # vjp = G·w with w = softmax along axis; d/dε = G·(ẇ) = G·w·(ȧ - Σ_axis w ȧ)
    if tans[0] is None:
        return None
    x = _f(args[0])
    gw = _logsumexp.vjp(0, g, ans, [x], params)
    mean_t = _logsumexp.jvp(0, tans[0], ans, [x], params)     # Σ w ȧ, the reduced shape
    spread = _total.vjp(0, mean_t, ans, [x], params)          # broadcast back along axis
    return gw * (tans[0] - spread)


_logsumexp = reduction(
    "logsumexp", scipy.special.logsumexp, _logsumexp_weights, curvature=_logsumexp_curvature,
    tape=Tape(autograd=_autograd_logsumexp,
              torch=lambda torch: _torch_reduce(lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k))))


# ---------------------------------------------------------------- max, min
# y = max(x, axis): w = [x == y] / #{x == y} per group, autograd's tie rule (the cotangent
# is split equally among the entries equal to the extreme); piecewise linear: S = 0.
def _chooser_weights(ans: Any, x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    hit = x == _expand(ans, x.shape, axis, keepdims)
    count = np.sum(hit, axis=_axis(axis), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):   # a NaN extreme: NaN weights
        return hit / count


for _name, _np_fn, _torch_name in (("max", np.max, "amax"), ("min", np.min, "amin")):
    reduction(_name, _np_fn, _chooser_weights, curvature=zero_curvature, linear=False,
              tape=Tape(autograd=lambda anp, n=_name: _autograd_reduce(getattr(anp, n)),
                        torch=lambda torch, n=_torch_name: _torch_reduce(
                            lambda x, d, k: getattr(torch, n)(x, dim=d, keepdim=k))))


# ---------------------------------------------------------------- prod
# y = Π_j x_j per group: w_i = Π_{j≠i} x_j (prefix times suffix products, exact at zeros);
# S_i = g · Σ_{j≠i} ȧ_j Π_{k≠i,j} x_k, the tangent of w_i (dual prefix/suffix products).
def _grouped(x: np.ndarray, axis: Any) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``x`` with the reduced axes moved last and flattened, and the map back to x's layout."""
    axes = list(_axes(axis, x.ndim))
    kept = [k for k in range(x.ndim) if k not in axes]
    order = kept + axes
    moved_shape = tuple(x.shape[k] for k in order)
    flat = np.transpose(x, order).reshape(tuple(x.shape[k] for k in kept) + (-1,))
    inverse = np.argsort(order)
    return flat, lambda w: np.transpose(w.reshape(moved_shape), inverse)


def _exclusive_products(x: np.ndarray, t: np.ndarray | None = None) -> tuple:
    """``Π_{j≠i} x_j`` along the last axis and (with tangent ``t``) its tangent."""
    n = x.shape[-1]
    left, right = np.ones_like(x), np.ones_like(x)
    if t is None:
        if n > 1:
            left[..., 1:] = np.cumprod(x[..., :-1], axis=-1)
            right[..., :-1] = np.cumprod(x[..., :0:-1], axis=-1)[..., ::-1]
        return left * right, None
    dleft, dright = np.zeros_like(x), np.zeros_like(x)
    for k in range(1, n):   # dual numbers: (a, ȧ)(b, ḃ) = (ab, ȧb + aḃ)
        left[..., k] = left[..., k - 1] * x[..., k - 1]
        dleft[..., k] = dleft[..., k - 1] * x[..., k - 1] + left[..., k - 1] * t[..., k - 1]
        j = n - 1 - k
        right[..., j] = right[..., j + 1] * x[..., j + 1]
        dright[..., j] = dright[..., j + 1] * x[..., j + 1] + right[..., j + 1] * t[..., j + 1]
    return left * right, dleft * right + left * dright


def _prod_weights(ans: Any, x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    if x.size == 0:
        return np.zeros(x.shape)
    flat, back = _grouped(x, axis)
    return back(_exclusive_products(flat)[0])


def _prod_curvature(i, g, ans, args, params, tans):
    x = _f(args[0])
    if tans[0] is None or x.size == 0:
        return None
    axis, keepdims = params.get("axis"), params.get("keepdims", False)
    flat, back = _grouped(x, axis)
    tflat, _ = _grouped(_f(tans[0]).reshape(x.shape), axis)
    return _expand(g, x.shape, axis, keepdims) * back(_exclusive_products(flat, tflat)[1])


def _tape_prod(backend: str) -> Callable[..., Callable[..., Any]]:
    """prod on a tape as a chain of multiplies over the moved, flattened reduced axes: the
    tape's own product rule, exact at zeros (autograd's prod VJP divides by x)."""
    def make(module: Any) -> Callable[..., Any]:
        def prod(x, axis=None, keepdims=False):
            shape = tuple(x.shape)
            axes = list(_axes(_axis(axis), len(shape)))
            kept = [k for k in range(len(shape)) if k not in axes]
            out_shape = tuple(1 if k in axes else n for k, n in enumerate(shape)) if keepdims \
                else tuple(shape[k] for k in kept)
            lead = tuple(shape[k] for k in kept)
            if backend == "torch":
                flat = x.permute(*(kept + axes)).reshape(lead + (-1,)) if shape else x.reshape(1)
                return module.prod(flat, dim=-1).reshape(out_shape)
            flat = module.reshape(module.transpose(x, kept + axes), lead + (-1,))
            out = module.ones(lead)
            for k in range(int(np.prod([shape[a] for a in axes], dtype=int))):
                out = out * flat[..., k]
            return module.reshape(out, out_shape)
        return prod
    return make


reduction("prod", np.prod, _prod_weights, curvature=_prod_curvature,
          tape=Tape(autograd=_tape_prod("autograd"), torch=_tape_prod("torch")))


# ---------------------------------------------------------------- all, any, count_nonzero
# boolean and integer valued: no derivative (the output is constant under small changes)
def _count_nonzero(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return np.count_nonzero(x, axis=_axis(axis), keepdims=keepdims)


def _torch_count(torch: Any) -> Callable[..., Any]:
    return _torch_reduce(lambda x, d, k: torch.sum(x != 0, dim=d, keepdim=k))


for _name, _fn, _tape in (
        ("all", np.all, Tape(autograd=lambda anp: _autograd_reduce(anp.all),
                             torch=lambda torch: _torch_reduce(lambda x, d, k: torch.all(x, dim=d, keepdim=k)))),
        ("any", np.any, Tape(autograd=lambda anp: _autograd_reduce(anp.any),
                             torch=lambda torch: _torch_reduce(lambda x, d, k: torch.any(x, dim=d, keepdim=k)))),
        ("count_nonzero", _count_nonzero,
         Tape(autograd=lambda anp: lambda x, axis=None, keepdims=False: anp.count_nonzero(
             x, axis=_axis(axis), keepdims=keepdims), torch=_torch_count))):
    register(Primitive(_name, (lambda fn: lambda x, axis=None, keepdims=False: fn(
        x, axis=_axis(axis), keepdims=keepdims))(_fn), nargs=1, differentiable=False,
        shape_rule=_reduction_shape, tape=_tape))


# ---------------------------------------------------------------- softmax
# softmax s = exp(x - logsumexp(x, axis)): ds = s * (dx - sum(s * dx, axis)),
# symmetric Jacobian s_i (delta_ij - s_j) within each group along axis.
def _softmax(x: Any, axis: Any = -1) -> np.ndarray:
    return scipy.special.softmax(_f(x), axis=_axis(axis))


def _softmax_linear(i: int, v: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    s = _f(ans)
    axis = _axes(params.get("axis", -1), s.ndim)
    return s * (v - np.sum(v * s, axis=axis, keepdims=True))


def _softmax_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    s = _f(ans)
    reduced = _axes(params.get("axis", -1), s.ndim)
    kd_shape = tuple(1 if k in reduced else n for k, n in enumerate(s.shape))
    n_groups, n = _size(np.empty(kd_shape)), s.size
    group = np.broadcast_to(np.arange(n_groups).reshape(kd_shape), s.shape).ravel()
    members = np.argsort(group, kind="stable").reshape(n_groups, -1)
    rows = np.broadcast_to(members[:, :, None], members.shape + members.shape[-1:]).ravel()
    cols = np.broadcast_to(members[:, None, :], members.shape[:1] + members.shape[-1:] * 2).ravel()
    flat = s.ravel()
    data = flat[rows] * ((rows == cols) - flat[cols])
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


def _softmax_curvature(i, g, ans, args, params, tans):
    # vjp = s (g - Σ g s); d/dε = ṡ (g - Σ g s) - s Σ g ṡ   (sums along axis)
    if tans[0] is None:
        return None
    axis = _axis(params.get("axis", -1))
    s = _f(ans)
    sdot = _softmax_prim.jvp(0, tans[0], ans, args, params)
    return (sdot * (g - np.sum(g * s, axis=axis, keepdims=True))
            - s * np.sum(g * sdot, axis=axis, keepdims=True))


def _softmax_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    axis = params.get("axis", -1)
    if set(params) - {"axis"} or type(axis) is not int or not -len(s) <= axis < len(s):
        return None
    return s


def _autograd_softmax(anp: Any) -> Callable[..., Any]:
    import autograd.scipy.special as asp   # optional dependency: only when a tape runs

    def softmax(x, axis=-1):
        return anp.exp(x - asp.logsumexp(x, axis=_axis(axis), keepdims=True))
    return softmax


def _torch_softmax(torch: Any) -> Callable[..., Any]:
    def softmax(x, axis=-1):
        return torch.exp(x - torch.logsumexp(x, dim=_torch_dims(x, axis), keepdim=True))
    return softmax


_softmax_prim = register(Primitive(
    "softmax", _softmax, nargs=1, vjp=_softmax_linear, jvp=_softmax_linear, jac=_softmax_jac,
    curvature=_softmax_curvature, shape_rule=_softmax_shape,
    tape=Tape(autograd=_autograd_softmax, torch=_torch_softmax)))
