"""Shape inference for the compiler: the shape of every defined variable, checked.

Built-in ops use their shape rules (:func:`~lagrangeprop.rules.shapes.rule_shape`); every other
op is evaluated abstractly on O(1)-memory dummies (:func:`~lagrangeprop.rules.shapes.placeholder`),
so a declared (2000, 2000) input is never materialized. A declared variable of unknown shape
takes the shape of its definition (scalar when nothing determines it, like ``w`` in
``w**3 + w - x = 0``).

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sum(x * x), x=[1.0, 2.0, 3.0])
>>> sched = prog.compile()
>>> [sched.shapes[s.node] for s in sched.steps]
[(3,), ()]
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError
from ..graph.arrays import MAX_ELEMENTS
from ..graph.coerce import plain_constant
from ..rules.shapes import placeholder, rule_shape

__all__ = ["infer_shapes"]


def _sparse_product(n, prim, args, shapes, odd) -> tuple | None:
    """Shape of built-in ``matmul``/``dot`` of a constant scipy.sparse ``A`` (m, k) with
    ``b`` (k,) or (k, j): (m,) or (m, j), without evaluating ``A @ b`` (scipy would make
    ``b`` dense and contiguous); ``None`` when the op is not such a product."""
    if prim.user or prim.name not in ("matmul", "dot") or len(args) != 2 or args[1] in odd:
        return None
    (m, k), b = shapes[args[0]], shapes[args[1]]
    if len(b) not in (1, 2) or b[0] != k:
        raise ShapeError(f"node {n!r}: op {prim.name!r} of the sparse ({m}, {k}) matrix "
                         f"{args[0]!r} needs a vector ({k},) or matrix ({k}, j) operand, got "
                         f"{args[1]!r} of shape {b}")
    return (m,) + b[1:]


def _eval_shape(G, n, prim, args, shapes, odd=()):
    """Shape of node ``n``'s op on its arguments: a shape rule for built-in ops
    (:func:`~lagrangeprop.rules.shapes.rule_shape`), else abstract evaluation on dummies that
    cost O(1) memory (:func:`~lagrangeprop.rules.shapes.placeholder`: a declared (2000, 2000)
    input is never materialized). ``odd``: constants the rules must not see (sparse)."""
    nodes = G._node
    params = nodes[n].get("params") or {}
    if not odd or not any(a in odd for a in args):
        got = rule_shape(prim, [shapes[a] for a in args], params)
        if got is not None:
            return _bounded(n, prim, got) if got else got
    elif args and args[0] in odd and sp.issparse(nodes[args[0]]["value"]):
        got = _sparse_product(n, prim, args, shapes, odd)
        if got is not None:
            return _bounded(n, prim, got)
    dummies = []
    for a in args:
        d = nodes[a]
        dummies.append(d["value"] if d["role"] == "constant" else placeholder(shapes[a]))
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = prim.value(dummies, params)
    except Exception as exc:
        raise ShapeError(f"node {n!r}: op {prim.name!r} cannot combine its arguments "
                         f"{args} of shapes {[shapes[a] for a in args]}: {exc}") from None
    return _bounded(n, prim, tuple(np.shape(out)))


def _bounded(n, prim, shape: tuple) -> tuple:
    """``shape`` when it has at most :data:`~lagrangeprop.graph.arrays.MAX_ELEMENTS` entries
    (what a declared shape may have); an op's result may not be larger either."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise ShapeError(f"node {n!r}: op {prim.name!r} would make an array of shape {shape} "
                         f"({math.prod(shape)} entries; at most {MAX_ELEMENTS}); check its "
                         "arguments' shapes and parameters")
    return shape


def infer_shapes(G, order, args_of, prims) -> dict[str, tuple]:
    """Shapes of all defined nodes; declared variables of unknown shape are inferred
    from their definitions (scalar when nothing determines them). Every definition
    is checked against its variable's shape."""
    nodes = G._node
    shapes = {}
    odd = set()
    for n, d in nodes.items():
        role = d["role"]
        if role == "constant":
            v = d["value"]
            shapes[n] = v.shape if type(v) is np.ndarray else tuple(np.shape(v))
            if not plain_constant(v):
                odd.add(n)
        else:
            s = d.get("shape")
            shapes[n] = () if s is None and role == "input" else s
    pending = [n for n in order if shapes[n] is None]
    checked = set()
    while pending:
        progress = True
        while progress:
            progress = False
            for n in pending:
                if all(shapes[a] is not None for a in args_of[n]):
                    shapes[n] = _eval_shape(G, n, prims[n], args_of[n], shapes, odd)
                    checked.add(n)
                    progress = True
            pending = [n for n in pending if shapes[n] is None]
        if pending:
            # nothing determines it (w in w**3 + w - x = 0): scalar, like an input
            shapes[pending[0]] = ()
    for n in order:
        if n in checked:   # computed by _eval_shape from its final argument shapes above
            continue
        if shapes[n] is None:
            raise ShapeError(f"cannot infer the shape of {n!r}; pass shape= to prog.variable")
        got = _eval_shape(G, n, prims[n], args_of[n], shapes, odd)
        if got != shapes[n]:
            kind = "residual" if nodes[n].get("constraint") == "residual" else "definition"
            raise ShapeError(f"variable {n!r} has shape {shapes[n]} but its {kind} "
                             f"(op {prims[n].name!r}) has shape {got}; make them agree")
    return shapes



def known_shapes(G) -> dict[str, tuple] | None:
    """The shapes a traced graph already holds, when they can stand for :func:`infer_shapes`
    (the tracer computed and checked each one as it recorded the node, by the same shape rules),
    else ``None``: a node without a tuple shape, a constant whose value no longer has its
    recorded shape (an array reshaped in place), or a result over the size bound (for
    :func:`infer_shapes` to report)."""
    shapes = {}
    for n, d in G._node.items():
        s = d.get("shape")
        if s.__class__ is not tuple:
            return None
        if s:
            if d["role"] == "constant" and getattr(d["value"], "shape", None) != s:
                return None
            if math.prod(s) > MAX_ELEMENTS:
                return None
        elif d["role"] == "constant" and getattr(d["value"], "shape", None) != ():
            return None
        shapes[n] = s
    return shapes
