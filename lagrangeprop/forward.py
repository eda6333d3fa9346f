"""The forward pass: ∂L/∂λ = 0, i.e. every constraint holds (SPEC §1, condition 1).

Acyclic steps evaluate ``z_d = f_d(z_pa(d))`` in topological order; cyclic blocks
are handed to :mod:`lagrangeprop.blocks`. Like JAX's ``eval_jaxpr``: one loop,
single assignment. The loop walks the compiled plan (:func:`~lagrangeprop.schedule.plan_of`):
same-op scalar constraints of one level run as one numpy call on a register array.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0)
>>> float(prog.evaluate(x=0.0))
2.0
"""

from __future__ import annotations

import numpy as np

from . import blocks
from .errors import NonFiniteError
from .options import SolveOptions
from .schedule import GROUP, STEP, Schedule, Step, plan_of

__all__ = ["run_forward", "initial_values", "Values"]

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
    vals = Values([None] * len(sched.names))
    for i, v in sched.constants:
        vals[i] = v
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
                    if len(args) == 2:
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
    if not (finite and _all_finite(plan, vals)):
        _check_finite(sched, vals)
    if isinstance(vals, Values):
        vals.scalars = S
    return states


def _all_finite(plan, vals: list) -> bool:
    """One vector test for every per-step scalar, one for all small arrays, one per large array."""
    ids = plan.scalar_ids
    if ids and not np.isfinite(np.fromiter((vals[i] for i in ids), np.float64, len(ids))).all():
        return False
    ids = plan.small_ids   # one copy of them all beats one call each
    if ids and not np.isfinite(np.concatenate([vals[i] for i in ids], axis=None)).all():
        return False
    return all(np.isfinite(vals[i]).all() for i in plan.array_ids)


def _check_finite(sched: Schedule, vals: list) -> None:
    for step in sched.steps:
        if type(step) is Step and not np.all(np.isfinite(vals[step.node])):
            args = [sched.names[a] for a in step.args]
            raise NonFiniteError(
                f"node {sched.names[step.node]!r} (op {step.prim.name!r} of {args}) produced "
                "a non-finite value (NaN or inf); check the inputs or the op's domain "
                "(log/sqrt of a non-positive number, division by zero, overflow in exp)")
