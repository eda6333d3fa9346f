"""One constraint's local rules as the interpreters apply them: its value and its pullback.

- value: ``z_d = f_d(z_pa(d))`` as :meth:`Primitive.value` returns it (:func:`as_value`);
- pullback: ``λ_u += sign·(∂f_d/∂z_u)ᵀ g`` for every differentiable argument ``u``
  (:func:`accumulate`), with the built-in rules called directly when that is exact;
- a cyclic block's adjoint: ``A_SSᵀ λ_S = b_S``, then ``λ_S`` pulled back to the arguments
  outside the block (:func:`block_adjoint`).

The interpreters and the generated code (:mod:`lagrangeprop.solve.compiled`) share these, so
both make the same numpy calls for a constraint the generated code does not write out itself.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> sched = lp.trace(lambda x, y: x * y, x=2.0, y=3.0).compile()
>>> step = sched.steps[0]
>>> vals = [np.float64(2.0), np.float64(3.0), np.float64(6.0)]
>>> lam = [None, None, np.float64(1.0)]
>>> accumulate(step, lam[2], vals[2], vals, lam)
>>> float(lam[0]), float(lam[1])
(3.0, 2.0)
"""

from __future__ import annotations

import numpy as np

from .. import blocks
from ..compile.schedule import Block, Step
from ..options import SolveOptions
from ..rules.arrays import unbroadcast

__all__ = ["as_value", "accumulate", "block_adjoint"]

_ND, _F64_TYPE, _F64_DTYPE = np.ndarray, np.float64, np.dtype(np.float64)


def as_value(out) -> np.ndarray:
    """An op's raw result as :meth:`Primitive.value` returns it (float64, or bool)."""
    out = np.asarray(out)
    return out if out.dtype == np.bool_ else out.astype(np.float64, copy=False)


def _exact(ct, like, g, args) -> bool:
    """Whether a raw rule result already is what :meth:`Primitive.vjp` would return:
    a float64 array (or scalar) of exactly the argument's shape that shares no memory with
    ``g`` or the arguments (a view of the rule's own temporary is fine)."""
    cls = ct.__class__
    if cls is _F64_TYPE:
        return getattr(like, "shape", None) == ()
    if cls is not _ND or ct.dtype is not _F64_DTYPE or ct.shape != getattr(like, "shape", None):
        return False
    return ct.base is None or not (np.may_share_memory(ct, g) or any(
        np.may_share_memory(ct, a) for a in args if a.__class__ is _ND))


# λ_u += sign·(∂op_d/∂z_u)ᵀ g: sign = +1 for explicit constraints (-∂c_d/∂z_u = ∂f_d/∂z_u),
# -1 for residual ones (c_d = r_d)
def accumulate(step: Step, g, ans, vals: list, lam: list, sign: float = 1.0,
               skip: dict | None = None) -> None:
    """``λ_u += sign · (∂op_d/∂z_u)ᵀ g`` for every differentiable argument ``u`` of ``d``.

    ``sign`` is +1 for explicit constraints (``-∂c_d/∂z_u = ∂f_d/∂z_u``) and -1 for
    residual ones (``c_d = r_d``); arguments in ``skip`` (block members) are left out.
    """
    args = [vals[a] for a in step.args]
    prim = step.prim
    # built-in rules called directly when g already has the output's shape; their result is
    # used as is when it is exact (no broadcast/unbroadcast/copy), else via Primitive.vjp
    rule = None if prim.user else prim.vjp_rule
    if rule is not None and getattr(g, "shape", 0) != getattr(ans, "shape", 1):
        rule = None
    for pos, u in step.diff:
        if skip is not None and u in skip:
            continue
        if rule is None:
            ct = prim.vjp(pos, g, ans, args, step.params)
            if ct is None:
                continue
        else:
            ct = rule(pos, g, ans, args, step.params)
            if ct is None:
                continue
            if ct is g or not _exact(ct, args[pos], g, args):   # what Primitive.vjp does after the rule
                what = f"the cotangent of argument {pos} of op {prim.name!r}"
                ct = np.array(unbroadcast(ct, np.shape(args[pos]), what), dtype=np.float64)
        if sign != 1.0:
            ct = -ct
        prev = lam[u]
        lam[u] = ct if prev is None else prev + ct


# A_SSᵀ λ_S = b_S - Σ_{d ∉ S} (∂c_d/∂z_S)ᵀ λ_d: the consumers outside S have already
# accumulated into lam[S]; then λ_u += -(∂c_s/∂z_u)ᵀ λ_s for the arguments u outside S
def block_adjoint(block: Block, vals: list, lam: list, states: dict, opts: SolveOptions) -> None:
    """Solve the block's multipliers into ``lam`` and pull them back to its arguments
    (``states``: the forward pass's block states, by ``id(block)``)."""
    rhs = [lam[n] for n in block.nodes]
    if all(r is None for r in rhs):
        return
    state = states[id(block)]
    lam_s = blocks.solve_adjoint(block, vals, rhs, state, opts)
    for s, ls in zip(block.steps, lam_s):
        lam[s.node] = ls
    for s, ls in zip(block.steps, lam_s):
        accumulate(s, ls, state.ans[s.node], vals, lam, -1.0 if s.residual else 1.0, block.position)
