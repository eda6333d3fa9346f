"""The cold path of a long traced program (issue 14, session 22): trace, compile, first solve.

What changed must leave every number and every name as it was: the tracer's probe skipping the
helper walk, the paused collector handing a large build to the oldest generation, chunks rendered
as they are generated, and no plan kernel for the Python-float steps. Each is held here against
an independent reference (closed forms, autograd, the interpreters, the unstreamed build).
"""

from __future__ import annotations

import gc
import math
import weakref

import autograd
import autograd.numpy as anp
import pytest

import lagrangeprop as lp
from lagrangeprop.compile.codegen import generate
from lagrangeprop.compile.plan import RawKernel, StepItem, plan_of
from lagrangeprop.compile.source import Linker, build
from lagrangeprop.graph.trace import PROMOTE, paused_gc
from lagrangeprop.graph.var import apply
from lagrangeprop.solve import compiled
from lagrangeprop.solve.compiled import NAMESPACE


def _chain(m, n):
    def f(x):
        v = x
        for k in range(n):
            r = k % 4
            v = m.sin(v) if r == 0 else v * 1.01 if r == 1 else v + 0.1 if r == 2 else m.tanh(v)
        return v
    return f


def _constants(prog):
    G = prog.graph
    return sorted(n for n in G if G.nodes[n]["role"] == "constant")


def test_a_long_chain_keeps_a_constant_per_use_and_autograds_gradient():
    n = 1001
    prog = lp.trace(_chain(lp, n), x=0.3)
    assert len(_constants(prog)) == 500 and sum(1 for v in prog.graph if prog.graph.nodes[v]["role"] == "defined") == n
    x = 0.7
    value, grad = lp.value_and_grad(_chain(lp, n))(x)
    assert value == pytest.approx(_chain(anp, n)(x), rel=1e-13)
    assert grad == pytest.approx(autograd.grad(_chain(anp, n))(x), rel=1e-12)


def test_a_helper_calling_apply_directly_still_names_its_locals():
    def helper(v):
        z = apply("exp", (v,))
        return z * 3.0

    def f(x):
        return helper(x) + helper(x * 2.0)
    prog = lp.trace(f, x=0.5)
    assert {"helper.z", "helper_2.z"} <= set(prog.graph)
    assert prog.solve(x=0.5).grad["x"] == pytest.approx(3 * math.exp(0.5) + 6 * math.exp(1.0), rel=1e-15)


def test_paused_gc_restores_the_collector_and_respects_a_callers_freeze():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()

    class Cycle:
        pass
    for size in (10, 3 * PROMOTE):   # a small pause, and a large one (handed to the oldest generation)
        with paused_gc():
            kept = [{"k": k} for k in range(size)]
            c = Cycle()
            c.me = c
            ref = weakref.ref(c)
            del c
        gc.collect()
        assert ref() is None and len(kept) == size   # garbage made during the pause is still collected

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            [dict(a=k) for k in range(10)]
        assert gc.get_freeze_count() == frozen    # the caller's frozen objects stay frozen
    finally:
        gc.unfreeze()


def test_streamed_chunks_compile_to_what_the_unstreamed_build_runs():
    prog = lp.trace(_chain(lp, 1203), x=0.3)
    sched = prog.compile()
    plain = build(generate(sched), sched, NAMESPACE)
    link = Linker(sched)
    streamed = build(generate(sched, sinks=link.sinks()), sched, NAMESPACE, link)
    for what in ("forward", "adjoint"):
        a, b = getattr(plain, what), getattr(streamed, what)
        assert len(a) == len(b) > 1
        assert all(r[0] is s[0] and r[1] == s[1] and r[2] == s[2] for r, s in zip(a, b))
    assert (plain.scalar_ids, plain.lam_ids, plain.functions) == (streamed.scalar_ids, streamed.lam_ids,
                                                                  streamed.functions)


def test_the_first_solve_agrees_with_the_interpreter(monkeypatch):
    prog = lp.trace(_chain(lp, 801), x=0.3)
    sol = prog.solve(x=0.3)
    monkeypatch.setattr(compiled, "ENABLED", False)
    ref = lp.trace(_chain(lp, 801), x=0.3).solve(x=0.3)
    # math replaces numpy for the scalar ops (an ulp each); tests/test_compiled.py holds the
    # numpy-call form bitwise
    assert sol.output == pytest.approx(ref.output, rel=1e-14)
    assert sol.grad["x"] == pytest.approx(ref.grad["x"], rel=1e-12)


def test_the_cached_plan_keeps_every_kernel_after_the_generated_solve():
    prog = lp.trace(lambda x: lp.exp(x) * 2.0, x=0.0)
    sched = prog.compile()
    prog.solve(x=0.0)                       # generated: the Python-float steps needed no kernel
    assert sched.plan is None or all(it.kernel is not None for it in sched.plan.items)
    plan = plan_of(sched)
    assert [type(it.kernel) for it in plan.items if it.__class__ is StepItem] == [RawKernel, RawKernel]
    assert plan_of(sched) is plan           # and that one is cached
