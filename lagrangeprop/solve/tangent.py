"""The tangent pass: forward mode on the compiled schedule (SPEC §1, "Forward (tangent) mode").

Linearizing ``c(z(x), x) = 0`` gives ``A ż = -(∂c/∂x) ẋ``, solved on the same structure
as the multipliers but in forward order. The interpreter (:func:`tangent_reference`, a
:class:`~lagrangeprop.solve.walk.ForwardLinear` walk) is the reference of the generated pass
(:mod:`~lagrangeprop.solve.compiled_tangent`), which :func:`tangent_pass` runs by default:
on the DAG ``ż_d = Σ_u (∂f_d/∂z_u) ż_u``, on a block ``A_SS ż_S = b_S`` with the forward
solve's factorization.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: x ** 3, x=2.0).solve(x=2.0)
>>> float(solution_jvp(sol, {"x": 1.0})["out"])   # 3x²
12.0
"""

from __future__ import annotations

import numpy as np

from .. import blocks
from ..compile.schedule import Block, Schedule, Step, live_nodes
from ..options import SolveOptions
from . import compiled, compiled_tangent
from .finite import check_finite_pass
from .inputs import scalar, shaped_input
from .walk import ForwardLinear, drop_dead, walk

__all__ = ["tangent_pass", "tangent_reference", "solution_jvp"]


def step_tangent(step: Step, ans, vals: list, zdot: list, skip: dict | None = None):
    """``Σ_u (∂op_d/∂z_u) ż_u`` over the differentiable arguments not in ``skip``."""
    args = [vals[a] for a in step.args]
    total = None
    for pos, u in step.diff:
        if zdot[u] is None or (skip is not None and u in skip):
            continue
        t = step.prim.jvp(pos, zdot[u], ans, args, step.params)
        if t is not None:
            total = t if total is None else total + t
    return total


class _Tangent(ForwardLinear):
    """ż through each step's jvp rules; a block solves with its own factorization."""

    __slots__ = ()

    def push(self, step: Step, ans, members):
        return step_tangent(step, ans, self.vals, self.seq, members)

    def solve(self, block: Block, rhs: list, state) -> list:
        return blocks.solve_tangent(block, self.vals, rhs, state, self.opts)


def tangent_pass(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                 xdot: dict[int, np.ndarray], every: bool = False) -> list:
    """Tangents ``ż`` (``None`` = zero) for input tangents ``xdot`` (id -> array): of the
    nodes the output depends on (:func:`~lagrangeprop.compile.schedule.live_nodes`), or of
    every node with ``every=True``.

    Only the returned tangents are checked: an infinite tangent of a node that never reaches
    the output (a dead ``sqrt(0)``) is not an error of ``ż_o``, and is returned as ``None``.
    Runs the generated pass (:mod:`~lagrangeprop.solve.compiled_tangent`) while
    ``compiled.ENABLED``; otherwise, and wherever that pass hands over (a Python float error,
    a non-finite tangent), the interpreter :func:`tangent_reference`, which raises the error.
    """
    live = None if every else live_nodes(sched)
    if compiled.ENABLED:
        zdot = compiled_tangent.tangent(sched, vals, states, opts, xdot, live)
        if zdot is not None:
            return zdot
    return tangent_reference(sched, vals, states, opts, xdot, live)


# A ż = -(∂c/∂x) ẋ: forward substitution on the DAG, A_SS ż_S = b_S on a block.
def tangent_reference(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                      xdot: dict[int, np.ndarray], live: frozenset | None = None) -> list:
    """The interpreter of :func:`tangent_pass`: one walk, each step's jvp rules (the reference);
    ``live``: the nodes whose tangents are kept and checked (None: every node)."""
    zdot: list = [None] * len(sched.names)
    for i, t in xdot.items():
        zdot[i] = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):     # a non-finite tangent is reported below, not warned about
        walk(sched, _Tangent(vals, states, opts, zdot))
    if live is not None:
        drop_dead(zdot, live)
    check_finite_pass(sched, vals, zdot, "tangent")
    return zdot



def solution_jvp(sol, tangents: dict) -> dict:
    """Tangents of every node of a solved program: ``{node: ż}`` for input tangents
    ``{input: ẋ}`` (missing inputs: zero)."""
    sched = sol.schedule
    xdot = {sched.index[k]: shaped_input(sched, sched.index[k], v, "tangent") for k, v in tangents.items()}
    zdot = tangent_pass(sched, sol._vals, sol._states, sol.options, xdot, every=True)
    return {sched.names[i]: scalar(np.zeros(sched.shapes[i]) if zdot[i] is None else np.asarray(zdot[i]))
            for i in [*sched.inputs, *sched.defined]}
