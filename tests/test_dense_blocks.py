"""Small cyclic blocks by the dense Newton on generated code (lagrangeprop.blocks.dense, issue 14).

Every cyclic program of the shared suites runs through the dense path and the generic sparse
Newton (``dense.ENABLED = False``): the same values and gradients within the solver tolerance,
kkt certificates that pass, the same errors (class, message, nodes). The scalar programs must
actually be solved by the dense iteration (no silent fallback); array blocks, large blocks and
``method="fixed-point"`` keep the generic path.
"""

import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.blocks import dense
from lagrangeprop.blocks.eliminate import split_members
from lagrangeprop.blocks.state import cache_of
from programs import SCALED_CASES, SELLAR_GUESS, SELLAR_INPUTS, SELLAR_TOTALS, VT, sellar_program
from test_cyclic import deq, linear_cycle, mixed, residual_chain

TOL = 1e-10


def _cubic():
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x); prog.output(w * 1.0, name="o")
    return prog, {"x": 2.5}, {}


def _fixed_point():
    prog = lp.Program(); x = prog.input("x"); y = prog.variable("y")
    prog.define(y, 0.5 * lp.cos(y) + x); prog.output(y * y, name="o")
    return prog, {"x": 1.0}, {}


def _kepler():
    prog = lp.Program(); M = prog.input("M"); e = prog.input("e"); E = prog.variable("E")
    prog.residual(E, E - e * lp.sin(E) - M); prog.output(E * 1.0, name="o")
    return prog, {"M": 1.2, "e": 0.6}, {}


def _lambert():
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w * lp.exp(w) - x); prog.output(w * 1.0, name="o")
    return prog, {"x": 2.0}, {"w": 1.0}


def _diode_mixed():
    """The diode of issue 11 inside a coupled explicit/residual block with a DAG around it."""
    prog = lp.Program(); x = prog.input("x"); r = prog.input("r")
    w = prog.variable("w"); i = prog.variable("i")
    prog.residual(w, 1e-15 * lp.exp(w / VT) - i)
    prog.define(i, x - w / r)
    prog.output(lp.tanh(w) * i + x ** 2, name="o")
    return prog, {"x": 2e-3, "r": 1e3}, {"w": 0.7}


def _registry_ops():
    """Scalar members whose ops have no math form: the registry's numpy function and partials."""
    prog = lp.Program(); x = prog.input("x"); y = prog.variable("y"); w = prog.variable("w")
    prog.define(y, 0.3 * lp.sigmoid(w) + np.abs(x) + 0.1 * np.arctan(y))
    prog.residual(w, np.logaddexp(w, y) + np.hypot(w, 1.0) - lp.maximum(x, 0.1) - 3.0)
    prog.output(w * y, name="o")
    return prog, {"x": -0.7}, {"w": 1.0}


def _scaled(name):
    def build():
        c = SCALED_CASES[name]()
        return c.prog, dict(c.inputs), dict(c.guess)
    return build


SCALAR = {"sellar": lambda: (sellar_program(), dict(SELLAR_INPUTS), dict(SELLAR_GUESS)),
          "cubic": _cubic, "fixed_point": _fixed_point, "kepler": _kepler, "lambert": _lambert,
          "diode_mixed": _diode_mixed, "registry_ops": _registry_ops, **{n: _scaled(n) for n in SCALED_CASES}}
ARRAYS = {"linear": lambda: linear_cycle()[:3], "deq": lambda: deq()[:3],
          "residual": lambda: residual_chain()[:3], "mixed": lambda: mixed()[:3]}


@pytest.fixture
def spy(monkeypatch):
    """Counts the dense iterations that succeeded and those that fell back to the generic Newton."""
    seen = {"dense": 0, "fallback": 0}
    real = dense.try_dense

    def counted(*args):
        state = real(*args)
        seen["dense" if state is not None else "fallback"] += 1
        return state
    monkeypatch.setattr(dense, "try_dense", counted)
    return seen


def _both(build, monkeypatch, **opts):
    prog, inputs, guess = build()
    fast = prog.solve(**inputs, guess=guess, **opts)
    monkeypatch.setattr(dense, "ENABLED", False)
    prog2, _, _ = build()
    ref = prog2.solve(**inputs, guess=guess, **opts)
    monkeypatch.setattr(dense, "ENABLED", True)
    return fast, ref


def _agree(fast, ref, rtol=1e-9):
    for k, v in ref.values.items():
        assert np.allclose(fast.values[k], v, rtol=rtol, atol=0.0), k
    for k, v in ref.multipliers.items():
        scale = max(1.0, float(np.max(np.abs(v))))
        assert np.allclose(fast.multipliers[k], v, rtol=rtol, atol=1e-12 * scale), k


@pytest.mark.parametrize("case", sorted(SCALAR))
@pytest.mark.parametrize("method", ["auto", "newton"])
def test_scalar_blocks_take_the_dense_path_and_match_the_generic_one(case, method, spy, monkeypatch):
    fast, ref = _both(SCALAR[case], monkeypatch, method=method)
    assert spy["dense"] >= 1 and spy["fallback"] == 0
    _agree(fast, ref)
    for sol in (fast, ref):
        kkt = sol.kkt()
        assert kkt["primal"] <= TOL and kkt["adjoint"] <= 1e-9, kkt


def test_sellar_totals_and_state():
    prog = sellar_program()
    sol = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    g = np.concatenate([np.atleast_1d(sol.grad["x"]), sol.grad["z"]])
    assert np.allclose(g, SELLAR_TOTALS, rtol=1e-7)
    blk = sol.schedule.blocks[0]
    state = sol._states[id(blk)]
    assert state.method == "newton" and isinstance(state.A, np.ndarray) and state.A.shape == (blk.size,) * 2
    assert cache_of(blk).dense is not None


@pytest.mark.parametrize("case", sorted(SCALED_CASES))
def test_badly_scaled_blocks_reach_the_reference_root(case, spy):
    c = SCALED_CASES[case]()
    sol = c.prog.solve(**c.inputs, guess=c.guess)
    assert spy["dense"] >= 1 and spy["fallback"] == 0
    for k, v in c.values.items():
        assert float(sol.values[k]) == pytest.approx(v, rel=1e-9, abs=1e-300)
    for k, v in c.grad.items():
        assert float(sol.grad[k]) == pytest.approx(v, rel=1e-7)


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_array_blocks_keep_the_generic_path(case, spy, monkeypatch):
    fast, ref = _both(ARRAYS[case], monkeypatch)
    if case != "mixed":        # mixed holds scalar blocks next to its array block
        assert spy["dense"] == 0
    _agree(fast, ref, rtol=1e-12)


def test_fixed_point_method_and_large_blocks_keep_the_generic_path(spy):
    prog, inputs, guess = SCALAR["sellar"]()
    prog.solve(**inputs, guess=guess, method="fixed-point")
    prog.solve(**inputs, guess=guess, method="anderson")
    assert spy["dense"] == spy["fallback"] == 0
    # a scalar cycle of 40 members: above MAX_UNKNOWNS
    prog = lp.Program(); x = prog.input("x")
    ys = [prog.variable(f"y{i}") for i in range(40)]
    for i, y in enumerate(ys):
        prog.define(y, 0.1 * lp.sin(ys[(i + 1) % 40]) + x)
    prog.output(ys[0] * 1.0, name="o")
    sol = prog.solve(x=0.3, method="newton")
    assert spy["dense"] == 0 and sol.kkt()["primal"] <= TOL


def test_tangent_and_second_order_through_a_dense_block(spy):
    prog, inputs, guess = SCALAR["sellar"]()
    f = lambda v: prog.solve(x=v[0], z=v[1:], guess=guess).output   # noqa: E731
    sol = prog.solve(**inputs, guess=guess)
    v0 = np.array([inputs["x"], *inputs["z"]])
    h = 1e-6
    fd = [(f(v0 + h * e) - f(v0 - h * e)) / (2 * h) for e in np.eye(3)]
    g = np.concatenate([np.atleast_1d(sol.grad["x"]), sol.grad["z"]])
    assert np.allclose(g, fd, rtol=1e-6)
    jz = sol.jacobian_z()
    assert np.isfinite(np.asarray(jz["y1"]["x"])).all()
    assert spy["dense"] >= 1 and spy["fallback"] == 0


def test_generated_reduced_jacobian_is_the_schur_complement():
    prog, inputs, guess = SCALAR["diode_pair"]()
    sol = prog.solve(**inputs, guess=guess)
    blk = sol.schedule.blocks[0]
    code = cache_of(blk).dense
    T, inter = split_members(blk)
    z = [float(sol._vals[n]) for n in blk.nodes]
    z, _, a = code.residual(sol._vals, z)
    A = np.array(code.jacobian(sol._vals, z, a)).reshape(blk.size, blk.size)
    S = np.array(code.reduced(sol._vals, z, a)).reshape(len(T), len(T))
    Ti = np.ix_(T, inter)
    ref = A[np.ix_(T, T)] - A[Ti] @ np.linalg.solve(A[np.ix_(inter, inter)], A[np.ix_(inter, T)])
    assert np.allclose(S, ref, rtol=1e-12, atol=1e-300)
    # A_SS equals the generic assembly from the ops' jac rules
    from lagrangeprop.blocks.assembly import block_jacobian
    assert np.allclose(A, block_jacobian(blk, sol._vals, sol._states[id(blk)].ans).toarray(), rtol=1e-14)


# ------------------------------------------------------------------ errors
def _errors(build, monkeypatch, exc, **opts):
    """The error of both paths: same class, message and nodes."""
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(dense, "ENABLED", enabled)
        prog, inputs, guess = build()
        with pytest.raises(exc) as info:
            prog.solve(**inputs, guess=guess, **opts)
        out.append(info.value)
    assert str(out[0]) == str(out[1]) and out[0].nodes == out[1].nodes
    return out[0]


def test_singular_block_names_its_nodes(monkeypatch):
    def build():
        prog = lp.Program(); x = prog.input("x"); y = prog.variable("y")
        prog.define(y, y + x); prog.output(y * 2.0, name="o")
        return prog, {"x": 1.0}, {}
    err = _errors(build, monkeypatch, lp.SingularSystemError)
    assert err.nodes == ("y",) and err.rcond == 0.0 and "block [y]" in str(err)


def test_dependent_equations_are_named(monkeypatch):
    def build():
        prog = lp.Program(); x = prog.input("x")
        a = prog.variable("a"); b = prog.variable("b")
        prog.residual(a, a + b - x); prog.residual(b, 2 * a + 2 * b - 2 * x)
        prog.output(a * b, name="o")
        return prog, {"x": 1.0}, {}
    err = _errors(build, monkeypatch, lp.SingularSystemError)
    assert {"a", "b"} <= set(err.nodes) and "linearly dependent" in str(err)


def test_singular_at_the_solution_is_caught_by_the_adjoint(spy, monkeypatch):
    def build():
        prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
        prog.residual(w, w ** 3 - x); prog.output(w * 1.0, name="o")
        return prog, {"x": 0.0}, {"w": 0.0}
    err = _errors(build, monkeypatch, lp.SingularSystemError)
    assert "at the solution" in str(err) and spy["dense"] >= 1


def test_no_root_and_non_finite_residuals_raise_the_generic_errors(monkeypatch):
    def no_root():
        prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
        prog.residual(w, w ** 2 + 1.0 + 0.0 * x); prog.output(w * 1.0, name="o")
        return prog, {"x": 1.0}, {"w": 0.5}
    err = _errors(no_root, monkeypatch, lp.ConvergenceError, maxiter=30)
    assert err.iterations == 30 and len(err.history) == 31 and "did not converge with newton" in str(err)

    def log_at_zero():
        prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
        prog.residual(w, lp.log(w) - x); prog.output(w * 1.0, name="o")
        return prog, {"x": 1.0}, {}
    assert "non-finite" in str(_errors(log_at_zero, monkeypatch, lp.ConvergenceError))


def test_a_domain_error_of_python_floats_is_a_rejected_step(spy):
    # sqrt of a negative iterate: numpy's NaN, Python's ValueError; both reject the step
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, lp.sqrt(w) + w - x); prog.output(w * 1.0, name="o")
    sol = prog.solve(x=0.5, guess={"w": 4.0})     # the full step lands at w = -0.4
    wv = float(sol.values["w"])
    assert wv == pytest.approx(((np.sqrt(3.0) - 1.0) / 2.0) ** 2, rel=1e-12)
    assert spy["dense"] == 1 and spy["fallback"] == 0


def test_outside_operands_of_other_kinds_are_not_generated(spy):
    prog = lp.Program(); x = prog.input("x", shape=(2,)); y = prog.variable("y")
    prog.define(y, 0.5 * lp.sin(y) + lp.sum(x)); prog.output(y * 1.0, name="o")
    sol = prog.solve(x=np.array([0.1, 0.2]))     # sum(x) is a scalar upstream: still generated
    assert spy["dense"] == 1
    prog = lp.Program(); x = prog.input("x"); u = prog.variable("u", shape=(2,))
    prog.define(u, 0.5 * lp.cos(u) + x * np.ones(2)); prog.output(lp.sum(u), name="o")
    sol = prog.solve(x=0.3)
    assert spy["dense"] == 1 and sol.kkt()["primal"] <= TOL       # array members: generic


def test_registry_ops_are_called_from_the_generated_code():
    prog, inputs, guess = _registry_ops()
    sol = prog.solve(**inputs, guess=guess)
    text = cache_of(sol.schedule.blocks[0]).dense.text
    assert "float(_k" in text and "V[" in text               # registry calls on floats
    h = 1e-6
    out = [prog.solve(x=inputs["x"] + d, guess=guess).output for d in (h, -h)]
    fd = (out[0] - out[1]) / (2 * h)
    assert float(sol.grad["x"]) == pytest.approx(float(fd), rel=1e-6)


def test_user_primitives_keep_the_generic_path(spy):
    op = lp.primitive("dense_test_cube", lambda v: v ** 3, vjp=lambda g, ans, v: (g * 3 * v ** 2,),
                      jac=lambda ans, v: (np.atleast_2d(3 * v ** 2),))
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, op(w) + w - x); prog.output(w * 1.0, name="o")
    sol = prog.solve(x=2.0)
    assert spy["dense"] == 0 and float(sol.values["w"]) == pytest.approx(1.0)


def test_an_infinite_partial_at_the_solution_hands_the_block_to_the_generic_newton(monkeypatch):
    # Sellar with y1 pinned at 0 by a residual: sqrt(y1)'s partial 0.5/sqrt(0) raises in Python floats
    def build():
        prog = lp.Program(); x = prog.input("x")
        y1, y2 = prog.variable("y1"), prog.variable("y2")
        prog.residual(y1, y1 - 0.0 * y2 - 0.0 * x)
        prog.define(y2, lp.sqrt(y1) + x)
        prog.output(y1 + y2, name="o")
        return prog, {"x": 1.0}, {"y1": 0.0, "y2": 1.0}
    outcomes = []
    for enabled in (True, False):
        monkeypatch.setattr(dense, "ENABLED", enabled)
        prog, inputs, guess = build()
        try:
            sol = prog.solve(**inputs, guess=guess)
            outcomes.append(("ok", float(sol.values["y2"])))
        except lp.LagrangePropError as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("case", sorted(SCALAR))
def test_generated_pullback_is_the_generic_block_adjoint(case, monkeypatch):
    """blocks.dense.adjoint (the generated pull-back, compiled path) against the interpreters'
    block_adjoint (solve_adjoint + each member's VJP rule): the same multipliers, bit for bit."""
    taken = []
    real = dense.adjoint

    def counted(*args):
        taken.append(real(*args))
        return taken[-1]
    from lagrangeprop.solve import compiled
    monkeypatch.setattr(compiled, "block_dense_adjoint", counted)
    prog, inputs, guess = SCALAR[case]()
    fast = prog.solve(**inputs, guess=guess)
    assert taken and all(taken), taken
    monkeypatch.setattr(compiled, "block_dense_adjoint", lambda *args: False)
    prog2, _, _ = SCALAR[case]()
    ref = prog2.solve(**inputs, guess=guess)
    for k, v in ref.multipliers.items():
        assert np.shape(fast.multipliers[k]) == np.shape(v) and np.array_equal(fast.multipliers[k], v), k
    assert fast.kkt()["adjoint"] <= 1e-9


def test_generated_pullback_reads_as_the_vjp_rules():
    """The pull-back's text: λ_u += sign·(∂f_d/∂z_u) λ_d per outside argument (a residual member
    negated), and the finite difference of the output agrees with the gradient it produces."""
    prog, inputs, guess = _kepler()      # E - e·sin(E) - M = 0: λ_M and λ_e through the residual
    sol = prog.solve(**inputs, guess=guess)
    code = cache_of(sol.schedule.blocks[0]).dense
    assert "def pullback(L, V, z, a, l):" in code.text and code.pullback is not None
    E = float(sol.values["E"]); e = inputs["e"]
    assert np.isclose(sol.grad["M"], 1.0 / (1.0 - e * np.cos(E)), rtol=1e-12)
    assert np.isclose(sol.grad["e"], np.sin(E) / (1.0 - e * np.cos(E)), rtol=1e-12)


def test_getitem_scatter_matches_the_rule_and_accumulates():
    """λ_z from several scalar getitems of one array (the compiled scatter) is the registry's
    getitem VJP summed, the same as the interpreters' and as the closed form."""
    from lagrangeprop.solve import compiled
    f = lambda z: z[0] * z[2] + lp.sin(z[0]) + z[1, ] * 2.0   # noqa: E731
    z0 = np.array([0.3, -1.2, 2.0])
    g = lp.trace(f, z=z0).solve(z=z0).grad["z"]
    expect = np.array([z0[2] + np.cos(z0[0]), 2.0, z0[0]])
    assert np.array_equal(g, expect) or np.allclose(g, expect, rtol=1e-15, atol=0.0)
    old = compiled.ENABLED
    try:
        compiled.ENABLED = False
        ref = lp.trace(f, z=z0).solve(z=z0).grad["z"]
    finally:
        compiled.ENABLED = old
    assert np.array_equal(g, ref)


def _two_residuals():
    """Two coupled residual states (a 2×2 Schur complement) with an explicit intermediate."""
    prog = lp.Program(); x = prog.input("x"); u = prog.variable("u"); v = prog.variable("v")
    prog.residual(u, u ** 3 + 0.5 * v - x); prog.residual(v, lp.exp(0.2 * v) + u * v - 2.0)
    prog.output(u * v + x, name="o")
    return prog, {"x": 1.3}, {"u": 1.0, "v": 1.0}


@pytest.mark.parametrize("case", sorted(SCALAR) + ["two_residuals"])
def test_adjoint_by_elimination_is_the_lu_solve(case, rng):
    """blocks.dense._tsolve (Sᵀ λ_T = -F(0) on the states, the intermediates by the reverse sweep)
    against numpy's solve of A_SSᵀ λ = b at the solution, for random right-hand sides."""
    prog, inputs, guess = (_two_residuals if case == "two_residuals" else SCALAR[case])()
    sol = prog.solve(**inputs, guess=guess)
    blk = sol.schedule.blocks[0]
    code, state = cache_of(blk).dense, sol._states[id(blk)]
    for _ in range(3):
        b = rng.standard_normal(blk.size)
        got = dense._tsolve(blk, code, state, sol._vals, b.tolist())
        ref = np.linalg.solve(state.A.T, b)
        assert got is not None
        assert np.allclose(got, ref, rtol=1e-10, atol=1e-12 * np.max(np.abs(ref))), (got, ref)
    if case == "two_residuals":
        assert len(code.states) == 2


def test_elimination_declines_a_non_finite_reduced_system():
    """Sᵀ not finite (or exactly zero): _tsolve declines (None) and the LU of A_SS decides, with
    its own singularity report, as before."""
    prog, inputs, guess = _cubic()
    sol = prog.solve(**inputs, guess=guess)
    blk = sol.schedule.blocks[0]
    code, state = cache_of(blk).dense, sol._states[id(blk)]
    vals = list(sol._vals)
    vals[blk.nodes[0]] = np.array(np.nan)     # a non-finite point: the sweep's numbers are NaN
    assert dense._tsolve(blk, code, state, vals, [1.0] * blk.size) is None
