"""Schema validation of a program graph before it is compiled (SPEC §2, graph schema).

One job: decide whether a ``networkx.DiGraph`` (built by hand, loaded from JSON, or
edited after building) is a well-formed program, *before* any numeric kernel sees its
data, and raise :class:`~lagrangeprop.errors.GraphError` naming the node, the field and
the fix when it is not: roles, ops, constraints, static op parameters, edges and the
output. Nothing here executes code from the graph: ops are names looked up in the
registry at compile time. Array data (declared shapes, dtypes, dense and sparse
constants) is checked by :mod:`lagrangeprop.graph.arrays`, never materialized.

Examples
--------
>>> import networkx as nx
>>> G = nx.DiGraph(output="f")
>>> G.add_node("x", role="input", shape=[3])
>>> G.add_node("f", role="defined", op="sum", params={"axis": None})
>>> G.add_edge("x", "f", arg=0)
>>> validate_graph(G).nodes["x"]["shape"]          # a validated, normalized copy
(3,)
>>> G.add_edge("x", "f", arg="first")
>>> validate_graph(G)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lagrangeprop.errors.GraphError: edge 'x' -> 'f': 'arg' must be a non-negative int ... got 'first'
"""

from __future__ import annotations

import inspect
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..errors import GraphError
from .arrays import DTYPES, check_dense, check_shape, check_sparse, is_int, short
from .tracked import Attrs

__all__ = ["ROLES", "CONSTRAINTS", "MAX_DEPTH", "REQUIRED", "validate_graph", "check_static",
           "check_arg", "check_params"]

ROLES = ("input", "constant", "defined")
CONSTRAINTS = ("explicit", "residual")
MAX_DEPTH = 16                 # nesting of a parameter value (an index tuple of slices is 3)
_F64 = np.dtype(np.float64)
MAX_STR = 1024                 # a string parameter (einsum subscripts, a mode name)
# the parameters a built-in op cannot run without (its rules read them by name)
REQUIRED = {"getitem": ("index",), "reshape": ("shape",)}


def _where(node: Any, field: str) -> str:
    return f"node {node!r}: {field!r}"


# ---------------------------------------------------------------- params and edges


def check_static(value: Any, where: str, depth: int = 0) -> None:
    """A parameter value is static data: None, bool, int, float, a short str, Ellipsis,
    a slice of ints/None, an ndarray of bool or real numbers (integer indexing, a user op's
    weights), or a tuple, list or str-keyed dict of these. Built-in ops check their own
    parameters further (:func:`check_params`: ``index`` arrays hold integers or bools)."""
    if value is None or value is Ellipsis or isinstance(value, (bool, int, float, np.bool_, np.integer,
                                                                np.floating)):
        return
    if depth >= MAX_DEPTH:
        raise GraphError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if len(value) > MAX_STR:
            raise GraphError(f"{where} is a string of {len(value)} characters (at most {MAX_STR})")
        return
    if isinstance(value, slice):
        for part in (value.start, value.stop, value.step):
            if part is not None and not is_int(part):
                raise GraphError(f"{where}: slice fields must be ints or None, got {short(value)}")
        return
    if isinstance(value, (tuple, list)):
        for v in value:
            check_static(v, where, depth + 1)
        return
    if isinstance(value, dict):   # a user op's keyword of keywords
        for k, v in value.items():
            if not isinstance(k, str):
                raise GraphError(f"{where}: keys of a dict parameter must be strings, got {short(k)}")
            check_static(v, where, depth + 1)
        return
    if type(value) is np.ndarray:
        if value.dtype.kind not in "biuf" or str(value.dtype.newbyteorder("=")) not in DTYPES:
            raise GraphError(f"{where}: an array parameter must hold integers, bools or real "
                             f"numbers, got dtype {value.dtype}")
        return
    raise GraphError(f"{where} is a {type(value).__name__}; op parameters are static data "
                     "(ints, bools, floats, str, tuples, slices, None, Ellipsis, arrays of numbers)")


def check_arg(arg: Any, where: str) -> int | list[int]:
    """An edge's ``arg``: one argument position, or a sorted list of distinct ones."""
    if type(arg) is int and arg >= 0:
        return arg
    if is_int(arg) and arg >= 0:
        return int(arg)
    if isinstance(arg, (list, tuple)) and arg and all(is_int(p) and p >= 0 for p in arg):
        pos = [int(p) for p in arg]
        if pos == sorted(set(pos)):
            return pos[0] if len(pos) == 1 else pos
    raise GraphError(f"{where}: 'arg' must be a non-negative int or a sorted list of distinct "
                     f"non-negative ints (the argument positions), got {short(arg)}")


def _axis_ok(v: Any, allow_none: bool = True) -> bool:
    if v is None:
        return allow_none
    if isinstance(v, (tuple, list)):
        return all(is_int(a) for a in v)
    return is_int(v)


def _index_ok(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    for k in parts:
        if k is None or k is Ellipsis or isinstance(k, (int, np.integer, np.bool_, slice)):
            continue
        if type(k) is np.ndarray and k.dtype.kind in "biu":
            continue
        if isinstance(k, list) and all(isinstance(i, (int, np.integer, np.bool_)) for i in k):
            continue   # a hand-written integer index, as numpy reads it
        return False
    return True


# typed parameters by name (the op's signature decides which names it takes)
_TYPED = {
    "axis": (_axis_ok, "None, an int or a tuple of ints"),
    "axes": (_axis_ok, "None or a tuple of ints (a permutation)"),
    "keepdims": (lambda v: isinstance(v, (bool, np.bool_)), "a bool"),
    "shape": (lambda v: _axis_ok(v, allow_none=False) and all(int(n) >= -1 for n in np.atleast_1d(v)),
              "a tuple of ints (-1 at most once)"),
    "index": (_index_ok, "an int, slice, None, Ellipsis, an integer/bool array, or a tuple of these"),
}
_KEYWORDS: dict[int, tuple[frozenset[str] | None, Any]] = {}


def _keywords(prim: Any) -> frozenset[str] | None:
    """The parameter names ``prim.fn`` accepts by keyword (``None``: any, or unknown)."""
    hit = _KEYWORDS.get(id(prim))
    if hit is not None and hit[1] is prim:
        return hit[0]
    try:
        sig = inspect.signature(prim.fn)
    except (TypeError, ValueError):
        names = None
    else:
        kinds = {p.kind for p in sig.parameters.values()}
        if inspect.Parameter.VAR_KEYWORD in kinds:
            names = None
        else:
            names = frozenset(p.name for p in sig.parameters.values()
                              if p.kind == inspect.Parameter.KEYWORD_ONLY
                              or (p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
                                  and p.default is not inspect.Parameter.empty))
    _KEYWORDS[id(prim)] = (names, prim)
    return names


def check_params(node: str, prim: Any, params: dict) -> None:
    """``params`` fit op ``prim``: names it takes, the ones it needs, typed values.

    Examples
    --------
    >>> from lagrangeprop.rules import registry
    >>> check_params("t", registry.get("getitem"), {})
    Traceback (most recent call last):
    ...
    lagrangeprop.errors.GraphError: node 't': op 'getitem' needs the parameter 'index' (params={'index': ...})
    """
    if not prim.user:
        for name in REQUIRED.get(prim.name, ()):
            if name not in params:
                raise GraphError(f"node {node!r}: op {prim.name!r} needs the parameter {name!r} "
                                 f"(params={{{name!r}: ...}})")
    if not params:
        return
    names = _keywords(prim)
    if names is not None:
        extra = sorted(set(params) - names)
        if extra:
            raise GraphError(f"node {node!r}: op {prim.name!r} takes no parameter {extra[0]!r}; "
                             f"it takes {sorted(names) or 'none'}")
    if prim.user:
        return
    for name, value in params.items():
        rule = _TYPED.get(name)
        if rule is not None and not rule[0](value):
            raise GraphError(f"node {node!r}: parameter {name!r} of op {prim.name!r} must be "
                             f"{rule[1]}, got {short(value)}")


# ---------------------------------------------------------------- the graph


def _check_params_dict(node: str, params: Any) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise GraphError(f"{_where(node, 'params')} must be a dict of op parameters, got {short(params)}")
    for k, v in params.items():
        if not isinstance(k, str):
            raise GraphError(f"{_where(node, 'params')}: parameter names must be strings, got {k!r}")
        check_static(v, f"node {node!r}: parameter {k!r}")
    return params


def _check_node(n: Any, d: dict, canonical: bool) -> None:
    """Validate (and normalize in place) one node's attribute dict."""
    if type(n) is not str or not n:
        raise GraphError(f"node keys must be non-empty strings (variable names), got {short(n)}")
    role = d.get("role")
    if role.__class__ is not str or role not in ROLES:
        raise GraphError(f"node {n!r} has role {short(role)}; expected one of {ROLES}")
    if role != "constant" and "value" in d:
        raise GraphError(f"node {n!r} is {'an' if role == 'input' else 'a'} {role} but has a 'value'; "
                         "only constants hold one (inputs are given to solve()): give it "
                         "role='constant' or remove the value")
    s = d.get("shape")
    if s is not None:
        # a sparse constant's memory is its nonzeros: only each dimension is bounded
        t = check_shape(s, _where(n, "shape"), sparse=role == "constant" and sp.issparse(d.get("value")))
        if t is not s:
            d["shape"] = s = t
    if role == "defined":
        op = d.get("op")
        if op is not None and (type(op) is not str or len(op) > MAX_STR):
            raise GraphError(f"{_where(n, 'op')} must be the name of a registered op (a str), "
                             f"got {short(op)}")
        c = d.get("constraint")
        if c is None:
            d["constraint"] = "explicit"
        elif c.__class__ is not str or c not in CONSTRAINTS:
            raise GraphError(f"node {n!r} has constraint {short(c)}; expected 'explicit' or 'residual'")
        p = d.get("params")
        if p is None or (p.__class__ is not dict and p.__class__ is not Attrs):
            d["params"] = _check_params_dict(n, p)
        elif p:
            _check_params_dict(n, p)
        return
    if d.get("op") is not None:
        raise GraphError(f"node {n!r} is {'an' if role == 'input' else 'a'} {role} but has op "
                         f"{short(d['op'])}; give it role='defined' or remove the op")
    if role == "constant":
        if "value" not in d:
            raise GraphError(f"constant node {n!r} has no 'value' attribute")
        v = d["value"]
        if v.__class__ is not np.ndarray or v.dtype != np.float64:
            where = _where(n, "value")
            w = check_sparse(v, where, canonical=canonical) if sp.issparse(v) else check_dense(v, where)
            if w is not v:
                d["value"] = v = w
        if s is not None and tuple(v.shape) != s:
            raise GraphError(f"constant node {n!r} declares shape {s} but its value has shape "
                             f"{tuple(v.shape)}; make them agree (or drop 'shape')")
        d["shape"] = tuple(v.shape)


def _check_edges(nodes: dict, v: str, into: dict) -> None:
    """The in-edges of ``v``: a defined node's arguments, positions 0..k-1 filled once."""
    role = nodes[v]["role"]
    if role != "defined":
        raise GraphError(f"{role} {v!r} has incoming edges {sorted(into)[:5]}; only defined "
                         "variables take arguments")
    filled: dict[int, str] = {}
    for u, e in into.items():
        a = e.get("arg")
        if a.__class__ is not int or a < 0:
            if a is None:
                raise GraphError(f"edge {u!r} -> {v!r} has no 'arg' attribute (argument position)")
            checked = check_arg(a, f"edge {u!r} -> {v!r}")
            if checked != a or type(checked) is not type(a):
                e["arg"] = checked
            a = checked
        for p in (a,) if a.__class__ is int else a:
            if p in filled:
                raise GraphError(f"node {v!r}: argument position {p} is filled by both "
                                 f"{filled[p]!r} and {u!r}")
            filled[p] = u
    if max(filled) != len(filled) - 1:
        raise GraphError(f"node {v!r}: argument positions {sorted(filled)} have gaps; each "
                         "edge's 'arg' must give the argument's position 0..k-1")


def validate_graph(G: Any, *, copy: bool = True) -> nx.DiGraph:
    """Check ``G`` against the program schema (SPEC §2) and return it normalized.

    ``copy=True`` (loading: :meth:`Program.from_graph`) works on a copy of ``G`` whose
    shapes become tuples, constants float64 ndarrays (bool kept) or canonical float64
    CSR matrices, and missing ``constraint``/``params`` get their defaults; ``copy=False``
    (compiling) does the same in place.

    Raises
    ------
    GraphError
        Naming the node or edge, the field, and what it should be.
    """
    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise GraphError(f"a program graph is a networkx.DiGraph, got {type(G).__name__}")
    if copy:
        H = nx.DiGraph()
        H.graph.update(G.graph)
        H.add_nodes_from((n, dict(d)) for n, d in G.nodes(data=True))
        H.add_edges_from((u, v, dict(d)) for u, v, d in G.edges(data=True))
        G = H
    name = G.graph.get("name")
    if name is not None and not isinstance(name, str):
        raise GraphError(f"the graph's 'name' must be a str, got {short(name)}")
    nodes = G._node
    for n, d in nodes.items():
        if n.__class__ is str and n:   # the traced cases, checked inline
            role = d.get("role")
            if role.__class__ is not str:
                pass
            elif role == "defined":
                p, s, c = d.get("params"), d.get("shape"), d.get("constraint")
                # params: a plain dict, or the graph's tracked one (compile.cache.compiled's own_params)
                if ((p.__class__ is dict or p.__class__ is Attrs) and not p
                        and (s is None or (s.__class__ is tuple and not s))
                        and d.get("op").__class__ is str and c.__class__ is str and c in CONSTRAINTS
                        and "value" not in d):
                    continue
            elif role == "constant":
                v, s = d.get("value"), d.get("shape")
                if v.__class__ is np.ndarray and v.dtype is _F64 and s.__class__ is tuple and s == v.shape \
                        and "op" not in d:
                    continue
        _check_node(n, d, True)   # sparse constants canonical when compiled too (duplicates summed, sorted)
    for v, into in G._pred.items():
        if not into:
            continue
        for e in into.values():
            a = e.get("arg")
            if a.__class__ is not int or a < 0:
                break
        else:
            if not copy:   # compiling: schedule's _arguments checks the positions themselves
                continue
        _check_edges(nodes, v, into)
    out = G.graph.get("output")
    if out is not None and (type(out) is not str or out not in nodes):
        raise GraphError(f"the graph's 'output' must name a node of the program (a str), got "
                         f"{short(out)}; set G.graph['output'] to the output variable's name")
    return G
