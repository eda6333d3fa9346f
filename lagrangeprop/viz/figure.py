"""The matplotlib drawing of a program (matplotlib is imported only when drawing).

:func:`draw` lays the graph out left to right (:mod:`lagrangeprop.viz.layout`), draws each
node as a labelled box in its role's colour (:mod:`lagrangeprop.viz.labels`), tints and
circles each cyclic block, curves feedback edges, and saves the picture or returns the
figure. ``pip install lagrangeprop[plot]`` provides matplotlib.

Examples
--------
>>> import os, tempfile
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sin(lp.exp(x)), x=0.5)
>>> out = draw(prog, path=os.path.join(tempfile.mkdtemp(), "g.svg"))
>>> out.endswith("g.svg")
True
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from ..errors import InputError
from .labels import BLOCK_EDGE, BLOCK_FILL, FILL, _fmt, check_arguments, label_lines, node_kind
from .layout import graph_blocks, layered_layout

__all__ = ["draw"]


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("lagrangeprop.draw needs matplotlib, which is not installed: "
                          "pip install lagrangeprop[plot]  (or: pip install matplotlib)") from exc
    return matplotlib


def _pyplot() -> Any:
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


#: the most nodes :func:`draw` lays out unless told otherwise (``max_nodes=``): past a few
#: hundred boxes the labels cannot be read and matplotlib takes minutes to render them
MAX_NODES = 300


def _check_options(G, path, ax, constants, title, dpi, fontsize, max_nodes) -> None:
    """InputError for an option ``draw`` cannot honour, and for a program too large to read."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path must be a file name (str or path-like) or None, got "
                         f"{type(path).__name__}; e.g. path='graph.png'")
    if path is not None and os.path.dirname(os.fspath(path)) and \
            not os.path.isdir(os.path.dirname(os.fspath(path))):
        raise InputError(f"path={os.fspath(path)!r}: no such directory "
                         f"{os.path.dirname(os.fspath(path))!r}; create it first")
    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() if path is not None else ""
    if ext:
        from matplotlib.backend_bases import FigureCanvasBase
        known = FigureCanvasBase.get_supported_filetypes()
        if ext not in known:
            raise InputError(f"path={os.fspath(path)!r}: matplotlib cannot write .{ext} files; "
                             f"use one of {sorted(known)} (e.g. graph.png or graph.svg)")
    if ax is not None and not hasattr(ax, "figure"):
        raise InputError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    if not isinstance(constants, (bool, np.bool_)):
        raise InputError(f"constants must be True or False, got {constants!r}")
    if title is not None and not isinstance(title, str):
        raise InputError(f"title must be a str or None, got {type(title).__name__}")
    for name, v in (("dpi", dpi), ("fontsize", fontsize)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v <= 0:
            raise InputError(f"{name} must be a positive number, got {v!r}")
    if max_nodes is not None and (isinstance(max_nodes, bool) or
                                  not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1):
        raise InputError(f"max_nodes must be a positive int or None (no limit), got {max_nodes!r}")
    n = G.number_of_nodes()
    if max_nodes is not None and n > max_nodes:
        raise InputError(f"draw: the program has {n} nodes to draw, more than max_nodes={max_nodes}: "
                         "a drawing that size cannot be read (and takes minutes to render); "
                         + ("hide the constants (constants=False), " if constants else "")
                         + "write prog.to_dot() and render it with Graphviz, or pass "
                         "max_nodes=None to draw it all anyway")


def draw(prog: Any, sol: Any = None, path: str | os.PathLike | None = "graph.png", *, ax=None,
         constants: bool = True, title: str | None = None, dpi: int = 150,
         fontsize: float = 8.0, max_nodes: int | None = MAX_NODES):
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
    max_nodes : int or None
        The most nodes drawn (:data:`MAX_NODES`, 300); a larger program raises InputError
        saying what to do (``constants=False``, ``prog.to_dot()``), ``None`` draws any size.

    Returns
    -------
    str or matplotlib.figure.Figure
        ``path`` as a string when saving, else the figure.

    Raises
    ------
    InputError
        A bad option (``dpi``, ``fontsize``, ``path``, ``title``, ``constants``, ``sol``), a
        directory that does not exist, or more than ``max_nodes`` nodes to draw.
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
    check_arguments(prog, sol)
    _matplotlib()
    from matplotlib.patches import Polygon
    from matplotlib.path import Path

    G0 = prog.graph
    G = G0 if constants else G0.subgraph(n for n in G0 if G0.nodes[n].get("role") != "constant")
    _check_options(G, path, ax, constants, title, dpi, fontsize, max_nodes)
    blocks = [[n for n in b if n in G] for b in graph_blocks(prog)]
    in_block = {n: k for k, b in enumerate(blocks) for n in b}
    pos, routes = layered_layout(G, in_block if blocks else None)
    labels = {n: "\n".join(label_lines(G0, n, sol)) for n in G}
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
        kind = node_kind(G0, n)
        k = in_block.get(n)
        face = FILL[kind] if k is None or kind == "output" else BLOCK_FILL[k % len(BLOCK_FILL)]
        edge = "#333333" if k is None else BLOCK_EDGE[k % len(BLOCK_EDGE)]
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
            ax.add_patch(Polygon(hull, closed=True, facecolor=BLOCK_FILL[k % len(BLOCK_FILL)],
                                 edgecolor=BLOCK_EDGE[k % len(BLOCK_EDGE)], alpha=0.35,
                                 linewidth=1.5, linestyle="--", zorder=0))

    for u, v in G.edges():
        if u == v:
            continue
        same = u in in_block and in_block.get(v) == in_block[u]
        color = BLOCK_EDGE[in_block[u] % len(BLOCK_EDGE)] if same else "#666666"
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


def _legend_handles(blocks: list) -> list:
    """Legend entries: the roles, then one per cyclic block."""
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=FILL["input"], edgecolor="#333333", label="input"),
               Patch(facecolor=FILL["defined"], edgecolor="#333333", label="defined (explicit)"),
               Patch(facecolor=FILL["defined"], edgecolor="#333333", linestyle="--",
                     label="residual  r(…) = 0"),
               Patch(facecolor=FILL["constant"], edgecolor="#333333", label="constant"),
               Patch(facecolor=FILL["output"], edgecolor="#333333", linewidth=2, label="output")]
    for k, b in enumerate(blocks):
        handles.append(Patch(facecolor=BLOCK_FILL[k % len(BLOCK_FILL)],
                             edgecolor=BLOCK_EDGE[k % len(BLOCK_EDGE)],
                             label=f"cyclic block {k} ({len(b)} node{'s' if len(b) > 1 else ''}, solved together)"))
    return handles
