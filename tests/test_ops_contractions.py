"""Contractions: einsum (primitive), tensordot, outer, inner, vdot, kron, cross (composites).

Every op through ``check_grads`` (numpy's value, autograd's VJP/JVP/HVP, central
differences, lp.check); einsum's repeated subscripts, which autograd's einsum cannot
differentiate, against autograd's diagonal/trace; the sparse Jacobian rule against the
JVP; einsum inside cyclic blocks against the implicit function theorem.
"""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from opcheck import check_grads, rng_for

import lagrangeprop as lp
from lagrangeprop.rules import get
from lagrangeprop.rules.einsum import parse


def _rand(*shape, key=0):
    return rng_for("contractions", shape, key).standard_normal(shape)


# (subscripts, operand shapes); autograd's einsum is the reference for these
EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),          # matrix product
    ("ij,jk", [(2, 3), (3, 4)]),              # implicit output
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),  # batch matmul
    ("i,j->ij", [(3,), (2,)]),                # outer
    ("ij->", [(2, 3)]),                       # sum
    ("ij->ji", [(2, 3)]),                     # transpose
    ("ij", [(2, 3)]),                         # implicit identity
    ("ba", [(2, 3)]),                         # implicit: output sorted, a transpose
    ("...ij,...jk->...ik", [(2, 2, 3), (3, 2)]),  # ellipsis with broadcasting
    ("...i,...i", [(2, 3), (4, 1, 3)]),       # implicit ellipsis, size-1 broadcast
    ("ij,ij->ij", [(1, 3), (2, 3)]),          # named axis of length 1 broadcasts
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),  # three operands
    ("i,i,i->", [(3,), (3,), (3,)]),
    ("i j , j k", [(2, 3), (3, 2)]),          # spaces
    (",i->i", [(), (3,)]),                    # a 0-d operand
    ("i...->...", [(2, 3, 2)]),
]


@pytest.mark.parametrize("subscripts, shapes", EINSUM, ids=[s for s, _ in EINSUM])
def test_einsum_against_autograd(subscripts, shapes):
    ops = [_rand(*s, key=k) for k, s in enumerate(shapes)]
    check_grads(lambda np, *xs: np.einsum(subscripts, *xs), *ops)


def test_einsum_same_operand_twice():
    x = _rand(2, 3)
    check_grads(lambda np, x: np.einsum("ij,ij->", x, x), x)
    check_grads(lambda np, x: np.einsum("ij,kj->ik", x, x), x)


# repeated subscripts: HIPS autograd's einsum raises on them (and its diagonal's VJP is
# limited), so a mask with the identity is the reference there


def _diag(m, x):
    """The diagonal of the last two axes, as autograd differentiates it."""
    return m.sum(x * np.eye(x.shape[-1]), axis=-1)


REPEATED = [
    ("ii", (3, 3), lambda m, x: m.trace(x)),
    ("ii->", (3, 3), lambda m, x: m.trace(x)),
    ("ii->i", (3, 3), lambda m, x: _diag(m, x)),
    ("iij->ji", (2, 2, 3), lambda m, x: m.transpose(m.sum(x * np.eye(2)[:, :, None], axis=1))),
    ("...ii->...i", (2, 3, 3), lambda m, x: _diag(m, x)),
    ("iji->j", (2, 3, 2), lambda m, x: m.sum(x * np.eye(2)[:, None, :], axis=(0, 2))),
]


@pytest.mark.parametrize("subscripts, shape, ref", REPEATED, ids=[s for s, _, _ in REPEATED])
def test_einsum_repeated_subscripts(subscripts, shape, ref):
    x = _rand(*shape)
    check_grads(lambda m, x: m.einsum(subscripts, x) if m is np else ref(m, x), x)


# a repeated subscript beside a second operand: the cotangent is scattered onto the diagonal
PAIRS = [
    ("ii,i->i", (3, 3), (3,), lambda m, x, w: _diag(m, x) * w),
    ("ii,i", (3, 3), (3,), lambda m, x, w: m.sum(_diag(m, x) * w)),
    ("iij,j->i", (2, 2, 3), (3,), lambda m, x, w: m.dot(m.sum(x * np.eye(2)[:, :, None], axis=1), w)),
    ("ij,jj->i", (2, 3), (3, 3), lambda m, a, x: m.dot(a, _diag(m, x))),
    ("ii,jj->ij", (2, 2), (3, 3), lambda m, x, y: m.outer(_diag(m, x), _diag(m, y))),
]


@pytest.mark.parametrize("subscripts, sa, sb, ref", PAIRS, ids=[s for s, *_ in PAIRS])
def test_einsum_repeated_subscripts_with_a_second_operand(subscripts, sa, sb, ref):
    a, b = _rand(*sa), _rand(*sb, key=1)
    check_grads(lambda m, a, b: m.einsum(subscripts, a, b) if m is np else ref(m, a, b), a, b)


def test_einsum_sublists_and_optimize():
    a, b = _rand(2, 3), _rand(3, 4, key=1)
    check_grads(lambda m, a, b: m.einsum(a, [0, 1], b, [1, 2], [0, 2]), a, b)
    check_grads(lambda m, a, b: m.einsum(a, [0, 1], b, [1, 2], [2, 0]), a, b)
    # a summed sublist index or no output sublist: autograd's einsum cannot differentiate
    # them (central differences and lp.check)
    check_grads(lambda m, a: m.einsum(a, [Ellipsis, 1], [Ellipsis]), a, order=1, modes=())
    check_grads(lambda m, a, b: m.einsum(a, [0, 1], b, [1, 2]), a, b, modes=(), order=1)
    c = _rand(4, 2, key=2)
    for optimize in (False, True, "greedy", "optimal"):
        def f(m, a, b, c, optimize=optimize):
            return m.einsum("ij,jk,kl->li", a, b, c, optimize=optimize)
        prog = lp.trace(lambda a, b, c, f=f: f(np, a, b, c), a=a, b=b, c=c)
        # the value is numpy's for the same optimize (it may change rounding, never the math)
        assert np.array_equal(prog.evaluate(a=a, b=b, c=c), f(np, a, b, c))
        assert lp.check(prog, {"a": a, "b": b, "c": c}).ok


# ---------------------------------------------------------------- composites
TENSORDOT = [
    ((2, 3), (3, 4), 1), ((2, 3), (2, 3), 2), ((2, 3), (4,), 0), ((2, 3, 4), (3, 4, 2), 2),
    ((2, 3, 4), (4, 3), ([1, 2], [1, 0])), ((2, 3, 4), (2, 5), ([0], [0])),
    ((3, 4), (4, 3), ([-1, 0], [0, -1])), ((3, 2), (3,), (0, 0)), ((), (3,), 0),
]


@pytest.mark.parametrize("sa, sb, axes", TENSORDOT, ids=[str(t) for t in TENSORDOT])
def test_tensordot(sa, sb, axes):
    a, b = _rand(*sa), _rand(*sb, key=1)
    check_grads(lambda m, a, b: m.tensordot(a, b, axes), *(a, b))
    if axes == 2:   # the default
        check_grads(lambda m, a, b: m.tensordot(a, b), a, b, order=1)


SHAPE_PAIRS = [((), (3,)), ((3,), (3,)), ((2, 3), (3,)), ((2, 3), (4, 3)), ((2, 2, 3), (3,)), ((3,), ())]


# autograd's references where its own rule cannot serve: outer of non-vectors (its VJP
# does not flatten), vdot (no VJP); its kron VJP is wrong beyond 2-d (it swaps one pair
# of axes only; central differences confirm ours), so there only differences and lp.check
def _outer(m, a, b):
    return m.outer(a, b) if m is np else m.outer(m.ravel(a), m.ravel(b))


def _vdot(m, a, b):
    return m.vdot(a, b) if m is np else m.dot(m.ravel(a), m.ravel(b))


def _kron(m, a, b):
    return m.kron(a, b)


def _kron_modes(*xs):
    return ("rev", "fwd") if max(np.ndim(x) for x in xs) <= 2 else ()


@pytest.mark.parametrize("sa, sb", SHAPE_PAIRS, ids=[str(p) for p in SHAPE_PAIRS])
def test_inner_outer_kron(sa, sb):
    a, b = _rand(*sa), _rand(*sb, key=1)
    check_grads(lambda m, a, b: m.inner(a, b), a, b)
    check_grads(_outer, a, b, order=1)
    check_grads(_kron, a, b, order=1, modes=_kron_modes(a, b))
    check_grads(lambda m, a, b: _kron(m, b, a), a, b, order=1, modes=_kron_modes(a, b))


def test_vdot_and_kron_of_matrices():
    a, b = _rand(2, 3), _rand(3, 2, key=1)
    check_grads(_vdot, a, b)
    check_grads(_kron, a, b)
    check_grads(_kron, a, _rand(2, 2, 2, key=2), order=1, modes=())
    check_grads(_outer, a, b)   # flattens like numpy


CROSS = [
    ((3,), (3,), {}), ((4, 3), (3,), {}), ((3, 4), (4, 3), {"axisa": 0}),
    ((3, 2), (2, 3), {"axisa": 0, "axisb": -1, "axisc": 0}), ((2, 3), (2, 3), {"axis": 1}),
    ((4, 3), (4, 3), {"axisc": 0}), ((2,), (2,), {}), ((4, 2), (2,), {}), ((2,), (3,), {}),
    ((4, 3), (4, 2), {"axisc": -2}), ((2, 5), (5, 3), {"axisa": 0}),
]


@pytest.mark.parametrize("sa, sb, kw", CROSS, ids=[f"{a}x{b}{k}" for a, b, k in CROSS])
@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors:DeprecationWarning")
def test_cross(sa, sb, kw):
    a, b = _rand(*sa), _rand(*sb, key=1)
    # autograd's cross VJP cannot take 2-vectors: there, central differences and lp.check
    # and does not unbroadcast: a broadcast operand is broadcast first on its tape
    two = 2 in (a.shape[kw.get("axisa", kw.get("axis", -1))], b.shape[kw.get("axisb", kw.get("axis", -1))])

    def f(m, a, b):
        if m is not np and a.ndim != b.ndim:
            a, b = (a, b + 0.0 * a) if a.ndim > b.ndim else (a + 0.0 * b, b)
        return m.cross(a, b, **kw)
    check_grads(f, a, b, modes=() if two else ("rev", "fwd"), order=1 if two else 2)


@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors:DeprecationWarning")
def test_values_are_numpys_bit_for_bit():
    a, b, c = _rand(3, 4), _rand(4, 3, key=1), _rand(2, 3, key=2)
    cases = [
        (lambda m, a, b: m.tensordot(a, b, 1), a, b), (lambda m, a, b: m.tensordot(a, b, ([0, 1], [1, 0])), a, b),
        (lambda m, a, b: m.outer(a, b), a, b), (lambda m, a, b: m.kron(a, b), a, b),
        (lambda m, a, b: m.cross(a, b, axisa=0), a, b), (lambda m, a, c: m.cross(c, a[:2, :3]), a, c),
        (lambda m, a, b: m.einsum("ij,jk->ki", a, b), a, b), (lambda m, a, b: m.vdot(a, b.T), a, b),
        (lambda m, a, c: m.cross(c[:, :2], a[:2, :2]), a, c),
    ]
    for f, x, y in cases:
        prog = lp.trace(lambda x, y, f=f: f(np, x, y), x=x, y=y)
        assert np.array_equal(prog.evaluate(x=x, y=y), f(np, x, y))


def test_operands_as_lists_of_traced_values():
    A = _rand(2, 2)
    f = lambda x: np.einsum("ij,j->i", A, [x[1], x[0]])  # noqa: E731
    out = lp.trace(f, x=np.ones(2)).evaluate(x=np.array([1.0, 2.0]))
    assert np.allclose(out, A @ np.array([2.0, 1.0]))
    g = lp.grad(lambda x: lp.sum(lp.tensordot([x, 2.0 * x], np.ones((2, 3)), 1)))(np.array(1.5))
    assert np.isclose(g, 9.0)


def test_no_traced_operand_is_plain_numpy():
    a, b = _rand(3,), _rand(3, key=1)
    assert np.array_equal(lp.einsum("i,i", a, b), np.einsum("i,i", a, b))
    assert np.array_equal(lp.cross(a, b), np.cross(a, b))
    assert np.array_equal(lp.tensordot(a, b, 0), np.tensordot(a, b, 0))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call, words", [
    (lambda x: np.einsum("ij,jk", x, x, optimize=["einsum_path", (0, 1)]), "optimize"),
    (lambda x: np.einsum("ij", x, out=np.empty((2, 2))), "out"),
    (lambda x: np.einsum("ij", x, dtype=np.float32), "dtype"),
    (lambda x: np.einsum("ij", x, casting="unsafe"), "casting"),
    (lambda x: np.einsum("ij", x, order="X"), "order"),
    (lambda x: np.einsum(x, [0, 60]), r"outside \[0, 52\)"),
    (lambda x: np.tensordot(x, x, axes="ab"), "axes"),
    (lambda x: np.outer(x, x, out=np.empty((4, 4))), "out"),
    (lambda x: lp.einsum("ij,j", sp.identity(2, format="csr"), x[0]), "sparse"),
])
def test_unsupported_arguments_raise_graph_error(call, words):
    with pytest.raises(lp.GraphError, match=words):
        lp.trace(call, x=np.ones((2, 2)))


@pytest.mark.parametrize("call, words", [
    (lambda x: np.einsum("ij,jk", x, np.ones((3, 2))), "lengths 2 and 3"),
    (lambda x: np.einsum("ijk", x), "does not match"),
    (lambda x: np.einsum("...i->i", x), "no '...'"),
    (lambda x: np.einsum("ij->ii", x), "repeat"),
    (lambda x: np.einsum("ij->k", x), "occur in no operand"),
    (lambda x: np.einsum("ij,j", x), "operand"),
    (lambda x: np.tensordot(x, np.ones((3, 3)), 1), "shape-mismatch"),
    (lambda x: np.tensordot(x, x, ([0, 0], [0, 1])), "duplicate"),
    (lambda x: np.cross(x, np.ones((2, 4))), "dimension must be 2 or 3"),
    (lambda x: np.cross(x, x, axisa=5), "axisa"),
    (lambda x: np.inner(x, np.ones(3)), "not aligned"),
    (lambda x: np.vdot(x, np.ones(3)), "different lengths"),
])
@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors:DeprecationWarning")
def test_bad_shapes_raise_shape_error(call, words):
    with pytest.raises(lp.ShapeError, match=words):
        lp.trace(call, x=np.ones((2, 2)))
    with pytest.raises(ValueError):   # numpy rejects the same call
        call(np.ones((2, 2)))


# ---------------------------------------------------------------- rules
@pytest.mark.parametrize("subscripts, shapes", EINSUM[:12] + [("ii->i", [(3, 3)]), ("iij,j->ij", [(2, 2, 3), (1,)])])
def test_einsum_jacobian_rule_matches_jvp(subscripts, shapes):
    prim = get("einsum")
    args = [_rand(*s, key=k) for k, s in enumerate(shapes)]
    params = {"subscripts": subscripts, "optimize": False}
    ans = prim.value(args, params)
    for i, a in enumerate(args):
        J = prim.jac(i, ans, args, params)
        assert sp.issparse(J)
        cols = [prim.jvp(i, e.reshape(a.shape), ans, args, params).ravel() for e in np.eye(a.size)]
        dense = np.stack(cols, axis=1) if cols else np.zeros((ans.size, 0))
        np.testing.assert_allclose(J.toarray(), dense, rtol=1e-13, atol=1e-13)
        assert J.nnz <= ans.size * a.size


def test_parse_is_numpys_reading():
    assert parse("bA", ((2, 3),)).output == "Ab"      # implicit: ASCII order, as numpy
    spec = parse("...i,...i", ((2, 3), (4, 1, 3)))
    assert len(spec.output) == 2 and spec.size[spec.output[0]] == 4
    with pytest.raises(ValueError, match="different lengths"):
        parse("ii", ((2, 3),))


def test_hessian_of_einsum_forms():
    A = _rand(3, 3)
    H = lp.hessian(lambda x: lp.einsum("i,ij,j", x, A, x))(_rand(3, key=1))
    np.testing.assert_allclose(H, A + A.T, rtol=1e-12, atol=1e-12)
    x = _rand(3, key=2)
    H = lp.hessian(lambda x: lp.einsum("i,i,i->", x, x, x))(x)
    np.testing.assert_allclose(H, np.diag(6 * x), rtol=1e-12, atol=1e-12)
    W = _rand(2, 3, key=3)
    H = lp.hessian(lambda w: lp.sum(lp.tensordot(w, w, 2) * lp.einsum("ij,ij", w, W)))(W)
    ref = np.zeros((6, 6))
    f, g = W.ravel(), W.ravel()
    ref += 2 * np.outer(f, g) + 2 * np.outer(g, f) + 2 * np.eye(6) * np.dot(f, g)
    np.testing.assert_allclose(H.reshape(6, 6), ref, rtol=1e-10, atol=1e-10)


def test_einsum_program_json_round_trip():
    prog = lp.trace(lambda x: np.einsum("ii->i", x, optimize="greedy"), x=np.ones((2, 2)))
    back = lp.Program.from_json(prog.to_json())
    x = _rand(2, 2)
    assert np.array_equal(back.evaluate(x=x), np.diag(x))
    assert "einsum" in json.dumps(json.loads(prog.to_json()))


# ---------------------------------------------------------------- cyclic blocks
# w = A tanh(w) + x: dw/dx = (I - A diag(1 - tanh(w)²))⁻¹, so ∇_x Σ w² = (I - A D)⁻ᵀ 2w.
N = 4
A_CYC = 0.3 * _rand(N, N, key=7)
X_CYC = _rand(N, key=8)


def _implicit_reference(w):
    M = np.eye(N) - A_CYC * (1.0 - np.tanh(w) ** 2)[None, :]
    return np.linalg.solve(M.T, 2 * w)


def _fixed_point(x):
    w = np.zeros(N)
    for _ in range(200):
        w = A_CYC @ np.tanh(w) + x
    return w


@pytest.mark.parametrize("linear_solver", [None, "gmres"])
@pytest.mark.parametrize("form", ["define", "einsum-root", "residual"])
def test_einsum_in_a_cyclic_block(form, linear_solver):
    prog = lp.Program(name="einsum_cycle")
    x = prog.input("x", shape=(N,))
    w = prog.variable("w", shape=(N,))
    if form == "define":
        prog.define(w, np.einsum("ij,j->i", A_CYC, np.tanh(w)) + x)
    elif form == "einsum-root":   # the block node's own op is einsum, with a cross term inside
        prog.define(w, lp.einsum("ij,j,->i", A_CYC, np.tanh(w), 1.0) + lp.tensordot(x, np.eye(N), 1))
    else:
        prog.residual(w, w - lp.einsum("ij,j->i", A_CYC, lp.tanh(w)) - lp.inner(np.eye(N), x))
    prog.output(lp.einsum("i,i", w, w), name="obj")
    opts = {} if linear_solver is None else {"linear_solver": linear_solver}
    sol = prog.solve(x=X_CYC, **opts)
    assert prog.blocks
    w_star = _fixed_point(X_CYC)
    np.testing.assert_allclose(sol.values["w"], w_star, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.grad["x"], _implicit_reference(w_star), rtol=1e-7, atol=1e-9)
    h = 1e-6
    fd = np.array([(np.sum(_fixed_point(X_CYC + h * e) ** 2) - np.sum(_fixed_point(X_CYC - h * e) ** 2))
                   / (2 * h) for e in np.eye(N)])
    np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-6, atol=1e-8)
    assert sol.kkt()["adjoint"] < 1e-8


def test_einsum_cycle_passes_lp_check():
    prog = lp.Program()
    x = prog.input("x", shape=(N,))
    w = prog.variable("w", shape=(N,))
    prog.define(w, np.einsum("ij,j->i", A_CYC, np.tanh(w)) + lp.cross(x[:3], np.ones(3))[0] + x)
    prog.output(lp.sum(w ** 2), name="obj")
    assert lp.check(prog, x=X_CYC).ok
