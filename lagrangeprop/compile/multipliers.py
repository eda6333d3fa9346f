"""The multiplier statements: ``Aᵀλ = e_o·seed`` by back-substitution, one per edge.

For each constraint ``d`` in reverse topological order and each differentiable argument
``u``, ``λ_u += (∂f_d/∂z_u)ᵀ λ_d``: a Python float expression for the ops of
:data:`~lagrangeprop.compile.statements.MATH`, the plan's raw-kernel pieces for elementwise
ops on arrays, and a call of the op's registry rules (``_pull``) for everything else. Whether
``λ_u`` is still identically zero is known here, from the graph alone (``_ZERO``, ``_MAYBE``,
``_SET``), so the first contribution is an assignment and no ``None`` test is written where
none is needed.

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.compile.codegen import generate
>>> sched = lp.trace(lambda x: lp.sin(x) * x, x=1.0).compile()
>>> [fmt for fmt, _, _ in generate(sched).adjoint[0].statements]
['{1} = {0} * {2}', '{1} = {0} * {2}', '{1} = {1} + {0} * _cos({2})']
"""

from __future__ import annotations

import functools

from .plan import BlockItem, Plan, RawKernel
from .schedule import Schedule, Step
from .statements import MATH, Pull, _Builder, _fmt, _int_index, _ref, _tuple

__all__ = ["adjoint_statements"]

_ZERO, _MAYBE, _SET = 0, 1, 2


# Aᵀλ = e_o·seed by back-substitution in reverse topological order (autograd's backward_pass):
# λ_u += (∂f_d/∂z_u)ᵀ λ_d, one statement per edge u -> d
def adjoint_statements(sched: Schedule, plan: Plan, ismath: set[int], names: list[str], comments: bool) -> list:
    b = _Builder()
    state = [_ZERO] * len(sched.names)
    state[sched.output] = _SET
    for item in reversed(plan.items):
        if item.__class__ is BlockItem:
            block = item.block
            if all(state[n] == _ZERO for n in block.nodes):
                continue   # no consumer reached the block: its multipliers are zero
            b.block(block)
            for s in block.steps:
                state[s.node] = max(state[s.node], _MAYBE)
                for _, u in s.diff:
                    state[u] = max(state[u], _MAYBE)
            continue
        s, kernel = item.step, item.kernel
        d = s.node
        if state[d] == _ZERO or not s.diff:
            continue
        cond = state[d] == _MAYBE
        if d in ismath:
            _math_edges(b, s, state, names, cond, comments)
        elif kernel.__class__ is RawKernel:
            _raw_edges(b, s, kernel, state, names, cond, comments)
        else:
            index = _int_index(s, sched.shapes) if kernel is None else None
            _pull(b, s, kernel, state, names, cond, sched.names[d], comments, index)
    return b.runs


def _guard(b: _Builder, d: int, targets, state: list, names: list[str]) -> None:
    """``if λ_d is not None:`` for a multiplier that may be zero; zero targets start None."""
    for u in targets:
        if state[u] == _ZERO:
            b.add("{0} = None", (("l", u, True),), "λ = 0 so far")
            state[u] = _MAYBE


def _math_edges(b: _Builder, s: Step, state: list, names: list[str], cond: bool, comments: bool) -> None:
    d, args = s.node, s.args
    partials = MATH[s.prim.name][1]
    if cond:
        _guard(b, d, [u for _, u in s.diff], state, names)
    prefix = "if {0} is not None: " if cond else ""
    for pos, u in s.diff:
        p = partials[pos]
        g = "{0}"
        toks = [("l", d, False), ("l", u, True if state[u] == _ZERO else "rw")]
        if p in ("+", "-"):
            expr = g if p == "+" else "-" + g
        else:
            expr, reads = _math_partial(p)
            nodes = {"A": d, "X": args[0], "Y": args[-1]}
            toks += [("v", nodes[k], "f", False) for k in reads]
        _store(b, state, u, d, expr, p, toks, prefix, cond, names, comments, "")


# the plan's raw kernels (elementwise built-ins on float64 arrays), one statement per edge:
# solve.kernels.adjoint_raw's numbers, its decisions taken here (unit ±1, factor, broadcast sums)
def _raw_edges(b: _Builder, s: Step, kernel: RawKernel, state: list, names: list[str], cond: bool,
               comments: bool) -> None:
    d = s.node
    if cond:
        _guard(b, d, [rp.arg for rp in kernel.partials], state, names)
    prefix = "if {0} is not None: " if cond else ""
    for k, (u, partial, unit, red, factor) in enumerate(kernel.partials):
        toks: list = [("l", d, False), ("l", u, True if state[u] == _ZERO else "rw")]
        p = ""
        if unit is None:
            if factor >= 0:
                expr = "{0} * " + _ref(len(toks))
                toks.append(("v", factor, "n", False))
            else:   # {2}: the partial ∂f/∂z_u(ans, *args)
                toks.append(("k", partial, f"d_{names[d]}_{k}"))
                refs = []
                for n in (d, *s.args):
                    refs.append(_ref(len(toks)))
                    toks.append(("v", n, "n", False))
                expr = "_scaled({0}, {2}, " + ", ".join(refs) + ")"
        elif red is None:
            p = "+" if unit == 1.0 else "-"
            expr = "{0}" if p == "+" else "-{0}"
        else:
            expr = "{0}"
        if red is not None:     # the sums over broadcast axes: np.add.reduce, as ndarray.sum calls it
            lead, kept = red
            if lead:
                expr = "_addr(" + expr + ", " + _ref(len(toks)) + ")"
                toks.append(("k", lead, repr(lead)))
            if kept:
                expr = "_addr(" + expr + ", " + _ref(len(toks)) + ", None, None, True)"
                toks.append(("k", kept, repr(kept)))
            if unit == -1.0:
                expr = "-" + expr
        _store(b, state, u, d, expr, p, toks, prefix, cond, names, comments, "ᵀ")


@functools.cache
def _math_partial(p: str) -> tuple[str, tuple[str, ...]]:
    """A partial's cotangent expression over slots {0} = λ_d, {2}, ... and the values it
    reads (``A``, ``X``, ``Y``), in slot order."""
    slots, reads = {"G": "{0}"}, []
    for key in "AXY":
        if "{" + key + "}" in p:   # only the values the partial reads
            slots[key] = _ref(2 + len(reads))
            reads.append(key)
    return _fmt(p, **slots), tuple(reads)


def _later(expr: str, p: str) -> str:
    """``λ_u + ct`` (``λ_u ± λ_d`` for a unit partial)."""
    if p == "+":
        return "{1} + {0}"
    if p == "-":
        return "{1} - {0}"
    return "{1} + " + expr


def _pull(b: _Builder, s: Step, kernel, state: list, names: list[str], cond: bool, name: str,
          comments: bool, index=None) -> None:
    d = s.node
    targets = tuple(dict.fromkeys(u for _, u in s.diff))
    if cond:
        _guard(b, d, targets, state, names)
    pull = Pull(s, kernel, targets, name, index)
    toks: list = [("l", d, False), ("k", pull, f"pull_{names[d]}"), ("v", d, "n", False)]
    argfmt = []
    for a in s.args:
        argfmt.append(_ref(len(toks)))
        toks.append(("v", a, "n", False))
    lams = []
    for u in targets:
        if state[u] == _ZERO:
            lams.append("None")
        else:
            lams.append(_ref(len(toks)))
            toks.append(("l", u, False))
    outs = []
    for u in targets:
        outs.append(_ref(len(toks)))
        toks.append(("l", u, True))
        state[u] = max(state[u], _MAYBE)
    line = ", ".join(outs) + ("," if len(outs) == 1 else "") + " = _pull({1}, B, {0}, {2}, " \
        + _tuple(argfmt) + ", " + _tuple(lams) + ")"
    comment = ""
    if comments:
        edges = ", ".join(f"λ_{names[u]}" for u in targets)
        comment = f"∂L/∂z = 0:  {edges} += (∂{names[d]}/∂·)ᵀ λ_{names[d]}  ({s.prim.name})"
    b.add(("if {0} is not None: " if cond else "") + line, tuple(toks), comment)


def _store(b, state: list, u: int, d: int, expr: str, p, toks: list, prefix: str, cond: bool,
           names: list, comments: bool, transpose: str) -> None:
    """Emit ``λ_u += (∂z_d/∂z_u)ᵀ λ_d`` as an assignment (λ_u still zero), an accumulation
    (λ_u set) or a conditional one (λ_u set on some paths only), commented with the equation."""
    if state[u] == _ZERO:
        line = "{1} = " + expr
    elif state[u] == _SET:
        line = "{1} = " + _later(expr, p)
    else:
        line = "{1} = " + expr + " if {1} is None else " + _later(expr, p)
    comment = (f"∂L/∂z_{names[u]} = 0:  λ_{names[u]} += (∂{names[d]}/∂{names[u]}){transpose} "
               f"λ_{names[d]}") if comments else ""
    b.add(prefix + line, tuple(toks), comment)
    if not cond:
        state[u] = _SET
