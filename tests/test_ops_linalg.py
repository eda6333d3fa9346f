"""np.linalg on traced values: solve, inv, det, slogdet, cholesky, eigh, svd, norm, pinv,
matrix_power (issue 13), in autograd's ``check_grads`` style.

autograd has no forward-mode rules for np.linalg, so ``check_grads`` runs in reverse mode
here and :func:`check` adds the JVP against autograd's (reverse-mode) Jacobian. Norm orders
that autograd cannot differentiate are checked against numpy's algorithm written in
autograd's elementary ops (:func:`check_against`).
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from tests.opcheck import check_grads, rng_for


def check(fun, *args, order=2, **kwargs):
    """``check_grads`` (value, VJP, HVP, central differences, lp.check) plus the JVP."""
    check_grads(fun, *args, modes=("rev",), order=order, **kwargs)
    _check_jvp(lambda *a: fun(np, *a), lambda *a: fun(anp, *a), args)


def _check_jvp(f_np, f_ag, args, rtol=1e-8):
    rng = rng_for("jvp", [np.shape(a) for a in args])
    for i, x in enumerate(args):
        u = rng.standard_normal(np.shape(x))
        tangents = tuple(u if k == i else np.zeros(np.shape(a)) for k, a in enumerate(args))
        _, got = lp.jvp(f_np, tuple(args), tangents)
        J = autograd.jacobian(f_ag, i)(*args)
        want = np.tensordot(J, u, axes=np.ndim(u))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(want))),
                                   err_msg=f"jvp of argument {i}")


def evaluate(f, *args):
    """The traced program's value (inputs named after f's parameters)."""
    names = f.__code__.co_varnames[:len(args)]
    return lp.trace(f, *args).evaluate(**dict(zip(names, args)))


def check_against(f_np, f_ref, *args, order=2, rtol=1e-8):
    """``f_np`` (np.linalg) traced vs numpy's value and the autograd derivatives of ``f_ref``
    (autograd's own np.linalg rule is missing, or wrong for the case)."""
    np.testing.assert_allclose(evaluate(f_np, *args), f_np(*args), rtol=1e-13, atol=0)
    W = rng_for("against", [np.shape(a) for a in args]).standard_normal(np.shape(f_np(*args)))
    for i in range(len(args)):
        got = lp.grad(lambda *a: np.sum(f_np(*a) * W), argnum=i)(*args)
        want = autograd.grad(lambda *a: anp.sum(f_ref(*a) * W), i)(*args)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(want))))
    _check_jvp(f_np, f_ref, args, rtol)
    if order >= 2 and len(args) == 1:
        x = args[0]
        v = rng_for("v", np.shape(x)).standard_normal(np.shape(x))
        hv = lp.hvp(lambda x: np.sum(f_np(x) * W), x, v)
        ref = autograd.grad(lambda x: anp.sum(autograd.grad(lambda y: anp.sum(f_ref(y) * W))(x) * v))(x)
        np.testing.assert_allclose(hv, ref, rtol=1e-7, atol=1e-7 * max(1.0, np.max(np.abs(ref))))
    names = f_np.__code__.co_varnames[:len(args)]
    report = lp.check(lp.trace(f_np, *args), dict(zip(names, args)))
    assert report.ok, str(report)


def general(shape, key=0):
    """Well-conditioned square matrices (stacked over leading axes)."""
    n = shape[-1]
    return rng_for("general", shape, key).standard_normal(shape) + 2.0 * np.sqrt(n) * np.eye(n)


def spd(shape, key=0):
    x = rng_for("spd", shape, key).standard_normal(shape)
    return x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])


def rect(shape, key=0):
    return rng_for("rect", shape, key).standard_normal(shape)


# ---------------------------------------------------------------- solve
@pytest.mark.parametrize("ashape, bshape", [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 2)),
                                            ((1, 1), (1,))])
def test_solve(ashape, bshape):
    a, b = general(ashape), rect(bshape)
    check(lambda np, a, b: np.linalg.solve(a, b), a, b, order=2 if len(ashape) == 2 else 1)


# autograd's grad_solve does not sum over broadcast axes, and reads a 1-D b under a batch of
# matrices with numpy 1's rule: the reference broadcasts explicitly
@pytest.mark.parametrize("ashape, bshape", [((2, 3, 3), (3,)), ((2, 3, 3), (3, 2)), ((3, 3), (2, 3, 4)),
                                            ((2, 1, 3, 3), (4, 3, 1))])
def test_solve_broadcasts_as_numpy_2(ashape, bshape):
    a, b = general(ashape), rect(bshape)
    if len(bshape) == 1:
        def ref(a, b):
            return anp.linalg.solve(a, b[:, None] + anp.zeros(ashape[:-1] + (1,)))[..., 0]
    else:
        batch = np.broadcast_shapes(ashape[:-2], bshape[:-2])

        def ref(a, b):
            return anp.linalg.solve(a + anp.zeros(batch + ashape[-2:]), b + anp.zeros(batch + bshape[-2:]))
    check_against(lambda a, b: np.linalg.solve(a, b), ref, a, b)
    assert evaluate(lambda a, b: lp.linalg.solve(a, b), a, b).shape == np.linalg.solve(a, b).shape


def test_solve_reads_a_2d_b_as_columns_as_numpy_2():
    a, b = general((2, 3, 3)), rect((2, 3))   # (M, K) = (2, 3): does not fit a's M = 3
    with pytest.raises(lp.ShapeError):
        lp.trace(lambda a, b: np.linalg.solve(a, b), a, b)


# ---------------------------------------------------------------- inv, det, slogdet
@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 3, 3), (2, 1, 2, 2)])
def test_inv(shape):
    check(lambda np, a: np.linalg.inv(a), general(shape), order=2 if len(shape) <= 3 else 1)


@pytest.mark.parametrize("shape", [(3, 3), (2, 3, 3)])
def test_det(shape):
    check(lambda np, a: np.linalg.det(a), general(shape))


@pytest.mark.parametrize("shape", [(3, 3), (2, 3, 3)])
def test_slogdet_logabsdet_and_a_negative_determinant(shape):
    a = general(shape)
    a[..., 0, :] *= -1.0   # a negative determinant
    check(lambda np, a: np.linalg.slogdet(a)[1], a)
    check(lambda np, a: np.linalg.slogdet(a)[0] * np.exp(np.linalg.slogdet(a)[1]), a, order=1)
    sign, logdet = evaluate(lambda a: np.linalg.slogdet(a)[0], a), np.linalg.slogdet(a)
    np.testing.assert_array_equal(sign, logdet.sign)


# ---------------------------------------------------------------- cholesky
@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 3, 3)])
def test_cholesky_of_a_symmetrized_input(shape):
    # autograd's convention: a symmetric gradient, so the function symmetrizes its input
    axes = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
    check(lambda np, x: np.linalg.cholesky(x @ np.transpose(x, axes) + 3.0 * np.eye(shape[-1])),
          rect(shape))


def test_cholesky_upper_is_the_transpose():
    a = spd((3, 3))
    got = evaluate(lambda a: np.linalg.cholesky(a, upper=True), a)
    np.testing.assert_array_equal(got, np.linalg.cholesky(a, upper=True))
    check_against(lambda x: np.linalg.cholesky(x @ x.T + 3 * np.eye(3), upper=True),
                  lambda x: anp.linalg.cholesky(x @ x.T + 3 * anp.eye(3)).T, rect((3, 3)))


# ---------------------------------------------------------------- eigh, eigvalsh
@pytest.mark.parametrize("shape", [(3, 3), (2, 3, 3)])
@pytest.mark.parametrize("uplo", ["L", "U"])
def test_eigh_values_and_vectors(shape, uplo):
    a = spd(shape)
    check(lambda np, a: np.linalg.eigh(a, UPLO=uplo)[0], a)
    check(lambda np, a: np.linalg.eigh(a, UPLO=uplo)[1], a, order=2 if len(shape) == 2 else 1)
    check(lambda np, a: np.linalg.eigvalsh(a, UPLO=uplo) if np is not anp
          else anp.linalg.eigh(a, UPLO=uplo)[0], a, order=1)


def test_eigh_reads_one_triangle_of_a_nonsymmetric_input():
    x = rect((3, 3)) + 3 * np.eye(3)  # not symmetric: only the lower triangle is read
    check(lambda np, a: np.sum(np.linalg.eigh(a)[1] ** 3) + np.sum(np.linalg.eigh(a)[0] ** 2), x)


def test_eigh_with_a_repeated_eigenvalue_raises_nonfinite_for_vectors_only():
    a = np.diag([1.0, 1.0, 2.0])
    g = lp.grad(lambda a: np.sum(np.linalg.eigh(a)[0] ** 2))(a)   # eigenvalues: fine
    np.testing.assert_allclose(g, autograd.grad(lambda a: anp.sum(anp.linalg.eigh(a)[0] ** 2))(a))
    W = np.arange(9.0).reshape(3, 3)
    with pytest.raises(lp.NonFiniteError, match="eigh_vectors"):
        lp.grad(lambda a: np.sum(np.linalg.eigh(a)[1] * W))(a)


# ---------------------------------------------------------------- svd
@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (3, 4), (2, 4, 3)])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_svd_parts(shape, k):
    check(lambda np, a: np.linalg.svd(a, full_matrices=False)[k], rect(shape),
          order=2 if len(shape) == 2 else 1)


def test_svd_full_matrices_of_a_square_matrix_and_svdvals():
    a = rect((3, 3))
    check_against(lambda a: np.linalg.svd(a)[0] + np.linalg.svd(a)[2],
                  lambda a: anp.linalg.svd(a, full_matrices=False)[0] + anp.linalg.svd(a, full_matrices=False)[2],
                  a, order=1)
    check(lambda np, a: np.linalg.svd(a, compute_uv=False), rect((2, 4, 3)))
    np.testing.assert_array_equal(evaluate(lambda a: np.linalg.svdvals(a), a), np.linalg.svdvals(a))


# ---------------------------------------------------------------- norm
AUTOGRAD_NORMS = [((4,), None, None), ((4,), 2, None), ((4,), 3, None), ((4,), 2.5, 0),
                  ((3, 4), None, None), ((3, 4), "fro", None), ((3, 4), "nuc", None),
                  ((3, 4), None, 1), ((3, 4), 3, -1), ((2, 3, 4), None, None), ((2, 3, 4), "fro", (0, 2)),
                  ((2, 3, 4), "nuc", (0, 2)), ((2, 3, 4), None, -2)]


@pytest.mark.parametrize("shape, ord, axis", AUTOGRAD_NORMS)
def test_norm_against_autograd_norm(shape, ord, axis):
    check(lambda np, x: np.linalg.norm(x, ord=ord, axis=axis), rect(shape))


def _ref_norm(ord, axis, keepdims):
    """numpy's norm algorithm in autograd's elementary ops (autograd's own norm rule covers
    few orders and mishandles keepdims and negative axes)."""
    from lagrangeprop.rules.norms import _autograd_norm
    f = _autograd_norm(anp)

    def ref(x):
        ax = axis if axis is None or isinstance(axis, int) else tuple(a % x.ndim for a in axis)
        return f(x, ord=ord, axis=ax if not isinstance(ax, int) else ax % x.ndim, keepdims=keepdims)
    return ref


OTHER_NORMS = [((5,), 1, None), ((5,), np.inf, None), ((5,), -np.inf, None), ((5,), 0, None),
               ((5,), -1.5, None), ((5,), 0.5, None), ((3, 4), 1, None), ((3, 4), -1, None),
               ((3, 4), np.inf, None), ((3, 4), -np.inf, None), ((3, 4), 2, None), ((3, 4), -2, None),
               ((2, 3, 4), 1, (2, 0)), ((2, 3, 4), np.inf, (-1, -2)), ((2, 3, 4), 2, (1, 2)),
               ((2, 3, 4), np.inf, 1), ((2, 3, 4), "nuc", (-1, 0)), ((2, 3, 4), 2.5, -1)]


@pytest.mark.parametrize("shape, ord, axis", OTHER_NORMS + AUTOGRAD_NORMS[::3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_norm_every_order_axis_and_keepdims(shape, ord, axis, keepdims):
    x = rect(shape)
    smooth = ord in (None, 2, -2, -1.5, 0.5, 2.5, 3, "fro", "nuc")
    check_against(lambda x: np.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims),
                  _ref_norm(ord, axis, keepdims), x, order=2 if smooth else 1)


def test_norm_ties_split_equally_as_autograd_max():
    x = np.array([1.0, -3.0, 3.0, 2.0])
    np.testing.assert_allclose(lp.grad(lambda x: np.linalg.norm(x, np.inf))(x), [0.0, -0.5, 0.5, 0.0])
    np.testing.assert_allclose(lp.grad(lambda x: np.linalg.norm(x, 1))(np.array([0.0, -2.0])), [0.0, -1.0])
    m = np.array([[1.0, -2.0], [-2.0, 1.0]])   # both column sums are 3
    np.testing.assert_allclose(lp.grad(lambda m: np.linalg.norm(m, 1))(m), [[0.5, -0.5], [-0.5, 0.5]])


# ---------------------------------------------------------------- pinv, matrix_power
@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (3, 4), (2, 4, 3)])
def test_pinv(shape):
    check(lambda np, a: np.linalg.pinv(a), rect(shape), order=2 if len(shape) == 2 else 1)


def _power(a, n):
    out = anp.linalg.inv(a) if n < 0 else a
    base = out
    for _ in range(abs(n) - 1):
        out = out @ base
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, -1, -3])
def test_matrix_power_is_numpys_sequence_of_products(n):
    a = general((2, 3, 3)) / 3.0
    got = evaluate(lambda a: np.linalg.matrix_power(a, n) + 0.0, a)
    np.testing.assert_array_equal(got, np.linalg.matrix_power(a, n))
    if n:
        check_against(lambda a: np.linalg.matrix_power(a, n), lambda a: _power(a, n), a, order=1,
                      rtol=1e-7)


# ---------------------------------------------------------------- programs
def test_gaussian_process_log_marginal_likelihood_against_autograd():
    X = np.linspace(0.0, 2.0, 6)
    y = np.sin(3 * X)

    def lml(m, params):
        ell, sf, sn = m.exp(params[0]), m.exp(params[1]), m.exp(params[2])
        K = sf ** 2 * m.exp(-0.5 * (X[:, None] - X[None, :]) ** 2 / ell ** 2) + (sn ** 2 + 1e-6) * np.eye(6)
        L = m.linalg.cholesky(K)
        alpha = m.linalg.solve(L.T, m.linalg.solve(L, y))   # K⁻¹ y through the factor
        return -0.5 * m.dot(y, alpha) - 0.5 * m.linalg.slogdet(K)[1] - 3.0 * np.log(2 * np.pi)

    p = np.array([-0.3, 0.2, -1.0])
    check(lambda m, p: lml(m, p), p)
    np.testing.assert_allclose(lp.hessian(lambda p: lml(np, p))(p),
                               autograd.hessian(lambda p: lml(anp, p))(p), rtol=1e-7, atol=1e-9)


A3 = general((3, 3), key=7)
B3 = rect((3,), key=7)


def _cyclic_program():
    # 0 = M(x)⁻¹ w + 0.1 sin(w) - b with M(x) = A + diag(x): w is implicit in x
    prog = lp.Program(name="linalg_cycle")
    x = prog.input("x", shape=(3,))
    w = prog.variable("w", shape=(3,))
    M = A3 + x[:, None] * np.eye(3)
    prog.residual(w, lp.linalg.solve(M, w) + 0.1 * lp.sin(w) - B3)
    prog.output(np.linalg.norm(w) + np.linalg.slogdet(M)[1] + lp.sum(np.linalg.inv(M) @ w), name="obj")
    return prog


def _solve_w(x):
    M = A3 + np.diag(x)
    w = np.zeros(3)
    for _ in range(50):   # Newton on r(w) = M⁻¹ w + 0.1 sin w - b
        r = np.linalg.solve(M, w) + 0.1 * np.sin(w) - B3
        w = w - np.linalg.solve(np.linalg.inv(M) + 0.1 * np.diag(np.cos(w)), r)
    return w


def _objective(x):
    M = A3 + np.diag(x)
    w = _solve_w(x)
    return np.linalg.norm(w) + np.linalg.slogdet(M)[1] + np.sum(np.linalg.inv(M) @ w)


@pytest.mark.parametrize("linear_solver", [None, "gmres"])
def test_linalg_ops_inside_a_cyclic_block_match_the_implicit_function_theorem(linear_solver):
    prog = _cyclic_program()
    x = np.array([0.3, -0.2, 0.5])
    sol = prog.solve(x=x, linear_solver=linear_solver)
    assert prog.blocks and "w" in prog.blocks[0]
    np.testing.assert_allclose(sol.values["w"], _solve_w(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.output, _objective(x), rtol=1e-10)
    h = 1e-6
    fd = [(_objective(x + h * e) - _objective(x - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-6, atol=1e-8)
    # and the implicit function theorem: dw/dx = -(∂r/∂w)⁻¹ ∂r/∂x
    report = lp.check(prog, x=x)
    assert report.ok, str(report)


# ---------------------------------------------------------------- errors
def test_singular_matrix_raises_singular_system_error_naming_the_node():
    with pytest.raises(lp.SingularSystemError, match=r"node 'inv_\d+' \(op 'inv'\).*singular"):
        lp.grad(lambda a: np.sum(np.linalg.inv(a)))(np.ones((2, 2)))
    with pytest.raises(lp.SingularSystemError, match="op 'solve'"):
        lp.grad(lambda a: np.sum(np.linalg.solve(a, np.ones(2))))(np.zeros((2, 2)))
    with pytest.raises(lp.SingularSystemError, match="positive definite"):
        lp.grad(lambda a: np.sum(np.linalg.cholesky(a)))(-np.eye(2))


def test_unsupported_arguments_raise_graph_errors_naming_them():
    a = rect((3, 2))
    with pytest.raises(lp.GraphError, match="full_matrices"):
        lp.trace(lambda a: np.linalg.svd(a)[0], a)
    with pytest.raises(lp.GraphError, match="hermitian"):
        lp.trace(lambda a: np.linalg.svd(a, hermitian=True)[1], a)
    with pytest.raises(lp.GraphError, match="hermitian"):
        lp.trace(lambda a: np.linalg.pinv(a, hermitian=True), a)
    with pytest.raises(lp.GraphError, match="UPLO"):
        lp.trace(lambda a: np.linalg.eigh(a, UPLO="X")[0], spd((2, 2)))
    with pytest.raises(lp.GraphError, match="integer"):
        lp.trace(lambda a: np.linalg.matrix_power(a, 1.5), spd((2, 2)))
    with pytest.raises(lp.GraphError, match="invalid norm order 'nuc' for vectors"):
        lp.trace(lambda a: np.linalg.norm(a, ord="nuc"), rect((3,)))
    with pytest.raises(lp.GraphError, match="invalid norm order 3 for matrices"):
        lp.trace(lambda a: np.linalg.norm(a, ord=3), rect((3, 2)))
    with pytest.raises(lp.ShapeError, match="improper number of dimensions"):
        lp.trace(lambda a: np.linalg.norm(a, ord=1), rect((3, 2, 2)))


def test_pinv_cutoffs_and_the_dispatch_keys():
    a = rect((4, 3))
    for kw in ({"rcond": 1e-10}, {"rtol": 1e-3}):
        np.testing.assert_array_equal(evaluate(lambda a, kw=kw: np.linalg.pinv(a, **kw), a),
                                      np.linalg.pinv(a, **kw))
    from lagrangeprop.graph.var import HANDLED_FUNCTIONS
    for name in lp.linalg.__all__:
        assert HANDLED_FUNCTIONS[f"linalg.{name}"] is getattr(lp.linalg, name)
