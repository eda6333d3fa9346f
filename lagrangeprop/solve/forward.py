"""The forward pass: ∂L/∂λ = 0, i.e. every constraint holds (SPEC §1, condition 1).

Acyclic steps evaluate ``z_d = f_d(z_pa(d))`` in topological order; cyclic blocks are handed
to :mod:`lagrangeprop.blocks.policy`. :func:`forward_reference` is the interpreter, like JAX's
``eval_jaxpr``: one loop, single assignment, each op's
:meth:`~lagrangeprop.rules.registry.Primitive.value`. :func:`run_forward`, what a solve calls,
runs the generated code (:mod:`~lagrangeprop.solve.compiled`) and falls back to the
interpreter, which the tests hold it to.

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
from ..compile.schedule import Schedule, Step
from ..errors import SingularSystemError
from ..options import SolveOptions
from .finite import check_values

__all__ = ["run_forward", "forward_reference", "initial_values"]


def initial_values(sched: Schedule, inputs: dict[int, np.ndarray]) -> list:
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
    vals = list(base)
    for i, v in inputs.items():
        vals[i] = v
    return vals


def run_forward(sched: Schedule, vals: list, opts: SolveOptions,
                guess: dict[int, np.ndarray] | None = None) -> dict:
    """Fill ``vals`` for every defined node; returns the block solver states. A non-finite
    value raises :class:`~lagrangeprop.errors.NonFiniteError` naming the first node that
    made it, a singular matrix op :class:`~lagrangeprop.errors.SingularSystemError` naming
    its node. The generated code runs (:mod:`~lagrangeprop.solve.compiled`) while
    ``compiled.ENABLED``; otherwise, and where it cannot name the node or Python's float
    arithmetic raised, :func:`forward_reference`."""
    if compiled.ENABLED:
        try:
            states = compiled.forward(sched, vals, opts, guess)
        except SingularSystemError:   # the interpreter fills vals step by step: it names the node
            states = None
        if states is not None:
            return states
    return forward_reference(sched, vals, opts, guess)


# ∂L/∂λ_d = -c_d = 0 for every d, in topological order: z_d = f_d(z_pa(d)) for a step;
# c_S(z_S; z_outside) = 0 solved for a block S
def forward_reference(sched: Schedule, vals: list, opts: SolveOptions,
                      guess: dict[int, np.ndarray] | None = None) -> dict:
    """:func:`run_forward` as a plain walk of the schedule with each op's
    :meth:`~lagrangeprop.rules.registry.Primitive.value` (the interpreter).

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
            try:
                if type(step) is Step:
                    vals[step.node] = step.prim.value([vals[a] for a in step.args], step.params)
                else:
                    states[id(step)] = blocks.solve_forward(step, vals, opts, guess or {})
            except SingularSystemError as exc:
                raise _named(sched, step, exc) from None
    check_values(sched, vals)
    return states


def _named(sched: Schedule, step, exc: SingularSystemError) -> SingularSystemError:
    """An op's own SingularSystemError (np.linalg.inv of a singular matrix) with the name of
    the step that raised it (a block's solver names its own unknowns)."""
    if exc.nodes:
        return exc
    if type(step) is Step:
        names = [sched.names[step.node]]
        what = f"node {names[0]!r} (op {step.prim.name!r})"
    else:
        names = [sched.names[n] for n in step.nodes]
        what = f"block {names}"
    return SingularSystemError(f"{what}: {exc}", nodes=names, rcond=exc.rcond)
