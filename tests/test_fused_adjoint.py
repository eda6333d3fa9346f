"""Adjoint statements that fold several edges into one numpy call (compile.multipliers).

- a run of entries ``x[i]`` of one array (the coefficients ``c[k]`` of a polynomial) scatters
  all its multipliers into ``λ_x`` at once (``_gather``);
- ``x * x`` computes its cotangent ``g·x`` once and adds it twice.

Both must be bitwise the reference interpreters' numbers (the same floating-point operations
in the same order), with a repeated index, a multiplier already collected, 2-D entries and
non-float multipliers too; gradients against autograd.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.compile.codegen import generate

from test_compiled import _compare

T = np.linspace(-1.0, 1.0, 50)
Y = np.sin(2.0 * T)


def _taylor(m, deg: int = 6):
    def f(c, a):
        u = T - a
        p = c[0] + c[1] * u
        pw = u
        for k in range(2, deg + 1):
            pw = pw * u
            p = p + c[k] * pw
        r = p - Y
        return m.mean(r * r)
    return f


def _repeated(m):
    def f(c):   # c[0] read three times (three getitem nodes, one index), c[2] twice
        return c[0] * c[0] + c[1] * c[2] + m.sin(c[0]) + c[2] + m.sum(c * c)
    return f


def _matrix(m):
    def f(x):   # entries of a 2-D array, after an array use of it (λ_x already collected)
        s = m.sum(m.tanh(x) * x)
        return s * x[0, 1] + x[1, 0] * x[0, 0] - x[1, 1] ** 2 + x[0, 1]
    return f


C0 = np.random.default_rng(3).standard_normal(7) / np.arange(1, 8)
X0 = np.array([[0.3, -0.7], [1.1, 0.2]])
CASES = {
    "taylor": (_taylor, {"c": C0, "a": 0.1}),
    "repeated": (_repeated, {"c": np.array([0.4, -1.2, 0.8])}),
    "matrix": (_matrix, {"x": X0}),
}


@pytest.mark.parametrize("use_math", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_fused_statements_are_the_reference_numbers(name, use_math):
    make, inputs = CASES[name]
    _compare(lp.trace(make(lp), **inputs), inputs, None, use_math=use_math)


@pytest.mark.parametrize("name", CASES)
def test_fused_gradients_match_autograd(name):
    make, inputs = CASES[name]
    sol = lp.trace(make(lp), **inputs).solve(**inputs)
    names = list(inputs)
    ref = autograd.grad(make(anp), tuple(range(len(names))))(*inputs.values())
    for k, g in zip(names, ref):
        np.testing.assert_allclose(sol.grad[k], g, rtol=1e-13, atol=1e-15)
    assert sol.kkt()["adjoint"] < 1e-12


def _adjoint_text(prog) -> str:
    return "\n".join(fmt for run in generate(prog.compile()).adjoint
                     for fmt, _, _ in getattr(run, "statements", []))


def test_polynomial_coefficients_are_one_scatter_and_squares_one_product():
    prog = lp.trace(_taylor(lp), c=C0, a=0.1)
    text = _adjoint_text(prog)
    assert text.count("_gather(") == 1 and "_pull(" in text        # mean's rule is still a pull
    assert sum("_t :=" in line for line in text.splitlines()) == 2      # r * r and u * u: one product each
    assert "is not None" not in text        # mean's and getitem's rules always return a cotangent
    src = prog.source()
    assert "_gather(" in src and "(∂getitem_2/∂c)ᵀ λ_getitem_2" in src


def test_repeated_index_breaks_the_run():
    prog = lp.trace(_repeated(lp), c=np.array([0.4, -1.2, 0.8]))
    text = _adjoint_text(prog)
    # five entries, two indices repeated: never one scatter of a repeated index
    for line in text.splitlines():
        if "_gather(" in line:
            assert line.count("{") >= 4
    sol = prog.solve(c=np.array([0.4, -1.2, 0.8]))
    c = np.array([0.4, -1.2, 0.8])
    expected = np.array([2 * c[0] + np.cos(c[0]), c[2], c[1] + 1.0]) + 2 * c
    np.testing.assert_allclose(sol.grad["c"], expected, rtol=1e-14)


def test_gather_of_non_float_multipliers_takes_the_rule():
    """A 0-d array multiplier (not a float) goes through the op's rule, with the same numbers."""
    from lagrangeprop.solve.kernels import gather_entries
    from lagrangeprop.compile.statements import Pull
    prog = lp.trace(lambda c: c[0] * 2.0 + c[2] * 3.0, c=np.ones(3))
    sched = prog.compile()
    steps = [s for s in sched.steps if s.prim.name == "getitem"]
    pulls = tuple(Pull(s, None, (s.args[0],), sched.names[s.node], s.params["index"]) for s in steps)
    x = np.array([1.0, 2.0, 3.0])
    ans = tuple(np.array(x[p.index]) for p in pulls)
    fast = gather_entries(pulls, x, (np.float64(2.0), None), ans, None)
    rule = gather_entries(pulls, x, (np.array(2.0), None), ans, None)
    np.testing.assert_array_equal(fast, [2.0, 0.0, 0.0])
    np.testing.assert_array_equal(rule, fast)
    assert gather_entries(pulls, x, (None, None), ans, None) is None
    prev = np.array([1.0, 1.0, 1.0])
    np.testing.assert_array_equal(gather_entries(pulls, x, (2.0, 0.5), ans, prev), [3.0, 1.0, 1.5])
