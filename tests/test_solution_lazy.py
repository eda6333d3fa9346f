"""A lazy Solution and the per-solve fixed cost (issue 14).

The Solution's dicts are built only when read, and a gradient call builds only the inputs'
multipliers; the numbers are the eager ones, read-only, and owned (SPEC §2: editing the
caller's arrays after the solve, before anything is read, changes nothing). What is kept
between solves (option objects, the input table) never lets a bad argument through: every
InputError and NonFiniteError is the one an uncached call raises. Both paths (generated code
and interpreters) run every test. No timing assertions: what is counted is calls.
"""

import warnings

import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.compile.plan import FINITE_BATCH_MAX
from lagrangeprop.options import SolveOptions
from lagrangeprop.solve import compiled
from lagrangeprop.solve.adjoint import adjoint_reference
from lagrangeprop.solve.finite import all_finite, finite_array
from lagrangeprop.solve.forward import forward_reference, initial_values
from lagrangeprop.solve.solution import Solution

LAZY = ("values", "multipliers", "grad")


@pytest.fixture(params=[True, False], ids=["generated", "interpreters"])
def path(request, monkeypatch):
    monkeypatch.setattr(compiled, "ENABLED", request.param)
    return request.param


def _mixed(x, w):
    a = lp.exp(x) * w
    return lp.sum(lp.sin(a) * a) + x ** 2


def _program():
    return lp.trace(_mixed, x=0.3, w=np.ones(3))


def _reference(prog, inputs):
    """values and multipliers by the reference interpreters, keyed by name."""
    sched = prog.compile()
    opts = SolveOptions.make()
    vals = initial_values(sched, {sched.index[k]: np.asarray(v, dtype=float) for k, v in inputs.items()})
    states = forward_reference(sched, vals, opts)
    lam = adjoint_reference(sched, vals, np.float64(1.0), states, opts)
    nodes = [*sched.inputs, *sched.defined]
    zero = [np.zeros(sched.shapes[i]) for i in range(len(sched.names))]
    return ({sched.names[i]: vals[i] for i in nodes},
            {sched.names[i]: zero[i] if lam[i] is None else lam[i] for i in nodes})


# ------------------------------------------------------------------ laziness
def test_nothing_is_built_until_read(path):
    prog = _program()
    sol = prog.solve(x=0.3, w=np.array([1.0, 2.0, 3.0]))
    assert not any(k in vars(sol) for k in LAZY)
    assert np.isfinite(sol.output)
    assert not any(k in vars(sol) for k in LAZY)
    assert sol.grad["x"] != 0
    assert [k for k in LAZY if k in vars(sol)] == ["grad"]
    assert len(sol.values) == len(vars(sol)["values"])
    assert "multipliers" not in vars(sol)


def test_a_gradient_builds_only_the_inputs_multipliers(path, monkeypatch):
    calls = []
    original = Solution._multiplier
    monkeypatch.setattr(Solution, "_multiplier", lambda self, i: calls.append(i) or original(self, i))
    prog = _program()
    sol = prog.solve(x=0.3, w=np.ones(3))
    assert list(sol.grad) == ["x", "w"]
    sched = prog.compile()
    assert sorted(calls) == sorted(sched.inputs)
    calls.clear()
    _, (gx, gw) = lp.value_and_grad(_mixed, argnum=(0, 1))(0.3, np.ones(3))
    assert len(calls) == 2 and np.shape(gw) == (3,)


@pytest.mark.parametrize("order", [("grad", "multipliers", "values"), ("multipliers", "grad", "values"),
                                   ("values", "multipliers", "grad")])
def test_lazy_dicts_are_the_eager_numbers_in_any_order(path, order):
    prog = _program()
    w = np.array([0.5, -1.0, 2.0])
    sol = prog.solve(x=0.3, w=w)
    got = {k: getattr(sol, k) for k in order}
    values, multipliers = _reference(prog, {"x": 0.3, "w": w})
    sched = prog.compile()
    names = [sched.names[i] for i in [*sched.inputs, *sched.defined]]
    assert list(got["values"]) == names and list(got["multipliers"]) == names
    assert list(got["grad"]) == ["x", "w"]
    for k in names:
        np.testing.assert_allclose(got["values"][k], values[k], rtol=1e-14, atol=0)
        np.testing.assert_allclose(got["multipliers"][k], multipliers[k], rtol=1e-13, atol=1e-300)
        assert np.shape(got["multipliers"][k]) == sched.shapes[sched.index[k]]
    for k in ("x", "w"):
        np.testing.assert_array_equal(got["grad"][k], got["multipliers"][k])
    if order.index("multipliers") < order.index("grad"):
        assert all(got["grad"][k] is got["multipliers"][k] for k in ("x", "w"))
    assert all(getattr(sol, k) is got[k] for k in order)   # built once, then kept
    assert sol.inputs.keys() == {"x", "w"}
    np.testing.assert_array_equal(sol.inputs["w"], w)


def test_everything_read_is_read_only(path):
    prog = lp.trace(lambda x: lp.sum(x * x), x=np.ones(3))
    sol = prog.solve(x=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="read-only"):
        sol.grad["x"][0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        sol.values["x"][0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        sol.multipliers["x"][0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        sol.inputs["x"][0] = 5.0
    np.testing.assert_array_equal(sol.grad["x"], [2.0, 4.0, 6.0])


def test_kkt_report_and_repr_of_a_lazy_solution(path):
    sol = _program().solve(x=0.3, w=np.ones(3))
    assert "Solution(" in repr(sol)
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-12 and kkt["adjoint"] <= 1e-12
    assert "multiplier" in sol.report()


def test_a_lazy_solution_reads_its_own_schedule_after_a_graph_edit(path):
    prog = lp.trace(lambda x: lp.exp(x) + x, x=0.0)
    sol = prog.solve(x=0.5)
    prog.graph.nodes["exp_0"]["op"] = "sin"
    assert float(prog.solve(x=0.5).grad["x"]) == pytest.approx(np.cos(0.5) + 1.0)
    assert float(sol.values["exp_0"]) == pytest.approx(np.exp(0.5))
    assert float(sol.grad["x"]) == pytest.approx(np.exp(0.5) + 1.0)


# ---------------------------------------------------- a Solution owns its numbers
@pytest.mark.parametrize("make", [lambda: np.array([1.0, 2.0, 3.0]),                  # fast path
                                  lambda: np.array([[1.0, 9.0], [2.0, 9.0], [3.0, 9.0]])[:, 0],  # strided
                                  lambda: np.array([1, 2, 3])],                        # ints: general path
                         ids=["float64", "strided-view", "int"])
def test_editing_inputs_before_the_first_read_changes_nothing(path, make):
    prog = lp.trace(lambda x: lp.sum(x * x), x=np.ones(3))
    x = make()
    sol = prog.solve(x=x)
    x[...] = 100   # before any dict was built
    np.testing.assert_array_equal(sol.values["x"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(sol.grad["x"], [2.0, 4.0, 6.0])
    assert float(sol.output) == 14.0


def test_a_0d_array_input_and_a_seed_are_owned(path):
    prog = lp.trace(lambda x: x * np.array([1.0, 2.0]), x=1.0)
    x, seed = np.array(3.0), np.array([1.0, 1.0])
    sol = prog.solve(x=x, seed=seed)
    x[...] = -1.0
    seed[...] = 7.0
    assert float(sol.values["x"]) == 3.0 and float(sol.grad["x"]) == 3.0
    np.testing.assert_array_equal(sol.seed, [1.0, 1.0])


def test_a_guess_array_is_owned(path):
    prog = lp.Program(name="cubic")
    x = prog.input("x", shape=(2,))
    w = prog.variable("w", shape=(2,))
    prog.residual(w, w ** 3 + w - x)
    prog.output(lp.sum(w), name="o")
    g = np.array([0.5, 0.5])
    sol = prog.solve(x=np.array([2.0, 10.0]), guess={"w": g})
    g[...] = np.nan
    np.testing.assert_allclose(sol.values["w"], [1.0, 2.0], rtol=1e-10)


# --------------------------------------------------- kept objects, unchanged checks
def test_option_objects_are_kept_and_checked_by_type():
    assert SolveOptions.make() is SolveOptions.make()
    assert SolveOptions.make(tol=1e-8, maxiter=5) is SolveOptions.make(tol=1e-8, maxiter=5)
    assert SolveOptions.make(maxiter=1).maxiter == 1
    for _ in range(2):   # the kept maxiter=1 never answers for True (True == 1)
        with pytest.raises(lp.InputError, match=r"maxiter=True must be a positive integer"):
            SolveOptions.make(maxiter=True)
        with pytest.raises(lp.InputError, match=r"tol=1 must be a finite real number"):
            SolveOptions.make(tol=1)
        with pytest.raises(lp.InputError, match=r"method='' is not one of"):
            SolveOptions.make(method="")
    assert SolveOptions.make(maxiter=np.int64(3)).maxiter == 3    # not kept (not a plain type): checked
    for k in range(40):   # more combinations than are kept: still right
        assert SolveOptions.make(maxiter=k + 1).maxiter == k + 1


def test_option_errors_from_solve_are_unchanged(path):
    prog = lp.trace(lambda x: x * x, x=1.0)
    prog.solve(x=1.0, maxiter=1)
    with pytest.raises(lp.InputError, match="maxiter=True must be a positive integer"):
        prog.solve(x=1.0, maxiter=True)
    with pytest.raises(lp.InputError, match="tol=0.0 must be a finite real number"):
        prog.solve(x=1.0, tol=0.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, np.float64(-np.inf)])
def test_non_finite_inputs_raise_the_same_error_after_good_solves(path, bad):
    prog = lp.trace(lambda x, v: x * lp.sum(v), x=1.0, v=np.ones(3))
    big = lp.trace(lambda v: lp.sum(v), v=np.ones(FINITE_BATCH_MAX + 10))
    for _ in range(2):
        prog.solve(x=1.0, v=np.ones(3))
        big.solve(v=np.ones(FINITE_BATCH_MAX + 10))
    with pytest.raises(lp.InputError, match=r"input 'x' contains NaN or inf; inputs must be finite"):
        prog.solve(x=bad, v=np.ones(3))
    v = np.ones(3)
    v[1] = bad
    with pytest.raises(lp.InputError, match=r"input 'v' contains NaN or inf; inputs must be finite"):
        prog.solve(x=1.0, v=v)
    v = np.ones(FINITE_BATCH_MAX + 10)
    v[-1] = bad
    with pytest.raises(lp.InputError, match=r"input 'v' contains NaN or inf; inputs must be finite"):
        big.solve(v=v)
    with pytest.raises(lp.InputError, match=r"input 'v' has shape \(2,\), the program expects \(3,\)"):
        prog.solve(x=1.0, v=np.ones(2))
    with pytest.raises(lp.InputError, match=r"missing input\(s\) \['v'\]"):
        prog.solve(x=1.0)


@pytest.mark.parametrize("n", [3, FINITE_BATCH_MAX + 10], ids=["small", "large"])
def test_a_non_finite_multiplier_is_still_named(path, n):
    prog = lp.trace(lambda x: lp.sum(lp.sqrt(x)), x=np.ones(n))
    x = np.ones(n)
    prog.solve(x=x)
    x[1] = 0.0   # sqrt's derivative is infinite at 0
    with pytest.raises(lp.NonFiniteError, match=r"gradient \(multiplier\) of input 'x' is inf"):
        prog.solve(x=x)
    scalar = lp.trace(lambda x: lp.sqrt(x), x=1.0)
    with pytest.raises(lp.NonFiniteError, match=r"input 'x' is inf"):
        scalar.solve(x=0.0)


# ------------------------------------------------------------------- errstate
def test_a_scalar_solve_enters_no_errstate_and_large_arrays_warn_nothing(path, monkeypatch):
    entered = []
    original = np.errstate

    class Counting(original):
        def __enter__(self):
            entered.append(1)
            return super().__enter__()
    monkeypatch.setattr(np, "errstate", Counting)
    prog = lp.trace(lambda x: lp.exp(x) ** 2 + lp.sin(x), x=0.5)
    prog.solve(x=0.5)
    entered.clear()
    sol = prog.solve(x=0.5).grad
    if path:   # the generated code of a scalar program is plain Python floats
        assert entered == []
    assert float(sol["x"]) == pytest.approx(2 * np.exp(1.0) + np.cos(0.5))
    huge = np.full(FINITE_BATCH_MAX + 10, 1e200)   # r·r overflows: the exact test decides
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert finite_array(huge) and all_finite([huge, 1.0, None, np.ones(2)])
        huge[3] = np.nan
        assert not finite_array(huge) and not all_finite([None, huge])
