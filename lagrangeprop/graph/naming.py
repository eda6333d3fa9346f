"""Node names from the source's local variables (issue 15): a reader meets ``z`` or
``layer.z`` in a report, not ``matmul_11``.

Three sources, in this order of precedence; only auto-named nodes are ever renamed (an input,
the output and every name the user chose stay as they are), and a name already in the
program is never taken:

- the traced function's own locals, as they are when it returns (:mod:`.trace`): ``z``;
- the locals of the helper functions it calls, each name qualified by the helper:
  ``layer.z``, and ``layer_2.z`` for the helper's second call (:class:`HelperFrames` finds
  those frames while the ops are recorded);
- for a program built with ``prog.define`` / ``prog.residual`` / ``prog.output`` inside a
  user function, the locals of the caller of that method when it is called
  (:func:`name_from_caller`): ``i1 = Is * (lp.exp(...) - 1.0)`` names ``i1``; a name used
  again (a loop) gets ``i1_2``, ``i1_3``; then the unnamed intermediates of each such
  expression and of the constraint just given are named after it and their op:
  ``prog.residual(w, w**3 + w - x)`` names ``w.add`` and ``w.power`` (only with
  ``EXPRESSION_NAMES``, on by default). These names stay
  *soft*: the user may still claim such a name later (``prog.variable("i1")``), and
  ``define(v, i1)`` still renames the root ``i1`` to ``v``, as for any unnamed root (SPEC §2).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> def layer(h, W):
...     z = h @ W
...     return np.tanh(z)
>>> def mlp(x, W1, W2):
...     h = layer(x, W1)
...     return lp.sum(layer(h, W2))
>>> prog = lp.trace(mlp, x=np.ones(2), W1=np.ones((2, 2)), W2=np.ones((2, 2)))
>>> sorted(n for n in prog.graph if prog.graph.nodes[n]["role"] == "defined")
['h', 'layer.z', 'layer_2.z', 'out', 'tanh_3']
>>> def build():
...     prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
...     s = lp.exp(x) * 2.0
...     prog.residual(w, w**3 + w - s)
...     return prog
>>> [n for n in build().graph if n in ("s", "w", "x")]
['x', 'w', 's']
"""

from __future__ import annotations

import collections
import os
import sys
from types import CodeType, FrameType
from typing import Any

import networkx as nx

from .tracked import TrackedDiGraph, clear_nx_cache
from .var import Var

__all__ = ["HelperFrames", "name_from_caller", "is_internal", "qualified", "relabel_many"]

_INTERNAL = ("lagrangeprop", "numpy", "scipy", "networkx", "autograd", "torch", "functools", "contextlib")
_internal_code: dict[CodeType, bool] = {}
# name an expression's unnamed intermediates after its constraint or local (``w.add``); False keeps
# the op-based auto names (``add_2``)
EXPRESSION_NAMES = True
EXPRESSION_MAX = 32      # intermediates named per building call


def _internal_dirs() -> tuple[str, ...]:
    """The source directories of this package and of the libraries it calls."""
    dirs = []
    for name in _INTERNAL:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:   # a package: its directory; a plain module (functools): its file
            dirs.append(os.path.dirname(path) + os.sep if hasattr(module, "__path__") else path)
    return tuple(dirs)


def is_internal(frame: FrameType) -> bool:
    """A frame of this package or of a library it calls (numpy, scipy, ...), not the user's
    (judged by its file: a doctest or a notebook cell is the user's)."""
    code = frame.f_code
    known = _internal_code.get(code)
    if known is None:
        name = code.co_filename
        known = _internal_code[code] = name.startswith("<frozen") or name.startswith(_internal_dirs())
    return known


def _rekey_tail(d: dict, mapping: dict) -> None:
    """Rename the keys of ``d`` found in ``mapping``, each keeping its place in ``d``'s order:
    only the tail from the first renamed key on is re-inserted (renamed nodes are recent)."""
    left = sum(1 for k in mapping if k in d) if len(mapping) < len(d) else sum(1 for k in d if k in mapping)
    if not left:
        return
    tail = []
    for k in reversed(d):
        tail.append(k)
        left -= k in mapping
        if not left:
            break
    for k in reversed(tail):
        d[mapping.get(k, k)] = d.pop(k)


def relabel_many(G: Any, mapping: dict, keep_order: bool = True) -> None:
    """Rename nodes of the DiGraph ``G`` in place (``mapping``: old -> new, new names not in
    ``G``), keeping attributes and edges. ``keep_order``: each node keeps its place in the
    graph order the compiler reads (its block members' order); else each moves to the end,
    as ``nx.relabel_nodes`` does (which also walks every node per call)."""
    if not mapping:
        return
    if type(G) is not TrackedDiGraph:
        nx.relabel_nodes(G, mapping, copy=False)
        return
    if not keep_order:
        for old, new in mapping.items():
            _move_to_end(G, old, new)
        return
    succ, pred = G._succ, G._pred
    touched = {w for old in mapping for w in (*succ[old], *pred[old])}
    for d in (G._node, succ, pred):
        _rekey_tail(d, mapping)
    for w in touched:
        w = mapping.get(w, w)
        _rekey_tail(succ[w], mapping)
        _rekey_tail(pred[w], mapping)
    G._edits[0] += 1
    clear_nx_cache(G)


def _move_to_end(G: Any, old: str, new: str) -> None:
    """Rename ``old`` to ``new``, the node moving to the end of graph order (as networkx does)."""
    G.add_node(new, **G.nodes[old])
    edges = [(new, new if w == old else w, d) for _, w, d in G.out_edges(old, data=True)]
    edges += [(u, new, d) for u, _, d in G.in_edges(old, data=True) if u != old]
    G.remove_node(old)
    G.add_edges_from(edges)


def qualified(function: str, call: int, local: str) -> str:
    """A helper's local as a node name: ``layer.z``, ``layer_2.z`` on its second call."""
    return f"{function}.{local}" if call == 1 else f"{function}_{call}.{local}"


class HelperFrames:
    """The frames of the user's helper functions that recorded ops while ``top`` (the traced
    function's frame) ran, in the order they first did; read when the trace ends."""

    def __init__(self) -> None:
        self.top: FrameType | None = None
        self.frames: list[FrameType] = []
        self._seen: set[int] = set()
        self._kept: list[FrameType] = []

    def visit(self, frame: FrameType | None) -> None:
        """Walk from ``frame`` (an op being recorded) up to ``top``, keeping user frames."""
        seen = self._seen
        while frame is not None and frame is not self.top:
            if id(frame) in seen:      # this frame's callers were walked when it was first seen
                return
            if not is_internal(frame):
                seen.add(id(frame))
                self._kept.append(frame)   # alive while the trace runs: its id is not reused
                if frame.f_code.co_name.isidentifier():   # not <listcomp>, <lambda>, <genexpr>
                    self.frames.append(frame)
            frame = frame.f_back

    def rename(self, prog: Any) -> None:
        """Give each helper's final locals their qualified names (auto-named nodes only)."""
        calls: dict[CodeType, int] = {}
        wanted: dict[str, str] = {}
        for frame in self.frames:
            k = calls[frame.f_code] = calls.get(frame.f_code, 0) + 1
            for local, value in dict(frame.f_locals).items():
                if isinstance(value, Var) and value.program is prog and local.isidentifier():
                    wanted.setdefault(value.name, qualified(frame.f_code.co_name, k, local))
        prog._rename_auto_many(wanted, keep_order=False)
        self.frames, self._seen, self._kept, self.top = [], set(), [], None


def name_from_caller(prog: Any, target: str, depth: int = 2) -> None:
    """Soft names for the auto-named nodes held in the locals of the user's frame that
    called a building method of ``prog`` (``depth`` frames up), then for the unnamed
    intermediates of ``target``'s expression: ``y0.power``, ``y0.add`` (none while tracing)."""
    if prog._probe is not None:
        return
    frame = sys._getframe(depth)
    if frame is None or is_internal(frame):
        return
    roots = [target] if EXPRESSION_NAMES else []
    for local, value in frame.f_locals.items():
        if isinstance(value, Var) and value.program is prog and local.isidentifier():
            roots.append(_soft_name(prog, value.name, local))
    budget = EXPRESSION_MAX
    for root in filter(None, roots if EXPRESSION_NAMES else ()):
        todo, seen = collections.deque([root]), {root}
        # the expression of root: its auto-named ancestors, up to named nodes, nearest first, at
        # most EXPRESSION_MAX per call (a 10⁵-op chain given to output() is not an expression a
        # reader names, and each rename costs a pass over the graph's tail)
        while todo and budget > 0:
            for u in list(prog.graph.predecessors(todo.popleft())):
                if budget <= 0:
                    break
                new = None if u in seen else _soft_name(prog, u, f"{root}.{prog.graph.nodes[u].get('op')}")
                if new is not None:
                    budget -= 1
                    seen.add(new)
                    todo.append(new)


def _soft_name(prog: Any, old: str, stem: str) -> str | None:
    """Rename the auto-named defined node ``old`` to ``stem`` (``stem_2``, ... when taken),
    keeping it renameable (:meth:`ProgramBuilder._claim` may still take the name)."""
    soft: set[str] = prog.__dict__.setdefault("_soft", set())
    if old not in prog._auto or old in soft or prog.graph.nodes[old].get("role") != "defined":
        return None
    uses: dict[str, int] = prog.__dict__.setdefault("_soft_uses", {})
    new, k = stem, uses.get(stem, 1)
    while new in prog.graph:
        k += 1
        new = f"{stem}_{k}"
    uses[stem] = k
    if not prog._rename_auto_many({old: new}):     # keeping graph order: a block's members stay put
        return None
    prog._auto.add(new)
    soft.add(new)
    return new
