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
import math
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..errors import GraphError
from ..rules.registry import REGISTRY
from .arrays import DTYPES, check_compressed, check_dtype, check_shape, check_sparse
from .validate import MAX_DEPTH

__all__ = ["program_to_json", "program_from_json", "encode", "decode"]


def _float_list(a: np.ndarray) -> list:
    # float.__repr__ round-trips exactly; NaN/inf are JSON extensions Python reads back.
    return a.ravel().tolist()


def encode(x: Any) -> Any:
    """Turn node/edge attribute values into JSON-safe, tagged data."""
    if sp.issparse(x):
        # checked first (scipy's sort would write out of bounds on a corrupt matrix), then
        # canonical: sorted indices, no duplicates (what loading gives)
        m = check_sparse(x, "a sparse matrix to serialise", canonical=False).copy()
        m.sum_duplicates()
        return {"__sparse__": "csr", "data": _float_list(m.data), "indices": m.indices.tolist(),
                "indptr": m.indptr.tolist(), "shape": list(m.shape), "dtype": str(m.dtype)}
    if isinstance(x, np.ndarray):
        dtype = x.dtype.newbyteorder("=")   # "float64", never ">f8": the names loading accepts
        if str(dtype) not in DTYPES:
            raise GraphError(f"cannot serialise an array of dtype {x.dtype} to JSON; "
                             "programs hold bool and real numbers")
        return {"__ndarray__": _float_list(x), "dtype": str(dtype), "shape": list(x.shape)}
    if isinstance(x, (np.bool_, np.integer, np.floating)):
        return x.item()   # a numpy scalar (in a slice, a param) as the Python number it equals
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


# A tagged object and its exact keys (anything else is a plain dict of attributes).
_TAGS = {"__ndarray__": {"__ndarray__", "dtype", "shape"},
         "__sparse__": {"__sparse__", "data", "indices", "indptr", "shape", "dtype"},
         "__tuple__": {"__tuple__"}, "__slice__": {"__slice__"}, "__ellipsis__": {"__ellipsis__"}}


def _tag_of(x: dict, where: str) -> str | None:
    tags = [k for k in x if k in _TAGS]
    if not tags:
        return None
    tag = tags[0]
    if len(tags) > 1 or set(x) != _TAGS[tag]:
        raise GraphError(f"{where}: a {tag} object has exactly the keys {sorted(_TAGS[tag])}, "
                         f"got {sorted(x)}")
    return tag


def _numbers(data: Any, dtype: np.dtype, n: int, where: str) -> np.ndarray:
    """``data`` (a flat JSON list of ``n`` numbers) as an array of ``dtype``, checked
    before numpy converts it: no strings, no nesting, no out-of-range integers."""
    if not isinstance(data, list) or len(data) != n:
        got = f"{len(data)} entries" if isinstance(data, list) else type(data).__name__
        raise GraphError(f"{where}: the data must be a flat list of {n} numbers (the product of "
                         f"the shape), got {got}")
    if n == 0:
        return np.zeros(0, dtype=dtype)
    try:
        raw = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raw = None
    allowed = "b" if dtype.kind == "b" else "biu" if dtype.kind in "iu" else "biuf"
    if raw is None or raw.ndim != 1 or raw.dtype.kind not in allowed:
        raise GraphError(f"{where}: the data must be a flat list of {n} "
                         f"{'bools' if dtype.kind == 'b' else 'numbers'} for dtype {dtype}")
    try:
        return np.array(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise GraphError(f"{where}: the data do not fit dtype {dtype} ({exc})") from None


def _ndarray(x: dict, where: str) -> np.ndarray:
    dtype = check_dtype(x["dtype"], where)
    shape = check_shape(x["shape"], f"{where} (shape)")
    return _numbers(x["__ndarray__"], dtype, math.prod(shape), where).reshape(shape)


def _sparse(x: dict, where: str) -> sp.csr_matrix:
    fmt = x["__sparse__"]
    if fmt != "csr":   # CSR only: its row count is warranted by indptr, data in the document
        raise GraphError(f"{where}: sparse format {fmt!r:.20} is not supported (to_json writes csr)")
    dtype = check_dtype(x["dtype"], where)
    if not (isinstance(x["shape"], list) and len(x["shape"]) == 2):
        raise GraphError(f"{where}: a sparse matrix has a 2-D shape [rows, columns], got {x['shape']!r:.80}")
    shape = check_shape(x["shape"], f"{where} (sparse shape)", sparse=True)
    major, minor = shape
    for key in ("indices", "indptr", "data"):
        if not isinstance(x[key], list):
            raise GraphError(f"{where}: sparse {key} must be a list")
    n_ptr, nnz = len(x["indptr"]), len(x["indices"])
    indptr = _numbers(x["indptr"], np.dtype(np.int64), n_ptr, f"{where} (indptr)")
    indices = _numbers(x["indices"], np.dtype(np.int64), nnz, f"{where} (indices)")
    data = _numbers(x["data"], dtype, len(x["data"]), f"{where} (data)")
    data, indices, indptr = check_compressed(data, indices, indptr, major, minor, where)
    return check_sparse(sp.csr_matrix((data, indices, indptr), shape=shape), where)


def decode(x: Any, where: str = "value", depth: int = 0) -> Any:
    """Inverse of :func:`encode`, validating every tagged object before numpy or scipy
    builds it (dtype whitelist, data length = product of the shape, sparse index
    structure, 3-field slices, bounded nesting).

    Examples
    --------
    >>> decode({"__slice__": [1, None, 2]})
    slice(1, None, 2)
    >>> decode({"__ndarray__": [1, 2], "dtype": "S60000000", "shape": [2]})
    Traceback (most recent call last):
    ...
    lagrangeprop.errors.GraphError: value has dtype 'S60000000'; only bool, float16, float32, \
float64, int16, int32, int64, int8, uint16, uint32, uint64, uint8 are allowed (no strings, objects, \
structured or complex data)
    """
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if depth > MAX_DEPTH:
        raise GraphError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(x, list):
        return [decode(i, where, depth + 1) for i in x]
    if not isinstance(x, dict):
        raise GraphError(f"{where}: unexpected {type(x).__name__} in the document")
    tag = _tag_of(x, where)
    if tag is None:
        return {k: decode(v, f"{where}[{k!r}]", depth + 1) for k, v in x.items()}
    if tag == "__ndarray__":
        return _ndarray(x, where)
    if tag == "__sparse__":
        return _sparse(x, where)
    if tag == "__tuple__":
        if not isinstance(x["__tuple__"], list):
            raise GraphError(f"{where}: a __tuple__ holds a list, got {type(x['__tuple__']).__name__}")
        return tuple(decode(i, where, depth + 1) for i in x["__tuple__"])
    if tag == "__slice__":
        parts = x["__slice__"]
        if not isinstance(parts, list) or len(parts) != 3 or not all(
                p is None or (type(p) is int) for p in parts):
            raise GraphError(f"{where}: a __slice__ is [start, stop, step], three ints or nulls, "
                             f"got {parts!r:.80}")
        return slice(*parts)
    if x["__ellipsis__"] is not True:
        raise GraphError(f"{where}: an __ellipsis__ object is {{\"__ellipsis__\": true}}")
    return Ellipsis


def program_to_json(prog) -> str:
    G = prog.graph
    H = nx.DiGraph()
    H.graph.update({k: encode(v) for k, v in G.graph.items()})
    H.graph["name"] = prog.name
    for n, d in G.nodes(data=True):
        if getattr(REGISTRY.get(d.get("op")), "serializable", True) is False:
            raise GraphError(f"node {n!r} uses op {d['op']!r}, whose rules exist only in this "
                             "process (a nested lp.grad): a program holding it cannot be written "
                             "to JSON; trace the function without the nested transform to save it")
        H.add_node(n, **{k: encode(v) for k, v in d.items()})
    for u, v, d in G.edges(data=True):
        H.add_edge(u, v, **{k: encode(val) for k, val in d.items()})
    return json.dumps(nx.node_link_data(H, edges="edges"))


def _document(data: Any) -> nx.DiGraph:
    """The node-link document ``data`` (parsed JSON) as a DiGraph of decoded attributes."""
    if not isinstance(data, dict):
        raise GraphError(f"a lagrangeprop program in JSON is an object (node-link data), "
                         f"got a {type(data).__name__}")
    if data.get("directed", True) is not True or data.get("multigraph", False) is not False:
        raise GraphError("a lagrangeprop program is a directed graph without parallel edges "
                         "('directed': true, 'multigraph': false)")
    key = "edges" if "edges" in data or "links" not in data else "links"
    nodes, edges, attrs = data.get("nodes"), data.get(key, []), data.get("graph", {})
    if not isinstance(nodes, list) or not isinstance(edges, list) or not isinstance(attrs, dict):
        raise GraphError(f"node-link data has a list 'nodes', a list '{key}' and an object "
                         "'graph'; this document does not")
    G = nx.DiGraph()
    G.graph.update({k: decode(v, f"graph attribute {k!r}") for k, v in attrs.items()})
    for d in nodes:
        n = d.get("id") if isinstance(d, dict) else None
        if not isinstance(n, str) or not n:
            raise GraphError(f"every node of the document is an object with an 'id' (a non-empty "
                             f"str, the variable name), got {str(d)[:80]}")
        if n in G:
            raise GraphError(f"duplicate node {n!r} in the document")
        G.add_node(n, **{k: decode(v, f"node {n!r}: {k!r}") for k, v in d.items() if k != "id"})
    for d in edges:
        u, v = (d.get("source"), d.get("target")) if isinstance(d, dict) else (None, None)
        if not (isinstance(u, str) and isinstance(v, str) and u in G and v in G):
            raise GraphError(f"every edge of the document joins two of its nodes by name "
                             f"('source', 'target'), got {str(d)[:80]}")
        if G.has_edge(u, v):
            raise GraphError(f"duplicate edge {u!r} -> {v!r}; a node that fills several argument "
                             "positions has one edge with 'arg' a list")
        G.add_edge(u, v, **{k: decode(val, f"edge {u!r} -> {v!r}: {k!r}")
                            for k, val in d.items() if k not in ("source", "target")})
    return G


def program_from_json(cls, s: str | bytes):
    """Parse and validate a JSON document, then :meth:`Program.from_graph` (validated again
    as a graph). Everything that is not a well-formed program raises GraphError."""
    if not isinstance(s, (str, bytes, bytearray)):
        raise GraphError(f"from_json takes the JSON text (a str), got {type(s).__name__}")
    try:
        data = json.loads(s)
    except RecursionError:
        raise GraphError("the JSON document is nested too deeply to be a lagrangeprop "
                         "program") from None
    except (ValueError, TypeError) as exc:   # JSONDecodeError, bad UTF-8, huge ints
        raise GraphError(f"not valid JSON: {exc}") from None
    G = _document(data)
    return cls.from_graph(G, name=G.graph.get("name"))
