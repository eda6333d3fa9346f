"""Forward mode and Jacobians: ``jvp`` and ``jacobian``.

``jvp`` pushes one tangent through the program (``A ż = -(∂c/∂x) ẋ``,
:mod:`lagrangeprop.solve.tangent`); ``jacobian`` pushes identity columns forward or
pulls identity rows back, whichever is smaller (:mod:`lagrangeprop.solve.matrix`).

Examples
--------
>>> import lagrangeprop as lp
>>> value, tangent = lp.jvp(lambda x: x ** 3, (2.0,), (1.0,))
>>> float(value), float(tangent)
(8.0, 12.0)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..solve.inputs import scalar, scalarize, shaped_input
from ..solve.matrix import output_jacobian
from ..solve.program import forward_program
from ..solve.tangent import tangent_pass
from .argnum import argnum_names, check_count
from .cache import program_for

__all__ = ["jvp", "jacobian"]


def jvp(f: Callable, primals: tuple, tangents: tuple, *, guess: dict | None = None):
    """``(f(*primals), J·tangents)`` by forward mode, like ``jax.jvp``.

    ``f`` is a numpy-style function (traced once per argument shapes) or a
    :class:`~lagrangeprop.Program` (primals in the order of its inputs); ``guess``
    starts the program's cyclic blocks.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> v, t = lp.jvp(lambda x, y: x * y, (2.0, 3.0), (1.0, 0.0))
    >>> float(v), float(t)
    (6.0, 3.0)
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise InputError("jvp takes the primals and the tangents as tuples, one entry per argument: "
                         "lp.jvp(f, (x,), (v,))")
    primals, tangents = tuple(primals), tuple(tangents)
    prog, names = program_for(f, cached=False)(*primals)
    check_count("jvp primals", names, len(primals))
    check_count("jvp tangents", names, len(tangents))
    sched, vals, states, opts = forward_program(prog, dict(zip(names, primals)), guess)
    xdot = {sched.index[n]: shaped_input(sched, sched.index[n], t, "tangent") for n, t in zip(names, tangents)}
    zdot = tangent_pass(sched, vals, states, opts, xdot)
    out = zdot[sched.output]
    out = np.zeros(sched.shapes[sched.output]) if out is None else np.asarray(out)
    return scalarize(vals[sched.output]), scalar(out)


def jacobian(f: Callable, argnum: int = 0, *, mode: str = "auto", guess: dict | None = None) -> Callable:
    """The Jacobian of ``f`` for positional argument ``argnum``: shape ``out.shape + in.shape``.

    ``mode="auto"`` pushes identity columns forward (``A Ż = -∂c/∂x``) when the input is
    no larger than the output, else pulls identity rows back (``AᵀΛ = E_o``); a cyclic
    block solves all columns against its one factorization. ``argnum`` is a position of
    ``f``'s signature (keywords allowed). Traced programs are cached as :func:`lp.grad
    <lagrangeprop.transforms.grad>` caches them: at most 32 per wrapper, re-traced when anything
    ``f`` read from outside its arguments changed.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.jacobian(lambda x: x ** 2)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    program = program_for(f)
    select = argnum_names(f, argnum, "jacobian")

    def jac(*args, **kwargs):
        if isinstance(argnum, (tuple, list)):
            raise InputError(f"jacobian: argnum={argnum!r}; the Jacobian is for one argument: "
                             "pass an int (call lp.jacobian once per argument)")
        select.check()
        prog, names = program(*args, **kwargs)
        check_count("jacobian", names, len(args) + len(kwargs))
        sched, vals, states, opts = forward_program(prog, {**dict(zip(names, args)), **kwargs}, guess)
        return output_jacobian(sched, vals, states, opts,
                               sched.index[select(len(args), names)], mode)
    return jac
