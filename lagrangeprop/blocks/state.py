"""The typed state of a cyclic block: what is kept per block between solves, and per forward solve.

- :class:`BlockCache` lives on the compiled block (``Block.cache``, filled lazily by
  :func:`cache_of`, since ``compile`` cannot import ``blocks``): structure derived once from the
  block's constraints, memos of the assembly, the policy's measurements and decisions, the AMG
  hierarchy, and the last answers that warm-start the next iterative solve.
- :class:`BlockState` is what one forward solve leaves for the adjoint and tangent solves at
  that solution.

Each field's documentation names the module that writes it; everyone reads it as an attribute.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = cubic()   # the residual w³ + w - x = 0 (o = w) solved at x = 2: conftest.py
>>> blk = sol.schedule.blocks[0]
>>> cache_of(blk) is blk.cache, blk.cache.use_amg, sol._states[id(blk)].method
(True, False, 'newton')
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Block

__all__ = ["BlockCache", "BlockState", "cache_of"]


@dataclass(eq=False)
class BlockCache:
    """What a block keeps between solves (``Block.cache``). ``None`` (``False`` where ``None`` is a
    valid answer) means "not computed yet".

    Structure, value-independent, computed once per block:

    ``evaluators``
        Per member, a bare numpy function for its op or ``None`` (the op's ``value``); residual.py.
    ``has_jac``
        Whether every member op has a sparse Jacobian rule; residual.py.
    ``edges``
        Per member, its block edges ``(m, pos, kind, partial)``; linearization.py.
    ``layout``
        Per member ``(start, stop, shape or None)`` and the explicit members' positions; layout.py.
    ``labels``
        A name per scalar unknown (``u[3]``) for singularity reports; layout.py.
    ``split``
        ``(states, intermediates)`` member positions of the elimination; eliminate.py.
    ``indices``, ``spans``
        Scalar indices of the states and the intermediates, and the same as slices where they are
        contiguous; eliminate.py.
    ``elim_plan``, ``sweep_plan``, ``feedback``
        The precomputed loops of Newton on the states, of a Gauss–Seidel sweep, and which members
        read a previous sweep's value; newton.py, fixed_point.py.
    ``residual_members``
        ``(k, start, stop)`` of the residual members; scale.py.
    ``sums``
        Whether a residual member sums terms (matmul, dot, sum, mean), so its rounding is allowed
        for (``constraint_noise``); scale.py.
    ``dense``
        ``False``: not decided; ``None``: not a dense-Newton block; else its generated residual and
        Jacobian (:class:`lagrangeprop.compile.blockgen.BlockCode`); dense.py.

    Assembly memos (the sparsity pattern of ``A_SS`` is fixed per block):

    ``pattern``
        The index maps of the CSC assembly; assembly.py.
    ``ew_plan``
        ``False``: not decided; ``None``: not every edge is elementwise; else ``(pattern, plan)``,
        the dense fill straight from the partial rules; assembly.py.
    ``partition_maps``
        Index maps of the (states, intermediates) partition of ``A_SS``; eliminate.py.
    ``schur_diag``
        ``(indices, indptr, slots)``: where the diagonal sits in the data of a CSR sensitivity with those
        (identical) index arrays, for ``chain_schur``'s diagonal updates; eliminate.py.
    ``const_jac``
        Jacobians of edges with a constant sparse operand, ``{(k, pos): [W, J, Jᵀ]}`` (``Jᵀ`` ``None`` until a
        product needs it); linearization.py.
    ``lin``
        A weak reference to the current linearization (whoever needs it keeps it alive); linearization.py.

    Policy measurements and decisions (policy.py):

    ``rate``
        The estimated Gauss–Seidel contraction rate ρ(M⁻¹N).
    ``fill``
        The largest ``nnz(L+U)/nnz(A)`` of the block's factorizations (written where they are made:
        newton.py, linear.py).
    ``use_amg``, ``amg_failed``
        Whether this solve's linear systems go to AMG; whether AMG already failed on the block.
    ``use_petsc``
        Whether this solve's linear systems go to PETSc (``linear_solver="petsc"``, linalg/petsc.py).

    Solver reuse:

    ``amg``
        The pyamg hierarchy (:func:`lagrangeprop.linalg.amg.hierarchy_for`).
    ``warm_adjoint``, ``warm_tangent``
        ``(b, x)`` of the last iterative ``A_SSᵀ x = b`` / ``A_SS x = b``: the next solve's warm
        start when its right-hand side is close (sweeps.py: ``remember_answer``, ``warm_start``).
    """

    evaluators: list | None = None
    has_jac: bool | None = None
    edges: list | None = None
    layout: tuple | None = None
    labels: list[str] | None = None
    split: tuple[list[int], list[int]] | None = None
    indices: tuple[np.ndarray, np.ndarray] | None = None
    spans: tuple | None = None
    elim_plan: tuple | None = None
    sweep_plan: list | None = None
    feedback: tuple[list[int], list[int]] | None = None
    residual_members: list[tuple[int, int, int]] | None = None
    sums: bool | None = None
    dense: Any = False
    pattern: Any = None
    ew_plan: Any = False
    partition_maps: Any = None
    schur_diag: tuple | None = None
    const_jac: dict = field(default_factory=dict)
    lin: weakref.ref | None = None
    rate: float | None = None
    fill: float = 0.0
    use_amg: bool = False
    amg_failed: bool = False
    use_petsc: bool = False
    amg: Any = None
    warm_adjoint: tuple[np.ndarray, np.ndarray] | None = None
    warm_tangent: tuple[np.ndarray, np.ndarray] | None = None


def cache_of(block: Block) -> BlockCache:
    """The block's :class:`BlockCache`, made on first use."""
    c = block.cache
    if c is None:
        c = block.cache = BlockCache()
    return c


@dataclass(eq=False)
class BlockState:
    """What a forward block solve leaves for the adjoint and tangent solves at its solution.

    ``ans``
        Op outputs of the members at the solution (the VJP/JVP rules' ``ans``).
    ``lu``, ``A``
        A solver of ``A_SS`` (LU, Schur-complement LU or AMG) and ``A_SS`` at the solution, when
        a direct method made them.
    ``iterations``, ``history``, ``method``
        The forward method used, its iteration count and scaled-residual history.
    ``lin``
        The local partials at the solution, kept alive as long as the state.
    ``stale_lu``
        The factorization of the last Newton iterate when ``A_SS`` moved since (a preconditioner).
    ``linear``
        The linear solver ``linear_solver="auto"`` chose for this solution (policy.py).
    ``used``
        The linear solver the last adjoint or tangent solve was asked to use.
    ``ilu``
        ``False``: not built; ``None``: spilu failed; else the ILU preconditioner of ``A_SS``.
    ``partition``
        ``A_SS`` split into states and intermediates for the Schur-complement Krylov solve.
    """

    ans: dict[int, np.ndarray] = field(default_factory=dict)
    lu: Any = None
    A: sp.spmatrix | np.ndarray | None = None
    iterations: int = 0
    history: list[float] = field(default_factory=list)
    method: str = ""
    lin: Any = None
    stale_lu: Any = None
    linear: str | None = None
    used: str | None = None
    ilu: Any = False
    partition: Any = None
