"""Cyclic blocks on the tape: Newton's iteration unrolled in the tape library.

``z_{k+1} = z_k - α_k J(z_k)⁻¹ c_S(z_k)`` with ``J`` the tape's own dense Jacobian of the
block residual ``c_S(z) - ε_S``; differentiating through the iteration converges to the
implicit-function derivative ``-A_SS⁻¹ ∂c_S/∂x`` as the iterations grow (SPEC §1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..blocks import constraint_scale, scaled_max, split_members
from ..compile.schedule import Block
from .backends import Backend

__all__ = ["MAX_UNROLL", "unroll"]

MAX_UNROLL = 50


def _block_residual(block: Block, be: Backend, vals: list, eps: dict, z: Any) -> Any:
    """``c_S(z) - ε_S``: explicit ``z_d - f_d - ε_d``, residual ``r_d - ε_d``."""
    local = list(vals)
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        local[n] = be.reshape(z[off:off + size], shape)
    parts = []
    for s in block.steps:
        a = be.apply(s, [local[u] for u in s.args])
        c = a if s.residual else local[s.node] - a
        parts.append(be.ravel(c - be.eps(eps, s.node)) if s.node in eps else be.ravel(c))
    return be.concat(parts)


def _start(block: Block, be: Backend, vals: list, eps: dict, guess: dict) -> Any:
    """The solver's documented start: the guess, else 0, then one in-order sweep of the
    explicit members without a guess (kept where finite)."""
    for n, shape in zip(block.nodes, block.shapes):
        vals[n] = be.constant(np.broadcast_to(np.asarray(guess[n], dtype=np.float64), shape).copy()
                              if n in guess else np.zeros(shape))
    with np.errstate(all="ignore"):
        for s in block.steps:
            if not s.residual and s.node not in guess:
                v = be.apply(s, [vals[u] for u in s.args])
                v = v + be.eps(eps, s.node) if s.node in eps else v
                if np.all(np.isfinite(be.numeric(v))):
                    vals[s.node] = v
    return be.concat([be.ravel(vals[n]) for n in block.nodes])


def _substitute(block: Block, be: Backend, vals: list, eps: dict, z: Any) -> Any:
    """``z`` with the block's explicit intermediates re-evaluated from its states
    (:func:`~lagrangeprop.blocks.eliminate.split_members`; ``z_d = f_d + ε_d`` in evaluation order).

    A full-space Newton step linearizes ``z_e = exp(z_d)`` too, so after one step the
    intermediates of a diode ``Is·exp(w/Vt) - x`` are off by orders of magnitude and every
    step is cut back to nothing; from consistent intermediates the state part of the
    full-space step is the reduced (Schur-complement) Newton step, and substituting makes
    the replay Newton on the states, as the block solver iterates."""
    _, inter = split_members(block)
    if not inter:
        return z
    local = list(vals)
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        local[n] = be.reshape(z[off:off + size], shape)
    with np.errstate(all="ignore"):
        for k in inter:
            s = block.steps[k]
            v = be.apply(s, [local[u] for u in s.args])
            local[s.node] = v + be.eps(eps, s.node) if s.node in eps else v
    return be.concat([be.ravel(local[n]) for n in block.nodes])


class _Numbers:
    """The numbers behind a tape's value slots (read lazily), for :func:`constraint_scale`."""

    def __init__(self, vals: list, be: Backend):
        self.vals, self.be, self.own = vals, be, {}

    def __getitem__(self, u: int):
        if u in self.own:
            return self.own[u]
        v = self.vals[u]
        return v if v is None or sp.issparse(v) or isinstance(v, np.ndarray) else self.be.numeric(v)

    def __setitem__(self, u: int, v) -> None:
        self.own[u] = v


# Newton unrolled on the tape: z_{k+1} = z_k - α_k J(z_k)⁻¹ c_S(z_k). The step length α_k
# (backtracking on the scaled max_d |c_d|/s_d) is a constant on the tape; at convergence α = 1 and the
# derivative of z_k tends to the implicit-function derivative -A_SS⁻¹ ∂c_S/∂x.
def unroll(block: Block, be: Backend, vals: list, eps: dict, guess: dict,
            iterations: int | None) -> int:
    z = _start(block, be, vals, eps, guess)

    def c_of(zz):
        return _block_residual(block, be, vals, eps, zz)

    c = c_of(z)
    it = 0
    limit = MAX_UNROLL if iterations is None else iterations

    def scale_at(zz) -> np.ndarray:
        """Each constraint's own scale ``s_d`` at ``zz``, as the block solvers judge it (SPEC §1
        "Scale", lagrangeprop.blocks.scale): a 1e15 intermediate must not stop the replay at the guess."""
        num = _Numbers(vals, be)
        for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
            num[n] = be.numeric(zz[off:off + size]).reshape(shape)
        return constraint_scale(block, num)

    def scaled(zz, cc) -> float:
        """``max_d |c_d| / s_d``: the stopping test."""
        return scaled_max(be.numeric(cc), scale_at(zz)) if block.size else 0.0
    extra = 2          # auto mode: steps taken after the residual reached round-off
    prev = np.inf
    while it < limit:
        norm = scaled(z, c)
        if not np.isfinite(norm):
            raise FloatingPointError(f"block [{', '.join(block.names)}]: the unrolled Newton "
                                     f"iteration on the {be.name} tape diverged at step {it}")
        # round-off reached: tiny, or small and no longer shrinking
        if iterations is None and (norm <= 1e-15 or (norm <= 1e-11 and norm > 0.25 * prev)):
            if extra == 0:
                break
            extra -= 1
        prev = norm
        delta = be.solve(be.jacobian(c_of, z), c)
        # backtracking on the scaled ||c / s||₂ with s fixed at z (Armijo, as the block solver's
        # Newton): the Newton step descends on it, where a max-norm test can stall short of the root
        s = scale_at(z) if block.size else 1.0
        merit = float(np.linalg.norm(be.numeric(c) / s))
        alpha = 1.0
        while True:
            z_new = _substitute(block, be, vals, eps, z - alpha * delta if alpha != 1.0 else z - delta)
            c_new = c_of(z_new)
            new = float(np.linalg.norm(be.numeric(c_new) / s))
            if (np.isfinite(new) and new <= (1 - 1e-4 * alpha) * merit) or alpha < 1e-3 or merit == 0:
                break
            alpha *= 0.5
        z, c, it = z_new, c_new, it + 1
    for n, off, size, shape in zip(block.nodes, block.offsets, block.sizes, block.shapes):
        vals[n] = be.reshape(z[off:off + size], shape)
    return it
