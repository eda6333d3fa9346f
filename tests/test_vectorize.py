"""Wide scalar programs (many same-op scalar constraints per level, the shape the removed
vectorized groups served): the generated code agrees with the reference interpreters and with
autograd, around cyclic blocks too, and names the node of a non-finite value."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.solve import compiled

UNARY = ("sin", "cos", "tanh", "sigmoid", "negative")
BINARY = ("add", "subtract", "multiply", "maximum", "logaddexp")


def _ops(m):
    sig = (lambda v: 1.0 / (1.0 + anp.exp(-v))) if m is anp else lp.sigmoid
    return {"sin": m.sin, "cos": m.cos, "tanh": m.tanh, "sigmoid": sig, "negative": lambda v: -v,
            "add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
            "maximum": m.maximum, "logaddexp": m.logaddexp}


def random_wide(rng, width: int, depth: int):
    """A random wide scalar program, as a function of a module (lp or autograd.numpy)."""
    consts = rng.uniform(0.5, 1.5, width)
    layers = []
    for _ in range(depth):
        kinds = rng.choice(["u", "b", "bc"], size=width, p=[0.4, 0.4, 0.2])
        layers.append([(k, rng.choice(UNARY if k == "u" else BINARY), rng.integers(0, width, 2),
                        float(rng.uniform(-1, 1))) for k in kinds])

    def make(m):
        ops = _ops(m)

        def f(x, y, v):
            layer = [x * c if k % 2 else y + c for k, c in enumerate(consts)]
            layer[0] = x * x                       # repeated argument
            for spec in layers:
                new = []
                for kind, op, (i, j), c in spec:
                    if kind == "u":
                        new.append(ops[op](layer[i]))
                    elif kind == "b":
                        new.append(ops[op](layer[i], layer[j]))
                    else:
                        new.append(ops[op](layer[i], c))   # a constant argument
                layer = new
            # per-step consumers of group outputs: a stack, a sum, and the output product
            half = m.sum(m.stack(layer[: width // 2]) * v[: width // 2])
            return half + layer[-1] * layer[-2] + x * y
        return f
    return make


def _both(monkeypatch, prog, **inputs):
    """``prog`` solved by the generated code and by the reference interpreters (fresh copies)."""
    out = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        out.append(lp.Program.from_json(prog.to_json()).solve(**inputs))
    monkeypatch.setattr(compiled, "ENABLED", True)
    return out


def _assert_close(a: dict, b: dict, rtol: float = 1e-15) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        scale = max(1.0, float(np.max(np.abs(y))) if y.size else 1.0)
        assert np.max(np.abs(x - y), initial=0.0) <= 4 * rtol * scale, k


@pytest.mark.parametrize("seed", range(6))
def test_random_wide_graph_generated_equals_reference_and_autograd(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    width, depth = int(rng.integers(10, 40)), int(rng.integers(2, 6))
    make = random_wide(rng, width, depth)
    inputs = {"x": 0.7, "y": -0.3, "v": rng.standard_normal(width)}
    prog = lp.trace(make(lp), **inputs)
    sol, ref = _both(monkeypatch, prog, **inputs)
    _assert_close(sol.values, ref.values)
    _assert_close(sol.multipliers, ref.multipliers)
    f = make(anp)
    gx, gy, gv = autograd.grad(f, (0, 1, 2))(inputs["x"], inputs["y"], inputs["v"])
    np.testing.assert_allclose(float(sol.grad["x"]), gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(float(sol.grad["y"]), gy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sol.grad["v"], gv, rtol=1e-12, atol=1e-12)
    assert sol.kkt()["adjoint"] < 1e-12


def test_wide_levels_around_a_cyclic_block(monkeypatch):
    """Wide scalar levels feed a block and read its members; both paths agree."""
    prog = lp.Program(name="wide_block")
    x = prog.input("x")
    a = [lp.sin(x * (1.0 + k / 10)) for k in range(12)]
    s = a[0]
    for t in a[1:]:
        s = s + t
    y1, y2 = prog.variable("y1"), prog.variable("y2")
    prog.define(y1, 0.3 * y2 + s)
    prog.define(y2, lp.tanh(y1) + a[0])
    b = [lp.cos(y1 * (1.0 + k / 7)) + y2 for k in range(12)]
    out = b[0]
    for t in b[1:]:
        out = out + t * t
    prog.output(out, name="o")
    sol, ref = _both(monkeypatch, prog, x=0.4)
    _assert_close(sol.values, ref.values, rtol=1e-14)
    _assert_close(sol.multipliers, ref.multipliers, rtol=1e-13)
    h = 1e-6
    fd = (prog.evaluate(x=0.4 + h) - prog.evaluate(x=0.4 - h)) / (2 * h)
    np.testing.assert_allclose(float(sol.grad["x"]), fd, rtol=1e-7)


def test_wide_sum_output_and_repeated_evaluate():
    def f(x):
        return sum(lp.tanh(x * k) for k in range(1, 20))
    prog = lp.trace(f, x=0.2)
    for x0 in (0.2, -1.3):
        sol = prog.solve(x=x0)
        expected = sum(k * (1 - np.tanh(x0 * k) ** 2) for k in range(1, 20))
        np.testing.assert_allclose(float(sol.grad["x"]), expected, rtol=1e-13)
        np.testing.assert_allclose(float(prog.evaluate(x=x0)), sum(np.tanh(x0 * k) for k in range(1, 20)),
                                   rtol=1e-14)


def test_non_finite_in_a_wide_level_names_the_node():
    def f(x):
        ys = [lp.log(x - k) for k in range(10)]   # log of a negative number from k = 1 on
        return sum(ys)
    prog = lp.trace(f, x=0.5)
    with pytest.raises(lp.NonFiniteError, match=r"op 'log'"):
        prog.solve(x=0.5)
    with pytest.raises(lp.NonFiniteError, match="non-finite"):
        prog.evaluate(x=0.5)
