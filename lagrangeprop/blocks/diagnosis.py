"""Why a block's linear solve at the solution failed, told truly (SPEC §1, §2 NonFiniteError).

A Krylov solver that stalls, or an LU that reports a singular matrix, may have met something
else: a right-hand side that is already NaN (a non-finite multiplier from outside the block), a
Jacobian entry that is infinite (``sqrt`` at 0 inside the block), or a Jacobian that is truly
singular. Each gets its own error, naming the node:

- a non-finite entry of ``A_SS`` at the solution: :class:`~lagrangeprop.NonFiniteError` naming the
  equation's node, its op and the unknown (the implicit function theorem does not apply there);
- an iterative solve that did not converge on a singular ``A_SS``: the factorization's
  :class:`~lagrangeprop.SingularSystemError` (SPEC: a singular block Jacobian in the adjoint raises it).

Examples
--------
>>> import numpy as np, lagrangeprop as lp
>>> sol = two_cycle()   # a = 0.5 b + x, b = 0.25 a (o = a + b) solved at x = 1: conftest.py
>>> blk = sol.schedule.blocks[0]
>>> non_finite_jacobian(blk, np.eye(3)) is None
True
>>> print(non_finite_jacobian(blk, np.array([[1.0, np.inf, 0], [0, 1, 0], [0, 0, 1]])))  # doctest: +ELLIPSIS
the Jacobian A_SS of block [a, b, a.multiply] has an infinite entry at the solution: ∂c/∂z of node 'a' (op ...
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Block
from ..errors import NonFiniteError
from .layout import describe, labels_of

__all__ = ["DIAGNOSE_MAX_UNKNOWNS", "non_finite_jacobian"]

DIAGNOSE_MAX_UNKNOWNS = 20000   # blocks up to this size are factored to explain a stalled Krylov solve


def non_finite_jacobian(block: Block, A, where: str = "at the solution") -> NonFiniteError | None:
    """The :class:`NonFiniteError` naming the first non-finite entry of ``A_SS`` (its equation's
    node, op and unknown), or ``None`` when every entry is finite."""
    if isinstance(A, np.ndarray):
        bad = ~np.isfinite(A)
        if not bad.any():
            return None
        rows, cols = np.nonzero(bad)
        r, c, v = int(rows[0]), int(cols[0]), float(A[rows[0], cols[0]])
    else:
        coo = sp.coo_matrix(A)
        bad = ~np.isfinite(coo.data)
        if not bad.any():
            return None
        k = int(np.flatnonzero(bad)[0])
        r, c, v = int(coo.row[k]), int(coo.col[k]), float(coo.data[k])
    member = int(np.searchsorted(block.offsets, r, side="right")) - 1
    labels = labels_of(block)
    kind = "NaN" if np.isnan(v) else "infinite"
    step = block.steps[member]
    return NonFiniteError(
        f"the Jacobian A_SS of block [{describe(block)}] has an {kind} entry {where}: ∂c/∂z of node "
        f"'{block.names[member]}' (op '{step.prim.name}', {'residual' if step.residual else 'explicit'} "
        f"constraint, equation {labels[r]}) with respect to {labels[c]} is {v}. The implicit function "
        "theorem needs a finite, nonsingular A_SS, so the multipliers and tangents are not defined here; the "
        "program's true derivative may still be finite (a limit): write the equation so that its derivative "
        "is finite at the root (e.g. v**2 = u instead of v = sqrt(u)), or solve at another point")
