"""One walk over the compiled schedule, shared by the linear passes and the tape replay.

:func:`walk` hands every item of ``sched.steps`` (topological order of the condensation,
or its reverse) to a pass object: an acyclic constraint to ``p.step``, a cyclic block to
``p.block``. The linear passes share the block logic too:

- :class:`ForwardLinear` (the tangent pass, the forward matrix pass) solves ``A ż = b``
  in forward order: ``ż_d = push(d)`` on the DAG and ``A_SS ż_S = sign·push(S)`` on a block;
- :class:`ReverseLinear` (the second-order pass, the reverse matrix pass) solves
  ``Aᵀ λ = b`` in reverse order: ``pull(d)`` accumulates ``λ_u += ...`` into the arguments,
  a block first solves ``A_SSᵀ λ_S = b_S`` against its factorization.

Each pass keeps only its local rule (``push``/``pull``) and its block solve (``solve``).

Examples
--------
>>> import lagrangeprop as lp
>>> sched = lp.trace(lambda x: lp.exp(x) + x, x=0.0).compile()
>>> class Names:
...     def __init__(self): self.seen = []
...     def step(self, step): self.seen.append(sched.names[step.node])
...     def block(self, block): self.seen.append(block.names)
>>> p = Names(); walk(sched, p, reverse=True); p.seen
['out', 'exp_0']
"""

from __future__ import annotations

from typing import Any, Protocol

from ..compile.schedule import Block, Schedule, Step

__all__ = ["Pass", "walk", "ForwardLinear", "ReverseLinear", "sign", "add_to", "drop_dead"]


class Pass(Protocol):
    """What :func:`walk` calls: one method per kind of schedule item."""

    def step(self, step: Step) -> None: ...

    def block(self, block: Block) -> None: ...


def walk(sched: Schedule, p: Pass, reverse: bool = False) -> None:
    """``p.step(s)`` for each acyclic constraint, ``p.block(b)`` for each cyclic block, in
    topological order (``reverse``: the adjoint's order)."""
    for item in reversed(sched.steps) if reverse else sched.steps:
        if type(item) is Step:
            p.step(item)
        else:
            p.block(item)


def sign(step: Step) -> float:
    """``-∂c_d/∂z_u = sign · ∂op_d/∂z_u``: +1 for ``c_d = z_d - f_d``, -1 for ``c_d = r_d``."""
    return -1.0 if step.residual else 1.0


def add_to(seq: list, i: int, v) -> None:
    """``seq[i] += v`` with ``None`` as zero on both sides."""
    if v is not None:
        seq[i] = v if seq[i] is None else seq[i] + v


def drop_dead(seq: list, live: frozenset) -> None:
    """``seq[i] = None`` (zero) for every node outside ``live``, in place: a node the output
    does not depend on carries no derivative of it."""
    if len(live) == len(seq):      # every node reaches the output: nothing to drop
        return
    for i, v in enumerate(seq):
        if v is not None and i not in live:
            seq[i] = None


# A ż = b in forward order: ż_d = Σ_u (∂op_d/∂z_u) ż_u on the DAG (A = I - J),
# A_SS ż_S = Σ_{u ∉ S} sign·(∂op_S/∂z_u) ż_u on a block.
class ForwardLinear:
    """A forward linear pass: ``seq[d]`` for every node from the seeds already in ``seq``.

    Subclasses define ``push(step, ans, members)`` (the step's ``Σ_u (∂op/∂z_u) seq[u]``
    over the arguments not in ``members``, or None) and ``solve(block, rhs, state)``.
    """

    __slots__ = ("vals", "states", "opts", "seq")

    def __init__(self, vals: list, states: dict, opts: Any, seq: list):
        self.vals, self.states, self.opts, self.seq = vals, states, opts, seq

    def push(self, step: Step, ans, members: dict | None):
        raise NotImplementedError

    def solve(self, block: Block, rhs: list, state) -> list:
        raise NotImplementedError

    def step(self, step: Step) -> None:
        self.seq[step.node] = self.push(step, self.vals[step.node], None)

    def block(self, block: Block) -> None:
        state = self.states[id(block)]
        rhs = []
        for s in block.steps:
            t = self.push(s, state.ans[s.node], block.position)
            rhs.append(None if t is None else sign(s) * t)
        if all(r is None for r in rhs):
            return
        for n, x in zip(block.nodes, self.solve(block, rhs, state)):
            self.seq[n] = x


# Aᵀ λ = b in reverse order: λ_u += sign·(∂op_d/∂z_u)ᵀ λ_d on the DAG,
# A_SSᵀ λ_S = b_S on a block (b_S: everything its consumers accumulated), then pulled on.
class ReverseLinear:
    """A reverse linear pass: ``seq[u]`` accumulated from the seeds already in ``seq``.

    Subclasses define ``active(d)`` (whether node ``d`` has anything to pull),
    ``pull(step, ans, members)`` (accumulate into the arguments not in ``members``),
    ``solve(block, rhs, state)``, and optionally ``enter(block, state)``, run before a
    block's solve (the second-order pass adds the curvature of the block's own constraints).
    """

    __slots__ = ("vals", "states", "opts", "seq")

    def __init__(self, vals: list, states: dict, opts: Any, seq: list):
        self.vals, self.states, self.opts, self.seq = vals, states, opts, seq

    def active(self, d: int) -> bool:
        return self.seq[d] is not None

    def pull(self, step: Step, ans, members: dict | None) -> None:
        raise NotImplementedError

    def solve(self, block: Block, rhs: list, state) -> list:
        raise NotImplementedError

    def enter(self, block: Block, state) -> None:
        return None

    def step(self, step: Step) -> None:
        if self.active(step.node):
            self.pull(step, self.vals[step.node], None)

    def block(self, block: Block) -> None:
        state = self.states[id(block)]
        self.enter(block, state)
        seq = self.seq
        rhs = [seq[n] for n in block.nodes]
        if not all(r is None for r in rhs):
            for n, x in zip(block.nodes, self.solve(block, rhs, state)):
                seq[n] = x
        for s in block.steps:
            if self.active(s.node):
                self.pull(s, state.ans[s.node], block.position)
