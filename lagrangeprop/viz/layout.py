"""Where a drawing puts the nodes: the cyclic blocks and a layered left-to-right layout.

:func:`graph_blocks` finds the blocks by the compiler's own rule (SPEC §1: strongly
connected components with more than one node, a self-loop or a residual constraint);
:func:`layered_layout` places nodes Sugiyama-style, inputs left and the output right, with
waypoints for edges that skip layers and feedback edges left to curve back.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.Program(name="loop"); x = prog.input("x"); y = prog.variable("y")
>>> _ = prog.define(y, 0.5 * y + x); _ = prog.output(2 * y, name="o")
>>> pos, routes = layered_layout(prog.graph, {n: 0 for b in graph_blocks(prog) for n in b})
>>> pos["x"][0] < pos["o"][0]
True
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from ..compile.schedule import cyclic_blocks

__all__ = ["graph_blocks", "layered_layout"]


def graph_blocks(prog: Any) -> list[list[str]]:
    """The cyclic blocks of ``prog``'s graph as lists of node names.

    A strongly connected component of the graph is a block when it has more than one
    node, a self-loop, or a residual constraint — the solver's own rule
    (:func:`lagrangeprop.compile.schedule.is_block`), in the order of ``prog.blocks``.
    Unlike ``prog.blocks`` this does not compile the program, so it also works on programs
    that fail validation.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program(name="loop"); x = prog.input("x"); y = prog.variable("y")
    >>> _ = prog.define(y, 0.5 * y + x); _ = prog.output(2 * y, name="o")
    >>> [sorted(b) for b in graph_blocks(prog)]
    [['y', 'y.multiply']]
    """
    return cyclic_blocks(prog.graph)


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
