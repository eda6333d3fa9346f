"""numpy functions over traced values: elementwise functions beyond basic arithmetic
(the ufunc families, piecewise and integer-valued ops, %).

Each function records one primitive of the rules layer (:mod:`lagrangeprop.rules.ufuncs`,
:mod:`lagrangeprop.rules.piecewise`) or is a composite of them (``divmod``, ``real``,
``imag``), and registers itself in :data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS`
(numpy's dispatch) and, where ndarray has the method, in
:data:`~lagrangeprop.graph.var.METHODS`. A ufunc such as ``np.sinh(v)`` reaches its
primitive through ``Var.__array_ufunc__`` by name; ``lp.sinh`` takes numpy's ufunc
keywords, each implemented or refused (:func:`~lagrangeprop.graph.arguments.check_ufunc_kwargs`).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> g = lp.grad(lambda x: np.sum(np.arctan2(x, 2.0) + x % 0.75 + np.clip(x, -0.5, 0.5)))
>>> g(np.array([0.25, -1.0, 2.0])).round(6)        # 2/(x²+4) + 1 + [|x| < 0.5]
array([2.492308, 1.4     , 1.25    ])
>>> float(lp.floor(2.5)), float(lp.round(2.345, decimals=2)), lp.divmod(7.0, -2.0)
(2.0, 2.35, (np.float64(-4.0), np.float64(-1.0)))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GraphError
from .arguments import NO_VALUE, check_out, check_ufunc_kwargs, static_int, traced_name
from .var import HANDLED_FUNCTIONS, METHODS, Var, apply

UNARY = ["exp2", "expm1", "log2", "log10", "sinh", "cosh", "arcsin", "arccos", "arctan",
         "arcsinh", "arccosh", "arctanh", "sinc", "cbrt", "reciprocal", "deg2rad", "rad2deg",
         "degrees", "radians", "fabs", "sign", "floor", "ceil", "rint", "trunc"]
BINARY = ["arctan2", "hypot", "logaddexp2", "fmax", "fmin", "remainder", "fmod", "floor_divide"]

__all__ = [*UNARY, *BINARY, "mod", "divmod", "fix", "round", "around", "clip", "real", "imag",
           "conj", "conjugate"]


# ---------------------------------------------------------------- ufuncs
def _traced(args: tuple) -> Any:
    """The first traced argument (for messages), else the first argument."""
    return next((a for a in args if isinstance(a, Var)), args[0] if args else None)


def _ufunc(name: str, nin: int, prim: str | None = None) -> Callable[..., Any]:
    """``lp.<name>(x[, y], /, out=None, **ufunc keywords)``: numpy's ufunc signature."""
    prim = prim or name

    def op(*args: Any, out: Any = None, **kwargs: Any) -> Any:
        if len(args) != nin:
            raise GraphError(f"{name} takes {nin} positional argument(s) (numpy's ufunc), "
                             f"got {len(args)}")
        check_ufunc_kwargs(f"np.{name}", {"out": out, **kwargs}, _traced(args))
        return apply(prim, args)
    op.__name__ = op.__qualname__ = name
    what = "Elementwise" if nin == 1 else "Elementwise, with numpy broadcasting,"
    op.__doc__ = (f"{what} ``numpy.{name}`` (primitive ``{prim!r}``); ufunc keywords are "
                  "implemented or raise GraphError.")
    return op


for _name in UNARY:
    globals()[_name] = _ufunc(_name, 1)
for _name in BINARY:
    globals()[_name] = _ufunc(_name, 2)
mod = _ufunc("remainder", 2)          # np.mod is np.remainder
conjugate = conj = _ufunc("conjugate", 1, "identity")   # a real value is its own conjugate


def divmod(x: Any, y: Any, /, out: Any = None, **kwargs: Any) -> tuple:  # noqa: A001
    """``numpy.divmod``: ``(x // y, x % y)``, the primitives ``floor_divide`` and ``remainder``.

    Examples
    --------
    >>> divmod(-7.0, 2.0)
    (np.float64(-4.0), np.float64(1.0))
    """
    check_ufunc_kwargs("np.divmod", {"out": out, **kwargs}, _traced((x, y)))
    return apply("floor_divide", (x, y)), apply("remainder", (x, y))


# ---------------------------------------------------------------- functions
def fix(x: Any, out: Any = None) -> Any:
    """``numpy.fix``: round toward zero (primitive ``'fix'``, derivative 0).

    Examples
    --------
    >>> fix(-2.5)
    np.float64(-2.0)
    """
    check_out("fix", out, x)
    return apply("fix", (x,))


def round(a: Any, decimals: int = 0, out: Any = None) -> Any:  # noqa: A001 - numpy's name
    """``numpy.round`` to ``decimals`` places (half to even; primitive ``'round'``, derivative 0).

    Examples
    --------
    >>> round(2.5), round(1234.5, decimals=-2)
    (np.float64(2.0), np.float64(1200.0))
    """
    check_out("round", out, a)
    decimals = static_int(decimals, "round", "decimals", a)
    return apply("round", (a,), {"decimals": decimals})


around = round


def _bound(value: Any, arg: str, fill: float, a: Any) -> Any:
    if isinstance(value, Var):
        raise GraphError(
            f"clip(..., {arg}=<traced {value.name!r}>){traced_name(a)}: a traced bound is not "
            "differentiated by clip (autograd's clip differentiates x only); write "
            "lp.minimum(lp.maximum(x, a_min), a_max) to differentiate the bounds too")
    if value is None:
        return fill
    return np.asarray(value, dtype=np.float64)


def clip(a: Any, a_min: Any = NO_VALUE, a_max: Any = NO_VALUE, out: Any = None, *,
         min: Any = NO_VALUE, max: Any = NO_VALUE, **kwargs: Any) -> Any:  # noqa: A002
    """``numpy.clip``: ``a`` limited to ``[a_min, a_max]`` (``None``: unbounded on that side).

    The bounds are constants; the derivative is 1 where the result equals neither bound and
    0 elsewhere (autograd's rule: 0 on a bound). ``min=``/``max=`` are numpy 2's spellings.

    Examples
    --------
    >>> clip(np.array([-2.0, 0.5, 3.0]), -1.0, None)
    array([-1. ,  0.5,  3. ])
    """
    for name, alias, given in (("a_min", "min", min), ("a_max", "max", max)):
        if given is not NO_VALUE:
            if (a_min if name == "a_min" else a_max) is not NO_VALUE:
                raise GraphError(f"clip: passing `{alias}` when `{name}` is provided is "
                                 "forbidden (as in numpy)")
            if name == "a_min":
                a_min = given
            else:
                a_max = given
    check_ufunc_kwargs("np.clip", {"out": out, **kwargs}, a)
    lo = _bound(None if a_min is NO_VALUE else a_min, "a_min", -np.inf, a)
    hi = _bound(None if a_max is NO_VALUE else a_max, "a_max", np.inf, a)
    return apply("clip", (a, lo, hi))


def real(val: Any) -> Any:
    """``numpy.real`` of a real value: the value itself (a copy, primitive ``'identity'``).

    Examples
    --------
    >>> real(np.array([1.0, 2.0]))
    array([1., 2.])
    """
    return apply("identity", (val,)) if isinstance(val, Var) else np.real(val)


def imag(val: Any) -> Any:
    """``numpy.imag`` of a real value: zeros of its shape (a constant, derivative 0).

    Examples
    --------
    >>> imag(np.array([1.0, 2.0]))
    array([0., 0.])
    """
    return np.zeros(val.shape) if isinstance(val, Var) else np.imag(val)


def real_if_close(a: Any, tol: float = 100) -> Any:
    """``numpy.real_if_close`` of a real value: the value itself (primitive ``'identity'``)."""
    return apply("identity", (a,)) if isinstance(a, Var) else np.real_if_close(a, tol)


def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None,
               neginf: Any = None) -> Any:
    """``numpy.nan_to_num`` of a traced value: the value itself (primitive ``'identity'``).

    Every value a solve accepts is finite (a NaN or inf raises
    :class:`~lagrangeprop.errors.NonFiniteError` naming the node that made it), so the
    replacement never happens and the derivative is 1, as autograd's where ``x`` is finite.
    To mask entries a program may make non-finite, write ``lp.where`` on the arguments of
    the op that would make them. The replacement values must be constants.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> float(lp.grad(lambda x: np.nan_to_num(x * 3.0, nan=0.0))(2.0))
    3.0
    """
    if not isinstance(x, Var):
        return np.nan_to_num(x, copy=copy, nan=nan, posinf=posinf, neginf=neginf)
    for arg, value in (("nan", nan), ("posinf", posinf), ("neginf", neginf)):
        if isinstance(value, Var) or not (value is None or np.ndim(value) == 0):
            raise GraphError(f"np.nan_to_num(..., {arg}=...){traced_name(x)}: the replacement must be "
                             "a constant scalar or None")
    if not isinstance(copy, (bool, np.bool_)):
        raise GraphError(f"np.nan_to_num(..., copy={copy!r}){traced_name(x)}: copy must be True or False")
    return apply("identity", (x,))


def angle(z: Any, deg: bool = False) -> Any:
    """``numpy.angle`` of a real value: 0 where ``z >= 0``, π (180 with ``deg``) where
    ``z < 0``; piecewise constant, derivative 0 (a ``where`` of constants)."""
    if not isinstance(z, Var):
        return np.angle(z, deg)
    return apply("where", (apply("less", (z, 0.0)), 180.0 if deg else np.pi, np.zeros(z.shape)))


# numpy's dispatch (``__array_function__``; ufuncs arrive by name through __array_ufunc__)
HANDLED_FUNCTIONS.update(real_if_close=real_if_close, angle=angle, nan_to_num=nan_to_num)
HANDLED_FUNCTIONS.update((name, globals()[name]) for name in __all__)

# ndarray methods (``v.clip(0, 1)``, ``v.round(2)``, ``v.conj()``)
METHODS["clip"] = lambda v, min=None, max=None, out=None, **kwargs: clip(  # noqa: A006
    v, min, max, out, **kwargs)
METHODS["round"] = lambda v, decimals=0, out=None: round(v, decimals, out)
METHODS["conj"] = METHODS["conjugate"] = lambda v: apply("identity", (v,))
