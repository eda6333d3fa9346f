"""numpy functions over traced values: contractions (einsum, tensordot, outer, inner, vdot, kron, cross).

``einsum`` records the primitive ``'einsum'`` (:mod:`lagrangeprop.rules.einsum`); the
others are composites, expanded while tracing into the primitives numpy itself computes
them with (``tensordot`` is numpy's transpose, reshape, ``dot``, reshape; ``kron`` an
outer product of reshaped operands; ``cross`` the products of components), so the values
are numpy's. matmul and dot are :mod:`lagrangeprop.graph.ops`. Each function is
registered in :data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS` (``np.einsum(v, ...)``
dispatches here); operands may be lists or object arrays of traced values
(:mod:`~lagrangeprop.graph.pack`). Every numpy argument is implemented or raises
:class:`~lagrangeprop.errors.GraphError` naming it.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> A = np.arange(6.0).reshape(2, 3)
>>> lp.trace(lambda x: np.einsum("ij,j->i", A, x), x=np.ones(3)).evaluate(x=np.ones(3)).tolist()
[3.0, 12.0]
>>> lp.grad(lambda x: np.tensordot(x, x, axes=2))(A).tolist()
[[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]]
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, ShapeError
from ..rules.einsum import LETTERS, OPTIMIZE, parse
from .arguments import check_dtype, check_out, traced_name, unsupported
from .ops import dot, multiply, negative, reshape, stack, subtract, transpose
from .pack import as_traced
from .var import HANDLED_FUNCTIONS, Var, apply

__all__ = ["einsum", "tensordot", "outer", "inner", "vdot", "kron", "cross"]


def _operands(*xs: Any) -> list[Any]:
    """The operands with lists/object arrays of traced values packed into traced values."""
    return [as_traced(x) for x in xs]


def _traced(xs: list[Any]) -> Var | None:
    return next((x for x in xs if isinstance(x, Var)), None)


def _shape(x: Any, func: str) -> tuple:
    if isinstance(x, Var):
        if x.shape is None:
            raise GraphError(f"{func}{traced_name(x)}: the shape of {x.name!r} is not known yet; "
                             "declare it with prog.variable(name, shape=...)")
        return x.shape
    return np.shape(x)


# ---------------------------------------------------------------- einsum


_SUBLIST_LETTERS = LETTERS[26:] + LETTERS[:26]   # numpy: 0-25 -> 'A'-'Z', 26-51 -> 'a'-'z'


def _sublist(sub: Any, where: str) -> str:
    """numpy's sublist (ints in [0, 52), Ellipsis) as subscript letters."""
    if isinstance(sub, (str, Var)) or not hasattr(sub, "__iter__"):
        raise GraphError(f"einsum: {where} must be a list of ints in [0, 52) and Ellipsis, got {sub!r}")
    out = ""
    for k in sub:
        if k is Ellipsis:
            out += "..."
            continue
        try:
            k = operator.index(k)
        except TypeError:
            raise GraphError(f"einsum: {where} holds {k!r}; a sublist holds ints in [0, 52) "
                             "and Ellipsis") from None
        if not 0 <= k < len(_SUBLIST_LETTERS):
            raise GraphError(f"einsum: {where} holds {k}, outside [0, 52)")
        out += _SUBLIST_LETTERS[k]
    return out


def _from_sublists(args: tuple) -> tuple[str, list[Any]]:
    """``einsum(op0, sub0, op1, sub1, ..., [sub_out])`` as (subscripts, operands)."""
    ops, terms = list(args[0::2]), list(args[1::2])
    out = ops.pop() if len(args) % 2 else None
    subs = ",".join(_sublist(t, f"the sublist of operand {k}") for k, t in enumerate(terms))
    if out is not None:
        subs += "->" + _sublist(out, "the output sublist")
    return subs, ops


def _known(ops: list[Any]) -> bool:
    return all(not isinstance(a, Var) or a.shape is not None for a in ops)


def einsum(*operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    """``numpy.einsum``: subscripts (implicit or ``->`` output, ``...``, repeated letters,
    broadcasting) or numpy's sublist form ``einsum(a, [0, 1], b, [1, 2])``.

    ``optimize`` (False, True, 'greedy', 'optimal') chooses numpy's contraction order for
    the value; ``order`` only chooses a memory layout. Records primitive ``'einsum'``.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: lp.einsum("ii->i", x), x=np.ones((2, 2)))
    >>> prog.evaluate(x=np.arange(4.0).reshape(2, 2)).tolist()
    [0.0, 3.0]
    >>> float(lp.grad(lambda x: lp.einsum(x, [0], x, [0]))(np.array([1.0, 2.0]))[1])
    4.0
    """
    if not operands:
        raise GraphError("einsum: no subscripts and no operands given")
    if isinstance(operands[0], str):
        subscripts, ops = operands[0], list(operands[1:])
    else:
        subscripts, ops = _from_sublists(operands)
    ops = _operands(*ops)
    x = _traced(ops)
    if x is None:   # nothing traced: numpy itself, every argument as given
        return np.einsum(*operands, out=out, optimize=optimize, dtype=dtype, order=order, casting=casting)
    check_out("einsum", out, x)
    check_dtype("einsum", dtype, x)
    if casting != "safe":
        raise unsupported("einsum", "casting", casting, x)
    if order not in ("K", "C", "F", "A"):
        raise unsupported("einsum", "order", order, x, "Use one of 'K', 'C', 'F', 'A'.")
    if not (isinstance(optimize, bool) or isinstance(optimize, str) and optimize in OPTIMIZE):
        raise unsupported("einsum", "optimize", optimize, x,
                          "Use False, True, 'greedy' or 'optimal' (a precomputed path is not supported).")
    if not ops:
        raise GraphError(f"einsum {subscripts!r}: no operands given")
    if any(sp.issparse(a) for a in ops):
        raise GraphError(f"einsum {subscripts!r}{traced_name(x)}: a scipy.sparse operand is not "
                         "supported; write the product with @ (matmul takes a constant sparse matrix)")
    if x is not None and _known(ops):
        shapes = tuple(_shape(a, "einsum") for a in ops)
        try:
            parse(subscripts, shapes)
        except ValueError as exc:
            raise ShapeError(f"einsum {subscripts!r}{traced_name(x)} on operands of shapes "
                             f"{list(shapes)}: {exc}") from None
    return apply("einsum", ops, {"subscripts": subscripts, "optimize": optimize})


# ---------------------------------------------------------------- tensordot, inner, vdot, outer
# numpy's own algorithm: move the summed axes of a to the end and those of b to the
# front, reshape both to matrices, dot, reshape to a's free axes + b's free axes.


def _axis_list(axes: Any) -> list[int]:
    if isinstance(axes, Var):
        raise GraphError(f"tensordot: axes must be static, not the traced value {axes.name!r}")
    try:
        return [operator.index(k) for k in axes] if hasattr(axes, "__iter__") else [operator.index(axes)]
    except TypeError:
        raise GraphError(f"tensordot: axes {axes!r} must be ints") from None


def _tensordot_axes(axes: Any, nda: int, ndb: int) -> tuple[list[int], list[int]]:
    if isinstance(axes, Var):
        raise GraphError(f"tensordot: axes must be static, not the traced value {axes.name!r}")
    if hasattr(axes, "__iter__"):
        try:
            first, second = axes
        except (TypeError, ValueError):
            raise GraphError(f"tensordot: axes {axes!r} must be an int or a pair of sequences") from None
        axes_a, axes_b = _axis_list(first), _axis_list(second)
    else:
        try:
            n = operator.index(axes)
        except TypeError:
            raise GraphError(f"tensordot: axes {axes!r} must be an int or a pair of sequences") from None
        axes_a, axes_b = list(range(-n, 0)), list(range(n))
    for name, ax in (("a", axes_a), ("b", axes_b)):
        if len(set(ax)) != len(ax):
            raise ShapeError(f"tensordot: duplicate axes are not allowed ({name}: {ax})")
    if len(axes_a) != len(axes_b):
        raise ShapeError(f"tensordot: shape-mismatch for sum (axes {axes_a} and {axes_b})")
    for ax, nd in ((axes_a, nda), (axes_b, ndb)):
        for k in ax:
            if not -nd <= k < nd:
                raise ShapeError(f"tensordot: axis {k} is out of range for an array with {nd} dimension(s)")
    return [k % nda for k in axes_a], [k % ndb for k in axes_b]


def _permuted(x: Any, axes: list[int]) -> Any:
    return x if axes == sorted(axes) else transpose(x, tuple(axes))


def _reshaped(x: Any, shape: tuple, func: str) -> Any:
    return x if _shape(x, func) == tuple(shape) else reshape(x, tuple(shape))


def tensordot(a, b, axes=2):
    """``numpy.tensordot``: the composite transpose, reshape, ``dot``, reshape (numpy's own
    steps, so the value is numpy's). ``axes`` is an int (the last ``axes`` axes of ``a``
    with the first of ``b``) or a pair of axis sequences; negative axes count from the end.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: lp.tensordot(x, np.ones((3, 2)), axes=([1], [0])), x=np.ones((2, 3)))
    >>> prog.evaluate(x=np.ones((2, 3))).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """
    a, b = _operands(a, b)
    if _traced([a, b]) is None:
        return np.tensordot(a, b, axes)
    as_, bs = _shape(a, "tensordot"), _shape(b, "tensordot")
    axes_a, axes_b = _tensordot_axes(axes, len(as_), len(bs))
    for ka, kb in zip(axes_a, axes_b):
        if as_[ka] != bs[kb]:
            raise ShapeError(f"tensordot{traced_name(_traced([a, b]))}: shape-mismatch for sum: axis "
                             f"{ka} of a has length {as_[ka]}, axis {kb} of b {bs[kb]}")
    free_a = [k for k in range(len(as_)) if k not in axes_a]
    free_b = [k for k in range(len(bs)) if k not in axes_b]
    n_sum = math.prod(as_[k] for k in axes_a)
    at = _reshaped(_permuted(a, free_a + axes_a), (math.prod(as_[k] for k in free_a), n_sum), "tensordot")
    bt = _reshaped(_permuted(b, axes_b + free_b), (n_sum, math.prod(bs[k] for k in free_b)), "tensordot")
    return _reshaped(dot(at, bt), tuple(as_[k] for k in free_a) + tuple(bs[k] for k in free_b),
                     "tensordot")


def inner(a, b):
    """``numpy.inner``: the sum over the last axes (a product for a 0-d operand); the
    composite ``tensordot(a, b, ([-1], [-1]))``."""
    a, b = _operands(a, b)
    if _traced([a, b]) is None:
        return np.inner(a, b)
    as_, bs = _shape(a, "inner"), _shape(b, "inner")
    if not as_ or not bs:
        return multiply(a, b)
    if as_[-1] != bs[-1]:
        raise ShapeError(f"inner{traced_name(_traced([a, b]))}: shapes {as_} and {bs} are not aligned "
                         "(their last axes differ)")
    return tensordot(a, b, ([-1], [-1]))


def vdot(a, b):
    """``numpy.vdot`` of real arrays: ``dot`` of the flattened operands (equal sizes)."""
    a, b = _operands(a, b)
    if _traced([a, b]) is None:
        return np.vdot(a, b)
    na, nb = math.prod(_shape(a, "vdot")), math.prod(_shape(b, "vdot"))
    if na != nb:
        raise ShapeError(f"vdot{traced_name(_traced([a, b]))}: vectors of different lengths {na} and {nb}")
    return dot(_reshaped(a, (na,), "vdot"), _reshaped(b, (nb,), "vdot"))


def outer(a, b, out=None):
    """``numpy.outer``: ``ravel(a)[:, None] * ravel(b)[None, :]`` (operands are flattened)."""
    a, b = _operands(a, b)
    check_out("outer", out, _traced([a, b]))
    if _traced([a, b]) is None:
        return np.outer(a, b)
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


# kron: numpy's steps: a gets at least b's number of axes, the shapes are interleaved
# (a_0, 1, a_1, 1, ...) * (1, b_0, 1, b_1, ...) and the product reshaped to a_k * b_k.


def kron(a, b):
    """``numpy.kron``: the Kronecker product, an outer product of interleaved reshapes."""
    a, b = _operands(a, b)
    if _traced([a, b]) is None:
        return np.kron(a, b)
    as_, bs = _shape(a, "kron"), _shape(b, "kron")
    as_ = (1,) * max(0, len(bs) - len(as_)) + tuple(as_)   # np.array(a, ndmin=b.ndim)
    if not as_ or not bs:
        return multiply(_reshaped(a, as_, "kron"), b)
    bs = (1,) * (len(as_) - len(bs)) + tuple(bs)
    a_arr = _reshaped(a, tuple(n for k in as_ for n in (k, 1)), "kron")
    b_arr = _reshaped(b, tuple(n for k in bs for n in (1, k)), "kron")
    return reshape(multiply(a_arr, b_arr), tuple(p * q for p, q in zip(as_, bs)))


# ---------------------------------------------------------------- cross
# numpy's steps: the vector axes moved last, components a_k = a[..., k] (a missing third
# component is 0), c = (a1 b2 - a2 b1, a2 b0 - a0 b2, a0 b1 - a1 b0) stacked at axisc;
# two 2-vectors give the scalar a0 b1 - a1 b0.


def _axis(k: Any, ndim: int, what: str) -> int:
    try:
        k = operator.index(k)
    except TypeError:
        raise GraphError(f"cross: {what} {k!r} must be an int") from None
    if not -ndim <= k < ndim:
        raise ShapeError(f"cross: {what}: axis {k} is out of bounds for an array of dimension {ndim}")
    return k % ndim


def _last(x: Any, axis: int, ndim: int) -> Any:
    perm = [k for k in range(ndim) if k != axis] + [axis]
    return _permuted(x, perm)


def _component(x: Any, k: int) -> Any:
    return apply("getitem", (x,), {"index": (Ellipsis, k)})


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """``numpy.cross`` of 2- and 3-vectors along ``axisa``/``axisb`` (``axis`` sets all
    three), the result's vector axis at ``axisc``; a composite of products (numpy's steps).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> e = np.array([1.0, 0.0, 0.0])
    >>> lp.trace(lambda x: lp.cross(e, x), x=np.ones(3)).evaluate(x=np.array([0.0, 1.0, 0.0])).tolist()
    [0.0, 0.0, 1.0]
    """
    a, b = _operands(a, b)
    if _traced([a, b]) is None:
        return np.cross(a, b, axisa, axisb, axisc, axis)
    if axis is not None:
        axisa = axisb = axisc = axis
    as_, bs = _shape(a, "cross"), _shape(b, "cross")
    if not as_ or not bs:
        raise ShapeError("cross: at least one array has zero dimension")
    axisa, axisb = _axis(axisa, len(as_), "axisa"), _axis(axisb, len(bs), "axisb")
    na, nb = as_[axisa], bs[axisb]
    if na not in (2, 3) or nb not in (2, 3):
        raise ShapeError("cross: incompatible dimensions for cross product (dimension must be 2 or 3), "
                         f"got {na} and {nb}")
    if 2 in (na, nb):
        warnings.warn("Arrays of 2-dimensional vectors are deprecated. Use arrays of 3-dimensional "
                      "vectors instead. (deprecated in NumPy 2.0)", DeprecationWarning, stacklevel=2)
    rest_a = as_[:axisa] + as_[axisa + 1:]
    rest_b = bs[:axisb] + bs[axisb + 1:]
    try:
        shape = np.broadcast_shapes(rest_a, rest_b)
    except ValueError:
        raise ShapeError(f"cross: the vector arrays of shapes {as_} and {bs} do not broadcast") from None
    a, b = _last(a, axisa, len(as_)), _last(b, axisb, len(bs))
    a_k = [_component(a, k) for k in range(na)]
    b_k = [_component(b, k) for k in range(nb)]
    z = subtract(multiply(a_k[0], b_k[1]), multiply(a_k[1], b_k[0]))
    if na == nb == 2:
        return z
    axisc = _axis(axisc, len(shape) + 1, "axisc")
    if na == 2:
        x, y = multiply(a_k[1], b_k[2]), negative(multiply(a_k[0], b_k[2]))
    elif nb == 2:
        x, y = negative(multiply(a_k[2], b_k[1])), multiply(a_k[2], b_k[0])
    else:
        x = subtract(multiply(a_k[1], b_k[2]), multiply(a_k[2], b_k[1]))
        y = subtract(multiply(a_k[2], b_k[0]), multiply(a_k[0], b_k[2]))
    return stack([x, y, z], axis=axisc)


# numpy's dispatch (np.einsum(v, ...), np.tensordot(v, ...)) on traced values lands here
HANDLED_FUNCTIONS.update((name, globals()[name]) for name in __all__)
