"""The compiled path's statements: a :class:`Schedule` as straight-line code (issue 14).

Every constraint becomes one statement of the forward pass and every edge ``u -> d`` one
statement of the multiplier back-substitution, in a small intermediate form that
:mod:`~lagrangeprop.compile.source` renders twice: with the graph's node names and the
equation each line satisfies (``prog.source()``, for reading), and with positional locals
(what runs: chunks of the same shape share one compiled function, so a 10⁵-node chain
compiles a handful of functions). A statement is ``(format, tokens, comment)``; its tokens
name a value (``("v", node, kind, written)``, kind ``"f"`` for a Python float, ``"n"`` for the
numpy value), a multiplier (``("l", node, written)``) or an object the code calls
(``("k", object, label)``).

- Scalar float64 constraints of the arithmetic and ``math`` ops (:data:`MATH`) are Python
  float expressions: ``+ - * /`` are the same IEEE operations numpy makes, ``math.exp`` and
  the like are within 1 ulp of numpy's.
- Every other constraint calls what the fast interpreter calls: the plan's kernel (bare
  numpy function, pooled ``out=`` buffers) or the op's registry entry
  (``prim.fn`` / ``prim.vjp`` through the solve layer's helpers), so every op works,
  user primitives and ops added later included.
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
from dataclasses import dataclass, field
from typing import Any

from ..rules import registry
from ..graph.trace import paused_gc
from .plan import FINITE_BATCH_MAX, BlockItem, Plan, RawKernel, StepItem, _float_nodes, _kernel, _pool
from .schedule import Block, Schedule, Step

__all__ = ["MATH", "CHUNK", "Chunk", "BlockRun", "Pull", "Code", "generate", "node_names"]

CHUNK = 200  # statements per generated function: bounded, so compile time is linear

# op: (the value z_d, the partial of each argument as a cotangent of G = λ_d). X, Y are the
# arguments and A the value z_d, as Python floats. A partial "+" / "-" is the cotangent ±G
# itself (λ_u += λ_d, λ_u -= λ_d). Each formula is the op's registry rule (rules/ufuncs.py)
# with math's functions for numpy's.
MATH: dict[str, tuple[str, tuple[str, ...]]] = {
    "add": ("{X} + {Y}", ("+", "+")),
    "subtract": ("{X} - {Y}", ("+", "-")),
    "multiply": ("{X} * {Y}", ("{G} * {Y}", "{G} * {X}")),
    "divide": ("{X} / {Y}", ("{G} * (1.0 / {Y})", "{G} * (-{X} / ({Y} * {Y}))")),
    "negative": ("-{X}", ("-",)),
    "identity": ("{X}", ("+",)),
    "square": ("{X} * {X}", ("{G} * (2.0 * {X})",)),
    "power": ("_pow({X}, {Y})", ("{G} * _pow_dbase({X}, {Y})", "{G} * _pow_dexp({A}, {X})")),
    "exp": ("_exp({X})", ("{G} * {A}",)),
    "log": ("_log({X})", ("{G} * (1.0 / {X})",)),
    "log1p": ("_log1p({X})", ("{G} * (1.0 / (1.0 + {X}))",)),
    "sqrt": ("_sqrt({X})", ("{G} * (0.5 / {A})",)),
    "sin": ("_sin({X})", ("{G} * _cos({X})",)),
    "cos": ("_cos({X})", ("{G} * -_sin({X})",)),
    "tan": ("_tan({X})", ("{G} * (1.0 / _cos({X}) ** 2)",)),
    "tanh": ("_tanh({X})", ("{G} * (1.0 - {A} * {A})",)),
}

Statement = tuple[str, tuple, str]


@dataclass(eq=False)
class Chunk:
    """Consecutive statements of one generated function."""

    statements: list[Statement] = field(default_factory=list)


@dataclass(eq=False)
class BlockRun:
    """A cyclic block between chunks: ``blocks.solve_forward`` / the block adjoint."""

    block: Block


@dataclass(eq=False)
class Pull:
    """What the adjoint helper needs for a constraint without a ``math`` form: its step,
    the plan's kernel (``None``: the op's rules) and its distinct differentiable arguments."""

    step: Step
    kernel: Any
    targets: tuple[int, ...]
    name: str                # the node's name (for error messages)


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


def _is_math(sched: Schedule, s: Step, floats: set[int]) -> bool:
    prim = s.prim
    return (prim.name in MATH and not prim.user and not s.params and not s.residual
            and prim is registry.REGISTRY.get(prim.name) and sched.shapes[s.node] == ()
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


def _ref(k: int) -> str:
    """The format slot of token ``k``."""
    return "{" + str(k) + "}"


def _tuple(items: list[str]) -> str:
    """A Python tuple display of ``items``."""
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _fmt(text: str, **slots: str) -> str:
    """``text`` with ``{X}``-style slots replaced (literal braces are not used)."""
    for k, v in slots.items():
        text = text.replace("{" + k + "}", v)
    return text


class _Builder:
    """Appends statements to chunks of at most :data:`CHUNK`, blocks between them."""

    def __init__(self) -> None:
        self.runs: list = []
        self.current: Chunk | None = None

    def add(self, fmt: str, toks: tuple, comment: str) -> None:
        if self.current is None or len(self.current.statements) >= CHUNK:
            self.current = Chunk()
            self.runs.append(self.current)
        self.current.statements.append((fmt, toks, comment))

    def block(self, block: Block) -> None:
        self.runs.append(BlockRun(block))
        self.current = None


# ∂L/∂λ_d = -c_d = 0: z_d = f_d(z_pa(d)) in topological order, one statement per constraint
def _forward(sched: Schedule, plan: Plan, ismath: set[int], names: list[str], comments: bool) -> list:
    b = _Builder()
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
        else:
            toks.append(("k", s, f"step_{names[d]}"))
            fmt = "{0} = _apply({1}, " + _tuple([_ref(k + 2) for k in range(len(args))]) + ")"
        b.add(fmt, tuple(toks) + tuple(("v", a, "n", False) for a in args), comment)
    return b.runs


_ZERO, _MAYBE, _SET = 0, 1, 2


# Aᵀλ = e_o·seed by back-substitution in reverse topological order (autograd's backward_pass):
# λ_u += (∂f_d/∂z_u)ᵀ λ_d, one statement per edge u -> d
def _adjoint(sched: Schedule, plan: Plan, ismath: set[int], names: list[str], comments: bool) -> list:
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
            _pull(b, s, kernel, state, names, cond, sched.names[d], comments)
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
        if state[u] == _ZERO:
            line = "{1} = " + expr
        elif state[u] == _SET:
            line = "{1} = " + _later(expr, p)
        else:
            line = "{1} = " + expr + " if {1} is None else " + _later(expr, p)
        comment = f"∂L/∂z_{names[u]} = 0:  λ_{names[u]} += (∂{names[d]}/∂{names[u]}) λ_{names[d]}" \
            if comments else ""
        b.add(prefix + line, tuple(toks), comment)
        if not cond:
            state[u] = _SET


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
        if red is not None:
            expr = "_reduce(" + expr + ", " + _ref(len(toks)) + (", True)" if unit == -1.0 else ", False)")
            toks.append(("k", red, repr(red)))
        if state[u] == _ZERO:
            line = "{1} = " + expr
        elif state[u] == _SET:
            line = "{1} = " + _later(expr, p)
        else:
            line = "{1} = " + expr + " if {1} is None else " + _later(expr, p)
        comment = f"∂L/∂z_{names[u]} = 0:  λ_{names[u]} += (∂{names[d]}/∂{names[u]})ᵀ λ_{names[d]}" \
            if comments else ""
        b.add(prefix + line, tuple(toks), comment)
        if not cond:
            state[u] = _SET


@functools.cache
def _math_value(op: str) -> str:
    """The statement ``{0} = f({1}, {2})`` of an op of :data:`MATH`."""
    return "{0} = " + _fmt(MATH[op][0], X="{1}", Y="{2}")


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
          comments: bool) -> None:
    d = s.node
    targets = tuple(dict.fromkeys(u for _, u in s.diff))
    if cond:
        _guard(b, d, targets, state, names)
    pull = Pull(s, kernel, targets, name)
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


def generate(sched: Schedule, use_math: bool = True, comments: bool = False) -> Code:
    """The generated forward and adjoint of ``sched`` (statements, not yet compiled);
    ``use_math=False`` keeps numpy's calls for scalars too (bitwise the interpreters');
    ``comments`` names the locals after the nodes and writes each line's equation."""
    with paused_gc():   # ~10 tuples per step: no gen-2 sweeps of a large graph
        floats = _float_nodes(sched)
        ismath = set()
        items: list = []
        for st in sched.steps:
            if st.__class__ is not Step:
                items.append(BlockItem(st, []))
            elif use_math and _is_math(sched, st, floats):
                ismath.add(st.node)
                items.append(StepItem(st, -1, None))
            else:
                items.append(StepItem(st, -1, _kernel(sched, st, floats)))
        steps = [it.step for it in items if it.__class__ is StepItem]
        plan = _pool(sched, Plan(items))   # per-step kernels' buffers (compile.buffers)
        names = node_names(sched.names) if comments else sched.names
        shapes = sched.shapes
        size = {s.node: math.prod(shapes[s.node]) for s in steps if shapes[s.node] != ()}
        return Code(forward=_forward(sched, plan, ismath, names, comments),
                    adjoint=_adjoint(sched, plan, ismath, names, comments),
                    names=names, plan=plan, scalar_ids=[s.node for s in steps if shapes[s.node] == ()],
                    small_ids=[i for i, n in size.items() if n <= FINITE_BATCH_MAX],
                    array_ids=[i for i, n in size.items() if n > FINITE_BATCH_MAX], math_steps=len(ismath))
