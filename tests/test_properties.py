"""Property tests: random programs, gradients against HIPS autograd (tape), KKT, JSON.

Random DAGs are drawn op by op from the registry's differentiable ops, evaluated in
numpy while they are built so that every op stays in a safe domain (log/sqrt of
positives, no ties at max/min/abs kinks, bounded exp/tan). Random cyclic systems are
contractive (z = tanh(A z + B x), ||A|| < 1) or have a well-conditioned residual
(w + ½ sin(C w) = B x, ||C|| ≤ 1), so the implicit function theorem applies.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lagrangeprop as lp
from lagrangeprop.crosscheck.tape import tape_gradients

N = settings.default.max_examples       # 100 in CI ("ci" profile), 1000 with --slow
SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1)]
BOUND = 1e3


def _bcast(*vals) -> bool:
    try:
        np.broadcast_shapes(*(np.shape(v) for v in vals))
        return True
    except ValueError:
        return False


def _min_abs(v) -> float:
    return float(np.min(np.abs(v))) if np.size(v) else np.inf


# (name, arity, builder on lp Vars and numpy values alike, domain precondition)
UNARY = [
    ("exp", lambda a: lp.exp(a), lambda a: np.max(a) < 3),
    ("log", lambda a: lp.log(a), lambda a: np.min(a) > 0.1),
    ("log1p", lambda a: lp.log1p(a), lambda a: np.min(a) > -0.5),
    ("sqrt", lambda a: lp.sqrt(a), lambda a: np.min(a) > 0.1),
    ("sin", lambda a: lp.sin(a), None),
    ("cos", lambda a: lp.cos(a), None),
    ("tan", lambda a: lp.tan(a), lambda a: np.max(np.abs(a)) < 1.2),
    ("tanh", lambda a: lp.tanh(a), None),
    ("sigmoid", lambda a: lp.sigmoid(a), None),
    ("abs", lambda a: lp.abs(a), lambda a: _min_abs(a) > 1e-3),
    ("negative", lambda a: -a, None),
    ("square", lambda a: lp.square(a), None),
    ("power2", lambda a: a ** 2.0, None),
    ("power3", lambda a: a ** 3, None),
    ("power_half", lambda a: a ** 0.5, lambda a: np.min(a) > 0.1),
    ("power_m1", lambda a: a ** -1.0, lambda a: _min_abs(a) > 0.2),
    ("reciprocal", lambda a: 1.0 / a, lambda a: _min_abs(a) > 0.2),
    ("scale_shift", lambda a: 2.5 * a - 0.5, None),
]
BINARY = [
    ("add", lambda a, b: a + b, None),
    ("subtract", lambda a, b: a - b, None),
    ("multiply", lambda a, b: a * b, None),
    ("divide", lambda a, b: a / b, lambda a, b: _min_abs(b) > 0.2),
    ("power", lambda a, b: a ** b, lambda a, b: np.min(a) > 0.1 and np.max(np.abs(b)) < 3),
    ("maximum", lambda a, b: lp.maximum(a, b), lambda a, b: _min_abs(np.subtract(a, b)) > 1e-3),
    ("minimum", lambda a, b: lp.minimum(a, b), lambda a, b: _min_abs(np.subtract(a, b)) > 1e-3),
    ("logaddexp", lambda a, b: lp.logaddexp(a, b), None),
    ("where", lambda a, b: lp.where(lp.greater(a, b), a * 2.0, b), lambda a, b: _min_abs(np.subtract(a, b)) > 1e-3),
]


def _numeric(build, *vals):
    """Evaluate a builder on plain numpy values (lp functions accept arrays too)."""
    with np.errstate(all="ignore"):
        return np.asarray(build(*[np.asarray(v, dtype=np.float64) for v in vals]), dtype=np.float64)


@st.composite
def dag_programs(draw):
    """A random DAG program (scalar output) and its inputs."""
    prog = lp.Program(name="random_dag")
    pool, inputs = [], {}
    for i in range(draw(st.integers(1, 3))):
        shape = draw(st.sampled_from(SHAPES))
        val = draw(arrays(np.float64, shape, elements=st.floats(-1.5, 1.5).filter(lambda t: abs(t) > 0.05)))
        pool.append((prog.input(f"x{i}", shape=shape), val))
        inputs[f"x{i}"] = val

    def pick():
        # favour recent values, but reuse old ones too (fan-out, shared intermediates)
        k = draw(st.integers(0, len(pool) - 1))
        return pool[-1 - k] if draw(st.booleans()) else pool[k]

    for _ in range(draw(st.integers(3, 16))):
        kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce", "struct", "product"]))
        made = _make(draw, kind, pick)
        if made is None:
            continue
        var, val = made
        if np.all(np.isfinite(val)) and np.max(np.abs(val), initial=0.0) < BOUND:
            pool.append((var, val))
    last, _ = pool[-1]
    out = lp.sum(last) if np.ndim(pool[-1][1]) else last * 1.0
    other, oval = pick()
    if draw(st.booleans()):
        out = out + 0.5 * lp.sum(other)
    prog.output(out, name="out")
    return prog, inputs


def _make(draw, kind, pick):
    """One random op applied to pool members; None when its domain is not satisfied."""
    a, av = pick()
    if kind == "unary":
        _, build, pre = draw(st.sampled_from(UNARY))
        if pre is None or pre(av):
            return build(a), _numeric(build, av)
    elif kind == "binary":
        b, bv = pick()
        _, build, pre = draw(st.sampled_from(BINARY))
        if _bcast(av, bv) and (pre is None or pre(np.broadcast_to(av, np.broadcast_shapes(
                np.shape(av), np.shape(bv))), bv)):
            return build(a, b), _numeric(build, av, bv)
    elif kind == "reduce" and np.ndim(av) >= 1:
        axis = draw(st.sampled_from([None, *range(np.ndim(av)), -1]))
        keep = draw(st.booleans())
        op = draw(st.sampled_from(["sum", "mean", "logsumexp", "softmax"]))
        if op == "softmax":
            ax = -1 if axis is None else axis
            return lp.softmax(a, axis=ax), _numeric(lambda t: lp.softmax(t, axis=ax), av)
        fn = getattr(lp, op)
        return fn(a, axis=axis, keepdims=keep), _numeric(lambda t: fn(t, axis=axis, keepdims=keep), av)
    elif kind == "struct" and np.ndim(av) >= 1:
        b, bv = pick()
        n = np.shape(av)[0]
        choices = [
            (lambda t: t[0], True),
            (lambda t: t[..., -1:], True),
            (lambda t: t[np.array([0, n - 1, 0])], True),          # repeated integer index
            (lambda t: lp.reshape(t, (-1,)), True),
            (lambda t: lp.transpose(t), True),
            (lambda t: lp.concatenate([t, t * 2.0], axis=0), True),
            (lambda t: lp.stack([t, t], axis=-1), True),
        ]
        if np.shape(bv) == np.shape(av):
            choices.append((None, False))
        k = draw(st.integers(0, len(choices) - 1))
        fn, unary = choices[k]
        if unary:
            return fn(a), _numeric(fn, av)
        pair = draw(st.sampled_from(["concatenate", "stack"]))
        if pair == "concatenate":
            return lp.concatenate([a, b], axis=0), np.concatenate([av, bv], axis=0)
        return lp.stack([a, b], axis=0), np.stack([av, bv], axis=0)
    elif kind == "product" and np.ndim(av) in (1, 2):
        m = draw(st.integers(1, 3))
        C = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal((m, np.shape(av)[0])) / 2
        form = draw(st.sampled_from(["dense", "sparse", "traced", "dot"]))
        if form == "dense":
            return lp.matmul(C, a), _numeric(lambda t: C @ t, av)
        if form == "sparse":
            S = sp.csr_matrix(C)
            return lp.matmul(S, a), np.asarray(S @ av)
        b, bv = pick()
        if form == "dot" and np.ndim(av) == 1:
            b, bv = (b, bv) if np.shape(bv) == np.shape(av) else (a, av)
            return lp.dot(a, b), np.dot(av, bv)
        if form == "traced" and np.ndim(bv) == 2 and np.shape(bv)[1] == np.shape(av)[0]:
            return lp.matmul(b, a), bv @ av
    return None


def _agree(a, b, rtol, floor=0.0) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return float(np.max(np.abs(a - b), initial=0.0)) <= rtol * scale + floor


def _describe(prog, sol) -> str:
    """The program's constraints with values and multipliers, for failure messages."""
    s = prog.compile()
    lines = []
    for n in s.defined:
        st_ = s.step_of[n]
        lines.append(f"{s.names[n]} = {st_.prim.name}({', '.join(s.names[a] for a in st_.args)}) "
                     f"{st_.params or ''}  z={sol.values[s.names[n]]}  λ={sol.multipliers[s.names[n]]}")
    return "\n".join(lines)


def _largest(d: dict) -> float:
    return max([float(np.max(np.abs(v), initial=0.0)) for v in d.values()] + [0.0])


SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much]


# --------------------------------------------------------------------------- DAGs
@settings(max_examples=3 * N, suppress_health_check=SLOW_OK)
@given(dag_programs())
def test_random_dag_gradients_match_autograd_kkt_and_json(case):
    prog, inputs = case
    sol = prog.solve(**inputs)
    tape = tape_gradients(prog.compile(), "autograd", inputs, seed=1.0)
    # Absolute floor for entries that are exactly zero in exact arithmetic (e.g. the gradient of
    # sum(softmax(x))): both sides are then pure rounding noise from cancelling O(|λ|) terms,
    # ~1e-14 on either tape. 1e-12·|λ| is still four orders of magnitude above eps.
    floor = 1e-12 * max(_largest(sol.multipliers), 1.0)
    assert np.isclose(tape.value, float(sol.output), rtol=1e-12, atol=1e-300)
    for k in inputs:
        assert _agree(sol.grad[k], tape.grad[k], 1e-9, floor), (k, sol.grad[k], tape.grad[k], _describe(prog, sol))
    for node, lam in tape.multipliers.items():       # every multiplier, not only λ_x
        assert _agree(sol.multipliers[node], lam, 1e-9, floor), node
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10, kkt
    # JSON round trip: the same program, bit-identical gradients
    again = lp.Program.from_json(prog.to_json()).solve(**inputs)
    assert np.array_equal(np.asarray(again.output), np.asarray(sol.output))
    for k in inputs:
        assert np.array_equal(again.grad[k], sol.grad[k]), k


@settings(max_examples=max(10, N // 3), suppress_health_check=SLOW_OK)
@given(dag_programs())
def test_random_dag_passes_the_full_check(case):
    prog, inputs = case
    report = lp.check(prog, inputs)
    assert report.ok, str(report)


# ------------------------------------------------------------------- cyclic systems
@st.composite
def contractive_systems(draw):
    """z = tanh(A z + B x) split into 1 or 2 block variables, ||A||_2 = rho < 1; or the
    residual system w + ½ sin(C w) - B x = 0 with ||C||_2 <= 1."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, m = draw(st.integers(2, 4)), draw(st.integers(1, 3))
    rho = draw(st.floats(0.05, 0.9))
    residual = draw(st.booleans())
    A = rng.standard_normal((n, n))
    A *= (1.0 if residual else rho) / np.linalg.norm(A, 2)
    B = rng.standard_normal((n, m))
    c = rng.standard_normal(n)
    x = rng.uniform(-1.5, 1.5, m)
    prog = lp.Program(name="contractive")
    xv = prog.input("x", shape=(m,))
    if residual:
        w = prog.variable("w", shape=(n,))
        prog.residual(w, w + 0.5 * lp.sin(lp.matmul(A, w)) - lp.matmul(B, xv))
        z = w
    elif draw(st.booleans()):
        z = prog.variable("z", shape=(n,))
        prog.define(z, lp.tanh(lp.matmul(A, z) + lp.matmul(B, xv)))
    else:
        k = n // 2
        z1, z2 = prog.variable("z1", shape=(k,)), prog.variable("z2", shape=(n - k,))
        prog.define(z1, lp.tanh(lp.matmul(A[:k, :k], z1) + lp.matmul(A[:k, k:], z2) + lp.matmul(B[:k], xv)))
        prog.define(z2, lp.tanh(lp.matmul(A[k:, :k], z1) + lp.matmul(A[k:, k:], z2) + lp.matmul(B[k:], xv)))
        z = lp.concatenate([z1, z2])
    prog.output(lp.sum(c * z) + lp.sum(z ** 2) + lp.sum(lp.sin(xv)), name="obj")
    return prog, {"x": x}


@settings(max_examples=max(10, N // 2), suppress_health_check=SLOW_OK)
@given(contractive_systems())
def test_random_cyclic_systems_match_unrolled_autograd(case):
    prog, inputs = case
    sol = prog.solve(**inputs)
    assert prog.blocks
    tape = tape_gradients(prog.compile(), "autograd", inputs, seed=1.0)
    # to solver tolerance: the forward solve stops at max|c| <= 1e-10·max(1, |z|)
    assert _agree(sol.grad["x"], tape.grad["x"], 1e-8), (sol.grad["x"], tape.grad["x"])
    for node, lam in tape.multipliers.items():
        assert _agree(sol.multipliers[node], lam, 1e-8, 1e-12), node
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10, kkt
    again = lp.Program.from_json(prog.to_json()).solve(**inputs)
    assert np.array_equal(again.grad["x"], sol.grad["x"])


@settings(max_examples=max(5, N // 10), suppress_health_check=SLOW_OK)
@given(contractive_systems())
def test_random_cyclic_systems_pass_the_full_check(case):
    prog, inputs = case
    report = lp.check(prog, inputs, against=("autograd", "fd"))
    assert report.ok, str(report)
    errors = [c["rel_error"] for c in report.convergence]
    assert errors[-1] <= 1e-8 and errors[-1] <= errors[0]
