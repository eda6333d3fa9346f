"""autograd-style function transformations: ``grad`` and ``value_and_grad``.

Each traces ``f`` once per argument-shape signature (the Program is cached) and
solves it for every call: training loops do not re-trace.

Examples
--------
>>> import lagrangeprop as lp
>>> df = lp.grad(lambda x: lp.sin(x) * x)
>>> round(float(df(0.5)), 6)   # sin(x) + x cos(x)
0.918217
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ShapeError
from .trace import trace

__all__ = ["grad", "value_and_grad", "traced"]


def traced(f: Callable) -> Callable:
    """``program_for(*args, **kwargs) -> (Program, input names)``, cached by shapes."""
    cache: dict = {}

    def program_for(*args, **kwargs):
        key = (tuple(np.shape(a) for a in args),
               tuple(sorted((k, np.shape(v)) for k, v in kwargs.items())))
        if key not in cache:
            prog = trace(f, *args, **kwargs)
            cache[key] = (prog, prog.compile().input_names)
        return cache[key]
    return program_for


def _inputs(names: list[str], args, kwargs) -> dict:
    return {**dict(zip(names, args)), **kwargs}


def _selected(names, argnum):
    if isinstance(argnum, (tuple, list)):
        return [names[i] for i in argnum]
    return names[argnum]


def value_and_grad(f: Callable, argnum: int | tuple[int, ...] = 0) -> Callable:
    """``(f(*args), ∇_{args[argnum]} f)`` for scalar-output ``f`` by Lagrange multipliers.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> v, g = lp.value_and_grad(lambda x, y: x * y, argnum=(0, 1))(2.0, 3.0)
    >>> float(v), [float(t) for t in g]
    (6.0, [3.0, 2.0])
    """
    program_for = traced(f)

    def wrapped(*args, **kwargs):
        prog, names = program_for(*args, **kwargs)
        out = prog.graph.nodes[prog.graph.graph["output"]]["shape"]
        if out != ():
            raise ShapeError(
                f"grad only applies to real scalar-output functions; {prog.name} returns shape "
                f"{out}: try lp.jacobian, or lp.vjp with a cotangent")
        sol = prog.solve(**_inputs(names, args, kwargs))
        sel = _selected(names, argnum)
        g = tuple(sol.grad[n] for n in sel) if isinstance(sel, list) else sol.grad[sel]
        return sol.output, g
    return wrapped


def grad(f: Callable, argnum: int | tuple[int, ...] = 0) -> Callable:
    """The gradient of scalar-output ``f`` with respect to positional argument(s) ``argnum``.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> float(lp.grad(lambda x: x ** 3)(2.0))
    12.0
    """
    vg = value_and_grad(f, argnum)

    def wrapped(*args, **kwargs):
        return vg(*args, **kwargs)[1]
    return wrapped
