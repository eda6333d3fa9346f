"""What every forward method of a block shares: the starting point, the limits, the failure report.

Block nodes start from the user's ``guess``, else 0 (SPEC §1), and explicit members without a
guess are then evaluated once in block order. A method that runs out of iterations or meets a
non-finite residual raises :class:`ConvergenceError` naming the block, the method, the last scaled
residual and what to try instead.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); y = prog.variable("y")
>>> _ = prog.define(y, 0.5 * lp.cos(y) + x); _ = prog.output(y * 1.0, name="o")
>>> sol = prog.solve(x=1.0)
>>> blk = sol.schedule.blocks[0]; vals = list(sol._vals)
>>> first = blk.nodes[0]                       # the guess is keyed by node id
>>> initial(blk, vals, {first: 2.0}, presweep=False); float(vals[first])
2.0
>>> MAXITER["newton"]
50
"""

from __future__ import annotations

import numpy as np

from ..compile.schedule import Block
from ..errors import ConvergenceError
from .layout import describe
from .residual import evaluate, evaluators
from .state import BlockState

__all__ = ["MAXITER", "initial", "fail", "finite_or_fail", "step_size", "settled"]


MAXITER = {"newton": 50, "newton-krylov": 100, "fixed-point": 2000, "anderson": 1000}


# A residual's scale is the size of its terms (blocks.scale): a large term that cancels, such as the
# reference enthalpy in (h0 + cp·T) - (h0 + cp·T_in) - Q or the 1e10 in exp(w) + 1e10 - (x + 1e10), makes
# |r| <= tol·s hold far from the root (w = 1 for ln 2). Newton's iterates then still move by more than the
# root's accuracy: a point counts as converged only once the last step was small too, ``step_size <=
# sqrt(tol)`` (a quadratically convergent step of that size leaves an error of order tol).
def step_size(z_new, z_old) -> float:
    """``max_j |Δz_j| / max(1, |z_j|)``: how far the last step moved the block, per entry."""
    new, old = np.asarray(z_new, dtype=np.float64), np.asarray(z_old, dtype=np.float64)
    if not new.size:
        return 0.0
    with np.errstate(all="ignore"):
        return float(np.max(np.abs(new - old) / np.maximum(1.0, np.abs(new))))


def settled(moved: float, tol: float) -> bool:
    """Whether a step of :func:`step_size` ``moved`` ends the iteration (``moved <= sqrt(tol)``)."""
    return moved <= tol ** 0.5


def initial(block: Block, vals: list, guess: dict, presweep: bool = True) -> None:
    """Members start from the user's guess, else 0 (SPEC §1); explicit members without a
    guess are then evaluated once in block order (one Gauss–Seidel sweep) when finite."""
    for n, shape in zip(block.nodes, block.shapes):
        if n in guess:
            g = np.asarray(guess[n], dtype=np.float64)
            vals[n] = g.copy() if g.shape == shape else np.array(np.broadcast_to(g, shape))
        else:
            vals[n] = np.zeros(shape)
    if not presweep:
        return
    with np.errstate(all="ignore"):
        for k, (s, fn) in enumerate(zip(block.steps, evaluators(block))):
            if not s.residual and s.node not in guess:
                v = evaluate(block, k, vals, fn)
                if np.isfinite(v).all():
                    vals[s.node] = v


def fail(block: Block, method: str, state: BlockState, tol: float, maxiter: int, why: str = "") -> ConvergenceError:
    """The ConvergenceError of ``method`` on this block (``why``: instead of "in maxiter iterations")."""
    last = state.history[-1] if state.history else float("nan")
    hint = {"newton": "method='anderson' (explicit blocks) or a guess= closer to the solution",
            "newton-krylov": "method='newton' or a guess= closer to the solution",
            "fixed-point": "method='newton' (the sweep may not contract) or 'anderson'",
            "anderson": "method='newton' (the sweep may not contract)"}[method]
    return ConvergenceError(
        f"block [{describe(block)}] did not converge with {method}"
        + (f" ({why})" if why else f" in {maxiter} iterations")
        + f": last scaled residual max|c_d|/s_d {last:.3e}, tol {tol:g}; raise maxiter=, or try {hint}",
        nodes=block.names, iterations=state.iterations, history=state.history)


def finite_or_fail(block: Block, method: str, state: BlockState, tol: float, maxiter: int,
                   c: np.ndarray, z: np.ndarray) -> None:
    """Raise :func:`fail` when the residual ``c`` or the iterate ``z`` is not finite."""
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(z))):
        state.history.append(float("nan"))
        raise fail(block, method, state, tol, maxiter, f"non-finite residual at iteration "
                    f"{state.iterations}; give a better starting point with guess=")
