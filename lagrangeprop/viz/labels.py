"""What a drawing shows of a node: its text label and its colours (DOT and matplotlib alike).

Inputs are green, constants grey, defined nodes blue, the output orange; the members of
each cyclic block share one of the block palette's colours. A label is the node's name and
op and, given a :class:`~lagrangeprop.Solution`, its value ``z`` and multiplier ``λ``.

Examples
--------
>>> _fmt(3.14159), _fmt([1.0, 2.0]), _fmt(list(range(5)))
('3.142', '[1, 2]', '(5,) |.|=5.48')
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from ..errors import InputError

__all__ = ["FILL", "BLOCK_FILL", "BLOCK_EDGE", "node_kind", "label_lines", "check_arguments"]

# fill colours by role; blocks get their own palette (colour-blind friendly, light)
FILL = {"input": "#b8e0b8", "constant": "#e6e6e6", "defined": "#cfe2f3", "output": "#fdd49e"}
BLOCK_FILL = ["#fbb4ae", "#decbe4", "#fed9a6", "#ffffcc", "#e5d8bd", "#fddaec", "#b3cde3"]
BLOCK_EDGE = ["#d7301f", "#6a51a3", "#e6550d", "#b8a800", "#8c6d31", "#c51b8a", "#2171b5"]


def node_kind(G: nx.DiGraph, n: str) -> str:
    """``"output"``, or the node's role: ``"input"``, ``"constant"`` or ``"defined"``."""
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


def label_lines(G: nx.DiGraph, n: str, sol: Any = None) -> list[str]:
    """The lines of node ``n``'s label: name, op (``= 0`` for a residual), then ``z`` and ``λ``."""
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


def check_arguments(prog: Any, sol: Any) -> None:
    """``prog`` is a Program and ``sol`` None or one of its Solutions (InputError otherwise)."""
    if not isinstance(getattr(prog, "graph", None), nx.DiGraph):
        raise InputError(f"expected an lp.Program, got {type(prog).__name__}")
    if sol is not None and getattr(sol, "program", None) is not prog:
        raise InputError(f"sol must be a Solution of program {prog.name!r} (from prog.solve), "
                         f"got {type(sol).__name__}")
