"""Pictures of the constraint graph: Graphviz DOT text and matplotlib drawings.

Nodes show ``name`` and ``op``; given a :class:`~lagrangeprop.solve.solution.Solution`
they also show the value ``z_v`` and the multiplier ``λ_v`` (= ∂z_o/∂z_v for an explicit
node, the gradient for an input). Cyclic blocks (SPEC §1: strongly connected
components solved together) are highlighted: DOT clusters, shaded hulls in matplotlib.
:func:`to_dot` needs nothing beyond the core; :func:`draw` needs matplotlib
(``pip install lagrangeprop[plot]``).

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.viz.drawing import to_dot
>>> prog = lp.trace(lambda x: lp.exp(x) * x, x=1.0)
>>> dot = to_dot(prog, prog.solve(x=1.0))
>>> dot.splitlines()[0]
'digraph "program" {'
>>> "λ = 5.437" in dot
True
"""

from __future__ import annotations

import os
import sys
from typing import Any

import networkx as nx
import numpy as np

from ..errors import InputError

__all__ = ["draw", "to_dot", "graph_blocks", "layered_layout"]

# fill colours by role; blocks get their own palette (colour-blind friendly, light)
_FILL = {"input": "#b8e0b8", "constant": "#e6e6e6", "defined": "#cfe2f3", "output": "#fdd49e"}
_BLOCK_FILL = ["#fbb4ae", "#decbe4", "#fed9a6", "#ffffcc", "#e5d8bd", "#fddaec", "#b3cde3"]
# ops whose argument order matters: DOT edges into them carry the argument position
_ORDERED = frozenset({"subtract", "divide", "power", "matmul", "dot", "where", "concatenate", "stack"})
_BLOCK_EDGE = ["#d7301f", "#6a51a3", "#e6550d", "#b8a800", "#8c6d31", "#c51b8a", "#2171b5"]


# ------------------------------------------------------------------ helpers
def graph_blocks(prog) -> list[list[str]]:
    """The cyclic blocks of ``prog``'s graph as lists of node names.

    A strongly connected component of the graph is a block when it has more than one
    node, a self-loop, or a residual constraint — the definition the solver uses
    (SPEC §1). Unlike ``prog.blocks`` this does not compile the program, so it also works
    on programs that fail validation.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program(name="loop"); x = prog.input("x"); y = prog.variable("y")
    >>> _ = prog.define(y, 0.5 * y + x); _ = prog.output(2 * y, name="o")
    >>> [sorted(b) for b in graph_blocks(prog)]
    [['multiply_1', 'y']]
    """
    G = prog.graph
    sub = G
    rank = {n: i for i, n in enumerate(G)}
    blocks = []
    for comp in nx.strongly_connected_components(sub):
        comp = sorted(comp, key=rank.__getitem__)
        n0 = comp[0]
        if (len(comp) > 1 or G.has_edge(n0, n0)
                or G.nodes[n0].get("constraint") == "residual"):
            blocks.append(comp)
    blocks.sort(key=lambda b: rank[b[0]])
    return blocks


def _kind(G: nx.DiGraph, n: str) -> str:
    d = G.nodes[n]
    if n == G.graph.get("output"):
        return "output"
    return d.get("role", "defined")


def _fmt(v: Any, digits: int = 4) -> str:
    """Short text for a value or multiplier: scalars to ``digits`` significant digits,
    tiny arrays in full, larger ones by shape and 2-norm."""
    if hasattr(v, "toarray"):  # scipy.sparse constant
        return f"sparse{tuple(v.shape)}"
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        return f"{float(a):.{digits}g}"
    if a.size <= 3:
        return "[" + ", ".join(f"{float(t):.{digits - 1}g}" for t in a.ravel()) + "]"
    return f"{a.shape} |.|={float(np.linalg.norm(a)):.3g}"


def _label_lines(G: nx.DiGraph, n: str, sol=None) -> list[str]:
    d = G.nodes[n]
    role = d.get("role")
    if role == "constant":
        return [_fmt(d["value"])] if np.size(d.get("value")) == 1 else [n, _fmt(d["value"])]
    op = "input" if role == "input" else str(d.get("op"))
    if d.get("constraint") == "residual":
        op += " = 0"
    lines = [n, op] if op != n else [n]
    if sol is not None and n in sol.values:
        lines.append(f"z = {_fmt(sol.values[n])}")
        lines.append(f"λ = {_fmt(sol.multipliers[n])}")
    return lines


def _dot_escape(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# --------------------------------------------------------------------- DOT
def _check_arguments(prog, sol) -> None:
    """``prog`` is a Program and ``sol`` None or one of its Solutions (InputError otherwise)."""
    if not isinstance(getattr(prog, "graph", None), nx.DiGraph):
        raise InputError(f"expected an lp.Program, got {type(prog).__name__}")
    if sol is not None and getattr(sol, "program", None) is not prog:
        raise InputError(f"sol must be a Solution of program {prog.name!r} (from prog.solve), "
                         f"got {type(sol).__name__}")


def to_dot(prog, sol=None) -> str:
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
    _check_arguments(prog, sol)
    G = prog.graph
    blocks = graph_blocks(prog)
    in_block = {n: k for k, b in enumerate(blocks) for n in b}

    def node_line(n: str, indent: str) -> str:
        kind = _kind(G, n)
        d = G.nodes[n]
        label = _dot_escape("\n".join(_label_lines(G, n, sol)))
        attrs = {"label": f'"{label}"'}
        if kind == "input":
            attrs.update(shape="box", style="\"rounded,filled\"", fillcolor=f'"{_FILL["input"]}"')
        elif kind == "constant":
            attrs.update(shape="plaintext", fontcolor='"#555555"', fontsize="9")
        else:
            shape = "diamond" if d.get("constraint") == "residual" else "ellipse"
            fill = _FILL["output"] if kind == "output" else _FILL["defined"]
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
                     f'color="{_BLOCK_EDGE[k % len(_BLOCK_EDGE)]}"; '
                     f'fillcolor="{_BLOCK_FILL[k % len(_BLOCK_FILL)]}";')
        lines.extend(node_line(n, "    ") for n in b)
        lines.append("  }")
    lines.extend(node_line(n, "  ") for n in G if n not in in_block)
    for u, v, data in G.edges(data=True):
        attrs = []
        if u in in_block and in_block.get(v) == in_block[u]:
            attrs.append(f'color="{_BLOCK_EDGE[in_block[u] % len(_BLOCK_EDGE)]}", penwidth=1.6')
        arg = data.get("arg")
        if isinstance(arg, (list, tuple)) or (arg is not None and G.nodes[v].get("op") in _ORDERED):
            attrs.append(f'label="{_dot_escape(arg)}", fontsize=8')
        tail = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'  "{_dot_escape(u)}" -> "{_dot_escape(v)}"{tail};')
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ layout
def _acyclic_edges(G: nx.DiGraph) -> list[tuple[str, str]]:
    """Edges of ``G`` minus feedback edges: within each strongly connected component,
    drop the edges that point backwards in a DFS reverse post-order started at the
    member added to the program first (usually the declared variable, the natural cut)."""
    rank: dict[str, int] = {}
    scc: dict[str, int] = {}
    first = {n: i for i, n in enumerate(G)}
    for k, comp in enumerate(nx.strongly_connected_components(G)):
        scc.update(dict.fromkeys(comp, k))
        if len(comp) > 1:
            sub = G.subgraph(comp)
            source = min(comp, key=first.__getitem__)
            order = list(reversed(list(nx.dfs_postorder_nodes(sub, source=source))))
            rank.update({n: i for i, n in enumerate(order)})
    return [(u, v) for u, v in G.edges()
            if u != v and not (scc[u] == scc[v] and rank[v] <= rank[u])]


def layered_layout(G: nx.DiGraph, bands: dict[str, int] | None = None, sweeps: int = 6):
    """Positions for a left-to-right (Sugiyama-style) drawing of ``G``.

    The layer (x) of a node is its longest path from a source once feedback edges are
    removed; constants sit just left of their first consumer. An edge that skips layers
    is routed through one waypoint per layer it crosses, so it does not run under the
    nodes in between. Within a layer, nodes are ordered by ``bands`` (lower first: ``draw``
    puts each cyclic block in its own band at the top, so a block stays together) and
    then by barycenter sweeps that reduce crossings. Rows are centred, or top-aligned
    when ``bands`` is given.

    Returns
    -------
    pos : dict
        node -> (x, y).
    routes : dict
        (u, v) -> list of (x, y) waypoints of the forward edges that skip layers.

    Examples
    --------
    >>> import networkx as nx
    >>> pos, routes = layered_layout(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "b"), ("a", "c")]))
    >>> [pos[n][0] for n in "abc"], [p[0] for p in routes["a", "c"]]
    ([0.0, 1.0, 2.0], [1.0])
    """
    bands = bands or {}
    D = nx.DiGraph()
    D.add_nodes_from(G)
    D.add_edges_from(_acyclic_edges(G))
    layer: dict = {}
    consts = {n for n in G if G.nodes[n].get("role") == "constant" and D.out_degree(n)}
    for n in nx.topological_sort(D):
        if n not in consts:
            layer[n] = max((layer[p] + 1 for p in D.predecessors(n) if p not in consts), default=0)
    for n in consts:
        layer[n] = max(0, min(layer[s] for s in D.successors(n)) - 1)
    last = max(bands.values(), default=-1) + 1
    band = {n: bands.get(n, last) for n in G}
    # waypoints ("dummy nodes") for edges that skip layers
    adj: dict = {n: set() for n in G}
    chains: dict = {}
    for u, v in D.edges():
        if layer[v] - layer[u] <= 1:
            adj[u].add(v); adj[v].add(u)
            continue
        chain = [("\0route", u, v, k) for k in range(layer[u] + 1, layer[v])]
        for w, k in zip(chain, range(layer[u] + 1, layer[v])):
            layer[w] = k
            adj[w] = set()
            band[w] = band[u] if band[u] == band[v] else last
        path = [u, *chain, v]
        for p, q in zip(path, path[1:]):
            adj[p].add(q); adj[q].add(p)
        chains[u, v] = chain
    for u, v in G.edges():  # feedback edges still pull their ends together
        if u != v and (u, v) not in chains and v not in adj[u]:
            adj[u].add(v); adj[v].add(u)

    nlayers = max(layer.values(), default=-1) + 1
    rows: list[list] = [[] for _ in range(nlayers)]
    for n in [*G, *(w for c in chains.values() for w in c)]:  # program order first
        rows[layer[n]].append(n)
    for row in rows:
        row.sort(key=band.__getitem__)
    slot = {n: float(i) for row in rows for i, n in enumerate(row)}
    for _ in range(sweeps):
        for step, ks in ((1, range(1, nlayers)), (-1, range(nlayers - 2, -1, -1))):
            for k in ks:
                def key(n, k=k, step=step):
                    nb = [slot[m] for m in adj[n] if (layer[m] - k) * step < 0]
                    return (band[n], float(np.mean(nb)) if nb else slot[n], slot[n])
                rows[k].sort(key=key)
                for i, n in enumerate(rows[k]):
                    slot[n] = float(i)
    top = bool(bands)
    xy = {n: (float(k), -float(i) if top else (len(row) - 1) / 2.0 - i)
          for k, row in enumerate(rows) for i, n in enumerate(row)}
    pos = {n: xy[n] for n in G}
    routes = {e: [xy[w] for w in chain] for e, chain in chains.items()}
    return pos, routes


# ------------------------------------------------------------------ matplotlib
def _matplotlib():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("lagrangeprop.draw needs matplotlib, which is not installed: "
                          "pip install lagrangeprop[plot]  (or: pip install matplotlib)") from exc
    return matplotlib


def _pyplot():
    """pyplot, switching to the Agg backend first when there is no display."""
    mpl = _matplotlib()
    if ("matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND")
            and sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")):
        mpl.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _hull(pts: np.ndarray, pad: tuple[float, float]) -> np.ndarray:
    """Vertices of the convex hull of ``pts``, each point padded to a box."""
    from scipy.spatial import ConvexHull
    dx, dy = pad
    corners = np.concatenate([pts + [sx * dx, sy * dy] for sx in (-1, 1) for sy in (-1, 1)])
    return corners[ConvexHull(corners).vertices]


def draw(prog, sol=None, path: str | os.PathLike | None = "graph.png", *, ax=None,
         constants: bool = True, title: str | None = None, dpi: int = 150,
         fontsize: float = 8.0):
    """Draw the constraint graph with matplotlib (inputs left, output right).

    Parameters
    ----------
    prog : Program
    sol : Solution, optional
        Show the value ``z`` and multiplier ``λ`` of each input and defined node.
    path : str or path-like or None
        Where to save the picture (any format matplotlib knows, by extension). With
        ``path=None`` nothing is saved and the figure is returned.
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new figure.
    constants : bool
        Show constant nodes (grey, value only). ``False`` hides them.
    title : str, optional
        Defaults to the program name, plus the output value and KKT residuals given ``sol``.
    dpi, fontsize
        Resolution of the saved file and label font size (points).

    Returns
    -------
    str or matplotlib.figure.Figure
        ``path`` as a string when saving, else the figure.

    Raises
    ------
    ImportError
        When matplotlib is missing (``pip install lagrangeprop[plot]``).

    Notes
    -----
    Styles: inputs green squares, constants grey, defined nodes blue, residual
    constraints (``r(...) = 0``) with a dashed border, the output orange with a thick
    border. The members of each cyclic block are tinted in the block's colour, drawn
    together at the top of their layers, joined by edges of that colour and, when no
    other node falls inside, circled by a dashed hull. Feedback edges curve.

    Examples
    --------
    >>> import os, tempfile
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x: lp.sin(lp.exp(x)), x=0.5)
    >>> out = lp.draw(prog, prog.solve(x=0.5), path=os.path.join(tempfile.mkdtemp(), "g.png"))
    >>> os.path.getsize(out) > 1000
    True
    """
    _check_arguments(prog, sol)
    _matplotlib()
    from matplotlib.patches import Polygon
    from matplotlib.path import Path

    G0 = prog.graph
    G = G0 if constants else G0.subgraph(n for n in G0 if G0.nodes[n].get("role") != "constant")
    blocks = [[n for n in b if n in G] for b in graph_blocks(prog)]
    in_block = {n: k for k, b in enumerate(blocks) for n in b}
    pos, routes = layered_layout(G, in_block if blocks else None)
    labels = {n: "\n".join(_label_lines(G0, n, sol)) for n in G}
    if title is None:
        title = prog.name
        if sol is not None:
            kkt = sol.kkt()
            title += (f"   output = {_fmt(sol.output, 8)}   "
                      f"KKT residuals: primal {kkt['primal']:.1e}, adjoint {kkt['adjoint']:.1e}")

    pts = [*pos.values(), *(p for r in routes.values() for p in r)]
    xs = np.array([p[0] for p in pts] or [0.0])
    ys = np.array([p[1] for p in pts] or [0.0])
    # inches per layer / per row from the label size (~0.6 em per character)
    nlines = max((lab.count("\n") + 1 for lab in labels.values()), default=1)
    widest = max((len(s) for lab in labels.values() for s in lab.split("\n")), default=4)
    col_in = max(1.1, 0.62 * widest * fontsize / 72 + 0.45)
    row_in = max(0.55, 1.3 * nlines * fontsize / 72 + 0.35)
    # feedback edges arc above the rows: arc3 with rad 0.25 peaks rad/2 of the chord above it
    span = max((pos[u][0] - pos[v][0] for u, v in G.edges() if u != v and pos[v][0] <= pos[u][0]),
               default=-1.0)
    rise = 0.0 if span < 0 else 0.125 * max(span, 1.0) * col_in / row_in
    xlim = (xs.min() - 0.55, xs.max() + 0.55)
    ylim = (ys.min() - 0.6, ys.max() + 0.6 + rise)
    own = ax is None
    if own:
        handles = _legend_handles(blocks)
        entry_in = [0.45 + 0.55 * len(h.get_label()) * 0.9 * fontsize / 72 for h in handles]
        w_in = min(50.0, max(5.0, col_in * (xlim[1] - xlim[0]),
                             0.62 * len(title or "") * (fontsize + 2) / 72 + 0.2,
                             max(entry_in) + 0.2))
        ncol = max(1, min(len(handles), int(w_in // max(entry_in))))
        h_in = min(50.0, max(1.5, row_in * (ylim[1] - ylim[0])))
        top_in = 0.45 if title else 0.1
        bottom_in = 0.15 + 0.24 * -(-len(handles) // ncol)
        size = (w_in + 0.2, h_in + top_in + bottom_in)
        if path is not None:  # no pyplot: no global state, no display needed
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            fig = Figure(figsize=size, dpi=min(dpi, 12000 / max(size)))
            FigureCanvasAgg(fig)
        else:
            fig = _pyplot().figure(figsize=size)
        ax = fig.add_axes((0.1 / size[0], bottom_in / size[1], w_in / size[0], h_in / size[1]))
    else:
        _matplotlib()
        fig = ax.figure
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_axis_off()

    texts = {}
    for n in G:
        kind = _kind(G0, n)
        k = in_block.get(n)
        face = _FILL[kind] if k is None or kind == "output" else _BLOCK_FILL[k % len(_BLOCK_FILL)]
        edge = "#333333" if k is None else _BLOCK_EDGE[k % len(_BLOCK_EDGE)]
        box = dict(boxstyle="square,pad=0.35" if kind == "input" else "round,pad=0.35",
                   facecolor=face, edgecolor=edge, linewidth=2.2 if kind == "output" else 1.0,
                   linestyle="--" if G0.nodes[n].get("constraint") == "residual" else "-")
        texts[n] = ax.text(*pos[n], labels[n], ha="center", va="center", zorder=3,
                           fontsize=fontsize * (0.85 if kind == "constant" else 1.0),
                           color="#555555" if kind == "constant" else "black", bbox=box)
        if G.has_edge(n, n):
            ax.annotate("↻ self-loop", xy=pos[n], xytext=(0, 9 + 5.5 * labels[n].count("\n")),
                        textcoords="offset points", ha="center", va="bottom",
                        fontsize=fontsize * 0.85, color=edge, zorder=4)

    pad = (0.45, 0.42)
    for k, b in enumerate(blocks):
        if not b:
            continue
        hull = _hull(np.array([pos[n] for n in b]), pad)
        others = np.array([pos[n] for n in G if in_block.get(n) != k] or np.zeros((0, 2)))
        probe = np.concatenate([others + [sx * 0.3, sy * 0.25] for sx in (-1, 0, 1)
                                for sy in (-1, 0, 1)]).reshape(-1, 2)
        if not np.any(Path(hull).contains_points(probe)):
            ax.add_patch(Polygon(hull, closed=True, facecolor=_BLOCK_FILL[k % len(_BLOCK_FILL)],
                                 edgecolor=_BLOCK_EDGE[k % len(_BLOCK_EDGE)], alpha=0.35,
                                 linewidth=1.5, linestyle="--", zorder=0))

    for u, v in G.edges():
        if u == v:
            continue
        same = u in in_block and in_block.get(v) == in_block[u]
        color = _BLOCK_EDGE[in_block[u] % len(_BLOCK_EDGE)] if same else "#666666"
        lw = 1.5 if same else 0.8
        back = pos[v][0] <= pos[u][0]  # a feedback edge: arc it over the rows
        start = pos[u]
        if (u, v) in routes:  # through its waypoints; the boxes (drawn on top) hide the ends
            way = np.array([pos[u], *routes[u, v]])
            ax.plot(way[:, 0], way[:, 1], color=color, lw=lw, zorder=1, solid_capstyle="round")
            start = tuple(way[-1])
        ax.annotate("", xy=pos[v], xytext=start, zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=lw,
                                    patchA=None if start != pos[u] else texts[u].get_bbox_patch(),
                                    patchB=texts[v].get_bbox_patch(), shrinkA=0, shrinkB=0,
                                    mutation_scale=10,
                                    connectionstyle=f"arc3,rad={0.25 if back else 0.0}"))

    if own:
        if title:
            fig.text(0.1 / fig.get_figwidth(), 1 - 0.3 / fig.get_figheight(), title,
                     fontsize=fontsize + 2, va="center")
        fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False,
                   fontsize=fontsize * 0.9)
    else:
        if title:
            ax.set_title(title, fontsize=fontsize + 1, loc="left")
        ax.legend(handles=_legend_handles(blocks), loc="best", fontsize=fontsize * 0.8)

    # a bbox patch gets its size when its text is drawn: draw once (at the final dpi) so
    # that the arrows, clipped to the boxes, end at the box borders
    fig.canvas.draw()
    if path is None:
        return fig
    path = os.fspath(path)
    fig.savefig(path, dpi=fig.dpi)
    return path


def _legend_handles(blocks) -> list:
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=_FILL["input"], edgecolor="#333333", label="input"),
               Patch(facecolor=_FILL["defined"], edgecolor="#333333", label="defined (explicit)"),
               Patch(facecolor=_FILL["defined"], edgecolor="#333333", linestyle="--",
                     label="residual  r(…) = 0"),
               Patch(facecolor=_FILL["constant"], edgecolor="#333333", label="constant"),
               Patch(facecolor=_FILL["output"], edgecolor="#333333", linewidth=2, label="output")]
    for k, b in enumerate(blocks):
        handles.append(Patch(facecolor=_BLOCK_FILL[k % len(_BLOCK_FILL)],
                             edgecolor=_BLOCK_EDGE[k % len(_BLOCK_EDGE)],
                             label=f"cyclic block {k} ({len(b)} node{'s' if len(b) > 1 else ''}, solved together)"))
    return handles
