"""Comparisons of the multipliers with a reference, each on its own scale.

:func:`compare` is the max-norm comparison of one input's derivatives (OpenMDAO's
``check_totals`` view); :func:`node_multipliers` compares every defined node's ``λ_d``
with a tape's ``∂<seed, z_o>/∂ε_d`` in one batched pass of array operations.

Examples
--------
>>> compare([1.0, 2.0], [1.0, 2.0 + 1e-12], rtol=1e-8, atol=0.0)["ok"]
True
>>> compare(1.0, 1.1, rtol=1e-8, atol=0.0)["ok"]
False
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .references import TAPE_NAMES

__all__ = ["compare", "node_multipliers"]


def compare(a: Any, b: Any, rtol: float, atol: float) -> dict:
    """Norm-wise (max-norm) comparison of one input's derivatives, as check_totals does."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0)) if a.size else 0.0
    if not np.isfinite(err):
        err = np.inf
    rel = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
    if not np.isfinite(atol):   # an overflowed rounding floor (values near 1e308) would approve
        atol = 0.0              # everything: compare without it
    return {"abs": err, "rel": rel, "ok": bool(err <= atol + rtol * scale)}


def _segment_max(v: np.ndarray, starts: np.ndarray, nonempty: np.ndarray) -> np.ndarray:
    """Max of each segment ``v[starts[k]:starts[k + 1]]`` (0 for an empty one)."""
    out = np.zeros(len(starts))
    if v.size:
        out[nonempty] = np.maximum.reduceat(v, starts[nonempty])
    return out


def node_multipliers(lam: dict, tapes: dict, rtol: float, floor: dict) -> tuple[dict, dict]:
    """Every defined node's λ_d against the tapes' ∂<seed, z_o>/∂ε_d, each on its own scale.

    Node ``d`` passes iff ``max|λ_d - t_d| <= rtol·max(max|λ_d|, max|t_d|) + floor[d]``
    (:func:`compare` per node, batched: one pass of array operations over all nodes)."""
    rows: dict = {}
    summary: dict = {}
    for backend, res in tapes.items():
        ref = TAPE_NAMES[backend]
        names = list(res.multipliers)
        if not names:
            summary[ref] = {"nodes": 0, "worst": None, "max_rel": 0.0, "failed": []}
            continue
        a = [np.ravel(lam[n]) for n in names]
        b = [np.ravel(np.asarray(res.multipliers[n], dtype=np.float64)) for n in names]
        sizes = np.array([len(t) for t in a])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        A, B = np.concatenate(a), np.concatenate(b)
        nz = sizes > 0

        def seg_max(v: np.ndarray, starts=starts, nz=nz) -> np.ndarray:
            return _segment_max(v, starts, nz)
        with np.errstate(invalid="ignore"):
            err = seg_max(np.abs(A - B))
        err[~np.isfinite(err)] = np.inf          # nan or inf on either side fails
        scale = np.maximum(seg_max(np.abs(A)), seg_max(np.abs(B)))
        fl = np.array([floor.get(n, 0.0) for n in names])
        fl[~np.isfinite(fl)] = 0.0           # an overflowed floor would approve everything
        ok = err <= fl + rtol * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), np.where(err == 0, 0.0, np.inf))
            ratio = err / (fl + rtol * scale)     # > 1: failed; the worst node is the largest ratio
        ratio[err == 0] = 0.0
        ratio[~np.isfinite(ratio)] = np.inf
        for k, n in enumerate(names):
            row = rows.setdefault(n, {"lagrangian": lam[n]})
            row[backend] = res.multipliers[n]
            row[ref] = {"abs": float(err[k]), "rel": float(rel[k]), "ok": bool(ok[k]), "floor": float(fl[k])}
        w = int(np.argmax(ratio))
        summary[ref] = {"nodes": len(names), "worst": names[w], "max_rel": float(np.max(rel)),
                        "worst_rel": float(rel[w]), "failed": [names[k] for k in np.flatnonzero(~ok)]}
    return rows, summary
