"""End-to-end acyclic programs: blog example, seed programs, every op through a Program.

References: hand-derived derivatives, HIPS autograd (its own rules), central differences.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp as ag_logsumexp

import lagrangeprop as lp

# ------------------------------------------------------------------ blog example


def blog(x):
    a = lp.exp(x)
    b = a**2
    c = a + b
    d = lp.exp(c)
    e = lp.sin(c)
    return d + e


def test_blog_value_gradient_and_every_multiplier():
    x = 0.5
    sol = lp.trace(blog, x=x).solve(x=x)
    a = np.exp(x)
    b = a * a
    c = a + b
    # hand-derived multipliers λ_v = ∂f/∂z_v
    lam_d = lam_e = 1.0
    lam_c = np.exp(c) * lam_d + np.cos(c) * lam_e
    lam_b = lam_c
    lam_a = lam_c + 2 * a * lam_b
    lam_x = a * lam_a
    assert sol.output == pytest.approx(np.exp(c) + np.sin(c), rel=1e-15)
    expected = {"x": lam_x, "a": lam_a, "b": lam_b, "c": lam_c, "d": lam_d, "e": lam_e}
    for name, value in expected.items():
        assert sol.multipliers[name] == pytest.approx(value, rel=1e-13), name
    assert sol.grad["x"] == sol.multipliers["x"]
    assert sol.values["c"] == pytest.approx(c, rel=1e-15)
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10


def test_blog_spec_example_with_numpy_ufuncs():
    def f(x):
        a = np.exp(x); b = a**2; c = a + b
        return np.exp(c) + np.sin(c)
    g_lp = lp.grad(f)(0.5)
    g_ag = autograd.grad(lambda x: anp.exp(anp.exp(x) + anp.exp(x) ** 2) + anp.sin(anp.exp(x) + anp.exp(x) ** 2))(0.5)
    assert g_lp == pytest.approx(g_ag, rel=1e-13)
    prog = lp.trace(f, x=0.5)
    assert float(prog.evaluate(x=0.5)) == pytest.approx(77.8661555019519, rel=1e-14)
    assert "multiplier" in prog.solve(x=0.5).report()


def test_report_lists_every_node_with_value_and_multiplier():
    sol = lp.trace(blog, x=0.5).solve(x=0.5)
    rep = sol.report()
    for name in ["x", "a", "b", "c", "d", "e", "out"]:
        assert any(line.split()[0] == name for line in rep.splitlines()[2:]), name
    assert "555.97196" in rep


# ------------------------------------------------------------------ seed programs


def taylor_loss(c, a, xs, ys):
    k = np.arange(c.shape[0])
    p = lp.sum(c * (xs[:, None] - a) ** k, axis=1)
    return lp.mean((p - ys) ** 2)


def ag_taylor_loss(c, a, xs, ys):
    k = np.arange(c.shape[0])
    p = anp.sum(c * (xs[:, None] - a) ** k, axis=1)
    return anp.mean((p - ys) ** 2)


def test_taylor_fit_gradient_wrt_coefficients_and_center(rng):
    xs = np.linspace(-1, 2, 40)
    ys = np.sin(xs)
    c = rng.normal(size=9) * 0.3
    a = 0.4
    f = lambda c, a: taylor_loss(c, a, xs, ys)  # noqa: E731
    prog = lp.trace(f, c=c, a=a)
    sol = prog.solve(c=c, a=a)
    gc = autograd.grad(ag_taylor_loss, 0)(c, a, xs, ys)
    ga = autograd.grad(ag_taylor_loss, 1)(c, a, xs, ys)
    np.testing.assert_allclose(sol.grad["c"], gc, rtol=1e-11)
    assert sol.grad["a"] == pytest.approx(ga, rel=1e-11)
    # the center's derivative by central differences too
    h = 1e-6
    fd = (float(prog.evaluate(c=c, a=a + h)) - float(prog.evaluate(c=c, a=a - h))) / (2 * h)
    assert sol.grad["a"] == pytest.approx(fd, rel=1e-6)
    assert sol.kkt()["adjoint"] <= 1e-10 and sol.kkt()["primal"] <= 1e-10


def test_logistic_regression_closed_form(rng):
    N, d = 200, 5
    X = rng.normal(size=(N, d))
    y = (rng.random(N) < 0.5).astype(float)
    w0 = rng.normal(size=d)

    def loss(w):
        z = X @ w
        return lp.mean(lp.logaddexp(0.0, z) - y * z)

    sol = lp.trace(loss, w=w0).solve(w=w0)
    p = 1 / (1 + np.exp(-X @ w0))
    np.testing.assert_allclose(sol.grad["w"], X.T @ (p - y) / N, rtol=1e-12, atol=1e-15)
    assert sol.output == pytest.approx(np.mean(np.logaddexp(0, X @ w0) - y * (X @ w0)), rel=1e-14)
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10


def mlp(W1, b1, W2, b2, W3, b3, X, Y, xp):
    h1 = xp.tanh(X @ W1 + b1)
    h2 = xp.tanh(h1 @ W2 + b2)
    logits = h2 @ W3 + b3
    logp = logits - (lp.logsumexp(logits, axis=1, keepdims=True) if xp is lp
                     else ag_logsumexp(logits, axis=1, keepdims=True))
    return -xp.mean(xp.sum(Y * logp, axis=1))


def test_two_hidden_layer_mlp_vs_autograd(rng):
    X = rng.normal(size=(16, 6))
    Y = np.eye(3)[rng.integers(0, 3, 16)]
    params = [rng.normal(size=s) * 0.5 for s in [(6, 8), (8,), (8, 7), (7,), (7, 3), (3,)]]
    names = ["W1", "b1", "W2", "b2", "W3", "b3"]
    prog = lp.trace(lambda W1, b1, W2, b2, W3, b3: mlp(W1, b1, W2, b2, W3, b3, X, Y, lp), *params)
    sol = prog.solve(**dict(zip(names, params)))
    for i, n in enumerate(names):
        ref = autograd.grad(lambda *p: mlp(*p, X, Y, anp), i)(*params)
        np.testing.assert_allclose(sol.grad[n], ref, rtol=1e-10, atol=1e-14, err_msg=n)
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10


def test_softmax_cross_entropy_with_lp_softmax(rng):
    Z = rng.normal(size=(4, 5))
    Y = np.eye(5)[[0, 3, 1, 4]]

    def f(Z):
        return -lp.sum(Y * lp.log(lp.softmax(Z, axis=1)))

    def ref(Z):
        return -anp.sum(Y * (Z - ag_logsumexp(Z, axis=1, keepdims=True)))

    np.testing.assert_allclose(lp.grad(f)(Z), autograd.grad(ref)(Z), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------- every op through a Program

OPS = {
    "add": (lambda x, y: x + y, lambda x, y: x + y),
    "subtract": (lambda x, y: x - y, lambda x, y: x - y),
    "multiply": (lambda x, y: x * y, lambda x, y: x * y),
    "divide": (lambda x, y: x / (y + 3.0), lambda x, y: x / (y + 3.0)),
    "power": (lambda x, y: (x + 3.0) ** y, lambda x, y: (x + 3.0) ** y),
    "negative": (lambda x, y: -x * y, lambda x, y: -x * y),
    "exp": (lambda x, y: lp.exp(x) * y, lambda x, y: anp.exp(x) * y),
    "log": (lambda x, y: lp.log(x + 3.0) * y, lambda x, y: anp.log(x + 3.0) * y),
    "log1p": (lambda x, y: lp.log1p(x + 1.5) * y, lambda x, y: anp.log1p(x + 1.5) * y),
    "sqrt": (lambda x, y: lp.sqrt(x + 3.0) * y, lambda x, y: anp.sqrt(x + 3.0) * y),
    "sin": (lambda x, y: lp.sin(x) * y, lambda x, y: anp.sin(x) * y),
    "cos": (lambda x, y: lp.cos(x) * y, lambda x, y: anp.cos(x) * y),
    "tan": (lambda x, y: lp.tan(x * 0.3) * y, lambda x, y: anp.tan(x * 0.3) * y),
    "tanh": (lambda x, y: lp.tanh(x) * y, lambda x, y: anp.tanh(x) * y),
    "sigmoid": (lambda x, y: lp.sigmoid(x) * y, lambda x, y: 1 / (1 + anp.exp(-x)) * y),
    "abs": (lambda x, y: abs(x) * y, lambda x, y: anp.abs(x) * y),
    "maximum": (lambda x, y: lp.maximum(x, y), lambda x, y: anp.maximum(x, y)),
    "minimum": (lambda x, y: lp.minimum(x, y), lambda x, y: anp.minimum(x, y)),
    "where": (lambda x, y: lp.where(x > y, x * y, x + y), lambda x, y: anp.where(x > y, x * y, x + y)),
    "logaddexp": (lambda x, y: lp.logaddexp(x, y), lambda x, y: anp.logaddexp(x, y)),
}


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("shapes", [((), ()), ((3,), ()), ((2, 3), (3,)), ((3, 1), (1, 4))])
def test_elementwise_op_gradients_vs_autograd_and_fd(name, shapes, rng):
    f_lp, f_ag = OPS[name]
    x = rng.normal(size=shapes[0])
    y = rng.normal(size=shapes[1])
    if name == "power":
        y = np.abs(y) + 0.5
    prog = lp.trace(lambda x, y: lp.sum(f_lp(x, y) ** 2), x=x, y=y)
    sol = prog.solve(x=x, y=y)
    ref = lambda x, y: anp.sum(f_ag(x, y) ** 2)  # noqa: E731
    gx, gy = autograd.grad(ref, 0)(x, y), autograd.grad(ref, 1)(x, y)
    np.testing.assert_allclose(sol.grad["x"], gx, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sol.grad["y"], gy, rtol=1e-10, atol=1e-13)
    # directional central difference
    u, v = rng.normal(size=np.shape(x)), rng.normal(size=np.shape(y))
    h = 1e-6
    fd = (float(prog.evaluate(x=x + h * u, y=y + h * v)) - float(prog.evaluate(x=x - h * u, y=y - h * v))) / (2 * h)
    lin = float(np.sum(sol.grad["x"] * u) + np.sum(sol.grad["y"] * v))
    assert lin == pytest.approx(fd, rel=1e-5, abs=1e-7)
    assert sol.kkt()["adjoint"] <= 1e-10


TENSOR_CASES = {
    "sum_axis": (lambda A, B: lp.sum(lp.sum(A * B, axis=0) ** 2), lambda A, B: anp.sum(anp.sum(A * B, axis=0) ** 2)),
    "mean_keepdims": (lambda A, B: lp.sum(A / lp.mean(B ** 2, axis=1, keepdims=True)),
                      lambda A, B: anp.sum(A / anp.mean(B ** 2, axis=1, keepdims=True))),
    "matmul": (lambda A, B: lp.sum(lp.tanh(A @ B.T)), lambda A, B: anp.sum(anp.tanh(A @ B.T))),
    "dot_vec": (lambda A, B: lp.dot(A[0], B[1]) ** 2, lambda A, B: anp.dot(A[0], B[1]) ** 2),
    "reshape_T": (lambda A, B: lp.sum(lp.reshape(A, (4, 3)).T @ lp.reshape(B, (4, 3))),
                  lambda A, B: anp.sum(anp.reshape(A, (4, 3)).T @ anp.reshape(B, (4, 3)))),
    "concat_stack": (lambda A, B: lp.sum(lp.concatenate([A, B], axis=1) ** 3) + lp.sum(lp.stack([A, B]) ** 2),
                     lambda A, B: anp.sum(anp.concatenate([A, B], axis=1) ** 3) + anp.sum(anp.stack([A, B]) ** 2)),
    "getitem_fancy": (lambda A, B: lp.sum(A[np.array([0, 0, 2]), 1:3] * B[1, None, 1:3]),
                      lambda A, B: anp.sum(A[np.array([0, 0, 2]), 1:3] * B[1, None, 1:3])),
    "logsumexp_softmax": (lambda A, B: lp.logsumexp(A, axis=1)[0] + lp.sum(lp.softmax(B, axis=0) * A),
                          lambda A, B: ag_logsumexp(A, axis=1)[0]
                          + anp.sum(anp.exp(B - ag_logsumexp(B, axis=0, keepdims=True)) * A)),
    "np_functions": (lambda A, B: np.sum(np.transpose(A) @ B) + np.mean(np.where(A > 0, A, 0.0)),
                     lambda A, B: anp.sum(anp.transpose(A) @ B) + anp.mean(anp.where(A > 0, A, 0.0))),
}


@pytest.mark.parametrize("name", sorted(TENSOR_CASES))
def test_tensor_op_gradients_vs_autograd(name, rng):
    A, B = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    f_lp, f_ag = TENSOR_CASES[name]
    sol = lp.trace(f_lp, A=A, B=B).solve(A=A, B=B)
    np.testing.assert_allclose(sol.grad["A"], autograd.grad(f_ag, 0)(A, B), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sol.grad["B"], autograd.grad(f_ag, 1)(A, B), rtol=1e-10, atol=1e-13)


def test_sparse_constant_matmul(rng):
    import scipy.sparse as sp
    W = sp.random(30, 20, density=0.1, random_state=np.random.RandomState(0), format="csr")
    x = rng.normal(size=20)
    sol = lp.trace(lambda x: lp.sum(lp.tanh(lp.matmul(W, x)) ** 2), x=x).solve(x=x)
    Wd = W.toarray()
    ref = autograd.grad(lambda x: anp.sum(anp.tanh(Wd @ x) ** 2))(x)
    np.testing.assert_allclose(sol.grad["x"], ref, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------- API conveniences


def test_value_and_grad_argnum_and_no_retrace(rng):
    calls = []

    def f(x, y):
        calls.append(1)
        return lp.sum(x * y) + lp.sum(lp.sin(x))

    vg = lp.value_and_grad(f, argnum=(0, 1))
    for _ in range(3):
        x, y = rng.normal(size=4), rng.normal(size=4)
        v, (gx, gy) = vg(x, y)
        assert v == pytest.approx(np.sum(x * y) + np.sum(np.sin(x)), rel=1e-14)
        np.testing.assert_allclose(gx, y + np.cos(x), rtol=1e-14)
        np.testing.assert_allclose(gy, x, rtol=1e-14)
    assert len(calls) == 1, "the program must be traced once and solved many times"
    assert lp.grad(f, argnum=1)(x, y).shape == (4,)


def test_grad_shape_matches_input_and_scalar_input():
    g = lp.grad(lambda x: x**2)(3.0)
    assert np.shape(g) == () and float(g) == 6.0
    g = lp.grad(lambda x: lp.sum(x**2))(np.ones((2, 3)))
    assert g.shape == (2, 3)


def test_plain_numbers_evaluate_numerically():
    assert float(lp.exp(0.0)) == 1.0
    assert float(lp.sum(np.arange(4.0))) == 6.0


def test_solve_again_with_new_inputs_reuses_schedule(rng):
    prog = lp.trace(lambda x: lp.sum(lp.exp(x)), x=np.zeros(3))
    s1 = prog.compile()
    for _ in range(3):
        x = rng.normal(size=3)
        np.testing.assert_allclose(prog.solve(x=x).grad["x"], np.exp(x), rtol=1e-15)
    assert prog.compile() is s1


def test_non_scalar_output_with_seed(rng):
    x = rng.normal(size=3)
    prog = lp.trace(lambda x: lp.sin(x) * 2.0, x=x)
    seed = rng.normal(size=3)
    sol = prog.solve(x=x, seed=seed)
    np.testing.assert_allclose(sol.grad["x"], 2 * np.cos(x) * seed, rtol=1e-15)
    np.testing.assert_allclose(prog.evaluate(x=x), 2 * np.sin(x))


# ------------------------------------------------------------------ user primitives


def test_user_primitive_in_a_program_with_vjp(rng):
    def cube_vjp(g, ans, x):
        return (g * 3 * x**2,)

    cube = lp.primitive("test_cube", lambda x: x**3, vjp=cube_vjp)
    x = rng.normal(size=4)
    sol = lp.trace(lambda x: lp.sum(cube(lp.sin(x))), x=x).solve(x=x)
    np.testing.assert_allclose(sol.grad["x"], 3 * np.sin(x) ** 2 * np.cos(x), rtol=1e-14)
    assert sol.kkt()["adjoint"] <= 1e-10


def test_user_primitive_without_rules_falls_back_to_central_differences(rng):
    with pytest.warns(UserWarning, match="central differences|finite diff"):
        sq = lp.primitive("test_softplus_norule", lambda x: np.log1p(np.exp(x)))
    x = rng.normal(size=3)
    sol = lp.trace(lambda x: lp.sum(sq(x) * x), x=x).solve(x=x)
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(sol.grad["x"], np.log1p(np.exp(x)) + x * sig, rtol=1e-7)


def test_reregistering_a_primitive_warns_and_replaces():
    lp.primitive("test_twice", lambda x: 2 * x, vjp=lambda g, ans, x: (2 * g,))
    with pytest.warns(UserWarning, match="test_twice"):
        twice = lp.primitive("test_twice", lambda x: 3 * x, vjp=lambda g, ans, x: (3 * g,))
    assert float(lp.grad(lambda x: twice(x))(1.0)) == 3.0


def test_sparse_matrix_operator_matmul_records_one_node(rng):
    import scipy.sparse as sp
    W = sp.random(8, 8, density=0.3, random_state=np.random.RandomState(2), format="csr")
    x = rng.normal(size=8)
    prog = lp.trace(lambda x: lp.sum(lp.tanh(W @ x)), x=x)
    ops = sorted(d.get("op") or d["role"] for _, d in prog.graph.nodes(data=True))
    assert ops == ["constant", "input", "matmul", "sum", "tanh"]
    np.testing.assert_allclose(prog.solve(x=x).grad["x"], (1 - np.tanh(W @ x) ** 2) @ W.toarray(), rtol=1e-13)
