"""Chunks of one shape are rendered once (compile.source.build): what runs must be exactly what
rendering every chunk on its own gives (text, node ids, objects, and the nodes each tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.compile.codegen import generate
from lagrangeprop.compile import source
from lagrangeprop.compile.source import build, render_chunk
from lagrangeprop.compile.statements import BlockRun
from lagrangeprop.solve.compiled import NAMESPACE

from test_kernels import PROGRAMS


def _chain(n: int) -> lp.Program:
    def f(x, y):
        v = x
        for k in range(n):
            v = [lp.sin(v), v * 1.01, v + y, lp.tanh(v), lp.cos(v)][k % 5]
        return v
    return lp.trace(f, x=0.3, y=0.1)


def _each(sched, code):
    """(what, body, ids, objects) per chunk, each rendered on its own, and the tested nodes."""
    out, checked = [], {"values": set(), "lams": set()}
    for what, test in (("forward", "values"), ("adjoint", "lams")):
        for run in getattr(code, what):
            if run.__class__ is not BlockRun:
                body, ids, objs = render_chunk(run, code, sched, test)
                out.append((what, body, tuple(ids), tuple(objs)))
                checked[test].update(source.tested(run, sched, test))
    return out, checked


@pytest.mark.parametrize("prog", [_chain(1234), _chain(7)] + [PROGRAMS[k]()[0] for k in sorted(PROGRAMS)],
                         ids=["chain-1234", "chain-7"] + sorted(PROGRAMS))
def test_build_runs_what_each_chunk_renders(prog):
    sched = prog.compile()
    code = generate(sched)
    expected, checked = _each(sched, code)
    got = build(code, sched, NAMESPACE)
    runs = [(w, r) for w in ("forward", "adjoint") for r in getattr(got, w) if r.__class__ is tuple]
    assert len(runs) == len(expected)
    for (what, (fn, ids, objs)), (what2, body, ids2, objs2) in zip(runs, expected):
        assert what == what2 and ids == ids2
        assert len(objs) == len(objs2) and all(a is b for a, b in zip(objs, objs2))
        assert fn is source._CACHE[id(NAMESPACE), body]
    # the scans skip exactly the nodes the chunks test themselves
    assert set(got.scalar_ids).isdisjoint(checked["values"])
    assert set(got.scalar_ids) | checked["values"] == set(code.scalar_ids)


def test_a_long_chain_compiles_few_functions_and_is_right():
    prog = _chain(1234)
    code = generate(prog.compile())
    got = build(code, prog.compile(), NAMESPACE)
    assert got.functions < (len(code.forward) + len(code.adjoint)) // 2
    g = prog.solve(x=0.3, y=0.1).grad
    # forward mode by hand: (value, d/dx, d/dy) through the same 1234 steps
    v, dx, dy = 0.3, 1.0, 0.0
    for k in range(1234):
        r = k % 5
        if r == 0:
            v, dx, dy = math.sin(v), math.cos(v) * dx, math.cos(v) * dy
        elif r == 1:
            v, dx, dy = v * 1.01, 1.01 * dx, 1.01 * dy
        elif r == 2:
            v, dy = v + 0.1, dy + 1.0
        elif r == 3:
            t = math.tanh(v)
            v, dx, dy = t, (1 - t * t) * dx, (1 - t * t) * dy
        else:
            v, dx, dy = math.cos(v), -math.sin(v) * dx, -math.sin(v) * dy
    np.testing.assert_allclose([g["x"], g["y"]], [dx, dy], rtol=1e-10)
    assert abs(dy) > 1e-3
