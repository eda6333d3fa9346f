"""The per-solve fixed cost cuts (issue 14) keep every check: finiteness tests, fresh arrays,
the method a small block gets, and the compile-time validation of a traced graph."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import fsolve

from programs import sellar_program

import lagrangeprop as lp
from lagrangeprop.blocks import dense
from lagrangeprop.solve.finite import SMALL_MAX, all_finite, finite_array
from lagrangeprop.solve.inputs import parse_guess


@pytest.mark.parametrize("size", [1, 2, 3, SMALL_MAX, SMALL_MAX + 1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_small_array_finite_tests_agree_with_numpy(size, bad):
    a = np.linspace(-1e300, 1e300, size)
    assert finite_array(a) and all_finite([a]) and all_finite([None, a, np.float64(2.0)])
    for k in range(size):
        b = a.copy()
        b[k] = bad
        assert finite_array(b) == bool(np.isfinite(b).all()) is False
        assert all_finite([b]) is False and all_finite([np.ones(2), b]) is False
    assert all_finite([np.array(bad)]) is False and all_finite([np.array(1e308)]) is True
    assert finite_array(np.full((2, 2), 1e308)) and not finite_array(np.array([[1.0, bad]]))


def test_parse_guess_own_shares_no_memory():
    prog = lp.Program()
    x = prog.input("x")
    w = prog.variable("w", shape=(2,))
    prog.residual(w, w**3 + w - x)
    prog.output(lp.sum(w), name="o")
    sched = prog.compile()
    g = np.array([0.5, 0.5])
    for own in (False, True):
        out = parse_guess(sched, {"w": g}, own=own)[sched.index["w"]]
        np.testing.assert_array_equal(out, g)
        assert np.shares_memory(out, g) is not own
    sol = prog.solve(x=2.0, guess={"w": g})
    g[:] = 1e6     # the caller's array edited after the solve: nothing in the Solution changes
    np.testing.assert_allclose(sol.values["w"], [1.0, 1.0], rtol=1e-12)   # w³ + w = 2


def _sellar_ref(x, z):
    """Sellar's objective by scipy's fsolve on the coupled equations (independent of lp)."""
    def eqs(y):
        return [y[0] - (z[0] ** 2 + z[1] + x - 0.2 * y[1]), y[1] - (np.sqrt(y[0]) + z[0] + z[1])]
    y1, y2 = fsolve(eqs, [1.0, 1.0], xtol=1e-14)
    return x**2 + z[1] + y1 + np.exp(-y2)


@pytest.mark.parametrize("method", [None, "newton"])
def test_small_block_goes_to_the_dense_newton_with_the_generic_answer(method):
    prog = sellar_program()
    z = np.array([5.0, 2.0])
    sol = prog.solve(x=1.0, z=z, guess={"y1": 1.0, "y2": 1.0}, method=method)
    (state,) = sol._states.values()
    assert state.method == "newton" and isinstance(state.A, np.ndarray)   # the dense path's state
    assert sol.kkt()["primal"] <= 1e-10
    h = 1e-6
    fd_x = (_sellar_ref(1.0 + h, z) - _sellar_ref(1.0 - h, z)) / (2 * h)
    fd_z = [(_sellar_ref(1.0, z + h * e) - _sellar_ref(1.0, z - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(sol.grad["x"], fd_x, rtol=1e-7)
    np.testing.assert_allclose(sol.grad["z"], fd_z, rtol=1e-7)
    dense.ENABLED = False
    try:
        generic = sellar_program().solve(x=1.0, z=z, guess={"y1": 1.0, "y2": 1.0}, method=method)
    finally:
        dense.ENABLED = True
    np.testing.assert_allclose(sol.grad["z"], generic.grad["z"], rtol=1e-12)
    np.testing.assert_allclose(sol.output, generic.output, rtol=1e-14)


def test_compile_of_a_traced_program_counts_no_edit_and_an_edit_still_recompiles():
    prog = lp.trace(lambda x: lp.sin(x) * 2.0 + 0.5, x=0.3)
    G = prog.graph
    before = G.edits
    prog.compile()
    assert G.edits == before          # the compile's own normalization is no edit of the graph
    assert prog.solve(x=0.3).output == pytest.approx(np.sin(0.3) * 2.0 + 0.5, rel=1e-15)
    sin = next(n for n, d in G.nodes(data=True) if d.get("op") == "sin")
    G.nodes[sin]["params"]["bogus"] = 1       # an edit of a tracked params dict: validated again
    with pytest.raises(lp.GraphError, match="bogus"):
        prog.solve(x=0.3)
