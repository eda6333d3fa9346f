"""Loading hostile input (issue 11, class 5): JSON documents and networkx graphs.

SPEC §2: loading never executes code, never allocates more than the document's own data
warrants, rejects malformed sparse matrices before any numeric kernel sees them, and
raises only GraphError (naming the node/field and the fix). The regression tests below
are the issue's cases and the rest of their class; the fuzz tests mutate valid documents
and graphs of real programs and run them in a subprocess, so a crash fails the test
instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
from programs import sellar_program

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- valid programs


def dag_program() -> lp.Program:
    return lp.trace(lambda x: lp.sum(lp.exp(x[:2]) * lp.sin(x[1:])) / lp.sqrt(lp.sum(x**2) + 1.0),
                    x=np.ones(3))


def residual_program() -> lp.Program:
    p = lp.Program(name="res")
    x = p.input("x")
    w = p.variable("w")
    p.residual(w, w**3 + w - x)
    p.output(w * 2.0, name="o")
    return p


W_DENSE = np.array([[1.0, 0.0, 2.0, 0.0],
                    [0.0, 0.0, 3.0, 4.0],
                    [5.0, 0.0, 0.0, 0.0]])


def sparse_program() -> lp.Program:
    p = lp.Program(name="sparse")
    x = p.input("x", shape=(4,))
    h = lp.tanh(lp.matmul(sp.csr_matrix(W_DENSE), x) + np.linspace(0, 1, 3))
    p.output(lp.sum(h[np.array([0, 2, 2])] ** 2) + lp.sum(h[1:]), name="obj")
    return p


def indexing_program() -> lp.Program:
    idx = np.array([0, 2, 2, 1])

    def f(x):
        a = x[1:3, ::2]
        b = x[idx]
        c = x[..., None][0, :, 0]
        d = lp.reshape(lp.transpose(x), (-1,))
        e = lp.concatenate([d, c])
        g = lp.stack([c, c], axis=1)
        return (lp.sum(a**2) + lp.sum(b) + lp.sum(e * 0.5) + lp.sum(g, axis=(0, 1))
                + lp.sum(lp.mean(x, axis=0, keepdims=True)))

    return lp.trace(f, x=np.ones((3, 4)))


PROGRAMS = {"dag": dag_program, "sellar": sellar_program, "residual": residual_program,
            "sparse": sparse_program, "indexing": indexing_program}
INPUTS = {"dag": {"x": np.array([0.3, -0.2, 0.5])},
          "sellar": {"x": 1.0, "z": np.array([5.0, 2.0])},
          "residual": {"x": 10.0},
          "sparse": {"x": np.array([0.1, -0.4, 0.3, 0.2])},
          "indexing": {"x": np.arange(12.0).reshape(3, 4) / 10.0}}


def doc(which: str) -> dict:
    return json.loads(PROGRAMS[which]().to_json())


def node_of(data: dict, pred) -> dict:
    return next(n for n in data["nodes"] if pred(n))


def load(data) -> lp.Program:
    return lp.Program.from_json(data if isinstance(data, str) else json.dumps(data))


# ---------------------------------------------------------------- the round trip stays lossless


@pytest.mark.parametrize("which", sorted(PROGRAMS))
def test_round_trip_is_lossless_for_every_fuzz_seed_program(which):
    prog = PROGRAMS[which]()
    text = prog.to_json()
    back = lp.Program.from_json(text)
    assert back.to_json() == text
    a, b = prog.solve(**INPUTS[which]), back.solve(**INPUTS[which])
    assert a.output == b.output
    for k in a.grad:
        np.testing.assert_array_equal(a.grad[k], b.grad[k])


def test_loaded_sparse_product_matches_numpy_dense():
    # independent reference: numpy's dense W @ x and the chain rule by hand
    x = INPUTS["sparse"]["x"]
    sol = load(doc("sparse")).solve(x=x)
    h = np.tanh(W_DENSE @ x + np.linspace(0, 1, 3))
    assert sol.output == pytest.approx(np.sum(h[[0, 2, 2]] ** 2) + np.sum(h[1:]), rel=1e-14)
    dh = np.zeros(3)
    np.add.at(dh, [0, 2, 2], 2 * h[[0, 2, 2]])
    dh[1:] += 1.0
    np.testing.assert_allclose(sol.grad["x"], W_DENSE.T @ (dh * (1 - h**2)), rtol=1e-13)


# ---------------------------------------------------------------- sparse matrices


def _sparse_value(data: dict) -> dict:
    return node_of(data, lambda n: isinstance(n.get("value"), dict) and "__sparse__" in n["value"])["value"]


@pytest.mark.parametrize("index", [4, 5, 10**6, -1])
def test_sparse_column_index_past_the_width_is_rejected_before_any_kernel(index):
    data = doc("sparse")
    _sparse_value(data)["indices"][-1] = index        # the matrix has 4 columns
    with pytest.raises(lp.GraphError, match=rf"const_\d+.*sparse index {index} is out of range.*size 4"):
        load(data)


@pytest.mark.parametrize("field, value, words", [
    ("indptr", [0, 2, 1, 5], "non-decreasing"),
    ("indptr", [0, 2, 4], "needs 4"),
    ("indptr", [1, 2, 4, 5], "start at 0 and end at nnz"),
    ("indptr", [0, 2, 4, 4], "end at nnz = 5"),
    ("indices", [0, 2, 2, 3], "data has 5 entries but indices has 4"),
    ("indices", [0, 2, "3", 3, 0], "flat list of"),
    ("data", [1.0, 2.0, [3.0], 4.0, 5.0], "flat list of"),
    ("shape", [3, 4, 1], "2-D shape"),
    ("dtype", "complex128", "dtype"),
    ("__sparse__", "csc", "format 'csc' is not supported"),
    ("shape", [3, 2**40], "larger than"),
])
def test_malformed_sparse_matrices_are_rejected(field, value, words):
    data = doc("sparse")
    _sparse_value(data)[field] = value
    with pytest.raises(lp.GraphError, match=words):
        load(data)


def test_unsorted_and_duplicate_sparse_indices_are_canonicalised_not_misread():
    data = doc("sparse")
    m = _sparse_value(data)
    # row 0 of W holds 1.0 at column 0 and 2.0 at column 2: write it unsorted, 2.0 split in two
    m["indices"] = [2, 0, 2] + m["indices"][2:]
    m["data"] = [1.5, 1.0, 0.5] + m["data"][2:]
    m["indptr"] = [0, 3] + [p + 1 for p in m["indptr"][2:]]
    prog = load(data)
    W = next(d["value"] for _, d in prog.graph.nodes(data=True) if sp.issparse(d.get("value")))
    assert W.has_canonical_format
    np.testing.assert_array_equal(W.toarray(), W_DENSE)


def _graph_with_matrix(M) -> nx.DiGraph:
    G = nx.DiGraph(output="f")
    G.add_node("x", role="input", shape=(4,))
    G.add_node("W", role="constant", value=M)
    G.add_node("f", role="defined", op="matmul", params={}, shape=(3,))
    G.add_edge("W", "f", arg=0)
    G.add_edge("x", "f", arg=1)
    return G


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_from_graph_checks_sparse_indices_edited_in_place(fmt):
    M = sp.csr_matrix(W_DENSE).asformat(fmt)
    (M.indices if fmt != "coo" else M.col)[0] = 10**6
    with pytest.raises(lp.GraphError, match="'W'.*out of range"):
        lp.Program.from_graph(_graph_with_matrix(M))


def test_compile_rechecks_a_sparse_constant_edited_after_loading():
    prog = lp.Program.from_graph(_graph_with_matrix(sp.csr_matrix(W_DENSE)))
    prog.graph.nodes["W"]["value"].indices[0] = 10**6
    prog._schedule = None
    with pytest.raises(lp.GraphError, match="'W'.*out of range"):
        prog.compile()


def test_sparse_constant_with_a_huge_declared_width_does_not_allocate_it():
    G = _graph_with_matrix(sp.csr_matrix(([1.0], ([0], [0])), shape=(3, 10**8)))
    G.nodes["x"]["shape"] = (10**8,)
    tracemalloc.start()
    try:
        sched = lp.Program.from_graph(G).compile()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sched.shapes[sched.index["f"]] == (3,)
    assert peak < 2e6, peak          # x would be 800 MB


# ---------------------------------------------------------------- memory


def test_dtype_S60000000_is_rejected_without_allocating():
    data = doc("dag")
    const = node_of(data, lambda n: n["role"] == "constant")
    const["value"] = {"__ndarray__": [1, 2], "dtype": "S60000000", "shape": [2]}
    text = json.dumps(data)
    tracemalloc.start()
    try:
        with pytest.raises(lp.GraphError, match=r"dtype 'S60000000'.*only bool.*float64"):
            lp.Program.from_json(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1e6, peak


@pytest.mark.parametrize("dtype", ["[('a', '<f8'), ('b', '<i4')]", "V8", "object", "O", "<U3",
                                   "complex128", "datetime64[s]", ">f8", "float"])
def test_struct_string_object_and_complex_dtypes_are_rejected(dtype):
    data = doc("dag")
    node_of(data, lambda n: n["role"] == "constant")["value"] = {
        "__ndarray__": [1.0], "dtype": dtype, "shape": [1]}
    with pytest.raises(lp.GraphError, match="dtype"):
        load(data)


def _declared_2000_doc(op: str) -> str:
    """A short document: one (2000, 2000) input and one op on it (no data at all)."""
    p = lp.Program(name="big")
    x = p.input("x", shape=(2000, 2000))
    ops = {"concatenate": lambda: lp.concatenate([x, x]), "stack": lambda: lp.stack([x, x], axis=2),
           "getitem": lambda: x[np.array([0, 1999]), 5:9], "transpose": lambda: lp.transpose(x),
           "reshape": lambda: lp.reshape(x, (-1, 4000)), "exp": lambda: lp.exp(x),
           "matmul": lambda: x @ x, "sum": lambda: lp.sum(x, axis=1, keepdims=True),
           "softmax": lambda: lp.softmax(x, axis=0), "add": lambda: x * 2.0 + x[0]}
    p.output(lp.sum(ops[op]()), name="o")
    return p.to_json()


@pytest.mark.parametrize("op", ["concatenate", "stack", "getitem", "transpose", "reshape", "exp",
                                "matmul", "sum", "softmax", "add"])
def test_a_declared_2000x2000_input_is_not_materialized_at_compile(op):
    text = _declared_2000_doc(op)
    assert len(text) < 2000
    tracemalloc.start()
    try:
        prog = lp.Program.from_json(text)
        sched = prog.compile()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2e6, f"{op}: {peak / 1e6:.1f} MB at compile (x alone is 32 MB)"
    assert sched.shapes[sched.index["o"]] == ()


def test_shape_inference_without_rules_agrees_with_numpy():
    # a user op has no shape rule: it is evaluated on O(1)-memory placeholders, and the
    # shapes it gives must be numpy's own on real arrays
    with pytest.warns(UserWarning):
        op = lp.primitive("doc_outer_tile", lambda a, b: np.tile(np.multiply.outer(a[:2], b), (2, 1)))
    prog = lp.Program(name="u")
    a, b = prog.input("a", shape=(5,)), prog.input("b", shape=(3,))
    y = prog.variable("y")
    prog.define(y, op(a, b))
    prog.output(lp.sum(y), name="o")
    sched = lp.Program.from_json(prog.to_json()).compile()
    expected = np.tile(np.multiply.outer(np.ones(5)[:2], np.ones(3)), (2, 1)).shape
    assert sched.shapes[sched.index["y"]] == expected == (4, 3)


@pytest.mark.parametrize("index", [
    np.array([0, 2, 2]), (np.array([[0], [1]]), slice(1, 3)), (Ellipsis, None), (None, 1, Ellipsis),
    (slice(None), np.array([3, 0])), np.array([True, False, True]), (1, np.array([True, False, True, True])),
    (np.array([0, 1]), None, np.array([2, 3])), (slice(None, None, -2), None), [0, 2], (True,),
    (np.array([1]), Ellipsis, np.array([0, 0])),
])
def test_getitem_shapes_without_data_agree_with_numpy(index):
    from lagrangeprop.rules import registry
    from lagrangeprop.rules.shapes import rule_shape
    x = np.arange(24.0).reshape(3, 4, 2)
    assert rule_shape(registry.get("getitem"), [x.shape], {"index": index}) == x[index].shape


def test_integer_indexing_of_a_huge_declared_input_allocates_nothing():
    p = lp.Program(name="idx")
    x = p.input("x", shape=(10, 10**8))
    p.output(lp.sum(x[np.array([0, 3])][:, None, ::7]), name="o")
    text = p.to_json()
    tracemalloc.start()
    try:
        sched = lp.Program.from_json(text).compile()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1e6, peak            # the indexed rows alone would be 1.6 GB
    assert sched.shapes[sched.index["o"]] == ()
    assert [s for s in sched.shapes if len(s) == 3] == [(2, 1, len(range(0, 10**8, 7)))]


def test_an_op_result_larger_than_any_declared_shape_may_be_is_a_shape_error():
    p = lp.Program(name="outer")
    x = p.input("x", shape=(100_000, 1))
    p.output(lp.sum(x @ lp.transpose(x)), name="o")          # 10¹⁰ entries from 10⁵
    data = json.loads(p.to_json())
    with pytest.raises(lp.GraphError, match=r"'shape' \(100000, 100000\) is larger than"):
        load(data)                                           # as declared in the document
    node_of(data, lambda n: n.get("op") == "matmul")["shape"] = None
    with pytest.raises(lp.ShapeError, match=r"matmul.*\(100000, 100000\).*at most 2147483647"):
        load(data).compile()                                 # as inferred at compile


@pytest.mark.parametrize("shape, words", [
    ([2**40], "larger than"), ([-1], "non-negative"), ([2.5], "non-negative ints"),
    ("ab", "tuple of non-negative ints"), ([1] * 40, "larger than"), ([True], "non-negative ints")])
def test_declared_shapes_are_checked(shape, words):
    data = doc("dag")
    node_of(data, lambda n: n["role"] == "input")["shape"] = shape
    with pytest.raises(lp.GraphError, match=rf"'x'.*'shape'.*{words}"):
        load(data)


# ---------------------------------------------------------------- malformed documents


@pytest.mark.parametrize("text, words", [
    ("[1, 2, 3]", "is an object.*got a list"),
    ('"just a string"', "is an object.*got a str"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{" + '"a":' * 5, "not valid JSON"),
    ("1" * 5000, "not valid JSON"),
    ('{"nodes": 3, "edges": []}', "list 'nodes'"),
    ('{"nodes": [{"role": "input"}], "edges": []}', "'id'"),
    ('{"directed": false, "nodes": [], "edges": []}', "directed"),
])
def test_malformed_documents_raise_graph_error(text, words):
    with pytest.raises(lp.GraphError, match=words):
        lp.Program.from_json(text)


@pytest.mark.parametrize("value", [None, 3, ["{}"], {"nodes": []}])
def test_from_json_takes_text(value):
    with pytest.raises(lp.GraphError, match="JSON text"):
        lp.Program.from_json(value)


@pytest.mark.parametrize("G", [nx.Graph(), nx.MultiDiGraph(), "x", {"nodes": []}, None])
def test_from_graph_takes_a_digraph(G):
    with pytest.raises(lp.GraphError, match="networkx.DiGraph"):
        lp.Program.from_graph(G)


def test_deep_nesting_inside_a_parameter():
    data = doc("dag")
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    node_of(data, lambda n: n.get("op") == "sum")["params"]["axis"] = deep
    with pytest.raises(lp.GraphError, match="nested deeper"):
        load(data)


@pytest.mark.parametrize("data, shape, words", [
    ([1.0, 2.0, 3.0], [2, 2], "flat list of 4 numbers"),
    ([[1.0, 2.0], [3.0, 4.0]], [2, 2], "flat list of 4"),
    ([1.0, "2", 3.0, 4.0], [2, 2], "flat list of 4"),
    ([1.0, None, 3.0, 4.0], [2, 2], "flat list of 4"),
    ("1234", [2, 2], "flat list"),
])
def test_ndarray_data_must_match_its_shape(data, shape, words):
    doc_ = doc("dag")
    node_of(doc_, lambda n: n["role"] == "constant")["value"] = {
        "__ndarray__": data, "dtype": "float64", "shape": shape}
    with pytest.raises(lp.GraphError, match=words):
        load(doc_)


def test_integer_data_out_of_range_for_its_dtype():
    data = doc("dag")
    node_of(data, lambda n: n["role"] == "constant")["value"] = {
        "__ndarray__": [300], "dtype": "int8", "shape": [1]}
    with pytest.raises(lp.GraphError, match="int8"):
        load(data)


def test_a_constant_whose_declared_shape_disagrees_with_its_value():
    data = doc("dag")
    node_of(data, lambda n: n["role"] == "constant")["shape"] = {"__tuple__": [7]}
    with pytest.raises(lp.GraphError, match=r"declares shape \(7,\) but its value has shape \(\)"):
        load(data)


@pytest.mark.parametrize("parts", [[1, 2, 3, 4, 5], [1, 2], [], [1.5, None, None], ["a", None, None],
                                   [True, None, None]])
def test_slices_have_three_int_or_null_fields(parts):
    data = doc("indexing")
    node = node_of(data, lambda n: n["id"] == "a")
    node["params"]["index"]["__tuple__"][0] = {"__slice__": parts}
    with pytest.raises(lp.GraphError, match=r"'a'.*__slice__ is \[start, stop, step\]"):
        load(data)


@pytest.mark.parametrize("tagged, words", [
    ({"__tuple__": [1], "extra": 2}, "exactly the keys"),
    ({"__tuple__": 5}, "holds a list"),
    ({"__ellipsis__": "yes"}, "__ellipsis__"),
    ({"__ndarray__": [1], "dtype": "int64"}, "exactly the keys"),
])
def test_tagged_objects_have_exact_keys(tagged, words):
    data = doc("indexing")
    node_of(data, lambda n: n["id"] == "a")["params"]["index"] = tagged
    with pytest.raises(lp.GraphError, match=words):
        load(data)


@pytest.mark.parametrize("output", [["o"], {"a": 1}, 3, "nosuchnode"])
def test_output_must_name_a_node(output):
    data = doc("residual")
    data["graph"]["output"] = output
    with pytest.raises(lp.GraphError, match="'output' must name a node"):
        load(data)


def test_getitem_without_params_is_rejected_at_compile():
    data = doc("dag")
    node = node_of(data, lambda n: n.get("op") == "getitem")
    del node["params"]
    prog = load(data)                                # validation happens at compile (SPEC)
    with pytest.raises(lp.GraphError, match=rf"{node['id']!r}: op 'getitem' needs the parameter 'index'"):
        prog.solve(x=np.ones(3))
    node["params"] = {"index": "abc"}
    with pytest.raises(lp.GraphError, match="parameter 'index' of op 'getitem' must be an int, slice"):
        load(data).compile()


@pytest.mark.parametrize("params, words", [
    ({"axis": None, "keepdims": False, "foo": 1}, "takes no parameter 'foo'"),
    ({"axis": "rows"}, "parameter 'axis' of op 'sum' must be"),
    ({"axis": None, "keepdims": "yes"}, "'keepdims' of op 'sum' must be a bool"),
    ({"axis": {"__ndarray__": [0.5], "dtype": "float64", "shape": [1]}}, "'axis' of op 'sum' must be"),
    ({"axis": {"__ndarray__": ["a"], "dtype": "int64", "shape": [1]}}, "flat list of 1 numbers"),
    ({"axis": 5}, "cannot combine"),
])
def test_params_are_checked_against_the_op(params, words):
    data = doc("dag")
    node_of(data, lambda n: n.get("op") == "sum")["params"] = params
    with pytest.raises(lp.LagrangePropError, match=words):
        load(data).compile()


@pytest.mark.parametrize("arg", ["zero", "0", [1, 0], [0, 0], -1, True, 1.0, [], None, {"a": 0}])
def test_arg_positions_must_be_ints(arg):
    data = doc("residual")
    data["edges"][0]["arg"] = arg
    with pytest.raises(lp.GraphError, match="'arg'|argument position"):
        load(data)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["nodes"].append(dict(d["nodes"][0])), "duplicate node"),
    (lambda d: d["edges"].append(dict(d["edges"][0])), "duplicate edge"),
    (lambda d: d["edges"].append({"source": "x", "target": "ghost", "arg": 0}), "joins two of its nodes"),
    (lambda d: d["nodes"][0].update(role="banana"), "role 'banana'"),
    (lambda d: d["nodes"][0].update(id=7), "'id'"),
    (lambda d: node_of(d, lambda n: n.get("op")).update(op=["exp"]), "'op' must be the name"),
    (lambda d: node_of(d, lambda n: n.get("op")).update(constraint="implicit"), "constraint 'implicit'"),
    (lambda d: node_of(d, lambda n: n.get("op")).update(params=[1, 2]), "'params' must be a dict"),
    (lambda d: d["edges"].append({"source": "o", "target": "x", "arg": 0}), "input 'x' has incoming"),
    (lambda d: node_of(d, lambda n: n["role"] == "input").update(op="exp"), "input but has op"),
    (lambda d: d["graph"].update(name=["a"]), "'name' must be a str"),
    (lambda d: node_of(d, lambda n: n["role"] == "input").update(value=1.0), "input but has a 'value'"),
])
def test_malformed_graph_schema_in_documents(mutate, words):
    data = doc("residual")
    mutate(data)
    with pytest.raises(lp.GraphError, match=words):
        load(data)


def test_code_in_an_op_name_is_only_a_name():
    data = doc("dag")
    node_of(data, lambda n: n.get("op") == "exp")["op"] = "__import__('os').system('echo hacked')"
    prog = load(data)
    with pytest.raises(lp.GraphError, match="unknown op"):
        prog.solve(x=np.ones(3))


# ---------------------------------------------------------------- malformed networkx graphs


def _graph() -> nx.DiGraph:
    return sellar_program().graph.copy()


@pytest.mark.parametrize("value, words", [
    ("abc", "is a str"), (np.array(["abc"]), "dtype <U3"), (object(), "is a object"), (np.array([1 + 2j]), "complex"),
    (np.array([None]), "dtype object"), ([1.0, [2.0]], "rectangular"), ([1.0, "a"], "contains 'a'"),
    (np.ma.masked_array([1.0]), "masked"), (np.zeros(2, dtype=[("a", "f8")]), "dtype"),
])
def test_from_graph_constant_values_are_bool_or_real_numbers(value, words):
    G = _graph()
    const = next(n for n, d in G.nodes(data=True) if d["role"] == "constant")
    G.nodes[const]["value"] = value
    del G.nodes[const]["shape"]
    with pytest.raises(lp.GraphError, match=rf"{const!r}.*{words}"):
        lp.Program.from_graph(G)


@pytest.mark.parametrize("edit, words", [
    (lambda G: nx.relabel_nodes(G, {"x": 3}, copy=False), "node keys must be non-empty strings"),
    (lambda G: G.graph.update(output=["obj"]), "'output' must name a node"),
    (lambda G: G.nodes["y1"].update(params={"k": object()}), "static data"),
    (lambda G: G.nodes["y1"].update(params={"k": slice("a", None)}), "slice fields"),
    (lambda G: G.nodes["y1"].update(params={"k": 1j}), "is a complex"),
    (lambda G: G.nodes["y1"].update(params={"k": np.array([1j])}), "dtype complex128"),
    (lambda G: G.nodes["y1"].update(params={"k": {"a": lambda: 0}}), "is a function"),
    (lambda G: G.nodes["y1"].update(params={3: 1}), "parameter names must be strings"),
    (lambda G: G.nodes["y1"].update(shape=np.float64(2.0)), "tuple of non-negative ints"),
    (lambda G: G.edges[next(iter(G.in_edges("y1")))].update(arg=np.array([0])), "'arg'"),
    (lambda G: G.edges[next(iter(G.in_edges("y1")))].clear(), "no 'arg'"),
])
def test_from_graph_schema_errors(edit, words):
    G = _graph()
    edit(G)
    with pytest.raises(lp.GraphError, match=words):
        lp.Program.from_graph(G)


def test_compile_validates_a_graph_edited_by_hand():
    prog = sellar_program()
    prog.compile()
    node = next(n for n, d in prog.graph.nodes(data=True) if d.get("op") == "getitem")
    prog.graph.nodes[node]["params"] = {"index": slice(0, 1, 2, )}
    prog.graph.nodes[node]["params"]["index"] = "zero"
    prog._schedule = None
    with pytest.raises(lp.GraphError, match=rf"{node!r}.*'index' of op 'getitem'"):
        prog.compile()


def test_from_graph_normalizes_and_does_not_touch_the_callers_graph():
    G = _graph()
    G.nodes["z"]["shape"] = [2]
    before = {n: dict(d) for n, d in G.nodes(data=True)}
    prog = lp.Program.from_graph(G)
    assert prog.graph.nodes["z"]["shape"] == (2,)
    assert {n: dict(d) for n, d in G.nodes(data=True)}.keys() == before.keys()
    assert G.nodes["z"]["shape"] == [2]
    sol = prog.solve(**INPUTS["sellar"])
    ref = sellar_program().solve(**INPUTS["sellar"])
    np.testing.assert_array_equal(sol.grad["z"], ref.grad["z"])


# ---------------------------------------------------------------- fuzzing (in a subprocess)

FUZZ = textwrap.dedent('''
    import sys, warnings
    sys.setrecursionlimit(3000)
    warnings.simplefilter("ignore")
    import test_loading
    test_loading.{name}({examples})
    print("fuzz ok")
''')


def _run_fuzz(name: str, examples: int) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               PYTHONHASHSEED="0", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", FUZZ.format(name=name, examples=examples)],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)
    tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-6000:])
    assert proc.returncode == 0, f"fuzz subprocess exited with {proc.returncode} (negative: a signal)\n{tail}"
    assert "fuzz ok" in proc.stdout, tail


def test_fuzz_mutated_documents_load_or_raise_graph_error():
    _run_fuzz("fuzz_documents", 200)


def test_fuzz_mutated_graphs_load_or_raise_graph_error():
    _run_fuzz("fuzz_graphs", 200)


def _exercise(prog: lp.Program, which: str, round_trip: bool) -> None:
    """Compile, solve, evaluate and re-serialize a loaded program: every failure must be
    a LagrangePropError."""
    try:
        sched = prog.compile()
        inputs = {}
        for i in sched.inputs:
            name, shape = sched.names[i], sched.shapes[i]
            ref = INPUTS[which].get(name)
            if ref is not None and np.shape(ref) == tuple(shape):
                inputs[name] = ref
            elif int(np.prod(shape)) <= 10_000:
                inputs[name] = np.full(shape, 0.25)
            else:
                return
        prog.solve(maxiter=60, **inputs)
        prog.evaluate(maxiter=60, **inputs)
    except lp.LagrangePropError:
        pass
    try:
        text = prog.to_json()
    except lp.GraphError:
        if round_trip:
            raise
        return
    lp.Program.from_json(text)       # what loaded once loads again


def _json_values():
    from hypothesis import strategies as st
    leaves = (st.none() | st.booleans() | st.integers(-10, 10) | st.sampled_from([2**31, 10**6, -2**63, 2**70])
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4)
              | st.sampled_from(["float64", "int64", "bool", "S60000000", "complex128", "V8", "explicit",
                                 "residual", "input", "constant", "defined", "getitem", "exp", "matmul",
                                 "where", "concatenate", "nosuchop"]))
    tagged = st.one_of(
        st.builds(lambda d, t, s: {"__ndarray__": d, "dtype": t, "shape": s},
                  st.lists(st.integers(-3, 3) | st.floats(-2, 2), max_size=6),
                  st.sampled_from(["float64", "int64", "bool", "int8", "uint8", "float32", "S8", "O"]),
                  st.lists(st.integers(-1, 4), max_size=3)),
        st.builds(lambda d, i, p, s: {"__sparse__": "csr", "data": d, "indices": i, "indptr": p,
                                      "shape": s, "dtype": "float64"},
                  st.lists(st.floats(-2, 2), max_size=5), st.lists(st.integers(-2, 6), max_size=5),
                  st.lists(st.integers(-1, 6), max_size=5), st.lists(st.integers(0, 5), max_size=3)),
        st.builds(lambda p: {"__slice__": p}, st.lists(st.none() | st.integers(-4, 4), max_size=5)),
        st.builds(lambda p: {"__tuple__": p}, st.lists(st.none() | st.integers(-4, 4), max_size=4)),
        st.just({"__ellipsis__": True}))
    return st.recursive(leaves | tagged, lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(st.text(max_size=3), c, max_size=3), max_leaves=6)


def _paths(x, prefix=()):
    """Every (container, key) location in a parsed JSON document."""
    out = []
    if isinstance(x, dict):
        for k, v in x.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(x, list):
        for k, v in enumerate(x):
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    return out


def _vocabulary(data):
    """Plausible replacements: the document's own names, the registry's ops, the schema's words."""
    from lagrangeprop.rules import registry
    names = [n.get("id") for n in data.get("nodes", []) if isinstance(n, dict)]
    return [x for x in names if isinstance(x, str)] + sorted(registry.REGISTRY)[:40] + [
        "input", "constant", "defined", "explicit", "residual", "nosuchop"]


def _tweak_number(x, draw):
    from hypothesis import strategies as st
    if isinstance(x, bool):
        return not x
    if isinstance(x, int):
        return x + draw(st.sampled_from([1, -1, 1, 2, -1, -3, 10**6, -10**6, 2**40]))
    return draw(st.sampled_from([0.0, -x, x * 1e300, float("nan"), float("inf"), 1e-300]))


def _mutate_document(data, draw, values):
    """One mutation of a parsed document: mostly plausible edits (numbers nudged, names and
    ops swapped, edges moved) that get past the schema, sometimes arbitrary JSON anywhere."""
    from hypothesis import strategies as st
    kind = draw(st.sampled_from(["tweak", "tweak", "tweak", "swap", "swap", "edge", "replace", "delete"]))
    if kind == "edge":
        names = [n["id"] for n in data["nodes"]]
        if draw(st.booleans()) and data["edges"]:
            data["edges"].pop(draw(st.integers(0, len(data["edges"]) - 1)))
        else:
            data["edges"].append({"source": draw(st.sampled_from(names)), "target": draw(st.sampled_from(names)),
                                  "arg": draw(st.integers(0, 3) | st.lists(st.integers(0, 3), max_size=3))})
        return
    paths = [p for p in _paths(data) if p[0] in ("nodes", "edges", "graph") and len(p) > 1]
    if kind == "tweak":
        numeric = [p for p in paths if isinstance(_at(data, p), (int, float))]
        path = draw(st.sampled_from(numeric))
        _set(data, path, _tweak_number(_at(data, path), draw))
        return
    if kind == "swap":
        words = [p for p in paths if isinstance(_at(data, p), str) and p[-1] != "dtype"]
        path = draw(st.sampled_from(words))
        vocab = _vocabulary(data)
        names = [w for w in vocab if any(isinstance(n, dict) and n.get("id") == w for n in data["nodes"])]
        by_key = {"source": names, "target": names, "id": names, "output": names,
                  "role": ["input", "constant", "defined"], "constraint": ["explicit", "residual"]}
        choices = by_key.get(path[-1], vocab) if draw(st.integers(0, 4)) else vocab
        _set(data, path, draw(st.sampled_from(choices)))
        return
    path = draw(st.sampled_from(paths))
    if kind == "delete":
        parent = _at(data, path[:-1])
        del parent[path[-1]]
    else:
        _set(data, path, draw(values))


def _at(data, path):
    for k in path:
        data = data[k]
    return data


def _set(data, path, value):
    _at(data, path[:-1])[path[-1]] = value


def fuzz_documents(examples: int, seed: int | None = None) -> None:
    """Hypothesis: a valid document with 1-3 mutations loads (then compiles, solves and
    round-trips, or raises a LagrangePropError) or raises GraphError; nothing else."""
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    texts = {k: PROGRAMS[k]().to_json() for k in PROGRAMS}
    values = _json_values()

    @settings(max_examples=examples, derandomize=seed is None, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    @hypothesis.seed(seed or 0)
    def run(data_):
        which = data_.draw(st.sampled_from(sorted(PROGRAMS)))
        data = json.loads(texts[which])
        for _ in range(data_.draw(st.integers(1, 3))):
            try:
                _mutate_document(data, data_.draw, values)
            except (TypeError, KeyError, AttributeError, IndexError):
                pass   # an earlier mutation broke the structure this one walks
        text = json.dumps(data)
        if data_.draw(st.integers(0, 19)) == 13:
            text = text[: data_.draw(st.integers(0, len(text)))]   # truncated
        try:
            prog = lp.Program.from_json(text)
        except lp.GraphError:
            return
        _exercise(prog, which, round_trip=True)

    run()


def _python_values():
    from hypothesis import strategies as st
    W = sp.csr_matrix(W_DENSE)

    def bad_csr(i, p):
        M = W.copy()
        M.indices[i % M.nnz] = p
        return M

    def bad_indptr(i, p):
        M = W.copy()
        M.indptr[i % M.indptr.size] = p
        return M

    return st.one_of(
        st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=3),
        st.just(Ellipsis), st.just(object()), st.just(1j), st.just(np.float64(2.0)),
        st.builds(slice, st.none() | st.integers(-3, 3) | st.text(max_size=1), st.none() | st.integers(-3, 3)),
        st.tuples(st.integers(-3, 3), st.integers(0, 3)), st.lists(st.integers(-1, 3), max_size=3),
        st.sampled_from([np.zeros(3), np.ones((2, 2)), np.arange(4), np.array([True, False]),
                         np.array([1 + 1j]), np.array(["a"]), np.array([None]), np.zeros(2, dtype=[("a", "f8")]),
                         np.array([0, 2, 1]), np.zeros((1, 4)), np.ma.masked_array([1.0])]),
        st.builds(bad_csr, st.integers(0, 10), st.sampled_from([-1, 4, 5, 10**6])),
        st.builds(bad_indptr, st.integers(0, 10), st.sampled_from([-1, 9, 2, 10**6])),
        st.sampled_from([W, W.tocoo(), W.tocsc(), sp.csr_matrix(np.ones((4, 3))), sp.identity(4, format="dia"),
                         sp.lil_matrix(W_DENSE), sp.dok_matrix(W_DENSE)]),
        st.dictionaries(st.sampled_from(["axis", "index", "keepdims", "shape", "axes", "foo", 3]),
                        st.none() | st.integers(-2, 2) | st.booleans() | st.just(slice(0, 2)), max_size=2),
        st.sampled_from(["input", "constant", "defined", "explicit", "residual", "exp", "getitem", "sum",
                         "matmul", "where", "stack", "reshape", "nosuch"]))


def _mutate_graph(G, draw, values):
    from hypothesis import strategies as st
    names = list(G.nodes)
    kind = draw(st.sampled_from(["set", "set", "delete", "add_edge", "remove_edge", "relabel", "output"]))
    if kind == "set":
        n = draw(st.sampled_from(names))
        key = draw(st.sampled_from(["role", "op", "constraint", "params", "shape", "value"]))
        plausible = {"role": st.sampled_from(["input", "constant", "defined"]),
                     "op": st.sampled_from(["exp", "add", "getitem", "sum", "matmul", "where", "stack",
                                            "reshape", "concatenate", "sqrt", "power", "nosuch"]),
                     "constraint": st.sampled_from(["explicit", "residual"]),
                     "shape": st.lists(st.integers(0, 4), max_size=3).map(tuple)}
        G.nodes[n][key] = draw(plausible[key] if key in plausible and draw(st.integers(0, 3)) else values)
    elif kind == "delete":
        n = draw(st.sampled_from(names))
        if G.nodes[n]:
            del G.nodes[n][draw(st.sampled_from(sorted(G.nodes[n])))]
    elif kind == "add_edge":
        G.add_edge(draw(st.sampled_from(names)), draw(st.sampled_from(names)),
                   arg=draw(st.integers(0, 3) | st.lists(st.integers(0, 3), max_size=3) | values))
    elif kind == "remove_edge" and G.number_of_edges():
        G.remove_edge(*draw(st.sampled_from(sorted(G.edges))))
    elif kind == "relabel":
        nx.relabel_nodes(G, {draw(st.sampled_from(names)): draw(st.integers(0, 3) | st.text(max_size=2))},
                         copy=False)
    elif kind == "output":
        G.graph["output"] = draw(st.sampled_from(names) | values)


def fuzz_graphs(examples: int, seed: int | None = None) -> None:
    """Hypothesis: a valid program's networkx graph with attributes mutated, deleted or
    retyped and edges added or removed loads (then compiles and solves, or raises a
    LagrangePropError) or raises GraphError; nothing else."""
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    graphs = {k: PROGRAMS[k]().graph for k in PROGRAMS}
    values = _python_values()

    @settings(max_examples=examples, derandomize=seed is None, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    @hypothesis.seed(seed or 0)
    def run(data_):
        which = data_.draw(st.sampled_from(sorted(PROGRAMS)))
        G = nx.DiGraph()
        G.graph.update(graphs[which].graph)
        G.add_nodes_from((n, dict(d)) for n, d in graphs[which].nodes(data=True))
        G.add_edges_from((u, v, dict(d)) for u, v, d in graphs[which].edges(data=True))
        for _ in range(data_.draw(st.integers(1, 3))):
            try:
                _mutate_graph(G, data_.draw, values)
            except (TypeError, KeyError, nx.NetworkXError):
                pass   # e.g. an unhashable node label
        try:
            prog = lp.Program.from_graph(G)
        except lp.GraphError:
            return
        _exercise(prog, which, round_trip=False)

    run()


def test_a_large_sparse_constant_is_bounded_by_its_nonzeros_not_its_dense_size():
    """A 10⁵×10⁵ sparse operator (a PDE block's Laplacian) has 10¹⁰ dense entries but 3·10⁵
    nonzeros: it loads, compiles and solves (only each dimension is bounded), through JSON too."""
    import scipy.sparse as sps
    n = 100_000
    L = sps.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    prog = lp.Program(name="big_sparse")
    x = prog.input("x", shape=(n,))
    u = prog.variable("u", shape=(n,))
    prog.residual(u, L @ u - x)
    prog.output(lp.sum(u), name="o")
    xv = np.ones(n)
    for p in (prog, lp.Program.from_json(prog.to_json())):
        sol = p.solve(x=xv)
        ref = sps.linalg.spsolve(L.tocsc(), xv)
        np.testing.assert_allclose(sol.values["u"], ref, rtol=1e-10)
        # ∂Σu/∂x = L⁻ᵀ 1 (L symmetric)
        np.testing.assert_allclose(sol.grad["x"], ref, rtol=1e-10)
