"""The failure family (issue 11 §6): bad options and inputs raise LagrangePropError subclasses
naming the fix, never a foreign exception and never a silently converted value.

Numbers that do come out (integer inputs, a scalar guess filling a vector block, a scalar seed)
are checked against closed forms and scipy.
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import lagrangeprop as lp
from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program


def cubic_program() -> lp.Program:
    """w³ + w − x = 0, output w²: dw/dx = 1/(3w² + 1), d(w²)/dx = 2w/(3w² + 1)."""
    prog = lp.Program(name="cubic")
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x)
    prog.output(w * w, name="o")
    return prog


def cubic_root(x: float) -> float:
    b = abs(x) + 1.0   # |w| <= |x| since w³ + w = x
    return so.brentq(lambda w: w ** 3 + w - x, -b, b, xtol=1e-15, rtol=4 * np.finfo(float).eps)


def vector_block() -> lp.Program:
    """w_i³ + w_i = x_i elementwise (a 3-vector block), output Σ w_i."""
    prog = lp.Program(name="vec")
    x = prog.input("x", shape=(3,))
    w = prog.variable("w", shape=(3,))
    prog.residual(w, w ** 3 + w - x)
    prog.output(lp.sum(w), name="o")
    return prog


def dag_program() -> lp.Program:
    return lp.trace(lambda x: lp.exp(x) * x, x=1.0)


def vector_output() -> lp.Program:
    return lp.trace(lambda x: x * 2.0, x=np.ones(3))


# ------------------------------------------------------------------------------- options
BAD_OPTIONS = [
    ("tol", "abc", ["tol='abc'", "real number"]),
    ("tol", "1e-8", ["tol='1e-8'"]),
    ("tol", [1e-3], ["tol=[0.001]"]),
    ("tol", 1j, ["tol=1j"]),
    ("tol", True, ["tol=True"]),
    ("tol", -1e-3, ["tol=-0.001", "0 < tol < 1"]),
    ("tol", 0, ["tol=0", "0 < tol < 1"]),
    ("tol", 0.0, ["tol=0.0"]),
    ("tol", 1.0, ["tol=1.0"]),
    ("tol", float("nan"), ["tol=nan", "finite"]),
    ("tol", float("inf"), ["tol=inf"]),
    ("maxiter", "a", ["maxiter='a'", "integer"]),
    ("maxiter", "5", ["maxiter='5'", "not str"]),
    ("maxiter", 0, ["maxiter=0", "positive integer"]),
    ("maxiter", -3, ["maxiter=-3"]),
    ("maxiter", 2.5, ["maxiter=2.5", "not float"]),
    ("maxiter", 3.0, ["maxiter=3.0", "not float"]),
    ("maxiter", float("nan"), ["maxiter=nan"]),
    ("maxiter", float("inf"), ["maxiter=inf"]),
    ("maxiter", True, ["maxiter=True", "not bool"]),
    ("method", "nope", ["method='nope'", "'newton'", "'anderson'", "'fixed-point'"]),
    ("method", "", ["method=''", "'auto'"]),
    ("method", 3, ["method=3"]),
    ("method", "Newton", ["method='Newton'", "'newton'"]),
    ("linear_solver", "lu", ["linear_solver='lu'", "'direct'", "'gmres'", "'bicgstab'"]),
    ("linear_solver", ["direct"], ["linear_solver=['direct']"]),
    ("linear_solver", "", ["linear_solver=''"]),
]


@pytest.mark.parametrize("entry", ["solve", "evaluate"])
@pytest.mark.parametrize("name, value, words", BAD_OPTIONS, ids=[f"{n}={v!r}" for n, v, _ in BAD_OPTIONS])
def test_bad_option_raises_input_error_naming_it(entry, name, value, words):
    prog = sellar_program()
    with pytest.raises(lp.InputError) as info:
        getattr(prog, entry)(**SELLAR_INPUTS, guess=SELLAR_GUESS, **{name: value})
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("opts", [dict(tol=1e-12), dict(tol=np.float32(1e-6)), dict(tol=np.float64(1e-9)),
                                  dict(maxiter=50), dict(maxiter=np.int64(50)), dict(method="newton"),
                                  dict(method=None, linear_solver=None), dict(linear_solver="gmres")])
def test_valid_options_are_accepted_and_solve_right(opts):
    x = 2.0
    w = cubic_root(x)
    sol = cubic_program().solve(x=x, guess={"w": 1.0}, **opts)
    tol = float(opts.get("tol") or 1e-10)
    assert float(sol.values["w"]) == pytest.approx(w, rel=10 * tol)
    assert float(sol.grad["x"]) == pytest.approx(2 * w / (3 * w * w + 1), rel=1e-6)


# --------------------------------------------------------------------------------- inputs
class _BadArray:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("cannot convert")


BAD_INPUTS = [
    (np.array([5.0 + 1j, 2.0]), ["'z'", "complex", "np.real"]),      # the example
    (np.array([5.0 + 0j, 2.0 + 0j]), ["'z'", "complex"]),            # zero imaginary part too
    ([5.0, 2.0 + 1j], ["'z'", "complex"]),
    (np.array([True, False]), ["'z'", "boolean"]),
    (["5", "2"], ["'z'", "dtype <U1"]),
    (np.array(["5", "2"]), ["'z'", "dtype"]),
    (np.array([5.0, 2.0], dtype=object), ["'z'", "object array"]),
    (np.array([1.0, "a"], dtype=object), ["'z'", "object array"]),
    ([[5.0], [2.0, 1.0]], ["'z'", "rectangular"]),
    ([5.0, [2.0]], ["'z'", "rectangular"]),
    (None, ["'z'", "None"]),
    ({"a": 1.0}, ["'z'", "dict"]),
    (np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"), ["'z'", "datetime64"]),
    (np.array([1, 2], dtype="timedelta64[s]"), ["'z'", "timedelta64"]),
    (np.ma.masked_array([5.0, 2.0], mask=[True, False]), ["'z'", "masked"]),
    (sp.csr_matrix(np.ones((1, 2))), ["'z'", "sparse", "toarray"]),
    ([10 ** 400, 2.0], ["'z'", "object array", "int64"]),
    (_BadArray(), ["'z'", "_BadArray", "rectangular"]),
    (np.array([np.nan, 2.0]), ["'z'", "NaN or inf"]),
    (np.array([5.0, -np.inf]), ["'z'", "NaN or inf"]),
    (np.ones(3), ["'z'", "(3,)", "(2,)"]),
    (np.ones((1, 2)), ["'z'", "(1, 2)", "(2,)"]),
    (np.matrix([5.0, 2.0]), ["'z'", "(1, 2)"]),
]


@pytest.mark.parametrize("entry", ["solve", "evaluate"])
@pytest.mark.parametrize("z, words", BAD_INPUTS, ids=[f"{type(z).__name__}-{i}" for i, (z, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_input_error_naming_it(entry, z, words):
    prog = sellar_program()
    with pytest.raises(lp.InputError) as info:
        getattr(prog, entry)(x=1.0, z=z, guess=SELLAR_GUESS)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("x, words", [(1j, ["'x'", "complex"]), (np.complex128(1.0), ["complex"]),
                                      (True, ["boolean"]), (np.bool_(True), ["boolean"]), ("1.0", ["string '1.0'"]),
                                      (b"1", ["string"]), (None, ["None"]), (np.float64("nan"), ["NaN or inf"]),
                                      (np.longdouble("1e400"), ["overflows float64"]),
                                      (np.array([1.0]), ["(1,)"])])
def test_bad_scalar_input(x, words):
    with pytest.raises(lp.InputError) as info:
        dag_program().solve(x=x)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_complex_input_is_not_silently_its_real_part():
    """Before: z = [5+1j, 2] solved at z = [5, 2] and returned that gradient."""
    prog = sellar_program()
    with pytest.raises(lp.InputError, match="complex"):
        prog.solve(x=1.0, z=np.array([5.0 + 1j, 2.0]), guess=SELLAR_GUESS)
    with pytest.raises(lp.InputError, match="complex"):
        lp.grad(lambda x: lp.sum(x * x))(np.array([1.0 + 2j, 1.0]))


def test_missing_and_extra_inputs_suggest_the_fix():
    prog = sellar_program()
    with pytest.raises(lp.InputError, match=r"missing input\(s\) \['z'\].*z=<array of shape \(2,\)>"):
        prog.solve(x=1.0, guess=SELLAR_GUESS)
    with pytest.raises(lp.InputError, match=r"unexpected input\(s\) \['tols'\] \(did you mean 'tol'\?\)"):
        prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS, tols=1e-3)
    with pytest.raises(lp.InputError, match=r"unexpected input\(s\) \['zz'\] \(did you mean 'z'\?\)"):
        prog.solve(**SELLAR_INPUTS, zz=1.0)


@pytest.mark.parametrize("x", [2, np.int64(2), np.uint8(2), np.float32(2.0), np.float16(2.0)])
def test_integer_and_narrow_float_inputs_are_promoted_to_float64(x):
    """Documented: ints and narrower floats are promoted to float64 (exactly, for these)."""
    w = cubic_root(2.0)
    sol = cubic_program().solve(x=x, guess={"w": 1.0})
    assert sol.values["x"].dtype == np.float64 and sol.grad["x"].dtype == np.float64
    assert float(sol.grad["x"]) == pytest.approx(2 * w / (3 * w * w + 1), rel=1e-12)


def test_integer_array_input_gradient_matches_closed_form():
    xs = np.array([1, 2, 3])
    sol = vector_block().solve(x=xs, guess={"w": 0.5})
    w = np.array([cubic_root(float(v)) for v in xs])
    np.testing.assert_allclose(sol.grad["x"], 1 / (3 * w * w + 1), rtol=1e-12)


# ---------------------------------------------------------------------------------- guess
@pytest.mark.parametrize("guess", [[1], "y1", 5, (("y1", 1.0),), np.array([1.0, 1.0])])
def test_guess_must_be_a_dict(guess):
    with pytest.raises(lp.InputError, match=r"guess must be a dict \{variable name: starting value\}.*'y1'"):
        sellar_program().solve(**SELLAR_INPUTS, guess=guess)


@pytest.mark.parametrize("value, words", [("a", ["'y1'", "string 'a'"]), (None, ["'y1'", "None"]),
                                          (1j, ["'y1'", "complex"]), (np.nan, ["'y1'", "NaN or inf"]),
                                          (True, ["'y1'", "boolean"]), ([1.0, 2.0], ["'y1'", "(2,)", "()"]),
                                          ({"a": 1}, ["'y1'", "dict"])])
def test_bad_guess_value_names_the_variable(value, words):
    with pytest.raises(lp.InputError) as info:
        sellar_program().solve(**SELLAR_INPUTS, guess={"y1": value, "y2": 1.0})
    msg = str(info.value)
    assert "shape () vs ()" not in msg and "has shape (), the variable has shape ()" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_guess_for_unknown_input_or_constant_names_it_and_the_block_variables():
    prog = sellar_program()
    with pytest.raises(lp.InputError, match=r"'y3'.*not a variable.*did you mean 'y[12]'.*\['y1', 'y2'"):
        prog.solve(**SELLAR_INPUTS, guess={"y1": 1.0, "y3": 1.0})
    with pytest.raises(lp.InputError, match=r"the input 'x'.*as x=\.\.\."):
        prog.solve(**SELLAR_INPUTS, guess={"x": 1.0})
    const = next(n for n, d in prog.graph.nodes(data=True) if d["role"] == "constant")
    with pytest.raises(lp.InputError, match=f"the constant '{const}'"):
        prog.solve(**SELLAR_INPUTS, guess={const: 1.0})
    with pytest.raises(lp.InputError, match="no cyclic block"):
        dag_program().solve(x=1.0, guess={"nope": 1.0})


def test_guess_for_a_defined_variable_outside_the_blocks_warns_and_changes_nothing():
    """Decision: accepted (validated), unused, and a warning says so."""
    prog = sellar_program()
    ref = prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    with pytest.warns(UserWarning, match=r"guess for \['obj'\] is not used.*block variables are \['y1', 'y2'"):
        sol = prog.solve(**SELLAR_INPUTS, guess={**SELLAR_GUESS, "obj": 123.0})
    assert float(sol.output) == float(ref.output)
    with pytest.raises(lp.InputError, match="'obj'"):       # still validated
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog.solve(**SELLAR_INPUTS, guess={**SELLAR_GUESS, "obj": "a"})


def test_scalar_guess_fills_a_vector_block_and_other_shapes_raise():
    xs = np.array([0.5, 2.0, 10.0])
    w = np.array([cubic_root(v) for v in xs])
    prog = vector_block()
    sol = prog.solve(x=xs, guess={"w": 1.0})
    np.testing.assert_allclose(sol.values["w"], w, rtol=1e-12)
    np.testing.assert_allclose(sol.grad["x"], 1 / (3 * w * w + 1), rtol=1e-10)
    for bad in (np.ones(1), np.ones(2), np.ones((2, 3)), np.ones((1, 3))):
        words = re.escape(f"guess for 'w' has shape {bad.shape}") + r".*\(3,\).*scalar"
        with pytest.raises(lp.InputError, match=words):
            prog.solve(x=xs, guess={"w": bad})


# ----------------------------------------------------------------------------------- seed
@pytest.mark.parametrize("seed, cls, words", [
    ("a", lp.InputError, ["seed", "string 'a'"]),
    (np.ones(3) * 1j, lp.InputError, ["seed", "complex"]),
    (np.array([1.0, np.nan, 1.0]), lp.InputError, ["seed", "NaN or inf"]),
    (None, lp.ShapeError, ["seed=", "(3,)"]),
    (np.ones(2), lp.ShapeError, ["seed has shape (2,)", "(3,)"]),
    ([True, False, True], lp.InputError, ["boolean"]),
])
def test_bad_seed(seed, cls, words):
    with pytest.raises(cls) as info:
        vector_output().solve(x=np.ones(3), seed=seed)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_complex_seed_is_not_silently_dropped():
    """Before: seed = 1j·ones gave a zero gradient (the real part of the seed)."""
    with pytest.raises(lp.InputError, match="complex"):
        vector_output().solve(x=np.ones(3), seed=np.ones(3) * 1j)


def test_scalar_seed_scales_a_scalar_gradient():
    sol = dag_program().solve(x=1.0, seed=3)
    assert float(sol.grad["x"]) == pytest.approx(3 * 2 * np.e, rel=1e-14)   # d(x e^x) = (1 + x) e^x


# ----------------------------------------------------------------------- shapes of inputs
@pytest.mark.parametrize("shape", ["ab", "12", "2", b"2", (2.5,), (2.0,), 2.0, True, (True,), {"a": 1},
                                   {2}, None, (-1,), -1, (None,), ("2",), (10 ** 30,), object()])
@pytest.mark.parametrize("method", ["input", "variable"])
def test_bad_shape_raises_shape_error(method, shape):
    if method == "variable" and shape is None:
        return   # variable(shape=None) means "infer it"
    with pytest.raises(lp.ShapeError, match="shape of 'v'"):
        getattr(lp.Program(), method)("v", shape=shape)


@pytest.mark.parametrize("shape, expected", [(3, (3,)), ([2], (2,)), ((np.int64(2), 3), (2, 3)),
                                             (np.array([2, 3]), (2, 3)), ((), ()), (range(2, 4), (2, 3))])
def test_valid_shapes(shape, expected):
    assert lp.Program().input("v", shape=shape).shape == expected


# ----------------------------------------------------- the Lagrangian at arbitrary points
@pytest.fixture
def sellar_solution():
    prog = sellar_program()
    return prog, prog.solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)


def test_lagrangian_point_arguments(sellar_solution):
    prog, sol = sellar_solution
    inputs = dict(SELLAR_INPUTS)
    cases = [
        (lambda: prog.lagrangian("abc"), "pass a Solution"),
        (lambda: prog.lagrangian(None), "pass a Solution"),
        (lambda: prog.lagrangian(inputs), "pass a Solution"),
        (lambda: prog.lagrangian([1.0], sol.values, sol.multipliers), "inputs must be a dict"),
        (lambda: prog.lagrangian(inputs, [1, 2], {}), "values must be a dict"),
        (lambda: prog.lagrangian(inputs, sol.values, [1.0]), "multipliers must be a dict"),
        (lambda: prog.lagrangian(inputs, {}, {}), "values has no entry for defined variable"),
        (lambda: prog.lagrangian(inputs, {**sol.values, "y1": "a"}, {}), "values['y1']"),
        (lambda: prog.lagrangian(inputs, {**sol.values, "y1": 1j}, {}), "complex"),
        (lambda: prog.lagrangian(inputs, {**sol.values, "y1": np.nan}, {}), "NaN or inf"),
        (lambda: prog.lagrangian(inputs, {**sol.values, "y1": np.ones(2)}, {}), "values['y1'] has shape (2,)"),
        (lambda: prog.lagrangian(inputs, {**sol.values, "nope": 1.0}, {}), "'nope', which is not a node"),
        (lambda: prog.lagrangian(inputs, sol.values, {"y1": "a"}), "multipliers['y1']"),
        (lambda: prog.lagrangian(inputs, sol.values, {"y1": np.ones(5)}), "multipliers['y1'] has shape (5,)"),
        (lambda: prog.lagrangian(inputs, sol.values, {"yy1": 1.0}), "did you mean 'y1'"),
        (lambda: prog.lagrangian({**inputs, "q": 1.0}, sol.values, {}), "'q', which is not a node"),
        (lambda: prog.lagrangian({"x": 1.0}, sol.values, {}), "missing input(s) ['z']"),
        (lambda: prog.lagrangian({**inputs, "x": 1j}, sol.values, {}), "complex"),
        (lambda: prog.lagrangian_grad("abc", None, None), "pass a Solution"),
        (lambda: prog.lagrangian_grad(inputs, sol.values, {"y1": "a"}), "multipliers['y1']"),
        (lambda: prog.constraint_jacobian("abc", inputs), "values must be a dict"),
        (lambda: prog.constraint_jacobian(None, None), "must be a dict"),
        (lambda: prog.constraint_jacobian(sol.values, {"x": "a", "z": SELLAR_INPUTS["z"]}), "string 'a'"),
        (lambda: vector_output().lagrangian({"x": np.ones(3)}, {"out": np.ones(3)}, {}, seed="a"), "seed"),
        (lambda: sellar_program().lagrangian(sol), "belongs to program"),
    ]
    for call, words in cases:
        with pytest.raises(lp.InputError) as info:
            call()
        assert words in str(info.value), (words, str(info.value))
    const = next(n for n, d in prog.graph.nodes(data=True) if d["role"] == "constant")
    with pytest.raises(lp.InputError, match=f"the constant '{const}'"):
        prog.lagrangian(inputs, {**sol.values, const: 1.0}, {})


def test_lagrangian_accepts_what_a_solution_holds(sellar_solution):
    """sol.values / sol.multipliers (inputs included) are valid points; L = output at a solution;
    lagrangian_grad(sol) equals the dict form, and a missing multiplier means λ_d = 0."""
    prog, sol = sellar_solution
    assert prog.lagrangian(sol) == pytest.approx(float(sol.output), rel=1e-14)
    gx, gz, glam = prog.lagrangian_grad(sol, None, None)
    gx2, gz2, _ = prog.lagrangian_grad(sol.inputs, sol.values, sol.multipliers)
    for k in gx:
        np.testing.assert_array_equal(gx[k], gx2[k])
        np.testing.assert_allclose(gx[k], sol.grad[k], rtol=1e-12)
    assert max(abs(float(np.max(np.abs(v)))) for v in gz.values()) < 1e-10
    # λ = 0: L = z_o exactly, ∂L/∂x = 0
    assert prog.lagrangian(sol.inputs, sol.values, None) == pytest.approx(float(sol.output), rel=1e-15)
    gx0, _, _ = prog.lagrangian_grad(sol.inputs, sol.values, {})
    assert all(np.all(v == 0) for v in gx0.values())


# ------------------------------------------------------------------------------ lp.check
@pytest.mark.parametrize("kw, words", [
    (dict(rtol="a"), "rtol='a'"), (dict(rtol=-1), "rtol=-1"), (dict(rtol=np.nan), "rtol=nan"),
    (dict(fd_rtol="a"), "fd_rtol='a'"), (dict(fd_rtol=0), "fd_rtol=0"),
    (dict(atol="a"), "atol='a'"), (dict(atol=-1.0), "atol=-1.0"),
    (dict(against=3), "against=3"), (dict(against=()), "names no reference"),
    (dict(against="nope"), "'nope'"), (dict(against=("fd", "jax")), "'jax'"),
    (dict(rng="a"), "rng='a'"), (dict(rng=-1), "rng=-1"), (dict(rng=1.5), "rng=1.5"),
    (dict(fd_max_elements="a"), "fd_max_elements='a'"), (dict(fd_max_elements=-1), "fd_max_elements=-1"),
    (dict(seed="a"), "seed"), (dict(guess=[1]), "guess must be a dict"), (dict(tol="abc"), "tol='abc'"),
    (dict(method="nope"), "method='nope'"),
])
def test_check_options(kw, words):
    with pytest.raises(lp.InputError) as info:
        lp.check(dag_program(), x=1.0, **kw)
    assert words in str(info.value), (words, str(info.value))


def test_check_inputs_must_be_a_dict_and_valid():
    with pytest.raises(lp.InputError, match="inputs must be a dict"):
        lp.check(dag_program(), [1.0])
    with pytest.raises(lp.InputError, match="complex"):
        lp.check(dag_program(), x=1j)
    with pytest.raises(lp.InputError, match="missing input"):
        lp.check(dag_program())


def test_check_still_accepts_valid_options():
    report = lp.check(dag_program(), x=1.0, rtol=1e-9, fd_rtol=1e-6, atol=0, against="fd", rng=np.int64(3),
                      fd_max_elements=0)
    assert report.ok


# ----------------------------------------------------------------- tangents and traces
def f_scalar(x):
    return lp.sin(x) * x


@pytest.mark.parametrize("call, cls, words", [
    (lambda: lp.jvp(f_scalar, (1.0,), ("a",)), lp.InputError, "tangent for input 'x'"),
    (lambda: lp.jvp(f_scalar, (1.0,), (1j,)), lp.InputError, "complex"),
    (lambda: lp.jvp(f_scalar, (1.0,), (np.nan,)), lp.InputError, "NaN or inf"),
    (lambda: lp.jvp(f_scalar, (1.0,), (np.ones(2),)), lp.ShapeError, "tangent for input 'x' has shape"),
    (lambda: lp.jvp(f_scalar, 1.0, 1.0), lp.InputError, "tuples"),
    (lambda: lp.vjp(f_scalar, 1.0)[1]("a"), lp.InputError, "cotangent"),
    (lambda: lp.vjp(f_scalar, 1.0)[1](1j), lp.InputError, "complex"),
    (lambda: lp.vjp(f_scalar, 1.0)[1](None), lp.InputError, "None"),
    (lambda: lp.vjp(f_scalar, 1.0)[1](np.nan), lp.InputError, "NaN or inf"),
    (lambda: lp.vjp(f_scalar, 1.0, guess=[1]), lp.InputError, "guess must be a dict"),
    (lambda: lp.hvp(f_scalar, 1.0, "a"), lp.InputError, "direction for input 'x'"),
    (lambda: lp.hvp(f_scalar, 1.0, 1j), lp.InputError, "complex"),
    (lambda: lp.hvp(f_scalar, "a", 1.0), lp.InputError, "string 'a'"),
    (lambda: lp.hessian(f_scalar)(1j), lp.InputError, "complex"),
    (lambda: lp.jacobian(f_scalar)(None), lp.InputError, "None"),
    (lambda: lp.jacobian(f_scalar, mode="nope")(1.0), lp.InputError, "mode='nope'"),
    (lambda: lp.grad(f_scalar)("a"), lp.InputError, "string 'a'"),
    (lambda: lp.grad(f_scalar)(True), lp.InputError, "boolean"),
    (lambda: lp.grad(f_scalar)(), lp.InputError, "f_scalar() cannot take these inputs"),
    (lambda: lp.grad(f_scalar)(1.0, 2.0), lp.InputError, "f_scalar() cannot take these inputs"),
    (lambda: lp.grad(3)(1.0), lp.InputError, "trace needs a function"),
    (lambda: lp.value_and_grad(f_scalar)(np.array([1.0 + 1j])), lp.InputError, "complex"),
    (lambda: lp.trace(f_scalar, x="a"), lp.InputError, "string 'a'"),
    (lambda: lp.trace(f_scalar, x=1j), lp.InputError, "complex"),
    (lambda: lp.trace(f_scalar, x=None), lp.InputError, "None"),
    (lambda: lp.trace(f_scalar, x=np.array([1.0, "a"], dtype=object)), lp.InputError, "object array"),
    (lambda: lp.trace(f_scalar, x=[[1.0], [1.0, 2.0]]), lp.InputError, "rectangular"),
    (lambda: lp.trace(f_scalar), lp.InputError, "missing a required argument: 'x'"),
    (lambda: lp.trace(f_scalar, x=1.0, y=2.0), lp.InputError, "unexpected keyword argument 'y'"),
    (lambda: lp.trace(3, x=1.0), lp.InputError, "trace needs a function"),
])
def test_transform_arguments(call, cls, words):
    with pytest.raises(cls) as info:
        call()
    assert words in str(info.value), (words, str(info.value))


def test_trace_example_value_only_fixes_the_shape():
    """An integer or NaN example is a valid example (its shape is what counts)."""
    prog = lp.trace(f_scalar, x=np.array([1, 2]))
    np.testing.assert_allclose(prog.evaluate(x=np.array([0.5, 2.0])), np.sin([0.5, 2.0]) * [0.5, 2.0], rtol=1e-15)
    assert lp.trace(f_scalar, x=np.nan).graph.nodes["x"]["shape"] == ()


# ------------------------------------------------------------------------------ minimize
@pytest.fixture
def bowl():
    return lp.trace(lambda x: lp.sum((x - 1.0) ** 2), x=np.zeros(2))


@pytest.mark.parametrize("kw, words", [
    (dict(x0="a"), "x0 must be a dict"), (dict(x0=np.ones(2)), "x0 must be a dict"),
    (dict(x0={"x": "a"}), "x0['x']"), (dict(x0={"x": 1j * np.ones(2)}), "complex"),
    (dict(x0={"x": True}), "boolean"), (dict(x0={"x": np.ones(3)}), "x0['x'] has shape (3,)"),
    (dict(x0={"x": np.array([np.nan, 0.0])}), "NaN or inf"),
    (dict(method="nope"), "method='nope'"), (dict(method=3), "method=3"),
    (dict(tol="abc"), "tol='abc'"), (dict(bounds="abc"), "bounds must be"),
    (dict(bounds={"x": (1, 2, 3)}), "bounds['x'] must be a pair"),
    (dict(bounds={"x": (2.0, 1.0)}), "lower bound above"),
    (dict(bounds={"x": ("a", 1.0)}), "bounds['x']"),
    (dict(solve_options={"tol": "abc"}), "tol='abc'"), (dict(solve_options={"tl": 1e-3}), "['tl']"),
    (dict(solve_options=[1]), "solve_options must be a dict"), (dict(guess=[1]), "guess must be a dict"),
    (dict(fixed="a"), "fixed must be a dict"), (dict(options="a"), "options must be a dict"),
    (dict(callback=3), "callback must be a function"),
])
def test_minimize_arguments(bowl, kw, words):
    args = {"x0": {"x": np.zeros(2)}, **kw}
    with pytest.raises(lp.InputError) as info:
        lp.minimize(bowl, **args)
    assert words in str(info.value), (words, str(info.value))


def test_minimize_still_accepts_a_scalar_or_int_start_and_finds_the_minimum(bowl):
    for x0 in (0.0, 3, [0, 2]):
        res = lp.minimize(bowl, {"x": x0}, bounds={"x": (None, 5.0)})
        np.testing.assert_allclose(res.x_dict["x"], [1.0, 1.0], atol=1e-6)


def test_minimize_full_space_arguments(bowl):
    with pytest.raises(lp.InputError, match="x0\\['x'\\]"):
        lp.minimize_full_space(bowl, {"x": "a"})
    with pytest.raises(lp.InputError, match="values0 must be a dict"):
        lp.minimize_full_space(bowl, {"x": np.zeros(2)}, values0="a")


# -------------------------------------------------- the class: no foreign exception, ever
GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(max_magnitude=1e3), st.text(max_size=4), st.binary(max_size=4),
    st.lists(st.floats(-5, 5), max_size=4), st.lists(st.lists(st.integers(-3, 3), max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=2), st.floats(-1, 1), max_size=2),
    st.sampled_from([np.array([1.0, 2.0, 3.0]), np.array([1 + 1j]), np.array(["a"]), np.array([True]),
                     np.array([1.0], dtype=object), np.float32(2.0), np.int8(3), np.ones((2, 2)),
                     np.array(np.nan), sp.eye(2), (1.0, 2.0), object(), np.ma.masked_array([1.0], mask=[1])]),
)


def _real_scalar(v) -> float | None:
    """``float(v)`` when v is a real (non-bool) number or 0-d array, else None."""
    try:
        a = np.asarray(v)
    except Exception:
        return None
    if a.shape == () and a.dtype.kind in "fiu" and not isinstance(v, np.ma.MaskedArray):
        return float(a)
    return None


@settings(max_examples=150, deadline=None)
@given(value=GARBAGE, slot=st.sampled_from(["x", "guess", "tol", "maxiter", "method", "linear_solver", "seed"]))
def test_garbage_anywhere_is_a_lagrangeprop_error_or_the_right_answer(value, slot):
    prog = cubic_program()
    kw = {"x": 2.0, "guess": {"w": 1.0}}
    kw[slot] = {"w": value} if slot == "guess" else value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = prog.solve(**kw)
    except lp.LagrangePropError:
        return
    # it solved: then the value was a genuine real number, and the answer is right
    if value is None and slot not in ("x", "guess"):
        return   # None means the default for every option (and seed=1 for a scalar output)
    if slot in ("x", "guess", "seed"):
        real = _real_scalar(value)
        assert real is not None and np.isfinite(real), f"{slot}={value!r} was accepted"
        x = real if slot == "x" else 2.0
        seed = real if slot == "seed" else 1.0
        w = cubic_root(x)
        assert float(sol.values["w"]) == pytest.approx(w, rel=1e-9, abs=1e-12)
        assert float(sol.grad["x"]) == pytest.approx(seed * 2 * w / (3 * w * w + 1), rel=1e-8, abs=1e-14)
    elif slot == "tol":
        assert isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value < 1
    elif slot == "maxiter":
        assert isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
    else:
        raise AssertionError(f"{slot}={value!r} was accepted")


# ------------------------------------------------------------------------------ constants
@pytest.mark.parametrize("fn, words", [
    (lambda x: x * 1j, "complex"),                                   # before: output 0.0, gradient 0.0
    (lambda x: x + np.array([1j, 2.0]), "complex"),
    (lambda x: x + "a", "str 'a'"),
    (lambda x: x * None, "None"),
    (lambda x: x + {"a": 1}, "dict"),
    (lambda x: x + np.datetime64("2020-01-01"), "datetime64"),       # before: x + 18263 days
    (lambda x: x + np.array([1.0, "a"], dtype=object), "object array"),
    (lambda x: x + sp.csr_matrix(np.array([[1j]])), "sparse constant"),
])
def test_constants_that_numpy_would_misread_raise_graph_error(fn, words):
    with pytest.raises(lp.GraphError) as info:
        lp.trace(fn, x=1.0)
    assert words in str(info.value), (words, str(info.value))


def test_real_constants_keep_working():
    """Object arrays of numbers, ints, float32 and bool masks are valid constants."""
    prog = lp.trace(lambda x: lp.sum(lp.where(np.array([True, False]), x * np.array([2, 3], dtype=object),
                                              x * np.float32(0.5))), x=np.ones(2))
    sol = prog.solve(x=np.array([1.0, 4.0]))
    assert float(sol.output) == pytest.approx(2.0 + 2.0, rel=1e-15)
    np.testing.assert_array_equal(sol.grad["x"], [2.0, 0.5])


@pytest.mark.parametrize("args, words", [
    ((3, lambda x: x), "non-empty string name"), (("", lambda x: x), "non-empty string name"),
    (("errs_p1", 3), "fn must be a function"),
    (("errs_p2", lambda x: x, 3), "vjp must be a function"),
    (("errs_p3", lambda x: x, None, "a"), "jvp must be a function"),
    (("errs_p4", lambda x: x, None, None, 1.0), "jac must be a function"),
])
def test_primitive_registration_arguments(args, words):
    with pytest.raises(lp.GraphError, match=words):
        lp.primitive(*args)


def test_drawing_arguments():
    prog = dag_program()
    for call in (lambda: lp.draw(3), lambda: prog.to_dot(sol="a"),
                 lambda: prog.to_dot(sol=dag_program().solve(x=1.0))):
        with pytest.raises(lp.InputError, match="Program|Solution of program"):
            call()
    assert '"x"' in prog.to_dot(sol=prog.solve(x=1.0))


def test_an_option_the_call_does_not_take_is_named_as_such():
    with pytest.raises(lp.InputError, match=r"\['seed'\] \(seed= is an option of solve\(\) that this call"):
        dag_program().evaluate(x=1.0, seed=1.0)


def test_lagrangian_of_a_solution_with_other_arguments(sellar_solution):
    """A seed given with a Solution is used (L = seed·z_o at a solution), never silently ignored;
    values or multipliers given with a Solution are an error (they would be ignored)."""
    prog, sol = sellar_solution
    assert prog.lagrangian(sol, seed=2.0) == pytest.approx(2 * float(sol.output), rel=1e-14)
    _, gz, _ = prog.lagrangian_grad(sol, None, None, seed=2.0)       # the same as the dict form
    _, gz2, _ = prog.lagrangian_grad(sol.inputs, sol.values, sol.multipliers, seed=2.0)
    for k in gz:
        np.testing.assert_array_equal(gz[k], gz2[k])
    assert float(gz[prog.graph.graph["output"]]) == pytest.approx(1.0, rel=1e-12)   # 2·1 - λ_o = 2 - 1
    with pytest.raises(lp.InputError, match="either a Solution or"):
        prog.lagrangian(sol, sol.values)
    with pytest.raises(lp.InputError, match="either a Solution or"):
        prog.lagrangian(sol, None, sol.multipliers)


# ------------------------------------------------ inputs given twice, a second output, ragged args
def test_inputs_as_one_dict_or_keywords_and_never_both():
    prog = lp.trace(lambda x: x * x * 3.0, x=1.0)
    assert float(prog.solve({"x": 2.0}).grad["x"]) == 12.0           # d(3x²)/dx = 6x
    assert float(prog.evaluate({"x": 2.0})) == 12.0
    for call in (lambda: prog.solve({"x": 1.0}, x=2.0), lambda: prog.evaluate({"x": 1.0}, x=2.0),
                 lambda: lp.check(prog, {"x": 1.0}, x=2.0)):
        with pytest.raises(lp.InputError, match="both in the dict and as keywords"):
            call()
    with pytest.raises(lp.InputError, match="passed by name"):
        prog.solve([2.0])


def test_a_second_output_raises_instead_of_replacing_the_first():
    prog = lp.Program()
    x = prog.input("x")
    prog.output(x * 2.0, name="a")
    with pytest.raises(lp.GraphError, match="already has the output 'a'"):
        prog.output(x * 3.0, name="b")
    assert float(prog.evaluate(x=1.0)) == 2.0


def test_a_ragged_argument_of_grad_is_an_input_error():
    with pytest.raises(lp.InputError, match="rectangular"):
        lp.grad(lambda x: lp.sum(x))([[1.0, 2.0], [3.0]])
