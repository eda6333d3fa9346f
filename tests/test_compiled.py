"""The compiled path (generated straight-line code) against the reference interpreters.

Every program runs through the plain walks of the schedule (``forward_reference``,
``adjoint_reference``) and through the generated code (``solve.compiled``): with numpy's
calls for scalars too (``use_math=False``) the numbers are bitwise the reference's; with
``math`` for scalar nodes (the default) they agree to a few ulps. Errors are the same class
naming the same node, whichever path runs. ``prog.source()``'s text is the same statements
with node names, and executing it gives the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import lagrangeprop as lp
from lagrangeprop.compile.codegen import CHUNK, generate
from lagrangeprop.compile.source import build, source
from lagrangeprop.options import SolveOptions
from lagrangeprop.solve import compiled
from lagrangeprop.solve.adjoint import adjoint_reference, run_adjoint
from lagrangeprop.solve.forward import forward_reference, initial_values, run_forward

from programs import SCALED_CASES, SELLAR_GUESS, SELLAR_INPUTS, sellar_program, sin_chain
from test_kernels import PROGRAMS
from test_kernels import _run as _kernels_run
from test_properties import contractive_systems, dag_programs

SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much]


def _fixed_point():
    prog = lp.Program(name="fixed_point")
    x = prog.input("x")
    z = prog.variable("z")
    prog.define(z, 0.5 * lp.cos(z) + x)
    prog.output(z * z + x, name="out")
    return prog, {"x": 0.3}, {"z": 0.0}


CUBE = lp.primitive("codegen_cube", lambda x: x ** 3, vjp=lambda g, ans, x: (3.0 * g * x ** 2,))


def _user_op():
    return lp.trace(lambda x: lp.sin(CUBE(x)) * x, x=0.7), {"x": 0.7}, None


def _mixed():
    def f(x, y):
        s = lp.sum(lp.exp(y) * x)          # an array reduced to a scalar, then scalar math
        t = lp.sqrt(s) / (1.0 + s) - s ** x
        return t * lp.tanh(t) + lp.log1p(s) - lp.tan(0.1 * x)
    return lp.trace(f, x=0.4, y=np.array([0.1, -0.2, 0.3])), {"x": 0.4, "y": np.array([0.1, -0.2, 0.3])}, None


def _scaled(make):
    def case():
        c = make()
        return c.prog, c.inputs, c.guess
    return case


CASES = dict(PROGRAMS, fixed_point=_fixed_point, user_op=_user_op, mixed=_mixed,
             **{f"scaled_{k}": _scaled(c) for k, c in SCALED_CASES.items()})


def _run(prog, inputs, guess, forward, adjoint, use_math=None):
    """Values and multipliers of a fresh copy of ``prog`` (cold caches): the reference, or the
    generated code with (``use_math=True``) or without ``math`` for scalars."""
    def prepare(sched):
        if use_math is not None:
            sched.generated = build(generate(sched, use_math=use_math), sched, compiled.NAMESPACE)
    return _kernels_run(prog, inputs, guess, forward, adjoint, prepare)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.shape(a) == np.shape(b) and np.array_equal(a, b)


def _close(a, b, scale: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if np.asarray(a).dtype == bool:
        return _same(a, b)
    return np.shape(a) == np.shape(b) and float(np.max(np.abs(np.subtract(a, b)), initial=0.0)) <= 1e-13 * scale


def _compare(prog, inputs, guess, use_math: bool) -> None:
    sched, rv, rl = _run(prog, inputs, guess, forward_reference, adjoint_reference)
    _, v, lam = _run(prog, inputs, guess, run_forward, run_adjoint, use_math)
    ids = [i for i, r in enumerate(sched.roles) if r != "constant"]
    vs = max([1.0] + [float(np.max(np.abs(rv[i]), initial=0.0)) for i in ids if rv[i] is not None])
    ls = max([1.0] + [float(np.max(np.abs(rl[i]), initial=0.0)) for i in ids if rl[i] is not None])
    for i, n in enumerate(sched.names):
        if sched.roles[i] == "constant":
            continue
        if use_math:
            assert _close(v[i], rv[i], vs), f"value of {n!r}: {v[i]} vs {rv[i]}"
            assert _close(lam[i], rl[i], ls), f"multiplier of {n!r}: {lam[i]} vs {rl[i]}"
        else:
            assert _same(v[i], rv[i]), f"value of {n!r}: {v[i]} vs {rv[i]}"
            assert _same(lam[i], rl[i]), f"multiplier of {n!r}: {lam[i]} vs {rl[i]}"


@pytest.mark.parametrize("name", CASES)
def test_generated_numpy_calls_are_bitwise_the_reference(name):
    _compare(*CASES[name](), use_math=False)


@pytest.mark.parametrize("name", CASES)
def test_generated_math_agrees_with_the_reference(name):
    _compare(*CASES[name](), use_math=True)


def test_math_replaces_numpy_for_scalar_programs_only():
    blog = generate(PROGRAMS["blog"]()[0].compile())
    assert blog.math_steps == 7
    mlp = generate(PROGRAMS["mlp"]()[0].compile())
    assert mlp.math_steps == 1 and mlp.plan.nbufs > 0      # only the final `/ 7.0`; pooled buffers kept


def _solve_both(monkeypatch, prog, inputs, guess=None):
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        p = lp.Program.from_json(prog.to_json())
        out.append(p.solve(**inputs, guess=guess))
    return out


def test_solve_runs_the_generated_code_by_default(monkeypatch):
    prog, inputs, guess = _sellar_case()
    new, ref = _solve_both(monkeypatch, prog, inputs, guess)
    assert new.schedule.generated is not None and ref.schedule.generated is None
    for k in inputs:
        np.testing.assert_allclose(new.grad[k], ref.grad[k], rtol=1e-13)
    assert new.kkt()["adjoint"] < 1e-10


def _sellar_case():
    return sellar_program(), SELLAR_INPUTS, SELLAR_GUESS


# ------------------------------------------------------------------- random programs
@settings(max_examples=40, suppress_health_check=SLOW_OK, deadline=None)
@given(dag_programs())
def test_random_dags_through_both_paths(case):
    prog, inputs = case
    _compare(prog, inputs, None, use_math=False)
    _compare(prog, inputs, None, use_math=True)


@settings(max_examples=10, suppress_health_check=SLOW_OK, deadline=None)
@given(contractive_systems())
def test_random_cyclic_systems_through_both_paths(case):
    prog, inputs = case
    _compare(prog, inputs, None, use_math=False)
    _compare(prog, inputs, None, use_math=True)


# ------------------------------------------------------------------- errors
def _error(monkeypatch, enabled: bool, f, inputs: dict, evaluate: bool = False):
    monkeypatch.setattr(compiled, "ENABLED", enabled)
    prog = lp.trace(f, **inputs)
    with pytest.raises(lp.LagrangePropError) as info:
        prog.evaluate(**inputs) if evaluate else prog.solve(**inputs)
    return type(info.value), str(info.value)


ERRORS = {
    "log_domain": (lambda x: lp.log(x - 1.0) * 2.0, {"x": 0.5}),          # math.log raises
    "divide_by_zero": (lambda x: 1.0 / (x - 0.5) + x, {"x": 0.5}),         # 1.0 / 0.0 raises
    "exp_overflow": (lambda x: lp.exp(x * 1000.0) - x, {"x": 2.0}),        # math.exp raises
    "multiply_overflow": (lambda x: (x * 1e300) * 1e300 + x, {"x": 2.0}),  # inf without raising
    "sqrt_derivative": (lambda x: x * lp.sqrt(x) + x, {"x": 0.0}),         # 0.5 / 0.0 in the adjoint
    "array_log": (lambda x: lp.sum(lp.log(x)), {"x": np.array([1.0, -1.0])}),
    "power_negative_base": (lambda x, p: x ** p, {"x": -2.0, "p": 0.5}),
    # non-finite without raising, found by the chunks' own tests (source.render_chunk)
    "inf_minus_inf": (lambda x: (x * 1e300 * 1e300) - (x * 1e300 * 1e300) + x, {"x": 2.0}),
    "log_derivative_overflow": (lambda x: lp.log(x) + x, {"x": 1e-310}),   # 1/x = inf
    "long_chain_value_overflow": (lambda x: _scaled_chain(x, 2000), {"x": 1.0}),   # 1.5^1751 = inf
    "long_chain_multiplier_overflow": (lambda x: _scaled_chain(x, 1800), {"x": 1e-320}),
}


def _scaled_chain(z, n: int):
    """z·1.5ⁿ as n multiplications (several generated chunks, CHUNK statements each)."""
    for _ in range(n):
        z = z * 1.5
    return z


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_the_interpreters(monkeypatch, name):
    f, inputs = ERRORS[name]
    new = _error(monkeypatch, True, f, inputs)
    ref = _error(monkeypatch, False, f, inputs)
    assert new == ref
    assert new[0] is lp.NonFiniteError


def test_a_singular_matrix_op_is_named_by_both_paths(monkeypatch):
    """np.linalg.inv of a singular matrix: the generated pass hands over to the interpreter,
    which names the node that raised, as it does on its own."""
    def f(A):
        return lp.sum(np.linalg.inv(A * 2.0)) + lp.sum(A)
    new = _error(monkeypatch, True, f, {"A": np.ones((2, 2))})
    ref = _error(monkeypatch, False, f, {"A": np.ones((2, 2))})
    assert new == ref and new[0] is lp.SingularSystemError
    assert "(op 'inv')" in new[1] and "singular" in new[1]


def test_chunks_test_their_own_scalars(monkeypatch):
    """The generated chunks test the Python floats they write; the scan of the rest skips
    them, and a huge but finite program (1e300) passes (every term of the test is 0 or NaN)."""
    monkeypatch.setattr(compiled, "ENABLED", True)
    prog = lp.trace(lambda x: _scaled_chain(x, 600), x=1e-200)
    sched = prog.compile()
    g = compiled.generated(sched)
    assert g.scalar_ids == [] and sched.index["x"] not in g.lam_ids
    sol = prog.solve(x=1e-200)
    np.testing.assert_allclose(float(sol.output), 1e-200 * 1.5 ** 600, rtol=1e-12)
    np.testing.assert_allclose(sol.grad["x"], 1.5 ** 600, rtol=1e-12)


def test_a_block_pull_back_that_overflows_is_caught_after_the_chunks(monkeypatch):
    """x feeds a block and a node after it: the chunk of that node tests λ_x before the
    block's pull-back adds to it, so the scan must still look at λ_x (inf here)."""
    def solve(enabled):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        prog = lp.Program(name="late")
        x = prog.input("x")
        z = prog.variable("z")
        prog.define(z, 0.5 * z + x / z)   # z = sqrt(2x); x is an argument inside the block
        prog.output(z * 1e150 + x, name="out")
        with pytest.raises(lp.NonFiniteError) as info:
            # z = 1e-160 and out = 1e-10 finite, λ_z ≈ 1e150 finite, λ_x = λ_z / z = 1e310 = inf
            prog.solve(x=5e-321, guess={"z": 1e-160})
        return str(info.value)
    assert "multiplier) of input 'x'" in solve(True) and solve(True) == solve(False)


def test_evaluate_errors_are_the_interpreters(monkeypatch):
    f, inputs = ERRORS["log_domain"]
    assert _error(monkeypatch, True, f, inputs, evaluate=True) == _error(monkeypatch, False, f, inputs, evaluate=True)


def test_errors_inside_a_block_are_the_interpreters(monkeypatch):
    def solve(enabled):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        prog = lp.Program(name="diverges")
        x = prog.input("x")
        z = prog.variable("z")
        prog.define(z, 2.0 * z + x)       # not a contraction: the fixed point iteration fails
        prog.output(z * 1.0, name="out")
        with pytest.raises(lp.LagrangePropError) as info:
            prog.solve(x=1.0, method="fixed_point", maxiter=20)
        return type(info.value), str(info.value)
    assert solve(True) == solve(False)


# ------------------------------------------------------------------- source
def test_source_names_the_nodes_and_the_equations():
    text = source(PROGRAMS["blog"]()[0])
    assert "L(x, z, λ) = z_out - Σ_d λ_d · c_d(z, x)" in text
    assert text.index("def forward(") < text.index("def adjoint(")
    for line in ("exp_0 = _exp(x)   # c_exp_0 = 0:  exp_0 = exp(x)",
                 "lam_x = lam_exp_0 * exp_0   # ∂L/∂z_x = 0:  λ_x += (∂exp_0/∂x) λ_exp_0",
                 "lam_a = lam_a + lam_b * _pow_dbase(a, 2.0)   # ∂L/∂z_a = 0"):
        assert line in text, line


def test_source_shows_blocks_and_registry_calls():
    text = source(sellar_program())
    assert "_block_forward(block_y1_y2_" in text and "_block_adjoint(block_y1_y2_" in text
    assert "for S = {y1, y2, " in text
    assert "_pull(pull_" in text and "_item(step_" in text      # z[0]: one entry by ints
    assert "_apply(step_" in source(CASES["mixed"]()[0])           # lp.sum: the registry's rule


@pytest.mark.parametrize("name", ["blog", "wide", "logistic", "mixed"])
def test_source_executes_to_the_same_numbers(name):
    prog, inputs, _ = CASES[name]()
    sol = prog.solve(**inputs)
    sched = prog.compile()
    objects: dict = {}
    text = source(sched, objects)
    ns = dict(compiled.NAMESPACE, **objects)
    exec(compile(text, "<source>", "exec"), ns)   # noqa: S102 - the generated text
    V = initial_values(sched, {sched.index[k]: np.asarray(v, dtype=np.float64)[()] for k, v in inputs.items()})
    L = [None] * len(sched.names)
    L[sched.output] = np.float64(1.0)
    opts = SolveOptions.make()
    with np.errstate(all="ignore"):
        ns["forward"](V, [], opts, {}, {})
        ns["adjoint"](V, L, [], opts, {})
    for k in inputs:
        assert np.array_equal(L[sched.index[k]], sol.grad[k]), k
    assert np.array_equal(V[sched.output], sol.output)


# ------------------------------------------------------------------- size
def test_a_long_chain_compiles_to_a_few_functions():
    n = 100_000
    prog = sin_chain(n)
    sol = prog.solve(x=0.5)
    code = prog.compile().generated
    assert len(code.forward) == len(code.adjoint) == math.ceil((n + 1) / CHUNK)
    assert code.functions <= 6      # chunks of the same shape share one compiled function
    x = 0.5
    for _ in range(n):
        x = math.sin(x)
    assert float(sol.output) == x
