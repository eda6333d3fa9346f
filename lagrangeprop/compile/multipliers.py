"""The multiplier statements: ``Aᵀλ = e_o·seed`` by back-substitution, one per edge.

For each constraint ``d`` in reverse topological order and each differentiable argument
``u``, ``λ_u += (∂f_d/∂z_u)ᵀ λ_d``: a Python float expression for the ops of
:data:`~lagrangeprop.compile.statements.MATH`, the plan's raw-kernel pieces for elementwise
ops on arrays, and a call of the op's registry rules (``_pull``) for everything else. Whether
``λ_u`` is still identically zero is known here, from the graph alone (``_ZERO``, ``_MAYBE``,
``_SET``), so the first contribution is an assignment and no ``None`` test is written where
none is needed. Two forms fold edges with the interpreters' numbers: ``x * x`` computes its
cotangent once and adds it twice, and a run of entries ``x[i]`` of one array scatters all its
multipliers into ``λ_x`` in one call (``_gather``).

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

from ..rules import registry
from .plan import BlockItem, Plan, RawKernel
from .schedule import Schedule, Step
from .statements import MATH, Pull, _Builder, _fmt, _int_index, _ref, _tuple

__all__ = ["adjoint_statements"]

_ZERO, _MAYBE, _SET = 0, 1, 2

# built-in ops whose vjp rule returns an array for every differentiable argument, never None
# (rules.reductions.reduction's, rules.contractions._matmul_vjp, rules.structure._getitem_vjp)
_NEVER_ZERO = ("sum", "mean", "logsumexp", "matmul", "getitem")
_BUILTIN = {name: registry.REGISTRY.get(name) for name in _NEVER_ZERO}


# Aᵀλ = e_o·seed by back-substitution in reverse topological order (autograd's backward_pass):
# λ_u += (∂f_d/∂z_u)ᵀ λ_d, one statement per edge u -> d
def adjoint_statements(sched: Schedule, plan: Plan, ismath: set[int], names: list[str], comments: bool,
                       sink=None) -> list:
    b = _Builder(sink)
    state = [_ZERO] * len(sched.names)
    state[sched.output] = _SET
    items = plan.items[::-1]
    skip = -1
    for k, item in enumerate(items):
        if k <= skip:
            continue   # folded into the previous statement (_gather)
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
            run = _entries(sched, items, k, state) if index is not None else [s]
            if len(run) > 1:
                _gather(b, run, state, names, sched.names, comments)
                skip = k + len(run) - 1
            else:
                _pull(b, s, kernel, state, names, cond, sched.names[d], comments, index)
    return b.finish()


def _entries(sched: Schedule, items: list, k: int, state: list) -> list[Step]:
    """The run of built-in ``getitem`` steps by ints starting at ``items[k]`` that read the same
    array (entries of it, consecutive in the back-substitution), with distinct indices: their
    scatters into ``λ_x`` fold into one (:func:`_gather`). Steps whose multiplier is zero
    extend the run (they write nothing)."""
    first = items[k].step
    x, run = first.args[0], [first]
    shape = sched.shapes[x]
    seen = {_entry(first.params["index"], shape)}
    for item in items[k + 1:]:
        if item.__class__ is BlockItem or item.kernel is not None:
            break
        s = item.step
        if not s.diff or s.args[0] != x or _int_index(s, sched.shapes) is None:
            break
        entry = _entry(s.params["index"], shape)
        if entry in seen:     # the same entry (x[2] and x[-1] of a length-3 x): not distinct
            break
        seen.add(entry)
        run.append(s)
    while len(run) > 1 and state[run[-1].node] == _ZERO:
        run.pop()
    return run


def _entry(index, shape: tuple) -> tuple[int, ...]:
    """The entry an int index selects, as non-negative ints (``-1`` and ``n - 1`` are one entry)."""
    ints = index if index.__class__ is tuple else (index,)
    return tuple(i % n for i, n in zip(ints, shape))


# λ_x += Σ_k (∂x[i_k]/∂x)ᵀ λ_{d_k} for a run of entries x[i_k] with distinct indices: one scatter
# of all the λ_{d_k} (the same numbers as one scatter each, solve.kernels.gather_entries)
def _gather(b: _Builder, run: list[Step], state: list, names: list[str], nodes: list, comments: bool) -> None:
    x = run[0].args[0]
    pulls = tuple(Pull(s, None, (x,), nodes[s.node], s.params["index"]) for s in run)
    prev = "None" if state[x] == _ZERO else "{0}"
    toks: list = [("l", x, True if state[x] == _ZERO else "rw"), ("k", pulls, f"entries_{names[run[0].node]}"),
                  ("v", x, "n", False)]
    gs = []
    for s in run:
        if state[s.node] == _ZERO:
            gs.append("None")
        else:
            gs.append(_ref(len(toks)))
            toks.append(("l", s.node, False))
    vals = []
    for s in run:
        vals.append(_ref(len(toks)))
        toks.append(("v", s.node, "n", False))
    state[x] = max(state[x], _MAYBE)
    comment = ""
    if comments:
        comment = (f"∂L/∂z = 0:  λ_{names[x]} += " + " + ".join(f"(∂{names[s.node]}/∂{names[x]})ᵀ λ_{names[s.node]}"
                                                            for s in run) + "  (getitem)")
    b.add("{0} = _gather({1}, {2}, " + _tuple(gs) + ", " + _tuple(vals) + ", " + prev + ")", tuple(toks), comment)


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
    # the same cotangent g·z_f for the same u twice (x * x): written once (_store's ``twice``)
    same = [(rp.arg, rp.unit, rp.reduce, rp.factor) if rp.unit is None and rp.factor >= 0 else k
            for k, rp in enumerate(kernel.partials)]
    for k, (u, partial, unit, red, factor) in enumerate(kernel.partials):
        if k and same[k - 1] == same[k]:
            continue
        twice = k + 1 < len(same) and same[k + 1] == same[k]
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
        _store(b, state, u, d, expr, p, toks, prefix, cond, names, comments, "ᵀ", twice)


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
    # a built-in rule that always returns a cotangent sets λ_u for certain (no None tests after)
    known = not cond and s.prim.name in _NEVER_ZERO and s.prim is _BUILTIN[s.prim.name]
    for u in targets:
        outs.append(_ref(len(toks)))
        toks.append(("l", u, True))
        state[u] = _SET if known else max(state[u], _MAYBE)
    line = ", ".join(outs) + ("," if len(outs) == 1 else "") + " = _pull({1}, B, {0}, {2}, " \
        + _tuple(argfmt) + ", " + _tuple(lams) + ")"
    comment = ""
    if comments:
        edges = ", ".join(f"λ_{names[u]}" for u in targets)
        comment = f"∂L/∂z = 0:  {edges} += (∂{names[d]}/∂·)ᵀ λ_{names[d]}  ({s.prim.name})"
    b.add(("if {0} is not None: " if cond else "") + line, tuple(toks), comment)


def _store(b, state: list, u: int, d: int, expr: str, p, toks: list, prefix: str, cond: bool,
           names: list, comments: bool, transpose: str, twice: bool = False) -> None:
    """Emit ``λ_u += (∂z_d/∂z_u)ᵀ λ_d`` as an assignment (λ_u still zero), an accumulation
    (λ_u set) or a conditional one (λ_u set on some paths only), commented with the equation.
    ``twice``: ``u`` fills two arguments with the same cotangent (``x * x``): it is computed
    once, ``λ_u = (λ_u + ct) + ct`` (or ``ct + ct``), the interpreters' two sums in their order."""
    if twice:
        expr, p = "(_t := " + expr + ") + _t", ""
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
