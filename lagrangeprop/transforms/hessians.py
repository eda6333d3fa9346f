"""Second order: ``hvp`` and ``hessian``, exact by forward-over-reverse.

One solve gives the multipliers; each Hessian-vector product is then one tangent pass
along ``v`` and one differentiated multiplier pass (:mod:`lagrangeprop.solve.second_order`),
with the block factorizations reused.

Examples
--------
>>> import lagrangeprop as lp
>>> float(lp.hvp(lambda x: x ** 3, 2.0, 1.0))   # 6x
12.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..compile.cache import compiled
from ..errors import InputError, ShapeError
from ..solve.second_order import solution_hvp
from ..solve.program import solve_program
from .argnum import argnum_names, check_count
from .cache import program_for

__all__ = ["hvp", "hessian"]


def _solve_scalar(program: Callable, args, guess, kwargs=None):
    """The solve of a scalar-output program (the base of every Hessian-vector product)."""
    kwargs = kwargs or {}
    prog, names = program(*args, **kwargs)
    check_count("hessian", names, len(args) + len(kwargs))
    sched = compiled(prog)
    out = sched.shapes[sched.output]
    if out != ():
        raise ShapeError(f"hvp/hessian apply to scalar-output functions; {prog.name} returns "
                         f"shape {out}: try lp.jacobian of lp.grad")
    return solve_program(prog, {**dict(zip(names, args)), **kwargs}, guess=guess), names


def hvp(f: Callable, x, v, *, guess: dict | None = None):
    """Hessian-vector product ``∇²f(x) · v`` of scalar ``f``, exact (forward-over-reverse).

    ``f`` takes ``x`` as its single argument (or is a one-input Program).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.hvp(lambda x: lp.sum(x ** 3), np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    array([ 6., 12.])
    """
    sol, names = _solve_scalar(program_for(f, cached=False), (x,), guess)
    return solution_hvp(sol, {names[0]: v})[names[0]]


def hessian(f: Callable, argnum: int = 0, *, guess: dict | None = None) -> Callable:
    """The Hessian of scalar ``f`` for argument ``argnum``: shape ``x.shape + x.shape``.

    One solve, then one tangent pass and one differentiated multiplier pass per
    column (block factorizations reused). Cached and guarded as
    :func:`~lagrangeprop.transforms.jacobian`.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    """
    program = program_for(f)
    select = argnum_names(f, argnum, "hessian")

    def hess(*args, **kwargs):
        if isinstance(argnum, (tuple, list)):
            raise InputError(f"hessian: argnum={argnum!r}; the Hessian is for one argument: "
                             "pass an int")
        select.check()
        sol, names = _solve_scalar(program, args, guess, kwargs)
        name = select(len(args), names)
        shape = sol.schedule.shapes[sol.schedule.index[name]]
        n = int(np.prod(shape, dtype=int))
        cols = []
        for k in range(n):
            e = np.zeros(n)
            e[k] = 1.0
            cols.append(np.ravel(solution_hvp(sol, {name: e.reshape(shape)})[name]))
        H = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        return H.reshape(shape + shape)
    return hess
