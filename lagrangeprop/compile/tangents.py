"""The tangent statements: ``A ż = -(∂c/∂x) ẋ`` by forward substitution, one per constraint.

For each constraint ``d`` in topological order, ``ż_d = Σ_u (∂f_d/∂z_u) ż_u`` over its
differentiable arguments (SPEC §1, forward mode): a Python float expression for the ops of
:data:`~lagrangeprop.compile.statements.MATH` (:data:`JVP`), a call of the op's registry rule
(``_push``, :mod:`~lagrangeprop.solve.compiled_tangent`) for everything else, and a cyclic
block between chunks (``A_SS ż_S = b_S``, solved by the block solver). Which inputs carry a
tangent is fixed per generated pass (``seeded``), so whether ``ż_d`` is identically zero is
known here from the graph (``_ZERO``, ``_MAYBE``, ``_SET``, as the multipliers do): a zero
tangent gets no statement, and a ``None`` test is written only where a rule may return zero.

Examples
--------
>>> import lagrangeprop as lp
>>> sched = lp.trace(lambda x: lp.sin(x) * x, x=1.0).compile()
>>> [fmt for fmt, _, _ in tangent_statements(sched, sched.inputs)[0].statements]
['{0} = {1} * _cos({2})', '{0} = {1} * {2} + {3} * {4}']
>>> JVP["sin"], JVP["subtract"]
(('{T} * _cos({X})',), ('{T}', '-{T}'))
"""

from __future__ import annotations

import re

from ..graph.trace import paused_gc
from .codegen import _is_math, _label
from .plan import _float_nodes
from .schedule import Block, Schedule, Step
from .statements import MATH, _Builder, _fmt, _ref, _tuple

__all__ = ["JVP", "tangent_statements"]

_ZERO, _MAYBE, _SET = 0, 1, 2
_HELPER = re.compile(r"\b_(\w+)\(")   # _cos( -> cos( in comments

# op: the tangent term (∂f_d/∂z_u) ż_u of each argument, T = ż_u. For a scalar the partial
# times the tangent is the partial times the cotangent, so each term is MATH's cotangent
# formula with T for G (the registry's jvp rule `t * partial`, math's functions for numpy's)
JVP: dict[str, tuple[str, ...]] = {
    op: tuple("{T}" if p == "+" else "-{T}" if p == "-" else _fmt(p, G="{T}") for p in partials)
    for op, (_, partials) in MATH.items()
}


# ż_d = Σ_u (∂f_d/∂z_u) ż_u in topological order; A_SS ż_S = Σ_{u ∉ S} sign·(∂op_S/∂z_u) ż_u on a block
def tangent_statements(sched: Schedule, seeded, names: list[str] | None = None,
                       comments: bool = False, use_math: bool = True) -> list:
    """The tangent pass of ``sched`` as chunks of statements (and blocks between them), for
    tangents on the inputs ``seeded`` (ids) only; ``names``, ``comments`` and ``use_math``
    (``False``: every step through its jvp rules, bitwise the interpreter) as
    :func:`~lagrangeprop.compile.codegen.generate`'s."""
    names = sched.names if names is None else names
    with paused_gc():
        floats = _float_nodes(sched)
        consts = dict(sched.constants) if comments else {}
        b = _Builder()
        state = [_ZERO] * len(sched.names)
        for i in seeded:
            state[i] = _SET
        for item in sched.steps:
            if item.__class__ is Block:
                if all(state[u] == _ZERO for s in item.steps for _, u in s.diff if u not in item.position):
                    continue   # nothing outside reaches the block: its tangents are zero
                b.block(item)
                for n in item.nodes:
                    state[n] = _MAYBE
                continue
            s: Step = item
            live = [(pos, u) for pos, u in s.diff if state[u] != _ZERO]
            if not live:
                continue
            if use_math and _is_math(sched, s, floats):
                _math(b, sched, s, live, state, names, consts, comments)
            else:
                _push(b, s, state, names, comments)
    return b.runs


def _math(b: _Builder, sched: Schedule, s: Step, live: list, state: list, names: list[str],
          consts: dict, comments: bool) -> None:
    """``ż_d`` as Python floats: the terms in argument order, summed as the interpreter sums
    them (``total + t``), with a ``None`` test for a tangent that may be zero."""
    d = s.node
    toks: list = [("l", d, True)]
    label = {"A": names[d]}
    where = {"A": d, "X": s.args[0], "Y": s.args[-1]}
    if comments:
        label.update(X=_label(sched, consts, names, s.args[0]), Y=_label(sched, consts, names, s.args[-1]))

    def ref(tok) -> str:
        toks.append(tok)
        return _ref(len(toks) - 1)

    terms, pretty = [], []
    for pos, u in live:
        p = JVP[s.prim.name][pos]
        slots = {"T": ref(("l", u, False))}
        for key in "AXY":
            if "{" + key + "}" in p:
                slots[key] = ref(("v", where[key], "f", False))
        terms.append((u, _fmt(p, **slots)))
        if comments:
            pretty.append(_fmt(p, T=f"ż_{names[u]}", **label).replace(" * ", "·"))
    comment = ""
    if comments:
        comment = _HELPER.sub(r"\1(", f"ż_{names[d]} = " + " + ".join(pretty) + f"   ({s.prim.name})")
    if all(state[u] == _SET for u, _ in terms):
        b.add("{0} = " + " + ".join(t for _, t in terms), tuple(toks), comment)
        state[d] = _SET
        return
    # a tangent that may be None: each term joins when its ż_u is not None (interpreter order)
    (u0, t0), rest = terms[0], terms[1:]
    bare = t0 == _slot(toks, u0)     # ż_d = ż_u: None stays None
    first = "{0} = " + (t0 if state[u0] == _SET or bare else f"{t0} if {_slot(toks, u0)} is not None else None")
    b.add(first, tuple(toks), comment)
    sure = state[u0] == _SET
    again = (("l", d, "rw"), *toks[1:])    # ż_d read and written: loaded in a new chunk
    for u, t in rest:
        line = "{0} = " + ("{0} + " + t if sure else t + " if {0} is None else {0} + " + t)
        if state[u] != _SET:
            line = f"if {_slot(toks, u)} is not None: " + line
        b.add(line, again, comment)
        sure = sure or state[u] == _SET
    state[d] = _SET if sure else _MAYBE


def _slot(toks: list, u: int) -> str:
    """The slot of ``ż_u`` among the tokens."""
    return _ref(next(k for k, t in enumerate(toks) if t[0] == "l" and t[1] == u and t[2] is False))


def _push(b: _Builder, s: Step, state: list, names: list[str], comments: bool) -> None:
    """``ż_d = _push(step, z_d, [args], (ż per differentiable argument))``: the op's jvp rules."""
    d = s.node
    toks: list = [("l", d, True), ("k", s, f"step_{names[d]}"), ("v", d, "n", False)]
    args = []
    for a in s.args:
        args.append(_ref(len(toks)))
        toks.append(("v", a, "n", False))
    tans = []
    for _, u in s.diff:
        if state[u] == _ZERO:
            tans.append("None")
        else:
            tans.append(_ref(len(toks)))
            toks.append(("l", u, False))
    line = "{0} = _push({1}, {2}, [" + ", ".join(args) + "], " + _tuple(tans) + ")"
    comment = ""
    if comments:
        us = dict.fromkeys(names[u] for _, u in s.diff if state[u] != _ZERO)
        comment = (f"ż_{names[d]} = " + " + ".join(f"(∂{names[d]}/∂{u}) ż_{u}" for u in us)
                   + f"   ({s.prim.name})")
    b.add(line, tuple(toks), comment)
    state[d] = _MAYBE
