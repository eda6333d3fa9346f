"""Adversarial review of the issue-14/16 fast paths: numbers that look right, held to references.

Each test pins one probe of the generated tangent pass, the folded adjoint, the large-block
chain Schur path or the fixed-cost cuts against an independent reference (autograd, central
differences, scipy, numpy) and, where the generated code must make the interpreter's numbers,
bitwise against the interpreter (``compiled.ENABLED = False``).
"""

from __future__ import annotations

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

import lagrangeprop as lp
from lagrangeprop.solve import compiled


def _grads(monkeypatch, f, x):
    """``∇f(x)`` by the generated adjoint and by the interpreter, on one traced program."""
    prog = lp.trace(f, x=x)
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        out.append(prog.solve(x=x).grad["x"])
    return prog, out[0], out[1]


# ---------------------------------------------------------------- 2. the folded adjoint
def _same_entry_twice(m):
    def f(x):
        c = x[2] * x[-1]           # one entry under two spellings: 2 and -1 of a length-3 array
        return m.sum(m.sin(x * c))  # λ_x is already collected when the entries pull back
    return f


def test_an_entry_spelled_two_ways_is_not_folded_as_distinct(monkeypatch, rng):
    # x[2] and x[-1] are the same entry: one scatter of both would sum g_a + g_b first,
    # the interpreter adds them to λ_x one at a time ((λ + g_b) + g_a)
    f = _same_entry_twice(lp)
    for _ in range(40):
        x = rng.standard_normal(3)
        _, new, ref = _grads(monkeypatch, f, x)
        assert np.array_equal(new, ref), (x, new - ref)
        np.testing.assert_allclose(new, autograd.grad(_same_entry_twice(anp))(x), rtol=1e-14, atol=1e-15)


_FOLD_CASES = {
    "2-D entries, negative ints": (lambda m: lambda x: m.sum(m.sin(x * (x[1, -1] * x[-1, 2] + x[0, 0]))), (2, 3)),
    "an np.int64 index among ints": (lambda m: lambda x: m.sum(m.sin(x * (x[np.int64(1)] * x[2] + x[0]))), (3,)),
    "an entry used twice": (lambda m: lambda x: (lambda e: m.sum(m.sin(x * e)) + e * e)(x[1]) + x[0] * x[2], (3,)),
    "entries of a matmul's result": (
        lambda m: lambda x: (lambda y: y[0] * y[1] + y[2] + m.sum(m.sin(y * y[0])))(np.arange(9.0).reshape(3, 3) @ x),
        (3,)),
    "x * x": (lambda m: lambda x: m.sum(x * x) + m.sum(m.sin(x) * m.sin(x)), (4,)),
    "x * x broadcast": (lambda m: lambda x: m.sum((x * x) * np.ones((2, 1))), (4,)),
    "a polynomial in entries": (lambda m: lambda x: x[0] + x[1] * 0.5 + x[2] * 0.25 + x[1] * x[3] + x[-4], (4,)),
}


@pytest.mark.parametrize("name", _FOLD_CASES)
def test_folded_pullbacks_are_bitwise_the_interpreters_and_match_autograd(monkeypatch, rng, name):
    make, shape = _FOLD_CASES[name]
    for _ in range(5):
        x = rng.standard_normal(shape)
        _, new, ref = _grads(monkeypatch, make(lp), x)
        assert np.array_equal(new, ref), new - ref
        np.testing.assert_allclose(new, autograd.grad(make(anp))(x), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_entries_of_int_and_float32_inputs(monkeypatch, dtype):
    x = np.array([1, 2, 3], dtype=dtype)
    _, new, ref = _grads(monkeypatch, lambda x: x[0] * x[1] + x[2] * x[-1], x)
    assert new.dtype == np.float64 and np.array_equal(new, ref)
    assert np.array_equal(new, [2.0, 1.0, 6.0])          # d/dx (x0 x1 + x2²) at (1, 2, 3)


def test_entries_that_feed_a_cyclic_block(monkeypatch):
    # λ of block members are 0-d arrays, not floats: the gather takes the rules' path
    def build():
        p = lp.Program()
        z = p.input("z", shape=(3,))
        a, b, c = z[0], z[1], z[-1]
        y1, y2 = p.variable("y1"), p.variable("y2")
        p.define(y1, a * a + b - 0.2 * y2)
        p.define(y2, lp.sqrt(y1) + a + c)
        p.output(lp.sum(z * z) * 0.1 + y1 + lp.exp(-y2), name="o")
        return p

    z0 = np.array([5.0, 2.0, 1.5])
    grads = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        grads.append(build().solve(z=z0, guess={"y1": 1.0, "y2": 1.0}).grad["z"])
    assert np.array_equal(grads[0], grads[1])

    def obj(z):   # y1, y2 by Newton on the 2x2 system, dense
        y = np.array([1.0, 1.0])
        for _ in range(50):
            r = np.array([y[0] - (z[0] ** 2 + z[1] - 0.2 * y[1]), y[1] - (np.sqrt(y[0]) + z[0] + z[2])])
            J = np.array([[1.0, 0.2], [-0.5 / np.sqrt(y[0]), 1.0]])
            y = y - np.linalg.solve(J, r)
        return np.sum(z * z) * 0.1 + y[0] + np.exp(-y[1])

    h = 1e-6
    fd = np.array([(obj(z0 + h * e) - obj(z0 - h * e)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(grads[0], fd, rtol=1e-7)


# ---------------------------------------------------------------- 1. the generated tangent pass
def _jvps(monkeypatch, f, x, t, calls: int = 3):
    """``lp.jvp`` ``calls`` times (the generated pass from the first or second call on) and by the
    interpreter: (generated tangents, interpreted tangent)."""
    monkeypatch.setattr(compiled, "ENABLED", True)
    new = [lp.jvp(f, (x,), (t,))[1] for _ in range(calls)]
    monkeypatch.setattr(compiled, "ENABLED", False)
    ref = lp.jvp(f, (x,), (t,))[1]
    monkeypatch.setattr(compiled, "ENABLED", True)
    return new, ref


_TANGENT_CASES = {
    "x * x": (lambda m: lambda x: x * x, 3.0),
    "a scalar broadcast into array ops": (lambda m: lambda x: m.sum(m.exp(x) * np.arange(3.0) + np.ones(3)), 2.0),
    "getitem by slices, ints, negative ints": (lambda m: lambda x: x[1] * x[-1] + m.sum(x[0:2]) * x[::-2][0],
                                               np.arange(1.0, 4.0)),
    "powers": (lambda m: lambda x: x ** 3 + x ** 0.5 + 2.0 ** x + x ** x, 1.5),
    "divide": (lambda m: lambda x: 1.0 / x + x / 3.0 - x / x, 2.0),
    "abs at 0": (lambda m: lambda x: m.abs(x) * 3.0, 0.0),
    "maximum at a tie": (lambda m: lambda x: m.maximum(x, 1.0) + m.minimum(x, x * 2.0), 1.0),
    "where": (lambda m: lambda x: m.where(x > 0, x * x, -x), 2.0),
    "log1p, logaddexp, tan, cos, log": (
        lambda m: lambda x: m.log1p(x) + m.logaddexp(x, 2.0) + m.tan(x) + m.cos(x) + m.log(x), 0.5),
    "subtract and negative of a repeated input": (lambda m: lambda x: 2.0 - x - x - (x * x), 0.5),
    "times an exact zero": (lambda m: lambda x: m.sin(x) * 0.0 + x, 1.0),
}


@pytest.mark.parametrize("name", _TANGENT_CASES)
def test_generated_tangents_match_autograd_and_the_interpreter(monkeypatch, name):
    make, x = _TANGENT_CASES[name]
    t = np.linspace(1.0, 2.0, np.size(x)).reshape(np.shape(x))
    new, ref = _jvps(monkeypatch, make(lp), x, t)
    expect = autograd.make_jvp(make(anp))(x)(t)[1]
    for tan in new:
        np.testing.assert_allclose(tan, ref, rtol=1e-15, atol=0)
        np.testing.assert_allclose(tan, expect, rtol=1e-13, atol=1e-15)



_INTEGER_VALUED = {
    "a sum of a comparison": lambda m: lambda x: m.sum(x > 0) * x[0] + m.sum(x),
    "sign": lambda m: lambda x: m.sum(m.sign(x) * x * x),
    "floor": lambda m: lambda x: m.sum(m.floor(x) * x),
    "round": lambda m: lambda x: m.sum(m.round(x) * x + x),
    "mod": lambda m: lambda x: m.sum((x % 1.0) * x),
    "equal": lambda m: lambda x: m.sum((x == x[0]) * x),
    "integer constants": lambda m: lambda x: m.sum(x * np.array([1, 2, 3])) + x[0] ** 2,
    "integer exponents": lambda m: lambda x: m.sum(x ** np.array([1, 2, 3])),
}


@pytest.mark.parametrize("name", _INTEGER_VALUED)
def test_integer_valued_ops_in_the_tangent_and_the_adjoint(monkeypatch, name):
    make = _INTEGER_VALUED[name]
    x, t = np.array([0.5, -1.5, 2.25]), np.array([1.0, 0.5, -2.0])
    expect = autograd.make_jvp(make(anp))(x)(t)[1]
    for enabled in (True, True, True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        assert float(lp.jvp(make(lp), (x,), (t,))[1]) == pytest.approx(expect, rel=1e-14, abs=1e-15)
        assert float(lp.grad(make(lp))(x) @ t) == pytest.approx(expect, rel=1e-14, abs=1e-15)

def test_a_negative_zero_tangent_keeps_its_sign(monkeypatch):
    new, ref = _jvps(monkeypatch, lambda x: x * 2.0, 1.0, -0.0)
    assert all(float(t) == 0.0 and np.signbit(t) for t in [*new, ref])   # autograd: 2 · -0.0 = -0.0


def test_tangents_seeded_on_a_subset_of_inputs(monkeypatch):
    prog = lp.trace(lambda x, y: x * y + lp.sin(y) * x[0], x=np.array([1.5, -0.5]), y=2.0)
    sol = prog.solve(x=np.array([1.5, -0.5]), y=2.0, seed=np.ones(2))
    from lagrangeprop.solve.tangent import solution_jvp
    for _ in range(3):         # the interpreter, then the generated pass (second pass over the schedule)
        tx = solution_jvp(sol, {"x": np.array([1.0, 0.0])})["out"]
        ty = solution_jvp(sol, {"y": 1.0})["out"]
        np.testing.assert_allclose(tx, [2.0 + np.sin(2.0), np.sin(2.0)], rtol=1e-15)
        np.testing.assert_allclose(ty, [1.5 + np.cos(2.0) * 1.5, -0.5 + np.cos(2.0) * 1.5], rtol=1e-15)


def test_user_primitives_in_the_generated_tangent():
    from lagrangeprop.solve.tangent import solution_jvp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube = lp.primitive("adv_cube", lambda x: x ** 3, jvp=lambda t, ans, x: 3 * x ** 2 * t[0])
        square = lp.primitive("adv_square_fd", lambda x: x ** 2)           # no rule: central differences
        for f, x0, t, expect in [
            (lambda x: cube(lp.sin(x)), 0.7, 1.0, 3 * np.sin(0.7) ** 2 * np.cos(0.7)),
            (lambda x: lp.sum(cube(x)), np.array([1.0, 2.0]), np.array([1.0, 2.0]), 3 * 1 + 12 * 2),
            (lambda x: square(x) * 2.0, 0.7, 1.0, 4 * 0.7),
        ]:
            sol = lp.trace(f, x=x0).solve(x=x0)
            for _ in range(3):
                np.testing.assert_allclose(solution_jvp(sol, {"x": t})["out"], expect, rtol=1e-8)


def test_the_tangent_is_not_stale_after_a_re_registration_or_a_graph_edit():
    from lagrangeprop.solve.tangent import solution_jvp

    def jvps(sol) -> list[float]:      # the interpreter's pass, then the generated one
        return [float(solution_jvp(sol, {"x": 1.0})["out"]) for _ in range(3)]

    prog = lp.trace(lambda x: lp.sin(x) * x, x=0.5)
    assert jvps(prog.solve(x=0.5)) == [np.cos(0.5) * 0.5 + np.sin(0.5)] * 3
    sin_node = next(n for n, d in prog.graph.nodes(data=True) if d.get("op") == "sin")
    prog.graph.nodes[sin_node]["op"] = "cos"
    for t in jvps(prog.solve(x=0.5)):
        assert t == pytest.approx(-np.sin(0.5) * 0.5 + np.cos(0.5), rel=1e-15)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # "replacing the existing op"
        scale = lp.primitive("adv_scale", lambda x: 2 * x, jvp=lambda t, ans, x: 2 * t[0],
                             vjp=lambda g, ans, x: (2 * g,))
        prog = lp.trace(lambda x: scale(x) * x, x=1.5)
        assert jvps(prog.solve(x=1.5)) == [6.0] * 3                    # d(2x²) = 4x
        lp.primitive("adv_scale", lambda x: 3 * x, jvp=lambda t, ans, x: 3 * t[0], vjp=lambda g, ans, x: (3 * g,))
    sol = prog.solve(x=1.5)
    assert float(sol.output) == 6.75 and float(sol.grad["x"]) == 9.0   # 3x², 6x
    assert jvps(sol) == [9.0] * 3


@pytest.mark.parametrize("f, x, t", [
    (lambda x: x * lp.sqrt(x), 0.0, 1.0),                            # 0·inf in the chain rule
    (lambda x: lp.sum(x * lp.sqrt(x)), np.array([0.0, 1.0]), np.array([1.0, 1.0])),
    (lambda x: lp.sum(lp.sqrt(x)), np.array([0.0, 1.0]), np.array([0.0, 1.0])),   # 0·inf = NaN
    (lambda x: x ** 0.5 + x, 0.0, 1.0),
    (lambda x: lp.abs(x) ** 0.5, 0.0, 1.0),
    (lambda x: lp.sqrt(x * x), 0.0, 1.0),
])
def test_a_non_finite_tangent_raises_the_interpreters_error(monkeypatch, f, x, t):
    errors = []
    for enabled in (True, True, True, False):     # the generated pass from the first or second call on
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        with pytest.raises(lp.NonFiniteError) as info:
            lp.jvp(f, (x,), (t,))
        errors.append(str(info.value))
    assert len(set(errors)) == 1 and "tangent of node" in errors[0]


def _central(prog, inputs: dict, direction: dict, guess=None, h: float = 1e-6, **opts) -> float:
    def at(s):
        shifted = {k: np.asarray(v) + s * np.asarray(direction.get(k, 0.0)) for k, v in inputs.items()}
        return float(prog.solve(**shifted, guess=guess, **opts).output)
    return (at(h) - at(-h)) / (2 * h)


@pytest.mark.parametrize("method", ["auto", "newton", "fixed-point", "anderson", "newton-krylov"])
def test_sellar_tangents_match_central_differences_for_every_method(monkeypatch, method):
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    from lagrangeprop.solve.tangent import solution_jvp
    prog = sellar_program()
    direction = {"x": 0.3, "z": np.array([1.0, -2.0])}
    fd = _central(prog, SELLAR_INPUTS, direction, SELLAR_GUESS)
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        sol = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS, method=method)
        out += [float(solution_jvp(sol, direction)["obj"]) for _ in range(3)]
        grad_dot = sol.grad["x"] * 0.3 + sol.grad["z"] @ direction["z"]
    assert max(out) - min(out) <= 1e-14 * abs(out[0])
    assert out[0] == pytest.approx(fd, rel=1e-8) and out[0] == pytest.approx(grad_dot, rel=1e-12)


def test_fixed_point_and_residual_block_tangents(monkeypatch):
    from lagrangeprop.solve.tangent import solution_jvp
    p = lp.Program()
    x = p.input("x", shape=(3,))
    y = p.variable("y", shape=(3,))
    p.define(y, 0.5 * lp.cos(y) + x)
    p.output(lp.sum(y * y), name="o")
    q = lp.Program()
    xq = q.input("x")
    w = q.variable("w")
    q.residual(w, w ** 3 + w - xq)
    q.output(w * xq, name="o")
    for prog, inputs, t in [(p, {"x": np.array([0.1, 0.2, 0.3])}, {"x": np.array([1.0, 0.0, -1.0])}),
                            (q, {"x": 2.0}, {"x": 1.0})]:
        fd = _central(prog, inputs, t)
        for enabled in (True, False):
            monkeypatch.setattr(compiled, "ENABLED", enabled)
            sol = prog.solve(**inputs)
            for _ in range(3):
                assert float(solution_jvp(sol, t)["o"]) == pytest.approx(fd, rel=1e-8)
    # w³ + w = 2 at w = 1: d(w x)/dx = x / (3w² + 1) + w = 1.5
    assert float(solution_jvp(q.solve(x=2.0), {"x": 1.0})["o"]) == pytest.approx(1.5, rel=1e-14)


def test_hvp_jacobian_and_nested_grad_match_autograd(monkeypatch):
    def make(m):
        def f(x):
            y = m.tanh(x[0:3]) * x[-1] + x[1] ** 2
            return (m.sum(y * y) + m.exp(x[2]) * x[0]) / (1.0 + x[3] * x[3])
        return f
    x, v = np.array([0.3, -0.5, 0.8, 1.2]), np.array([1.0, -2.0, 0.5, 0.25])
    hv_ref = autograd.hessian(make(anp))(x) @ v
    jac_ref = autograd.jacobian(lambda x: anp.sin(x) * x[0] + x[-1])(x)
    gg_ref = autograd.grad(lambda a: autograd.grad(lambda b, c: anp.sin(b) * c * b)(a * 2.0, a))(0.7)
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        for _ in range(3):
            np.testing.assert_allclose(lp.hvp(make(lp), x, v), hv_ref, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(lp.jacobian(lambda x: lp.sin(x) * x[0] + x[-1])(x), jac_ref, rtol=1e-15)
            gg = lp.grad(lambda a: lp.grad(lambda b, c: lp.sin(b) * c * b)(a * 2.0, a))(0.7)
            assert float(gg) == pytest.approx(gg_ref, rel=1e-14)


# ---------------------------------------------------------------- 3. large blocks (the chain Schur path)
def _laplacian(N: int) -> sp.csr_matrix:
    h = 1.0 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    return ((sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)) / h ** 2).tocsr()


def _upwind(N: int) -> sp.csr_matrix:
    """An upwind x-derivative (non-symmetric)."""
    h = 1.0 / (N + 1)
    return (sp.kron(sp.eye(N), sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))) / h).tocsr()


_N = 14
_n = _N * _N
_L, _B = _laplacian(_N), _upwind(_N)
_P = sp.random(_n // 2, _n, density=0.05, random_state=1, format="csr")
_H = _n // 2


def _residuals():
    """name -> (the residual in lp, the same in autograd.numpy): r(u, lam, f)."""
    Ld, Bd, Pd = _L.toarray(), _B.toarray(), _P.toarray()
    C, Cd = (_L + 20.0 * _B).tocsr(), (_L + 20.0 * _B).toarray()
    PT = _P.T.tocsr()
    return {
        # symmetric at the start u = 0, not at the answer: the kept hierarchy's symmetry is wrong there
        "convection symmetric at the start": (
            lambda u, lam, f: lp.matmul(_L, u) + lam * u * lp.matmul(_B, u) * 5.0 - f,
            lambda u, lam, f: anp.dot(Ld, u) + lam * u * anp.dot(Bd, u) * 5.0 - f),
        "a mean inside the block": (
            lambda u, lam, f: lp.matmul(_L, u) + 0.5 * lp.sin(u) + lam * lp.mean(u) * 50 - f,
            lambda u, lam, f: anp.dot(Ld, u) + 0.5 * anp.sin(u) + lam * anp.mean(u) * 50 - f),
        "a broadcast scalar intermediate": (
            lambda u, lam, f: lp.matmul(_L, u) + lp.sin(u) * (lam * lp.sum(u * u) / _n) - f,
            lambda u, lam, f: anp.dot(Ld, u) + anp.sin(u) * (lam * anp.sum(u * u) / _n) - f),
        "Bratu with convection": (
            lambda u, lam, f: lp.matmul(C, u) - lam * lp.exp(u) - f,
            lambda u, lam, f: anp.dot(Cd, u) - lam * anp.exp(u) - f),
        "rectangular matmuls": (
            lambda u, lam, f: lp.matmul(_L, u) + lam * lp.matmul(PT, lp.tanh(lp.matmul(_P, u))) * 50 - f,
            lambda u, lam, f: anp.dot(Ld, u) + lam * anp.dot(Pd.T, anp.tanh(anp.dot(Pd, u))) * 50 - f),
        "a permutation by slices": (
            lambda u, lam, f: lp.matmul(_L, u) + lam * 30 * lp.sin(lp.concatenate([u[_H:], u[:_H]])) - f,
            lambda u, lam, f: anp.dot(Ld, u) + lam * 30 * anp.sin(anp.concatenate([u[_H:], u[:_H]])) - f),
        "a strided sum": (
            lambda u, lam, f: lp.matmul(_L, u) + lam * 20 * lp.sum(u[::3]) * u / _n - f,
            lambda u, lam, f: anp.dot(Ld, u) + lam * 20 * anp.sum(u[::3]) * u / _n - f),
    }


def _ift(r, lam: float, f: np.ndarray, explicit: bool = False):
    """``u`` by ``scipy.optimize.root``, then by the implicit function theorem with dense solves:
    ``μ = A⁻ᵀ ∂J/∂u``, ``∇_f = -(∂r/∂f)ᵀ μ``, ``∇_λ = -μᵀ ∂r/∂λ`` (J = Σu/n)."""
    res = (lambda u, lam, f: u - r(u, lam, f)) if explicit else r
    jac = autograd.jacobian(res, 0)
    u = so.root(lambda u: res(u, lam, f), np.zeros(f.size), jac=lambda u: jac(u, lam, f), tol=1e-13).x
    for _ in range(2):       # polished by two dense Newton steps (hybr may stop a hair short)
        u = u - np.linalg.solve(jac(u, lam, f), res(u, lam, f))
    assert np.abs(res(u, lam, f)).max() <= 1e-12 * max(1.0, np.abs(f).max())
    mu = np.linalg.solve(jac(u, lam, f).T, np.full(f.size, 1.0 / f.size))
    return u, -autograd.jacobian(res, 2)(u, lam, f).T @ mu, float(-mu @ autograd.jacobian(res, 1)(u, lam, f))


def _large_program(r, explicit: bool = False) -> lp.Program:
    prog = lp.Program(name="large")
    lam, f = prog.input("lam"), prog.input("f", shape=(_n,))
    u = prog.variable("u", shape=(_n,))
    if explicit:
        prog.define(u, r(u, lam, f))
    else:
        prog.residual(u, r(u, lam, f))
    prog.output(lp.sum(u) / _n, name="J")
    return prog


@pytest.mark.parametrize("name", list(_residuals()))
@pytest.mark.parametrize("solver", ["amg", "direct"])
def test_large_blocks_match_the_implicit_function_theorem(name, solver):
    pytest.importorskip("pyamg")
    from lagrangeprop.solve.tangent import solution_jvp
    r_lp, r_np = _residuals()[name]
    f = np.random.default_rng(0).random(_n) * 4
    u, gf, glam = _ift(r_np, 0.5, f)
    sol = _large_program(r_lp).solve(lam=0.5, f=f, linear_solver=solver)
    tol = 1e-9 if solver == "amg" else 1e-10    # the forward stops at tol=1e-10 per constraint
    np.testing.assert_allclose(sol.values["u"], u, rtol=0, atol=tol * np.abs(u).max())
    np.testing.assert_allclose(sol.grad["f"], gf, rtol=0, atol=tol * np.abs(gf).max())
    assert float(sol.grad["lam"]) == pytest.approx(glam, rel=tol)
    t = np.random.default_rng(1).standard_normal(_n)
    for _ in range(2):       # the interpreter's tangent, then the generated one
        assert float(solution_jvp(sol, {"f": t})["J"]) == pytest.approx(gf @ t, rel=tol)
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-9 and kkt["adjoint"] <= 1e-9


def test_a_large_block_whose_state_is_explicit():
    pytest.importorskip("pyamg")
    h2 = (1.0 / (_N + 1)) ** 2
    M = (sp.eye(_n) - (h2 / 8) * (_L + 20.0 * _B)).tocsr()
    Md = M.toarray()

    def r_np(u, lam, f):
        return anp.dot(Md, u) + (h2 / 8) * (f + lam * anp.sin(u) * 0.5 + lam * anp.tanh(u) ** 2)

    def r_lp(u, lam, f):
        return lp.matmul(M, u) + (h2 / 8) * (f + lam * lp.sin(u) * 0.5 + lam * lp.tanh(u) ** 2)

    f = np.random.default_rng(2).random(_n)
    u, gf, glam = _ift(r_np, 0.5, f, explicit=True)
    for method in ("auto", "newton"):
        sol = _large_program(r_lp, explicit=True).solve(lam=0.5, f=f, linear_solver="amg", method=method, tol=1e-12)
        np.testing.assert_allclose(sol.values["u"], u, rtol=0, atol=1e-8 * np.abs(u).max())
        np.testing.assert_allclose(sol.grad["f"], gf, rtol=0, atol=1e-9 * np.abs(gf).max())
        assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-8)


def test_the_chain_partition_check_rejects_a_perturbed_answer():
    pytest.importorskip("pyamg")
    from lagrangeprop.blocks.eliminate import ChainPartition
    r_lp, r_np = _residuals()["Bratu with convection"]
    f = np.random.default_rng(0).random(_n) * 4
    u, _, _ = _ift(r_np, 0.5, f)
    sol = _large_program(r_lp).solve(lam=0.5, f=f, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    part = sol._states[id(blk)].lu.part
    assert isinstance(part, ChainPartition) and blk.names[0] == "u"
    rng = np.random.default_rng(3)
    # A_SSᵀ λ = b with b = ∂J/∂u on the state's rows: μ of the dense reference passes, a perturbed one fails
    A = autograd.jacobian(r_np, 0)(u, 0.5, f)
    mu = np.linalg.solve(A.T, np.full(_n, 1.0 / _n))
    b = np.zeros(blk.size)
    b[:_n] = 1.0 / _n
    check = part.check(b, True)
    assert check(mu) <= 1e-13
    for eps in (1e-4, 1e-6, 1e-8):
        assert check(mu * (1 + eps * rng.standard_normal(_n))) >= 0.1 * eps
    # A_SS x = b (the tangent's system) likewise
    bt = np.zeros(blk.size)
    bt[:_n] = rng.standard_normal(_n)
    x = np.linalg.solve(A, bt[:_n])
    check = part.check(bt, False)
    assert check(x) <= 1e-12
    for eps in (1e-4, 1e-6, 1e-8):
        assert check(x * (1 + eps * rng.standard_normal(_n))) >= 0.1 * eps


# ---------------------------------------------------------------- 4. the fixed-cost cuts
def _sellar_reference(x: float, z: np.ndarray):
    """Sellar's objective by a dense Newton on its two coupled equations (independent of lp)."""
    y = np.array([1.0, 1.0])
    for _ in range(60):
        r = np.array([y[0] - (z[0] ** 2 + z[1] + x - 0.2 * y[1]), y[1] - (np.sqrt(y[0]) + z[0] + z[1])])
        J = np.array([[1.0, 0.2], [-0.5 / np.sqrt(y[0]), 1.0]])
        y = y - np.linalg.solve(J, r)
    return x ** 2 + z[1] + y[0] + np.exp(-y[1]), y


def test_a_solution_owns_its_guess_and_inputs():
    from programs import sellar_program
    prog = sellar_program()
    guess = {"y1": np.array(1.0), "y2": np.array(1.0)}
    z = np.array([5.0, 2.0])
    sol = prog.solve(x=1.0, z=z, guess=guess)
    obj, y = _sellar_reference(1.0, np.array([5.0, 2.0]))
    assert float(guess["y1"]) == 1.0 and float(guess["y2"]) == 1.0       # the caller's guess untouched
    values = (float(sol.values["y1"]), float(sol.values["y2"]), float(sol.output), sol.grad["z"].copy())
    guess["y1"][...] = 99.0
    z[0] = 7.0
    assert values[:3] == (float(sol.values["y1"]), float(sol.values["y2"]), float(sol.output))
    assert np.array_equal(values[3], sol.grad["z"])
    np.testing.assert_allclose(values[:2], y, rtol=1e-10)
    assert values[2] == pytest.approx(obj, rel=1e-12)


def test_evaluate_with_a_guess_is_the_solves_output():
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    prog = sellar_program()
    obj, _ = _sellar_reference(1.0, np.array([5.0, 2.0]))
    guess = {"y1": np.array(1.0), "y2": 1.0}
    for g in (guess, SELLAR_GUESS, {"y1": np.array([1.0])[0:1].reshape(()), "y2": 1.0}):
        assert float(prog.evaluate(**SELLAR_INPUTS, guess=g)) == pytest.approx(obj, rel=1e-12)
    assert float(guess["y1"]) == 1.0
    solved = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    assert float(prog.evaluate(**SELLAR_INPUTS, guess=SELLAR_GUESS)) == float(solved.output)


def test_a_small_block_honours_the_method_after_the_dense_newton_ran():
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    prog = sellar_program()
    obj, _ = _sellar_reference(1.0, np.array([5.0, 2.0]))
    for method in ("auto", "fixed-point", "anderson", "newton-krylov", "newton", "fixed-point", "auto"):
        sol = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS, method=method)
        used = sol._states[id(sol.schedule.blocks[0])].method
        assert used == ("newton" if method == "auto" else method)
        assert float(sol.output) == pytest.approx(obj, rel=1e-9)


def test_options_passed_explicitly_are_the_defaults():
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    prog = sellar_program()
    a = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    b = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS, tol=1e-10, maxiter=None, method="auto", linear_solver="auto")
    c = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS, tol=1e-3)
    assert float(a.output) == float(b.output) and np.array_equal(a.grad["z"], b.grad["z"])
    assert c.options.tol == 1e-3 and a.options.tol == 1e-10
    e1 = prog.evaluate(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    e2 = prog.evaluate(**SELLAR_INPUTS, guess=SELLAR_GUESS, tol=1e-10, method="newton")
    assert float(e1) == float(e2) == float(a.output)
    with pytest.raises(lp.InputError, match="fixed_point"):
        prog.solve(**SELLAR_INPUTS, method="fixed_point")


@pytest.mark.parametrize("n", range(1, 12))
def test_small_arrays_with_a_non_finite_entry_anywhere(n):
    from lagrangeprop.solve.finite import all_finite, finite_array
    for bad in (np.nan, np.inf, -np.inf):
        for pos in range(n):
            arrays = [np.ones(n), np.ones((n, 2)), np.asfortranarray(np.ones((2, n))), np.ones(2 * n)[::2]]
            arrays[0][pos] = arrays[1][pos, 1] = arrays[2][1, pos] = arrays[3][pos] = bad
            for a in arrays:
                assert bool(np.isfinite(a).all()) is False
                assert finite_array(a) is False and all_finite([a]) is False
                assert all_finite([np.ones(3), a]) is False and all_finite([a, 1.0, a]) is False
    assert finite_array(np.full(n, 1e308)) and all_finite([np.full(n, -1e308), np.array(1e308)])


def test_non_finite_inputs_guesses_and_seeds_at_every_position():
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    prog = lp.trace(lambda x: lp.sum(x * x), x=np.ones(5))
    sellar = sellar_program()
    for bad in (np.nan, np.inf, -np.inf):
        for pos in range(5):
            a = np.ones(5)
            a[pos] = bad
            with pytest.raises(lp.InputError, match="'x'"):
                prog.solve(x=a)
            with pytest.raises(lp.InputError, match="'x'"):
                prog.evaluate(x=a)
        for pos in range(2):
            z = np.array([5.0, 2.0])
            z[pos] = bad
            with pytest.raises(lp.InputError, match="'z'"):
                sellar.solve(x=1.0, z=z, guess=SELLAR_GUESS)
        for g in (bad, np.array(bad)):
            with pytest.raises(lp.InputError, match="y1"):
                sellar.solve(**SELLAR_INPUTS, guess={"y1": g, "y2": 1.0})
            with pytest.raises(lp.InputError, match="y1"):
                sellar.evaluate(**SELLAR_INPUTS, guess={"y1": g, "y2": 1.0})
        with pytest.raises(lp.LagrangePropError):
            prog.solve(x=np.ones(5), seed=bad)


@pytest.mark.parametrize("rule", ["jac", "vjp", "jvp"])
def test_a_user_primitive_inside_a_large_block(rule):
    pytest.importorskip("pyamg")
    from lagrangeprop.solve.tangent import solution_jvp
    rules = {"jac": lambda ans, x: (sp.diags(1 / (1 + np.exp(-x))),),
             "vjp": lambda g, ans, x: (g / (1 + np.exp(-x)),),
             "jvp": lambda t, ans, x: t[0] / (1 + np.exp(-x))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # a re-run replaces the op
        softplus = lp.primitive(f"adv_softplus_{rule}", lambda x: np.logaddexp(0.0, x), **{rule: rules[rule]})
    Ld = _L.toarray()
    f = np.random.default_rng(0).random(_n) * 4
    u, gf, glam = _ift(lambda u, lam, f: anp.dot(Ld, u) + lam * 40 * anp.logaddexp(0.0, u) - f, 0.5, f)
    prog = _large_program(lambda u, lam, f: lp.matmul(_L, u) + lam * 40 * softplus(u) - f)
    t = np.random.default_rng(1).standard_normal(_n)
    for solver in ("amg", "direct"):
        sol = prog.solve(lam=0.5, f=f, linear_solver=solver)
        np.testing.assert_allclose(sol.values["u"], u, rtol=0, atol=1e-10 * np.abs(u).max())
        np.testing.assert_allclose(sol.grad["f"], gf, rtol=0, atol=1e-10 * np.abs(gf).max())
        assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-10)
        for _ in range(2):
            assert float(solution_jvp(sol, {"f": t})["J"]) == pytest.approx(gf @ t, rel=1e-10)


def test_large_arrays_under_two_names_and_views_are_all_scanned():
    from lagrangeprop.solve.finite import all_finite
    rng = np.random.default_rng(0)
    big = rng.standard_normal(5000)
    other = rng.standard_normal(5000)
    assert all_finite([big, big, other, other])
    for pos in (0, 2500, 4999):
        bad = other.copy()
        bad[pos] = np.nan
        assert all_finite([big, big, bad]) is bool(np.isfinite(bad).all()) is False
        assert all_finite([bad, big, bad]) is False
        base = np.ones(10000)
        base[2 * pos + 1] = np.inf
        assert all_finite([base[::2], base[1::2]]) is False      # two views of one buffer, the second bad
        assert all_finite([base[::2], base[::2].copy(), big]) is True
