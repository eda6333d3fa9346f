"""The rounding scale of every multiplier: the per-node floors of :func:`~lagrangeprop.check`.

A multiplier ``λ_d`` is a sum of products of partials; its round-off is bounded by ``eps``
times the magnitude of those terms, not by ``|λ_d|`` (a cancelling sum such as
``sum(softmax(x))`` has ``λ = 0`` from terms of size 1). :func:`magnitudes` computes that
magnitude for every node in one back-substitution, so each node is judged on its own
scale (SPEC §1 "Scale"), never against the program's largest multiplier.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sum(lp.softmax(x)), x=np.zeros(3))
>>> sol = prog.solve(x=np.zeros(3))
>>> mu, nu = magnitudes(prog.compile(), sol.values, sol.multipliers, np.array(1.0),
...                     np.random.default_rng(0))
>>> float(np.max(np.abs(sol.grad["x"]))) < 1e-15, bool(np.all(mu["x"] > 0))
(True, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..compile.schedule import Step
from .tape import gc_paused

if TYPE_CHECKING:
    from ..compile.schedule import Schedule

__all__ = ["EPS", "FLOOR", "magnitudes"]

EPS = np.finfo(np.float64).eps
FLOOR = 64 * EPS                   # rounding floor of a multiplier: FLOOR · ν_d (see magnitudes)

# The partial of tanh is 1 - t² here and 1/cosh²x on autograd's tape: 0 against 1e-20 where
# t rounds to 1, both right to round-off of terms of size 1 + t². Such a partial injects the
# error eps·(its formula's terms)·μ_d, not eps·|partial|·μ_d.
TERMS = {"tanh": lambda ans: 1.0 + np.square(ans), "sigmoid": lambda ans: np.abs(ans) * (1.0 + np.abs(ans))}


# Two back-substitutions with every term taken positive (w_d = 1 and N(0, 1) weights, so
# that a sum of terms that cancels for w = 1, like the rows of softmax's VJP, shows):
#   μ_u = [u = o]·|seed| + Σ_d |(∂f_d/∂z_u)ᵀ (w_d ⊙ μ_d)|           the size of λ_u's terms
#   ν_u = [u = o]·|seed| + Σ_d |(∂f_d/∂z_u)ᵀ (w_d ⊙ ν_d)| + T_du(μ_d)  their round-off / eps
# T_du = the rounding a product with the partial injects (|.| of the same VJP of μ_d, or
# TERMS). For a chain μ_u = |λ_u| and ν_u ≈ depth·|λ_u|; a cancelling λ_u (sum(softmax)) keeps
# the size of its terms. Node d passes the tape comparison within FLOOR·ν_d of its own scale.
@gc_paused
def magnitudes(sched: Schedule, values: dict, lam: dict, seed: np.ndarray,
               rng: np.random.Generator) -> tuple[dict, dict]:
    """``(μ, ν)`` for every input and defined node (name -> array of its shape), one pass.

    A cyclic block is solved as one linear system, so its members get the block's own scale
    ``max_S |λ|`` on top of what reaches them from outside."""
    vals: list = [None] * len(sched.names)
    for i, v in sched.constants:
        vals[i] = v
    for i, name in enumerate(sched.names):
        if vals[i] is None and name in values:
            vals[i] = np.asarray(values[name], dtype=np.float64)
    mu: list = [None] * len(sched.names)
    nu: list = [None] * len(sched.names)
    mu[sched.output] = np.broadcast_to(np.abs(seed), sched.shapes[sched.output]).astype(np.float64)
    nu[sched.output] = mu[sched.output]

    def add(acc: list, u: int, ct) -> None:
        acc[u] = ct if acc[u] is None else acc[u] + ct

    def size(step, pos, g, ans, args):
        """max(|VJP(g)|, |VJP(w ⊙ g)|), or None for a zero partial."""
        ct = step.prim.vjp(pos, g, ans, args, step.params)
        if ct is None or g.size <= 1:
            return None if ct is None else np.abs(ct)
        return np.maximum(np.abs(ct), np.abs(step.prim.vjp(pos, g * rng.standard_normal(g.shape), ans, args,
                                                             step.params)))

    def push(step, skip=()) -> None:
        m, n = mu[step.node], nu[step.node]
        args = [vals[a] for a in step.args]
        ans = step.prim.value(args, step.params) if step.residual else vals[step.node]
        terms = TERMS.get(step.prim.name)
        for pos, u in step.diff:
            if u in skip:
                continue
            if m.size == 1:       # VJPs are linear in g: one call with g = 1 serves μ and ν
                unit = size(step, pos, np.ones(m.shape), ans, args)
                if unit is None:
                    continue
                cm, cn = unit * m.reshape(()), unit * n.reshape(())
            else:
                cm = size(step, pos, m, ans, args)
                if cm is None:
                    continue
                cn = size(step, pos, n, ans, args) if n is not m else cm
            inject = m * terms(ans) if terms is not None and np.shape(args[pos]) == np.shape(ans) else cm
            add(mu, u, cm)
            add(nu, u, cn + inject)

    for item in reversed(sched.steps):
        if type(item) is Step:
            if mu[item.node] is not None and item.prim.differentiable:
                push(item)
            continue
        scale = max(float(np.max(np.abs(lam[sched.names[n]]), initial=0.0)) for n in item.nodes)
        for st in item.steps:
            k = st.node
            mu[k] = scale + (0.0 if mu[k] is None else mu[k]) + np.zeros(sched.shapes[k])
            nu[k] = mu[k] + (0.0 if nu[k] is None else nu[k])
        members = set(item.nodes)
        for st in item.steps:
            if st.prim.differentiable:
                push(st, members)

    def named(acc: list) -> dict:
        out = {}
        for i in [*sched.inputs, *sched.defined]:
            a, shape = acc[i], sched.shapes[i]
            out[sched.names[i]] = (np.zeros(shape) if a is None else np.asarray(a, dtype=np.float64)
                                   if np.shape(a) == shape else np.broadcast_to(a, shape).astype(np.float64))
        return out
    return named(mu), named(nu)
