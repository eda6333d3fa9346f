"""A traced graph compiles on the shapes the tracer recorded only while it is unedited.

lp.trace leaves a stamp on its graph (graph.tracked.mark); compile then skips the schema pass
and shape inference (compile.infer.known_shapes). Any edit since, by networkx or by hand,
must bring both back: these tests edit a traced graph every way and expect the same errors a
hand-built graph gets.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.compile.cache import _as_traced
from lagrangeprop.compile.infer import infer_shapes, known_shapes
from lagrangeprop.compile.schedule import _arguments, _prim


def _f(x, w):
    a = lp.sin(x) * np.ones(3)
    b = a @ w + np.arange(2.0)
    return lp.sum(lp.tanh(b) * b[0]) + lp.mean(w[1:] ** 2)


def _traced():
    return lp.trace(_f, x=0.3, w=np.linspace(0.1, 0.6, 6).reshape(3, 2))


def _inferred(prog) -> dict:
    """Shapes as compile infers them for a graph it does not trust."""
    G = prog.graph
    order = [n for n, d in G.nodes(data=True) if d["role"] == "defined"]
    args_of = {n: _arguments(G._pred[n], n) for n in order}
    return infer_shapes(G, order, args_of, {n: _prim(G, n) for n in order})


def test_recorded_shapes_are_the_inferred_ones():
    prog = _traced()
    assert _as_traced(prog)
    assert known_shapes(prog.graph) == _inferred(prog)


def test_trusted_compile_gives_the_reference_gradient():
    prog = _traced()
    w = np.linspace(0.1, 0.6, 6).reshape(3, 2)
    sol = prog.solve(x=0.3, w=w)
    plain = lp.Program.from_graph(prog.graph)      # a loaded copy: validated and inferred
    assert not _as_traced(plain)
    ref = plain.solve(x=0.3, w=w)
    assert sol.grad["x"] == ref.grad["x"]
    np.testing.assert_array_equal(sol.grad["w"], ref.grad["w"])
    h = 1e-6   # and against central differences
    fd = (prog.evaluate(x=0.3 + h, w=w) - prog.evaluate(x=0.3 - h, w=w)) / (2 * h)
    np.testing.assert_allclose(sol.grad["x"], fd, rtol=1e-7)


def test_an_attribute_edit_brings_back_shape_inference():
    prog = _traced()
    prog.graph.nodes["a"]["shape"] = (4,)
    assert not _as_traced(prog)
    with pytest.raises(lp.ShapeError, match="'a' has shape \\(4,\\)"):
        prog.solve(x=0.3, w=np.ones((3, 2)))


def test_a_constant_reshaped_in_place_is_seen():
    prog = _traced()
    c = next(n for n, d in prog.graph.nodes(data=True) if d["role"] == "constant" and d["shape"] == (3,))
    prog.graph.nodes[c]["value"].shape = (3, 1)    # no edit counter sees this one
    assert known_shapes(prog.graph) is None
    with pytest.raises(lp.ShapeError, match="'a'"):
        prog.solve(x=0.3, w=np.ones((3, 2)))


def test_a_schema_edit_brings_back_validation():
    prog = _traced()
    prog.graph.nodes["a"]["role"] = 3
    with pytest.raises(lp.GraphError, match="node 'a' has role 3"):
        prog.solve(x=0.3, w=np.ones((3, 2)))
    prog = _traced()
    prog.graph.nodes["a"]["op"] = "no_such_op"
    with pytest.raises(lp.GraphError, match="node 'a': unknown op"):
        prog.solve(x=0.3, w=np.ones((3, 2)))


def test_a_structural_edit_brings_back_validation():
    prog = _traced()
    prog.graph.add_edge("x", "a", arg=-1)     # networkx empties its cache: the stamp is gone
    assert not _as_traced(prog)
    with pytest.raises(lp.GraphError, match="'a'"):
        prog.solve(x=0.3, w=np.ones((3, 2)))


def test_a_plain_graph_is_never_trusted():
    prog = _traced()
    prog.graph = nx.DiGraph(prog.graph)
    assert not _as_traced(prog)
    assert prog.solve(x=0.3, w=np.ones((3, 2))).grad["w"].shape == (3, 2)


def test_registering_an_op_since_the_trace_brings_back_inference():
    prog = _traced()
    lp.primitive("_stamp_test_op", lambda x: x, vjp=lambda g, ans, x: (g,))
    assert not _as_traced(prog)
    assert np.isfinite(prog.solve(x=0.3, w=np.ones((3, 2))).grad["x"])
