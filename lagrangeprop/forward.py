"""The forward pass: ∂L/∂λ = 0, i.e. every constraint holds (SPEC §1, condition 1).

Acyclic steps evaluate ``z_d = f_d(z_pa(d))`` in topological order; cyclic blocks
are handed to :mod:`lagrangeprop.blocks`. Like JAX's ``eval_jaxpr``: one loop,
single assignment.

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
from .schedule import Schedule, Step

__all__ = ["run_forward", "initial_values"]


def initial_values(sched: Schedule, inputs: dict[int, np.ndarray]) -> list:
    """A value slot per node, with inputs and constants filled in."""
    vals: list = [None] * len(sched.names)
    for i, v in sched.constants:
        vals[i] = v
    for i, v in inputs.items():
        vals[i] = v
    return vals


def run_forward(sched: Schedule, vals: list, opts: SolveOptions,
                guess: dict[int, np.ndarray] | None = None) -> dict:
    """Fill ``vals`` for every live defined node; returns the block solver states."""
    states: dict = {}
    with np.errstate(all="ignore"):
        for step in sched.steps:
            if type(step) is Step:
                vals[step.node] = step.prim.value([vals[a] for a in step.args], step.params)
            else:
                states[id(step)] = blocks.solve_forward(step, vals, opts, guess or {})
    _check_finite(sched, vals)
    return states


def _check_finite(sched: Schedule, vals: list) -> None:
    for step in sched.steps:
        if type(step) is Step and not np.all(np.isfinite(vals[step.node])):
            args = [sched.names[a] for a in step.args]
            raise NonFiniteError(
                f"node {sched.names[step.node]!r} (op {step.prim.name!r} of {args}) produced "
                "a non-finite value (NaN or inf); check the inputs or the op's domain "
                "(log/sqrt of a non-positive number, division by zero, overflow in exp)")
