"""Finiteness of values and multipliers, and the errors that name the node (SPEC §2).

A value, multiplier or tangent that comes out NaN or inf raises
:class:`~lagrangeprop.errors.NonFiniteError` naming the node that made it, and for a
multiplier the consumer whose derivative rule produced it. No 0·inf is ever zeroed:
sqrt(x)·sqrt(x) = x has derivative 1 at 0, where its chain rule meets 0·inf, so a silent 0
would be wrong. The tests are cheap: ``math.isfinite`` per scalar, one ``np.isfinite`` over
the concatenation of all arrays of at most :data:`~lagrangeprop.compile.plan.FINITE_BATCH_MAX`
entries, and one BLAS dot product per larger array (:func:`finite_array`).

Examples
--------
>>> import numpy as np
>>> all_finite([None, 1.0, np.ones(3)]), all_finite([np.array([1.0, np.inf])])
(True, False)
"""

from __future__ import annotations

import math

import numpy as np

from ..compile.plan import FINITE_BATCH_MAX, Plan
from ..compile.schedule import Schedule, Step
from ..errors import NonFiniteError

__all__ = ["SMALL_MAX", "finite_array", "all_finite", "values_finite", "check_values", "check_finite_pass"]

_ND, _F64_TYPE, _F64_DTYPE = np.ndarray, np.float64, np.dtype(np.float64)


def values_finite(plan: Plan, vals: list) -> bool:
    """``math.isfinite`` per per-step scalar, one vector test for all small arrays, one
    :func:`finite_array` per large array. Exact: ``False`` only if some value (or, rarely, the
    overflowing square sum of a large array) is not finite; :func:`check_values` then names
    the first offending node."""
    isfinite = math.isfinite
    for i in plan.scalar_ids:   # a plain loop beats collecting them into an array
        if not isfinite(vals[i]):
            return False
    ids = plan.small_ids   # one copy of them all beats one call each
    if ids and not np.isfinite(np.concatenate([vals[i] for i in ids], axis=None)).all():
        return False
    for i in plan.array_ids:     # the caller holds the errstate that _finite needs
        if not _finite(vals[i]):
            return False
    return True


def _finite(a) -> bool:
    """:func:`finite_array` inside the caller's ``np.errstate(all="ignore")``."""
    if a.__class__ is _ND and a.dtype is _F64_DTYPE and a.size > FINITE_BATCH_MAX and a.flags.c_contiguous:
        r = a.reshape(-1)
        if math.isfinite(np.dot(r, r)):
            return True
    return bool(np.isfinite(a).all())


def finite_array(a) -> bool:
    """Whether every entry of the array ``a`` is finite. A large contiguous float64 array is
    first tested with one BLAS dot product: ``a·a`` is finite when every entry is (a NaN or
    inf entry makes it NaN or inf, and squares cannot cancel), and costs half of
    ``isfinite(a).all()``; only a non-finite result (a non-finite entry, or the square sum of
    huge finite entries overflowing) pays for the entry-wise test. Only that dot product can
    warn (overflow), so only it runs inside ``np.errstate``: a small array pays no errstate.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones(5000); finite_array(a), finite_array(np.full(5000, 1e200))
    (True, True)
    >>> a[500] = np.nan; finite_array(a), finite_array(np.array([1.0, np.inf]))
    (False, False)
    """
    if a.__class__ is _ND and a.dtype is _F64_DTYPE and a.size <= SMALL_MAX:
        return _few_finite(a)
    if a.__class__ is _ND and a.dtype is _F64_DTYPE and a.size > FINITE_BATCH_MAX and a.flags.c_contiguous:
        r = a.reshape(-1)
        with np.errstate(all="ignore"):   # overflow of the square sum is allowed
            square = np.dot(r, r)
        if math.isfinite(square):
            return True
    return bool(np.isfinite(a).all())


SMALL_MAX = 8   # float64 arrays up to this size are tested entry by entry as Python floats


def _few_finite(a: np.ndarray) -> bool:
    """Whether every entry of a small float64 array is finite: ``t - t`` is 0.0 for a finite float
    and NaN for inf or NaN (Python floats: no warning); 5x faster than ``np.isfinite(a).all()``."""
    for t in a.ravel().tolist():
        if t - t != 0.0:
            return False
    return True


def check_values(sched: Schedule, vals: list) -> None:
    """Raise :class:`NonFiniteError` naming the first step whose value is not finite."""
    for step in sched.steps:
        if type(step) is Step and not np.all(np.isfinite(vals[step.node])):
            args = [sched.names[a] for a in step.args]
            raise NonFiniteError(
                f"node {sched.names[step.node]!r} (op {step.prim.name!r} of {args}) produced "
                "a non-finite value (NaN or inf); check the inputs or the op's domain "
                "(log/sqrt of a non-positive number, division by zero, overflow in exp). "
                "A branch that lp.where discards is still computed: guard the argument, "
                "e.g. lp.sqrt(lp.where(x > 0, x, 1.0)), not the result")


def all_finite(seq: list) -> bool:
    """Whether every entry of ``seq`` (None = zero, scalars, arrays) is finite.

    One ``math.isfinite`` per scalar, one ``np.isfinite`` over the concatenation of all
    small arrays (one copy beats a call per array), and per large array the forward pass's
    test (:func:`finite_array`: one BLAS ``r·r``, the only test that can warn, so the only
    one run inside ``np.errstate``: a pass of scalars and small arrays pays none).

    Examples
    --------
    >>> import numpy as np
    >>> all_finite([None, np.float64(2.0), np.ones(3), np.ones(5000)])
    True
    >>> all_finite([1.0, np.float64(np.inf)]), all_finite([np.full(5000, np.nan)])
    (False, False)
    """
    isfinite = math.isfinite
    small: dict = {}   # by id: a ±1 partial passes the same multiplier array on unchanged
    large: set = set()   # the same for large ones (λ of an add's result is λ of its operands)
    for v in seq:
        if v is None:
            continue
        cls = v.__class__
        if cls is _F64_TYPE or cls is float:
            if not isfinite(v):
                return False
        elif cls is _ND and v.ndim == 0 and v.dtype is _F64_DTYPE:
            if not isfinite(v):      # a 0-d float64 array (a block member's multiplier): its float
                return False
        elif cls is _ND and v.size <= FINITE_BATCH_MAX:
            small[id(v)] = v
        elif cls is _ND:
            if id(v) not in large:
                if not finite_array(v):
                    return False
                large.add(id(v))
        elif not np.all(np.isfinite(v)):
            return False
    if len(small) == 1:      # one small array: tested as it is, no copy
        (v,) = small.values()
        return _few_finite(v) if v.size <= SMALL_MAX and v.dtype is _F64_DTYPE else bool(np.isfinite(v).all())
    return not small or bool(np.isfinite(np.concatenate(list(small.values()), axis=None)).all())


def _bad(v) -> bool:
    return v is not None and not np.all(np.isfinite(v))


def _kind_of(v) -> str:
    return "NaN" if np.any(np.isnan(v)) else "inf"


def _order(sched: Schedule) -> dict[int, int]:
    """Position of every defined node in forward (topological) order; inputs come first."""
    pos: dict[int, int] = {}
    for k, step in enumerate(sched.steps):
        for n in ([step.node] if type(step) is Step else step.nodes):
            pos[n] = k
    return pos


def _steps(sched: Schedule):
    for step in sched.steps:
        if type(step) is Step:
            yield step
        else:
            yield from step.steps


def _describe(sched: Schedule, step: Step) -> str:
    args = [sched.names[a] for a in step.args]
    return f"node {sched.names[step.node]!r} (op {step.prim.name!r} of {args})"


def _pulled(step: Step, p: int, g, ans, args: list):
    """The cotangent ``step`` passes to argument ``p`` (``g`` may carry a trailing column
    axis, as in the Jacobian passes: then ``Jᵀ g`` from the local Jacobian); None if the
    rules cannot say (the error then names the node only)."""
    with np.errstate(all="ignore"):
        try:
            if np.shape(g) == np.shape(ans):
                return step.prim.vjp(p, g, ans, args, step.params)
            J = step.prim.jac(p, ans, args, step.params)
            return None if J is None else np.asarray(J.T @ np.reshape(g, (J.shape[0], -1)))
        except Exception:   # noqa: BLE001 - diagnosis only: never mask the NonFiniteError
            return None


def check_finite_pass(sched: Schedule, vals: list, seq: list, what: str) -> None:
    """Raise :class:`NonFiniteError` when an entry of ``seq`` is not finite.

    ``what`` is ``"multiplier"`` (the adjoint, read in reverse order: the first node
    processed with a non-finite multiplier is named, with the consumer whose derivative
    rule produced it), ``"tangent"`` (forward order) or ``"second-order multiplier"``.
    """
    if all_finite(seq):
        return
    raise _nonfinite_error(sched, vals, seq, what)


def _nonfinite_error(sched: Schedule, vals: list, seq: list, what: str) -> NonFiniteError:
    pos = _order(sched)
    bad = [i for i, v in enumerate(seq) if _bad(v)]
    forward = what == "tangent"
    first = (min if forward else max)(bad, key=lambda i: pos.get(i, -1))
    name = sched.names[first]
    role = "input" if first not in pos else "node"
    label = "gradient (multiplier)" if role == "input" and what == "multiplier" else what
    head = f"the {label} of {role} {name!r} is {_kind_of(seq[first])}"
    hint = ("The program's true derivative may still be finite where the chain rule meets "
            "0·inf (x*sqrt(x) has derivative 0 at x = 0, but sqrt's derivative is infinite "
            "there): rewrite the expression (x**1.5), or move the point off the singularity "
            "(sqrt/log/power at 0, overflow). A branch that lp.where discards is still "
            "differentiated (its cotangent is 0, and 0·inf is NaN): guard the argument "
            "instead, lp.sqrt(lp.where(x > 0, x, 1.0)).")
    if forward:
        step = next(s for s in _steps(sched) if s.node == first)
        return NonFiniteError(
            f"{head}: {_describe(sched, step)} has a non-finite derivative at this point, "
            f"although its arguments' tangents are finite. {hint}")
    culprits = []
    for step in _steps(sched):
        g = seq[step.node]
        if g is None or _bad(g) or first not in step.args:
            continue
        args = [vals[a] for a in step.args]
        for p, u in step.diff:
            if u != first:
                continue
            if _bad(_pulled(step, p, g, vals[step.node], args)):
                culprits.append(f"{_describe(sched, step)} (argument {p})")
    if not culprits:
        return NonFiniteError(f"{head} (computed in a block solve or from a non-finite seed). {hint}")
    return NonFiniteError(
        f"{head}: it comes from {'; '.join(culprits)}, whose derivative with respect to "
        f"{name!r} is not finite at this point. {hint}")
