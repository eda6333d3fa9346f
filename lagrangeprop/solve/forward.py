"""The forward pass: ∂L/∂λ = 0, i.e. every constraint holds (SPEC §1, condition 1).

Acyclic steps evaluate ``z_d = f_d(z_pa(d))`` in topological order; cyclic blocks
are handed to :mod:`lagrangeprop.blocks.policy`. Like JAX's ``eval_jaxpr``: one loop,
single assignment. The loop walks the compiled plan (:func:`~lagrangeprop.compile.schedule.plan_of`):
same-op scalar constraints of one level run as one numpy call on a register array.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0)
>>> float(prog.evaluate(x=0.0))
2.0
"""

from __future__ import annotations

import math

import numpy as np

from .. import blocks
from ..errors import NonFiniteError
from ..options import SolveOptions
from ..compile.schedule import GROUP, SMALL, STEP, Schedule, Step, keep, plan_of, take

__all__ = ["run_forward", "initial_values", "Values", "finite_array"]

_ND, _F64, _F64DT = np.ndarray, np.float64, np.dtype(np.float64)


class Values(list):
    """The value slots, indexed by node id; ``scalars`` keeps the forward pass's register
    array of grouped scalars for the adjoint (``None`` until :func:`run_forward` ran)."""

    __slots__ = ("scalars",)

    def __init__(self, *args):
        super().__init__(*args)
        self.scalars = None


def initial_values(sched: Schedule, inputs: dict[int, np.ndarray]) -> list:
    """A value slot per node, with inputs and constants filled in."""
    base = sched.__dict__.get("_base_values")
    if base is None:   # the constants' slots, filled once per schedule (then one list copy)
        base = [None] * len(sched.names)
        for i, v in sched.constants:
            base[i] = v
        sched.__dict__["_base_values"] = base
    vals = Values(base)
    for i, v in inputs.items():
        vals[i] = v
    return vals


def as_value(out) -> np.ndarray:
    """An op's raw result as :meth:`Primitive.value` returns it (float64, or bool)."""
    out = np.asarray(out)
    return out if out.dtype == np.bool_ else out.astype(np.float64, copy=False)


def run_forward(sched: Schedule, vals: list, opts: SolveOptions,
                guess: dict[int, np.ndarray] | None = None) -> dict:
    """Fill ``vals`` for every defined node; returns the block solver states."""
    plan = plan_of(sched)
    bufs = plan.bufs
    states: dict = {}
    S = np.empty(plan.nslots) if plan.nslots else None
    finite = True
    with np.errstate(all="ignore"):
        for k, i in plan.init:
            S[k] = vals[i]
        for kind, item, extra, fast in plan.items:
            if kind is STEP:
                # the bare function (fast) or prim.fn: Primitive.value's conversions only when
                # the result needs them
                if fast is not None:
                    fn, args = fast[0], fast[1]
                    if fast[3] >= 0:   # a large result: into a free buffer of an earlier solve
                        buf = take(bufs, fast[3])
                        out = fn(*[vals[a] for a in args], out=buf)
                        if buf is None:
                            keep(bufs, fast[3], out)
                        del buf
                    elif len(args) == 2:
                        out = fn(vals[args[0]], vals[args[1]])
                    elif len(args) == 1:
                        out = fn(vals[args[0]])
                    else:
                        out = fn(*[vals[a] for a in args])
                else:
                    out = item.prim.fn(*[vals[a] for a in item.args], **item.params)
                cls = out.__class__
                if cls is not _F64 and (cls is not _ND or out.dtype is not _F64DT):
                    out = as_value(out)
                vals[item.node] = out
                if extra >= 0:
                    S[extra] = out
            elif kind is GROUP:
                out = item.prim.raw_fn(*[S[a] for a in item.args])
                S[item.out] = out
                for i, v in zip(item.nodes, out):
                    vals[i] = v
                if finite and not np.isfinite(out).all():
                    finite = False
            else:
                states[id(item)] = blocks.solve_forward(item, vals, opts, guess or {})
                for k, i in extra:
                    S[k] = vals[i]
        finite = finite and _all_finite(plan, vals)    # (overflowing square sums are allowed)
    if not finite:
        _check_finite(sched, vals)
    if isinstance(vals, Values):
        vals.scalars = S
    return states


def _all_finite(plan, vals: list) -> bool:
    """``math.isfinite`` per per-step scalar, one vector test for all small arrays, one
    :func:`finite_array` per large array. Exact: ``False`` only if some value (or, rarely, the
    overflowing square sum of a large array) is not finite; :func:`_check_finite` then names
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
    if a.__class__ is _ND and a.dtype is _F64DT and a.size > SMALL and a.flags.c_contiguous:
        r = a.reshape(-1)
        if math.isfinite(np.dot(r, r)):
            return True
    return bool(np.isfinite(a).all())


def finite_array(a) -> bool:
    """Whether every entry of the array ``a`` is finite. A large contiguous float64 array is
    first tested with one BLAS dot product: ``a·a`` is finite when every entry is (a NaN or
    inf entry makes it NaN or inf, and squares cannot cancel), and costs half of
    ``isfinite(a).all()``; only a non-finite result (a non-finite entry, or the square sum of
    huge finite entries overflowing) pays for the entry-wise test.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones(5000); finite_array(a), finite_array(np.full(5000, 1e200))
    (True, True)
    >>> a[500] = np.nan; finite_array(a)
    False
    """
    with np.errstate(all="ignore"):   # overflow of the square sum is allowed
        return _finite(a)


def _check_finite(sched: Schedule, vals: list) -> None:
    for step in sched.steps:
        if type(step) is Step and not np.all(np.isfinite(vals[step.node])):
            args = [sched.names[a] for a in step.args]
            raise NonFiniteError(
                f"node {sched.names[step.node]!r} (op {step.prim.name!r} of {args}) produced "
                "a non-finite value (NaN or inf); check the inputs or the op's domain "
                "(log/sqrt of a non-positive number, division by zero, overflow in exp). "
                "A branch that lp.where discards is still computed: guard the argument, "
                "e.g. lp.sqrt(lp.where(x > 0, x, 1.0)), not the result")
