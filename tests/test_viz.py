"""lp.draw and Program.to_dot on a DAG (the blog example) and a cyclic program (Sellar)."""

import re

import numpy as np
import pytest

import lagrangeprop as lp
from programs import sellar_program
from lagrangeprop import viz


def blog(x):
    a = lp.exp(x)
    b = a**2
    c = a + b
    return lp.exp(c) + lp.sin(c)


def sellar():
    return sellar_program()


@pytest.fixture(params=["dag", "sellar"])
def case(request):
    if request.param == "dag":
        prog = lp.trace(blog, x=0.5)
        return prog, prog.solve(x=0.5)
    prog = sellar()
    return prog, prog.solve(x=1.0, z=np.array([5.0, 2.0]), guess={"y1": 1.0, "y2": 1.0})


def _dot_ids(dot):
    """Node ids declared in DOT text (lines `"id" [ ... ];`)."""
    return set(re.findall(r'^\s*"((?:[^"\\]|\\.)*)" \[', dot, flags=re.M))


def test_to_dot_lists_every_node_and_edge(case):
    prog, sol = case
    dot = prog.to_dot(sol)
    assert dot.startswith('digraph "') and dot.rstrip().endswith("}")
    assert _dot_ids(dot) == set(prog.graph.nodes)
    for u, v in prog.graph.edges():
        assert f'"{u}" -> "{v}"' in dot
    # values and multipliers of inputs appear in the labels (the multiplier of x is the gradient)
    assert f"λ = {viz._fmt(sol.grad['x'])}" in dot
    assert dot.count("{") == dot.count("}")


def test_to_dot_without_solution_has_no_values():
    prog = lp.trace(blog, x=0.5)
    dot = lp.viz.to_dot(prog)
    assert "λ =" not in dot and "z =" not in dot
    assert "cluster" not in dot            # a DAG has no blocks


def test_blocks_are_clusters_and_match_prog_blocks():
    prog = sellar()
    got = viz.graph_blocks(prog)
    assert [set(b) for b in got] == prog.blocks
    dot = prog.to_dot()
    body = dot.split("subgraph cluster_block0 {", 1)[1].split("}", 1)[0]
    assert _dot_ids(body) == prog.blocks[0]
    assert "subgraph cluster_block1" not in dot


def test_residual_and_self_loop_blocks():
    prog = lp.Program(name="implicit")
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, w**3 + w - x)           # w³ + w = x: a residual block
    q = prog.variable("q")
    prog.define(q, lp.cos(q))                 # q = cos q: a self-loop
    prog.output(w * q, name="o")
    assert sorted(map(sorted, viz.graph_blocks(prog))) == sorted(map(sorted, prog.blocks))
    dot = prog.to_dot()
    assert dot.count("subgraph cluster_block") == 2
    assert '"q" -> "q"' in dot
    assert "shape=diamond" in dot              # the residual node


def test_labels_escaped():
    prog = lp.Program(name='quote"name\\')
    x = prog.input('x"1')
    y = prog.variable("y\\2")
    prog.define(y, lp.exp(x))
    prog.output(y * 2.0, name='out "o"')
    dot = prog.to_dot(prog.solve(**{'x"1': 0.0}))
    assert 'digraph "quote\\"name\\\\"' in dot
    assert '"x\\"1" -> "y\\\\2"' in dot
    # every double quote inside a string is escaped: strip escapes, then quotes pair up per line
    for line in dot.splitlines():
        assert line.replace("\\\\", "").replace('\\"', "").count('"') % 2 == 0, line
    assert {'x"1', "y\\2", 'out "o"'} <= {s.replace('\\"', '"').replace("\\\\", "\\")
                                         for s in _dot_ids(dot)}


def test_layout_is_left_to_right(case):
    prog, _ = case
    pos, routes = viz.layered_layout(prog.graph)
    assert set(pos) == set(prog.graph)
    blocks = {n for b in viz.graph_blocks(prog) for n in b}
    for u, v in prog.graph.edges():
        if u not in blocks or v not in blocks:   # only feedback edges may point left
            assert pos[u][0] < pos[v][0], (u, v)
    for (u, v), way in routes.items():
        assert [p[0] for p in way] == list(np.arange(pos[u][0] + 1, pos[v][0]))
    assert len(set(pos.values())) == len(pos)    # no two nodes on one spot


def test_draw_writes_png(case, tmp_path):
    pytest.importorskip("matplotlib")
    prog, sol = case
    out = lp.draw(prog, sol, path=tmp_path / "g.png")
    assert out == str(tmp_path / "g.png")
    data = (tmp_path / "g.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    out = lp.draw(prog, path=str(tmp_path / "plain.svg"), constants=False)
    assert (tmp_path / "plain.svg").read_text().lstrip().startswith("<?xml")


def test_draw_returns_figure_and_uses_given_axes(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    prog = sellar()
    fig = lp.draw(prog, path=None)
    assert fig.axes and fig.get_figwidth() > 4
    plt.close(fig)
    fig, ax = plt.subplots()
    assert lp.draw(prog, ax=ax, path=None) is fig
    assert len(ax.texts) >= prog.graph.number_of_nodes()
    plt.close(fig)


def test_draw_without_matplotlib(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib here")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install lagrangeprop\[plot\]"):
        lp.draw(lp.trace(blog, x=0.5), path="never.png")


@pytest.mark.parametrize("page", ["tutorial.md", "api.md"])
def test_docs_snippets_run_as_shown(page, tmp_path, monkeypatch):
    """The docs' code blocks are doctests: their printed outputs are real."""
    import doctest
    import pathlib
    pytest.importorskip("matplotlib")
    pytest.importorskip("autograd")
    monkeypatch.chdir(tmp_path)
    path = pathlib.Path(__file__).parent.parent / "docs" / page
    result = doctest.testfile(str(path), module_relative=False, verbose=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in docs/{page} failed"
