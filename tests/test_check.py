"""lp.check: the Lagrangian against tape autodiff (autograd, torch) and finite differences."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
from lagrangeprop.rules import registry
from lagrangeprop.crosscheck import backends, tape
from lagrangeprop.__main__ import blog, blog_derivative
from lagrangeprop.cli import main_check

try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def sellar():
    return sellar_program(), dict(SELLAR_INPUTS), dict(SELLAR_GUESS)


def cubic():
    prog = lp.Program(name="cubic")
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x)
    prog.output(w * w + x, name="o")
    return prog


# ---------------------------------------------------------------- passing programs
def test_blog_example_agrees_with_every_reference():
    report = lp.check(lp.trace(blog, x=0.5), x=0.5)
    assert report.ok
    row = report.rows[0]
    assert row["input"] == "x" and row["ok"]
    exact = blog_derivative(0.5)                                  # hand-derived
    assert abs(float(row["autograd"]) - exact) <= 1e-12 * abs(exact)
    assert abs(float(row["fd"]) - exact) <= 1e-7 * abs(exact)
    text = str(report)
    for words in ("autograd (tape)", "finite differences", "lagrangian:", "finite difference:", "OK"):
        assert words in text


def test_check_traces_a_function_and_accepts_an_input_dict():
    report = lp.check(lambda x, y: lp.sum(lp.exp(x) * y), {"x": np.array([0.1, 0.2]), "y": 2.0})
    assert report.ok and [r["input"] for r in report.rows] == ["x", "y"]


def test_inputs_named_like_options_go_through_the_dict():
    prog = lp.Program(name="clash")
    r = prog.input("rtol")
    prog.output(r * r, name="o")
    report = lp.check(prog, {"rtol": 3.0})
    assert report.ok and float(report.rows[0]["lagrangian"]) == 6.0


def test_sellar_block_tape_converges_to_the_multipliers():
    prog, inputs, guess = sellar()
    report = lp.check(prog, guess=guess, **inputs)
    assert report.ok, str(report)
    errors = [c["rel_error"] for c in report.convergence]
    assert len(errors) >= 3
    assert errors[0] > 1e-3 and errors[-1] < 1e-12          # one Newton step is far off; the end is exact
    assert all(b <= a * 1.01 + 1e-14 for a, b in zip(errors, errors[1:]))  # monotone (quadratic) decrease
    text = str(report)
    assert "Newton iterations" in text and "unrolled" in text
    # every multiplier of the 19 defined nodes, block members included, matches the tape
    assert report.multiplier_summary["autograd (tape)"]["nodes"] >= 10
    assert report.multipliers["y2"]["autograd (tape)"]["ok"]


def test_residual_block_multiplier_is_the_relaxation_sensitivity():
    report = lp.check(cubic(), x=2.0, against=("autograd", "fd"))
    assert report.ok
    # w = 1: dw/dx = 1/(3w² + 1) = 1/4, d(w² + x)/dx = 2w/4 + 1 = 1.5; λ_w = ∂o/∂ε = 2w·(1/4)
    assert abs(float(report.rows[0]["lagrangian"]) - 1.5) < 1e-12
    assert abs(float(report.multipliers["w"]["autograd"]) - 0.5) < 1e-12


def test_nonscalar_output_uses_a_random_seed_and_says_so():
    f = lambda x: lp.tanh(x) * x  # noqa: E731
    x = np.array([0.1, -0.4, 0.9])
    report = lp.check(f, x=x, rng=3)
    assert report.ok and "random N(0, 1) seed" in str(report)
    seed = np.array([1.0, 2.0, -1.0])
    report = lp.check(f, x=x, seed=seed)
    expected = autograd.grad(lambda t: anp.sum(seed * anp.tanh(t) * t))(x)   # independent
    np.testing.assert_allclose(report.rows[0]["lagrangian"], expected, rtol=1e-13)
    assert "with the given seed" in str(report)


def test_large_inputs_use_random_directions():
    x = np.linspace(0.1, 2.0, 40)
    report = lp.check(lambda x: lp.sum(lp.log(x) * lp.sin(x)), x=x)
    assert report.ok
    assert report.rows[0]["fd_mode"] == "direction"
    assert report.evaluations <= 8            # independent of the 40 entries
    assert "<.,v>" in str(report)


@pytest.mark.parametrize("limit", [backends.DENSE_SPARSE_LIMIT, 0])
def test_sparse_constants_dense_copy_or_sparse_primitive(monkeypatch, limit):
    monkeypatch.setattr(backends, "DENSE_SPARSE_LIMIT", limit)
    W = sp.random(6, 4, density=0.5, random_state=1, format="csr")
    report = lp.check(lambda x: lp.sum(lp.sin(lp.matmul(W, x))), x=np.linspace(-1, 1, 4))
    assert report.ok, str(report)
    assert ("dense copies" if limit else "VJP is Wᵀg") in str(report)


def test_sparse_constant_inside_a_block_unrolls_with_the_sparse_primitive(monkeypatch):
    monkeypatch.setattr(backends, "DENSE_SPARSE_LIMIT", 0)
    A = sp.csr_matrix(np.array([[0.0, 0.3, 0.0], [0.2, 0.0, 0.1], [0.0, -0.3, 0.2]]))
    prog = lp.Program(name="sparse_fixed_point")
    x = prog.input("x", shape=(3,))
    z = prog.variable("z", shape=(3,))
    prog.define(z, lp.tanh(lp.matmul(A, z) + x))
    prog.output(lp.sum(z ** 2), name="o")
    report = lp.check(prog, x=np.array([0.3, -0.2, 0.5]), against=("autograd", "fd"))
    assert report.ok, str(report)


def test_to_dict_is_json_serialisable():
    prog, inputs, guess = sellar()
    d = lp.check(prog, guess=guess, **inputs).to_dict()
    text = json.dumps(d)
    assert d["ok"] is True and "convergence" in d and "finite differences" in text
    assert d["rows"][1]["input"] == "z" and len(d["rows"][1]["lagrangian"]) == 2


# ------------------------------------------------------------------ references
def test_missing_torch_is_reported_not_fatal(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)          # import torch -> ImportError
    report = lp.check(lambda x: lp.exp(x), x=0.3)
    assert report.ok
    assert report.references["torch (tape)"].startswith("not installed")
    assert "torch (tape)" in str(report) and "not installed" in str(report)


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is optional")
def test_torch_tape_agrees():
    prog, inputs, guess = sellar()
    report = lp.check(prog, guess=guess, against=("torch",), **inputs)
    assert report.ok and "PyTorch" in report.references["torch (tape)"]
    assert all("torch (tape)" in r["compare"] for r in report.rows)


def test_against_selects_references_and_rejects_unknown_ones():
    report = lp.check(lambda x: x * x, x=1.0, against="fd")
    assert list(report.references) == ["finite differences"]
    with pytest.raises(lp.LagrangePropError, match="not a reference"):
        lp.check(lambda x: x * x, x=1.0, against=("jax",))


# --------------------------------------------------------- wrong rules are caught
def test_a_wrong_registry_rule_fails_the_check_and_names_the_input(wrong_exp):
    prog = lp.trace(lambda x, y: lp.exp(x) * y + y ** 2, x=0.3, y=1.2)
    report = lp.check(prog, x=0.3, y=1.2)
    assert not report.ok
    bad = {r["input"]: r for r in report.rows}
    assert not bad["x"]["ok"]
    assert all(not c["ok"] for c in bad["x"]["compare"].values())   # every reference disagrees
    assert abs(bad["x"]["rel_error"]["autograd (tape)"] - 1e-3) < 1e-4
    assert any("input 'x'" in f for f in report.failures)
    text = str(report)
    assert "FAIL" in text and "input 'x'" in text


def test_a_wrong_rule_inside_the_program_names_the_node_it_feeds(wrong_exp):
    def f(x, y):
        a = 2.0 * x
        return lp.exp(a) * y
    report = lp.check(lp.trace(f, x=0.3, y=1.2), x=0.3, y=1.2, against=("autograd",))
    assert any("multiplier of node 'a'" in line for line in report.failures)
    assert report.multiplier_summary["autograd (tape)"]["failed"] == ["a"]


def test_the_registry_is_restored_after_the_wrong_rule_test():
    assert lp.check(lambda x: lp.exp(x), x=0.3).ok


@pytest.fixture
def user_ops():
    names = []

    def make(name, *args, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            op = lp.primitive(name, *args, **kw)
        names.append(name)
        return op
    yield make
    for n in names:
        registry.REGISTRY.pop(n, None)


def test_a_user_primitive_is_checked_by_finite_differences_alone(user_ops):
    cube = user_ops("check_cube", lambda x: x ** 3, vjp=lambda g, ans, x: (3 * x ** 2 * g,))
    report = lp.check(lp.trace(lambda x: lp.sin(cube(x)), x=0.7), x=0.7)
    assert report.ok
    assert report.references["autograd (tape)"].startswith("skipped")
    assert "no tape equivalent" in str(report) and "finite differences alone" in str(report)


def test_a_wrong_user_rule_fails_the_check(user_ops):
    cube = user_ops("check_bad_cube", lambda x: x ** 3, vjp=lambda g, ans, x: (1.001 * 3 * x ** 2 * g,))
    report = lp.check(lp.trace(lambda x, y: lp.sin(cube(x)) + y, x=0.7, y=0.1), x=0.7, y=0.1)
    assert not report.ok
    assert [r["input"] for r in report.rows if not r["ok"]] == ["x"]
    assert "input 'x': finite differences differs" in str(report)


# ---------------------------------------------------------------------- the CLI
MODULE = """
import lagrangeprop as lp

def f(x, y):
    return lp.sum(lp.exp(x) * y) + x ** 2
"""


def test_cli_checks_a_function_from_a_file(tmp_path, capsys):
    path = tmp_path / "mymod.py"
    path.write_text(MODULE)
    status = main_check([f"{path}:f", "--x", "0.5", "--y", "1,2,3"])
    out = capsys.readouterr().out
    assert status == 0
    assert "autograd (tape)" in out and "finite differences" in out and "OK" in out


def test_cli_bad_target_and_bad_value(tmp_path, capsys):
    path = tmp_path / "mymod.py"
    path.write_text(MODULE)
    assert main_check([f"{path}:nope", "--x", "0.5", "--y", "1"]) == 2
    assert main_check([f"{path}:f", "--x", "abc", "--y", "1"]) == 2
    assert main_check([f"{path}:f", "--x", "0.5"]) == 2          # missing input y
    assert "missing inputs: ['y']" in capsys.readouterr().err


def test_cli_as_a_module_exit_status(tmp_path):
    (tmp_path / "cli_target.py").write_text(MODULE + """

BAD = lp.primitive("cli_bad_exp", lambda x: lp.exp(x) if False else __import__("numpy").exp(x),
                   vjp=lambda g, ans, x: (1.01 * ans * g,))

def g(x):
    return BAD(x) * 2.0
""")
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(lp.__file__).parent.parent)}  # this checkout's package
    ok = subprocess.run([sys.executable, "-m", "lagrangeprop", "check", "cli_target:f", "--x=0.5", "--y", "[1, 2]",
                         "--against", "autograd,fd"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "lagrangeprop", "check", "cli_target:g", "--x", "0.5",
                          "--against", "autograd,fd"],
                         cwd=tmp_path, capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "FAIL" in bad.stdout


def test_check_with_no_runnable_reference_is_not_ok():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op = lp.primitive("test_check_cube_noref", lambda x: x**3, vjp=lambda g, ans, x: (3 * g * x**2,))
    prog = lp.trace(lambda x: op(x), x=0.5)
    report = lp.check(prog, x=0.5, against=("autograd",))
    assert not report.ok
    assert "nothing was checked" in str(report)
    assert lp.check(prog, x=0.5).ok          # finite differences alone check the user op


def test_fd_rounding_noise_is_bounded_through_the_multipliers():
    """sin²x + cos²x - 1: the output is round-off, its gradient ~1e-16, while central differences
    carry ~eps·|z|/h of noise from the cancelling O(1) intermediates (not eps·|output|/h)."""
    prog = lp.trace(lambda x: lp.sum(lp.sin(x) ** 2 + lp.cos(x) ** 2) - 3.0, np.ones(3))
    xs = np.array([1.0, 0.3, -1.0])
    report = lp.check(prog, x=xs)
    assert report.ok, str(report)
    # a rounding bound, not a free pass: a user op whose VJP is 1% off, scaled by 1e-3, still fails
    off = lp.primitive("copy_off_by_one_percent", lambda x: x * 1.0, vjp=lambda g, ans, x: (1.01 * g,))
    wrong = lp.trace(lambda x: lp.sum(lp.sin(x) ** 2 + lp.cos(x) ** 2 + 1e-3 * off(x)) - 3.0, np.ones(3))
    bad = lp.check(wrong, x=xs)
    assert not bad.ok and "x" in str(bad)


def test_check_and_evaluate_accept_every_solver_option():
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    prog = sellar_program()
    ref = prog.solve(guess=SELLAR_GUESS, **SELLAR_INPUTS).output
    for ls in ("direct", "gmres", "bicgstab"):
        assert prog.evaluate(guess=SELLAR_GUESS, linear_solver=ls, **SELLAR_INPUTS) == pytest.approx(ref, rel=1e-10)
        report = lp.check(prog, guess=SELLAR_GUESS, linear_solver=ls, **SELLAR_INPUTS)
        assert report.ok, str(report)


@pytest.mark.parametrize("seed", [210, 211, 245])
def test_unrolled_newton_reaches_the_root_where_a_max_norm_search_stalls(seed):
    # w + ½ sin(A w) = B x with ||A||₂ = 1: one root, but a backtracking test on max_d |c_d|/s_d
    # stalled short of it (the tape's value and gradient off by 60% while the Lagrangian, finite
    # differences and kkt agreed): the replay backtracks on ||c/s||₂ as the block solver does
    rng = np.random.default_rng(seed)
    n, m = 4, 3
    A = rng.standard_normal((n, n))
    A /= np.linalg.norm(A, 2)
    B, c, x = 2 * rng.standard_normal((n, m)), rng.standard_normal(n), rng.uniform(-1.5, 1.5, m)
    prog = lp.Program(name="stall")
    xv = prog.input("x", shape=(m,))
    w = prog.variable("w", shape=(n,))
    prog.residual(w, w + 0.5 * lp.sin(lp.matmul(A, w)) - lp.matmul(B, xv))
    prog.output(lp.sum(c * w) + lp.sum(w ** 2), name="obj")
    sol = prog.solve(x=x)
    res = tape.tape_gradients(prog.compile(), "autograd", {"x": x}, seed=1.0)
    h = 1e-6
    fd = np.array([(prog.evaluate(x=x + h * e) - prog.evaluate(x=x - h * e)) / (2 * h) for e in np.eye(m)])
    assert np.allclose(sol.grad["x"], fd, rtol=1e-6, atol=1e-8)
    assert np.isclose(res.value, float(sol.output), rtol=1e-10)
    assert np.allclose(res.grad["x"], sol.grad["x"], rtol=1e-8, atol=1e-12)
    assert lp.check(prog, x=x).ok
