"""The generated tangent pass (solve.compiled_tangent) against the interpreter (tangent_reference).

Every program of the compiled-path suite (tests/test_compiled.py's ``CASES``) and the random
programs run through both tangent passes on the same solved values: with every step through
its jvp rules (``use_math=False``) the tangents are bitwise the interpreter's, with ``math``
for scalar nodes (the default) they agree to a few ulps. autograd's jvp and central
differences are the independent references; errors are the interpreter's (same class, same
node); ``lp.jvp``, ``lp.hvp`` and ``lp.jacobian`` give what they gave before.
"""

from __future__ import annotations

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import lagrangeprop as lp
from lagrangeprop.compile.source import source
from lagrangeprop.compile.tangents import tangent_statements
from lagrangeprop.solve import compiled, compiled_tangent
from lagrangeprop.solve.compiled_tangent import build_tangent
from lagrangeprop.solve.tangent import solution_jvp, tangent_reference

from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program, sin_chain
from test_compiled import CASES
from test_properties import contractive_systems, dag_programs

SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much]


def _solved(prog, inputs, guess):
    prog = lp.Program.from_json(prog.to_json())      # a fresh schedule: cold caches
    return prog.solve(**inputs, guess=guess)


def _seeds(sol, which: str, seed: int = 0) -> dict:
    sched = sol.schedule
    rng = np.random.default_rng(seed)
    ids = sched.inputs if which == "all" else sched.inputs[:1]
    return {i: rng.standard_normal(sched.shapes[i]) for i in ids}


def _both(sol, xdot: dict, use_math: bool):
    """The interpreter's tangents and the generated pass's (``None`` if it handed over)."""
    sched = sol.schedule
    ref = tangent_reference(sched, sol._vals, sol._states, sol.options, xdot)
    seeded = tuple(sorted(xdot))
    g = compiled.generated(sched)
    g.tangents[seeded] = build_tangent(tangent_statements(sched, seeded, use_math=use_math), sched, seeded)
    new = compiled_tangent.tangent(sched, sol._vals, sol._states, sol.options, xdot)
    return sched, ref, new


def _compare(prog, inputs, guess, use_math: bool, which: str = "all") -> None:
    sol = _solved(prog, inputs, guess)
    sched, ref, new = _both(sol, _seeds(sol, which), use_math)
    assert new is not None, "the generated tangent pass handed over to the interpreter"
    scale = max([1.0] + [float(np.max(np.abs(r), initial=0.0)) for r in ref if r is not None])
    for i, name in enumerate(sched.names):
        a, b = new[i], ref[i]
        if a is None or b is None:
            assert a is None and b is None, f"tangent of {name!r}: {a} vs {b}"
            continue
        assert np.shape(a) == np.shape(b), name
        if use_math:
            err = float(np.max(np.abs(np.subtract(a, b)), initial=0.0))
            assert err <= 1e-13 * scale, f"tangent of {name!r}: {a} vs {b}"
        else:
            assert np.array_equal(a, b), f"tangent of {name!r}: {a} vs {b}"


@pytest.mark.parametrize("which", ["all", "first"])
@pytest.mark.parametrize("name", CASES)
def test_rules_only_tangents_are_bitwise_the_interpreters(name, which):
    _compare(*CASES[name](), use_math=False, which=which)


@pytest.mark.parametrize("which", ["all", "first"])
@pytest.mark.parametrize("name", CASES)
def test_math_tangents_agree_with_the_interpreter(name, which):
    _compare(*CASES[name](), use_math=True, which=which)


@settings(max_examples=40, suppress_health_check=SLOW_OK, deadline=None)
@given(dag_programs())
def test_random_dags_through_both_tangent_passes(case):
    prog, inputs = case
    for use_math in (False, True):
        for which in ("all", "first"):
            _compare(prog, inputs, None, use_math, which)


@settings(max_examples=10, suppress_health_check=SLOW_OK, deadline=None)
@given(contractive_systems())
def test_random_cyclic_systems_through_both_tangent_passes(case):
    prog, inputs = case
    _compare(prog, inputs, None, False)
    _compare(prog, inputs, None, True)


def test_scalar_programs_run_python_floats_only():
    """The blog program's tangent is math statements only (no numpy call, no errstate), and an
    unseeded input writes no statement at all."""
    prog, inputs, _ = CASES["blog"]()
    sched = prog.compile()
    runs = tangent_statements(sched, sched.inputs)
    assert [len(c.statements) for c in runs] == [7]
    assert not any("_push(" in fmt for c in runs for fmt, _, _ in c.statements)
    assert tangent_statements(sched, ()) == []
    wide = CASES["wide"]()[0].compile()       # maximum: the registry's rule, through _push
    assert any("_push(" in fmt for c in tangent_statements(wide, wide.inputs) for fmt, _, _ in c.statements)


# ------------------------------------------------------------------- independent references
def _blog(m, x):
    a = m.exp(x) * 2.0
    b = a ** 2
    c = a + b
    return m.exp(c) + m.sin(c)


def _mixed(m, x, y):
    s = m.sum(m.exp(y) * x)
    t = m.sqrt(s) / (1.0 + s) - s ** x
    return t * m.tanh(t) + m.log1p(s) - m.tan(0.1 * x)


@pytest.mark.parametrize("f, primals", [(_blog, (0.3,)), (_mixed, (0.4, np.array([0.1, -0.2, 0.3])))])
def test_jvp_matches_autograd(f, primals):
    rng = np.random.default_rng(4)
    tangents = tuple(rng.standard_normal(np.shape(p)) for p in primals)
    value, t = lp.jvp(lambda *a: f(lp, *a), primals, tangents)
    expect = 0.0
    for k in range(len(primals)):   # autograd's forward mode, one argument at a time
        _, tk = autograd.make_jvp(lambda v, k=k: f(anp, *primals[:k], v, *primals[k + 1:]))(primals[k])(tangents[k])
        expect += tk
    np.testing.assert_allclose(float(t), float(expect), rtol=1e-12)
    assert float(value) == pytest.approx(float(f(np, *primals)), rel=1e-14)


def _central(prog, inputs, guess, direction: dict, h: float = 1e-6) -> float:
    def at(s):
        shifted = {k: np.asarray(v, dtype=np.float64) + s * np.asarray(direction[k]) for k, v in inputs.items()}
        return float(prog.solve(**shifted, guess=guess).output)
    return (at(h) - at(-h)) / (2 * h)


def _fixed_point():
    prog = lp.Program(name="fixed_point")
    x = prog.input("x")
    z = prog.variable("z")
    prog.define(z, 0.5 * lp.cos(z) + x)
    prog.output(z * z + lp.sin(x), name="out")
    return prog, {"x": 0.3}, {"z": 0.0}


def _cubic():
    prog = lp.Program(name="cubic")
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x)
    prog.output(w * x + lp.exp(w), name="out")
    return prog, {"x": 2.0}, {"w": 1.0}


BLOCKS = {"sellar": lambda: (sellar_program(), SELLAR_INPUTS, SELLAR_GUESS),
          "fixed_point": _fixed_point, "residual": _cubic}


def test_an_array_program_generates_its_tangent_on_the_second_pass():
    """No scalar math step: the first pass is the interpreter's, the second generated."""
    prog, inputs, _ = CASES["logistic"]()
    sol = prog.solve(**inputs)
    sched = sol.schedule
    key = (sched.index["w"],)
    v = np.linspace(-1.0, 1.0, 5)
    first = solution_jvp(sol, {"w": v})["out"]
    assert not isinstance(sched.generated.tangents[key], compiled_tangent.CompiledTangent)
    second = solution_jvp(sol, {"w": v})["out"]
    assert isinstance(sched.generated.tangents[key], compiled_tangent.CompiledTangent)
    assert float(first) == float(second) == pytest.approx(float(np.dot(sol.grad["w"], v)), rel=1e-12)


def test_a_large_program_generates_its_tangent_on_the_second_pass(monkeypatch):
    monkeypatch.setattr(compiled_tangent, "EAGER", 10)
    prog, inputs, _ = CASES["chain"]()
    sol = prog.solve(**inputs)
    sched = sol.schedule
    key = (sched.index["x"],)
    first = solution_jvp(sol, {"x": 1.0})["out"]
    assert not isinstance(sched.generated.tangents[key], compiled_tangent.CompiledTangent)
    second = solution_jvp(sol, {"x": 1.0})["out"]
    assert isinstance(sched.generated.tangents[key], compiled_tangent.CompiledTangent)
    x, dx = 0.3, 1.0
    for k in range(50):
        x, dx = math.sin(x) * 1.01 + 0.1 * k, dx * math.cos(x) * 1.01
    assert float(first) == pytest.approx(dx, rel=1e-13) and float(second) == pytest.approx(dx, rel=1e-13)


@pytest.mark.parametrize("name", BLOCKS)
def test_blocks_through_the_generated_tangent(monkeypatch, name):
    """A cyclic block between chunks: the generated pass agrees with the interpreter and
    with central differences of the solve, and it ran (no hand-over)."""
    monkeypatch.setattr(compiled_tangent, "_eager", lambda sched: True)   # Sellar's block: arrays
    prog, inputs, guess = BLOCKS[name]()
    direction = {k: np.full(np.shape(v), 0.7) for k, v in inputs.items()}
    sol = prog.solve(**inputs, guess=guess)
    sched = sol.schedule
    xdot = {sched.index[k]: np.asarray(v, dtype=np.float64) for k, v in direction.items()}
    new = compiled_tangent.tangent(sched, sol._vals, sol._states, sol.options, xdot)
    assert new is not None
    assert any(r.__class__ is not tuple for r in sched.generated.tangents[tuple(sorted(xdot))].runs)
    monkeypatch.setattr(compiled, "ENABLED", True)
    jvp = float(solution_jvp(sol, direction)[sched.names[sched.output]])
    monkeypatch.setattr(compiled, "ENABLED", False)
    ref = float(solution_jvp(sol, direction)[sched.names[sched.output]])
    assert float(new[sched.output]) == jvp
    assert jvp == pytest.approx(ref, rel=1e-12)
    assert jvp == pytest.approx(_central(prog, inputs, guess, direction), rel=1e-6)


# ------------------------------------------------------------------- errors
def _jvp_error(monkeypatch, enabled: bool, f, x, t):
    monkeypatch.setattr(compiled, "ENABLED", enabled)
    with pytest.raises(lp.LagrangePropError) as info:
        lp.jvp(f, (x,), (t,))
    return type(info.value), str(info.value)


TANGENT_ERRORS = {
    "sqrt_at_zero": (lambda x: x * lp.sqrt(x) + x, 0.0, 1.0, "sqrt"),          # 0.5 / 0.0 raises
    "log_tiny": (lambda x: lp.log(x) * 2.0 + x, 1e-310, 1.0, "log"),            # 1 / x = inf
    "tangent_overflow": (lambda x: lp.sqrt(x) * 3.0, 1e-320, 1e200, "sqrt"),     # inf, no raise
    "array_sqrt": (lambda x: lp.sum(lp.sqrt(x)), np.array([0.0, 1.0]), np.ones(2), "sqrt"),
    "power_negative_base": (lambda x: (x - 3.0) ** (x * 0.0 + 2.0), 1.0, 1.0, "power"),   # NaN · 0
}


@pytest.mark.parametrize("name", TANGENT_ERRORS)
def test_tangent_errors_are_the_interpreters(monkeypatch, name):
    f, x, t, op = TANGENT_ERRORS[name]
    new = _jvp_error(monkeypatch, True, f, x, t)
    ref = _jvp_error(monkeypatch, False, f, x, t)
    assert new == ref
    assert new[0] is lp.NonFiniteError and "tangent of node" in new[1] and f"(op {op!r}" in new[1]


# ------------------------------------------------------------------- the transforms, unchanged
def _hvp_cases():
    return [(lambda x: _blog(lp, x), lambda x: _blog(anp, x), 0.3, 1.3),
            (lambda w: lp.sum(lp.tanh(w * w) * lp.exp(w)), lambda w: anp.sum(anp.tanh(w * w) * anp.exp(w)),
             np.array([0.2, -0.4, 0.9]), np.array([1.0, 0.5, -2.0]))]


@pytest.mark.parametrize("k", [0, 1])
def test_hvp_and_jacobian_are_unchanged(monkeypatch, k):
    f, fa, x, v = _hvp_cases()[k]
    out = {}
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        out[enabled] = (np.asarray(lp.hvp(f, x, v)), np.asarray(lp.jacobian(lambda y: lp.exp(y) * y)(x)),
                        lp.jvp(f, (x,), (v,))[1])
    for a, b in zip(out[True], out[False]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)
    hv = autograd.make_hvp(fa)(x)[0](v)
    np.testing.assert_allclose(out[True][0], hv, rtol=1e-12)


# ------------------------------------------------------------------- source and size
def test_source_shows_and_runs_the_tangent():
    prog, inputs, _ = CASES["blog"]()
    sched = prog.compile()
    objects: dict = {}
    text = source(sched, objects)
    assert text.split("def forward")[1] == prog.source().split("def forward")[1]
    assert "def tangent(V, L, B, opts, states):" in text and "A ż = -(∂c/∂x) ẋ" in text
    assert "dot_c = dot_a + dot_b   # ż_c = ż_a + ż_b   (add)" in text
    ns = dict(compiled_tangent.NAMESPACE, **objects)
    exec(compile(text, "<source>", "exec"), ns)   # noqa: S102 - the generated text
    sol = prog.solve(**inputs)
    L = [None] * len(sched.names)
    L[sched.index["x"]] = 1.0
    ns["tangent"](list(sol._vals), L, [], sol.options, {})
    assert float(L[sched.output]) == float(lp.jvp(lambda x: _blog(lp, x), (0.5,), (1.0,))[1])


def test_sellar_source_names_the_block_solve():
    text = sellar_program().source()
    assert "_block_tangent(block_y1_y2" in text and "A_SS ż_S = b_S for S = {y1, y2, " in text


def test_a_long_chain_tangent_compiles_to_a_few_functions(monkeypatch):
    """10⁵ nodes: a few distinct compiled functions, generated on the first call here (a large
    program's first pass is otherwise the interpreter's, the second generated: EAGER)."""
    n = 100_000
    monkeypatch.setattr(compiled_tangent, "EAGER", n + 10)
    prog = sin_chain(n)
    sol = prog.solve(x=0.5)
    t = solution_jvp(sol, {"x": 1.0})["out"]
    sched = sol.schedule
    runs = sched.generated.tangents[(sched.index["x"],)].runs
    assert len(runs) == math.ceil((n + 1) / 200) and len({id(r[0]) for r in runs}) <= 6
    x, dx = 0.5, 1.0
    for _ in range(n):
        x, dx = math.sin(x), dx * math.cos(x)
    assert float(t) == pytest.approx(dx, rel=1e-12)
