"""The compiled tangent pass at run time: forward mode as generated straight-line code.

:func:`~lagrangeprop.compile.tangents.tangent_statements` writes ``ż_d = Σ_u (∂f_d/∂z_u) ż_u``
per constraint, :func:`build_tangent` compiles its chunks as the forward's are compiled
(:mod:`~lagrangeprop.compile.source`; chunks of the same shape share one function), and
:func:`tangent` runs them, a cyclic block between chunks solved by ``blocks.solve_tangent``
as the interpreter does. One compiled pass per set of inputs that carry a tangent (a zero
tangent is known zero when the code is written), cached on the schedule's generated code.

Errors are the interpreter's own: where Python's float arithmetic raises, or any tangent comes
out NaN or inf, :func:`tangent` returns ``None`` and
:func:`~lagrangeprop.solve.tangent.tangent_pass` runs the interpreter, which is the reference
and reports the node.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: lp.sin(x) * x, x=0.5).solve(x=0.5)
>>> sched = sol.schedule
>>> zdot = tangent(sched, sol._vals, sol._states, sol.options, {sched.index["x"]: np.array(1.0)})
>>> bool(zdot[sched.output] == np.cos(0.5) * 0.5 + np.sin(0.5))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import blocks
from ..compile.codegen import _is_math
from ..compile.plan import _float_nodes
from ..compile.schedule import Block, Schedule, Step
from ..compile.source import _CACHE, _compile, render_chunk
from ..compile.source import tested as _tested
from ..compile.statements import BlockRun
from ..compile.tangents import tangent_statements
from ..errors import LagrangePropError
from ..options import SolveOptions
from .compiled import NAMESPACE as _BASE
from .compiled import generated
from .finite import all_finite
from .walk import ForwardLinear, drop_dead

__all__ = ["NAMESPACE", "EAGER", "CompiledTangent", "build_tangent", "tangent"]


# Σ_u (∂op_d/∂z_u) ż_u over the differentiable arguments, in their order: the interpreter's
# step_tangent (solve.tangent) on the generated code's locals (tans: one per step.diff entry)
def _push(step: Step, ans, args: list, tans: tuple):
    total = None
    jvp, params = step.prim.jvp, step.params
    for (pos, _), t in zip(step.diff, tans):
        if t is None:
            continue
        r = jvp(pos, t, ans, args, params)
        if r is not None:
            total = r if total is None else total + r
    return total


NAMESPACE: dict = dict(_BASE, _push=_push)


class _Blocks(ForwardLinear):
    """A cyclic block between chunks: ``A_SS ż_S = b_S`` as the interpreter's ``_Tangent``."""

    __slots__ = ()

    def push(self, step: Step, ans, members):
        tans = tuple(None if u in members else self.seq[u] for _, u in step.diff)
        return _push(step, ans, [self.vals[a] for a in step.args], tans)

    def solve(self, block: Block, rhs: list, state) -> list:
        return blocks.solve_tangent(block, self.vals, rhs, state, self.opts)


@dataclass(eq=False)
class CompiledTangent:
    """A compiled tangent pass: ``(function, I, K)`` per chunk, a Block between, the tangents
    no chunk tests itself (``scan``) and whether it runs on Python floats only (``plain``)."""

    runs: list
    scan: list[int]
    plain: bool


def build_tangent(runs: list, sched: Schedule, seeded) -> CompiledTangent:
    """Compile the tangent chunks ``runs`` (:func:`~lagrangeprop.compile.tangents.tangent_statements`)
    as ``compile.source.build`` compiles the forward's: each chunk tests the scalar tangents it writes."""
    key = id(NAMESPACE)
    out: list = []
    todo: dict[str, None] = {}
    covered: set[int] = set()
    written: dict[int, None] = dict.fromkeys(seeded)
    plain = True
    for run in runs:
        if run.__class__ is BlockRun:
            out.append(run.block)
            written.update(dict.fromkeys(run.block.nodes))
            plain = False
            continue
        covered.update(_tested(run, sched, "lams"))
        for fmt, toks, _ in run.statements:
            plain = plain and "_push(" not in fmt
            written.update((t[1], None) for t in toks if t[0] == "l" and t[2])
        body, ids, objs = render_chunk(run, None, sched, "lams")
        out.append((body, tuple(ids), tuple(objs)))
        if (key, body) not in _CACHE:
            todo[body] = None
    _compile(todo, key, NAMESPACE)
    out = [(_CACHE[key, r[0]], r[1], r[2]) if r.__class__ is tuple else r for r in out]
    return CompiledTangent(out, [i for i in written if i not in covered], plain)


_KEEP = 8   # compiled tangent passes per schedule (one per set of seeded inputs)
_FLOAT_ERRORS = (ArithmeticError, ValueError)   # what Python floats raise where numpy returns inf/NaN
# A small program whose steps are mostly scalar math generates its pass on the first call (up
# to EAGER schedule items). Otherwise the first pass runs the interpreter: writing and compiling a large
# program's code costs about one interpreted pass (chain 10⁴: ~0.2 s each), and a pass of array
# ops only calls the same jvp rules either way, so a one-shot lp.jvp (which traces afresh) would
# pay for nothing; a second pass over the schedule (Solution.jvp, hvp in an optimizer) generates it.
EAGER = 2000
_SEEN = object()


def _eager(sched: Schedule) -> bool:
    if len(sched.steps) > EAGER:
        return False
    floats = _float_nodes(sched)
    steps = [s for s in sched.steps if s.__class__ is Step]
    return 2 * sum(_is_math(sched, s, floats) for s in steps) >= len(steps) > 0


def _compiled(sched: Schedule, seeded: tuple) -> CompiledTangent | None:
    g = generated(sched)
    cache = g.tangents
    t = cache.get(seeded)
    if t is None or t is _SEEN:
        if len(cache) >= _KEEP:
            cache.clear()
        if t is None and not _eager(sched):
            cache[seeded] = _SEEN
            return None
        t = cache[seeded] = build_tangent(tangent_statements(sched, seeded), sched, seeded)
    return t


# A ż = -(∂c/∂x) ẋ: the generated forward substitution, A_SS ż_S = b_S on a block between chunks
def tangent(sched: Schedule, vals: list, states: dict, opts: SolveOptions, xdot: dict,
            live: frozenset | None = None) -> list | None:
    """Tangents ``ż`` of every node (``None`` = zero) for input tangents ``xdot`` (id -> array),
    as :func:`~lagrangeprop.solve.tangent.tangent_pass`'s interpreter computes them; ``None``
    when the interpreter must run (Python float error, a non-finite tangent, a seeded non-input,
    the first pass over a large program: :data:`EAGER`); ``live``: only these nodes' tangents
    are kept and must be finite (None: every node)."""
    roles = sched.roles
    if any(roles[i] != "input" for i in xdot):
        return None
    seeds = {i: np.asarray(t, dtype=np.float64) for i, t in xdot.items()}
    seeded = tuple(sorted(seeds))
    t = _compiled(sched, seeded)
    if t is None:
        return None
    L: list = [None] * len(sched.names)
    for i, a in seeds.items():
        L[i] = float(a) if a.shape == () else a     # Python floats for the generated scalar code
    finite = True
    try:
        if t.plain:
            for fn, ids, objs in t.runs:
                if fn(vals, L, ids, objs, None) is False:
                    finite = False
        else:
            bp = _Blocks(vals, states, opts, L)
            with np.errstate(all="ignore"):
                for run in t.runs:
                    if run.__class__ is tuple:
                        if run[0](vals, L, run[1], run[2], None) is False:
                            finite = False
                    else:
                        bp.block(run)
    except LagrangePropError:
        raise
    except _FLOAT_ERRORS:
        return None
    ok = finite and all_finite([L[i] for i in t.scan])
    if live is not None and len(live) < len(L):    # nodes the output does not depend on
        drop_dead(L, live)
        ok = ok or all_finite([v for v in L if v is not None])
    if not ok:
        return None
    for i, a in seeds.items():
        L[i] = a
    return L
