"""The vector layout of a block: its members' values stacked into one vector ``z_S``.

Member ``k`` of a block S occupies ``z_S[offsets[k]:offsets[k] + sizes[k]]`` in the block order;
every block vector (values, residuals ``c_S``, multipliers ``λ_S``, tangents) uses this layout.

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]; blk.names
['a', 'b', 'a.multiply']
>>> z = gather(blk, sol._vals); [round(float(v), 6) for v in z]
[1.142857, 0.285714, 0.142857]
>>> [p.shape for p in split(blk, z)], describe(blk)
([(), (), ()], 'a, b, a.multiply')
"""

from __future__ import annotations

import numpy as np

from ..compile.schedule import Block
from ..linalg.diagnose import describe_names, entry_names
from .state import cache_of

__all__ = ["describe", "labels_of", "gather", "scatter", "stack", "split", "member_slices", "views",
           "residual_norm", "converged"]


def describe(block: Block) -> str:
    """``a, b, c`` (at most 8 names) for error messages."""
    return describe_names(block.names)


def labels_of(block: Block) -> list[str]:
    """A name per scalar unknown (``y1``, ``u[3]``), for singularity reports; cached."""
    c = cache_of(block)
    if c.labels is None:
        c.labels = entry_names(block.names, block.sizes, block.shapes)
    return c.labels


def gather(block: Block, vals: list) -> np.ndarray:
    """``z_S`` from the value slots."""
    return np.concatenate([np.ravel(vals[n]) for n in block.nodes]).astype(np.float64, copy=False)


def scatter(block: Block, vals: list, z: np.ndarray) -> None:
    """Write ``z_S`` back into the value slots (copies)."""
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        vals[n] = np.array(z[off:off + size]).reshape(shape)


def stack(block: Block, parts: list) -> np.ndarray:
    """One flat vector from per-member parts (``None`` = zero)."""
    out = np.zeros(block.size)
    for (a, b, shape), p in zip(member_slices(block)[0], parts):
        if p is not None:       # broadcast into the member's slice
            if shape is None:
                out[a:b] = p
            else:
                out[a:b].reshape(shape)[...] = p
    return out


def split(block: Block, x: np.ndarray) -> list:
    """Per-member arrays (member shapes) from a flat vector."""
    return [np.array(x[off:off + size]).reshape(shape)
            for off, size, shape in zip(block.offsets, block.sizes, block.shapes)]


def member_slices(block: Block) -> tuple:
    """Per member ``(start, stop, shape or None)`` (``None``: a flat slice already has the member's
    shape), and the explicit members' positions; cached per block."""
    c = cache_of(block)
    if c.layout is None:
        sl = tuple((off, off + size, None if shape == (size,) else shape)
                   for off, size, shape in zip(block.offsets, block.sizes, block.shapes))
        c.layout = (sl, tuple(k for k, s in enumerate(block.steps) if not s.residual))
    return c.layout


def views(block: Block, x: np.ndarray) -> list:
    """Per-member views (member shapes) into a flat block vector."""
    return [x[a:b] if shape is None else x[a:b].reshape(shape) for a, b, shape in member_slices(block)[0]]


def residual_norm(c: np.ndarray) -> float:
    """``max|c|`` (0 for an empty vector; NaN when ``c`` holds one)."""
    return float(np.abs(c).max()) if c.size else 0.0


def converged(c: np.ndarray, z: np.ndarray, tol: float) -> bool:
    """The explicit constraints' test, per entry (SPEC §1 "Scale"): ``|c_d| <= tol·max(1, |z_d|)``
    for every ``d`` (never against ``max|z|`` over the block). Residual constraints are judged by
    :func:`lagrangeprop.blocks.scale.constraint_scale`."""
    if not c.size:
        return True
    with np.errstate(all="ignore"):
        r = np.abs(c) / np.maximum(1.0, np.abs(z))
    return bool(np.all(r <= tol))
