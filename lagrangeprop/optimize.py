"""Optimization with the Lagrangian: scipy.optimize on a compiled Program.

Two views of ``min_x z_o(x)`` subject to the program's constraints ``c(z, x) = 0``:

* **nested** (:func:`minimize`): every evaluation solves the constraints (the forward
  pass), and the multipliers give the gradient ``λ_x = ∇_x z_o``; Newton methods also get
  exact Hessian-vector products (forward-over-reverse, :mod:`lagrangeprop.solve.second_order`).
* **full space** (:func:`minimize_full_space`, "all at once"): optimize over the inputs
  *and* the defined variables together, ``min <seed, z_o>`` s.t. ``c(z, x) = 0``, with
  scipy's ``trust-constr``, the sparse constraint Jacobian ``[∂c/∂x, ∂c/∂z]`` and the
  Lagrangian Hessian ``Σ_d v_d ∇²c_d``. At the optimum scipy's constraint multipliers
  ``v`` are ``-λ``: the same multipliers the nested solve returns.

Inputs to optimize are given by ``x0`` (a dict name -> initial value); every other
input of the program is held at its value in ``fixed``.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sum((x - 1.0) ** 2) + x[0] ** 4, x=np.zeros(2))
>>> res = lp.minimize(prog, {"x": np.zeros(2)}, method="Newton-CG")
>>> bool(res.success), np.round(res.x_dict["x"], 6).tolist()
(True, [0.589755, 1.0])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .graph.coerce import real_array
from .errors import InputError, LagrangePropError, ShapeError
from .options import SolveOptions, real_option
from .rules.curvature import curvature
from .solve.matrix import input_jacobian
from .solve.second_order import solution_hvp

__all__ = ["minimize", "minimize_full_space"]

HESSP_METHODS = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
HESS_METHODS = {"dogleg", "trust-exact"}
JAC_FREE = {"nelder-mead", "powell", "cobyla", "cobyqa"}
METHODS = tuple(getattr(so._minimize, "MINIMIZE_METHODS", ())) or (
    "nelder-mead", "powell", "cg", "bfgs", "newton-cg", "l-bfgs-b", "tnc", "cobyla", "cobyqa", "slsqp",
    "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov")
SOLVE_OPTION_NAMES = ("tol", "maxiter", "method", "linear_solver")


# ------------------------------------------------------------------ layout
def _value(v, what: str, shape: tuple, *, scalar_ok: bool = True, finite: bool = True) -> np.ndarray:
    """A caller's value as float64 of ``shape`` (or a scalar when ``scalar_ok``), else InputError."""
    arr = real_array(v, what, finite=finite)
    if arr.shape != shape and not (scalar_ok and arr.shape == ()):
        raise InputError(f"{what} has shape {arr.shape}, the input has shape {shape}"
                         + ("; pass a scalar (filling it) or an array of that shape" if scalar_ok else ""))
    return arr


def _check_arguments(guess, solve_options, options, callback, tol=None) -> dict:
    """The arguments both minimizers share; returns ``solve_options`` as a dict."""
    for what, d in (("guess", guess), ("solve_options", solve_options), ("options", options)):
        if d is not None and not isinstance(d, Mapping):
            raise InputError(f"{what} must be a dict or None, got {type(d).__name__}")
    if callback is not None and not callable(callback):
        raise InputError(f"callback must be a function callback(xk), got {type(callback).__name__}")
    if tol is not None:
        real_option("tol", tol, what="scipy.optimize.minimize's tolerance")
    solve_options = dict(solve_options or {})
    unknown = [k for k in solve_options if k not in SOLVE_OPTION_NAMES]
    if unknown:
        raise InputError(f"solve_options has {unknown}, which are not solve options; its keys are "
                         f"{list(SOLVE_OPTION_NAMES)} (give fixed inputs in fixed=)")
    SolveOptions.make(**solve_options)
    return solve_options


class _Layout:
    """Flattening of the optimized inputs (dict, in ``x0`` order) into one vector."""

    def __init__(self, prog, x0: dict, fixed: dict | None):
        from .graph.program import Program
        if not isinstance(prog, Program):
            raise InputError(f"minimize takes an lp.Program (got {type(prog).__name__}); build one "
                             "with lp.trace(f, **inputs)")
        sched = prog.compile()
        self.sched = sched
        for what, d in (("x0", x0), ("fixed", fixed)):
            if d is not None and not isinstance(d, Mapping):
                raise InputError(f"{what} must be a dict {{input name: value}}, got {type(d).__name__}; "
                                 f"e.g. {what}={{{sched.input_names[0] if sched.input_names else 'x'!r}: 0.0}}")
        fixed = dict(fixed or {})
        if not x0:
            raise InputError("x0 is empty: give the inputs to optimize, e.g. x0={'x': 0.0}")
        inputs = sched.input_names
        unknown = [k for k in [*x0, *fixed] if k not in inputs]
        if unknown:
            raise InputError(f"{unknown} are not inputs of program {prog.name!r}; its inputs are {inputs}")
        both = [k for k in x0 if k in fixed]
        if both:
            raise InputError(f"inputs {both} are both optimized (x0) and fixed; pick one")
        missing = [k for k in inputs if k not in x0 and k not in fixed]
        if missing:
            raise InputError(f"inputs {missing} are neither optimized nor fixed: add them to x0= "
                             "(to optimize) or to fixed= (to hold them)")
        out = sched.shapes[sched.output]
        if out != ():
            raise ShapeError(f"the objective {sched.names[sched.output]!r} has shape {out}; "
                             "minimize needs a scalar output (reduce it, e.g. with lp.sum)")
        self.names = list(x0)
        self.shapes = [sched.shapes[sched.index[k]] for k in self.names]
        self.sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.offsets = list(np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int))
        self.size = int(sum(self.sizes))
        self.fixed = {k: _value(v, f"fixed[{k!r}]", sched.shapes[sched.index[k]], scalar_ok=False)
                      for k, v in fixed.items()}
        # a scalar x0 fills its input; any other value has the input's shape
        self.x0 = self.flatten({k: np.broadcast_to(_value(v, f"x0[{k!r}]", self.shapes[j]), self.shapes[j])
                                for j, (k, v) in enumerate(x0.items())})

    def flatten(self, d: dict) -> np.ndarray:
        return np.concatenate([np.ravel(np.asarray(d[k], dtype=np.float64)) for k in self.names]) \
            if self.names else np.zeros(0)

    def unflatten(self, x: np.ndarray) -> dict:
        out = {}
        for k, off, size, shape in zip(self.names, self.offsets, self.sizes, self.shapes):
            v = np.array(x[off:off + size]).reshape(shape)
            out[k] = v[()] if v.ndim == 0 else v
        return out

    def bounds(self, bounds):
        """``bounds`` as scipy accepts it, or a dict name -> (lo, hi) expanded per entry."""
        if isinstance(bounds, so.Bounds):
            return bounds
        if not isinstance(bounds, Mapping):
            pairs = bounds if isinstance(bounds, (list, tuple)) else None
            if pairs is None or len(pairs) != self.size or not all(
                    isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise InputError(f"bounds must be a dict {{input: (lo, hi)}}, a scipy.optimize.Bounds or "
                                 f"{self.size} (lo, hi) pairs (one per optimized entry), got {bounds!r:.60}")
            return bounds
        lo, hi = np.full(self.size, -np.inf), np.full(self.size, np.inf)
        for k, pair in bounds.items():
            if k not in self.names:
                raise InputError(f"bounds names {k!r}, which is not optimized (x0 has {self.names})")
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"bounds[{k!r}] must be a pair (lo, hi) (None = unbounded), got {pair!r}")
            a, b = (None if t is None else _value(t, f"bounds[{k!r}]", self.shapes[self.names.index(k)],
                                                 finite=False) for t in pair)
            j = self.names.index(k)
            sl = slice(self.offsets[j], self.offsets[j] + self.sizes[j])
            lo[sl] = np.ravel(np.broadcast_to(-np.inf if a is None else a, self.shapes[j]))
            hi[sl] = np.ravel(np.broadcast_to(np.inf if b is None else b, self.shapes[j]))
            if np.any(lo[sl] > hi[sl]) or np.isnan(lo[sl]).any() or np.isnan(hi[sl]).any():
                raise InputError(f"bounds[{k!r}] has a lower bound above its upper bound (or NaN)")
        return so.Bounds(lo, hi)


# --------------------------------------------------------------- evaluator
class _Evaluator:
    """One program solve per distinct x (a small cache), shared by fun, jac and hessp."""

    def __init__(self, prog, layout: _Layout, guess, solve_options: dict | None):
        self.prog, self.layout = prog, layout
        self.guess0 = dict(guess or {})
        self.guess = dict(self.guess0)
        self.solve_options = dict(solve_options or {})
        self.cache: OrderedDict = OrderedDict()
        self.nsolves = 0
        self.nhessp = 0
        sched = layout.sched
        self.block_names = [n for b in sched.blocks for n in b.names]

    def solution(self, x: np.ndarray):
        key = np.asarray(x, dtype=np.float64).tobytes()
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        inputs = {**self.layout.fixed, **self.layout.unflatten(np.asarray(x, dtype=np.float64))}
        self.nsolves += 1
        try:
            sol = self.prog.solve(guess=self.guess or None, **self.solve_options, **inputs)
        except LagrangePropError:
            if self.guess == self.guess0:
                raise
            # the warm start from the previous point failed: retry from the caller's guess
            sol = self.prog.solve(guess=self.guess0 or None, **self.solve_options, **inputs)
        # warm start the next solve's cyclic blocks from this solution
        self.guess.update({n: sol.values[n] for n in self.block_names})
        self.cache[key] = sol
        if len(self.cache) > 4:
            self.cache.popitem(last=False)
        return sol

    def fun(self, x):
        return float(self.solution(x).output)

    def jac(self, x):
        return self.layout.flatten(self.solution(x).grad)

    def hessp(self, x, p):
        self.nhessp += 1
        hv = solution_hvp(self.solution(x), self.layout.unflatten(np.asarray(p, dtype=np.float64)))
        return self.layout.flatten(hv)

    def hess(self, x):
        cols = [self.hessp(x, e) for e in np.eye(self.layout.size)]
        H = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        return 0.5 * (H + H.T)


# ---------------------------------------------------------------- nested
def minimize(prog, x0: dict, method: str = "L-BFGS-B", *, fixed: dict | None = None,
             guess: dict | None = None, bounds=None, tol: float | None = None, callback=None,
             options: dict | None = None, solve_options: dict | None = None, **scipy_kwargs):
    """Minimize the scalar output of ``prog`` over the inputs in ``x0`` with scipy.

    Each distinct point is solved once (forward pass + multipliers); ``fun`` and ``jac``
    share it. Newton methods (``Newton-CG``, ``trust-ncg``, ``trust-krylov``,
    ``trust-constr``) also get exact ``hessp`` (forward-over-reverse); ``dogleg`` and
    ``trust-exact`` the full Hessian from it.

    Parameters
    ----------
    prog : Program
        A program with a scalar output (the objective).
    x0 : dict
        Inputs to optimize, name -> initial value (its shape is the input's shape).
    method : str
        Any ``scipy.optimize.minimize`` method.
    fixed : dict, optional
        Values of the program's other inputs, held constant.
    guess : dict, optional
        Starting values for cyclic blocks (later solves warm start from the previous one).
    bounds : dict or scipy bounds, optional
        ``{name: (lo, hi)}`` (scalars or arrays, ``None`` = unbounded) or anything scipy takes.
    tol, callback, options, **scipy_kwargs
        Passed to ``scipy.optimize.minimize``; ``callback(xk)`` sees the flat vector.
    solve_options : dict, optional
        Passed to every ``prog.solve`` (``tol``, ``maxiter``, ``method``, ``linear_solver``).

    Returns
    -------
    scipy.optimize.OptimizeResult
        scipy's result plus ``solution`` (the :class:`Solution` at the optimum), ``x_dict``
        (the optimized inputs by name), ``history`` (objective after each iteration),
        ``nsolves`` (program solves) and ``nhessp`` (Hessian-vector products).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda a, b: (a - b) ** 2 + lp.exp(a), a=0.0, b=0.0)
    >>> res = lp.minimize(prog, {"a": 1.0}, fixed={"b": 2.0}, method="BFGS")
    >>> round(float(res.x_dict["a"]), 5), round(float(res.solution.grad["b"]), 5)
    (0.84084, 2.31832)
    """
    solve_options = _check_arguments(guess, solve_options, options, callback, tol)
    if not callable(method) and (not isinstance(method, str) or method.lower() not in METHODS):
        raise InputError(f"method={method!r} is not a scipy.optimize.minimize method; choose one of "
                         f"{list(METHODS)} (any case) or pass a callable")
    layout = _Layout(prog, x0, fixed)
    ev = _Evaluator(prog, layout, guess, solve_options)
    m = method.lower() if isinstance(method, str) else method
    kwargs = dict(scipy_kwargs)
    if m not in JAC_FREE:
        kwargs.setdefault("jac", ev.jac)
    if m in HESSP_METHODS and "hess" not in kwargs:
        kwargs.setdefault("hessp", ev.hessp)
    if m in HESS_METHODS:
        kwargs.setdefault("hess", ev.hess)
    if bounds is not None:
        kwargs["bounds"] = layout.bounds(bounds)
    history = [ev.fun(layout.x0)]

    def cb(xk, *rest):
        history.append(ev.fun(xk))
        if callback is not None:
            return callback(xk, *rest)
    res = so.minimize(ev.fun, layout.x0, method=method, tol=tol, callback=cb, options=options,
                      **kwargs)
    res.x_dict = layout.unflatten(res.x)
    res.solution = ev.solution(res.x)
    res.history = history
    res.nsolves, res.nhessp = ev.nsolves, ev.nhessp
    return res


# ------------------------------------------------------------ full space
class _FullSpace:
    """``y = [x_opt, z]``: objective ``<seed, z_o>``, constraints ``c(z, x) = 0``."""

    def __init__(self, prog, layout: _Layout, z0: dict):
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

    def split(self, y):
        inputs = {**self.layout.fixed, **self.layout.unflatten(y[:self.layout.size])}
        values = {self.sched.names[n]: y[self.slot[n]].reshape(self.sched.shapes[n])
                  for n in self.sched.defined}
        return inputs, values

    def vals(self, y) -> list:
        sched = self.sched
        vals: list = [None] * len(sched.names)
        for i, v in sched.constants:
            vals[i] = v
        inputs, values = self.split(y)
        for k, v in {**inputs, **values}.items():
            vals[sched.index[k]] = np.asarray(v, dtype=np.float64)
        return vals

    def fun(self, y):
        return float(self.obj @ y)

    def grad(self, y):
        return self.obj

    def constraints(self, y):
        vals, parts = self.vals(y), []
        with np.errstate(all="ignore"):
            for n in self.sched.defined:
                s = self.sched.step_of[n]
                a = np.ravel(s.prim.value([vals[u] for u in s.args], s.params))
                parts.append(a if s.residual else np.ravel(vals[n]) - a)
        return np.concatenate(parts)

    def jacobian(self, y):
        inputs, values = self.split(y)
        A, _ = self.prog.constraint_jacobian(values, inputs)          # ∂c/∂z
        Cx = input_jacobian(self.sched, self.vals(y), self.opt_ids)   # ∂c/∂x
        return sp.hstack([Cx, A], format="csr")

    # Σ_d v_d ∇²c_d · p, with ∇²c_d = -∇²f_d (explicit) or ∇²r_d (residual)
    def constraint_hessian(self, y, v):
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


def minimize_full_space(prog, x0: dict, *, fixed: dict | None = None, guess: dict | None = None,
                        values0: dict | None = None, bounds: dict | None = None, callback=None,
                        options: dict | None = None, solve_options: dict | None = None):
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
        ``options={"maxiter": 500, "gtol": 1e-10}``).

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
    solve_options = _check_arguments(guess, solve_options, options, callback)
    if values0 is not None and not isinstance(values0, Mapping):
        raise InputError(f"values0 must be a dict {{defined variable: value}}, got {type(values0).__name__}")
    layout = _Layout(prog, x0, fixed)
    sched = layout.sched
    if values0 is None:
        sol0 = prog.solve(guess=guess, **dict(solve_options or {}), **layout.fixed,
                          **layout.unflatten(layout.x0))
        values0 = {sched.names[n]: sol0.values[sched.names[n]] for n in sched.defined}
    else:
        missing = [sched.names[n] for n in sched.defined if sched.names[n] not in values0]
        if missing:
            raise InputError(f"values0 has no entry for defined variable(s) {missing}")
    fs = _FullSpace(prog, layout, values0)
    constraint = so.NonlinearConstraint(fs.constraints, 0.0, 0.0, jac=fs.jacobian,
                                        hess=fs.constraint_hessian)
    kw = {}
    if bounds is not None:
        b = layout.bounds(bounds)
        pad = fs.size - layout.size
        kw["bounds"] = so.Bounds(np.concatenate([b.lb, np.full(pad, -np.inf)]),
                                 np.concatenate([b.ub, np.full(pad, np.inf)]))
    history = [fs.fun(fs.y0)]

    def cb(yk, *rest):
        history.append(fs.fun(yk))
        if callback is not None:
            return callback(yk, *rest)
    res = so.minimize(fs.fun, fs.y0, method="trust-constr", jac=fs.grad,
                      hessp=lambda y, p: np.zeros_like(p), constraints=[constraint],
                      callback=cb, options=options, **kw)
    inputs, values = fs.split(res.x)
    res.x_dict = {k: inputs[k] for k in layout.names}
    res.z_dict = {k: (v[()] if np.ndim(v) == 0 else v) for k, v in values.items()}
    v = np.asarray(res.v[0]) if res.get("v") else np.zeros(fs.size - layout.size)
    res.multipliers = {sched.names[n]: -v[fs.slot[n].start - layout.size:fs.slot[n].stop - layout.size]
                       .reshape(sched.shapes[n]) for n in sched.defined}
    block_guess = {n: values[n] for b in sched.blocks for n in b.names}
    res.solution = prog.solve(guess=block_guess or None, **dict(solve_options or {}), **layout.fixed,
                              **layout.unflatten(res.x[:layout.size]))
    res.history = history
    return res
