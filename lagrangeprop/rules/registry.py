"""The op registry: every primitive's value, VJP, JVP and sparse-Jacobian rules.

A :class:`Primitive` bundles a numpy function with its derivative rules. Rules are
indexed by argument position and return ``None`` for a zero derivative. The solver
modules (forward, adjoint, tangent) only ever call :meth:`Primitive.value`,
:meth:`Primitive.vjp`, :meth:`Primitive.jvp` and :meth:`Primitive.jac`; they never
import a specific op. The built-in rules live in :mod:`lagrangeprop.rules.builtins`
and are registered when this module is imported. Registry names are numpy's names
(``add``, ``power``, ``matmul``, ``sum``, ``getitem``, ...) plus ``identity``.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules.registry import get
>>> x = np.array([0.0, 1.0])
>>> exp = get("exp")
>>> ans = exp.value([x], {})
>>> exp.vjp(0, np.ones(2), ans, [x], {})  # d exp(x) / dx = exp(x)
array([1.        , 2.71828183])
>>> exp.jac(0, ans, [x], {}).toarray()
array([[1.        , 0.        ],
       [0.        , 2.71828183]])
"""

from __future__ import annotations

import difflib
import math
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, ShapeError

__all__ = [
    "REGISTRY",
    "Primitive",
    "broadcast_jac",
    "get",
    "primitive",
    "register",
    "unbroadcast",
]

# Internal rule signatures (i = argument position, None = zero):
#   vjp_rule(i, g, ans, args, params) -> cotangent of args[i]
#   jvp_rule(i, t, ans, args, params) -> contribution to the output tangent
#   jac_rule(i, ans, args, params)    -> d ans / d args[i], sparse or dense
Rule = Callable[..., Any]


# ---------------------------------------------------------------- shape helpers


def unbroadcast(g: Any, shape: tuple[int, ...], what: str = "a cotangent") -> np.ndarray:
    """Sum ``g`` over the axes that numpy broadcasting added to an array of ``shape``.

    ``g`` must have the shape of a broadcast of ``shape`` (the output of an op that
    broadcast its argument): leading axes and axes where ``shape`` has length 1 are
    summed. Any other shape means a rule returned a wrong cotangent (a transposed or
    mis-sized one) and raises instead of being reshaped to fit; only a reshape that
    inserts or removes length-1 axes (which keeps every entry in place) is allowed.

    Raises
    ------
    ShapeError
        When ``g``'s shape is not a broadcast of ``shape``; the message names ``what``.

    Examples
    --------
    >>> unbroadcast(np.ones((2, 3, 4)), (3, 1)).tolist()
    [[8.0], [8.0], [8.0]]
    """
    g = np.asarray(g, dtype=np.float64)
    shape = tuple(shape)
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0 or any(n != 1 and m != n for m, n in zip(g.shape[extra:], shape)):
        if g.size == math.prod(shape) and _squeezed(g.shape) == _squeezed(shape):
            return g.reshape(shape)   # only length-1 axes differ: every entry stays in place
        raise ShapeError(
            f"{what} has shape {g.shape}, which is not a broadcast of the argument's shape "
            f"{shape}: the derivative rule returned a wrong cotangent (transposed or "
            "mis-sized?); it must have the argument's shape, or the broadcast output's")
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and g.shape[k] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def broadcast_jac(partial: Any, arg_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> sp.csr_matrix:
    """Jacobian ``diag(partial) @ S`` of an elementwise op for one argument.

    ``S`` is the 0/1 selection matrix mapping an argument of ``arg_shape`` to its
    broadcast copy of ``out_shape``; ``partial`` (broadcastable to ``out_shape``) holds
    the elementwise partial derivative. Rows and columns are in C order.

    Examples
    --------
    >>> broadcast_jac(2.0, (2, 1), (2, 2)).toarray()
    array([[2., 0.],
           [2., 0.],
           [0., 2.],
           [0., 2.]])
    """
    out_shape = tuple(out_shape)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    n_arg = int(np.prod(arg_shape, dtype=np.int64))
    cols = np.broadcast_to(np.arange(n_arg).reshape(arg_shape), out_shape).ravel()
    data = np.broadcast_to(np.asarray(partial, dtype=np.float64), out_shape).ravel()
    return sp.csr_matrix((data, (np.arange(n_out), cols)), shape=(n_out, n_arg))


def _size(x: Any) -> int:
    return int(np.prod(np.shape(x), dtype=np.int64))


# ---------------------------------------------------------------- the Primitive


class Primitive:
    """One op: a numpy function and its derivative rules, indexed by argument.

    Parameters
    ----------
    name : str
        The registry name (numpy's name for the op).
    fn : callable
        ``fn(*args, **params)`` with numpy semantics.
    nargs : int or None
        Number of positional arguments, ``None`` for variadic ops.
    nondiff : iterable of int
        Argument positions that are never differentiated (``where``'s condition).
    differentiable : bool
        ``False`` for comparisons: the output has zero derivative everywhere.
    vjp, jvp, jac : callable or None
        Internal rules ``vjp(i, g, ans, args, params)``, ``jvp(i, t, ans, args, params)``,
        ``jac(i, ans, args, params)``.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        nargs: int | None = None,
        nondiff: Sequence[int] = (),
        differentiable: bool = True,
        vjp: Rule | None = None,
        jvp: Rule | None = None,
        jac: Rule | None = None,
        user: bool = False,
    ) -> None:
        self.name = name
        self.fn = fn
        self.nargs = nargs
        self.nondiff = frozenset(nondiff)
        self.differentiable = differentiable
        self.vjp_rule = vjp
        self.jvp_rule = jvp
        self.jac_rule = jac
        self.user = user

    def __repr__(self) -> str:
        return f"<Primitive {self.name!r}>"

    @property
    def has_jac(self) -> bool:
        """Whether :meth:`jac` is available (always true for non-differentiable ops)."""
        return self.jac_rule is not None or not self.differentiable

    def __call__(self, *args: Any, **params: Any) -> Any:
        """Apply the op: recorded when an argument is traced, else evaluated.

        The first argument whose type has ``__lagrangeprop_apply__(prim, args, params)``
        (the graph layer's traced value) records the op; with plain numbers the op is
        evaluated, a 0-d result as a numpy scalar.
        """
        for a in args:
            record = getattr(type(a), "__lagrangeprop_apply__", None)
            if record is not None:
                return record(self, args, params)
        out = self.value(args, params)
        return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out

    def _is_zero(self, i: int, args: Sequence[Any]) -> bool:
        # constant sparse matrices are never differentiated
        return not self.differentiable or i in self.nondiff or sp.issparse(args[i])

    def value(self, args: Sequence[Any], params: dict[str, Any]) -> np.ndarray:
        """``fn(*args, **params)`` as an ndarray: float64, or bool for comparisons."""
        out = np.asarray(self.fn(*args, **params))
        if out.dtype == np.bool_:
            return out
        return out.astype(np.float64, copy=False)

    def vjp(self, i: int, g: Any, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> np.ndarray | None:
        """Cotangent of ``args[i]`` (exactly its shape) for output cotangent ``g``; ``None`` = zero."""
        if self._is_zero(i, args) or self.vjp_rule is None:
            return None
        g = np.broadcast_to(np.asarray(g, dtype=np.float64), np.shape(ans))
        out = self.vjp_rule(i, g, ans, args, params)
        if out is None:
            return None
        what = f"the cotangent of argument {i} of op {self.name!r}"
        return np.array(unbroadcast(out, np.shape(args[i]), what), dtype=np.float64)

    def jvp(self, i: int, t: Any, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> np.ndarray | None:
        """Output tangent (exactly ``ans``'s shape) from tangent ``t`` of ``args[i]``; ``None`` = zero."""
        if self._is_zero(i, args) or self.jvp_rule is None:
            return None
        t = np.asarray(t, dtype=np.float64).reshape(np.shape(args[i]))
        out = self.jvp_rule(i, t, ans, args, params)
        if out is None:
            return None
        try:   # a tangent may be a broadcast-smaller array (add(x, y) with x broadcast)
            return np.array(np.broadcast_to(out, np.shape(ans)), dtype=np.float64)
        except ValueError:
            raise ShapeError(
                f"the tangent from argument {i} of op {self.name!r} has shape {np.shape(out)}, "
                f"which does not broadcast to the output's shape {np.shape(ans)}: the jvp rule "
                "returned a wrong tangent (transposed or mis-sized?)") from None

    def jac(self, i: int, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> sp.csr_matrix | None:
        """Local Jacobian ``d ans / d args[i]``, CSR of shape ``(ans.size, args[i].size)``; ``None`` = zero."""
        if self._is_zero(i, args):
            return None
        if self.jac_rule is None:
            raise NotImplementedError(
                f"op {self.name!r} has no sparse Jacobian rule; use the matrix-free (VJP) path "
                "or register the op with a jac= rule"
            )
        out = self.jac_rule(i, ans, args, params)
        if out is None:
            return None
        return _as_csr(out, _size(ans), _size(args[i]), self.name, i)


def _as_csr(J: Any, n_out: int, n_arg: int, name: str, i: int) -> sp.csr_matrix:
    if not sp.issparse(J):
        J = np.asarray(J, dtype=np.float64)
        if J.size != n_out * n_arg:
            raise ShapeError(f"op {name!r}: the Jacobian for argument {i} has shape {J.shape} "
                             f"({J.size} entries); expected ({n_out}, {n_arg}): d(output entries)/"
                             "d(argument entries), as jac(ans, *args) must return")
        J = J.reshape(n_out, n_arg)
    J = sp.csr_matrix(J)
    if J.shape != (n_out, n_arg):
        raise ShapeError(
            f"op {name!r}: Jacobian for argument {i} has shape {J.shape}, expected {(n_out, n_arg)}"
        )
    return J.astype(np.float64)


# ---------------------------------------------------------------- the registry

REGISTRY: dict[str, Primitive] = {}
VERSION = [0]   # bumped by every registration: compiled programs re-resolve their ops


def register(prim: Primitive) -> Primitive:
    """Add ``prim`` to :data:`REGISTRY` under its name (internal, silent) and return it."""
    REGISTRY[prim.name] = prim
    VERSION[0] += 1
    return prim


def get(name: str) -> Primitive:
    """The registered op called ``name``.

    Raises
    ------
    GraphError
        For an unknown name, listing similar registered names.

    Examples
    --------
    >>> get("matmul")
    <Primitive 'matmul'>
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise GraphError(
            f"unknown op {name!r}.{hint} Register new ops with lp.primitive({name!r}, fn, vjp=...)."
        ) from None


# ---------------------------------------------------------------- user ops
# A user op's rules get its params as keyword arguments, as fn does (fn(x, k=3.0) has the
# vjp vjp(g, ans, x, k=3.0)): a rule that does not take them raises GraphError, never a
# derivative computed at the rule's default.
# Missing rules are derived from the given ones through the dense local Jacobian
# (column by column from jvp, row by row from vjp), or central differences.


def _infer_nargs(fn: Callable[..., Any]) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    n = 0
    for p in sig.parameters.values():
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            return None
        if p.kind in positional and p.default is inspect.Parameter.empty:
            n += 1
    return n


def _entry(out: Any, i: int, nargs: int) -> Any:
    """Entry ``i`` of a user rule's per-argument result (a bare value for one argument)."""
    if isinstance(out, (tuple, list)):
        return out[i]
    if nargs == 1:
        return out
    raise GraphError("a user rule must return a tuple with one entry per argument")


def _fd_jacobian(fn: Callable[..., Any], i: int, args: Sequence[Any], params: dict[str, Any]) -> np.ndarray:
    """Dense ``d fn / d args[i]`` by central differences, step ``cbrt(eps) * max(1, |x|)``."""
    x = np.array(args[i], dtype=np.float64)
    flat = x.reshape(-1)
    cols = []
    for k in range(flat.size):
        x0 = flat[k]
        h = np.cbrt(np.finfo(np.float64).eps) * max(1.0, abs(x0))
        values = []
        for step in (h, -h):
            flat[k] = x0 + step
            moved = list(args)
            moved[i] = x.copy()
            values.append(np.asarray(fn(*moved, **params), dtype=np.float64).reshape(-1))
        flat[k] = x0
        cols.append((values[0] - values[1]) / ((x0 + h) - (x0 - h)))
    if not cols:
        return np.zeros((_size(fn(*args, **params)), 0))
    return np.stack(cols, axis=1)


def primitive(
    name: str,
    fn: Callable[..., Any],
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
    jac: Callable[..., Any] | None = None,
) -> Primitive:
    """Register a user op ``name`` computing ``fn(*args, **params)`` and return it.

    Parameters
    ----------
    vjp : callable, optional
        ``vjp(g, ans, *args, **params) -> tuple`` of cotangents, one per argument (``None`` = zero);
        ``params`` are the keyword arguments the op was called with (as ``fn`` gets them).
    jvp : callable, optional
        ``jvp(tangents, ans, *args, **params) -> output tangent``; ``tangents`` has one entry per
        argument, ``None`` for arguments without a tangent.
    jac : callable, optional
        ``jac(ans, *args, **params) -> tuple`` of local Jacobians (scipy.sparse or ndarray).

    With only one of ``vjp``/``jvp``/``jac`` the others are derived from it through the
    dense local Jacobian; with none, all derivatives use central differences and a
    ``UserWarning`` says so. Registering an existing name replaces the op with a warning.

    Examples
    --------
    >>> import warnings
    >>> cube = primitive("doc_cube", lambda x: x**3, vjp=lambda g, ans, x: (3 * x**2 * g,))
    >>> float(cube.vjp(0, 1.0, 8.0, [2.0], {}))
    12.0
    >>> float(cube.jvp(0, 1.0, 8.0, [2.0], {}))
    12.0
    """
    if not isinstance(name, str) or not name:
        raise GraphError(f"primitive() needs a non-empty string name, got {name!r}")
    for what, rule in (("fn", fn), ("vjp", vjp), ("jvp", jvp), ("jac", jac)):
        if (rule is not None or what == "fn") and not callable(rule):
            raise GraphError(f"primitive {name!r}: {what} must be a function, got {type(rule).__name__}")
    nargs = _infer_nargs(fn)
    if name in REGISTRY:
        warnings.warn(f"replacing the existing op {name!r} with a new primitive", UserWarning, stacklevel=2)
    if vjp is None and jvp is None and jac is None:
        warnings.warn(
            f"op {name!r} has no vjp, jvp or jac rule: its derivatives fall back to central "
            "finite differences (slow, ~1e-8 accurate)",
            UserWarning,
            stacklevel=2,
        )

    def _call_rule(rule, what: str, first, ans, args, params):
        lead = (ans,) if first is None and what == "jac" else (first, ans)
        if not params:
            return rule(*lead, *args)
        try:
            inspect.signature(rule).bind(*lead, *args, **params)
        except TypeError:
            raise GraphError(
                f"user primitive {name!r} was called with the keyword arguments {sorted(params)}, "
                f"which its {what} rule does not take: write it as {what}(..., *args, "
                f"{', '.join(f'{k}=...' for k in params)}) so the derivative uses them") from None
        except ValueError:    # no signature (a builtin): try the call
            pass
        return rule(*lead, *args, **params)

    def n_of(args: Sequence[Any]) -> int:
        return len(args) if nargs is None else nargs

    def user_vjp(i: int, g: np.ndarray, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        out = _entry(_call_rule(vjp, "vjp", g, ans, args, params), i, n_of(args))
        what = f"the vjp of user primitive {name!r} for argument {i}"
        return None if out is None else unbroadcast(out, np.shape(args[i]), what)

    def user_jvp(i: int, t: np.ndarray, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        tangents = tuple(t if k == i else None for k in range(len(args)))
        return _call_rule(jvp, "jvp", tangents, ans, args, params)

    def user_jac(i: int, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        out = _entry(_call_rule(jac, "jac", None, ans, args, params), i, n_of(args))
        return None if out is None else _as_csr(out, _size(ans), _size(args[i]), name, i)

    def dense_jac(i: int, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> np.ndarray:
        """Dense local Jacobian from whichever rule exists."""
        n_out, n_arg = _size(ans), _size(args[i])
        shape_i = np.shape(args[i])
        if jac is not None:
            J = user_jac(i, ans, args, params)
            return np.zeros((n_out, n_arg)) if J is None else J.toarray()
        if jvp is not None:
            cols = []
            for k in range(n_arg):
                e = np.zeros(n_arg)
                e[k] = 1.0
                col = user_jvp(i, e.reshape(shape_i), ans, args, params)
                col = np.zeros(n_out) if col is None else np.broadcast_to(col, np.shape(ans)).reshape(-1)
                cols.append(col)
            return np.stack(cols, axis=1) if cols else np.zeros((n_out, 0))
        if vjp is not None:
            rows = []
            for r in range(n_out):
                e = np.zeros(n_out)
                e[r] = 1.0
                row = user_vjp(i, e.reshape(np.shape(ans)), ans, args, params)
                rows.append(np.zeros(n_arg) if row is None else np.reshape(row, -1))
            return np.stack(rows, axis=0) if rows else np.zeros((0, n_arg))
        return _fd_jacobian(fn, i, args, params).reshape(n_out, n_arg)

    def derived_vjp(i: int, g: np.ndarray, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        return (dense_jac(i, ans, args, params).T @ g.reshape(-1)).reshape(np.shape(args[i]))

    def derived_jvp(i: int, t: np.ndarray, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        return (dense_jac(i, ans, args, params) @ t.reshape(-1)).reshape(np.shape(ans))

    def derived_jac(i: int, ans: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        return sp.csr_matrix(dense_jac(i, ans, args, params))

    prim = Primitive(
        name,
        fn,
        nargs=nargs,
        vjp=user_vjp if vjp is not None else derived_vjp,
        jvp=user_jvp if jvp is not None else derived_jvp,
        jac=user_jac if jac is not None else derived_jac,
        user=True,
    )
    return register(prim)


# the built-in ops register themselves on import
from . import builtins as _rules  # noqa: F401, E402
