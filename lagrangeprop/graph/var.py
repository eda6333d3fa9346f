"""Traced values: a :class:`Var` names one node of a program graph being built.

Operators (``+ - * / ** @``, comparisons, indexing) and numpy's protocols
(``__array_ufunc__`` for ``np.exp(v)``, ``__array_function__`` for ``np.sum(v)``) record a
defined node ``z_d = f_d(parents)`` through :func:`apply`; this module knows nothing of
derivatives. The numpy functions a Var handles live in :mod:`lagrangeprop.graph.ops`,
which registers them in :data:`HANDLED_FUNCTIONS` (this module never imports it, as
autograd wraps numpy from outside its tracer). A Var implements the rules layer's
recording protocol ``__lagrangeprop_apply__``, so ``prim(v)`` records too.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: np.exp(x) * 2.0, x=0.5)
>>> sorted(d["op"] for _, d in prog.graph.nodes(data=True) if d["role"] == "defined")
['exp', 'multiply']
>>> apply("exp", (0.0,))   # no traced argument: the op is evaluated
np.float64(1.0)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GraphError
from ..rules import registry
from .arguments import (_BITWISE, _UFUNC_ALIASES, BOOLEAN_OPS, check_dtype, check_ufunc_kwargs,
                        dispatch_key, static_index)

__all__ = ["Var", "apply", "is_traced", "HANDLED_FUNCTIONS", "METHODS", "BOOLEAN_OPS"]

# numpy function name -> its implementation on traced values (np.sum(v) -> lp.sum);
# functions of numpy's submodules are keyed with the submodule: "linalg.norm" for
# np.linalg.norm (see :func:`dispatch_key`). Filled by the graph-layer op modules
# (lagrangeprop.graph.ops and its families).
HANDLED_FUNCTIONS: dict[str, Callable[..., Any]] = {}

# ndarray method name -> implementation ``impl(var, *args, **kwargs)`` (``v.max(axis=0)``);
# filled by the same modules next to the functions (methods not listed raise GraphError)
METHODS: dict[str, Callable[..., Any]] = {}


class _Node:
    """A mutable handle on a graph node, so renaming a node updates every Var."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _UnsupportedAttribute(GraphError, AttributeError):
    """An ndarray attribute that traced values do not implement (``hasattr`` is False)."""


class Var:
    """A variable of a Program: an input, a constant or a defined node.

    Supports numpy-style arithmetic, indexing, ``np.exp(v)``-style ufuncs and
    ``np.sum(v)``-style array functions; each records a node in the program.
    """

    __array_priority__ = 1000.0

    def __init__(self, program, handle: _Node):
        self.program = program
        self._handle = handle

    # --- identity -----------------------------------------------------------
    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def shape(self) -> tuple | None:
        return self.program.graph.nodes[self.name].get("shape")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    @property
    def dtype(self):
        """bool for comparisons and logical ops, else float64 (what the op's value is)."""
        if sys._getframe(1).f_globals.get("__name__") == "numpy._core._methods":
            # np.mean/var/std of a list of traced values: numpy casts a result that has a
            # dtype with float64(...) (a concrete number); without one it keeps the Var
            raise AttributeError("dtype")
        op = self.program.graph.nodes[self.name].get("op")
        return np.dtype(np.bool_) if op in BOOLEAN_OPS else np.dtype(np.float64)

    def __repr__(self) -> str:
        d = self.program.graph.nodes[self.name]
        return f"Var({self.name!r}, role={d.get('role')!r}, op={d.get('op')!r}, shape={d.get('shape')})"

    def _no_value(self, what: str) -> GraphError:
        return GraphError(
            f"{what} of traced variable {self.name!r}: a traced value has no concrete value "
            "while the program is being traced (it is a node of the graph, computed later for "
            "every input). Instead of `if`: select with lp.where(cond, a, b) (or lp.maximum, "
            "lp.minimum, lp.clip); instead of `while` iterating to convergence: state the "
            "fixed point as a constraint (prog.define(w, g(w, x)) or prog.residual(w, r(w, x)), "
            "see docs/numpy.md); instead of x[x > 0]: a mask multiply x * (x > 0). Anything "
            "that must be a concrete number (a loop count, an index) is a plain Python value, "
            "not an input")

    def __len__(self) -> int:
        # the shape is static (known while tracing): len() of an array is faithful
        if self.shape is None:
            raise self._no_value("len()")
        if not self.shape:
            raise GraphError(f"len() of the 0-d traced variable {self.name!r}: a scalar has no "
                             "length (numpy raises TypeError: len() of unsized object)")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self):
        raise self._no_value("the truth value (`if`, `while`, `and`, `or`, `not`)")

    def __float__(self):
        raise self._no_value("float()")

    def __int__(self):
        raise self._no_value("int()")

    def __index__(self):
        raise self._no_value("use as an index or a size (operator.index)")

    def __complex__(self):
        raise self._no_value("complex()")

    def __round__(self, ndigits=None):   # round(v, n) is np.round(v, n); round(v) is an int
        if ndigits is None:
            raise self._no_value("round() to a Python int (np.round(v) or round(v, 0) trace)")
        return HANDLED_FUNCTIONS["round"](self, ndigits)

    def item(self, *args):
        """Raises: a traced value has no concrete value while tracing."""
        raise self._no_value(".item()")

    def tolist(self):
        """Raises: a traced value has no concrete value while tracing."""
        raise self._no_value(".tolist()")

    @property
    def real(self) -> Var:
        """The value itself (traced values are real): ``np.real(v)``."""
        return HANDLED_FUNCTIONS["real"](self)

    @property
    def imag(self):
        """Zeros of the value's shape (a constant): ``np.imag(v)``."""
        return HANDLED_FUNCTIONS["imag"](self)

    def __getattr__(self, attr: str):
        # ndarray methods registered by the op modules (METHODS) are bound here; any other
        # ndarray attribute is not implemented on traced values: say so as a GraphError
        # (also an AttributeError, so hasattr() stays False)
        impl = METHODS.get(attr)
        if impl is not None:
            def method(*args, **kwargs):
                return impl(self, *args, **kwargs)
            method.__name__ = attr
            return method
        if not attr.startswith("_") and hasattr(np.ndarray, attr):
            raise _UnsupportedAttribute(
                f"ndarray attribute .{attr} of traced variable {self.name!r} is not supported "
                "while tracing; use the lp.* functions (lp.sum, lp.reshape, ...) or register "
                "a primitive with lp.primitive")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    # == and != record the equal / not_equal primitives (like < and >), so a Var's
    # hash must be given explicitly: identity (Vars are used as dict keys internally)
    __hash__ = object.__hash__

    def __eq__(self, o): return apply("equal", (self, o))  # type: ignore[override]
    def __ne__(self, o): return apply("not_equal", (self, o))  # type: ignore[override]

    # --- arithmetic ---------------------------------------------------------
    def __add__(self, o): return apply("add", (self, o))
    def __radd__(self, o): return apply("add", (o, self))
    def __sub__(self, o): return apply("subtract", (self, o))
    def __rsub__(self, o): return apply("subtract", (o, self))
    def __mul__(self, o): return apply("multiply", (self, o))
    def __rmul__(self, o): return apply("multiply", (o, self))
    def __truediv__(self, o): return apply("divide", (self, o))
    def __rtruediv__(self, o): return apply("divide", (o, self))
    def __pow__(self, o): return apply("power", (self, o))
    def __rpow__(self, o): return apply("power", (o, self))
    def __matmul__(self, o): return apply("matmul", (self, o))
    def __rmatmul__(self, o): return apply("matmul", (o, self))
    def __neg__(self): return apply("negative", (self,))
    def __pos__(self): return self
    def __abs__(self): return apply("abs", (self,))
    def __gt__(self, o): return apply("greater", (self, o))
    def __ge__(self, o): return apply("greater_equal", (self, o))
    def __lt__(self, o): return apply("less", (self, o))
    def __le__(self, o): return apply("less_equal", (self, o))

    # & | ^ ~ on booleans (comparison results) are numpy's logical ops; on float values
    # numpy raises TypeError (bitwise ops are for integers), so they raise here too
    def __and__(self, o): return _logical("logical_and", "&", self, o)
    def __rand__(self, o): return _logical("logical_and", "&", o, self)
    def __or__(self, o): return _logical("logical_or", "|", self, o)
    def __ror__(self, o): return _logical("logical_or", "|", o, self)
    def __xor__(self, o): return _logical("logical_xor", "^", self, o)
    def __rxor__(self, o): return _logical("logical_xor", "^", o, self)
    def __invert__(self): return _logical("logical_not", "~", self)

    def _unsupported_operator(self, symbol: str, hint: str = ""):
        raise GraphError(f"the operator {symbol} on traced variable {self.name!r} has no "
                         f"lagrangeprop primitive{hint}; register one with lp.primitive")

    # % and // are numpy's remainder and floor_divide (the remainder has the divisor's sign)
    def __mod__(self, o): return apply("remainder", (self, o))
    def __rmod__(self, o): return apply("remainder", (o, self))
    def __floordiv__(self, o): return apply("floor_divide", (self, o))
    def __rfloordiv__(self, o): return apply("floor_divide", (o, self))
    def __divmod__(self, o): return (self // o, self % o)
    def __rdivmod__(self, o): return (apply("floor_divide", (o, self)), apply("remainder", (o, self)))
    def __lshift__(self, o): self._unsupported_operator("<<")
    def __rlshift__(self, o): self._unsupported_operator("<<")
    def __rshift__(self, o): self._unsupported_operator(">>")
    def __rrshift__(self, o): self._unsupported_operator(">>")

    def __setitem__(self, index, value):
        raise GraphError(
            f"item assignment into traced variable {self.name!r}: traced values are immutable "
            "(each op records a new node); build the result with lp.where(mask, new, old), "
            "lp.concatenate or lp.stack instead")

    def __getitem__(self, index):
        return apply("getitem", (self,), {"index": static_index(index, self.name)})

    # --- array-like methods ---------------------------------------------------
    # ndarray's signatures; every argument is implemented or raises GraphError (in ops)
    @property
    def T(self) -> Var:
        return apply("transpose", (self,), {"axes": None})

    def transpose(self, *axes) -> Var:
        axes = axes[0] if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))) \
            else axes
        return HANDLED_FUNCTIONS["transpose"](self, tuple(axes) if axes else None)

    def reshape(self, *shape, order="C", copy=None) -> Var:
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return HANDLED_FUNCTIONS["reshape"](self, shape, order=order, copy=copy)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, initial=np._NoValue,
            where=np._NoValue) -> Var:
        return HANDLED_FUNCTIONS["sum"](self, axis, dtype, out, keepdims, initial, where)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, *, where=np._NoValue) -> Var:
        return HANDLED_FUNCTIONS["mean"](self, axis, dtype, out, keepdims, where=where)

    def dot(self, o, out=None) -> Var:
        return HANDLED_FUNCTIONS["dot"](self, o, out)

    def copy(self, order="K") -> Var:
        return apply("identity", (self,))

    def ravel(self, order="C") -> Var:
        return HANDLED_FUNCTIONS["ravel"](self, order)

    def flatten(self, order="C") -> Var:
        return HANDLED_FUNCTIONS["ravel"](self, order)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True) -> Var:
        check_dtype(".astype", dtype, self, allowed=(self.dtype,))
        return apply("identity", (self,))

    # --- numpy protocols ----------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        # numpy building an array from traced values (np.array([x, y]), np.r_, np.c_) sees an
        # object array of this value's entries (lazy Elements), so numpy's rules fix every shape
        # (graph.pack packs the result back); scipy.sparse's ``W @ v`` gets a 0-d object array
        # ("not an array"), returns NotImplemented, and Python calls ``v.__rmatmul__(W)``.
        if dtype is not None and np.dtype(dtype) != object:   # numbers: none while tracing
            raise self._no_value(f"conversion to {np.dtype(dtype)} (np.{np.dtype(dtype)}(v), np.asarray(v, "
                                 "dtype=...), or numpy computing on a list: np.stack([...]) first)")
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("scipy.sparse") or self.shape is None:
            out = np.empty((), dtype=object)
            out[()] = self
            return out
        return METHODS["__entries__"](self)   # lagrangeprop.graph.pack.entries

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = _UFUNC_ALIASES.get(ufunc.__name__, ufunc.__name__)
        if method == "__call__" and name in _BITWISE:   # a bool ndarray & a traced mask
            check_ufunc_kwargs(f"np.{ufunc.__name__}", kwargs, self)
            return _logical(*_BITWISE[name], *inputs)
        if method == "__call__" and name == "divmod":   # two outputs: lp.divmod's pair of ops
            return HANDLED_FUNCTIONS["divmod"](*inputs, **kwargs)
        if method != "__call__" or name not in registry.REGISTRY:
            what = "" if method == "__call__" else f".{method}"
            raise GraphError(
                f"numpy ufunc np.{ufunc.__name__}{what} on traced variable {self.name!r} has no "
                "lagrangeprop primitive; use the lp.* functions (lp.sum for np.add.reduce, ...) "
                "or register one with lp.primitive")
        check_ufunc_kwargs(f"np.{ufunc.__name__}", kwargs, self)
        return apply(name, inputs)

    def __array_function__(self, func, types, args, kwargs):
        key = dispatch_key(func)
        impl = HANDLED_FUNCTIONS.get(key)
        if impl is None:
            raise GraphError(
                f"numpy function np.{key} on traced variable {self.name!r} is not supported "
                "(the list is in docs/api.md); write it with supported functions or register "
                "it with lp.primitive")
        try:
            return impl(*args, **kwargs)
        except TypeError as exc:   # an argument numpy has and lp does not (a newer numpy)
            raise GraphError(f"np.{key} on traced variable {self.name!r}: {exc}") from None


def _is_boolean(x: Any) -> bool:
    if isinstance(x, Var):
        return x.program.graph._node[x._handle.name].get("op") in BOOLEAN_OPS
    return isinstance(x, (bool, np.bool_)) or (isinstance(x, np.ndarray) and x.dtype == np.bool_)


def _logical(op: str, symbol: str, *args: Any):
    """``&``, ``|``, ``^``, ``~`` of boolean operands as numpy's logical ufunc ``op``."""
    for a in args:
        if not _is_boolean(a):
            what = f"traced variable {a.name!r}" if isinstance(a, Var) else f"{type(a).__name__}"
            raise GraphError(
                f"the operator {symbol} needs boolean operands (comparison results such as "
                f"x > 0), got the float {what}; numpy's bitwise operators do not take floats")
    return apply(op, args)


def is_traced(x: Any) -> bool:
    """True when ``x`` is a :class:`Var`."""
    return isinstance(x, Var)


def apply(op, args, params=None):
    """Apply primitive ``op`` (a name or Primitive) to ``args``.

    With a traced argument this records a defined node and returns its Var;
    with plain numbers it simply evaluates the op (so ``lp.exp(0.5)`` works).
    """
    prim = op if isinstance(op, registry.Primitive) else registry.get(op)
    params = dict(params) if params else {}
    prog = None
    for a in args:
        if isinstance(a, Var):
            if prog is None:
                prog = a.program
            elif a.program is not prog:
                names = [a.name for a in args if isinstance(a, Var)]
                raise GraphError(f"op {prim.name!r} mixes variables {names} of different programs")
    if prog is None:
        out = prim.value(args, params)
        return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out
    if prim.name in _BOOL_ARITHMETIC and _is_boolean(args[0]) and not prim.user \
            and all(_is_boolean(a) for a in args):
        # numpy: bool + bool is logical or (True + True is True, not 2); bool - bool and
        # -bool raise TypeError
        if prim.name != "add":
            raise GraphError(f"{prim.name} of boolean masks is not defined (numpy raises "
                             "TypeError); use lp.logical_xor / lp.logical_not (^, ~)")
        prim = registry.get("logical_or")
    return prog._apply(prim, args, params)


_BOOL_ARITHMETIC = frozenset({"add", "subtract", "negative"})


# the rules layer's recording protocol: Primitive.__call__ hands a traced call to apply
Var.__lagrangeprop_apply__ = staticmethod(apply)
