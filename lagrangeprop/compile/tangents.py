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

import functools
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
    return b.finish()


def _math(b: _Builder, sched: Schedule, s: Step, live: list, state: list, names: list[str],
          consts: dict, comments: bool) -> None:
    """``ż_d`` as Python floats (:func:`_math_form`), commented with its terms."""
    d, args = s.node, s.args
    lines, roles, result = _math_form(s.prim.name, tuple(p for p, _ in live), tuple(state[u] for _, u in live))
    where = {"A": d, "X": args[0], "Y": args[-1]}
    toks = tuple(("l", d, True) if r[1] == "d" else ("l", live[r[1]][1], False) if r[0] == "l"
                 else ("v", where[r[1]], "f", False) for r in roles)
    again = (("l", d, "rw"), *toks[1:])    # ż_d read and written: loaded in a new chunk
    comment = ""
    if comments:
        label = {"A": names[d], "X": _label(sched, consts, names, args[0]), "Y": _label(sched, consts, names, args[-1])}
        pretty = [_fmt(JVP[s.prim.name][p], T=f"ż_{names[u]}", **label).replace(" * ", "·") for p, u in live]
        comment = _HELPER.sub(r"\1(", f"ż_{names[d]} = " + " + ".join(pretty) + f"   ({s.prim.name})")
    for fmt, rw in lines:
        b.add(fmt, again if rw else toks, comment)
    state[d] = result


@functools.cache
def _math_form(op: str, positions: tuple, states: tuple) -> tuple[tuple, tuple, int]:
    """The lines ``(format, reads ż_d)`` of ``ż_d = Σ_k (∂f/∂z_{u_k}) ż_{u_k}`` over the live
    arguments (positions, tangent states), the roles of their slots (``("l", "d")``: ż_d,
    ``("l", k)``: ż of live argument k, ``("v", "A" | "X" | "Y")``: a value) and ż_d's state.
    The terms are summed in argument order as the interpreter sums them (``total + t``); a
    tangent that may be None joins only when it is not."""
    roles: list = [("l", "d")]

    def ref(role) -> str:
        roles.append(role)
        return _ref(len(roles) - 1)

    terms = []
    for k, pos in enumerate(positions):
        p = JVP[op][pos]
        slots = {"T": ref(("l", k))}
        for key in "AXY":
            if "{" + key + "}" in p:
                slots[key] = ref(("v", key))
        terms.append((states[k], slots["T"], _fmt(p, **slots)))
    if all(st == _SET for st, _, _ in terms):
        return (("{0} = " + " + ".join(t for _, _, t in terms), False),), tuple(roles), _SET
    (st0, slot0, t0), rest = terms[0], terms[1:]
    bare = t0 == slot0     # ż_d = ż_u: None stays None
    lines = [("{0} = " + (t0 if st0 == _SET or bare else f"{t0} if {slot0} is not None else None"), False)]
    sure = st0 == _SET
    for st, slot, t in rest:
        line = "{0} = " + ("{0} + " + t if sure else t + " if {0} is None else {0} + " + t)
        lines.append(((line if st == _SET else f"if {slot} is not None: " + line), True))
        sure = sure or st == _SET
    return tuple(lines), tuple(roles), _SET if sure else _MAYBE


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
