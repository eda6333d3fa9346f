"""The compiled path's statements: a :class:`Schedule` as straight-line code (issue 14).

Every constraint becomes one statement of the forward pass (here) and every edge ``u -> d``
one statement of the multiplier back-substitution (:mod:`~lagrangeprop.compile.multipliers`),
in the small form of :mod:`~lagrangeprop.compile.statements`, which
:mod:`~lagrangeprop.compile.source` renders twice: with the graph's node names and the
equation each line satisfies (``prog.source()``, for reading), and with positional locals
(what runs: chunks of the same shape share one compiled function, so a 10⁵-node chain
compiles a handful of functions).

- Scalar float64 constraints of the arithmetic and ``math`` ops (:data:`MATH`) are Python
  float expressions: ``+ - * /`` are the same IEEE operations numpy makes, ``math.exp`` and
  the like are within 1 ulp of numpy's.
- Every other constraint calls the plan's kernel (bare
  numpy function, pooled ``out=`` buffers) or the op's registry entry (``prim.fn`` /
  ``prim.vjp`` through the solve layer's helpers), so every op works, user primitives and
  ops added later included.
- A cyclic block is a call into the block solver (forward) and the block adjoint, between
  chunks.

Examples
--------
>>> import lagrangeprop as lp
>>> sched = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0).compile()
>>> code = generate(sched)
>>> [len(c.statements) for c in code.forward], [len(c.statements) for c in code.adjoint]
([2], [2])
"""

from __future__ import annotations

import functools
import keyword
import math
import re
from dataclasses import dataclass
from typing import Any

from ..rules import registry
from ..graph.trace import paused_gc
from .multipliers import adjoint_statements
from .plan import FINITE_BATCH_MAX, BlockItem, Plan, StepItem, _float_nodes, plan_of
from .schedule import Schedule, Step
from .statements import CHUNK, MATH, BlockRun, Chunk, Pull, _Builder, _fmt, _int_index, _ref, _tuple

__all__ = ["MATH", "CHUNK", "Chunk", "BlockRun", "Pull", "Code", "generate", "node_names"]


@dataclass(eq=False)
class Code:
    """The generated program: forward and adjoint runs, the local names, the finite-check
    lists (as :class:`~lagrangeprop.compile.plan.Plan`'s) and the buffer pool of the kernels."""

    forward: list
    adjoint: list
    names: list[str]
    plan: Plan
    scalar_ids: list[int]
    small_ids: list[int]
    array_ids: list[int]
    math_steps: int
    functions: Any = None      # compile.source.Compiled, filled by compile.source.build


_RESERVED = {"V", "L", "I", "K", "B", "np", "math", "seed"}


def node_names(names: list[str]) -> list[str]:
    """Python identifiers for the node names: sanitized, unique, clear of the helpers' names.

    Examples
    --------
    >>> node_names(["x", "y[0]", "y_0_", "lam_b", "1st", "for", "_k"])
    ['x', 'y_0_', 'y_0__1', 'z_lam_b', 'z_1st', 'z_for', 'z_k']
    """
    out, seen = [], set()
    for n in names:
        s = re.sub(r"\W", "_", str(n)) or "z"
        if s[0].isdigit() or keyword.iskeyword(s) or s in _RESERVED or s.startswith("lam_"):
            s = "z_" + s
        if s.startswith("_"):
            s = "z" + s
        base, k = s, 1
        while s in seen:
            s, k = f"{base}_{k}", k + 1
        seen.add(s)
        out.append(s)
    return out


# the built-in entries whose rules MATH restates (a replaced entry, e.g. a deliberately wrong
# rule under test, keeps the registry's own calls)
_BUILTIN = {name: registry.REGISTRY.get(name) for name in MATH}


def _is_math(sched: Schedule, s: Step, floats: set[int]) -> bool:
    prim = s.prim
    return (prim.name in MATH and not prim.user and not s.params and not s.residual
            and prim is _BUILTIN[prim.name] and sched.shapes[s.node] == ()
            and len(s.args) == len(MATH[prim.name][1])
            and all(sched.shapes[a] == () and a in floats for a in s.args))


def _label(sched: Schedule, consts: dict, names: list[str], n: int) -> str:
    """A node as comments show it: its name, or a scalar constant's value."""
    if n in consts and sched.shapes[n] == ():
        v = consts[n]
        try:
            return repr(float(v))
        except (TypeError, ValueError):
            pass
    return names[n]



@functools.cache
def _math_value(op: str) -> str:
    """The statement ``{0} = f({1}, {2})`` of an op of :data:`MATH`."""
    return "{0} = " + _fmt(MATH[op][0], X="{1}", Y="{2}")


# ∂L/∂λ_d = -c_d = 0: z_d = f_d(z_pa(d)) in topological order, one statement per constraint
def _forward(sched: Schedule, plan: Plan, ismath: set[int], names: list[str], comments: bool,
             sink=None) -> list:
    b = _Builder(sink)
    consts = dict(sched.constants)
    for item in plan.items:
        if item.__class__ is BlockItem:
            b.block(item.block)
            continue
        s, kernel = item.step, item.kernel
        d, args = s.node, s.args
        comment = ""
        if comments:
            call = f"{s.prim.name}({', '.join(_label(sched, consts, names, a) for a in args)})"
            comment = f"c_{names[d]} = 0:  {names[d]} = {call}"
        if d in ismath:
            b.add(_math_value(s.prim.name), (("v", d, "f", True), *[("v", a, "f", False) for a in args]),
                  comment)
            continue
        toks: list = [("v", d, "n", True)]
        argfmt = ", ".join(_ref(k + 2) for k in range(len(args)))
        if kernel is not None and kernel.buffer >= 0:
            toks += [("k", kernel.fn, "np." + kernel.fn.__name__), ("k", kernel.buffer, str(kernel.buffer))]
            fmt = "{0} = _pooled({1}, B, {2}, " + ", ".join(_ref(k + 3) for k in range(len(args))) + ")"
        elif kernel is not None:
            toks.append(("k", kernel.fn, "np." + kernel.fn.__name__))
            fmt = "{0} = {1}(" + argfmt + ")"
            if not s.prim.differentiable:
                fmt = "{0} = _value({1}(" + argfmt + "))"
        elif _int_index(s, sched.shapes) is not None:    # one entry of an array: rules.structure._getitem
            toks += [("k", s, f"step_{names[d]}"), ("k", s.params["index"], repr(s.params["index"]))]
            fmt = "{0} = _item({1}, {3}, {2})"
            toks.append(("v", args[0], "n", False))
            b.add(fmt, tuple(toks), comment)
            continue
        else:
            toks.append(("k", s, f"step_{names[d]}"))
            fmt = "{0} = _apply({1}, " + _tuple([_ref(k + 2) for k in range(len(args))]) + ")"
        b.add(fmt, tuple(toks) + tuple(("v", a, "n", False) for a in args), comment)
    return b.finish()


def generate(sched: Schedule, use_math: bool = True, comments: bool = False, sinks: tuple | None = None) -> Code:
    """The generated forward and adjoint of ``sched`` (statements, not yet compiled);
    ``use_math=False`` keeps numpy's calls for scalars too (bitwise the interpreters');
    ``comments`` names the locals after the nodes and writes each line's equation; ``sinks``
    (forward's, adjoint's) take each chunk as it is closed, their results standing in the runs
    for the chunks (``_Builder``; the compiled path renders them there, :class:`~.source.Linker`)."""
    with paused_gc():   # ~10 tuples per step: no gen-2 sweeps of a large graph
        # the plan's kernels and its buffer pool, shared with anything else that runs the
        # plan (a large result reuses the same memory whichever path runs)
        ismath = set()
        if use_math:
            floats = _float_nodes(sched)
            ismath = {s.node for s in sched.steps if s.__class__ is Step and _is_math(sched, s, floats)}
        plan = plan_of(sched, ismath)   # the Python-float statements call no kernel
        steps = [it.step for it in plan.items if it.__class__ is StepItem]
        names = node_names(sched.names) if comments else sched.names
        shapes = sched.shapes
        size = {s.node: math.prod(shapes[s.node]) for s in steps if shapes[s.node] != ()}
        fsink, asink = sinks or (None, None)
        return Code(forward=_forward(sched, plan, ismath, names, comments, fsink),
                    adjoint=adjoint_statements(sched, plan, ismath, names, comments, asink),
                    names=names, plan=plan, scalar_ids=[s.node for s in steps if shapes[s.node] == ()],
                    small_ids=[i for i, n in size.items() if n <= FINITE_BATCH_MAX],
                    array_ids=[i for i, n in size.items() if n > FINITE_BATCH_MAX], math_steps=len(ismath))
