"""User ops: :func:`lagrangeprop.primitive` and the adapters that turn its rules into entries.

A user writes ``vjp(g, ans, *args, **params)``, ``jvp(tangents, ans, *args, **params)``
and ``jac(ans, *args, **params)`` (HIPS autograd's ``defvjp`` shapes); the entry's internal
rules are indexed by argument (:class:`~lagrangeprop.rules.registry.Primitive`). Missing
rules are derived from the given ones, or from central differences. A user op has no
shape rule, curvature rule or tape equivalent: shapes come from evaluating it, Hessians
from a difference of its VJP, and the check from finite differences alone.

Examples
--------
>>> import numpy as np
>>> double = primitive("doc_double", lambda x: 2 * x, vjp=lambda g, ans, x: (2 * g,))
>>> double.user, double.tape is None
(True, True)
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError
from .arrays import size as _size
from .arrays import unbroadcast
from .registry import REGISTRY, Primitive, as_csr, register

__all__ = ["primitive"]

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
        return None if out is None else as_csr(out, _size(ans), _size(args[i]), name, i)

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
