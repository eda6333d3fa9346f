"""The compiled path's pullback kernels (solve.kernels) against the interpreters' rules (STYLE 11).

``adjoint_raw`` and ``adjoint_matmul`` are what the generated adjoint calls for a step with a
plan kernel; each is held bitwise to ``solve.local.accumulate`` (each op's vjp rule through
``Primitive.vjp``) on the interpreter's own values, with and without a multiplier already
accumulated. ``PROGRAMS`` and ``_run`` are shared with tests/test_compiled.py, which holds the
whole generated passes to the interpreters (``forward_reference``, ``adjoint_reference``).
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
from lagrangeprop.solve.kernels import adjoint_matmul, adjoint_raw
from lagrangeprop.solve.local import accumulate

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


def _kernel_items(sched):
    """The per-step kernels of ``sched`` (what the generated code calls)."""
    plan = plan_of(sched)
    return plan, [it for it in plan.items if it.__class__ is StepItem and it.kernel is not None]


@pytest.mark.parametrize("prior", [False, True])
@pytest.mark.parametrize("name", PROGRAMS)
def test_kernels_pull_back_what_the_rules_do(name, prior):
    prog, inputs, guess = PROGRAMS[name]()
    sched, vals, _ = _run(prog, inputs, guess, forward_reference, adjoint_reference)
    plan, items = _kernel_items(sched)
    rng = np.random.default_rng(len(items))
    for item in items:
        step, kernel = item.step, item.kernel
        ans = vals[step.node]
        g = rng.standard_normal(np.shape(ans))
        g = np.float64(g) if g.ndim == 0 else g
        ref, lam = [None] * len(vals), [None] * len(vals)
        if prior:    # a multiplier already there: the kernel adds to it as accumulate does
            for _, u in step.diff:
                ref[u] = lam[u] = rng.standard_normal(np.shape(vals[u]))
        accumulate(step, g, ans, vals, ref)
        if kernel.__class__ is RawKernel:
            adjoint_raw(kernel, g, ans, vals, lam)
        else:
            adjoint_matmul(step, kernel, g, vals, lam, plan.bufs)
        for _, u in step.diff:
            assert _same(lam[u], ref[u]), f"{name}: the cotangent of {sched.names[u]!r} from {sched.names[step.node]!r}"


def test_generated_code_equals_the_interpreter_with_the_kernels(monkeypatch):
    """run_forward / run_adjoint with the generated code on (kernels) and off (the interpreter)."""
    from lagrangeprop.solve import compiled
    prog, inputs, guess = PROGRAMS["mlp"]()
    monkeypatch.setattr(compiled, "ENABLED", False)
    sched, ref_vals, ref_lam = _run(prog, inputs, guess, run_forward, run_adjoint)
    monkeypatch.setattr(compiled, "ENABLED", True)
    _, vals, lam = _run(prog, inputs, guess, run_forward, run_adjoint)
    for i, n in enumerate(sched.names):
        if sched.roles[i] != "constant":
            assert _same(vals[i], ref_vals[i]), f"value of {n!r}"
            assert _same(lam[i], ref_lam[i]), f"multiplier of {n!r}"


def test_the_programs_reach_every_kind_of_kernel():
    kinds = set()
    for make in PROGRAMS.values():
        plan, items = _kernel_items(make()[0].compile())
        kinds |= {type(it.kernel).__name__ for it in items}
        kinds |= {"pool"} if plan.nbufs else set()
        kinds |= {"broadcast"} if any(p.reduce for it in items if it.kernel.__class__ is RawKernel
                                       for p in it.kernel.partials) else set()
    assert kinds >= {RawKernel.__name__, MatmulKernel.__name__, "pool", "broadcast"}


def test_reference_names_the_non_finite_node():
    prog = lp.trace(lambda x: lp.log(x - 1.0) * 2.0, x=0.5)
    sched = prog.compile()
    vals = initial_values(sched, {sched.index["x"]: np.float64(0.5)})
    with pytest.raises(lp.NonFiniteError, match=r"op 'log'"):
        forward_reference(sched, vals, SolveOptions.make())
