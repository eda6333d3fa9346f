"""The forward pass: ∂L/∂λ = 0, i.e. every constraint holds (SPEC §1, condition 1).

Acyclic steps evaluate ``z_d = f_d(z_pa(d))`` in topological order; cyclic blocks are handed
to :mod:`lagrangeprop.blocks.policy`. :func:`forward_reference` is the semantics, like JAX's
``eval_jaxpr``: one loop, single assignment. :func:`run_forward`, what a solve calls, runs the
compiled plan instead (:func:`~lagrangeprop.solve.kernels.forward_plan`: bare numpy functions,
same-op scalar constraints of one level as one numpy call, pooled buffers), which the tests
hold to the reference's values.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0)
>>> float(prog.evaluate(x=0.0))
2.0
"""

from __future__ import annotations

import numpy as np

from .. import blocks
from . import compiled
from ..compile.plan import plan_of
from ..compile.schedule import Schedule, Step
from ..errors import SingularSystemError
from ..options import SolveOptions
from .finite import check_values
from .kernels import forward_plan

__all__ = ["run_forward", "forward_reference", "initial_values", "Values"]


class Values(list):
    """The value slots, indexed by node id; ``scalars`` keeps the forward pass's register
    array of grouped scalars for the adjoint (``None`` until :func:`run_forward` ran)."""

    __slots__ = ("scalars",)

    def __init__(self, *args):
        super().__init__(*args)
        self.scalars = None


def initial_values(sched: Schedule, inputs: dict[int, np.ndarray]) -> Values:
    """A value slot per node, with inputs and constants filled in.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> sched = lp.trace(lambda x: x + 1.0, x=0.0).compile()
    >>> vals = initial_values(sched, {sched.index["x"]: 2.0})
    >>> [None if v is None else float(v) for v in vals]
    [2.0, 1.0, None]
    """
    base = sched.base_values
    if base is None:   # the constants' slots, filled once per schedule (then one list copy)
        base = [None] * len(sched.names)
        for i, v in sched.constants:
            base[i] = v
        sched.base_values = base
    vals = Values(base)
    for i, v in inputs.items():
        vals[i] = v
    return vals


def run_forward(sched: Schedule, vals: list, opts: SolveOptions,
                guess: dict[int, np.ndarray] | None = None) -> dict:
    """Fill ``vals`` for every defined node; returns the block solver states. A non-finite
    value raises :class:`~lagrangeprop.errors.NonFiniteError` naming the first node that
    made it, a singular matrix op :class:`~lagrangeprop.errors.SingularSystemError` naming
    its node. The generated code runs (:mod:`~lagrangeprop.solve.compiled`) while
    ``compiled.ENABLED``; otherwise, and where Python's float arithmetic raised, the plan."""
    if compiled.ENABLED:
        try:
            states = compiled.forward(sched, vals, opts, guess)
        except SingularSystemError:   # the plan below fills vals step by step: it names the node
            states = None
        if states is not None:
            if isinstance(vals, Values):
                vals.scalars = None
            return states
    try:
        states, registers, finite = forward_plan(plan_of(sched), vals, opts, guess)
    except SingularSystemError as exc:
        raise _named(sched, vals, exc) from None
    if not finite:
        check_values(sched, vals)
    if isinstance(vals, Values):
        vals.scalars = registers
    return states


def _named(sched: Schedule, vals: list, exc: SingularSystemError) -> SingularSystemError:
    """An op's own SingularSystemError (np.linalg.inv of a singular matrix) with the name of
    the node that raised it: the first step whose value the pass did not fill."""
    if exc.nodes:
        return exc
    for step in sched.steps:
        nodes = [step.node] if type(step) is Step else list(step.nodes)
        if any(vals[n] is None for n in nodes):
            names = [sched.names[n] for n in nodes]
            what = f"node {names[0]!r} (op {step.prim.name!r})" if type(step) is Step \
                else f"block {names}"
            return SingularSystemError(f"{what}: {exc}", nodes=names, rcond=exc.rcond)
    return exc


# ∂L/∂λ_d = -c_d = 0 for every d, in topological order: z_d = f_d(z_pa(d)) for a step;
# c_S(z_S; z_outside) = 0 solved for a block S
def forward_reference(sched: Schedule, vals: list, opts: SolveOptions,
                      guess: dict[int, np.ndarray] | None = None) -> dict:
    """:func:`run_forward` as a plain walk of the schedule with each op's
    :meth:`~lagrangeprop.rules.registry.Primitive.value` (the reference semantics).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> from lagrangeprop.options import SolveOptions
    >>> sched = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0).compile()
    >>> vals = initial_values(sched, {sched.index["x"]: np.float64(0.0)})
    >>> _ = forward_reference(sched, vals, SolveOptions.make())
    >>> float(vals[sched.output])
    2.0
    """
    states: dict = {}
    with np.errstate(all="ignore"):
        for step in sched.steps:
            if type(step) is Step:
                vals[step.node] = step.prim.value([vals[a] for a in step.args], step.params)
            else:
                states[id(step)] = blocks.solve_forward(step, vals, opts, guess or {})
    check_values(sched, vals)
    return states
