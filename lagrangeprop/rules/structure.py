"""Structure ops (reshape, transpose, getitem, concatenate, stack), each one entry with all its rules.

Linear ops that move entries around. Each is a 0/1 selection: ``ans.flat = x.flat[idx]``
with ``idx = op(arange(x.size).reshape(x.shape))``; the Jacobian is that selection
matrix, the cotangent scatter-adds ``g`` back (repeated indices accumulate), and the
curvature is zero.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.arange(3.0)
>>> get("getitem").vjp(0, np.ones(2), x[[0, 0]], [x], {"index": [0, 0]}).tolist()
[2.0, 0.0, 0.0]
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

__all__: list[str] = []

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple
_NO_DATA = np.dtype([])   # itemsize 0: an array of any shape holds no bytes




def _selection_jac(idx: np.ndarray, n_arg: int) -> sp.csr_matrix:
    idx = np.asarray(idx, dtype=np.int64).ravel()
    n_out = idx.size
    return sp.csr_matrix((np.ones(n_out), (np.arange(n_out), idx)), shape=(n_out, n_arg))


def _positions(x: Any) -> np.ndarray:
    return np.arange(_size(x)).reshape(np.shape(x))


def _reshape(x: Any, shape: Any = None) -> np.ndarray:
    return np.array(np.reshape(_f(x), shape))  # a copy, never a view of x


def _reshape_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    new = params.get("shape")
    if set(params) - {"shape"} or not isinstance(new, tuple) or any(type(n) is not int for n in new):
        return None
    size = 1
    for n in s:
        size *= n
    if new.count(-1) == 1:
        rest = 1
        for n in new:
            if n != -1:
                rest *= n
        if rest <= 0 or size % rest or any(n < -1 for n in new):
            return None
        return tuple(size // rest if n == -1 else n for n in new)
    if any(n < 0 for n in new):
        return None
    total = 1
    for n in new:
        total *= n
    return new if total == size else None



register(Primitive(
    "reshape", _reshape, nargs=1,
    vjp=lambda i, g, ans, args, params: g.reshape(np.shape(args[0])),
    jvp=lambda i, t, ans, args, params: t.reshape(np.shape(ans)),
    jac=lambda i, ans, args, params: sp.identity(_size(ans), format="csr"),
    curvature=zero_curvature, shape_rule=_reshape_shape, linear=True,
    tape=Tape(autograd=lambda anp: lambda x, shape=None: anp.reshape(x, shape),
              torch=lambda torch: lambda x, shape=None: torch.reshape(x, tuple(shape)))))


def _transpose(x: Any, axes: Any = None) -> np.ndarray:
    return np.array(np.transpose(_f(x), axes))


def _transpose_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    # the inverse permutation of the *normalized* axes: argsort((-1, 0)) would be (0, 1)
    axes = params.get("axes")
    if axes is None:
        return np.transpose(g)
    return np.transpose(g, np.argsort([int(a) % g.ndim for a in axes]))


def _transpose_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    axes = params.get("axes")
    if set(params) - {"axes"}:
        return None
    if axes is None:
        return s[::-1]
    norm = reduced_axes(tuple(axes), len(s)) if isinstance(axes, tuple) else None
    if norm is None or len(norm) != len(s):
        return None
    return tuple(s[a] for a in norm)



def _autograd_transpose(anp: Any) -> Callable[..., Any]:
    # normalized axes: autograd's transpose VJP inverts them with argsort, which is wrong
    # for negative axes (argsort((-1, 0)) = (0, 1))
    return lambda x, axes=None: anp.transpose(
        x, None if axes is None else tuple(int(a) % anp.ndim(x) for a in axes))


def _torch_transpose(torch: Any) -> Callable[..., Any]:
    def transpose(x, axes=None):
        return x.permute(*(reversed(range(x.dim())) if axes is None else axes))
    return transpose


register(Primitive(
    "transpose", _transpose, nargs=1, vjp=_transpose_vjp,
    jvp=lambda i, t, ans, args, params: np.transpose(t, params.get("axes")),
    jac=lambda i, ans, args, params: _selection_jac(
        np.transpose(_positions(args[0]), params.get("axes")), _size(args[0])),
    curvature=zero_curvature, shape_rule=_transpose_shape, linear=True,
    tape=Tape(autograd=_autograd_transpose, torch=_torch_transpose)))


def _getitem(x: Any, index: Any = ()) -> np.ndarray:
    return np.array(_f(x)[index])


def _basic_one(k: Any) -> bool:
    return k is None or k is Ellipsis or isinstance(k, slice) or (
        isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))


def _basic(index: Any) -> bool:
    """Whether ``index`` is basic indexing (ints, slices, None, Ellipsis): it selects
    every entry at most once, so the cotangent is a plain scatter, no accumulation."""
    if index.__class__ is int:
        return True
    return all(_basic_one(k) for k in index) if isinstance(index, tuple) else _basic_one(index)


def _getitem_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    index = params["index"]
    if _basic(index):
        out = np.zeros(np.shape(args[0]))
        out[index] += g   # 0 + g, as the bincount below
        return out
    idx = _positions(args[0])[index].ravel()
    return np.bincount(idx, weights=g.ravel(), minlength=_size(args[0])).reshape(np.shape(args[0]))


def _getitem_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    """Basic indexing by ints and slices by rule; arrays, None, Ellipsis: numpy's own
    indexing of an array of 0-byte elements (the exact shape, no data allocated)."""
    (s,) = shapes
    if set(params) - {"index"}:
        return None
    index = params.get("index", ())
    index = index if isinstance(index, tuple) else (index,)
    if not all(type(i) is int or type(i) is slice for i in index):
        try:
            return np.empty(s, dtype=_NO_DATA)[index].shape
        except (IndexError, TypeError, ValueError):
            return None   # numpy says why when the op is evaluated
    if len(index) > len(s):
        return None
    out = []
    for k, i in enumerate(index):
        n = s[k]
        if type(i) is int:
            if not -n <= i < n:
                return None
        elif type(i) is slice:
            if not all(v is None or type(v) is int for v in (i.start, i.stop, i.step)) or i.step == 0:
                return None
            out.append(len(range(*i.indices(n))))
        else:
            return None
    return tuple(out) + tuple(s[len(index):])



def _torch_getitem(torch: Any) -> Callable[..., Any]:
    def getitem(x, index=()):
        def conv(i):
            return torch.as_tensor(i) if isinstance(i, np.ndarray) else i
        index = tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)
        return x[index]
    return getitem


register(Primitive(
    "getitem", _getitem, nargs=1, vjp=_getitem_vjp,
    jvp=lambda i, t, ans, args, params: t[params["index"]],
    jac=lambda i, ans, args, params: _selection_jac(_positions(args[0])[params["index"]], _size(args[0])),
    curvature=zero_curvature, shape_rule=_getitem_shape, linear=True,
    tape=Tape(autograd=lambda anp: lambda x, index=(): x[index], torch=_torch_getitem)))


# concatenate / stack: argument i occupies a block of the output along axis.


def _concatenate(*xs: Any, axis: int = 0) -> np.ndarray:
    return np.concatenate([_f(x) for x in xs], axis=axis)


def _concat_block(i: int, ans: Any, args: Args, params: Params) -> tuple:
    """The index into ans of argument i's block."""
    axis = params.get("axis", 0) % np.ndim(ans)
    start = sum(np.shape(x)[axis] for x in args[:i])
    return (slice(None),) * axis + (slice(start, start + np.shape(args[i])[axis]),)


def _concat_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    out = np.zeros(np.shape(ans))
    out[_concat_block(i, ans, args, params)] = t
    return out


def _join_shape(shapes: Sequence[Shape], params: dict, new_axis: bool) -> Shape | None:
    """concatenate (``new_axis=False``) and stack: equal shapes except along ``axis``."""
    axis = params.get("axis", 0)
    if set(params) - {"axis"} or type(axis) is not int or not shapes:
        return None
    first = shapes[0]
    ndim = len(first) + new_axis
    if not -ndim <= axis < ndim or (not new_axis and not first):
        return None
    axis %= ndim
    if new_axis:
        return first[:axis] + (len(shapes),) + first[axis:] if all(s == first for s in shapes) else None
    rest = [s[:axis] + s[axis + 1:] for s in shapes]
    if any(len(s) != len(first) or r != rest[0] for s, r in zip(shapes, rest)):
        return None
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]



register(Primitive(
    "concatenate", _concatenate, nargs=None,
    vjp=lambda i, g, ans, args, params: g[_concat_block(i, ans, args, params)],
    jvp=_concat_jvp,
    jac=lambda i, ans, args, params: _selection_jac(
        _positions(ans)[_concat_block(i, ans, args, params)], _size(ans)).T.tocsr(),
    curvature=zero_curvature, shape_rule=lambda shapes, params: _join_shape(shapes, params, False),
    linear=True,
    tape=Tape(autograd=lambda anp: lambda *xs, axis=0: anp.concatenate(list(xs), axis=axis),
              torch=lambda torch: lambda *xs, axis=0: torch.cat(list(xs), dim=axis))))


def _stack(*xs: Any, axis: int = 0) -> np.ndarray:
    return np.stack([_f(x) for x in xs], axis=axis)


def _stack_axis(ans: Any, params: Params) -> int:
    return params.get("axis", 0) % np.ndim(ans)


def _stack_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    out = np.zeros(np.shape(ans))
    axis = _stack_axis(ans, params)
    out[(slice(None),) * axis + (i,)] = t
    return out


register(Primitive(
    "stack", _stack, nargs=None,
    vjp=lambda i, g, ans, args, params: np.take(g, i, axis=_stack_axis(ans, params)),
    jvp=_stack_jvp,
    jac=lambda i, ans, args, params: _selection_jac(
        np.take(_positions(ans), i, axis=_stack_axis(ans, params)), _size(ans)).T.tocsr(),
    curvature=zero_curvature, shape_rule=lambda shapes, params: _join_shape(shapes, params, True),
    linear=True,
    tape=Tape(autograd=lambda anp: lambda *xs, axis=0: anp.stack(list(xs), axis=axis),
              torch=lambda torch: lambda *xs, axis=0: torch.stack(list(xs), dim=axis))))
