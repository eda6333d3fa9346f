"""The nested view: every evaluation solves the constraints, the multipliers are the gradient.

:func:`minimize` hands ``scipy.optimize.minimize`` the objective ``z_o(x)``, its gradient
``λ_x = ∇_x z_o`` (one forward pass + multipliers per distinct point, shared by ``fun`` and
``jac``) and, for Newton methods, exact Hessian-vector products (forward-over-reverse,
:func:`lagrangeprop.solve.second_order.solution_hvp`).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.sum((x - 1.0) ** 2), x=np.zeros(2))
>>> res = minimize(prog, {"x": np.zeros(2)}, method="BFGS")
>>> np.round(res.x_dict["x"], 6).tolist(), res.nsolves > 0
([1.0, 1.0], True)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import scipy.optimize as so

from ..errors import InputError, LagrangePropError
from ..solve.second_order import solution_hvp
from .layout import Layout, check_arguments
from .scipy_call import check_scipy_kwargs, history_callback, run_minimize

__all__ = ["minimize", "Evaluator", "METHODS"]

HESSP_METHODS = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
HESS_METHODS = {"dogleg", "trust-exact"}
JAC_FREE = {"nelder-mead", "powell", "cobyla", "cobyqa"}
METHODS = tuple(getattr(so._minimize, "MINIMIZE_METHODS", ())) or (
    "nelder-mead", "powell", "cg", "bfgs", "newton-cg", "l-bfgs-b", "tnc", "cobyla", "cobyqa", "slsqp",
    "trust-constr", "dogleg", "trust-ncg", "trust-exact", "trust-krylov")


class Evaluator:
    """One program solve per distinct x (a small cache), shared by fun, jac and hessp."""

    def __init__(self, prog: Any, layout: Layout, guess: dict | None, solve_options: dict | None):
        self.prog, self.layout = prog, layout
        self.guess0 = dict(guess or {})
        self.guess = dict(self.guess0)
        self.solve_options = dict(solve_options or {})
        self.cache: OrderedDict = OrderedDict()
        self.nsolves = 0
        self.nhessp = 0
        sched = layout.sched
        self.block_names = [n for b in sched.blocks for n in b.names]

    def solution(self, x: np.ndarray) -> Any:
        """The Solution at ``x``: solved once, warm-starting blocks from the last point."""
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

    def fun(self, x: np.ndarray) -> float:
        return float(self.solution(x).output)

    def jac(self, x: np.ndarray) -> np.ndarray:
        return self.layout.flatten(self.solution(x).grad)

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        self.nhessp += 1
        hv = solution_hvp(self.solution(x), self.layout.unflatten(np.asarray(p, dtype=np.float64)))
        return self.layout.flatten(hv)

    def hess(self, x: np.ndarray) -> np.ndarray:
        cols = [self.hessp(x, e) for e in np.eye(self.layout.size)]
        H = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        return 0.5 * (H + H.T)


def minimize(prog: Any, x0: dict, method: str = "L-BFGS-B", *, fixed: dict | None = None,
             guess: dict | None = None, bounds: Any = None, tol: float | None = None,
             callback: Any = None, options: dict | None = None, solve_options: dict | None = None,
             **scipy_kwargs: Any) -> so.OptimizeResult:
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
        Inputs to optimize, name -> initial value (its shape is the input's shape); a
        parameter tree stands for the inputs named by its paths (``{"p": {"a": 1.0}}`` for
        ``p.a``), and ``x_dict`` gives it back in that structure.
    method : str
        Any ``scipy.optimize.minimize`` method.
    fixed : dict, optional
        Values of the program's other inputs, held constant.
    guess : dict, optional
        Starting values for cyclic blocks (later solves warm start from the previous one).
    bounds : dict or scipy bounds, optional
        ``{name: (lo, hi)}`` (scalars or arrays, ``None`` = unbounded) or anything scipy takes.
    tol, callback, options, **scipy_kwargs
        Passed to ``scipy.optimize.minimize``: ``callback(xk)`` sees the flat vector,
        ``callback(intermediate_result)`` scipy's OptimizeResult (raise ``StopIteration`` in
        it to stop); ``scipy_kwargs`` are ``jac``, ``hess``, ``hessp`` or ``constraints``.
        Whatever the method would ignore (bounds for BFGS, constraints for L-BFGS-B, an
        option it does not know) raises InputError instead of a scipy warning.
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
    solve_options = check_arguments(guess, solve_options, options, callback, tol)
    check_scipy_kwargs(scipy_kwargs)
    if not callable(method) and (not isinstance(method, str) or method.lower() not in METHODS):
        raise InputError(f"method={method!r} is not a scipy.optimize.minimize method; choose one of "
                         f"{list(METHODS)} (any case) or pass a callable")
    layout = Layout(prog, x0, fixed)
    ev = Evaluator(prog, layout, guess, solve_options)
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
    res = run_minimize(ev.fun, layout.x0, method=method, tol=tol, options=options,
                       callback=history_callback(callback, ev.fun, history), **kwargs)
    res.x_dict = layout.trees(layout.unflatten(res.x))
    res.solution = ev.solution(res.x)
    res.history = history
    res.nsolves, res.nhessp = ev.nsolves, ev.nhessp
    return res
