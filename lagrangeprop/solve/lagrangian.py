"""The Lagrangian ``L = <seed, z_o> - Σ_d <λ_d, c_d>`` at any point, its gradient and the KKT certificate.

Stationarity (SPEC §1): ``∂L/∂λ = -c = 0`` is the forward pass, ``∂L/∂z = 0`` the
multiplier equations ``Aᵀλ = e_o·seed``, and ``λ_x := ∂L/∂x = ∇_x z_o`` the gradient.
:func:`kkt_residuals` measures the first two, each equation on its own scale: the
certificate of a solution. Everything here works on a :class:`Point` (``z``, ``λ`` and
the seed, by node id) built from the caller's dicts by :func:`point`.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) ** 2, x=0.1)
>>> sol = prog.solve(x=0.1)
>>> pt = point(sol.schedule, sol.inputs, sol.values, sol.multipliers, sol.seed)
>>> bool(abs(lagrangian_value(pt) - sol.output) < 1e-15), kkt_residuals(pt)["adjoint"] < 1e-12
(True, True)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from ..blocks import block_jacobian, block_residual
from ..blocks import ROUNDING, TINY, constraint_noise, constraint_scale, explicit_scale, scaled_max
from ..compile.schedule import Block, Schedule
from ..errors import InputError
from .local import accumulate
from .forward import initial_values
from .inputs import check_names, parse_inputs, point_value, scalarize

_CONTRACTIONS = frozenset({"matmul", "dot"})
_EPS = float(np.finfo(np.float64).eps)

__all__ = ["Point", "point", "point_values", "lagrangian_value", "lagrangian_gradient",
           "constraint_jacobian", "kkt_residuals"]


class Point(NamedTuple):
    """A point ``(x, z, λ)`` of the Lagrangian, by node id."""

    sched: Schedule
    vals: list          # z: inputs, constants and every defined variable
    lam: list           # λ_d of the defined variables (None = 0)
    seed: Any           # the output cotangent


def point_values(sched: Schedule, inputs: dict, values: dict) -> list:
    """``z`` at a caller's point: inputs (finite, as for solve) and every defined variable."""
    check_names(sched, inputs, "inputs", ("input", "defined"))
    check_names(sched, values, "values", ("input", "defined"))
    vals = initial_values(sched, parse_inputs(sched, {k: v for k, v in inputs.items()
                                                      if sched.roles[sched.index[k]] == "input"}))
    for n in sched.defined:
        name = sched.names[n]
        if name not in values:
            raise InputError(f"values has no entry for defined variable {name!r}; pass a value "
                             "for every defined variable (sol.values has them all)")
        vals[n] = point_value(sched, n, values[name], "values")
    return vals


def _multipliers(sched: Schedule, multipliers: dict | None) -> list:
    """``λ`` at a caller's point; a defined variable without an entry has ``λ_d = 0``
    (entries for inputs are ignored: ``λ_x = ∂L/∂x`` is derived, not given)."""
    lam: list = [None] * len(sched.names)
    if multipliers is None:
        return lam
    check_names(sched, multipliers, "multipliers", ("input", "defined"))
    for n in sched.defined:
        v = multipliers.get(sched.names[n])
        lam[n] = None if v is None else point_value(sched, n, v, "multipliers")
    return lam


def point(sched: Schedule, inputs: dict, values: dict, multipliers: dict | None, seed) -> Point:
    """The caller's point, checked: dicts keyed by node name (as ``sol.inputs``,
    ``sol.values`` and ``sol.multipliers``), ``seed`` already resolved."""
    return Point(sched, point_values(sched, inputs, values), _multipliers(sched, multipliers), seed)


def _all_defined(sched: Schedule) -> Block:
    """Every constraint as one pseudo-block (for A = ∂c/∂z and c at any point)."""
    if sched.whole is None:
        nodes = list(sched.defined)
        sizes = [int(np.prod(sched.shapes[n], dtype=int)) for n in nodes]
        offsets = [int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]])] if nodes else []
        sched.whole = Block(
            names=[sched.names[n] for n in nodes], nodes=nodes,
            steps=[sched.step_of[n] for n in nodes], offsets=offsets, size=int(sum(sizes)),
            explicit=not sched.residual, shapes=[sched.shapes[n] for n in nodes], sizes=sizes,
            position={n: k for k, n in enumerate(nodes)})
    return sched.whole


# L(x, z, λ) = <seed, z_o> - Σ_d <λ_d, c_d(z, x)>
def lagrangian_value(pt: Point) -> float:
    """``L`` at the point."""
    sched, vals, lam = pt.sched, pt.vals, pt.lam
    blk = _all_defined(sched)
    c, _ = block_residual(blk, vals)
    total = float(np.sum(pt.seed * vals[sched.output]))
    for n, off, size in zip(blk.nodes, blk.offsets, blk.sizes):
        if lam[n] is not None:
            total -= float(np.dot(np.ravel(lam[n]), c[off:off + size]))
    return total


def lagrangian_gradient(pt: Point) -> tuple[dict, dict, dict]:
    """``(∂L/∂x, ∂L/∂z, ∂L/∂λ)`` as dicts keyed by node name (∂L/∂λ_d = -c_d)."""
    sched, vals, lam = pt.sched, pt.vals, pt.lam
    blk = _all_defined(sched)
    c, ans = block_residual(blk, vals)
    acc: list = [None] * len(sched.names)
    # ∂L/∂z_u = [u = o]·seed - (∂c/∂z_u)ᵀ λ: -λ_u from an explicit c_u's own z_u term ...
    for n in sched.defined:
        if not sched.step_of[n].residual and lam[n] is not None:
            acc[n] = -lam[n]
    acc[sched.output] = pt.seed if acc[sched.output] is None else acc[sched.output] + pt.seed
    # ... plus ±(∂op_d/∂z_u)ᵀ λ_d through every argument (this also gives ∂L/∂x)
    for n in sched.defined:
        if lam[n] is not None:
            step = sched.step_of[n]
            accumulate(step, lam[n], ans[n], vals, acc, -1.0 if step.residual else 1.0)

    def dense(i):
        return scalarize(np.zeros(sched.shapes[i]) if acc[i] is None
                         else np.broadcast_to(acc[i], sched.shapes[i]))
    gx = {sched.names[i]: dense(i) for i in sched.inputs}
    gz = {sched.names[n]: dense(n) for n in sched.defined}
    glam = {sched.names[n]: scalarize(-c[off:off + size].reshape(sched.shapes[n]))
            for n, off, size in zip(blk.nodes, blk.offsets, blk.sizes)}
    return gx, gz, glam


# A = ∂c/∂z, block-sparse with the graph's pattern
def constraint_jacobian(sched: Schedule, vals: list):
    """``A`` (scipy.sparse CSR) over the defined variables at ``z = vals``, and node -> slice."""
    blk = _all_defined(sched)
    _, ans = block_residual(blk, vals)
    A = block_jacobian(blk, vals, ans).tocsr()
    index = {name: slice(off, off + size)
             for name, off, size in zip(blk.names, blk.offsets, blk.sizes)}
    return A, index


def _constraint_scales(sched: Schedule, blk: Block, vals: list) -> tuple[np.ndarray, np.ndarray | None]:
    """``s_d`` for every entry of ``c`` over all defined nodes (layout of ``blk``): ``max(1, |z_d|)`` for
    explicit constraints, the block's own residual scale (:mod:`lagrangeprop.blocks.scale`) for residual ones,
    so the certificate uses exactly the test the forward block solve used; and the rounding allowance
    of the residuals that sum terms (``constraint_noise``; ``None`` when there is none)."""
    out = np.empty(blk.size)
    noise = None
    for n, off, size, shape in zip(blk.nodes, blk.offsets, blk.sizes, blk.shapes):
        out[off:off + size] = np.ravel(np.broadcast_to(explicit_scale(vals[n]), shape))
    for b in sched.blocks:
        if b.explicit:
            continue
        sb, nb = constraint_scale(b, vals), constraint_noise(b, vals)
        if nb is not None and noise is None:
            noise = np.zeros(blk.size)
        for k, n in enumerate(b.nodes):
            if b.steps[k].residual:
                off = blk.offsets[blk.position[n]]
                out[off:off + b.sizes[k]] = sb[b.offsets[k]:b.offsets[k] + b.sizes[k]]
                if nb is not None:
                    noise[off:off + b.sizes[k]] = nb[b.offsets[k]:b.offsets[k] + b.sizes[k]]
    return out, noise


# ∂L/∂z_u = [u = o]·seed - λ_u [u explicit] + Σ_d ±(∂op_d/∂z_u)ᵀ λ_d: its scale t_u is the sum of the
# magnitudes of these terms, |seed|·[u = o] + |λ_u| [u explicit] + Σ_d |(∂op_d/∂z_u)ᵀ λ_d|
# A matrix product's term (∂(A b)/∂b)ᵀ λ = Aᵀλ is itself a sum of terms A_ji λ_j: evaluating it errs by
# ~eps·|A|ᵀ|λ|, its rounding allowance (as blocks.scale.constraint_noise for the residuals)
def _adjoint_scales(sched: Schedule, vals: list, lam: list, ans: dict, seed) -> tuple[list, list]:
    """``t_u`` (node id -> array) for every defined node (``None``: no term at all), and the rounding
    allowance of the equations with matrix-product terms (``None``: none)."""
    mag: list = [None] * len(sched.names)
    noise: list = [None] * len(sched.names)

    def add(u, t, into=mag):
        into[u] = t if into[u] is None else into[u] + t
    for n in sched.defined:
        if not sched.step_of[n].residual and lam[n] is not None:
            add(n, np.abs(lam[n]))
    add(sched.output, np.abs(np.asarray(seed, dtype=np.float64)))
    with np.errstate(all="ignore"):
        for n in sched.defined:
            if lam[n] is None:
                continue
            step = sched.step_of[n]
            args = [vals[a] for a in step.args]
            for pos, u in step.diff:
                if sched.roles[u] != "defined":
                    continue
                ct = step.prim.vjp(pos, lam[n], ans[n], args, step.params)
                if ct is not None:
                    add(u, np.abs(ct))
                    if step.prim.name in _CONTRACTIONS and not step.prim.user and not step.params:
                        # bilinear: the same vjp on magnitudes sums the terms' sizes
                        absargs = [abs(a) if sp.issparse(a) else np.abs(a) for a in args]
                        t = step.prim.vjp(pos, np.abs(lam[n]), np.abs(ans[n]), absargs, step.params)
                        add(u, ROUNDING * _EPS * np.abs(t), noise)
    return mag, noise


def kkt_residuals(pt: Point) -> dict[str, float]:
    """The KKT certificate: ``{"primal": max_d |c_d| / s_d, "adjoint": max_u |∂L/∂z_u| / t_u}``.

    Both are per constraint and per multiplier equation, never against a maximum over the program
    (SPEC §1 "Scale"): ``s_d`` is the scale the forward solve judges ``c_d`` by
    (:mod:`lagrangeprop.blocks.scale`), ``t_u`` the sum of the magnitudes of the terms of the equation
    ``∂L/∂z_u = 0`` (:func:`_adjoint_scales`), so a multiplier that satisfies the equations of large
    terms but not those of small ones is not certified. A ``1e-300`` floor avoids ``0/0`` only.
    """
    _, gz, _ = lagrangian_gradient(pt)
    sched, vals, lam = pt.sched, pt.vals, pt.lam
    blk = _all_defined(sched)
    c, ans = block_residual(blk, vals)
    primal = scaled_max(c, *_constraint_scales(sched, blk, vals))
    mag, noise = _adjoint_scales(sched, vals, lam, ans, pt.seed)
    adjoint = 0.0
    for n in sched.defined:
        g = np.abs(np.asarray(gz[sched.names[n]], dtype=np.float64))
        if not g.size:
            continue
        if noise[n] is not None:          # within the rounding of evaluating the equation: zero
            g = np.maximum(g - noise[n], 0.0)
        t = np.maximum(np.broadcast_to(0.0 if mag[n] is None else mag[n], g.shape), TINY)
        with np.errstate(all="ignore"):
            r = float(np.max(g / t))
        if not r <= adjoint:            # NaN propagates
            adjoint = r
    return {"primal": primal, "adjoint": adjoint}
