"""The multipliers: ∂L/∂z = 0, i.e. ``Aᵀ λ = e_o·seed`` (SPEC §1, condition 2).

On the acyclic part ``A = I - J`` is unit lower triangular in topological order and
the solve is back-substitution, read in reverse like autograd's ``backward_pass``:
``λ_u = [u = o]·seed + Σ_{d ∈ children(u)} (∂f_d/∂z_u)ᵀ λ_d``. A cyclic block S
solves ``A_SSᵀ λ_S = b_S`` with everything outside S already accumulated into
``b_S`` (:mod:`lagrangeprop.blocks.policy`). Inputs end with ``λ_x = ∂L/∂x = ∇_x z_o``.
Grouped scalar constraints (:func:`~lagrangeprop.compile.schedule.plan_of`) accumulate their
terms into a register array ``Λ`` with one scatter-add per argument position; a node's
register entry joins ``λ`` before its own constraint is processed.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: x * x, x=3.0).solve(x=3.0)
>>> float(sol.grad["x"])
6.0
"""

from __future__ import annotations

import numpy as np

import math

from .. import blocks
from ..errors import NonFiniteError, ShapeError
from .forward import _finite
from ..options import SolveOptions
from ..rules.registry import unbroadcast
from ..compile.schedule import GROUP, SMALL, STEP, Schedule, Step, keep, plan_of, take

__all__ = ["run_adjoint", "accumulate", "check_finite_pass"]

_ND, _F64, _F64DT = np.ndarray, np.float64, np.dtype(np.float64)


def _exact(ct, like, g, args) -> bool:
    """Whether a raw rule result already is what :meth:`Primitive.vjp` would return:
    a float64 array (or scalar) of exactly the argument's shape that shares no memory with
    ``g`` or the arguments (a view of the rule's own temporary is fine)."""
    cls = ct.__class__
    if cls is _F64:
        return getattr(like, "shape", None) == ()
    if cls is not _ND or ct.dtype is not _F64DT or ct.shape != getattr(like, "shape", None):
        return False
    return ct.base is None or not (np.may_share_memory(ct, g) or any(
        np.may_share_memory(ct, a) for a in args if a.__class__ is _ND))


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


def _accumulate_raw(fast: tuple, g, ans, vals: list, lam: list) -> None:
    """:func:`accumulate` for a ``fast`` plan step (elementwise op, float64 arguments):
    the op's cotangent ``g · ∂f/∂z_u`` from its bare partials, summed over broadcast axes
    exactly as :func:`~lagrangeprop.rules.registry.unbroadcast` (axes precomputed by the plan).
    A ±1 partial gives ``±g`` itself (multipliers are never modified in place, so sharing
    ``g`` is safe); ``prev - g`` equals ``prev + (-1·g)`` exactly in IEEE arithmetic."""
    ids = fast[1]
    for u, d, c, red, a in fast[2]:
        prev = lam[u]
        if c is None:
            if a >= 0:
                ct = g * vals[a]
            else:
                if len(ids) == 1:
                    p = d(ans, vals[ids[0]])
                elif len(ids) == 2:
                    p = d(ans, vals[ids[0]], vals[ids[1]])
                else:
                    p = d(ans, *[vals[k] for k in ids])
                if p.__class__ is _ND and p.base is None and p.shape == g.shape and p.dtype is _F64DT \
                        and p is not ans and not any(p is vals[k] for k in ids):
                    # a fresh temporary of the partial (no value, argument or multiplier is
                    # it): scale it in place, g * p elementwise as the product below
                    ct = np.multiply(g, p, out=p)
                else:
                    ct = g * p
        elif red is None:
            if c == 1.0:
                lam[u] = g if prev is None else prev + g
            else:
                lam[u] = -g if prev is None else prev - g
            continue
        else:
            ct = g
        if red is not None:
            lead, keep = red
            if lead:
                ct = ct.sum(axis=lead)
            if keep:
                ct = ct.sum(axis=keep, keepdims=True)
            if c == -1.0:
                ct = -ct
        lam[u] = ct if prev is None else prev + ct


def _accumulate_matmul(step: Step, fast: tuple, g, vals: list, lam: list, bufs: list) -> None:
    """:func:`accumulate` for ``a @ b`` with float64 matrices: the rule's products ``g bᵀ``
    and ``aᵀ g`` (the same numpy calls), large ones into a free pool buffer."""
    a, b = vals[fast[1][0]], vals[fast[1][1]]
    if g.__class__ is not _ND or g.dtype is not _F64DT or g.ndim != 2:
        accumulate(step, g, vals[step.node], vals, lam)
        return
    for pos, u, k in fast[4]:
        buf = take(bufs, k) if k >= 0 else None
        ct = np.matmul(g, b.T, out=buf) if pos == 0 else np.matmul(a.T, g, out=buf)
        if k >= 0 and buf is None:
            keep(bufs, k, ct)
        del buf
        prev = lam[u]
        # ct is this call's own array: the sum goes into it (prev + ct, the same numbers)
        lam[u] = ct if prev is None else np.add(prev, ct, out=ct)


def _pull(lam: list, i: int, v) -> None:
    prev = lam[i]
    lam[i] = v if prev is None else prev + v


def run_adjoint(sched: Schedule, vals: list, seed: np.ndarray, states: dict,
                opts: SolveOptions) -> list:
    """All multipliers (``None`` where identically zero), indexed by node id."""
    plan = plan_of(sched)
    bufs = plan.bufs
    lam: list = [None] * len(sched.names)
    # a private copy: ±1 partials pass multipliers on without copying, and no gradient
    # may alias the caller's seed array
    lam[sched.output] = seed.copy() if seed.__class__ is _ND else seed
    if plan.nslots:
        S = getattr(vals, "scalars", None)
        if S is None or len(S) != plan.nslots:
            S = np.array([vals[i] for i in plan.slot_ids], dtype=np.float64)
        L = np.zeros(plan.nslots)
    with np.errstate(all="ignore"):
        for kind, item, extra, fast in reversed(plan.items):
            if kind is STEP:
                if extra >= 0:
                    _pull(lam, item.node, L[extra])
                g = lam[item.node]
                if g is not None:
                    if fast is not None:
                        sc = fast[5]
                        if sc is not None:   # a scalar step, inline (_accumulate_raw's numbers)
                            u, d, x, c = sc
                            prev = lam[u]
                            if d is not None:
                                ct = g * d(vals[item.node], vals[x])
                            elif x >= 0:
                                ct = g * vals[x]
                            elif c == 1.0:
                                lam[u] = g if prev is None else prev + g
                                continue
                            else:
                                lam[u] = -g if prev is None else prev - g
                                continue
                            lam[u] = ct if prev is None else prev + ct
                        elif fast[2] is not None:
                            _accumulate_raw(fast, g, vals[item.node], vals, lam)
                        else:
                            _accumulate_matmul(item, fast, g, vals, lam, bufs)
                    else:
                        try:
                            accumulate(item, g, vals[item.node], vals, lam)
                        except ShapeError as exc:
                            raise ShapeError(f"node {sched.names[item.node]!r}: {exc}") from None
            elif kind is GROUP:
                g = L[item.out]
                for k, i in item.mixed:
                    if lam[i] is not None:
                        g[k] += lam[i]
                for i, v in zip(item.nodes, g):
                    lam[i] = v
                ans, args = S[item.out], [S[a] for a in item.args]
                partials = item.prim.raw_partials
                for pos, sel, slots, unique in item.diff:
                    if partials[pos] is None:
                        continue
                    ct = g * partials[pos](ans, *args)   # every member's cotangent at once
                    if sel is not None:
                        ct = ct[sel]
                    if unique:
                        L[slots] += ct
                    else:
                        np.add.at(L, slots, ct)
            else:
                for k, i in extra:
                    _pull(lam, i, L[k])
                rhs = [lam[n] for n in item.nodes]
                if all(r is None for r in rhs):
                    continue
                state = states[id(item)]
                lam_s = blocks.solve_adjoint(item, vals, rhs, state, opts)
                for s, ls in zip(item.steps, lam_s):
                    lam[s.node] = ls
                for s, ls in zip(item.steps, lam_s):
                    accumulate(s, ls, state.ans[s.node], vals, lam,
                               -1.0 if s.residual else 1.0, item.position)
    for k, i in plan.finals:
        _pull(lam, i, L[k])
    check_finite_pass(sched, vals, lam, "multiplier")
    return lam


# ---------------------------------------------------------------- finiteness
# SPEC §2: a multiplier (or tangent) that comes out NaN or inf raises NonFiniteError
# naming the node, like a forward value. No 0·inf is ever zeroed: sqrt(x)·sqrt(x) = x
# has derivative 1 at 0, where its chain rule meets 0·inf, so a silent 0 would be wrong.


def all_finite(seq: list) -> bool:
    """Whether every entry of ``seq`` (None = zero, scalars, arrays) is finite.

    One ``math.isfinite`` per scalar, one ``np.isfinite`` over the concatenation of all
    small arrays (one copy beats a call per array), and per large array the forward pass's
    test (:func:`~lagrangeprop.solve.forward.finite_array`: one BLAS ``r·r``), inside one
    ``np.errstate``."""
    isfinite = math.isfinite
    small: dict = {}   # by id: a ±1 partial passes the same multiplier array on unchanged
    with np.errstate(all="ignore"):
        for v in seq:
            if v is None:
                continue
            cls = v.__class__
            if cls is float or cls is _F64:
                if not isfinite(v):
                    return False
            elif cls is _ND and v.size <= SMALL:
                small[id(v)] = v
            elif cls is _ND:
                if not _finite(v):
                    return False
            elif not np.all(np.isfinite(v)):
                return False
        return not small or bool(np.isfinite(np.concatenate(list(small.values()), axis=None)).all())


def _bad(v) -> bool:
    return v is not None and not np.all(np.isfinite(v))


def _kind_of(v) -> str:
    return "NaN" if np.any(np.isnan(v)) else "inf"


def _order(sched: Schedule) -> dict[int, int]:
    """Position of every defined node in forward (topological) order; inputs come first."""
    pos: dict[int, int] = {}
    for k, step in enumerate(sched.steps):
        for n in ([step.node] if type(step) is Step else step.nodes):
            pos[n] = k
    return pos


def _steps(sched: Schedule):
    for step in sched.steps:
        if type(step) is Step:
            yield step
        else:
            yield from step.steps


def _describe(sched: Schedule, step: Step) -> str:
    args = [sched.names[a] for a in step.args]
    return f"node {sched.names[step.node]!r} (op {step.prim.name!r} of {args})"


def _pulled(step: Step, p: int, g, ans, args: list):
    """The cotangent ``step`` passes to argument ``p`` (``g`` may carry a trailing column
    axis, as in the Jacobian passes: then ``Jᵀ g`` from the local Jacobian); None if the
    rules cannot say (the error then names the node only)."""
    with np.errstate(all="ignore"):
        try:
            if np.shape(g) == np.shape(ans):
                return step.prim.vjp(p, g, ans, args, step.params)
            J = step.prim.jac(p, ans, args, step.params)
            return None if J is None else np.asarray(J.T @ np.reshape(g, (J.shape[0], -1)))
        except Exception:   # noqa: BLE001 - diagnosis only: never mask the NonFiniteError
            return None


def check_finite_pass(sched: Schedule, vals: list, seq: list, what: str) -> None:
    """Raise :class:`NonFiniteError` when an entry of ``seq`` is not finite.

    ``what`` is ``"multiplier"`` (the adjoint, read in reverse order: the first node
    processed with a non-finite multiplier is named, with the consumer whose derivative
    rule produced it), ``"tangent"`` (forward order) or ``"second-order multiplier"``.
    """
    if all_finite(seq):
        return
    raise _nonfinite_error(sched, vals, seq, what)


def _nonfinite_error(sched: Schedule, vals: list, seq: list, what: str) -> NonFiniteError:
    pos = _order(sched)
    bad = [i for i, v in enumerate(seq) if _bad(v)]
    forward = what == "tangent"
    first = (min if forward else max)(bad, key=lambda i: pos.get(i, -1))
    name = sched.names[first]
    role = "input" if first not in pos else "node"
    label = "gradient (multiplier)" if role == "input" and what == "multiplier" else what
    head = f"the {label} of {role} {name!r} is {_kind_of(seq[first])}"
    hint = ("The program's true derivative may still be finite where the chain rule meets "
            "0·inf (x*sqrt(x) has derivative 0 at x = 0, but sqrt's derivative is infinite "
            "there): rewrite the expression (x**1.5), or move the point off the singularity "
            "(sqrt/log/power at 0, overflow). A branch that lp.where discards is still "
            "differentiated (its cotangent is 0, and 0·inf is NaN): guard the argument "
            "instead, lp.sqrt(lp.where(x > 0, x, 1.0)).")
    if forward:
        step = next(s for s in _steps(sched) if s.node == first)
        return NonFiniteError(
            f"{head}: {_describe(sched, step)} has a non-finite derivative at this point, "
            f"although its arguments' tangents are finite. {hint}")
    culprits = []
    for step in _steps(sched):
        g = seq[step.node]
        if g is None or _bad(g) or first not in step.args:
            continue
        args = [vals[a] for a in step.args]
        for p, u in step.diff:
            if u != first:
                continue
            if _bad(_pulled(step, p, g, vals[step.node], args)):
                culprits.append(f"{_describe(sched, step)} (argument {p})")
    if not culprits:
        return NonFiniteError(f"{head} (computed in a block solve or from a non-finite seed). {hint}")
    return NonFiniteError(
        f"{head}: it comes from {'; '.join(culprits)}, whose derivative with respect to "
        f"{name!r} is not finite at this point. {hint}")
