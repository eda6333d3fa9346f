"""The op registry: :class:`Primitive`, one entry per op holding ALL of its rules.

A :class:`Primitive` bundles a numpy function with everything the rest of the package
needs to know about it: value, VJP, JVP and sparse-Jacobian rules (indexed by argument
position, ``None`` meaning zero), the curvature rule of Hessian-vector products, the
shape rule, the ``linear`` and ``elementwise`` flags and the equivalents on the
cross-check tapes (:class:`Tape`). The solver modules (forward, adjoint, tangent) only
ever call :meth:`Primitive.value`, :meth:`Primitive.vjp`, :meth:`Primitive.jvp` and
:meth:`Primitive.jac`; they never import a specific op.

This module knows no op: the built-in families (:mod:`~lagrangeprop.rules.ufuncs`,
:mod:`~lagrangeprop.rules.reductions`, :mod:`~lagrangeprop.rules.structure`,
:mod:`~lagrangeprop.rules.contractions`) register theirs when ``lagrangeprop.rules`` is
imported. Registry names are numpy's names (``add``, ``power``, ``matmul``, ``sum``,
``getitem``, ...) plus ``identity``.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.array([0.0, 1.0])
>>> exp = get("exp")
>>> ans = exp.value([x], {})
>>> exp.vjp(0, np.ones(2), ans, [x], {})  # d exp(x) / dx = exp(x)
array([1.        , 2.71828183])
>>> exp.jac(0, ans, [x], {}).toarray()
array([[1.        , 0.        ],
       [0.        , 2.71828183]])
>>> exp.elementwise, exp.linear, get("sum").linear
(True, False, True)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, ShapeError
from .arrays import unbroadcast

__all__ = ["REGISTRY", "Primitive", "Tape", "get", "register", "zero_curvature"]

# Internal rule signatures (i = argument position, None = zero):
#   vjp_rule(i, g, ans, args, params) -> cotangent of args[i]
#   jvp_rule(i, t, ans, args, params) -> contribution to the output tangent
#   jac_rule(i, ans, args, params)    -> d ans / d args[i], sparse or dense
#   curvature(i, g, ans, args, params, tans) -> S_i (see lagrangeprop.rules.curvature)
#   shape_rule(shapes, params)        -> output shape, or None (evaluate on dummies)
Rule = Callable[..., Any]
Shape = tuple[int, ...]
ShapeRule = Callable[[Sequence[Shape], dict], "Shape | None"]
TapeOp = Callable[[Any], Callable[..., Any]]


def _size(x: Any) -> int:
    return int(np.prod(np.shape(x), dtype=np.int64))


def zero_curvature(i: int, g: Any, ans: Any, args: Sequence[Any], params: dict, tans: Sequence[Any]) -> None:
    """The curvature rule of an op linear or piecewise linear in its arguments: ``S = 0``."""
    return None


@dataclass(frozen=True)
class Tape:
    """An op's equivalents on the cross-check tapes, as lazy functions of the backend module.

    ``autograd(anp)`` gets ``autograd.numpy``, ``torch(torch)`` gets ``torch``; each returns
    the function the tape replay calls as ``op(*args, **params)``, so the derivatives come
    from *their* rules (:mod:`lagrangeprop.crosscheck.tape`). ``None``: no equivalent (the
    check falls back to finite differences for that backend). Neither library is imported
    until a tape is run.

    Examples
    --------
    >>> import numpy as np
    >>> Tape.named("exp", "exp").autograd(np) is np.exp
    True
    """

    autograd: TapeOp | None = None
    torch: TapeOp | None = None

    @classmethod
    def named(cls, autograd: str, torch: str) -> Tape:
        """The tape functions that are plain attributes of the backend modules."""
        return cls(lambda anp: getattr(anp, autograd), lambda module: getattr(module, torch))


# ---------------------------------------------------------------- the Primitive


class Primitive:
    """One op: a numpy function and all of its rules (one entry in :data:`REGISTRY`).

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
    user : bool
        Registered by :func:`lagrangeprop.primitive` (no shape, curvature or tape entry).
    curvature : callable or None
        ``curvature(i, g, ans, args, params, tans) -> S_i``, the second-order term of
        Hessian-vector products (:mod:`~lagrangeprop.rules.curvature`);
        :func:`zero_curvature` for a (piecewise) linear op; ``None``: no exact rule (a
        central difference of the VJP stands in, with a warning).
    shape_rule : callable or None
        ``shape_rule(shapes, params) -> shape`` of the output without running numpy, or
        ``None`` when it does not apply (:mod:`~lagrangeprop.rules.shapes`).
    elementwise : bool
        numpy broadcasting semantics: the output has the broadcast shape of the arguments
        and each entry depends on the same entry of each argument (ufuncs, comparisons).
    linear : bool
        Linear in each differentiable argument separately (``add``, ``sum``, ``getitem``,
        bilinear ``multiply``/``matmul``): the Jacobian for one argument depends on the
        other arguments only, so a block keeps it while a forward solve moves that argument.
    tape : Tape or None
        The op's equivalents on the autograd and torch tapes (:class:`Tape`).
    sparse_lhs : bool
        Argument 0 may be a constant ``scipy.sparse`` matrix ``A``: the op is then ``A @ b``.
    raw_fn, raw_partials : callable, tuple or None
        The bare numpy function and elementwise partials ``partial(ans, *args)`` of an
        elementwise built-in, for the interpreters' fast path on float64 arguments.
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
        curvature: Rule | None = None,
        shape_rule: ShapeRule | None = None,
        elementwise: bool = False,
        linear: bool = False,
        tape: Tape | None = None,
        sparse_lhs: bool = False,
        raw_fn: Callable[..., Any] | None = None,
        raw_partials: tuple[Callable[..., Any] | None, ...] | None = None,
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
        self.curvature = curvature
        self.shape_rule = shape_rule
        self.elementwise = elementwise
        self.linear = linear
        self.tape = tape
        self.sparse_lhs = sparse_lhs
        self.raw_fn = raw_fn
        self.raw_partials = raw_partials

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
        return as_csr(out, _size(ans), _size(args[i]), self.name, i)


def as_csr(J: Any, n_out: int, n_arg: int, name: str, i: int) -> sp.csr_matrix:
    """``J`` (sparse or dense) as a float64 CSR ``(n_out, n_arg)`` matrix; ShapeError otherwise."""
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
