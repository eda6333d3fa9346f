"""lp.check scales: linear in the program, every multiplier on its own scale (issue 11, class 7).

The references are independent of the code under test: HIPS autograd's own rules on the
tape, autograd differentiating the plain numpy function, and central differences.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.rules import registry
from lagrangeprop.crosscheck import tape
from lagrangeprop.rules.registry import Primitive

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
check_module = importlib.import_module("lagrangeprop.crosscheck.finite_differences")


def _rk4():
    sys.path.insert(0, BENCH)
    try:
        from cases import rk4 as run
    finally:
        sys.path.remove(BENCH)
    return run.rk4_f, {"y0": run.RK4_Y0, "theta": run.RK4_THETA}


def chain(m, n: int, wrong_at: int | None = None):
    """n scalar ops cycling sin, ·1.01, +0.1, tanh (the benchmarks' chain-N); op ``wrong_at``
    is ``0.5·exp(v)`` instead. The chain contracts: λ falls ~0.8× per cycle of 4 ops."""
    def f(x):
        v = x
        for k in range(n):
            if k == wrong_at:
                v = m.exp(v) * 0.5
                continue
            r = k % 4
            v = m.sin(v) if r == 0 else v * 1.01 if r == 1 else v + 0.1 if r == 2 else m.tanh(v)
        return v
    return f


# ------------------------------------------------------------------ linear cost
def test_rk4_200_check_passes_on_every_multiplier():
    """The issue's program: the RK4-200 check (13 210 nodes, every reference, every multiplier)
    agrees with autograd differentiating the plain numpy RK4. Its time against autograd's
    gradient (target 20×) is the ``rk4-200 check`` row of ``benchmarks/run.py``, not a test."""
    rk4_f, inputs = _rk4()
    prog = lp.trace(rk4_f(lp), **inputs)
    assert prog.graph.number_of_nodes() > 12_000
    ref = autograd.grad(rk4_f(anp), (0, 1))(inputs["y0"], inputs["theta"])
    report = lp.check(prog, inputs)
    assert report.ok, str(report)
    summary = report.multiplier_summary["autograd (tape)"]
    assert summary["nodes"] == len(prog.compile().defined)        # every node, none sampled
    np.testing.assert_allclose(report.rows[0]["lagrangian"], ref[0], rtol=1e-12)
    np.testing.assert_allclose(report.rows[1]["lagrangian"], ref[1], rtol=1e-12)


def _python_calls(fn) -> int:
    """The number of Python and C function calls ``fn()`` makes: a deterministic measure of
    work (a timing would depend on this machine's load)."""
    count = [0]

    def profile(frame, event, arg):
        if event in ("call", "c_call"):
            count[0] += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count[0]


def test_check_work_grows_linearly_with_the_chain():
    """1 000 -> 4 000 ops: linear work is 4× the calls, the old quadratic check made 16× (autograd's
    container VJP touched every per-node leaf for each node: ~10⁶ vspace calls at 1 000 ops)."""
    lp.check(lp.trace(lambda x: lp.sin(x), x=0.1), x=0.1)         # one-off imports
    calls = {}
    for n in (1000, 4000):
        prog = lp.trace(chain(lp, n), x=0.3)
        prog.solve(x=0.3)
        calls[n] = _python_calls(lambda p=prog: lp.check(p, x=0.3, against=("autograd", "fd")))
    assert calls[4000] <= 5 * calls[1000], calls


def test_one_tape_run_per_backend_gives_every_multiplier(monkeypatch):
    calls = []
    run = tape._run
    monkeypatch.setattr(tape, "_run", lambda *a, **k: calls.append(1) or run(*a, **k))
    prog = lp.trace(chain(lp, 3000), x=0.3)
    report = lp.check(prog, x=0.3, against=("autograd",))
    assert report.ok and len(calls) == 1
    assert report.multiplier_summary["autograd (tape)"]["nodes"] == 3000


def test_finite_differences_cost_is_independent_of_inputs_and_nodes(monkeypatch):
    """At most fd_budget central differences (2 forward passes each), however many inputs;
    the inputs past the budget are differenced jointly, and the report says so."""
    names = [f"x{k}" for k in range(60)]
    prog = lp.Program(name="many_inputs")
    xs = [prog.input(n) for n in names]
    total = xs[0] * 0.0
    for k, x in enumerate(xs):
        total = total + lp.sin(x) * (1.0 + 0.01 * k)
    prog.output(total, name="o")
    inputs = {n: 0.1 * k for k, n in enumerate(names)}
    report = lp.check(prog, inputs)
    assert report.ok, str(report)
    assert report.evaluations <= 2 * check_module.FD_DIFFERENCES
    joint = [r["input"] for r in report.rows if r["fd_mode"] == "joint"]
    assert len(joint) == 60 - (check_module.FD_DIFFERENCES - 1)
    assert "differenced jointly only" in str(report)
    # closed form: d/dx_k of Σ (1 + 0.01 k) sin x_k
    for k, r in enumerate(report.rows):
        assert abs(float(r["lagrangian"]) - (1.0 + 0.01 * k) * np.cos(0.1 * k)) <= 1e-14


def test_a_wrong_user_rule_past_the_fd_budget_is_still_caught():
    """No tape for a user op: the random direction over all inputs still sees one input's wrong rule."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = lp.primitive("scale_check_bad_sin", np.sin, vjp=lambda g, ans, x: (1.001 * np.cos(x) * g,))
    try:
        names = [f"x{k}" for k in range(40)]
        prog = lp.Program(name="many_inputs_one_wrong")
        xs = [prog.input(n) for n in names]
        total = lp.sin(xs[0])
        for x in xs[1:-1]:
            total = total + lp.sin(x)
        prog.output(total + bad(xs[-1]), name="o")
        inputs = {n: 0.5 for n in names}
        report = lp.check(prog, inputs)
        assert not report.ok
        assert any("random direction over all inputs: finite differences" in f for f in report.failures)
    finally:
        registry.REGISTRY.pop("scale_check_bad_sin", None)


# --------------------------------------------------- every multiplier, its own scale
@pytest.mark.parametrize("at", [5000, 9000])
def test_a_wrong_rule_on_one_node_among_ten_thousand_fails(wrong_exp, at):
    """One exp in a 10⁴-op contracting chain with its rule ×1.001. Its multipliers are ~1e-26
    (at 9000) or ~1e-130 (at 5000) of the output's: a tolerance relative to the program's
    largest multiplier passes them all, a per-node one fails exactly the nodes upstream of it."""
    prog = lp.trace(chain(lp, 10_000, wrong_at=at), x=0.3)
    report = lp.check(prog, x=0.3, against=("autograd",))
    assert not report.ok
    sched = prog.compile()
    names = [sched.names[n] for n in sched.defined]
    exp_node = next(n for n in names if n.startswith("exp"))
    k = names.index(exp_node)
    failed = set(report.multiplier_summary["autograd (tape)"]["failed"])
    assert names[k - 1] in failed                     # the argument of the wrong rule ...
    assert not failed & set(names[k:])                # ... and nothing downstream of it
    lam = report.multipliers[names[k - 1]]
    assert 0 < abs(float(lam["lagrangian"])) < 1e-20   # a tiny multiplier, still checked
    rel = report.multipliers[names[k - 1]]["autograd (tape)"]["rel"]
    assert abs(rel - 1e-3) < 1e-4                      # the rule's error, measured on its own scale
    assert any(f"multiplier of node {names[k - 1]!r}" in f for f in report.failures)
    # the old floor, 1e-12 × the program's largest multiplier, is above every error here
    worst = max(m["autograd (tape)"]["abs"] for m in report.multipliers.values())
    largest = max(float(np.max(np.abs(m["lagrangian"]))) for m in report.multipliers.values())
    assert worst < 1e-12 * largest


def test_the_same_chain_with_right_rules_passes():
    prog = lp.trace(chain(lp, 10_000, wrong_at=9000), x=0.3)
    report = lp.check(prog, x=0.3, against=("autograd", "fd"))
    assert report.ok, "\n".join(report.failures[:5])
    # λ_x from autograd differentiating the plain numpy function (not the tape)
    ref = autograd.grad(chain(anp, 10_000, wrong_at=9000))(0.3)
    assert abs(float(report.rows[0]["lagrangian"]) - ref) <= 1e-9 * abs(ref) + 1e-300


def test_saturated_tanh_and_sigmoid_partials_are_round_off_not_failures():
    """1 - tanh² is 0 here and 1/cosh² is 1e-27 on autograd's tape: both right to the
    round-off of terms of size 1 (the floor is the terms', not the multiplier's)."""
    for f, x in [(lambda x: lp.tanh(lp.exp(x)), 3.5),
                 (lambda x: lp.sum(lp.sigmoid(x * 40.0)), np.array([1.0, 2.0, -1.0])),
                 (lambda x: lp.sum(lp.tanh(x) * 2.0), np.array([20.0, 30.0, 0.3]))]:
        report = lp.check(f, x=x)
        assert report.ok, str(report)


def test_cancelling_multipliers_keep_the_scale_of_their_terms():
    """∇ sum(softmax(x)) = 0 from O(1) terms: ±1e-16 on the tapes, 0 here — agreement;
    a wrong softmax rule of 1e-6 relative (10¹⁰ × the round-off) still fails."""
    x = np.array([[1.0, 1.0, 0.5]])
    report = lp.check(lambda x: lp.sum(lp.softmax(x, axis=-1)) - 1.0, x=x)
    assert report.ok, str(report)
    original = registry.REGISTRY["softmax"]

    def wrong(*args):
        out = original.vjp_rule(*args)
        return None if out is None else out * (1 + 1e-6) + 1e-6 * args[1]
    registry.REGISTRY["softmax"] = Primitive("softmax", original.fn, nargs=1, vjp=wrong,
                                               jvp=original.jvp_rule, jac=original.jac_rule,
                                               curvature=original.curvature, shape_rule=original.shape_rule,
                                               tape=original.tape)
    try:
        bad = lp.check(lambda x: lp.sum(lp.softmax(x, axis=-1)) - 1.0, x=x, against=("autograd",))
    finally:
        registry.REGISTRY["softmax"] = original
    assert not bad.ok and any("input 'x'" in f for f in bad.failures)


# --------------------------------------------------------------- the output value
FLAKE = {"x0": np.array([1.0, 1.0, 1.0]), "x1": np.ones((2, 3)), "x2": np.array([[1.0, 1.0, 0.5]])}


@pytest.mark.parametrize("f", [
    lambda x0, x1, x2: lp.sum(lp.softmax(x1 + x2, axis=0)) - 3.0,
    lambda x0, x1, x2: lp.sum(lp.softmax(lp.exp(x1 * x2), axis=-1)) - 2.0,
    lambda x0, x1, x2: lp.sum(lp.softmax(lp.transpose(x1 * x2), axis=0)) - 2.0 + 0.5 * lp.sum(x0) * 0.0,
], ids=["softmax_axis0", "softmax_exp", "softmax_transpose"])
def test_an_output_that_is_round_off_agrees_on_the_scale_of_its_terms(f):
    """The property test's falsifying inputs: the output is 0 here and -4.4e-16 on the tape
    (lp's softmax and exp(x - logsumexp) round differently); it was "output value differs
    (rel error 1.0)". The floor is 16·eps·Σ μ_d|z_d| (~1e-14), not a loosened rtol."""
    prog = lp.trace(f, **FLAKE)
    report = lp.check(prog, FLAKE)
    assert report.ok, str(report)
    v = report.value
    assert v["ok"] and v["floor"] < 1e-12
    assert abs(v["lagrangian"] - v["tape"]) <= v["floor"]


def test_a_wrong_output_value_above_its_rounding_floor_fails():
    """The same output computed 1e-12 off (a forward rule adding 1e-12, 100× its floor)."""
    original = registry.REGISTRY["softmax"]
    registry.REGISTRY["softmax"] = Primitive("softmax", lambda x, axis=-1: original.fn(x, axis=axis) + 1e-12,
                                               nargs=1, vjp=original.vjp_rule, jvp=original.jvp_rule,
                                               jac=original.jac_rule,
                                               curvature=original.curvature, shape_rule=original.shape_rule,
                                               tape=original.tape)
    try:
        prog = lp.trace(lambda x1, x2: lp.sum(lp.softmax(x1 + x2, axis=0)) - 3.0, x1=FLAKE["x1"], x2=FLAKE["x2"])
        report = lp.check(prog, {"x1": FLAKE["x1"], "x2": FLAKE["x2"]}, against=("autograd",))
    finally:
        registry.REGISTRY["softmax"] = original
    assert not report.ok
    assert any("output value differs" in f for f in report.failures), report.failures


def test_small_inputs_are_differenced_on_their_own_scale():
    """An input of 1e-12 (a saturation current) next to one of 1: an absolute step of 6e-6 would
    leave log's domain; the entrywise-relative step gives the closed form, and a user rule that is
    wrong by 1e-3 at that scale still fails the finite-difference reference."""
    f = lambda a, b: lp.log(a) * b + b ** 2                 # ∂/∂a = b/a, ∂/∂b = log a + 2b
    prog = lp.trace(f, a=1e-12, b=1.5)
    report = lp.check(prog, a=1e-12, b=1.5, against=("fd",))
    assert report.ok, str(report)
    fd = {row["input"]: float(row["fd"]) for row in report.rows}
    assert fd["a"] == pytest.approx(1.5 / 1e-12, rel=1e-8)
    assert fd["b"] == pytest.approx(np.log(1e-12) + 3.0, rel=1e-8)

    wrong = lp.primitive("log_wrong_small", np.log, vjp=lambda g, ans, x: (g / x * 1.001,))
    try:
        report = lp.check(lambda a, b: wrong(a) * b + b ** 2, a=1e-12, b=1.5)
        assert not report.ok
        assert "finite differences" in str(report) and "FAIL" in str(report)
    finally:
        registry.REGISTRY.pop("log_wrong_small", None)


def test_an_overflowed_rounding_floor_does_not_approve_a_wrong_rule():
    """At x = 1e308, ``x·sin(x)`` has values times multipliers past float64's range: the
    rounding floors overflowed to inf and every comparison passed, so a user VJP 0.1% off was
    approved (ok True) by finite differences of step 6e302. Now the comparisons drop an
    infinite floor, the report says why, and the wrong rule fails."""
    mysin = lp.primitive("mysin_overflow_audit", np.sin,
                         vjp=lambda g, ans, x: (g * np.cos(x) * 1.001,))
    rep = lp.check(lambda x: x * mysin(x), x=1e308)
    assert not rep.ok
    assert "overflow float64" in str(rep)
    right = lp.check(lambda x: x * lp.sin(x), x=1e308, against=("autograd",))
    assert right.ok                      # the tape agrees exactly, with no floor needed
    assert right.rows[0]["compare"]["autograd (tape)"]["abs"] == 0.0


def test_cli_rejects_non_finite_values_by_name(tmp_path):
    import subprocess
    import sys
    (tmp_path / "m.py").write_text("def f(x):\n    return x * x\n")
    r = subprocess.run([sys.executable, "-m", "lagrangeprop", "check", "m.py:f", "--x", "nan"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "must be finite" in r.stderr and "Traceback" not in r.stderr
