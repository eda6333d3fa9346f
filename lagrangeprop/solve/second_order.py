"""Exact Hessian-vector products: the multiplier solve differentiated along a tangent.

Forward-over-reverse (SPEC §1, "Second order"): after the tangent pass gives ``ż``,
differentiating ``Aᵀλ = e_o·seed`` along it gives ``Aᵀλ̇ = -(Ȧ)ᵀλ``, solved by
back-substitution (:class:`~lagrangeprop.solve.walk.ReverseLinear`) of
``λ̇_u += sign·(vjp(λ̇_d) + S(λ_d, ż))`` with the curvature terms ``S`` of
:mod:`lagrangeprop.rules.curvature`; for inputs ``λ̇_x = ∇²<seed, z_o>·ẋ``.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: x ** 3, x=2.0).solve(x=2.0)
>>> float(solution_hvp(sol, {"x": 1.0})["x"])   # 6x
12.0
"""

from __future__ import annotations

import numpy as np

from .. import blocks
from ..compile.schedule import Block, Schedule, Step
from ..options import SolveOptions
from ..rules.curvature import curvature
from .finite import check_finite_pass
from .inputs import scalar, shaped_input
from .tangent import tangent_pass
from .walk import ReverseLinear, add_to, sign, walk

__all__ = ["hvp_pass", "solution_hvp"]


def _second_accumulate(step: Step, g, gdot, ans, vals: list, zdot: list, ldot: list,
                       members=None, inside: bool = False) -> None:
    """``λ̇_u += sign·(vjp_u(λ̇_d) + S_u(λ_d, ż))``; with ``members``, only arguments
    inside (curvature only) or outside the block."""
    args = [vals[a] for a in step.args]
    tans = [zdot[a] for a in step.args]
    sgn = sign(step)
    for pos, u in step.diff:
        if members is not None and (u in members) != inside:
            continue
        ct = None
        if gdot is not None and not inside:
            ct = step.prim.vjp(pos, gdot, ans, args, step.params)
        if g is not None:
            s2 = curvature(step.prim, pos, g, ans, args, step.params, tans)
            if s2 is not None:
                ct = s2 if ct is None else ct + s2
        if ct is not None:
            add_to(ldot, u, sgn * ct)


class _SecondOrder(ReverseLinear):
    """λ̇ through each step's vjp and curvature rules (``seq`` is λ̇; λ and ż are given)."""

    __slots__ = ("lam", "zdot")

    def __init__(self, vals, states, opts, ldot, lam: list, zdot: list):
        super().__init__(vals, states, opts, ldot)
        self.lam, self.zdot = lam, zdot

    def active(self, d: int) -> bool:
        return self.lam[d] is not None or self.seq[d] is not None

    def pull(self, step: Step, ans, members) -> None:
        d = step.node
        _second_accumulate(step, self.lam[d], self.seq[d], ans, self.vals, self.zdot, self.seq,
                           members)

    def enter(self, block: Block, state) -> None:
        # the block's own constraints curve too: -(Ȧ_SS)ᵀ λ_S joins the right-hand side
        for s in block.steps:
            if self.lam[s.node] is not None:
                _second_accumulate(s, self.lam[s.node], None, state.ans[s.node], self.vals,
                                   self.zdot, self.seq, block.position, inside=True)

    def solve(self, block: Block, rhs: list, state) -> list:
        return blocks.solve_adjoint(block, self.vals, rhs, state, self.opts)


# d/dε of Aᵀλ = e_o·seed: A_SSᵀ λ̇_S = ḃ_S - (Ȧ_SS)ᵀ λ_S, and (Ȧ)ᵀλ = -Σ_d sign_d S_d(λ_d).
def hvp_pass(sched: Schedule, vals: list, lam: list, states: dict, opts: SolveOptions,
             zdot: list) -> list:
    """``λ̇`` for every node: the directional derivative of the multipliers along ``ż``.

    For inputs ``λ̇_x = ∇²<seed, z_o>(x) · ẋ``, the Hessian-vector product.
    """
    ldot: list = [None] * len(sched.names)
    with np.errstate(all="ignore"):     # a non-finite multiplier is reported below, not warned about
        walk(sched, _SecondOrder(vals, states, opts, ldot, lam, zdot), reverse=True)
    check_finite_pass(sched, vals, ldot, "second-order multiplier")
    return ldot


def solution_hvp(sol, v: dict) -> dict:
    """``∇²<seed, z_o> · v`` for a solved program, as ``{input: array}``.

    Forward-over-reverse: the tangent pass along ``v`` (missing inputs: zero), then the
    differentiated multiplier solve. Exact up to roundoff for the built-in ops.
    """
    sched = sol.schedule
    xdot = {sched.index[k]: shaped_input(sched, sched.index[k], t, "direction") for k, t in v.items()}
    zdot = tangent_pass(sched, sol._vals, sol._states, sol.options, xdot)
    ldot = hvp_pass(sched, sol._vals, sol._lam, sol._states, sol.options, zdot)
    return {sched.names[i]: scalar(np.zeros(sched.shapes[i]) if ldot[i] is None
                                   else np.array(np.broadcast_to(ldot[i], sched.shapes[i])))
            for i in sched.inputs}
