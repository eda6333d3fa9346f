"""Drawings of programs and solutions (matplotlib optional)."""

from .drawing import draw, graph_blocks, to_dot

__all__ = ["draw", "graph_blocks", "to_dot"]
