"""A ``networkx.DiGraph`` that knows when it was edited, so a compiled Program never
solves an old graph (SPEC §2: "Editing prog.graph after the first solve either
recompiles or raises GraphError").

networkx has no version counter. Two cheap signals replace one:

- structure: every networkx mutator (``add_node``, ``add_edge``, ``remove_*``,
  ``relabel_nodes``, ``update``, ``clear``) empties ``G.__networkx_cache__``; a stamp
  left there at compile time is gone after any of them;
- attributes: the graph's attribute dicts (graph, node and edge attributes, and each
  node's ``params``) are :class:`Attrs`, a dict that counts its edits in a counter
  shared by the graph (``G.nodes[n]["op"] = ...``, ``.update``, ``del``, ``pop``...).

Checking both is O(1) per solve. A plain ``nx.DiGraph`` assigned to ``prog.graph`` has
no counter: then a fingerprint of the whole graph is compared on each solve (O(nodes)).
Not seen: in-place edits of an attribute's *contents* other than ``params`` (a
constant's ``value`` array edited in place is read live by the solve, not frozen).

Examples
--------
>>> G = TrackedDiGraph(output=None)
>>> G.add_node("x", role="input", shape=())
>>> n = G.edits
>>> G.nodes["x"]["shape"] = (2,)
>>> G.edits > n
True
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

__all__ = ["Attrs", "TrackedDiGraph", "tracked_copy", "fingerprint", "clear_nx_cache", "STAMP", "TRACED",
           "mark", "unedited_since"]

STAMP = "lagrangeprop.compiled"   # key of the compile stamp in G.__networkx_cache__
TRACED = "lagrangeprop.traced"    # key of the stamp lp.trace leaves on the graph it recorded


def _bump(d: Attrs) -> None:
    try:
        d._edits[0] += 1
    except AttributeError:   # being unpickled / copied: no counter yet
        pass


class Attrs(dict):
    """A dict that counts its edits in a counter shared with its graph."""

    __slots__ = ("_edits",)

    def __setitem__(self, key, value):
        _bump(self)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        _bump(self)
        dict.__delitem__(self, key)

    def __ior__(self, other):
        _bump(self)
        return dict.__ior__(self, other)

    def update(self, *args, **kwargs):
        _bump(self)
        dict.update(self, *args, **kwargs)

    def setdefault(self, key, default=None):
        if key not in self:
            _bump(self)
        return dict.setdefault(self, key, default)

    def pop(self, *args):
        _bump(self)
        return dict.pop(self, *args)

    def popitem(self):
        _bump(self)
        return dict.popitem(self)

    def clear(self):
        _bump(self)
        dict.clear(self)

    def __reduce_ex__(self, protocol):   # pickles and copies as a plain dict
        return dict, (dict(self),)


def attrs(edits: list, data: dict | None = None) -> Attrs:
    """An :class:`Attrs` with ``data``, counting into ``edits``."""
    a = Attrs(data) if data else Attrs()
    a._edits = edits
    return a


class TrackedDiGraph(nx.DiGraph):
    """A DiGraph whose graph, node and edge attribute dicts are :class:`Attrs`."""

    def __init__(self, incoming_graph_data=None, **attr):
        self._edits = [0]
        self.node_attr_dict_factory = self.edge_attr_dict_factory = self._new_attrs
        self.graph_attr_dict_factory = self._new_attrs
        super().__init__(incoming_graph_data, **attr)

    def _new_attrs(self) -> Attrs:
        a = Attrs()
        a._edits = self._edits
        return a

    @property
    def edits(self) -> int:
        """How many attribute edits this graph has seen."""
        return self._edits[0]

    def __reduce__(self):   # the factories are bound methods: rebuild through __init__
        return tracked_copy, (nx.DiGraph(self),)


def tracked_copy(G: nx.DiGraph) -> TrackedDiGraph:
    """A :class:`TrackedDiGraph` copy of ``G`` (attribute values shared, ``params``
    dicts copied into tracked ones)."""
    H = TrackedDiGraph()
    H.graph.update(G.graph)
    E = H._edits
    for n, d in G.nodes(data=True):
        H.add_node(n, **d)
        p = d.get("params")
        if type(p) is dict or type(p) is Attrs:
            dict.__setitem__(H._node[n], "params", attrs(E, p))
    H.add_edges_from(G.edges(data=True))
    return H


def own_params(G: TrackedDiGraph) -> None:
    """Make every node's ``params`` a tracked dict of ``G`` (a plain dict put there by
    hand, or one shared with another graph), so an in-place edit counts."""
    E = G._edits
    for d in G._node.values():
        p = d.get("params")
        if p is not None and (type(p) is not Attrs or p._edits is not E) \
                and isinstance(p, dict):
            dict.__setitem__(d, "params", attrs(E, p))


def _fp_value(v: Any):
    if isinstance(v, np.ndarray):
        return ("a", v.shape, v.dtype.str, v.tobytes())
    if isinstance(v, dict):
        return tuple((k, _fp_value(x)) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return (type(v), tuple(_fp_value(x) for x in v))
    if isinstance(v, slice):
        return ("s", v.start, v.stop, v.step)
    try:
        hash(v)
        return v
    except TypeError:
        return ("id", id(v))


def fingerprint(G: nx.DiGraph) -> tuple:
    """Everything compile reads from ``G``, as comparable data (O(nodes + edges))."""
    nodes = tuple((n, tuple((k, _fp_value(v)) for k, v in d.items()))
                  for n, d in G._node.items())
    edges = tuple((u, v, _fp_value(d.get("arg"))) for u, nb in G._succ.items() for v, d in nb.items())
    return nodes, edges, tuple((k, _fp_value(v)) for k, v in G.graph.items())


def clear_nx_cache(G: nx.DiGraph) -> None:
    """What networkx does after every change: drop its cached conversions of ``G``."""
    cache = G.__dict__.get("__networkx_cache__")
    if cache:
        cache.clear()


def mark(G: nx.DiGraph, key: str = TRACED) -> tuple | None:
    """A stamp of ``G`` as it is now (``None`` for a plain DiGraph: it has no edit counter);
    :func:`unedited_since` tells whether ``G`` has changed since. The same two signals as the
    compile stamp: a token in ``G.__networkx_cache__`` (every networkx mutator empties it) and
    the attribute edit counter.

    Examples
    --------
    >>> G = TrackedDiGraph()
    >>> G.add_node("x", role="input", shape=())
    >>> m = mark(G)
    >>> unedited_since(G, m), G.nodes["x"].update(shape=(2,)), unedited_since(G, m)
    (True, None, False)
    """
    if type(G) is not TrackedDiGraph:
        return None
    token = object()
    cache = G.__dict__.get("__networkx_cache__")
    if cache is None:
        cache = G.__networkx_cache__ = {}
    cache[key] = token
    return G, token, G._edits[0]


def unedited_since(G: nx.DiGraph, stamp: tuple | None, key: str = TRACED) -> bool:
    """Whether ``G`` is the graph ``stamp`` (:func:`mark`) was taken of, with no edit since."""
    if stamp is None or stamp[0] is not G or type(G) is not TrackedDiGraph:
        return False
    cache = G.__dict__.get("__networkx_cache__")
    return bool(cache) and cache.get(key) is stamp[1] and G._edits[0] == stamp[2]
