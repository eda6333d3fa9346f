"""Program building, the graph schema, JSON, from_graph, the Lagrangian at any point, errors."""

import json

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp

# ------------------------------------------------------------------ graph schema


def test_graph_schema_of_a_traced_program():
    def f(x):
        a = lp.exp(x)
        b = a * a
        return b + 2.0

    prog = lp.trace(f, x=0.5)
    G = prog.graph
    assert isinstance(G, nx.DiGraph)
    assert G.graph["output"] == "out"
    assert G.nodes["x"]["role"] == "input" and G.nodes["x"]["shape"] == ()
    assert G.nodes["a"] == {"role": "defined", "op": "exp", "constraint": "explicit", "params": {}, "shape": ()}
    assert G.nodes["b"]["op"] == "multiply"
    assert G.edges["a", "b"]["arg"] == [0, 1]          # x * x fills both positions
    assert G.edges["x", "a"]["arg"] == 0
    consts = [n for n, d in G.nodes(data=True) if d["role"] == "constant"]
    assert len(consts) == 1 and float(G.nodes[consts[0]]["value"]) == 2.0
    assert G.edges[consts[0], "out"]["arg"] == 1


def test_define_renames_unnamed_root_else_identity():
    prog = lp.Program()
    x = prog.input("x")
    y = prog.variable("y")
    prog.define(y, lp.sin(x))
    assert prog.graph.nodes["y"]["op"] == "sin"
    z = prog.variable("z")
    prog.define(z, y)                            # a named root: z gets identity
    assert prog.graph.nodes["z"]["op"] == "identity"
    prog.output(z * 3.0, name="obj")
    assert prog.graph.graph["output"] == "obj" and prog.graph.nodes["obj"]["op"] == "multiply"
    sol = prog.solve(x=0.3)
    assert sol.grad["x"] == pytest.approx(3 * np.cos(0.3), rel=1e-15)
    assert set(sol.values) == {"x", "y", "z", "obj"}


def test_variable_used_before_defined_and_residual_node_schema():
    prog = lp.Program()
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w**3 + w - x)
    prog.output(2.0 * w, name="o")
    G = prog.graph
    assert G.nodes["w"]["constraint"] == "residual" and G.nodes["w"]["op"] == "subtract"
    assert prog.blocks and "w" in prog.blocks[0]
    sol = prog.solve(x=10.0, tol=1e-14)   # w = 2
    assert sol.values["w"] == pytest.approx(2.0, rel=1e-12)
    assert sol.grad["x"] == pytest.approx(2.0 / 13.0, rel=1e-10)
    # the residual node's multiplier is ∂z_o/∂ε for w³ + w − x = ε: 2·dw/dε = 2/(3w² + 1)
    assert sol.multipliers["w"] == pytest.approx(2.0 / 13.0, rel=1e-10)


def test_unused_input_gets_zero_gradient():
    prog = lp.Program()
    x = prog.input("x")
    prog.input("unused", shape=(2,))
    prog.output(x * x)
    sol = prog.solve(x=2.0, unused=np.ones(2))
    np.testing.assert_array_equal(sol.grad["unused"], np.zeros(2))


# ---------------------------------------------------------------- serialisation


def _sparse_program():
    W = sp.random(6, 6, density=0.3, random_state=np.random.RandomState(1), format="csr")
    idx = np.array([0, 2, 2, 5])
    prog = lp.Program(name="ser")
    x = prog.input("x", shape=(6,))
    h = lp.tanh(lp.matmul(W, x) + np.linspace(0, 1, 6))
    y = prog.variable("y")
    prog.define(y, lp.sum(h[idx] ** 2, axis=0) + lp.sum(h[1:4]))
    prog.output(y * np.float64(1.0 / 3.0), name="obj")
    return prog


def test_json_round_trip_bit_identical(rng):
    prog = _sparse_program()
    x = rng.normal(size=6)
    text = prog.to_json()
    json.loads(text)                         # valid JSON
    back = lp.Program.from_json(text)
    s1, s2 = prog.solve(x=x), back.solve(x=x)
    assert s1.output == s2.output
    np.testing.assert_array_equal(s1.grad["x"], s2.grad["x"])
    assert set(back.graph.nodes) == set(prog.graph.nodes)
    for n, d in prog.graph.nodes(data=True):
        assert back.graph.nodes[n]["role"] == d["role"]
        assert back.graph.nodes[n]["shape"] == d["shape"]
    assert back.to_json() == text


def test_json_round_trip_cyclic_program():
    prog = lp.Program(name="cyc")
    x = prog.input("x")
    y = prog.variable("y")
    prog.define(y, 0.5 * lp.cos(y) + x)
    prog.output(y**2, name="o")
    back = lp.Program.from_json(prog.to_json())
    a, b = prog.solve(x=0.2), back.solve(x=0.2)
    assert a.grad["x"] == b.grad["x"]


def test_from_json_never_evaluates_code_and_rejects_unknown_ops():
    prog = lp.trace(lambda x: lp.exp(x), x=1.0)
    data = json.loads(prog.to_json())
    for node in data["nodes"]:
        if node.get("op") == "exp":
            node["op"] = "__import__('os').system"
    bad = lp.Program.from_json(json.dumps(data))
    with pytest.raises(lp.GraphError, match="unknown|not registered|op"):
        bad.solve(x=1.0)


def test_from_graph_built_with_networkx():
    G = nx.DiGraph(output="f")
    G.add_node("x", role="input", shape=())
    G.add_node("two", role="constant", value=np.array(2.0), shape=())
    G.add_node("s", role="defined", op="sin", constraint="explicit", params={}, shape=())
    G.add_node("f", role="defined", op="multiply", constraint="explicit", params={}, shape=())
    G.add_edge("x", "s", arg=0)
    G.add_edge("s", "f", arg=0)
    G.add_edge("two", "f", arg=1)
    prog = lp.Program.from_graph(G)
    sol = prog.solve(x=0.7)
    assert sol.output == pytest.approx(2 * np.sin(0.7), rel=1e-15)
    assert sol.grad["x"] == pytest.approx(2 * np.cos(0.7), rel=1e-15)


# --------------------------------------------------- the Lagrangian at any point


def _random_point(prog, sol, rng):
    values = {k: np.asarray(v) + 0.1 * rng.normal(size=np.shape(v)) for k, v in sol.values.items()
              if k not in sol.grad}
    lams = {k: np.asarray(v) + rng.normal(size=np.shape(v)) for k, v in sol.multipliers.items()
            if k not in sol.grad}
    inputs = {k: np.asarray(sol.values[k]) for k in sol.grad}
    return inputs, values, lams


@pytest.mark.parametrize("which", ["dag", "cyclic"])
def test_lagrangian_gradient_blocks_vs_finite_differences(which, rng):
    if which == "dag":
        prog = lp.trace(lambda x: lp.sum(lp.exp(x[:2]) * lp.sin(x[1:])) / lp.sqrt(lp.sum(x**2) + 1.0),
                        x=np.ones(3))
        sol = prog.solve(x=np.array([0.3, -0.2, 0.5]))
    else:
        prog = lp.Program()
        x = prog.input("x", shape=(2,))
        y = prog.variable("y", shape=(2,))
        prog.define(y, 0.3 * lp.tanh(y[::-1]) + x)
        w = prog.variable("w")
        prog.residual(w, w**3 + w - lp.sum(y))
        prog.output(w * lp.sum(y**2), name="o")
        sol = prog.solve(x=np.array([0.4, 0.1]))
    inputs, values, lams = _random_point(prog, sol, rng)
    gx, gz, glam = prog.lagrangian_grad(inputs, values, lams)
    L = lambda i, v, m: prog.lagrangian(i, v, m)  # noqa: E731
    h = 1e-6

    def fd(kind, name, k):
        parts = [dict(inputs), dict(values), dict(lams)]
        d = {"x": 0, "z": 1, "lam": 2}[kind]
        base = np.array(parts[d][name], dtype=float)
        e = np.zeros(base.size)
        e[k] = h
        parts[d][name] = base + e.reshape(base.shape)
        up = L(*parts)
        parts[d][name] = base - e.reshape(base.shape)
        down = L(*parts)
        return (up - down) / (2 * h)

    for kind, grads in [("x", gx), ("z", gz), ("lam", glam)]:
        for name, g in grads.items():
            for k in range(np.size(g)):
                assert np.ravel(g)[k] == pytest.approx(fd(kind, name, k), rel=1e-6, abs=1e-7), (kind, name, k)
    # at the solution: ∂L/∂z = 0, ∂L/∂λ = 0, ∂L/∂x = λ_x, L = z_o
    gx, gz, glam = prog.lagrangian_grad(inputs, sol.values, sol.multipliers)
    assert max(np.max(np.abs(v)) for v in gz.values()) < 1e-10
    assert max(np.max(np.abs(v)) for v in glam.values()) < 1e-10
    for k in gx:
        np.testing.assert_allclose(gx[k], sol.grad[k], rtol=1e-12)
    assert prog.lagrangian(sol) == pytest.approx(float(sol.output), rel=1e-12)


def test_constraint_jacobian_matches_dense_finite_differences(rng):
    prog = lp.Program()
    x = prog.input("x", shape=(2,))
    y = prog.variable("y", shape=(2,))
    prog.define(y, 0.3 * lp.tanh(y[::-1]) + x)
    prog.output(lp.sum(y**2), name="o")
    sol = prog.solve(x=np.array([0.4, 0.1]))
    A, index = prog.constraint_jacobian(sol.values, {"x": sol.values["x"]})
    assert sp.issparse(A)
    names = list(index)
    n = A.shape[0]
    values = {k: np.asarray(v, dtype=float) for k, v in sol.values.items() if k != "x"}

    def cvec(vals):
        _, _, glam = prog.lagrangian_grad({"x": sol.values["x"]}, vals, {})
        out = np.zeros(n)
        for k in names:
            out[index[k]] = -np.ravel(glam[k])
        return out

    J = np.zeros((n, n))
    h = 1e-7
    for k in names:
        for j in range(index[k].stop - index[k].start):
            vp = {a: b.copy() for a, b in values.items()}
            vm = {a: b.copy() for a, b in values.items()}
            np.ravel(vp[k])[j] += h
            np.ravel(vm[k])[j] -= h
            if vp[k].ndim == 0:
                vp[k] = values[k] + h
                vm[k] = values[k] - h
            J[:, index[k].start + j] = (cvec(vp) - cvec(vm)) / (2 * h)
    np.testing.assert_allclose(A.toarray(), J, atol=1e-7)


# ------------------------------------------------------------------- the errors


def test_error_hierarchy():
    for cls in [lp.GraphError, lp.ShapeError, lp.InputError, lp.ConvergenceError,
                lp.SingularSystemError, lp.NonFiniteError]:
        assert issubclass(cls, lp.LagrangePropError) and issubclass(cls, ValueError)


def test_missing_extra_wrong_shape_nonfinite_inputs():
    prog = lp.trace(lambda x, y: lp.sum(x) * y, x=np.ones(3), y=1.0)
    with pytest.raises(lp.InputError, match="'y'"):
        prog.solve(x=np.ones(3))
    with pytest.raises(lp.InputError, match="'q'"):
        prog.solve(x=np.ones(3), y=1.0, q=2.0)
    with pytest.raises(lp.InputError, match=r"'x'.*\(2,\).*\(3,\)"):
        prog.solve(x=np.ones(2), y=1.0)
    with pytest.raises(lp.InputError, match="'y'.*NaN"):
        prog.solve(x=np.ones(3), y=np.nan)


def test_reserved_option_names_cannot_name_inputs():
    prog = lp.Program()
    with pytest.raises(lp.GraphError, match="'seed'"):
        prog.input("seed")


def test_no_output_undefined_variable_duplicate_node():
    prog = lp.Program()
    x = prog.input("x")
    with pytest.raises(lp.GraphError, match="no output"):
        prog.solve(x=1.0)
    y = prog.variable("y")
    prog.output(x + y, name="o")
    with pytest.raises(lp.GraphError, match="'y'.*never defined"):
        prog.solve(x=1.0)
    with pytest.raises(lp.GraphError, match="duplicate.*'x'"):
        prog.input("x")
    prog.define(y, x * 2.0)
    with pytest.raises(lp.GraphError, match="'y'.*already defined"):
        prog.define(y, x)
    assert prog.solve(x=1.0).grad["x"] == pytest.approx(3.0)


def test_unknown_op_in_graph_names_node():
    G = nx.DiGraph(output="f")
    G.add_node("x", role="input", shape=())
    G.add_node("f", role="defined", op="frobnicate", constraint="explicit", params={}, shape=())
    G.add_edge("x", "f", arg=0)
    with pytest.raises(lp.GraphError, match="'f'.*frobnicate"):
        lp.Program.from_graph(G).solve(x=1.0)


def test_bad_schema_errors():
    G = nx.DiGraph(output="f")
    G.add_node("x", role="banana")
    with pytest.raises(lp.GraphError, match="'x'.*role"):
        lp.Program.from_graph(G)
    G = nx.DiGraph(output="f")
    G.add_node("x", role="input", shape=())
    G.add_node("f", role="defined", op="add", constraint="explicit", params={}, shape=())
    G.add_edge("x", "f", arg=1)           # position 0 missing
    with pytest.raises(lp.GraphError, match="'f'.*position"):
        lp.Program.from_graph(G).solve(x=1.0)


def test_shape_errors_name_the_nodes():
    with pytest.raises(lp.ShapeError, match=r"\(3,\).*\(4,\)|\(4,\).*\(3,\)"):
        lp.trace(lambda x: x + np.ones(4), x=np.ones(3))
    prog = lp.Program()
    x = prog.input("x", shape=(3,))
    y = prog.variable("y", shape=(2,))
    prog.define(y, x * 2.0)                # validated when compiled
    prog.output(lp.sum(y), name="o")
    with pytest.raises(lp.ShapeError, match="'y'.*\\(2,\\).*\\(3,\\)"):
        prog.solve(x=np.ones(3))


def test_non_scalar_output_without_seed_explains():
    prog = lp.trace(lambda x: x * 2.0, x=np.ones(3))
    with pytest.raises(lp.ShapeError, match="seed"):
        prog.solve(x=np.ones(3))
    with pytest.raises(lp.ShapeError, match="jacobian"):
        lp.grad(lambda x: x * 2.0)(np.ones(3))


def test_non_finite_value_names_node_and_op():
    def f(x):
        bad = lp.log(x - 1.0)
        return bad * 2.0
    prog = lp.trace(f, x=0.5)
    with pytest.raises(lp.NonFiniteError, match="'bad'.*'log'"):
        prog.solve(x=0.5)


def test_python_control_flow_on_traced_values_is_a_clear_error():
    def f(x):
        if x > 0:
            return x
        return -x
    with pytest.raises(lp.GraphError, match="lp.where"):
        lp.trace(f, x=1.0)


def test_variables_of_two_programs_cannot_mix():
    p, q = lp.Program(), lp.Program()
    a, b = p.input("a"), q.input("b")
    with pytest.raises(lp.GraphError, match="different programs"):
        a + b


def test_singular_block_and_divergent_block_errors():
    prog = lp.Program()
    x = prog.input("x")
    y = prog.variable("y")
    prog.define(y, y + x)                   # c = y - (y + x): ∂c/∂y = 0
    prog.output(y * 1.0, name="o")
    with pytest.raises(lp.SingularSystemError, match="'?y'?"):
        prog.solve(x=1.0)
    prog = lp.Program()
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w**2 + x)              # no real root for x = 1
    prog.output(w * 1.0, name="o")
    with pytest.raises((lp.ConvergenceError, lp.SingularSystemError), match="w"):
        prog.solve(x=1.0, guess={"w": 0.5})
