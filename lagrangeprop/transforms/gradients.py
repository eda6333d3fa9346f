"""Reverse mode: ``grad``, ``value_and_grad`` and ``vjp``, autograd-style.

``grad`` and ``value_and_grad`` trace ``f`` once per argument-shape signature (the
Program is cached, :mod:`lagrangeprop.transforms.cache`) and solve it on every call:
training loops do not re-trace. The multipliers are the gradient (SPEC §1,
``λ_x = ∂L/∂x = ∇_x z_o``); ``vjp`` solves ``Aᵀλ = e_o·g`` once per cotangent ``g``.

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

from ..errors import ShapeError
from ..graph.coerce import real_array
from ..solve.adjoint import run_adjoint
from ..solve.inputs import scalar, scalarize
from ..solve.program import forward_program, solve_program
from .argnum import argnum_names, check_count
from .cache import program_for, traced

__all__ = ["grad", "value_and_grad", "vjp"]


def _inputs(names: list[str], args, kwargs) -> dict:
    return {**dict(zip(names, args)), **kwargs}


def value_and_grad(f: Callable, argnum: int | tuple[int, ...] = 0) -> Callable:
    """``(f(*args), ∇_{args[argnum]} f)`` for scalar-output ``f`` by Lagrange multipliers.

    ``f`` is traced once per argument-shape signature; at most 32 traced programs
    (:data:`~lagrangeprop.transforms.cache.CACHE_SIZE`) are kept per wrapped function, the least recently used dropped
    first (an evicted signature is simply traced again). A cached program is
    reused only while everything ``f`` reads from outside its arguments (globals,
    closure variables, attributes, captured arrays' contents) is unchanged; otherwise
    the call traces again (SPEC §2 "Never stale").

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> v, g = lp.value_and_grad(lambda x, y: x * y, argnum=(0, 1))(2.0, 3.0)
    >>> float(v), [float(t) for t in g]
    (6.0, [3.0, 2.0])
    """
    program_for = traced(f)
    select = argnum_names(f, argnum, "grad")

    def wrapped(*args, **kwargs):
        select.check()
        prog, names = program_for(*args, **kwargs)
        sel = select(len(args), names)
        G = prog.graph
        out = G._node[G.graph["output"]]["shape"]
        if out != ():
            raise ShapeError(
                f"grad only applies to real scalar-output functions; {prog.name} returns shape "
                f"{out}: try lp.jacobian, or lp.vjp with a cotangent")
        sol = solve_program(prog, _inputs(names, args, kwargs))
        g = tuple(sol.grad[n] for n in sel) if isinstance(sel, list) else sol.grad[sel]
        return sol.output, g
    return wrapped


def grad(f: Callable, argnum: int | tuple[int, ...] = 0) -> Callable:
    """The gradient of scalar-output ``f`` with respect to positional argument(s) ``argnum``.

    ``argnum`` names positions of ``f``'s signature, however the call passes them. Traced
    programs are cached per argument shapes (at most 32, :data:`~lagrangeprop.transforms.cache.CACHE_SIZE`, LRU) and
    re-traced when anything ``f`` read from outside its arguments changed
    (see :func:`value_and_grad`).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> float(lp.grad(lambda x: x ** 3)(2.0))
    12.0
    >>> float(lp.grad(lambda x, y: x * y ** 2, argnum=0)(y=3.0, x=1.0))   # ∂/∂x = y²
    9.0
    """
    vg = value_and_grad(f, argnum)

    def wrapped(*args, **kwargs):
        return vg(*args, **kwargs)[1]
    return wrapped


def vjp(f: Callable, *args, guess: dict | None = None):
    """``(f(*args), vjp_fn)`` with ``vjp_fn(g)`` a tuple of cotangents, one per argument.

    One forward solve; each ``vjp_fn`` call solves the multiplier equations
    ``Aᵀλ = e_o·g`` (reusing the block factorizations).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> value, vjp_fn = lp.vjp(lambda x, y: x * y, 2.0, 3.0)
    >>> [float(c) for c in vjp_fn(1.0)]
    [3.0, 2.0]
    """
    prog, names = program_for(f, cached=False)(*args)
    check_count("vjp", names, len(args))
    sched, vals, states, opts = forward_program(prog, dict(zip(names, args)), guess)
    out_shape = sched.shapes[sched.output]

    def vjp_fn(g) -> tuple:
        g = real_array(g, "cotangent")
        if g.shape != out_shape:
            raise ShapeError(f"cotangent has shape {g.shape}, the output "
                             f"{sched.names[sched.output]!r} has shape {out_shape}")
        lam = run_adjoint(sched, vals, g, states, opts)
        return tuple(scalar(np.zeros(sched.shapes[i]) if lam[i] is None
                            else np.array(np.broadcast_to(lam[i], sched.shapes[i])))
                     for i in (sched.index[n] for n in names))
    return scalarize(vals[sched.output]), vjp_fn
