"""Reductions, scans and order statistics (max, min, prod, cumsum, cumprod, var, std, ptp,
average, sort, partition, argmax/argmin/argsort, all/any/count_nonzero) against numpy's values
and autograd's derivatives (``check_grads``), ties, zeros, errors and a cyclic block."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from opcheck import check_grads, rng_for

import lagrangeprop as lp

X0 = np.array(0.7)
X1 = rng_for("reductions", 1).standard_normal(5)
X2 = rng_for("reductions", 2).standard_normal((3, 4))
X3 = rng_for("reductions", 3).standard_normal((2, 3, 4))
AXES = [None, 0, -1, (0, -1)]


def _cumprod(m, x, axis):
    """cumprod for autograd (it has no cumprod rule): products of the leading slices."""
    if m is np:
        return np.cumprod(x, axis=axis)
    axis %= x.ndim
    head = (slice(None),) * axis
    return m.stack([m.prod(x[head + (slice(0, k + 1),)], axis=axis) for k in range(x.shape[axis])],
                   axis=axis)


# ---------------------------------------------------------------- check_grads per op and axis
@pytest.mark.parametrize("x", [X2, X3], ids=["2d", "3d"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["max", "min", "amax", "amin", "prod"])
def test_extremes_and_prod(name, axis, keepdims, x):
    check_grads(lambda m, x: getattr(m, name)(x, axis=axis, keepdims=keepdims) ** 2, x,
                order=1 if name != "prod" else 2)


@pytest.mark.parametrize("x", [X0, X1], ids=["scalar", "vector"])
@pytest.mark.parametrize("name", ["max", "min", "prod", "cumsum", "sum"])
def test_scalars_and_vectors(name, x):
    check_grads(lambda m, x: m.sin(getattr(m, name)(x)), x)


@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std(name, axis, ddof):
    # autograd's var/std JVP breaks on a tuple axis (NameError in forward_grad_np_var)
    modes = ("rev",) if isinstance(axis, tuple) else ("rev", "fwd")
    x = rng_for("var", 3).standard_normal((3, 3, 4))   # no axis of length 2 (std piecewise linear)
    check_grads(lambda m, x: getattr(m, name)(x, axis=axis, ddof=ddof), x, modes=modes)
    check_grads(lambda m, x: getattr(m, name)(x, axis=axis, ddof=ddof, keepdims=True), x,
                modes=modes, order=1, lp_check=False)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_cumsum_cumprod(axis):
    check_grads(lambda m, x: m.cumsum(x, axis=axis), X3, order=1)
    ax = -1 if axis is None else axis
    flat = (lambda m, x: m.reshape(x, (-1,))) if axis is None else (lambda m, x: x)
    check_grads(lambda m, x: _cumprod(m, flat(m, x), ax) ** 2, X3[0])


def test_ptp_average_and_their_keywords():
    ref_ptp = lambda m, x, **k: m.max(x, **k) - m.min(x, **k)  # noqa: E731
    check_grads(lambda m, x: m.ptp(x, axis=1) if m is np else ref_ptp(m, x, axis=1), X3)
    check_grads(lambda m, x: m.ptp(x, keepdims=True) if m is np else ref_ptp(m, x, keepdims=True), X2)
    w = np.arange(1.0, 4.0)

    def avg(m, x, w):
        if m is np:
            return np.average(x, axis=1, weights=w)
        return m.sum(x * w[:, None], axis=1) / m.sum(w)
    check_grads(avg, X3, w)
    check_grads(lambda m, x: m.average(x, axis=(0, 2)) if m is np else m.mean(x, axis=(0, 2)), X3)
    avg_, scl = lp.average(X3, axis=1, weights=w, returned=True)
    want_avg, want_scl = np.average(X3, axis=1, weights=w, returned=True)
    np.testing.assert_allclose(avg_, want_avg, rtol=1e-13)
    np.testing.assert_array_equal(scl, want_scl)
    f = lambda x: lp.average(x, axis=0, returned=True)[1] * lp.average(x, axis=0)  # noqa: E731
    np.testing.assert_allclose(lp.trace(f, x=X2).evaluate(x=X2), 3 * np.mean(X2, axis=0), rtol=1e-13)


@pytest.mark.parametrize("x", [X1, X3[0, 0]], ids=["5", "4"])
@pytest.mark.parametrize("name", ["sort", "partition"])
def test_sort_partition_1d(name, x):
    args = (2,) if name == "partition" else ()
    check_grads(lambda m, x: getattr(m, name)(x, *args) * np.arange(1.0, x.size + 1), x)


@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_sort_along_any_axis_is_the_rowwise_sort(axis):
    # autograd sorts only 1-D arrays: the reference sorts each line (or the flat array)
    def f(m, x):
        if m is np:
            return np.sort(x, axis=axis) ** 3
        if axis is None:
            return m.sort(m.reshape(x, (-1,))) ** 3
        moved = m.moveaxis(x, axis, -1)
        lines = m.reshape(moved, (-1, moved.shape[-1]))
        out = m.stack([m.sort(lines[k]) for k in range(lines.shape[0])])
        return m.moveaxis(m.reshape(out, moved.shape), -1, axis) ** 3
    check_grads(f, X3)


def test_integer_and_boolean_results_have_zero_derivative():
    def f(m, x):
        idx = m.argmax(x, axis=1) + m.argmin(x, axis=-1, keepdims=False) + m.argsort(x)[:, 0]
        mask = m.all(x > -1.5, axis=0) | m.any(x > 1.0, axis=0)
        return idx * m.sum(x ** 2, axis=1) + m.sum(m.where(mask, x, -x)) + m.count_nonzero(x > 0)
    check_grads(f, X2)
    for op in (np.argmax, np.argmin):
        p = lp.trace(lambda x, op=op: op(x, axis=0, keepdims=True), x=X2)
        np.testing.assert_array_equal(p.evaluate(x=X2), op(X2, axis=0, keepdims=True))
    p = lp.trace(lambda x: np.count_nonzero(x > 0, axis=(0, 1)), x=X3)
    np.testing.assert_array_equal(p.evaluate(x=X3), np.count_nonzero(X3 > 0, axis=(0, 1)))


def test_methods():
    def f(m, x):
        if m is anp:   # the reference: the same reductions as functions (ArrayBox lacks them)
            return (m.max(x, 1) + m.min(x, 0)[:3] + m.prod(x, -1) + m.max(x, 1) - m.min(x, 1)
                    + m.cumsum(x, 1)[:, -1] + m.var(x, 1) + m.std(x, axis=1, ddof=1) + m.prod(x, 1)
                    + (m.argmax(x, 1) + m.argmin(x, 1) + m.argsort(x, 1)[:, 0]) * 1.0
                    + m.all(x, 1) + m.any(x, 1))
        ptp = x.ptp(1) if isinstance(x, lp.Var) else np.ptp(x, 1)   # numpy 2 dropped ndarray.ptp
        return (x.max(1) + x.min(axis=0)[:3] + x.prod(axis=-1) + ptp
                + x.cumsum(1)[:, -1] + x.var(1) + x.std(axis=1, ddof=1) + x.cumprod(1)[:, -1]
                + (x.argmax(1) + x.argmin(1) + x.argsort(1)[:, 0]) * 1.0 + x.all(1) + x.any(1))
    check_grads(f, X2)
    with pytest.raises(lp.GraphError, match=r"in place.*np\.sort"):
        lp.trace(lambda x: x.sort(), x=X1)


# ---------------------------------------------------------------- ties and zeros
def _against_autograd(f, x):
    """vjp and jvp of ``f`` against autograd where central differences do not apply (ties)."""
    rng = rng_for("ties", np.shape(x))
    value, vjp = lp.vjp(lambda x: f(np, x), x)
    np.testing.assert_allclose(value, f(np, x), rtol=1e-14)
    g, u = rng.standard_normal(np.shape(value)), rng.standard_normal(np.shape(x))
    np.testing.assert_allclose(vjp(g)[0], autograd.make_vjp(lambda x: f(anp, x))(x)[0](g), rtol=1e-12)
    t = lp.jvp(lambda x: f(np, x), (x,), (u,))[1]
    np.testing.assert_allclose(t, autograd.make_jvp(lambda x: f(anp, x))(x)(u)[1], rtol=1e-12)
    # both tapes split ties too (central differences do not apply at a tie)
    assert lp.check(lp.trace(lambda x: f(np, x), x=x), x=x, against=("autograd", "torch")).ok


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)], ids=str)
def test_max_min_ties_split_the_cotangent(axis):
    x = np.array([[1.0, 3.0, 3.0], [3.0, -2.0, -2.0]])
    _against_autograd(lambda m, x: m.max(x, axis=axis) * 2.0, x)
    _against_autograd(lambda m, x: m.min(x, axis=axis) * 2.0, x)
    g = lp.grad(lambda x: lp.max(x))(x)
    np.testing.assert_array_equal(g, [[0, 1 / 3, 1 / 3], [1 / 3, 0, 0]])


def test_max_initial_and_ties_with_initial():
    check_grads(lambda m, x: m.max(x, axis=1, initial=0.3) if m is np else
                m.maximum(m.max(x, axis=1), 0.3), X2, order=1)
    g = lp.grad(lambda x: np.max(x, initial=2.0))(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0])   # a tie with initial: x's entry gets it all
    assert float(lp.trace(lambda x: np.min(x, initial=-5.0), x=X1).evaluate(x=X1)) == -5.0


def test_sort_ties_follow_autograd():
    x = np.array([2.0, 1.0, 2.0, 0.0, 1.0])
    _against_autograd(lambda m, x: m.sort(x) * np.arange(1.0, 6.0), x)
    _against_autograd(lambda m, x: m.partition(x, 1) * np.arange(1.0, 6.0), x)


@pytest.mark.parametrize("x", [[0.0, 2.0, 3.0, -1.5], [0.0, 2.0, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0],
                               [[0.0, 2.0], [3.0, 0.0]]], ids=["one", "two", "three", "2d"])
def test_prod_is_exact_at_zeros(x):
    # autograd's prod VJP divides by x (NaN at zeros): the reference is a chain of multiplies
    x = np.array(x)

    def chain(x):
        flat = anp.reshape(x, (-1,))
        out = 1.0
        for k in range(flat.size):
            out = out * flat[k]
        return out
    np.testing.assert_array_equal(lp.grad(lambda x: np.prod(x))(x), autograd.grad(chain)(x))
    np.testing.assert_allclose(lp.hessian(lambda x: np.prod(x))(x), autograd.hessian(chain)(x),
                               rtol=1e-14, atol=0)
    assert lp.check(lp.trace(lambda x: 3.0 * np.prod(x, axis=0) + x, x=x), x=x).ok
    if x.ndim == 2:   # d/dx_ij of prod over one axis: the product of the other entries
        np.testing.assert_array_equal(lp.grad(lambda x: np.sum(np.prod(x, axis=0)))(x), [[3, 0], [0, 2]])
        np.testing.assert_array_equal(lp.grad(lambda x: np.sum(np.prod(x, axis=1)))(x), [[2, 0], [0, 3]])


def test_cumprod_is_exact_at_zeros():
    x = np.array([2.0, 0.0, 3.0, 4.0])
    g = lp.grad(lambda x: np.sum(np.cumprod(x)))(x)
    np.testing.assert_array_equal(g, [1.0, 2.0 + 6.0 + 24.0, 0.0, 0.0])   # autograd: NaN at 0


def test_std_at_a_constant_raises_and_a_single_entry_is_zero():
    with pytest.raises(lp.NonFiniteError, match="sqrt"):
        lp.grad(lambda x: np.std(x))(np.ones(4))
    np.testing.assert_array_equal(lp.grad(lambda x: np.sum(np.std(x, axis=0)))(X2[:1]), 0 * X2[:1])
    assert autograd.grad(lambda x: anp.sum(anp.std(x, axis=0)))(X2[:1]).tolist() == (0 * X2[:1]).tolist()


def test_hessians():
    for f in (lambda x: np.prod(x), lambda x: np.var(x, ddof=1), lambda x: np.std(x),
              lambda x: np.max(x) * np.sum(x ** 2), lambda x: np.sum(np.sort(x) ** 3 * X1)):
        want = autograd.hessian(_anp(f))(X1)
        np.testing.assert_allclose(lp.hessian(f)(X1), want, rtol=1e-10, atol=1e-12)


def _anp(f):
    """The same lambda evaluated with autograd.numpy (``np`` in its globals swapped)."""
    g = dict(f.__globals__, np=anp)
    return type(f)(f.__code__, g)


# ---------------------------------------------------------------- lists of traced values
def test_var_of_a_list_of_traced_values():
    f = lambda x: lp.var([x, x + 2.0, 2.0 * x])  # noqa: E731
    np.testing.assert_allclose(lp.trace(f, x=1.5).evaluate(x=1.5), np.var([1.5, 3.5, 3.0]), rtol=1e-14)
    np.testing.assert_allclose(lp.grad(f)(1.5), autograd.grad(lambda x: anp.var(anp.array([x, x + 2.0, 2.0 * x])))(1.5))
    g = lambda x: np.var([x, x + 2.0], axis=0)  # noqa: E731  numpy's own object-array var
    np.testing.assert_allclose(lp.trace(g, x=X1).evaluate(x=X1), np.var([X1, X1 + 2.0], axis=0))
    assert float(lp.value_and_grad(lambda x: np.sum(np.var([x, 3.0 * x], axis=0)))(X1)[0]) == \
        pytest.approx(np.sum(np.var([X1, 3 * X1], axis=0)), rel=1e-14)
    # numpy's own full reduction of a list (its _methods module, which sees no dtype on a Var)
    h = lambda x: np.var([x, x + 2.0, 2.0 * x]) + np.std([x, 3.0 * x]) + np.mean((x, x * x))  # noqa: E731
    np.testing.assert_allclose(lp.trace(h, x=1.5).evaluate(x=1.5), h(1.5), rtol=1e-14)
    np.testing.assert_allclose(lp.grad(h)(1.5), autograd.grad(
        lambda x: anp.var(anp.array([x, x + 2.0, 2.0 * x])) + anp.std(anp.array([x, 3.0 * x]))
        + anp.mean(anp.array([x, x * x])))(1.5), rtol=1e-13)
    np.testing.assert_allclose(lp.trace(lambda x: np.var(np.stack([x, x + 2.0])), x=1.5).evaluate(x=1.5), 1.0)
    np.testing.assert_allclose(lp.trace(lambda x: lp.max([x, 2.0 * x]), x=X1).evaluate(x=X1),
                               np.max([X1, 2 * X1]))


# ---------------------------------------------------------------- unsupported arguments
@pytest.mark.parametrize("call, word", [
    (lambda x: np.max(x, where=x > 0), "where"),
    (lambda x: np.max(x, out=np.zeros(())), "out"),
    (lambda x: np.prod(x, dtype=np.int64), "dtype"),
    (lambda x: np.max(x, initial=x[0]), "initial"),
    (lambda x: np.sort(x, order="f"), "order"),
    (lambda x: np.sort(x, kind="bogus"), "kind"),
    (lambda x: np.partition(x, 1, kind="bogus"), "kind"),
    (lambda x: np.cumsum(x, axis=(0,)), "axis"),
    (lambda x: np.argmax(x, axis=(0,)), "axis"),
    (lambda x: np.var(x, ddof=1, correction=1), "correction"),
    (lambda x: np.var(x, ddof=x[0]), "ddof"),
    (lambda x: x[np.argmax(x)], "index"),
    (lambda x: np.cumsum(x, dtype=np.int32), "dtype"),
    (lambda x: np.all(x, where=x > 0), "where"),
])
def test_unsupported_arguments_raise_graph_error(call, word):
    with pytest.raises(lp.GraphError, match=word):
        lp.trace(call, x=X1)


def test_axis_errors_and_kind_is_accepted():
    with pytest.raises(lp.ShapeError, match="axis 2"):
        lp.trace(lambda x: np.max(x, axis=2), x=X2)
    for kind in ("stable", "mergesort", "heapsort", "quicksort"):
        np.testing.assert_array_equal(lp.trace(lambda x, k=kind: np.sort(x, kind=k), x=X1).evaluate(x=X1),
                                      np.sort(X1))
    np.testing.assert_array_equal(lp.trace(lambda x: np.sort(x, stable=True), x=X1).evaluate(x=X1), np.sort(X1))


# ---------------------------------------------------------------- a cyclic block
@pytest.mark.parametrize("linear_solver", [None, "gmres"])
def test_cumsum_max_prod_in_a_residual_block(linear_solver):
    # r(w, x) = w³ + w + 0.1 cumsum(w) + 0.05 max(w) + 0.02 prod(w) - x = 0; out = Σ w² + var(w)
    n = 4
    prog = lp.Program(name="scan_block")
    x = prog.input("x", shape=(n,))
    w = prog.variable("w", shape=(n,))
    prog.residual(w, w ** 3 + w + 0.1 * np.cumsum(w) + 0.05 * np.max(w) + 0.02 * np.prod(w) - x)
    prog.output(np.sum(w ** 2) + np.var(w) + np.sort(w)[-1], name="out")
    x0 = np.array([0.3, -0.8, 1.1, 0.4])
    opts = {} if linear_solver is None else {"linear_solver": linear_solver}
    sol = prog.solve(x=x0, **opts)
    wv = sol.values["w"]
    np.testing.assert_allclose(wv ** 3 + wv + 0.1 * np.cumsum(wv) + 0.05 * wv.max() + 0.02 * wv.prod(), x0,
                               atol=1e-10)
    # implicit function theorem: dw/dx = A⁻¹, A = ∂r/∂w; grad = A⁻ᵀ ∂out/∂w
    A = np.diag(3 * wv ** 2 + 1) + 0.1 * np.tril(np.ones((n, n)))
    A[:, np.argmax(wv)] += 0.05
    A += 0.02 * np.array([[np.prod(np.delete(wv, j)) for j in range(n)]] * n)
    dout = 2 * wv + 2 * (wv - wv.mean()) / n + (np.arange(n) == np.argmax(wv))
    np.testing.assert_allclose(sol.grad["x"], np.linalg.solve(A.T, dout), rtol=1e-8)
    h = 1e-6
    fd = [(prog.evaluate(x=x0 + h * e) - prog.evaluate(x=x0 - h * e)) / (2 * h) for e in np.eye(n)]
    np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-6)
    if linear_solver is None:   # the tapes unroll the block (slow): once is enough
        assert lp.check(prog, x=x0, against=("autograd", "fd")).ok


def test_cumsum_in_a_define_cycle():
    prog = lp.Program(name="cycle")
    x = prog.input("x", shape=(3,))
    y = prog.variable("y", shape=(3,))
    prog.define(y, 0.2 * np.tanh(np.cumsum(y[::-1])) + x)
    prog.output(np.sum(np.cumsum(y) ** 2), name="out")
    x0 = np.array([0.5, -0.2, 0.1])
    sol = prog.solve(x=x0, linear_solver="gmres")
    h = 1e-6
    fd = [(prog.evaluate(x=x0 + h * e) - prog.evaluate(x=x0 - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-6)
    np.testing.assert_allclose(prog.solve(x=x0).grad["x"], sol.grad["x"], rtol=1e-9)
