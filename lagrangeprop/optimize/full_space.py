"""The full-space view ("all at once"): optimize the inputs and the defined variables together.

``min <seed, z_o>`` subject to ``c(z, x) = 0`` with scipy's ``trust-constr``: the sparse
constraint Jacobian ``[∂c/∂x, ∂c/∂z]`` and the Hessian of ``Σ_d v_d c_d`` (the Lagrangian
Hessian ``∇²L = -Σ_d λ_d ∇²c_d``). At the optimum scipy's constraint multipliers ``v`` are
``-λ``: the same multipliers the nested solve returns.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: (x - 2.0) ** 2, x=0.0)
>>> res = minimize_full_space(prog, {"x": 0.0}, options={"gtol": 1e-10})
>>> round(float(res.x_dict["x"]), 6)
2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ..errors import InputError
from ..rules.curvature import curvature
from ..solve.matrix import input_jacobian
from .layout import Layout, check_arguments
from .scipy_call import history_callback, run_minimize

__all__ = ["minimize_full_space", "FullSpace"]


class FullSpace:
    """``y = [x_opt, z]``: objective ``<seed, z_o>``, constraints ``c(z, x) = 0``."""

    def __init__(self, prog: Any, layout: Layout, z0: dict):
        sched = layout.sched
        self.prog, self.layout, self.sched = prog, layout, sched
        self.opt_ids = [sched.index[k] for k in layout.names]
        # z in the row/column order of prog.constraint_jacobian (sched.defined)
        inputs = {**layout.fixed, **layout.unflatten(layout.x0)}
        _, self.index = prog.constraint_jacobian(z0, inputs)
        nx = layout.size
        self.slot = {sched.index[k]: slice(nx + s.start, nx + s.stop) for k, s in self.index.items()}
        for j, i in enumerate(self.opt_ids):
            self.slot[i] = slice(layout.offsets[j], layout.offsets[j] + layout.sizes[j])
        self.size = nx + sum(s.stop - s.start for s in self.index.values())
        o = self.slot[sched.output]
        self.obj = np.zeros(self.size)
        self.obj[o] = 1.0  # scalar output: <seed, z_o> = z_o
        self.y0 = np.concatenate([layout.x0] + [np.ravel(np.asarray(z0[sched.names[n]], dtype=np.float64))
                                               for n in sched.defined])

    def split(self, y: np.ndarray) -> tuple[dict, dict]:
        inputs = {**self.layout.fixed, **self.layout.unflatten(y[:self.layout.size])}
        values = {self.sched.names[n]: y[self.slot[n]].reshape(self.sched.shapes[n])
                  for n in self.sched.defined}
        return inputs, values

    def vals(self, y: np.ndarray) -> list:
        sched = self.sched
        vals: list = [None] * len(sched.names)
        for i, v in sched.constants:
            vals[i] = v
        inputs, values = self.split(y)
        for k, v in {**inputs, **values}.items():
            vals[sched.index[k]] = np.asarray(v, dtype=np.float64)
        return vals

    def fun(self, y: np.ndarray) -> float:
        return float(self.obj @ y)

    def grad(self, y: np.ndarray) -> np.ndarray:
        return self.obj

    def constraints(self, y: np.ndarray) -> np.ndarray:
        vals, parts = self.vals(y), []
        with np.errstate(all="ignore"):
            for n in self.sched.defined:
                s = self.sched.step_of[n]
                a = np.ravel(s.prim.value([vals[u] for u in s.args], s.params))
                parts.append(a if s.residual else np.ravel(vals[n]) - a)
        return np.concatenate(parts)

    def jacobian(self, y: np.ndarray) -> sp.csr_matrix:
        inputs, values = self.split(y)
        A, _ = self.prog.constraint_jacobian(values, inputs)          # ∂c/∂z
        Cx = input_jacobian(self.sched, self.vals(y), self.opt_ids)   # ∂c/∂x
        return sp.hstack([Cx, A], format="csr")

    # Σ_d v_d ∇²c_d · p, with ∇²c_d = -∇²f_d (explicit) or ∇²r_d (residual)
    def constraint_hessian(self, y: np.ndarray, v: np.ndarray) -> LinearOperator:
        sched, vals = self.sched, self.vals(y)
        rows = {n: self.slot[n].start - self.layout.size for n in sched.defined}
        lam = {n: v[rows[n]:rows[n] + int(np.prod(sched.shapes[n], dtype=int))].reshape(sched.shapes[n])
               for n in sched.defined}

        def matvec(p):
            p = np.ravel(p)
            out = np.zeros(self.size)
            tan = {i: p[s].reshape(sched.shapes[i]) for i, s in self.slot.items()}
            for n in sched.defined:
                s = sched.step_of[n]
                if not np.any(lam[n]):
                    continue
                args = [vals[u] for u in s.args]
                tans = [tan.get(u) for u in s.args]
                ans = None
                for pos, u in s.diff:
                    if u not in self.slot:
                        continue
                    if ans is None:
                        ans = s.prim.value(args, s.params)
                    S = curvature(s.prim, pos, lam[n], ans, args, s.params, tans)
                    if S is not None:
                        out[self.slot[u]] += (1.0 if s.residual else -1.0) * np.ravel(S)
            return out
        return LinearOperator((self.size, self.size), matvec=matvec, dtype=np.float64)


def minimize_full_space(prog: Any, x0: dict, *, fixed: dict | None = None, guess: dict | None = None,
                        values0: dict | None = None, bounds: dict | None = None, callback: Any = None,
                        options: dict | None = None,
                        solve_options: dict | None = None) -> so.OptimizeResult:
    """Minimize ``z_o`` over the inputs in ``x0`` *and* all defined variables, subject to
    the program's constraints as equalities (scipy ``trust-constr``).

    The equality constraints ``c(z, x) = 0`` come with their sparse Jacobian
    ``[∂c/∂x, A]`` (``A = prog.constraint_jacobian``) and the exact Hessian of
    ``Σ_d v_d c_d`` (the Lagrangian Hessian ``∇²L = -Σ_d λ_d ∇²c_d`` with ``v = -λ``). The
    constraints need not hold during the iteration; they do at the optimum.

    Parameters
    ----------
    prog, x0, fixed, guess, solve_options
        As in :func:`minimize`; the starting ``z`` solves the program at ``x0``
        (``guess`` starts its blocks) unless ``values0`` gives every defined variable.
    values0 : dict, optional
        Starting values of all defined variables (an infeasible start is allowed).
    bounds : dict, optional
        ``{input: (lo, hi)}`` for optimized inputs.
    callback, options
        Passed to ``scipy.optimize.minimize(method="trust-constr")`` (e.g.
        ``options={"maxiter": 500, "gtol": 1e-10}``; an option trust-constr does not take
        raises InputError). The callback sees the full-space point ``y = [x, z]``:
        ``callback(yk, state)`` or ``callback(intermediate_result)``.

    Returns
    -------
    scipy.optimize.OptimizeResult
        scipy's result (``nit``, ``fun``, ``constr_violation``, ...) plus ``x_dict``,
        ``z_dict`` (the optimizer's defined values), ``multipliers`` (``λ = -v`` per defined
        node) and ``solution`` (a nested solve at the optimal inputs).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program()
    >>> x = prog.input("x"); w = prog.variable("w")
    >>> _ = prog.residual(w, w**3 + w - x); _ = prog.output((w - 1.0) ** 2 + 0.1 * x, name="o")
    >>> res = lp.minimize_full_space(prog, {"x": 0.0}, options={"gtol": 1e-10})
    >>> # optimum: x = w³ + w with 2(w - 1) + 0.1 (3w² + 1) = 0
    >>> round(float(res.x_dict["x"]), 6), round(float(res.z_dict["w"]), 6)
    (1.443084, 0.843321)
    """
    solve_options = check_arguments(guess, solve_options, options, callback)
    if values0 is not None and not isinstance(values0, Mapping):
        raise InputError(f"values0 must be a dict {{defined variable: value}}, got {type(values0).__name__}")
    layout = Layout(prog, x0, fixed)
    sched = layout.sched
    if values0 is None:
        sol0 = prog.solve(guess=guess, **dict(solve_options or {}), **layout.fixed,
                          **layout.unflatten(layout.x0))
        values0 = {sched.names[n]: sol0.values[sched.names[n]] for n in sched.defined}
    else:
        missing = [sched.names[n] for n in sched.defined if sched.names[n] not in values0]
        if missing:
            raise InputError(f"values0 has no entry for defined variable(s) {missing}")
    fs = FullSpace(prog, layout, values0)
    constraint = so.NonlinearConstraint(fs.constraints, 0.0, 0.0, jac=fs.jacobian,
                                        hess=fs.constraint_hessian)
    kw = {}
    if bounds is not None:
        b = layout.bounds(bounds)
        pad = fs.size - layout.size
        kw["bounds"] = so.Bounds(np.concatenate([b.lb, np.full(pad, -np.inf)]),
                                 np.concatenate([b.ub, np.full(pad, np.inf)]))
    history = [fs.fun(fs.y0)]
    res = run_minimize(fs.fun, fs.y0, method="trust-constr", jac=fs.grad,
                       hessp=lambda y, p: np.zeros_like(p), constraints=[constraint],
                       callback=history_callback(callback, fs.fun, history), options=options, **kw)
    inputs, values = fs.split(res.x)
    res.x_dict = layout.trees({k: inputs[k] for k in layout.names})
    res.z_dict = {k: (v[()] if np.ndim(v) == 0 else v) for k, v in values.items()}
    v = np.asarray(res.v[0]) if res.get("v") else np.zeros(fs.size - layout.size)
    res.multipliers = {sched.names[n]: -v[fs.slot[n].start - layout.size:fs.slot[n].stop - layout.size]
                       .reshape(sched.shapes[n]) for n in sched.defined}
    block_guess = {n: values[n] for b in sched.blocks for n in b.names}
    res.solution = prog.solve(guess=block_guess or None, **dict(solve_options or {}), **layout.fixed,
                              **layout.unflatten(res.x[:layout.size]))
    res.history = history
    return res
