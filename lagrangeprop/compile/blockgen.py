"""Generated code for a small cyclic block: its residual ``c_S`` and dense Jacobian ``A_SS`` (issue 14).

A block whose members are all scalar constraints of the :data:`~lagrangeprop.compile.statements.MATH`
ops (Sellar's disciplines, a scalar fixed point, ``w³ + w - x = 0``, the diode
``1e-15·exp(w/Vt) - x = 0``) is written as three straight-line Python functions over floats, in
the block's vector layout (member ``k`` is entry ``k``):

- ``residual(V, z)``: the states taken from ``z``, the intermediates evaluated from them in their
  order (forward substitution, as :mod:`lagrangeprop.blocks.eliminate` does), then
  ``c_d = z_d - f_d(z_pa(d))`` (explicit) or ``c_d = r_d(z_pa(d))`` (residual) for the states (the
  intermediates' entries of ``c_S`` are exactly 0). Returns the members' values, ``c_T`` on the
  states and the op outputs ``a``.
- ``jacobian(V, z, a)``: ``A_SS = ∂c_S/∂z_S`` as a flat row-major list, ``δ_dk - ∂f_d/∂z_k``
  for an explicit row, ``∂r_d/∂z_k`` for a residual row; each partial is :data:`MATH`'s rule
  (the registry's, with ``math`` for numpy) at a unit cotangent.
- ``reduced(V, z, a)``: the Schur complement ``S = ∂g_T/∂z_T`` on the states (the reduced
  Jacobian Newton iterates with), by forward tangents through the intermediates.
- ``start(V, z, free)``: the start of :func:`lagrangeprop.blocks.iteration.initial`: every
  ``free`` explicit member (no guess) evaluated once in block order, kept when finite.
- ``tsweep(V, z, a, b, lt)``: ``A_SSᵀ λ = b`` by elimination: given the states' multipliers
  ``lt``, the intermediates' by a reverse sweep (``λ_m = b_m - Σ_k A'_km λ_k``, ``A'`` = ``A_SS``
  less its identity), and the states' equations' residuals ``F_t = (Aᵀλ - b)_t``; ``F`` is affine
  in ``lt`` with matrix ``Sᵀ`` (the Schur complement's transpose), so ``m + 2`` sweeps solve it.
- ``pullback(L, V, z, a, l)``: the block's multipliers ``l`` (floats, one per member) pulled back
  to the arguments outside the block, ``L[u] += sign·(∂f_d/∂z_u) λ_d`` (``sign`` -1 for a residual
  member), in the order and with the formulas of :func:`lagrangeprop.solve.local.accumulate`.

``V`` holds the values of the block's outside operands (inputs, constants, earlier nodes), read
as floats. Python's float arithmetic raises where numpy returns NaN or inf (``math.sqrt(-1.0)``,
``1.0 / 0.0``): the caller treats that as a non-finite point. :mod:`lagrangeprop.blocks.dense`
runs the functions; which blocks qualify is :func:`generable`.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); w = prog.variable("w")
>>> _ = prog.residual(w, w * w * w + w - x); _ = prog.output(w * 1.0, name="o")
>>> sched = prog.compile(); blk = sched.blocks[0]
>>> vals = [None] * len(sched.names); vals[sched.index["x"]] = 2.0
>>> blk.names
['w', 'w.multiply_2', 'w.multiply', 'w.add']
>>> generable(blk, vals)
True
>>> code = generate_block(blk, [0], [1, 2, 3])      # the state w, three intermediates
>>> z, c, a = code.residual(vals, [1.0, 0.0, 0.0, 0.0])
>>> z, c                                           # at the root w = 1: c_w = 0
((1.0, 1.0, 1.0, 2.0), (0.0,))
>>> code.jacobian(vals, z, a)[:4]    # the row of w: c_w = add_2 - x, so ∂c_w/∂(w, ..., add_2)
[0.0, 0.0, 0.0, 1.0]
>>> code.reduced(vals, z, a)         # ∂(w³ + w - x)/∂w = 3w² + 1
[4.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np

from .floats import pow_dbase, pow_dexp, sech2
from .codegen import _BUILTIN
from .schedule import Block, Step
from .statements import MATH, _fmt

__all__ = ["BlockCode", "generable", "generate_block"]


@dataclass(eq=False)
class BlockCode:
    """The generated functions of one block (module docstring) and their source text."""

    residual: Callable
    jacobian: Callable
    reduced: Callable
    start: Callable
    tsweep: Callable
    pullback: Callable | None     # None: an argument without an elementwise partial (generic path)
    states: tuple[int, ...]
    text: str


_NAMESPACE = {"_pow": math.pow, "_pow_dbase": pow_dbase, "_pow_dexp": pow_dexp, "_exp": math.exp,
              "_log": math.log, "_log1p": math.log1p, "_sqrt": math.sqrt, "_sin": math.sin, "_cos": math.cos,
              "_tan": math.tan, "_tanh": math.tanh, "_sech2": sech2, "_nan": math.nan,
              "_FLOAT_ERRORS": (ArithmeticError, ValueError)}


def _scalar_float(v) -> bool:
    """A value the generated code may read as a Python float without changing its arithmetic."""
    if isinstance(v, float):
        return True
    if isinstance(v, np.ndarray) or isinstance(v, np.generic):
        return v.shape == () and v.dtype == np.float64
    return isinstance(v, int) and not isinstance(v, bool)


def _is_math(s: Step) -> bool:
    p = s.prim
    return (p.name in MATH and not p.user and not s.params and p is _BUILTIN[p.name]
            and len(s.args) == len(MATH[p.name][1]))


def _is_raw(block: Block, s: Step) -> bool:
    """An elementwise built-in with its bare numpy function and a partial for every block operand."""
    p = s.prim
    if p.user or s.params or p.nondiff or p.raw_fn is None or p.raw_partials is None:
        return False
    return len(p.raw_partials) == len(s.args) and all(
        p.raw_partials[i] is not None for i, u in enumerate(s.args) if u in block.position)


def generable(block: Block, vals: list) -> bool:
    """Whether every member is a scalar constraint of a built-in :data:`MATH` op or of an elementwise
    built-in with partial rules (``raw_fn``, ``raw_partials``: called from the registry), whose
    outside operands (in ``vals``) are float64 scalars: the blocks :func:`generate_block` writes."""
    for s, shape in zip(block.steps, block.shapes):
        if shape != () or not (_is_math(s) or _is_raw(block, s)):
            return False
        for u in s.args:
            if u not in block.position and not _scalar_float(vals[u]):
                return False
    return True


class _Names:
    """Locals of the generated functions: ``z{k}`` / ``a{k}`` per member, ``o{j}`` per outside node."""

    def __init__(self, block: Block, objs: dict) -> None:
        self.block = block
        self.outside: dict[int, str] = {}
        self.objs = objs        # registry functions the code calls, by local name (shared)

    def call(self, fn) -> str:
        for name, f in self.objs.items():
            if f is fn:
                return name
        name = f"_k{len(self.objs)}"
        self.objs[name] = fn
        return name

    def of(self, u: int) -> str:
        k = self.block.position.get(u)
        if k is not None:
            return f"z{k}"
        if u not in self.outside:
            self.outside[u] = f"o{len(self.outside)}"
        return self.outside[u]

    def loads(self) -> list[str]:
        return [f"    {name} = float(V[{u}])" for u, name in self.outside.items()]


def _value(names: _Names, k: int) -> str:
    """Member ``k``'s op output ``f_d(z_pa(d))`` as a float expression."""
    s = names.block.steps[k]
    args = [names.of(u) for u in s.args]
    if not _is_math(s):      # the registry's bare numpy function on floats
        return f"float({names.call(s.prim.raw_fn)}({', '.join(args)}))"
    return _fmt(MATH[s.prim.name][0], X=args[0], Y=args[-1])


def _partial(names: _Names, k: int, pos: int) -> str:
    """``∂f_d/∂z_u`` of member ``k``'s op for the argument at ``pos`` (a unit cotangent)."""
    s = names.block.steps[k]
    args = [names.of(u) for u in s.args]
    if not _is_math(s):      # the registry's elementwise partial(ans, *args)
        return f"float({names.call(s.prim.raw_partials[pos])}(a{k}, {', '.join(args)}))"
    rule = MATH[s.prim.name][1][pos]
    if rule in ("+", "-"):
        return "1.0" if rule == "+" else "-1.0"
    return "(" + _fmt(rule, G="1.0", X=args[0], Y=args[-1], A=f"a{k}") + ")"


def _neg(e: str) -> str:
    return {"1.0": "-1.0", "-1.0": "1.0"}.get(e, "-" + e)


def _times(p: str, t: str) -> str:
    """The term ``p · t`` (``t = 1.0``: ``p``)."""
    return p if t == "1.0" else f"{p} * {t}"


def _unpack(n: int, what: str) -> str:
    return f"    {', '.join(f'{what}{k}' for k in range(n))}{',' if n == 1 else ''} = {what}"


def _tuple(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _residual_text(block: Block, states: list[int], inter: list[int], objs: dict) -> str:
    # c_d = z_d - f_d(z_pa(d)) | r_d(z_pa(d)) on the states; the intermediates z_d = f_d(...) first
    names = _Names(block, objs)
    body = [f"    z{k} = z[{k}]" for k in states]
    for k in inter:
        body.append(f"    a{k} = {_value(names, k)}")
        body.append(f"    z{k} = a{k}")
    for k in states:
        body.append(f"    a{k} = {_value(names, k)}")
    n = len(block.steps)
    res = [f"a{k}" if block.steps[k].residual else f"z{k} - a{k}" for k in states]
    ret = (f"    return {_tuple([f'z{k}' for k in range(n)])}, {_tuple(res)}, "
           f"{_tuple([f'a{k}' for k in range(n)])}")
    return "\n".join(["def residual(V, z):", *names.loads(), *body, ret])


def _jacobian_text(block: Block, objs: dict) -> str:
    # A_SS = ∂c_S/∂z_S: δ_dk - ∂f_d/∂z_k (explicit rows), ∂r_d/∂z_k (residual rows)
    names = _Names(block, objs)
    n = len(block.steps)
    entries: dict[tuple[int, int], list[str]] = {}
    for k, s in enumerate(block.steps):
        if not s.residual:
            entries.setdefault((k, k), []).append("1.0")
        for pos, u in enumerate(s.args):
            m = block.position.get(u)
            if m is None:
                continue
            d = _partial(names, k, pos)
            entries.setdefault((k, m), []).append(d if s.residual else _neg(d))
    flat = [" + ".join(entries.get((r, c), ["0.0"])) for r in range(n) for c in range(n)]
    return "\n".join(["def jacobian(V, z, a):", *names.loads(), _unpack(n, "z"), _unpack(n, "a"),
                      "    return [" + ", ".join(flat) + "]"])


def _reduced_text(block: Block, states: list[int], inter: list[int], objs: dict) -> str:
    # S = ∂g_T/∂z_T = A_TT - A_TI A_II⁻¹ A_IT, column by column: the tangent ż_T = e_j carried
    # through the intermediates in their order (ż_I = A_II⁻¹(-A_IT e_j)), then the states' rows
    names = _Names(block, objs)
    steps, pos = block.steps, block.position
    body, out = [], []

    def terms(k: int, tan: dict) -> list[str]:
        return [_times(_partial(names, k, p), tan[pos[u]]) for p, u in enumerate(steps[k].args)
                if pos.get(u) in tan]
    for j, t in enumerate(states):
        tan = {t: "1.0"}
        for k in inter:
            ts = terms(k, tan)
            if ts:
                body.append(f"    d{k}_{j} = " + " + ".join(ts))
                tan[k] = f"d{k}_{j}"
        for i, k in enumerate(states):
            ts = terms(k, tan)
            if steps[k].residual:
                e = " + ".join(ts) if ts else "0.0"
            else:
                e = ("1.0" if k == t else "0.0") + (" - (" + " + ".join(ts) + ")" if ts else "")
            body.append(f"    s{i}_{j} = {e}")
            out.append((i, j))
    n = len(steps)
    flat = [f"s{i}_{j}" for i, j in sorted(out)]
    return "\n".join(["def reduced(V, z, a):", *names.loads(), _unpack(n, "z"), _unpack(n, "a"), *body,
                      "    return [" + ", ".join(flat) + "]"])


def _start_text(block: Block, objs: dict) -> str:
    # blocks.iteration.initial: each free explicit member f_d(...) once in block order, if finite
    names = _Names(block, objs)
    n = len(block.steps)
    body = [_unpack(n, "z")]
    for k, s in enumerate(block.steps):
        if s.residual:
            continue
        body += [f"    if free[{k}]:", "        try:", f"            t = {_value(names, k)}",
                 "        except _FLOAT_ERRORS:", "            t = _nan",
                 "        if t - t == 0.0:", f"            z{k} = t"]
    ret = f"    return [{', '.join(f'z{k}' for k in range(n))}]"
    return "\n".join(["def start(V, z, free):", *names.loads(), *body, ret])


def _tsweep_text(block: Block, states: list[int], inter: list[int], objs: dict) -> str:
    # Aᵀλ = b: λ_m = b_m - Σ_k A'_km λ_k for the intermediates in reverse order (their consumers are
    # later intermediates or states), then F_t = [t explicit] λ_t + Σ_k A'_kt λ_k - b_t on the states
    names = _Names(block, objs)
    steps, pos = block.steps, block.position
    n = len(steps)

    def terms(m: int) -> list[str]:      # -A'_km λ_k: +∂f_k/∂z_m λ_k (explicit k), -∂r_k/∂z_m λ_k
        out = []
        for k, s in enumerate(steps):
            for p, u in enumerate(s.args):
                if pos.get(u) == m:
                    out.append(("- " if s.residual else "+ ") + _times(_partial(names, k, p), f"l{k}"))
        return out
    body = [f"    l{t} = lt[{i}]" for i, t in enumerate(states)]
    for m in reversed(inter):
        body.append(f"    l{m} = b{m} " + " ".join(terms(m)))
    res = []
    for t in states:
        own = "" if steps[t].residual else f"l{t} "
        flipped = [("+ " if e.startswith("- ") else "- ") + e[2:] for e in terms(t)]
        res.append(f"{own or '0.0 '}{' '.join(flipped)} - b{t}")
    return "\n".join(["def tsweep(V, z, a, b, lt):", *names.loads(), _unpack(n, "z"), _unpack(n, "a"),
                      _unpack(n, "b"), *body,
                      f"    return [{', '.join(f'l{k}' for k in range(n))}], [{', '.join(res)}]"])


def _pull_term(names: _Names, k: int, pos: int) -> str:
    """``(∂f_d/∂z_u)·λ_d`` of member ``k`` for its argument at ``pos``, as the VJP rule writes it."""
    s = names.block.steps[k]
    args = [names.of(u) for u in s.args]
    if not _is_math(s):      # the registry's elementwise partial(ans, *args) times the cotangent
        return f"l{k} * float({names.call(s.prim.raw_partials[pos])}(a{k}, {', '.join(args)}))"
    rule = MATH[s.prim.name][1][pos]
    if rule in ("+", "-"):
        return f"l{k}" if rule == "+" else f"-l{k}"
    return _fmt(rule, G=f"l{k}", X=args[0], Y=args[-1], A=f"a{k}")


def _pullback_text(block: Block, objs: dict) -> str:
    # λ_u += sign·(∂f_d/∂z_u)ᵀ λ_d for the arguments u outside S (solve.local.accumulate's order)
    names = _Names(block, objs)
    n = len(block.steps)
    body = []
    for k, s in enumerate(block.steps):
        for pos, u in s.diff:
            if u in block.position:
                continue
            if not _is_math(s) and s.prim.raw_partials[pos] is None:
                return ""        # no elementwise partial for this argument: the generic pull-back
            term = _pull_term(names, k, pos)
            if s.residual:
                term = {f"l{k}": f"-l{k}", f"-l{k}": f"l{k}"}.get(term, f"-({term})")
            body += [f"    t = L[{u}]", f"    c = {term}", f"    L[{u}] = c if t is None else t + c"]
    return "\n".join(["def pullback(L, V, z, a, l):", *names.loads(), _unpack(n, "z"), _unpack(n, "a"),
                      _unpack(n, "l"), *body, "    return None"])


def generate_block(block: Block, states: list[int], inter: list[int]) -> BlockCode:
    """The generated functions of a :func:`generable` block; ``states`` and ``inter`` (the
    intermediates, in evaluation order) are member positions (:func:`lagrangeprop.blocks.eliminate.split_members`)."""
    objs: dict = {}
    text = "\n\n".join([_residual_text(block, states, inter, objs), _jacobian_text(block, objs),
                        _reduced_text(block, states, inter, objs), _start_text(block, objs),
                        _tsweep_text(block, states, inter, objs), _pullback_text(block, objs)]) + "\n"
    ns = dict(_NAMESPACE, **objs)
    exec(compile(text, f"<lagrangeprop block {', '.join(block.names[:4])}>", "exec"), ns)   # noqa: S102
    return BlockCode(ns["residual"], ns["jacobian"], ns["reduced"], ns["start"], ns["tsweep"], ns.get("pullback"),
                     tuple(states), text)
