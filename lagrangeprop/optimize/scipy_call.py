"""The call into ``scipy.optimize.minimize`` that both minimizers share: nothing dropped.

scipy *warns* and carries on when a method cannot use what it was given (bounds for
``BFGS``, constraints for ``L-BFGS-B``, a Hessian for ``CG``, an unknown key in
``options=``): the result then solves another problem than the one asked. Here each of
those warnings is an :class:`~lagrangeprop.InputError` naming the method and the fix, raised
before the first iteration (:func:`run_minimize`); an unknown keyword is one too
(:func:`check_scipy_kwargs`). :func:`history_callback` records the objective after each
iteration and calls the user's callback in whichever style it was written:
``callback(xk)`` or scipy's ``callback(intermediate_result)`` (which may raise
``StopIteration`` to stop).

Examples
--------
>>> import numpy as np
>>> try:
...     run_minimize(lambda x: float(x @ x), np.ones(2), method="BFGS", bounds=[(0, 1)] * 2)
... except InputError as exc:
...     print(str(exc)[:70])
scipy.optimize.minimize(method='BFGS'): Method BFGS cannot handle boun
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.optimize as so

from ..errors import InputError

__all__ = ["run_minimize", "check_scipy_kwargs", "history_callback", "SCIPY_KWARGS"]

#: keywords of scipy.optimize.minimize that ``lp.minimize`` passes through (``**scipy_kwargs``)
SCIPY_KWARGS = ("jac", "hess", "hessp", "constraints")

_IGNORED = ("Method .* cannot handle", "Method .* does not use", "Method .* does not support")
_FIX = ("use a method that takes it (bounds: L-BFGS-B, TNC, SLSQP, trust-constr, Powell, "
        "Nelder-Mead, COBYLA, COBYQA; constraints: SLSQP, trust-constr, COBYLA, COBYQA), or "
        "leave it out")


def check_scipy_kwargs(kwargs: dict, what: str = "minimize") -> None:
    """InputError for a keyword that is neither ours nor one scipy's minimize takes."""
    unknown = [k for k in kwargs if k not in SCIPY_KWARGS]
    if unknown:
        raise InputError(f"{what} got the unknown keyword(s) {unknown}; the scipy.optimize.minimize "
                         f"keywords it passes on are {list(SCIPY_KWARGS)} (method, bounds, tol, "
                         "callback and options have their own parameters)")


def run_minimize(fun: Callable, x0: np.ndarray, *, method: Any, **kwargs: Any) -> so.OptimizeResult:
    """``scipy.optimize.minimize(fun, x0, method=method, **kwargs)``, where each warning that
    scipy would give for an argument it is going to ignore raises InputError instead."""
    name = method if isinstance(method, str) else getattr(method, "__name__", "callable")
    with warnings.catch_warnings():
        for pattern in _IGNORED:
            warnings.filterwarnings("error", message=pattern, category=RuntimeWarning)
        warnings.filterwarnings("error", message="Unknown solver options", category=so.OptimizeWarning)
        try:
            return so.minimize(fun, x0, method=method, **kwargs)
        except so.OptimizeWarning as exc:
            raise InputError(f"options={kwargs.get('options')!r}: {exc} for method {name!r}, which "
                             "would ignore them; see scipy.optimize.show_options('minimize', "
                             f"{name!r}) for the options it takes") from None
        except TypeError as exc:   # methods without **unknown_options (trust-constr)
            bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if bad is None or bad.group(1) not in (kwargs.get("options") or {}):
                raise
            raise InputError(f"options={kwargs.get('options')!r}: Unknown solver options: "
                             f"{bad.group(1)} for method {name!r}; see "
                             f"scipy.optimize.show_options('minimize', {name!r}) for the options "
                             "it takes") from None
        except RuntimeWarning as exc:
            if not any(word in str(exc) for word in ("cannot handle", "does not use", "does not support")):
                raise
            raise InputError(f"scipy.optimize.minimize(method={name!r}): {str(exc).rstrip('.')}, "
                             f"so it would ignore it: {_FIX}") from None


def _new_style(callback: Callable) -> bool:
    """Whether ``callback`` is scipy's ``callback(intermediate_result)``."""
    try:
        return set(inspect.signature(callback).parameters) == {"intermediate_result"}
    except (TypeError, ValueError):
        return False


def history_callback(callback: Callable | None, fun: Callable[[np.ndarray], float],
                     history: list) -> Callable:
    """A scipy callback appending ``fun(x)`` to ``history`` after each iteration, then calling
    ``callback`` as it was written: ``callback(xk, ...)`` or ``callback(intermediate_result)``
    (an :class:`~scipy.optimize.OptimizeResult` with ``x`` and ``fun``; raising
    ``StopIteration`` in it stops the method, as in scipy)."""
    if callback is not None and _new_style(callback):
        def cb(intermediate_result):
            res = intermediate_result
            if not isinstance(res, so.OptimizeResult):   # methods that pass x alone (TNC)
                x = np.copy(res)
                res = so.OptimizeResult(x=x, fun=fun(x))
            history.append(fun(res.x))
            return callback(intermediate_result=res)
        return cb

    def cb_old(xk, *rest):
        history.append(fun(xk))
        if callback is not None:
            return callback(xk, *rest)
    return cb_old
