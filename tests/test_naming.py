"""Node names from the source's locals (issue 15): the traced function's locals, its helpers'
(``layer.z``, ``layer_2.z``), and the caller's locals for programs built with ``define`` /
``residual`` / ``output`` (soft names, still claimable). Inputs, the output and user names are
never renamed; names stay unique and survive the JSON round trip."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lagrangeprop as lp

from programs import SCALED_CASES, SELLAR_GUESS, SELLAR_INPUTS, sellar_program

AUTO = re.compile(r"^[a-z_]+_\d+$")


def layer(h, W):
    z = h @ W
    return np.tanh(z)


def mlp(x, W1, W2):
    h = layer(x, W1)
    return lp.sum(layer(h, W2) ** 2)


def _defined(prog) -> list[str]:
    return sorted(n for n, d in prog.graph.nodes(data=True) if d["role"] == "defined")


@pytest.fixture
def weights(rng):
    return rng.standard_normal(3), rng.standard_normal((3, 4)), rng.standard_normal((4, 2))


def test_helper_locals_name_the_nodes_of_each_call(weights):
    x, W1, W2 = weights
    prog = lp.trace(mlp, x=x, W1=W1, W2=W2)
    assert {"h", "layer.z", "layer_2.z"} <= set(_defined(prog))
    sol = prog.solve(x=x, W1=W1, W2=W2)
    np.testing.assert_allclose(sol.values["layer.z"], x @ W1, rtol=1e-14)        # numpy, independently
    np.testing.assert_allclose(sol.values["layer_2.z"], np.tanh(x @ W1) @ W2, rtol=1e-14)
    # the gradient by hand: d sum(tanh(z2)^2)/dz2 = 2 t sech²(z2), back through both layers
    # (sech² = 1/cosh², not 1 - t², which keeps only the rounding of t where tanh saturates)
    z2 = np.tanh(x @ W1) @ W2
    t2 = np.tanh(z2)
    g_z2 = 2 * t2 / np.cosh(z2) ** 2
    g_z1 = (W2 @ g_z2) / np.cosh(x @ W1) ** 2
    np.testing.assert_allclose(sol.multipliers["layer_2.z"], g_z2, rtol=1e-12)
    np.testing.assert_allclose(sol.multipliers["layer.z"], g_z1, rtol=1e-12)
    np.testing.assert_allclose(sol.grad["x"], W1 @ g_z1, rtol=1e-12)


def test_the_traced_functions_own_locals_come_first(weights):
    x, W1, _ = weights

    def f(x, W1):
        z = lp.exp(x)                 # f's own z
        return lp.sum(layer(z, W1))   # layer's z is another node

    prog = lp.trace(f, x=x, W1=W1)
    G = prog.graph
    assert G.nodes["z"]["op"] == "exp" and G.nodes["layer.z"]["op"] == "matmul"
    assert "layer.h" not in G     # layer's h is f's z: already named
    assert {"x", "W1", "out"} <= set(G) and G.graph["output"] == "out"


def test_inputs_outputs_and_user_names_are_never_renamed(weights):
    x, W1, _ = weights

    def passthrough(h, W):
        y = h            # a helper's local bound to an input
        return y @ W

    def f(x, W1):
        out = passthrough(x, W1)
        return lp.sum(out)

    prog = lp.trace(f, x=x, W1=W1)
    assert prog.graph.nodes["x"]["role"] == "input" and "passthrough.y" not in prog.graph
    assert prog.graph.graph["output"] in prog.graph and "passthrough.h" not in prog.graph


def test_comprehensions_and_lambdas_add_no_odd_names(rng):
    x = rng.standard_normal(3)
    square = lambda v: v * v   # noqa: E731 - a lambda's frame has no readable name

    def f(x):
        parts = [lp.exp(x[i]) for i in range(3)]
        return lp.sum(square(lp.stack(parts)))

    prog = lp.trace(f, x=x)
    assert not [n for n in prog.graph if "<" in n or not n]
    np.testing.assert_allclose(prog.solve(x=x).grad["x"], 2 * np.exp(2 * x), rtol=1e-13)


def test_names_are_unique_and_survive_the_json_round_trip(weights):
    x, W1, W2 = weights
    prog = lp.trace(mlp, x=x, W1=W1, W2=W2)
    back = lp.Program.from_json(prog.to_json())
    assert sorted(back.graph) == sorted(prog.graph)
    assert len(set(prog.graph)) == prog.graph.number_of_nodes()
    a, b = prog.solve(x=x, W1=W1, W2=W2), back.solve(x=x, W1=W1, W2=W2)
    np.testing.assert_array_equal(a.grad["W1"], b.grad["W1"])


def test_grad_of_a_function_with_helpers(weights):
    x, W1, W2 = weights
    g = lp.grad(mlp)(x, W1, W2)
    h = 1e-6
    fd = np.array([(mlp(x + h * e, W1, W2) - mlp(x - h * e, W1, W2)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(g, fd, rtol=1e-6)


# ------------------------------------------------------------ programs built by define/residual
def _kepler():
    prog = lp.Program(name="kepler")
    M, e = prog.input("M"), prog.input("e")
    E = prog.variable("E")
    drift = e * lp.sin(E)
    prog.residual(E, E - drift - M)
    prog.output(E * 1.0, name="anomaly")
    return prog


@pytest.fixture
def expression_names(monkeypatch):
    """Name expression intermediates after their constraint (graph.naming.EXPRESSION_NAMES)."""
    from lagrangeprop.graph import naming
    monkeypatch.setattr(naming, "EXPRESSION_NAMES", True)


def test_builder_callers_locals_without_expression_names(monkeypatch):
    from lagrangeprop.graph import naming
    monkeypatch.setattr(naming, "EXPRESSION_NAMES", False)
    prog = _kepler()
    assert "drift" in prog.graph and "E.subtract" not in prog.graph     # switched off: locals only
    np.testing.assert_allclose(prog.solve(M=1.0, e=0.6, guess={"E": 1.0}).grad["e"], lp.check(
        prog, {"M": 1.0, "e": 0.6}, guess={"E": 1.0}, against=("fd",)).rows[1]["fd"], rtol=1e-6)


def test_builder_callers_locals_and_expression_intermediates(expression_names):
    prog = _kepler()
    assert {"drift", "drift.sin", "E.subtract"} <= set(prog.graph)
    assert not [n for n in _defined(prog) if AUTO.match(n)]
    sol = prog.solve(M=1.0, e=0.6, guess={"E": 1.0})
    Ev = float(sol.values["E"])
    np.testing.assert_allclose(Ev - 0.6 * np.sin(Ev), 1.0, rtol=1e-13)
    np.testing.assert_allclose(sol.grad["M"], 1 / (1 - 0.6 * np.cos(Ev)), rtol=1e-12)   # closed form
    np.testing.assert_allclose(sol.values["drift"], 0.6 * np.sin(Ev), rtol=1e-13)
    assert "drift" in sol.report()


def test_soft_names_can_still_be_claimed_and_absorbed():
    prog = lp.Program()
    x = prog.input("x")
    t = x * 2.0
    u = prog.variable("u")
    prog.define(u, t + 1.0)
    assert "t" in prog.graph and prog.graph.nodes["t"]["op"] == "multiply"
    later = prog.variable("t")          # the user claims the name: the soft node moves aside
    assert prog.graph.nodes["t"].get("op") is None and t.name != "t" and prog.graph.nodes[t.name]["op"] == "multiply"
    prog.define(later, u * 3.0)
    s = lp.exp(x)
    prog.define(prog.variable("v"), s * 1.0)
    w = prog.variable("w")
    prog.define(w, s)                   # s is soft-named but unnamed to SPEC: its root becomes w
    assert prog.graph.nodes["w"]["op"] == "exp" and "s" not in prog.graph
    prog.output(later + w, name="o")
    sol = prog.solve(x=0.3)
    np.testing.assert_allclose(sol.grad["x"], 6.0 + np.exp(0.3), rtol=1e-14)


def test_a_local_used_in_a_loop_gets_numbered_names():
    prog = lp.Program()
    x = prog.input("x", shape=(3,))
    for i in range(3):
        t = x[i] * 2.0
        y = prog.variable(f"y{i}")
        prog.residual(y, y ** 3 + y - t)
    prog.output(prog._var("y0") + prog._var("y1") + prog._var("y2"), name="o")
    assert {"t", "t_2", "t_3"} <= set(prog.graph)
    sol = prog.solve(x=np.array([1.0, 2.0, 3.0]))
    w = np.array([float(sol.values[f"y{i}"]) for i in range(3)])
    np.testing.assert_allclose(w ** 3 + w, 2 * np.array([1.0, 2.0, 3.0]), rtol=1e-12)
    np.testing.assert_allclose(sol.grad["x"], 2 / (3 * w ** 2 + 1), rtol=1e-10)


@pytest.mark.parametrize("case", ["sellar", *SCALED_CASES])
def test_block_reports_of_the_shared_programs_name_every_node(case, expression_names):
    if case == "sellar":
        sol = sellar_program().solve(**SELLAR_INPUTS, guess=SELLAR_GUESS)
    else:
        c = SCALED_CASES[case]()
        sol = c.prog.solve(**c.inputs, guess=c.guess)
    blocks = sol.report().split("cyclic blocks")[1]
    members = [n.strip() for line in re.findall(r"\[([^\]]*)\]:", blocks) for n in line.split(",")]
    assert members and not [n for n in members if AUTO.match(n)], blocks
