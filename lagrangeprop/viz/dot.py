"""Graphviz DOT text of a program's constraint graph (graphviz itself not needed).

Inputs are green boxes, constants grey plaintext, defined nodes blue ellipses (residual
constraints diamonds), the output orange; each cyclic block is a ``cluster_block<k>``
subgraph, numbered as ``prog.blocks``. Render the text with ``dot -Tpng``.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) * x, x=1.0)
>>> dot = to_dot(prog, prog.solve(x=1.0))
>>> dot.splitlines()[0]
'digraph "program" {'
>>> "λ = 5.437" in dot
True
"""

from __future__ import annotations

from typing import Any

from .labels import BLOCK_EDGE, BLOCK_FILL, FILL, check_arguments, label_lines, node_kind
from .layout import graph_blocks

__all__ = ["to_dot"]

# ops whose argument order matters: DOT edges into them carry the argument position
_ORDERED = frozenset({"subtract", "divide", "power", "matmul", "dot", "where", "concatenate", "stack"})


def _dot_escape(s: Any) -> str:
    """``s`` as the inside of a DOT string: backslashes, quotes and newlines escaped."""
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(prog: Any, sol: Any = None) -> str:
    """Graphviz DOT text for the constraint graph of ``prog`` (graphviz not needed).

    Parameters
    ----------
    prog : Program
    sol : Solution, optional
        When given, each input and defined node also shows ``z = value`` and
        ``λ = multiplier``.

    Returns
    -------
    str
        A ``digraph``: inputs are green boxes, constants grey plaintext, defined nodes
        blue ellipses (residual constraints as diamonds), the output orange; each cyclic
        block is a ``cluster_block<k>`` subgraph. Render it with ``dot -Tpng``.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program(name="loop"); x = prog.input("x"); y = prog.variable("y")
    >>> _ = prog.define(y, 0.5 * y + x); _ = prog.output(2 * y, name="o")
    >>> dot = prog.to_dot()
    >>> "subgraph cluster_block0" in dot and '"x" -> "y"' in dot
    True
    """
    check_arguments(prog, sol)
    G = prog.graph
    blocks = graph_blocks(prog)
    in_block = {n: k for k, b in enumerate(blocks) for n in b}

    def node_line(n: str, indent: str) -> str:
        kind = node_kind(G, n)
        d = G.nodes[n]
        label = _dot_escape("\n".join(label_lines(G, n, sol)))
        attrs = {"label": f'"{label}"'}
        if kind == "input":
            attrs.update(shape="box", style="\"rounded,filled\"", fillcolor=f'"{FILL["input"]}"')
        elif kind == "constant":
            attrs.update(shape="plaintext", fontcolor='"#555555"', fontsize="9")
        else:
            shape = "diamond" if d.get("constraint") == "residual" else "ellipse"
            fill = FILL["output"] if kind == "output" else FILL["defined"]
            attrs.update(shape=shape, style="filled", fillcolor=f'"{fill}"')
            if kind == "output":
                attrs["peripheries"] = "2"
        body = ", ".join(f"{k}={v}" for k, v in attrs.items())
        return f'{indent}"{_dot_escape(n)}" [{body}];'

    lines = [f'digraph "{_dot_escape(prog.name)}" {{',
             "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555"];']
    for k, b in enumerate(blocks):
        lines.append(f"  subgraph cluster_block{k} {{")
        lines.append(f'    label="block {k} (cyclic, solved together)"; style="filled,rounded"; '
                     f'color="{BLOCK_EDGE[k % len(BLOCK_EDGE)]}"; '
                     f'fillcolor="{BLOCK_FILL[k % len(BLOCK_FILL)]}";')
        lines.extend(node_line(n, "    ") for n in b)
        lines.append("  }")
    lines.extend(node_line(n, "  ") for n in G if n not in in_block)
    for u, v, data in G.edges(data=True):
        attrs = []
        if u in in_block and in_block.get(v) == in_block[u]:
            attrs.append(f'color="{BLOCK_EDGE[in_block[u] % len(BLOCK_EDGE)]}", penwidth=1.6')
        arg = data.get("arg")
        if isinstance(arg, (list, tuple)) or (arg is not None and G.nodes[v].get("op") in _ORDERED):
            attrs.append(f'label="{_dot_escape(arg)}", fontsize=8')
        tail = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'  "{_dot_escape(u)}" -> "{_dot_escape(v)}"{tail};')
    lines.append("}")
    return "\n".join(lines) + "\n"
