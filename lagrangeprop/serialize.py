"""Lossless JSON for programs: networkx node-link data with tagged objects.

Arrays, sparse matrices, tuples, slices and Ellipsis become tagged JSON objects
(``{"__ndarray__": [...], "dtype": "float64", "shape": [...]}``) so the round
trip is exact. Loading never evaluates code: ops resolve through the registry
when the program is compiled.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sin(x) ** 2, x=0.3)
>>> bool(lp.Program.from_json(prog.to_json()).evaluate(x=0.3) == prog.evaluate(x=0.3))
True
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from .errors import GraphError

__all__ = ["program_to_json", "program_from_json", "encode", "decode"]


def _float_list(a: np.ndarray) -> list:
    # float.__repr__ round-trips exactly; NaN/inf are JSON extensions Python reads back.
    return a.ravel().tolist()


def encode(x: Any) -> Any:
    """Turn node/edge attribute values into JSON-safe, tagged data."""
    if sp.issparse(x):
        m = sp.csr_matrix(x)
        return {"__sparse__": "csr", "data": _float_list(m.data), "indices": m.indices.tolist(),
                "indptr": m.indptr.tolist(), "shape": list(m.shape), "dtype": str(m.dtype)}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": _float_list(x), "dtype": str(x.dtype), "shape": list(x.shape)}
    if isinstance(x, np.generic):
        return encode(np.asarray(x))
    if isinstance(x, tuple):
        return {"__tuple__": [encode(i) for i in x]}
    if isinstance(x, slice):
        return {"__slice__": [encode(x.start), encode(x.stop), encode(x.step)]}
    if x is Ellipsis:
        return {"__ellipsis__": True}
    if isinstance(x, dict):
        return {str(k): encode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [encode(i) for i in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise GraphError(f"cannot serialise {type(x).__name__} value {x!r} to JSON")


def decode(x: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(x, list):
        return [decode(i) for i in x]
    if not isinstance(x, dict):
        return x
    if "__ndarray__" in x:
        return np.array(x["__ndarray__"], dtype=np.dtype(x["dtype"])).reshape(x["shape"])
    if "__sparse__" in x:
        return sp.csr_matrix((np.array(x["data"], dtype=np.dtype(x["dtype"])),
                              np.array(x["indices"], dtype=np.int32),
                              np.array(x["indptr"], dtype=np.int32)), shape=tuple(x["shape"]))
    if "__tuple__" in x:
        return tuple(decode(i) for i in x["__tuple__"])
    if "__slice__" in x:
        return slice(*(decode(i) for i in x["__slice__"]))
    if "__ellipsis__" in x:
        return Ellipsis
    return {k: decode(v) for k, v in x.items()}


def program_to_json(prog) -> str:
    G = prog.graph
    H = nx.DiGraph()
    H.graph.update({k: encode(v) for k, v in G.graph.items()})
    H.graph["name"] = prog.name
    for n, d in G.nodes(data=True):
        H.add_node(n, **{k: encode(v) for k, v in d.items()})
    for u, v, d in G.edges(data=True):
        H.add_edge(u, v, **{k: encode(val) for k, val in d.items()})
    return json.dumps(nx.node_link_data(H, edges="edges"))


def program_from_json(cls, s: str):
    try:
        data = json.loads(s)
        H = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    except (ValueError, KeyError, TypeError, nx.NetworkXError) as exc:
        raise GraphError(f"not a lagrangeprop program in node-link JSON: {exc}") from None
    G = nx.DiGraph()
    G.graph.update({k: decode(v) for k, v in H.graph.items()})
    for n, d in H.nodes(data=True):
        G.add_node(n, **{k: decode(v) for k, v in d.items()})
    for u, v, d in H.edges(data=True):
        G.add_edge(u, v, **{k: decode(val) for k, val in d.items()})
    return cls.from_graph(G, name=G.graph.get("name"))
