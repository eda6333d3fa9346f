"""The per-solve fast paths (issue 6) against independent references and the general paths.

Fast paths checked here: the input table of ``parse_inputs`` (vs the general parser and its
errors), the dot-product finiteness test (vs ``np.isfinite``), the finiteness check of the
forward pass (a NaN made mid-graph is still reported naming the first node that made it),
read-only gradient views, in-place partials / cotangents (vs HIPS autograd, and the values
they must not overwrite), and buffer reuse between solves (vs fresh solves, and a kept
Solution must never change).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import lagrangeprop as lp
from lagrangeprop.solve.finite import finite_array
from lagrangeprop.solve.inputs import _parse_inputs, parse_inputs

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")


# ------------------------------------------------------------------ inputs
def _prog():
    return lp.trace(lambda x, w: lp.sum(lp.tanh(w * x)) + x, x=0.5, w=np.ones(5000))


@pytest.mark.parametrize("x", [0.5, 2, np.float64(0.25), np.array(0.5), [0.5][0]])
def test_input_table_matches_the_general_parser(x):
    prog = _prog()
    sched = prog.compile()
    w = np.linspace(-1.0, 1.0, 5000)
    fast = parse_inputs(sched, {"x": x, "w": w})
    slow = _parse_inputs(sched, {"x": x, "w": w}, "input")
    assert fast.keys() == slow.keys()
    for k in fast:
        assert type(fast[k]) is type(slow[k]) and fast[k].dtype == slow[k].dtype
        assert np.array_equal(fast[k], slow[k])
    assert fast[sched.index["w"]] is w   # neither path copies a float64 array (as np.asarray)


@pytest.mark.parametrize("pos", [0, 1, 2500, 4095, 4999])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_still_names_the_input(pos, bad):
    prog = _prog()
    w = np.ones(5000)
    w[pos] = bad
    with pytest.raises(lp.InputError, match="'w'.*NaN or inf"):
        prog.solve(x=0.5, w=w)
    with pytest.raises(lp.InputError, match="'x'.*NaN or inf"):
        prog.solve(x=bad, w=np.ones(5000))


def test_input_errors_unchanged():
    prog = _prog()
    with pytest.raises(lp.InputError, match=r"'w' has shape \(4999,\).*\(5000,\)"):
        prog.solve(x=0.5, w=np.ones(4999))
    with pytest.raises(lp.InputError, match=r"'x' has shape \(1,\)"):
        prog.solve(x=np.array([0.5]), w=np.ones(5000))
    with pytest.raises(lp.InputError, match=r"missing input\(s\) \['w'\]"):
        prog.solve(x=0.5)
    with pytest.raises(lp.InputError, match=r"unexpected input\(s\) \['q'\]"):
        prog.solve(x=0.5, q=1.0)
    with pytest.raises(lp.InputError, match=r"unexpected input\(s\) \['q'\]"):
        prog.solve(x=0.5, q=1.0, w=np.ones(5000))
    with pytest.raises(lp.InputError, match="'x' must be a real number"):
        prog.solve(x="a", w=np.ones(5000))
    # not-the-fast-path inputs still work: int arrays, lists, float32, non-contiguous
    ref = prog.solve(x=0.5, w=np.ones(5000)).grad
    for w in (np.ones(5000, dtype=int), [1.0] * 5000, np.ones(5000, dtype=np.float32), np.ones(10000)[::2]):
        g = prog.solve(x=0.5, w=w).grad
        assert np.array_equal(g["w"], ref["w"]) and g["x"] == ref["x"]


# ------------------------------------------------------------------ finiteness
@pytest.mark.parametrize("n", [10, 4096, 4097, 10_000, 10_001])
def test_finite_array_agrees_with_isfinite(n, rng):
    a = rng.standard_normal(n)
    assert finite_array(a)
    for pos in {0, 1, n // 2, n - 2, n - 1}:
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            b[pos] = bad
            assert not finite_array(b), (n, pos, bad)
    assert finite_array(np.full(n, 1e200))          # the square sum overflows: exact test decides
    assert finite_array(np.full(n, -1.7e308))
    c = np.full((n, 2), 1.0)[:, 0]                   # not contiguous
    assert finite_array(c)
    c[n // 2] = np.nan
    assert not finite_array(c)


def test_nan_made_mid_graph_names_the_node():
    def f(x):
        a = x * 2.0
        b = lp.log(a - 3.0)          # NaN where a < 3
        c = lp.where(a > 3.0, b, 0.0)   # masks the NaN downstream: the output is finite
        return lp.sum(c)
    x = np.linspace(0.0, 4.0, 10_000)
    prog = lp.trace(f, x=x)
    with pytest.raises(lp.NonFiniteError, match=r"node 'b' \(op 'log'"):
        prog.solve(x=x)
    with pytest.raises(lp.NonFiniteError, match=r"node 'b' \(op 'log'"):
        prog.evaluate(x=x)
    assert np.isfinite(prog.solve(x=x + 2.0).grad["x"]).all()


def test_first_offending_node_is_named_and_overflow_is_caught():
    def f(x, s):
        a = lp.exp(x * 1000.0)        # inf for x > 0.71
        b = a - a                     # NaN where a is inf
        return lp.sum(b) + s
    x = np.linspace(0.0, 1.0, 10_000)
    prog = lp.trace(f, x=x, s=1.0)
    with pytest.raises(lp.NonFiniteError, match=r"node 'a' \(op 'exp'"):
        prog.solve(x=x, s=1.0)
    # a scalar chain: the first non-finite scalar is named
    prog = lp.trace(lambda t: lp.exp(lp.sqrt(t - 2.0) + 1.0) * 0.0, t=1.0)
    with pytest.raises(lp.NonFiniteError, match=r"'sqrt_\d+'"):
        prog.solve(t=1.0)
    # large finite values whose square sum overflows are not an error
    prog = lp.trace(lambda y: lp.sum(y * 1e150) * 1e-160, y=np.ones(10_000))
    assert np.allclose(prog.solve(y=np.ones(10_000)).grad["y"], 1e-10)


# ------------------------------------------------------------------ Solution views
def test_grad_views_are_read_only_and_consistent():
    prog = _prog()
    w = np.linspace(0.0, 1.0, 5000)
    sol = prog.solve(x=0.5, w=w)
    g = sol.grad["w"]
    with pytest.raises(ValueError):
        g[0] = 1.0
    assert np.array_equal(g, sol.multipliers["w"])
    assert type(sol.grad["x"]) is np.float64
    np.testing.assert_allclose(g, 0.5 / np.cosh(w * 0.5) ** 2, rtol=1e-14)     # d tanh(w/2)/dw


# ------------------------------------------------------------------ in-place partials
def _check_against_autograd(f_lp, f_ag, *args):
    prog = lp.trace(f_lp, *args)
    names = prog.compile().input_names
    sol = prog.solve(**dict(zip(names, args)))
    for k, name in enumerate(names):
        ref = autograd.grad(f_ag, k)(*args)
        np.testing.assert_allclose(sol.grad[name], ref, rtol=1e-12, atol=1e-14)
    return prog, sol


@pytest.mark.parametrize("n", [7, 20_000])
def test_inplace_partials_match_autograd_and_leave_values_alone(n, rng):
    x = rng.standard_normal(n)
    y = rng.standard_normal(n)

    def f(m, logaddexp, sigmoid):
        def g(x, y):
            a = m.tanh(x * y)
            b = sigmoid(a + y)
            c = logaddexp(0.0, x) + logaddexp(y, 0.5 * x)
            e = m.exp(x * 0.1)            # the exp partial is its own value: must not be scaled in place
            return m.sum(a * b + c * e + m.sin(e))
        return g
    sig = lambda z: 1.0 / (1.0 + anp.exp(-z))   # noqa: E731
    prog, sol = _check_against_autograd(f(lp, lambda a, b: lp.logaddexp(a, b), lp.sigmoid),
                                        f(anp, anp.logaddexp, sig), x, y)
    # the values the adjoint read its partials from are still what the forward made
    a = np.tanh(x * y)
    assert np.array_equal(sol.values["a"], a)
    assert np.array_equal(sol.values["b"], scipy.special.expit(a + y))
    assert np.array_equal(sol.values["c"], np.logaddexp(0.0, x) + np.logaddexp(y, 0.5 * x))
    assert np.array_equal(sol.values["e"], np.exp(x * 0.1))
    again = prog.solve(**{k: sol.values[k] for k in prog.compile().input_names})
    for k in sol.values:
        assert np.array_equal(sol.values[k], again.values[k]) and np.array_equal(
            sol.multipliers[k], again.multipliers[k]), k


def test_scalar_partials_unchanged():
    fs = (lambda t: lp.tanh(t), lambda t: lp.sigmoid(t), lambda t: lp.logaddexp(0.0, t),
          lambda t: lp.logaddexp(t, 2.0 * t))
    refs = (lambda t: 1.0 - np.tanh(t) ** 2, lambda t: scipy.special.expit(t) * (1.0 - scipy.special.expit(t)),
            lambda t: scipy.special.expit(t),
            lambda t: (np.exp(t) + 2.0 * np.exp(2.0 * t)) / (np.exp(t) + np.exp(2.0 * t)))
    for f, ref in zip(fs, refs):
        sol = lp.trace(f, t=0.3).solve(t=0.3)
        assert type(sol.grad["t"]) is np.float64
        assert abs(float(sol.grad["t"]) - ref(0.3)) < 1e-15


# ------------------------------------------------------------------ buffer reuse between solves
N_POOL = 128   # 128 x 128 = POOL_MIN entries: the matrices below take the pooled paths


def _mlp_prog(rng):
    X = rng.standard_normal((N_POOL, 20))
    W1, W2 = rng.standard_normal((20, N_POOL)) / 4, rng.standard_normal((N_POOL, N_POOL)) / 11

    def f(m):
        def mlp(W1, W2, b):
            h = m.tanh(X @ W1 + b)
            z = m.tanh(h @ W2)
            return m.sum(z * z) / N_POOL
        return mlp
    prog = lp.trace(f(lp), W1=W1, W2=W2, b=np.zeros(N_POOL))
    return prog, f(anp), dict(W1=W1, W2=W2, b=0.1 * rng.standard_normal(N_POOL))


def _copy(sol):
    return ({k: np.array(v) for k, v in sol.values.items()}, {k: np.array(v) for k, v in sol.multipliers.items()})


def _same(sol, copy):
    vals, mults = copy
    return all(np.array_equal(sol.values[k], v) for k, v in vals.items()) and all(
        np.array_equal(sol.multipliers[k], v) for k, v in mults.items())


def test_pooled_paths_match_autograd_and_a_fresh_program(rng):
    prog, f_ag, p = _mlp_prog(rng)
    from lagrangeprop.compile.plan import plan_of
    assert plan_of(prog.compile()).nbufs >= 6      # values and matmul cotangents are pooled
    first = prog.solve(**p)
    ref = _copy(first)
    del first
    for _ in range(3):                              # later solves write into reused buffers
        sol = prog.solve(**p)
        assert _same(sol, ref)
        del sol
    fresh = lp.Program.from_json(prog.to_json()).solve(**p)
    assert _same(fresh, ref)
    names = ["W1", "W2", "b"]
    for k, name in enumerate(names):
        g = autograd.grad(f_ag, k)(*[p[n] for n in names])
        np.testing.assert_allclose(ref[1][name], g, rtol=1e-12, atol=1e-15)


def test_buffers_are_reused_only_when_nothing_else_refers_to_them(rng):
    prog, _, p = _mlp_prog(rng)
    from lagrangeprop.compile import buffers
    from lagrangeprop.compile.plan import plan_of
    plan = plan_of(prog.compile())
    kept = prog.solve(**p)                        # a Solution the user keeps
    kept_copy = _copy(kept)
    grads = prog.solve(**p).grad                  # only the grad dict kept (views of multipliers)
    grads_copy = {k: np.array(v) for k, v in grads.items()}
    out_val = lp.trace(lambda W2: lp.tanh(W2 * 2.0), W2=p["W2"]).evaluate(W2=p["W2"])
    p2 = {k: v + 0.5 for k, v in p.items()}
    for q in (p2, p, p2):                         # other inputs: every buffer would change if reused
        s = prog.solve(**q)
        del s
    assert _same(kept, kept_copy)
    assert all(np.array_equal(grads[k], v) for k, v in grads_copy.items())
    assert np.array_equal(out_val, np.tanh(p["W2"] * 2.0))
    # a value of a kept Solution passed back as an input is read, not overwritten
    h = kept.values["h"]
    prog2 = lp.trace(lambda h, W2: lp.sum(lp.tanh(h @ W2)), h=h, W2=p["W2"])
    for _ in range(2):
        g = prog2.solve(h=h, W2=p["W2"]).grad
    assert np.array_equal(h, kept_copy[0]["h"])
    assert np.allclose(g["W2"], h.T @ (1.0 - np.tanh(h @ p["W2"]) ** 2))
    if buffers.REUSE:                             # and reuse does happen once nothing refers to them
        del kept, grads
        pooled = {id(b) for b in plan.bufs if b is not None}
        sol = prog.solve(**p)
        assert any(id(v) in pooled for v in sol._vals if isinstance(v, np.ndarray))
        assert _same(sol, kept_copy)


def test_matmul_fast_path_is_the_rule(rng):
    from lagrangeprop.rules.registry import get
    a, b = rng.standard_normal((130, 140)), rng.standard_normal((140, 150))
    prog = lp.trace(lambda a, b: lp.sum(lp.sin(a @ b)), a=a, b=b)
    sol = prog.solve(a=a, b=b)
    ans = a @ b
    g = np.cos(ans)
    mm = get("matmul")
    assert np.array_equal(sol.values[[k for k in sol.values if k.startswith("matmul")][0]], ans)
    assert np.array_equal(sol.grad["a"], mm.vjp(0, g, ans, [a, b], {}))
    assert np.array_equal(sol.grad["b"], mm.vjp(1, g, ans, [a, b], {}))
    # both arguments the same node: the two cotangents add up
    sol = lp.trace(lambda a: lp.sum(lp.sin(a @ a)), a=a[:, :130]).solve(a=a[:, :130].copy())
    s = a[:, :130]
    g = np.cos(s @ s)
    assert np.array_equal(sol.grad["a"], mm.vjp(0, g, s @ s, [s, s], {}) + mm.vjp(1, g, s @ s, [s, s], {}))


# ------------------------------------------------------------------ scalar steps inline
def test_scalar_chain_matches_autograd():
    def f(m):
        def chain(x, y):
            v = x
            for k in range(40):
                r = k % 8
                if r == 0:
                    v = m.sin(v)
                elif r == 1:
                    v = v * 1.01
                elif r == 2:
                    v = v + 0.1
                elif r == 3:
                    v = m.tanh(v)
                elif r == 4:
                    v = 0.5 - v            # a -1 partial
                elif r == 5:
                    v = v * y              # two differentiable arguments
                elif r == 6:
                    v = -v + m.exp(v * 0.1)
                else:
                    v = v / (1.0 + y * y)
            return v
        return chain
    prog = lp.trace(f(lp), x=0.3, y=0.7)
    for x, y in ((0.3, 0.7), (-1.2, 0.4)):
        sol = prog.solve(x=x, y=y)
        for k, name in enumerate(["x", "y"]):
            ref = autograd.grad(f(anp), k)(x, y)
            assert abs(float(sol.grad[name]) - ref) <= 1e-13 * max(1.0, abs(ref)), (name, sol.grad[name], ref)
            assert type(sol.grad[name]) is np.float64


def test_int_and_huge_int_inputs():
    prog = lp.trace(lambda x: x * x, x=1.0)
    assert prog.solve(x=3).grad["x"] == 6.0
    with pytest.raises(lp.InputError, match="'x' must be a real number"):
        prog.solve(x=10**400)


# ------------------------------------------------- lp.grad's common call shape
def _fast_taken(wrapped_f, args) -> bool:
    """Whether ``lp.grad(f)``'s trace cache answers ``args`` on its fast path (cache.traced)."""
    from lagrangeprop.transforms.cache import traced
    lookup = traced(wrapped_f)
    lookup(*args)
    return lookup.fast(args) is not None


def _two(x, w):
    return lp.sum(lp.tanh(w * x)) + lp.sin(x) * x


@pytest.mark.parametrize("argnum", [0, 1, (0, 1), (1, 0), -1])
@pytest.mark.parametrize("x", [0.5, np.float64(0.5), np.array(0.5)])
def test_fast_call_shape_is_the_general_path_bit_for_bit(argnum, x, rng):
    """Positional float / float64 leaves take the fast path; keywords, ints, float32 and
    trees take the general one; both give the same numbers, types and dtypes, and both agree
    with HIPS autograd."""
    w = rng.normal(size=4)
    assert _fast_taken(_two, (x, w))
    assert not _fast_taken(_two, (1, w)) and not _fast_taken(_two, (x, w.astype(np.float32)))
    fast = lp.value_and_grad(_two, argnum)
    fast(x, w)                               # traces: the next call is a cache hit
    v1, g1 = fast(x, w)
    v2, g2 = lp.value_and_grad(_two, argnum)(x=x, w=w)   # keywords: the general path
    g3 = lp.grad(_two, argnum)(x, w)
    ref = autograd.grad(lambda a, b: anp.sum(anp.tanh(b * a)) + anp.sin(a) * a,
                        argnum)(float(x), w)
    assert type(v1) is type(v2) and v1 == v2
    pairs = list(zip(g1, g2, g3, ref)) if isinstance(argnum, tuple) else [(g1, g2, g3, ref)]
    assert type(g1) is type(g2) is type(g3)
    for a, b, c, r in pairs:
        assert type(a) is type(b) is type(c) and np.shape(a) == np.shape(b)
        assert np.array_equal(a, b) and np.array_equal(a, c)
        np.testing.assert_allclose(a, r, rtol=1e-13, atol=1e-15)


SHIFT = 1.0


def _shifted(x):
    return (x - SHIFT) ** 2


def test_fast_call_shape_still_runs_the_guard(rng):
    """The fast path reuses a trace only after its guard: a rebound global or an array
    edited in place re-traces (the closed form 2(x - s))."""
    global SHIFT
    df = lp.grad(_shifted)
    assert float(df(3.0)) == 4.0 and float(df(3.0)) == 4.0
    try:
        SHIFT = 2.0
        assert float(df(3.0)) == 2.0
    finally:
        SHIFT = 1.0
    W = rng.normal(size=3)
    dg = lp.grad(lambda x: lp.sum(W * x ** 2))
    x = rng.normal(size=3)
    np.testing.assert_array_equal(dg(x), 2 * W * x)
    W[1] = 10.0
    np.testing.assert_array_equal(dg(x), 2 * W * x)
    assert _fast_taken(_shifted, (3.0,))
