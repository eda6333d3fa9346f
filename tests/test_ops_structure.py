"""Array-structure ops (issue 13): tril ... meshgrid, against numpy, autograd and differences.

Each case is ``fun(m, x)`` written once against a numpy namespace ``m`` and run by
:func:`opcheck.check_grads`: numpy's value, autograd's VJP/JVP/HVP, central differences and
``lp.check`` on the traced program. Where autograd has no rule for the numpy function
(``flip``, ``take``, ``diagflat``, per-entry ``repeat``, ...), :func:`via` gives it an
independent expression (fancy indexing, slicing, moveaxis) as the reference instead. Then:
unsupported arguments raise GraphError naming them, numpy's shape errors are ShapeErrors,
and the composites sit in cyclic blocks (fixed point and residual form, direct and GMRES
adjoints) and under ``lp.hessian``.
"""

from __future__ import annotations

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from opcheck import check_grads, rng_for

import lagrangeprop as lp


def via(np_fun, ag_fun):
    """``np_fun`` traced (and as the value reference); ``ag_fun`` on autograd's namespace."""
    return lambda m, *a: ag_fun(m, *a) if m is anp else np_fun(m, *a)


def point(*shape):
    return rng_for("point", shape).uniform(-1.0, 1.0, size=shape)


def _diag_ref(m, x, offset=0, a1=0, a2=1):
    """Diagonal by moveaxis and fancy indexing (autograd differentiates both)."""
    xt = m.moveaxis(x, (a1, a2), (-2, -1))
    n1, n2 = xt.shape[-2:]
    i = np.arange(max(0, -offset), max(max(0, -offset), min(n1, n2 - offset)))
    return xt[..., i, i + offset]


CASES = {
    # triangles and diagonals
    # autograd's tril VJP returns tril(g) of shape (n, n) for a 1-d x: a mask multiply instead
    "tril-1d": ((4,), via(lambda m, x: m.tril(x, 1), lambda m, x: x * np.tril(np.ones((4, 4)), 1))),
    "tril-wide": ((3, 5), lambda m, x: m.tril(x)),
    "tril-3d": ((2, 3, 4), lambda m, x: m.tril(x, -1)),
    "triu-tall": ((5, 3), lambda m, x: m.triu(x, 1)),
    "triu-3d": ((2, 4, 3), lambda m, x: m.triu(x, -2)),
    "diag-1d-k": ((3,), lambda m, x: m.diag(x, 1)),
    "diag-1d-negk": ((3,), lambda m, x: m.diag(x, -2)),
    # autograd's diag VJP, diag(g, k), is square: wrong for a non-square x
    "diag-2d": ((3, 4), via(lambda m, x: m.diag(x), lambda m, x: _diag_ref(m, x))),
    "diag-2d-k": ((4, 3), via(lambda m, x: m.diag(x, -1), lambda m, x: _diag_ref(m, x, -1))),
    "diag-square": ((3, 3), lambda m, x: m.diag(x, 1)),
    "diagflat": ((2, 2), via(lambda m, x: m.diagflat(x, 1), lambda m, x: m.diag(m.ravel(x), 1))),
    "diagonal": ((3, 4), via(lambda m, x: m.diagonal(x, 1), lambda m, x: _diag_ref(m, x, 1))),
    "diagonal-3d": ((2, 3, 4), via(lambda m, x: m.diagonal(x, -1, -1, 0),
                                   lambda m, x: _diag_ref(m, x, -1, -1, 0))),
    "trace": ((3, 4), lambda m, x: m.trace(x, 1)),
    "trace-3d": ((2, 3, 4), via(lambda m, x: m.trace(x, 1, axis1=2, axis2=0),
                                lambda m, x: m.sum(_diag_ref(m, x, 1, 2, 0), axis=-1))),
    "method-trace": ((3, 3), via(lambda m, x: x.trace(-1), lambda m, x: m.trace(x, -1))),
    "method-diagonal": ((3, 4), via(lambda m, x: x.diagonal(), lambda m, x: _diag_ref(m, x))),
    # repetition and padding
    "repeat-flat": ((2, 3), lambda m, x: m.repeat(x, 2)),
    "repeat-axis": ((2, 3), lambda m, x: m.repeat(x, 3, axis=0)),
    # autograd's repeat VJP mis-slices a negative axis and fails on a 0-d x
    "repeat-negaxis": ((2, 3), via(lambda m, x: m.repeat(x, 3, axis=-1),
                                   lambda m, x: m.repeat(x, 3, axis=1))),
    "repeat-scalar": ((), via(lambda m, x: m.repeat(x, 3), lambda m, x: x * m.ones(3))),
    "repeat-counts": ((2, 3), via(lambda m, x: m.repeat(x, [1, 0, 2], axis=1),
                                  lambda m, x: x[:, [0, 2, 2]])),
    "method-repeat": ((3,), via(lambda m, x: x.repeat(2), lambda m, x: m.repeat(x, 2))),
    "tile": ((3,), lambda m, x: m.tile(x, 2)),
    "tile-3d": ((2, 3), lambda m, x: m.tile(x, (2, 1, 2))),
    "pad-int": ((3,), lambda m, x: m.pad(x, 2, "constant")),
    "pad-values": ((2, 3), lambda m, x: m.pad(x, ((1, 0), (2, 1)), "constant",
                                              constant_values=3.0)),
    "pad-per-axis": ((2, 3), via(lambda m, x: m.pad(x, (1,), constant_values=((1, 2), (3, 4))),
                                 lambda m, x: m.pad(x, 1, "constant"))),
    # rearranging
    "roll": ((2, 3), lambda m, x: m.roll(x, 2)),
    "roll-axis": ((2, 3), lambda m, x: m.roll(x, -1, axis=-1)),
    "roll-tuples": ((2, 3, 2), via(lambda m, x: m.roll(x, (1, -2), axis=(0, -2)),
                                   lambda m, x: m.roll(m.roll(x, 1, 0), -2, 1))),
    "flip": ((2, 3), via(lambda m, x: m.flip(x), lambda m, x: x[::-1, ::-1])),
    "flip-axes": ((2, 3, 2), via(lambda m, x: m.flip(x, (0, -1)), lambda m, x: x[::-1, :, ::-1])),
    "fliplr": ((2, 3), lambda m, x: m.fliplr(x)),
    "flipud": ((3, 2), lambda m, x: m.flipud(x)),
    "rot90": ((2, 3), lambda m, x: m.rot90(x)),
    "rot90-k": ((2, 3, 4), via(lambda m, x: m.rot90(x, -1, axes=(1, 2)),
                               lambda m, x: m.swapaxes(x, 1, 2)[:, :, ::-1])),
    # selecting
    "take-flat": ((2, 3), via(lambda m, x: m.take(x, [[5, 0], [0, 2]]),
                              lambda m, x: m.ravel(x)[np.array([[5, 0], [0, 2]])])),
    "take-axis": ((2, 3), via(lambda m, x: m.take(x, [2, 0, 2], axis=-1),
                              lambda m, x: x[:, [2, 0, 2]])),
    "take-wrap": ((3,), via(lambda m, x: m.take(x, [4, -5], mode="wrap"), lambda m, x: x[[1, 1]])),
    "take-clip": ((3,), via(lambda m, x: m.take(x, [7, -1], mode="clip"), lambda m, x: x[[2, 0]])),
    "method-take": ((2, 3), via(lambda m, x: x.take([1, 1], axis=0), lambda m, x: x[[1, 1]])),
    "take_along_axis": ((3, 3), via(
        lambda m, x: m.take_along_axis(x, np.array([[2, 0, 1], [2, 2, 0]]), axis=0),
        lambda m, x: x[np.array([[2, 0, 1], [2, 2, 0]]), np.arange(3)])),
    "broadcast_to": ((2, 1), via(lambda m, x: m.broadcast_to(x, (4, 2, 3)),
                                 lambda m, x: x * m.ones((4, 2, 3)))),
    # axes
    "expand_dims": ((2, 3), lambda m, x: m.expand_dims(x, -1)),
    "expand_dims-tuple": ((2, 3), lambda m, x: m.expand_dims(x, (0, -1))),
    "squeeze": ((1, 3, 1), lambda m, x: m.squeeze(x)),
    "squeeze-axis": ((1, 3, 1), lambda m, x: m.squeeze(x, axis=-1)),
    "method-squeeze": ((1, 3), via(lambda m, x: x.squeeze(0), lambda m, x: m.squeeze(x, 0))),
    "moveaxis": ((2, 3, 4), lambda m, x: m.moveaxis(x, 0, -1)),
    "moveaxis-lists": ((2, 3, 4), lambda m, x: m.moveaxis(x, [0, 1], [-1, 0])),
    "swapaxes": ((2, 3, 4), lambda m, x: m.swapaxes(x, 0, -1)),
    "method-swapaxes": ((2, 3), via(lambda m, x: x.swapaxes(1, 0), lambda m, x: x.T)),
    "rollaxis": ((2, 3, 4), lambda m, x: m.rollaxis(x, 2)),
    "rollaxis-neg": ((2, 3, 4), via(lambda m, x: m.rollaxis(x, -1, 1),
                                    lambda m, x: m.moveaxis(x, 2, 1))),
    "atleast_1d": ((), lambda m, x: m.atleast_1d(x)),
    "atleast_2d": ((3,), lambda m, x: m.atleast_2d(x)),
    "atleast_3d-1d": ((3,), lambda m, x: m.atleast_3d(x)),
    "atleast_3d-2d": ((2, 3), lambda m, x: m.atleast_3d(x)),
    "atleast-many": ((3,), via(lambda m, x: m.atleast_2d(x, x[0])[1] * m.atleast_2d(x, x[0])[0],
                               lambda m, x: m.reshape(x[0], (1, 1)) * x[None, :])),
    # splitting: each piece scaled differently, so a misplaced piece shows
    "split": ((6,), lambda m, x: m.concatenate([p * (k + 1) for k, p in enumerate(m.split(x, 3))])),
    "split-indices": ((2, 6), lambda m, x: m.concatenate(
        [p * (k + 1) for k, p in enumerate(m.split(x, [1, 4], axis=-1))], axis=1)),
    "array_split": ((7,), lambda m, x: m.concatenate(
        [p * (k + 1) for k, p in enumerate(m.array_split(x, 3))])),
    "hsplit": ((2, 4), lambda m, x: m.hsplit(x, 2)[1] * m.hsplit(x, 2)[0]),
    "hsplit-1d": ((4,), via(lambda m, x: m.hsplit(x, [3])[0], lambda m, x: x[:3])),
    "vsplit": ((4, 2), lambda m, x: m.vsplit(x, [1])[1] ** 2),
    "dsplit": ((1, 2, 4), lambda m, x: m.dsplit(x, 2)[0] * m.dsplit(x, 2)[1]),
    # stacking lists that mix traced values, arrays and Python numbers
    "vstack": ((3,), lambda m, x: m.vstack([x, np.ones(3), [1.0, 2.0, 3.0], x ** 2])),
    "vstack-2d": ((2, 3), lambda m, x: m.vstack((x, x[:1] * 2.0))),
    "vstack-rows": ((2, 3), via(lambda m, x: m.vstack(x), lambda m, x: x)),   # numpy iterates x
    "hstack": ((3,), lambda m, x: m.hstack([x, 2.0, x[1:] * 3.0])),
    "hstack-2d": ((2, 3), lambda m, x: m.hstack([x, np.ones((2, 1))])),
    # autograd's dstack has no rule and returns a zero gradient
    "dstack": ((2, 3), via(lambda m, x: m.dstack([x, x * 2.0]),
                           lambda m, x: m.concatenate([x[..., None], 2.0 * x[..., None]], -1))),
    "column_stack": ((3,), lambda m, x: m.column_stack([x, np.arange(3.0), x ** 2])),
    "column_stack-2d": ((3, 2), lambda m, x: m.column_stack([x, x[:, 0]])),
    "append": ((2, 3), lambda m, x: m.append(x, [1.0, 2.0])),
    "append-axis": ((2, 3), lambda m, x: m.append(x, x[:1] * 2.0, axis=0)),
    "select": ((2, 3), lambda m, x: m.select([x > 0.5, x < -0.5], [x ** 2, np.ones((2, 3))], x)),
    "select-broadcast": ((3,), lambda m, x: m.select([np.array([True, False, False]), x > 0],
                                                   [2.0 * x, m.sin(x)], -1.0)),
    "full_like-traced": ((2, 3), via(lambda m, x: m.full_like(x, x[0, 1]) * x,
                                     lambda m, x: x[0, 1] * m.ones((2, 3)) * x)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_check_grads(name):
    shape, fun = CASES[name]
    check_grads(fun, point(*shape))


def test_meshgrid_of_two_traced_vectors():
    def ag(m, x, y):
        return x[None, :] * m.ones((2, 1)), y[:, None] * m.ones((1, 3))

    fun = via(lambda m, x, y: m.meshgrid(x, y), ag)
    check_grads(lambda m, x, y: fun(m, x, y)[0] * fun(m, x, y)[1] ** 2, point(3), point(2))
    ij = via(lambda m, x, y: m.meshgrid(x, y, indexing="ij", sparse=True)[1] * x[:, None],
             lambda m, x, y: y[None, :] * x[:, None])
    check_grads(ij, point(3), point(2))


def test_values_of_constant_results():
    prog = lp.trace(lambda x: (np.full_like(x, 2.5) + np.empty_like(x)) * x, x=np.ones(3))
    assert prog.evaluate(x=np.arange(3.0)).tolist() == [0.0, 2.5, 5.0]   # empty_like: zeros
    prog = lp.trace(lambda x: np.diag(x, 5)[:2, :2] + x[0], x=np.ones(2))   # all fill
    assert prog.evaluate(x=np.array([4.0, 1.0])).tolist() == [[4.0, 4.0], [4.0, 4.0]]
    assert lp.tril(np.ones((2, 2))).tolist() == [[1.0, 0.0], [1.0, 1.0]]   # no traced argument
    assert [p.tolist() for p in lp.split(np.arange(4.0), 2)] == [[0.0, 1.0], [2.0, 3.0]]


def test_row_stack_warns_as_numpy():
    with pytest.warns(DeprecationWarning):
        value = lp.trace(lambda x: lp.row_stack([x, x]), x=np.ones(2)).evaluate(x=np.ones(2))
    assert value.shape == (2, 2)


def test_repeated_indices_accumulate_and_padding_selects_constants():
    g = lp.grad(lambda x: np.sum(np.broadcast_to(x, (3, 2)) * np.take(x, [1, 1, 1])[:, None]))
    x = np.array([2.0, 5.0])
    np.testing.assert_allclose(g(x), autograd.grad(
        lambda x: anp.sum((x * anp.ones((3, 2))) * x[[1, 1, 1]][:, None]))(x))
    # padding appends the constants and selects them (no 0 * x: an inf would become NaN)
    prog = lp.trace(lambda x: np.pad(x, 1, "constant", constant_values=-0.0), x=np.zeros(1))
    ops = {d["op"] for _, d in prog.graph.nodes(data=True) if d["role"] == "defined"}
    assert ops == {"concatenate", "getitem"}
    assert np.signbit(prog.evaluate(x=np.array([3.0]))).tolist() == [True, False, True]


def test_split_pieces_are_basic_slices_and_graph_round_trips():
    prog = lp.trace(lambda x: np.sum(np.vstack(np.split(np.roll(np.tril(x), 1, axis=0), 2))),
                    x=np.ones((4, 3)))
    ops = [d["op"] for _, d in prog.graph.nodes(data=True) if d["role"] == "defined"]
    assert "where" in ops and "getitem" in ops and "concatenate" in ops
    back = lp.Program.from_json(prog.to_json())
    x = point(4, 3)
    np.testing.assert_array_equal(back.solve(x=x).grad["x"], prog.solve(x=x).grad["x"])


def test_check_on_a_composite_heavy_program():
    def f(x):
        a = np.tril(np.roll(x, 1, axis=-1)) + np.flip(np.triu(x, 1), 0)
        b = np.pad(np.diagonal(a), (1, 2), constant_values=0.5)
        c = np.hstack([np.repeat(b, 2), np.tile(np.diag(a), 2), np.take(x, [0, 5, 5])])
        d = np.vstack(np.array_split(c[:12], 3)) @ np.squeeze(np.atleast_3d(np.append(x[0], 1.0)))
        return np.sum(np.sin(d) * np.trace(a)) + np.sum(np.select([x > 0], [x ** 2], -x))
    x = point(3, 3)
    report = lp.check(lp.trace(f, x=x), x=x)
    assert report.ok, str(report)


def test_hessian_through_composites():
    def f(m, x):
        return m.sum(m.sin(m.tril(x) @ m.roll(x, 1, axis=0)) * m.flipud(x)) + \
            m.sum(m.repeat(m.diag(x), 2) ** 3) + m.trace(m.pad(x, 1, "constant") ** 2)
    x = point(3, 3)
    H = lp.hessian(lambda x: f(np, x))(x)
    ref = autograd.hessian(lambda x: f(anp, x))(x)
    np.testing.assert_allclose(H, ref, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- cyclic blocks
# w = 0.4 tanh(tril(roll(w)) + flip(w)ᵀ / 2) + x is a contraction: the implicit function
# theorem dw/dx = (I - ∂f/∂w)⁻¹ gives the gradient; both adjoint solvers must agree with it


def _fixed_point_program():
    prog = lp.Program(name="structure_cycle")
    x = prog.input("x", shape=(3, 3))
    w = prog.variable("w", shape=(3, 3))
    prog.define(w, 0.4 * np.tanh(np.tril(np.roll(w, 1, axis=0)) + 0.5 * np.flip(w, -1).T) + x)
    weights = np.arange(1.0, 4.0)
    prog.output(np.sum(np.diag(w) * weights) + np.sum(np.repeat(w, 2, axis=1) ** 2), name="obj")
    return prog


def _fd_grad(evaluate, x, h=1e-6):
    g = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[k] = h
        g[k] = (evaluate(x + e) - evaluate(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("linear_solver", [None, "gmres"])
def test_cyclic_block_of_structure_ops(linear_solver):
    prog = _fixed_point_program()
    x = point(3, 3)
    assert prog.blocks and "w" in prog.blocks[0]
    options = {} if linear_solver is None else {"linear_solver": linear_solver}
    sol = prog.solve(x=x, tol=1e-13, **options)
    fd = _fd_grad(lambda xx: float(prog.evaluate(x=xx, tol=1e-13)), x)
    np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-6, atol=1e-7)
    assert sol.kkt()["adjoint"] < 1e-8


def test_cyclic_block_matches_the_implicit_function_theorem():
    prog = _fixed_point_program()
    x = point(3, 3)
    sol = prog.solve(x=x, tol=1e-13)
    w = sol.values["w"]

    def f(w, x):
        return 0.4 * anp.tanh(anp.tril(anp.roll(w, 1, axis=0)) + 0.5 * w[:, ::-1].T) + x

    def obj(w):
        return anp.sum(anp.diag(w) * anp.arange(1.0, 4.0)) + anp.sum(anp.repeat(w, 2, axis=1) ** 2)
    J = autograd.jacobian(f)(w, x).reshape(9, 9)
    lam = np.linalg.solve((np.eye(9) - J).T, autograd.grad(obj)(w).ravel())   # Aᵀλ = e_o
    np.testing.assert_allclose(sol.grad["x"].ravel(), lam, rtol=1e-9, atol=1e-11)


def test_residual_block_with_pad_and_take():
    # 0 = v³ + v + take(pad(v))/4 - x: the residual form, checked against the tapes and FD
    prog = lp.Program(name="structure_residual")
    x = prog.input("x", shape=(4,))
    v = prog.variable("v", shape=(4,))
    shifted = np.take(np.pad(v, 1, "constant", constant_values=1.0), [0, 1, 2, 3])
    prog.residual(v, v ** 3 + v + 0.25 * shifted - x)
    prog.output(np.sum(np.hstack([v, np.flip(v)]) * np.arange(8.0)), name="obj")
    xv = point(4)
    for options in ({}, {"linear_solver": "gmres"}):
        sol = prog.solve(x=xv, tol=1e-13, **options)
        fd = _fd_grad(lambda xx: float(prog.evaluate(x=xx, tol=1e-13)), xv)
        np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-6, atol=1e-7)
    report = lp.check(prog, x=xv)
    assert report.ok, str(report)


# ---------------------------------------------------------------- errors


def _trace_error(fun, shape=(2, 3), error=lp.GraphError):
    with pytest.raises(error) as info:
        lp.trace(fun, x=np.ones(shape))
    return str(info.value)


@pytest.mark.parametrize("fun, words", [
    (lambda x: np.pad(x, 1, mode="mean"), ["'mode'", "mean"]),
    (lambda x: np.pad(x, 1, mode="edge", constant_values=2.0), ["constant_values"]),
    (lambda x: np.pad(x, 1, mode="constant", stat_length=2), ["'stat_length'"]),
    (lambda x: np.pad(x, 1, mode=lambda *a: None), ["'mode'"]),
    (lambda x: np.pad(x, x[0, 0]), ["'pad_width'", "static"]),
    (lambda x: np.repeat(x, x[0]), ["'repeats'", "static"]),
    (lambda x: np.tril(x, x[0, 0]), ["'k'"]),
    (lambda x: np.take(x, [0], out=np.zeros(1)), ["'out'"]),
    (lambda x: np.trace(x, dtype=np.int64), ["'dtype'"]),
    (lambda x: np.split(x, x[0]), ["'indices_or_sections'", "static"]),
    (lambda x: np.vstack([x, x], dtype=np.int32), ["'dtype'"]),
    (lambda x: np.select([x], [x]), ["condlist", "boolean"]),
    (lambda x: np.full_like(x, 1.0, device="gpu"), ["'device'"]),
    (lambda x: x.fill(0.0), ["fill", "full_like"]),
])
def test_unsupported_arguments_raise_graph_error(fun, words):
    message = _trace_error(fun)
    for w in words:
        assert w in message, message


@pytest.mark.parametrize("fun", [
    lambda x: np.vsplit(x[0], 2),                 # 1-d
    lambda x: np.split(x, 2, axis=1),             # 3 is not divisible by 2
    lambda x: np.squeeze(x, axis=0),              # length 2
    lambda x: np.diag(x[None]),                   # 3-d
    lambda x: np.moveaxis(x, 0, 5),
    lambda x: np.take(x, [9]),
    lambda x: np.broadcast_to(x, (3, 3)),
])
def test_numpy_shape_errors_are_shape_errors(fun):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trace_error(fun, error=lp.ShapeError)


@pytest.mark.parametrize("mode, kw", [("edge", {}), ("wrap", {}), ("reflect", {}), ("symmetric", {}),
                                      ("reflect", {"reflect_type": "odd"})])
@pytest.mark.parametrize("shape, width", [((4,), (2, 3)), ((3, 4), ((1, 2), (3, 1))), ((2, 3, 3), 1)])
def test_pad_selecting_modes_against_numpy_and_differences(mode, kw, shape, width):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape)
    f = lambda v: np.pad(v, width, mode=mode, **kw)  # noqa: E731
    if kw.get("reflect_type") == "odd":   # 2 x_edge - x_mirror computes values: refused, not gathered
        with pytest.raises(lp.GraphError, match="reflect_type"):
            lp.trace(f, v=x)
        return
    np.testing.assert_array_equal(lp.trace(f, v=x).evaluate(v=x), f(x))
    w = rng.standard_normal(f(x).shape)
    g = lp.grad(lambda v: np.sum(w * f(v)))(x)
    # a selection: the cotangent is w scattered back by numpy's own position map
    pos = np.pad(np.arange(x.size).reshape(shape), width, mode=mode)
    ref = np.zeros(x.size)
    np.add.at(ref, pos.ravel(), w.ravel())
    np.testing.assert_allclose(g, ref.reshape(shape), rtol=1e-14, atol=1e-14)
