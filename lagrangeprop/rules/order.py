"""Order statistics (sort, partition) and integer-valued index ops (argmax, argmin, argsort).

``sort`` and ``partition`` are permutations along ``axis``: ``ans = take(x, p, axis)`` with
``p`` numpy's own ``argsort`` / ``argpartition`` of ``x`` (the same ``kind``), so ties follow
autograd's convention (its rules unpermute by that same ``p``). The cotangent scatters ``g``
back through ``p``, the tangent gathers, the Jacobian is the 0/1 selection; the curvature is
zero (piecewise linear, but not ``linear``: the permutation moves with ``x``). ``argmax``,
``argmin`` and ``argsort`` have integer values, stored as float64 like every value, and no
derivative; they cannot index (indices stay static).

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.array([3.0, 1.0, 2.0])
>>> params = {"axis": -1, "kind": None}
>>> get("sort").vjp(0, np.array([10.0, 20.0, 30.0]), np.sort(x), [x], params).tolist()
[30.0, 10.0, 20.0]
>>> get("argmax").value([x], {"axis": None, "keepdims": False}).tolist()
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .arrays import as_f64 as _f
from .arrays import size as _size
from .registry import Primitive, Tape, register, zero_curvature
from .shapes import reduced_axes

__all__ = ["permutation"]

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple


def permutation(name: str, x: np.ndarray, ans: np.ndarray, params: Params) -> np.ndarray:
    """The indices ``p`` along ``axis`` with ``ans == take_along_axis(x, p, axis)``.

    numpy's argsort / argpartition with the op's ``kind`` (autograd's convention); should
    numpy's partition arrange the entries differently from its argpartition, the entries of
    ``ans`` are matched to those of ``x`` (equal values in order), so ``p`` always fits.
    """
    axis = params.get("axis", -1)
    if name == "sort":
        return np.argsort(x, axis=axis, kind=params.get("kind"))
    p = np.argpartition(x, params["kth"], axis=axis, kind=params.get("kind", "introselect"))
    if np.array_equal(np.take_along_axis(x, p, axis), ans, equal_nan=True):
        return p
    sx, sa = np.argsort(x, axis=axis, kind="stable"), np.argsort(ans, axis=axis, kind="stable")
    p = np.empty_like(sx)
    np.put_along_axis(p, sa, sx, axis)   # ans[sa[r]] = x[sx[r]]: the r-th smallest of each
    return p


def _gather_index(shape: tuple, p: np.ndarray, axis: int) -> tuple:
    """The integer-array index ``x[index] == take_along_axis(x, p, axis)``."""
    index = list(np.indices(shape, sparse=True))
    index[axis % len(shape)] = p
    return tuple(index)


# ans = x[index(p)]: x̄ = scatter(ḡ) through p, ẏ = ẋ[index(p)], J = selection of p.
def _permuted(name: str, fn: Callable[..., Any]) -> Primitive:
    def perm(ans: Any, args: Args, params: Params) -> tuple:
        x = _f(args[0])
        return _gather_index(x.shape, permutation(name, x, _f(ans), params), params.get("axis", -1))

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
        out = np.zeros(np.shape(args[0]))
        out[perm(ans, args, params)] = g    # a permutation: each entry written once
        return out

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
        return t[perm(ans, args, params)]

    def jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
        n = _size(args[0])
        cols = np.arange(n).reshape(np.shape(args[0]))[perm(ans, args, params)].ravel()
        return sp.csr_matrix((np.ones(n), (np.arange(n), cols)), shape=(n, n))

    def tape(backend: str) -> Callable[[Any], Callable[..., Any]]:
        # the tape gathers with our permutation; its own getitem rule differentiates it
        def make(module: Any) -> Callable[..., Any]:
            def op(x, **params):
                value = _tape_value(backend, x)
                p = permutation(name, value, fn(value, **params), params)
                index = _gather_index(value.shape, p, params.get("axis", -1))
                if backend == "torch":
                    index = tuple(module.as_tensor(np.broadcast_to(k, p.shape).copy()) for k in index)
                return x[index]
            return op
        return make

    return register(Primitive(
        name, fn, nargs=1, vjp=vjp, jvp=jvp, jac=jac, curvature=zero_curvature,
        shape_rule=_same_shape, tape=Tape(autograd=tape("autograd"), torch=tape("torch"))))


def _tape_value(backend: str, x: Any) -> np.ndarray:
    if backend == "torch":
        return x.detach().numpy().astype(np.float64)
    from autograd.tracer import getval   # optional dependency: only when a tape runs
    return np.asarray(getval(x), dtype=np.float64)


def _same_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    axis = params.get("axis", -1)
    return s if type(axis) is int and -len(s) <= axis < len(s) else None


def _sort(x: Any, axis: int = -1, kind: str | None = None) -> np.ndarray:
    return np.sort(_f(x), axis=axis, kind=kind)


def _partition(x: Any, kth: Any = 0, axis: int = -1, kind: str = "introselect") -> np.ndarray:
    return np.partition(_f(x), kth, axis=axis, kind=kind)


_permuted("sort", _sort)
_permuted("partition", _partition)


# ---------------------------------------------------------------- argmax, argmin, argsort
# integer valued: piecewise constant, so no derivative (differentiable=False)
def _arg_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    axis, keep = params.get("axis"), params.get("keepdims", False)
    if axis is not None and type(axis) is not int:
        return None
    axes = reduced_axes(axis, len(s))
    if axes is None:
        return None
    return tuple(1 if k in axes else n for k, n in enumerate(s)) if keep else \
        tuple(n for k, n in enumerate(s) if k not in axes)


def _torch_arg(which: str) -> Callable[[Any], Callable[..., Any]]:
    def make(torch: Any) -> Callable[..., Any]:
        def op(x, axis=None, keepdims=False):
            fn = getattr(torch, which)
            if axis is None:
                out = fn(x.reshape(-1))
                return out.reshape((1,) * x.dim()) if keepdims else out
            return fn(x, dim=axis, keepdim=keepdims)
        return op
    return make


def _arg(name: str, fn: Callable[..., Any]) -> None:
    register(Primitive(
        name, lambda x, axis=None, keepdims=False: fn(_f(x), axis=axis, keepdims=keepdims), nargs=1,
        differentiable=False, shape_rule=_arg_shape,
        tape=Tape(autograd=lambda anp: lambda x, axis=None, keepdims=False: getattr(anp, name)(
            x, axis=axis, keepdims=keepdims), torch=_torch_arg(name))))


_arg("argmax", np.argmax)
_arg("argmin", np.argmin)


def _torch_argsort(torch: Any) -> Callable[..., Any]:
    def argsort(x, axis=-1, kind=None):
        return torch.as_tensor(np.argsort(x.detach().numpy(), axis=axis, kind=kind))
    return argsort


register(Primitive(
    "argsort", lambda x, axis=-1, kind=None: np.argsort(_f(x), axis=axis, kind=kind), nargs=1,
    differentiable=False, shape_rule=_same_shape,
    tape=Tape(autograd=lambda anp: lambda x, axis=-1, kind=None: anp.argsort(x, axis=axis, kind=kind),
              torch=_torch_argsort)))
