"""Traced values: operator overloading and numpy protocols that record a Program.

A :class:`Var` names one node of a :class:`~lagrangeprop.graph.program.Program`. Applying
an op to Vars adds a defined node (``z_d = f_d(parents)``) to the program's graph;
this module knows nothing of derivatives.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: np.exp(x) * 2.0, x=0.5)
>>> sorted(d["op"] for _, d in prog.graph.nodes(data=True) if d["role"] == "defined")
['exp', 'multiply']
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import operator
import sys
from typing import Any
from collections.abc import Callable

import numpy as np

from ..rules import registry as primitives
from ..errors import GraphError, ShapeError

__all__ = ["Var", "apply", "trace", "is_traced"]


class _Node:
    """A mutable handle on a graph node, so renaming a node updates every Var."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


# ops whose value is boolean (zero derivative)
BOOLEAN_OPS = frozenset({"greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
                         "logical_and", "logical_or", "logical_xor", "logical_not"})

# numpy's bitwise ufuncs (what ndarray's & | ^ ~ call) on booleans are the logical ops
_BITWISE = {"bitwise_and": ("logical_and", "&"), "bitwise_or": ("logical_or", "|"),
            "bitwise_xor": ("logical_xor", "^"), "invert": ("logical_not", "~")}

# numpy ufunc names that differ from the registry names
_UFUNC_ALIASES = {"absolute": "abs", "true_divide": "divide", "conjugate": "identity",
                  "positive": "identity"}


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
        op = self.program.graph.nodes[self.name].get("op")
        return np.dtype(np.bool_) if op in BOOLEAN_OPS else np.dtype(np.float64)

    def __repr__(self) -> str:
        d = self.program.graph.nodes[self.name]
        return f"Var({self.name!r}, role={d.get('role')!r}, op={d.get('op')!r}, shape={d.get('shape')})"

    def _no_value(self, what: str) -> GraphError:
        return GraphError(
            f"{what} of traced variable {self.name!r}: a traced value has no concrete value "
            "while the program is being traced (it is a node of the graph, computed later for "
            "every input). Keep it an array expression: select with lp.where(cond, a, b) (or "
            "lp.maximum/lp.minimum) instead of Python `if`/`while`, and pass anything that "
            "must be a concrete number (a loop count, an index) as a plain Python value, not "
            "an input")

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

    def __round__(self, ndigits=None):
        raise self._no_value("round()")

    def item(self, *args):
        """Raises: a traced value has no concrete value while tracing."""
        raise self._no_value(".item()")

    def tolist(self):
        """Raises: a traced value has no concrete value while tracing."""
        raise self._no_value(".tolist()")

    def __getattr__(self, attr: str):
        # any other ndarray attribute (.max(), .astype(), ...) is not implemented on traced
        # values: say so as a GraphError (also an AttributeError, so hasattr() stays False)
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

    def __mod__(self, o): self._unsupported_operator("%")
    def __rmod__(self, o): self._unsupported_operator("%")
    def __floordiv__(self, o): self._unsupported_operator("//")
    def __rfloordiv__(self, o): self._unsupported_operator("//")
    def __divmod__(self, o): self._unsupported_operator("divmod()")
    def __rdivmod__(self, o): self._unsupported_operator("divmod()")
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
        return apply("getitem", (self,), {"index": _normalize_index(index, self.name)})

    # --- array-like methods ---------------------------------------------------
    # ndarray's signatures; every argument is implemented or raises GraphError (in ops)
    @property
    def T(self) -> Var:
        return apply("transpose", (self,), {"axes": None})

    def transpose(self, *axes) -> Var:
        from . import ops
        axes = axes[0] if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))) \
            else axes
        return ops.transpose(self, tuple(axes) if axes else None)

    def reshape(self, *shape, order="C", copy=None) -> Var:
        from . import ops
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.reshape(self, shape, order=order, copy=copy)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, initial=np._NoValue,
            where=np._NoValue) -> Var:
        from . import ops
        return ops.sum(self, axis, dtype, out, keepdims, initial, where)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, *, where=np._NoValue) -> Var:
        from . import ops
        return ops.mean(self, axis, dtype, out, keepdims, where=where)

    def dot(self, o, out=None) -> Var:
        from . import ops
        return ops.dot(self, o, out)

    def copy(self, order="K") -> Var:
        return apply("identity", (self,))

    def ravel(self, order="C") -> Var:
        from . import ops
        return ops.ravel(self, order)

    def flatten(self, order="C") -> Var:
        from . import ops
        return ops.ravel(self, order)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True) -> Var:
        from . import ops
        ops.check_dtype(".astype", dtype, self, allowed=(self.dtype,))
        return apply("identity", (self,))

    # --- numpy protocols ----------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        # A 0-d object array: "not an array", so e.g. scipy.sparse's ``W @ v`` returns
        # NotImplemented and Python falls back to ``v.__rmatmul__(W)``.
        out = np.empty((), dtype=object)
        out[()] = self
        return out

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = _UFUNC_ALIASES.get(ufunc.__name__, ufunc.__name__)
        if method == "__call__" and name in _BITWISE:   # a bool ndarray & a traced mask
            _check_ufunc_kwargs(f"np.{ufunc.__name__}", kwargs, self)
            return _logical(*_BITWISE[name], *inputs)
        if method != "__call__" or name not in primitives.REGISTRY:
            what = "" if method == "__call__" else f".{method}"
            raise GraphError(
                f"numpy ufunc np.{ufunc.__name__}{what} on traced variable {self.name!r} has no "
                "lagrangeprop primitive; use the lp.* functions (lp.sum for np.add.reduce, ...) "
                "or register one with lp.primitive")
        _check_ufunc_kwargs(f"np.{ufunc.__name__}", kwargs, self)
        return apply(name, inputs)

    def __array_function__(self, func, types, args, kwargs):
        from . import ops
        impl = getattr(ops, func.__name__, None)
        if impl is None or func.__name__ not in ops.__all__:
            raise GraphError(
                f"numpy function np.{func.__name__} on traced variable {self.name!r} is not "
                f"supported; supported: {', '.join(sorted(ops.__all__))}")
        try:
            return impl(*args, **kwargs)
        except TypeError as exc:   # an argument numpy has and lp does not (a newer numpy)
            raise GraphError(f"np.{func.__name__} on traced variable {self.name!r}: {exc}") from None


# ufunc keywords: those that cannot change the values computed are accepted
# (order and subok only choose the result's memory layout and class); the others
# must be at their defaults, else GraphError names them.
_UFUNC_LAYOUT_ONLY = frozenset({"order", "subok"})
_COMPARISONS = frozenset({"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"})


def _check_ufunc_kwargs(func: str, kwargs: dict, x: Var) -> None:
    from .ops import check_dtype, check_out, check_where, unsupported
    for key, value in kwargs.items():
        if key == "out":
            check_out(func, value, x)
        elif key == "where":
            check_where(func, value, x)
        elif key == "dtype":
            boolean = func[3:] in _COMPARISONS   # a comparison's result is bool
            check_dtype(func, value, x, allowed=(np.bool_,) if boolean else (np.float64,))
        elif key == "casting":
            if value != "same_kind":
                raise unsupported(func, key, value, x)
        elif key in _UFUNC_LAYOUT_ONLY:
            continue
        elif value is not None:   # signature=, axes=, axis=, keepdims= (matmul), extobj=, ...
            raise unsupported(func, key, value, x)


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


def _axis(axis):
    """An axis argument as static ints (``operator.index``: ``axis=0.5`` is a TypeError in
    numpy, never silently axis 0)."""
    if axis is None:
        return None
    try:
        if isinstance(axis, (tuple, list)):
            return tuple(operator.index(a) for a in axis)
        return operator.index(axis)
    except TypeError:
        raise GraphError(f"axis {axis!r} must be an int or a tuple of ints") from None


def _normalize_index(index, name: str):
    """Make an index static data: ints, slices, None, Ellipsis, integer/bool arrays."""
    def one(i):
        if isinstance(i, Var):
            raise GraphError(
                f"indexing {name!r} with the traced value {i.name!r} is not supported; "
                "indices must be static (ints, slices, integer or boolean arrays)")
        if isinstance(i, (list, np.ndarray)):
            arr = np.asarray(i)
            if arr.dtype.kind not in "iub":
                raise GraphError(f"index into {name!r} must be integer or boolean, got {arr.dtype}")
            return arr
        if isinstance(i, (np.integer,)):
            return int(i)
        return i
    if isinstance(index, tuple):
        return tuple(one(i) for i in index)
    return one(index)


def apply(op, args, params=None):
    """Apply primitive ``op`` (a name or Primitive) to ``args``.

    With a traced argument this records a defined node and returns its Var;
    with plain numbers it simply evaluates the op (so ``lp.exp(0.5)`` works).
    """
    prim = op if isinstance(op, primitives.Primitive) else primitives.get(op)
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
        prim = primitives.get("logical_or")
    return prog._apply(prim, args, params)


_BOOL_ARITHMETIC = frozenset({"add", "subtract", "negative"})


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector while a program is built or compiled.

    Building allocates several container objects per node and frees almost none, so the
    collector's full passes would rescan the whole growing graph again and again (the
    cost per node then grows with the program); reference counting still frees
    everything as usual, and the previous state is restored on exit.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _code_of(f: Callable):
    """The code object whose locals name ``f``'s intermediates: plain functions and
    lambdas, ``functools.partial``, bound methods and callable objects."""
    for _ in range(4):
        code = getattr(f, "__code__", None)
        if code is not None:
            return code
        f = getattr(f, "func", None) or getattr(f, "__func__", None) or vars(type(f)).get("__call__")
        if f is None:
            return None
    return None


class _LocalNames:
    """Capture the local variables of ``f`` as they are when it returns, so traced
    intermediates get the names the user gave them.

    The first op recorded while ``f`` runs calls :meth:`probe`, which finds ``f``'s frame
    on the stack and keeps a reference to it; a finished frame still holds its final
    locals. Nothing runs per Python call (no ``sys.setprofile`` hook), and profilers and
    debuggers active during tracing keep working.
    """

    def __init__(self, prog, f: Callable):
        self.prog = prog
        self.code = _code_of(f)
        self.frame = None
        self.locals: dict[str, Any] = {}

    def __enter__(self):
        if self.code is not None:
            self.prog._probe = self.probe
        return self

    def probe(self) -> None:
        """Called by the first recorded op: keep the innermost frame running ``f``."""
        self.prog._probe = None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code is not self.code:
            frame = frame.f_back
        self.frame = frame

    def __exit__(self, *exc):
        self.prog._probe = None
        if self.frame is not None:
            self.locals = dict(self.frame.f_locals)
            self.frame = None
        return False


def trace(f: Callable, /, *example_args, **example_inputs) -> Program:  # noqa: F821
    """Trace numpy-style ``f`` into a :class:`~lagrangeprop.graph.program.Program`.

    Each argument (by keyword, or positionally, named after ``f``'s parameters) is
    an input; its example value fixes the shape (float64). Intermediates bound to
    local variables of ``f`` keep those names; the returned expression becomes the
    output (named ``"out"`` unless it already has a name).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: lp.sin(x) * x, x=0.5)
    >>> round(float(prog.evaluate(x=0.5)), 6)
    0.239713
    """
    from .coerce import real_array
    from ..errors import InputError
    from .program import Program

    if not callable(f):
        raise InputError(f"trace needs a function, got {type(f).__name__}")
    fname = getattr(f, "__name__", "program")
    prog = Program(name=fname if fname.isidentifier() else "program")
    prog._eager_shapes = True
    names = _argument_names(f, len(example_args))
    try:   # the call below must not fail for want of an argument: say which, as an InputError
        inspect.signature(f).bind(*example_args, **example_inputs)
    except TypeError as exc:
        raise InputError(f"{fname}() cannot take these inputs ({exc}); pass one example value per "
                         "argument of the function") from None
    except ValueError:   # no signature (a builtin): let the call decide
        pass
    # an example value fixes the input's shape; it must be real, like every input (coerce.real_array)
    pos = [prog.input(n, shape=real_array(v, f"input {n!r}", finite=False).shape)
           for n, v in zip(names, example_args)]
    kw = {k: prog.input(k, shape=real_array(v, f"input {k!r}", finite=False).shape)
          for k, v in example_inputs.items()}
    with paused_gc(), _LocalNames(prog, f) as local_names:
        result = f(*pos, **kw)
    for local, value in local_names.locals.items():
        if isinstance(value, Var) and value.program is prog and local.isidentifier():
            prog._rename_auto(value.name, local)
    if isinstance(result, (tuple, list)):
        raise ShapeError(
            f"{prog.name} returned a {type(result).__name__}; a program has one output: "
            "return a single array (use lp.stack/lp.concatenate to combine values)")
    named = isinstance(result, Var) and result.name not in prog._auto
    out_name = "out" if "out" not in prog.graph or "out" in prog._auto else prog._fresh("out")
    prog.output(result, name=None if named and prog.graph.nodes[result.name]["role"] == "defined"
                else out_name)
    prog._eager_shapes = False
    return prog


def _argument_names(f: Callable, n: int) -> list[str]:
    """Names for ``n`` positional inputs: ``f``'s parameter names, else arg0, arg1, ..."""
    try:
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i].name if i < len(params) else f"arg{i}" for i in range(n)]
