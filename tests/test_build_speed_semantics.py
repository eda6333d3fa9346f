"""Semantics of the fast build path (shape rules, local names, compile in one pass).

Speed itself is measured in benchmarks, never asserted here: these tests check that the
shortcuts give exactly what abstract evaluation with numpy and the networkx reference
algorithms give.
"""

from __future__ import annotations

import cProfile
import itertools
import sys
import warnings

import networkx as nx
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.rules import registry
from lagrangeprop.rules.shapes import rule_shape


def _numpy_shape(prim, shapes, params):
    """Reference: evaluate on dummies (what the rules replace); None when numpy raises."""
    dummies = [np.full(s, 0.5) for s in shapes]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tuple(np.shape(prim.value(dummies, params)))
    except Exception:
        return None


SHAPES = [(), (1,), (3,), (4,), (3, 1), (1, 4), (3, 4), (4, 3), (2, 3, 4)]
ELEMENTWISE = [name for name, prim in registry.REGISTRY.items() if prim.elementwise and not prim.user]


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_rule_matches_numpy(name):
    prim = registry.get(name)
    for shapes in itertools.product(SHAPES, repeat=prim.nargs):
        got = rule_shape(prim, list(shapes), {})
        want = _numpy_shape(prim, shapes, {})
        assert got == want, (name, shapes)   # None both ways: numpy raises, the rule declines


def _cases():
    for s in SHAPES:
        for axis in (None, 0, 1, -1, 2, -3, (0, 1), (1, 0), (0, 0), 1.5):
            for keepdims in (False, True):
                for name in ("sum", "mean", "logsumexp"):
                    yield name, [s], {"axis": axis, "keepdims": keepdims}
        for axis in (0, -1, 1, 2):
            yield "softmax", [s], {"axis": axis}
        yield "transpose", [s], {"axes": None}
        for axes in ((1, 0), (0, 1), (2, 0, 1), (0, 0), (0, 1, 2), (-1, 0)):
            yield "transpose", [s], {"axes": axes}
        for new in ((12,), (-1,), (3, -1), (-1, -1), (2, 6), (0,), (4, 3), (1, -1), (-2, 6)):
            yield "reshape", [s], {"shape": new}
        for index in (0, -1, 3, -4, slice(None), slice(1, None), slice(None, None, -2), slice(5, 1),
                      (0, 1), (slice(None), 2), (1, slice(0, 2), 0), (0, 0, 0, 0), (None,), (Ellipsis, 0),
                      np.array([0, 2]), slice(0, 2, 0)):
            yield "getitem", [s], {"index": index}
    for a, b in itertools.product(SHAPES, repeat=2):
        yield "matmul", [a, b], {}
        yield "dot", [a, b], {}


@pytest.mark.parametrize("name", ["sum", "mean", "logsumexp", "softmax", "transpose", "reshape",
                                  "getitem", "matmul", "dot"])
def test_structural_rules_match_numpy(name):
    prim = registry.get(name)
    n = 0
    for op, shapes, params in _cases():
        if op != name:
            continue
        got = rule_shape(prim, shapes, params)
        if got is not None:          # the rule may decline (None): numpy then decides
            assert got == _numpy_shape(prim, shapes, params), (name, shapes, params)
            n += 1
    assert n > 5


def test_user_op_under_builtin_name_is_evaluated():
    add = registry.get("add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op = lp.primitive("add", lambda x, y: np.outer(x, y), vjp=lambda g, ans, x, y: (g @ y, x @ g))
    try:
        assert rule_shape(op, [(3,), (4,)], {}) is None
        prog = lp.trace(lambda x, y: op(x, y), x=np.ones(3), y=np.ones(4))
        assert prog.graph.nodes["out"]["shape"] == (3, 4)
    finally:
        registry.register(add)


# ------------------------------------------------------------ shapes while tracing / compiling
def test_traced_shapes_equal_evaluated_shapes(rng):
    W = rng.standard_normal((5, 3))

    def f(x, b):
        h = lp.tanh(W @ x + b)
        s = lp.softmax(h.reshape(1, 5), axis=1)
        t = s.T[1:4, 0] * x
        return lp.sum(lp.logsumexp(t[None, :] + h[:3], axis=0)) + lp.mean(h[::2])

    x, b = rng.standard_normal(3), rng.standard_normal(5)
    prog = lp.trace(f, x=x, b=b)
    sched = prog.compile()
    sol = prog.solve(x=x, b=b)
    for n, d in prog.graph.nodes(data=True):
        if d["role"] == "defined":
            assert d["shape"] == np.shape(sol.values[n]), n
            assert sched.shapes[sched.index[n]] == d["shape"]
    assert np.isclose(sol.output, f(x, b))


def test_eager_shape_error_while_tracing_names_operands():
    with pytest.raises(lp.ShapeError, match=r"op 'add' cannot combine operands \['x', 'y'\].*\(3,\).*\(4,\)"):
        lp.trace(lambda x, y: x + y, x=np.ones(3), y=np.ones(4))
    with pytest.raises(lp.ShapeError, match=r"'matmul'.*\(2, 3\).*\(2,\)"):
        lp.trace(lambda A, v: A @ v, A=np.ones((2, 3)), v=np.ones(2))
    with pytest.raises(lp.ShapeError, match="getitem"):
        lp.trace(lambda x: x[5], x=np.ones(3))


def test_explicit_program_shape_errors_at_compile_name_node():
    prog = lp.Program()
    x = prog.input("x", shape=(3,))
    y = prog.variable("y", shape=(4,))
    prog.define(y, lp.exp(x))
    prog.output(lp.sum(y), name="obj")
    with pytest.raises(lp.ShapeError, match=r"'y' has shape \(4,\).*\(3,\)"):
        prog.compile()

    prog = lp.Program()
    x = prog.input("x", shape=(3,))
    v = prog.variable("v")
    w = prog.variable("w", shape=(4,))
    prog.define(w, 2.0 * w + 1.0)
    prog.define(v, v * 0.5 + x + w)     # (3,) + (4,) only known once v's shape is
    prog.output(lp.sum(v), name="obj")
    with pytest.raises(lp.ShapeError, match="cannot combine"):
        prog.compile()


def test_constants_are_float64_arrays():
    prog = lp.trace(lambda x: x * 2 + 0.5 - True, x=1.0)
    consts = {n: d["value"] for n, d in prog.graph.nodes(data=True) if d["role"] == "constant"}
    vals = sorted((v.dtype.str, v.shape, float(v)) for v in consts.values())
    assert vals == [("<f8", (), 0.5), ("<f8", (), 2.0), ("|b1", (), 1.0)]
    assert float(prog.evaluate(x=1.0)) == 1.0 * 2 + 0.5 - 1


# ------------------------------------------------------------ local names
def test_local_names_of_intermediates():
    def f(x):
        a = lp.exp(x)
        tmp = a * 2.0
        tmp = tmp + 1.0   # rebinding: the last value keeps the name
        return lp.sin(tmp) + a
    prog = lp.trace(f, x=0.2)
    names = set(prog.graph.nodes)
    assert {"a", "tmp", "out"} <= names
    assert prog.graph.nodes["tmp"]["op"] == "add" and prog.graph.nodes["a"]["op"] == "exp"


def test_local_names_survive_helper_functions_and_profiler():
    def helper(v):
        inner = lp.tanh(v)   # a helper's locals are not f's locals
        return inner * 3.0

    def f(x):
        h = helper(x)
        return h + x

    prof = cProfile.Profile()
    before = sys.getprofile()
    prof.enable()
    try:
        prog = lp.trace(f, x=0.3)
    finally:
        prof.disable()
    assert sys.getprofile() is before
    names = set(prog.graph.nodes)
    assert "h" in names and "inner" not in names
    assert np.isclose(prog.evaluate(x=0.3), 3 * np.tanh(0.3) + 0.3)


def test_local_names_lambda_and_no_ops():
    prog = lp.trace(lambda x: x, x=1.0)
    assert prog.graph.graph["output"] == "out" and prog.graph.nodes["out"]["op"] == "identity"
    prog = lp.trace(lambda x: lp.exp(x), x=1.0)
    assert set(prog.graph.nodes) == {"x", "out"}


# ------------------------------------------------------------ compile: order, liveness, blocks
def _random_program(rng, n_nodes, p_back):
    """An explicit program over scalars: random forward edges, some backward ones (cycles),
    some dead nodes the output does not depend on."""
    prog = lp.Program(name="random")
    x = prog.input("x")
    vs = [prog.variable(f"v{k}") for k in range(n_nodes)]
    for k, v in enumerate(vs):
        e = x * 0.1
        for j in rng.choice(n_nodes, size=2, replace=False):
            if j < k or rng.random() < p_back:
                e = e + 0.3 * lp.tanh(vs[j])
        prog.define(v, e)
    prog.output(vs[-1] + 0.5 * vs[len(vs) // 2], name="obj")
    return prog


@pytest.mark.parametrize("seed", range(8))
def test_compile_order_and_blocks_match_networkx(seed):
    rng = np.random.default_rng(seed)
    prog = _random_program(rng, 30, p_back=0.0 if seed < 3 else 0.05)
    sched = prog.compile()
    G = prog.graph
    out = G.graph["output"]
    # every constraint is scheduled, including those the output does not depend on
    defined = {n for n, d in G.nodes(data=True) if d["role"] == "defined"}
    assert {sched.names[i] for i in sched.defined} == defined
    # blocks = the cyclic strongly connected components of the graph
    want = [set(c) for c in nx.strongly_connected_components(G)
            if len(c) > 1 or any(G.has_edge(n, n) for n in c)]
    assert sorted(map(sorted, prog.blocks)) == sorted(map(sorted, want))
    # the step order is a topological order of the condensation
    pos = {}
    for k, st in enumerate(sched.steps):
        for nid in getattr(st, "nodes", [getattr(st, "node", None)]):
            pos[sched.names[nid]] = k
    for u, v in G.edges():
        if u in pos and v in pos:
            assert pos[u] <= pos[v], (u, v)
    # the solution satisfies every constraint; dead constraints have zero multipliers
    sol = prog.solve(x=0.7)
    assert sol.kkt()["primal"] < 1e-8
    live = nx.ancestors(G, out) | {out}
    for n in defined - live:
        assert np.all(sol.multipliers[n] == 0.0), n


def test_compile_is_independent_of_edge_insertion_order():
    prog = lp.trace(lambda x, y: lp.sin(x * y) + lp.exp(y) * x - y / (x + 2.0), x=0.3, y=1.2)
    G2 = nx.DiGraph()
    G2.graph.update(prog.graph.graph)
    G2.add_nodes_from(prog.graph.nodes(data=True))
    G2.add_edges_from(reversed(list(prog.graph.edges(data=True))))
    again = lp.Program.from_graph(G2)
    a, b = prog.compile(), again.compile()
    assert [a.names[s.node] for s in a.steps] == [b.names[s.node] for s in b.steps]
    s1, s2 = prog.solve(x=0.3, y=1.2), again.solve(x=0.3, y=1.2)
    assert s1.grad["x"] == s2.grad["x"] and s1.grad["y"] == s2.grad["y"]


def test_compile_errors_name_nodes():
    prog = lp.trace(lambda x: lp.exp(x) + 1.0, x=0.3)
    G = prog.graph.copy()
    G.nodes["out"]["op"] = "exp"                 # exp with 2 arguments
    with pytest.raises(lp.GraphError, match="node 'out': op 'exp' takes 1 arguments"):
        lp.Program.from_graph(G).compile()
    G = prog.graph.copy()
    G.nodes["out"]["op"] = "nosuchop"
    with pytest.raises(lp.GraphError, match="node 'out'.*unknown op 'nosuchop'"):
        lp.Program.from_graph(G).compile()
    G = prog.graph.copy()
    u = next(iter(G.predecessors("out")))
    G.edges[u, "out"]["arg"] = 2
    with pytest.raises(lp.GraphError, match="node 'out': argument positions .* have gaps"):
        lp.Program.from_graph(G).compile()
    G = prog.graph.copy()
    G.nodes["x"]["shape"] = (3,)
    G.nodes["out"]["shape"] = ()
    with pytest.raises(lp.ShapeError, match=r"variable '.*' has shape \(\) but its definition"):
        lp.Program.from_graph(G).compile()
    G = prog.graph.copy()
    G.add_edge("out", "x", arg=0)
    with pytest.raises(lp.GraphError, match="input 'x' has incoming edges"):
        lp.Program.from_graph(G).compile()


def test_constraints_the_output_does_not_need_are_still_validated_and_solved():
    prog = lp.Program()
    x = prog.input("x")
    side = prog.variable("side")
    prog.define(side, lp.exp(x))                       # the output does not depend on it
    w = prog.variable("w")
    prog.residual(w, w**3 + w - x)                     # nor on this residual block
    prog.output(x * 2.0, name="obj")
    sol = prog.solve(x=2.0)
    assert float(sol.output) == 4.0
    assert sol.values["side"] == pytest.approx(np.exp(2.0), rel=1e-15)
    assert sol.values["w"] == pytest.approx(1.0, rel=1e-12)
    assert sol.multipliers["side"] == 0.0 and sol.multipliers["w"] == 0.0
    assert any("w" in b for b in prog.blocks)
    prog.graph.nodes["side"]["op"] = "nosuchop"
    prog._schedule = None
    with pytest.raises(lp.GraphError, match="'side'.*nosuchop"):
        prog.compile()


def test_traced_graph_is_a_consistent_networkx_graph():
    def f(x, y):
        a = x * y
        b = a * a + lp.sin(x)
        return lp.sum(b * 2.0) + y
    prog = lp.trace(f, x=np.ones(3), y=0.5)
    G = prog.graph
    H = nx.DiGraph(**G.graph)
    H.add_nodes_from(G.nodes(data=True))
    H.add_edges_from(G.edges(data=True))
    assert nx.utils.graphs_equal(G, H)
    for u, v in G.edges():
        assert G.succ[u][v] is G.pred[v][u]            # one data dict per edge, as networkx keeps it
    assert [G.edges["a", v]["arg"] for v in G.succ["a"]] == [[0, 1]]   # a * a: sorted positions
    assert nx.is_directed_acyclic_graph(G) and set(nx.ancestors(G, "out")) == set(G) - {"out"}
    G.add_edge("x", "out", arg=9)                      # networkx keeps working on it
    assert G.edges["x", "out"]["arg"] == 9


def test_local_names_for_callable_objects_partials_and_methods():
    import functools

    class Model:
        def __call__(self, x):
            hidden = x * x
            return hidden + 1.0

        def method(self, x):
            inner = lp.exp(x)
            return inner

    def scaled_sum(x, k):
        scaled = x * k
        return lp.sum(scaled)

    assert "hidden" in lp.trace(Model(), x=1.0).graph
    assert "inner" in lp.trace(Model().method, x=1.0).graph
    prog = lp.trace(functools.partial(scaled_sum, k=3.0), x=np.ones(2))
    assert "scaled" in prog.graph
    np.testing.assert_array_equal(prog.solve(x=np.ones(2)).grad["x"], [3.0, 3.0])
