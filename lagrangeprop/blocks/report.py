"""One line on how a block was solved, for ``Solution.report()``: size, forward method, adjoint solver."""

from __future__ import annotations

import numpy as np

from ..compile.schedule import Block
from ..linalg import amg
from ..linalg.petsc import PETScInverse
from .eliminate import ReducedLU, inner_solver, state_size
from .layout import describe
from .state import BlockState

__all__ = ["summary"]


def _linear_kind(block: Block, state: BlockState) -> str:
    lu = state.lu
    inner = inner_solver(lu)
    on = f" of the Schur complement ({state_size(block)} states)" if isinstance(lu, ReducedLU) else ""
    if isinstance(inner, amg.AMGInverse):
        return ("cg" if inner.symmetric else "gmres") + " with an AMG V-cycle" + on
    if isinstance(inner, PETScInverse):
        return inner.describe() + on
    if inner is not None:
        return ("dense LU (LAPACK)" if hasattr(inner, "piv") else "sparse LU (splu)") + on
    choice = state.linear or state.used
    if choice == "direct" and state.A.__class__ is np.ndarray:    # blocks.dense's elimination, no LU made
        k = state_size(block)
        return (f"elimination onto the Schur complement ({k} state{'s' if k != 1 else ''}, floats), "
                "else the adjoint dense LU (LAPACK)")
    if choice == "sweep":
        return "transposed Gauss–Seidel sweeps"
    return choice or "not solved (no multiplier reached the block)"


def summary(block: Block, state: BlockState) -> str:
    """One line on how a block was solved: size, forward method and residual, adjoint solver.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program()
    >>> x = prog.input("x"); w = prog.variable("w")
    >>> _ = prog.residual(w, w**3 + w - x); _ = prog.output(w * 1.0, name="o")
    >>> sol = prog.solve(x=2.0)
    >>> blk = sol.schedule.blocks[0]
    >>> for part in summary(blk, sol._states[id(blk)]).split("; "):
    ...     print(part)  # doctest: +ELLIPSIS
    [w, w.power, w.add]: 3 unknowns (Newton on 1 state, the rest eliminated)
    forward newton, ...max|c| ...
    adjoint elimination onto the Schur complement (1 state, floats), else the adjoint dense LU (LAPACK)
    """
    n = block.size
    head = f"[{describe(block)}]: {n} unknown{'s' if n != 1 else ''}"
    k = state_size(block)
    if state.method == "newton" and k < n:
        head += f" (Newton on {k} state{'s' if k != 1 else ''}, the rest eliminated)"
    last = state.history[-1] if state.history else float("nan")
    return (f"{head}; forward {state.method}, {state.iterations} iteration{'s' if state.iterations != 1 else ''}, "
            f"scaled max|c| {last:.1e} (max_d |c_d|/s_d); adjoint {_linear_kind(block, state)}")
