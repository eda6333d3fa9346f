"""The compiled plan (solve.kernels) against the reference interpreters (STYLE 11).

Every program runs through the plain walks of the schedule (``forward_reference``,
``adjoint_reference``: each op's ``Primitive.value`` / rules) and through the plan that a solve
uses (``run_forward``, ``run_adjoint``: raw kernels, inline scalar steps, matmul products,
groups, pooled buffers). Per-step kernels make the same numpy calls as the rules, so values and
multipliers agree bitwise; grouped scalars are evaluated by one vectorized numpy call, which may
round differently in the last place, so those are held to a few ulps.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
from lagrangeprop.compile.plan import MatmulKernel, RawKernel, StepItem, plan_of
from lagrangeprop.options import SolveOptions
from lagrangeprop.solve.adjoint import adjoint_reference, run_adjoint
from lagrangeprop.solve.forward import forward_reference, initial_values, run_forward

from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program


def _blog():
    def f(x):
        a = lp.exp(x) * 2.0
        b = a ** 2
        c = a + b
        return lp.exp(c) + lp.sin(c)
    return lp.trace(f, x=0.5), {"x": 0.5}, None


def _chain():
    def f(x):
        for k in range(50):
            x = lp.sin(x) * 1.01 + 0.1 * k
        return x
    return lp.trace(f, x=0.3), {"x": 0.3}, None


def _logistic():
    rng = np.random.default_rng(1)
    X, y, w = rng.standard_normal((200, 5)), (rng.random(200) < 0.5).astype(float), rng.standard_normal(5)

    def f(w):
        z = X @ w
        return lp.mean(lp.logaddexp(0.0, z) - y * z)
    return lp.trace(f, w=w), {"w": w}, None


def _mlp():
    rng = np.random.default_rng(2)
    X, W1, W2, b = (rng.standard_normal(s) for s in ((130, 130), (130, 130), (130, 4), (130,)))

    def f(W1, W2, b):
        h = lp.tanh(X @ W1 + b)        # large enough for the buffer pool
        z = lp.tanh(h @ W2)
        return lp.sum(z * z) / 7.0
    return lp.trace(f, W1=W1, W2=W2, b=b), {"W1": W1, "W2": W2, "b": b}, None


def _wide():
    def f(x, y):
        layer = [x * (1.0 + 0.1 * k) + y for k in range(12)]
        layer = [lp.tanh(v) for v in layer]
        layer = [lp.maximum(v, layer[0]) * layer[-1 - k] for k, v in enumerate(layer)]
        return sum(layer) + x * y
    return lp.trace(f, x=0.4, y=-0.2), {"x": 0.4, "y": -0.2}, None


def _sparse():
    A = sp.random(40, 40, density=0.1, random_state=3, format="csr") + sp.eye(40)
    x0 = np.linspace(-1.0, 1.0, 40)
    return lp.trace(lambda x: lp.sum(lp.sin(A @ x) ** 2), x=x0), {"x": x0}, None


def _implicit():
    prog = lp.Program(name="cubic")
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x)
    prog.output(w * x, name="out")
    return prog, {"x": 2.0}, {"w": 1.0}


def _sellar():
    return sellar_program(), SELLAR_INPUTS, SELLAR_GUESS


PROGRAMS = {"blog": _blog, "chain": _chain, "logistic": _logistic, "mlp": _mlp, "wide": _wide,
            "sparse": _sparse, "implicit": _implicit, "sellar": _sellar}


def _run(prog, inputs, guess, forward, adjoint, prepare=None):
    """Values and multipliers of a fresh copy of ``prog`` (cold block caches, its own plan);
    ``prepare(sched)`` runs on the fresh schedule first (tests/test_compiled.py)."""
    prog = lp.Program.from_json(prog.to_json())
    sched = prog.compile()
    if prepare is not None:
        prepare(sched)
    opts = SolveOptions.make()
    vals = initial_values(sched, {sched.index[k]: np.asarray(v, dtype=np.float64)[()]
                                  for k, v in inputs.items()})
    g = {sched.index[k]: np.asarray(v, dtype=np.float64) for k, v in (guess or {}).items()}
    states = forward(sched, vals, opts, g)
    lam = adjoint(sched, vals, np.float64(1.0), states, opts)
    return sched, list(vals), lam


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.shape(a) == np.shape(b) and np.array_equal(a, b)


@pytest.mark.parametrize("name", PROGRAMS)
def test_plan_matches_the_reference(name):
    prog, inputs, guess = PROGRAMS[name]()
    sched, ref_vals, ref_lam = _run(prog, inputs, guess, forward_reference, adjoint_reference)
    _, vals, lam = _run(prog, inputs, guess, run_forward, run_adjoint)
    grouped = plan_of(sched).grouped
    for i, n in enumerate(sched.names):
        if sched.roles[i] == "constant":
            continue
        if grouped:
            close = ref_vals[i] is None or np.allclose(vals[i], ref_vals[i], rtol=4e-16, atol=0)
            assert close, f"value of {n!r}"
            assert (ref_lam[i] is None) == (lam[i] is None), n
            if lam[i] is not None:
                scale = max(1.0, float(np.max(np.abs(ref_lam[i]))))
                assert np.max(np.abs(np.asarray(lam[i]) - ref_lam[i])) <= 1e-15 * scale, n
        else:
            assert _same(vals[i], ref_vals[i]), f"value of {n!r}"
            assert _same(lam[i], ref_lam[i]), f"multiplier of {n!r}"


def test_the_programs_reach_every_kind_of_plan_item():
    kinds = set()
    for make in PROGRAMS.values():
        plan = plan_of(make()[0].compile())
        for item in plan.items:
            kernel = getattr(item, "kernel", None)
            kinds.add(type(item).__name__ if item.__class__ is not StepItem else type(kernel).__name__)
            if kernel.__class__ is RawKernel and kernel.scalar is not None:
                kinds.add("scalar")
        if plan.nbufs:
            kinds.add("pool")
    assert kinds >= {"RawKernel", "NoneType", "scalar", MatmulKernel.__name__, "Group", "BlockItem", "pool"}


def test_reference_names_the_non_finite_node():
    prog = lp.trace(lambda x: lp.log(x - 1.0) * 2.0, x=0.5)
    sched = prog.compile()
    vals = initial_values(sched, {sched.index["x"]: np.float64(0.5)})
    with pytest.raises(lp.NonFiniteError, match=r"op 'log'"):
        forward_reference(sched, vals, SolveOptions.make())
