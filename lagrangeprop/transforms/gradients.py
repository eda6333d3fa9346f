"""Reverse mode: ``grad``, ``value_and_grad`` and ``vjp``, autograd-style.

``grad`` and ``value_and_grad`` trace ``f`` once per argument signature (the
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
from ..solve.program import forward_program, gradient_program, solve_program
from .argnum import argnum_names, reject_foreign_options
from .cache import program_for
from .nested import has_traced, nested_value_and_grad, reject_traced, require_scalar
from .trees import bind, like, output_tree

__all__ = ["grad", "value_and_grad", "vjp"]


def _cotangent(g, i: int, sched) -> object:
    """The multiplier of node ``i`` as the caller's cotangent (zeros where it is None)."""
    shape = sched.shapes[i]
    return scalar(np.zeros(shape) if g is None else np.array(np.broadcast_to(g, shape)))


def value_and_grad(f: Callable, argnum: int | tuple[int, ...] = 0, **options) -> Callable:
    """``(f(*args), ∇_{args[argnum]} f)`` for scalar-output ``f`` by Lagrange multipliers.

    Arguments may be parameter trees (nested dicts, lists and tuples of arrays and floats,
    :mod:`lagrangeprop.graph.pytree`); the gradient has the structure of the argument, a
    tuple of them for an ``argnum`` tuple. ``f`` is traced once per argument signature
    (structure and shapes); at most 32 traced programs
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
    >>> g = lp.grad(lambda p: p["w"] ** 2 * p["b"])({"w": 3.0, "b": 2.0})
    >>> {k: float(v) for k, v in g.items()}
    {'b': 9.0, 'w': 12.0}
    """
    reject_foreign_options("value_and_grad", options)
    return _reverse(f, argnum, with_value=True)


def _reverse(f: Callable, argnum, with_value: bool) -> Callable:
    """The wrapper of ``value_and_grad`` (``with_value``) and ``grad``; a call on traced values
    (inside a function being traced) records one nested op (:mod:`.nested`)."""
    program = program_for(f, what="grad")
    select = argnum_names(f, argnum, "grad")
    ops: dict = {}   # the nested ops of this wrapper, by call signature
    fast = getattr(program, "fast", None)   # None for a Program (no trace cache)
    chosen: dict = {}   # n positional arguments -> (argnum's names, their positions)
    scalar = [None]     # the last Program found to have a scalar output

    def wrapped(*args, **kwargs):
        select.check()
        hit = None if kwargs or fast is None else fast(args)
        if hit is not None:   # plain leaves, cached signature, guard unchanged (cache.traced)
            prog, names = hit
            picked = chosen.get(len(args))
            if picked is None:
                sel = select(len(args), names)
                wrt = [sel] if sel.__class__ is str else sel
                picked = chosen[len(args)] = (sel.__class__ is str, wrt, [names.index(n) for n in wrt])
            if prog is not scalar[0]:
                require_scalar(prog)
                scalar[0] = prog
            one, wrt, at = picked
            value, grads = gradient_program(prog, dict(zip(names, args)), wrt)
            g = like(args[at[0]], grads[0]) if one else \
                tuple([like(args[k], d) for k, d in zip(at, grads)])
            return (value, g) if with_value else g
        if has_traced(args, kwargs):
            call = bind(f, args, kwargs, "grad")
            return nested_value_and_grad(f, program, call, select(len(args), call.names),
                                         with_value, ops)
        prog, call = program(*args, **kwargs)
        sel = select(len(args), call.names)
        require_scalar(prog)
        sol = solve_program(prog, call.inputs())
        g = call.like_arguments(sel, sol.grad.__getitem__)
        return (sol.output, g) if with_value else g
    wrapped.cache_info = getattr(program, "cache_info", None)
    return wrapped


def grad(f: Callable, argnum: int | tuple[int, ...] = 0, **options) -> Callable:
    """The gradient of scalar-output ``f`` with respect to positional argument(s) ``argnum``.

    ``argnum`` names positions of ``f``'s signature, however the call passes them. The
    gradient has the argument's structure (a dict, list or tuple of arrays for a parameter
    tree). Traced programs are cached per argument structure and shapes (at most 32,
    :data:`~lagrangeprop.transforms.cache.CACHE_SIZE`, LRU) and re-traced when anything
    ``f`` read from outside its arguments changed (see :func:`value_and_grad`).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> float(lp.grad(lambda x: x ** 3)(2.0))
    12.0
    >>> float(lp.grad(lambda x, y: x * y ** 2, argnum=0)(y=3.0, x=1.0))   # ∂/∂x = y²
    9.0
    >>> layers = [(np.ones(2), np.array(1.0)), (np.ones(2), np.array(2.0))]
    >>> g = lp.grad(lambda ls: sum(lp.sum(W) * b for W, b in ls))(layers)
    >>> [(dW.tolist(), float(db)) for dW, db in g]          # a list of (W, b) like the argument
    [([1.0, 1.0], 2.0), ([2.0, 2.0], 2.0)]
    """
    reject_foreign_options("grad", options)
    return _reverse(f, argnum, with_value=False)


def vjp(f: Callable, *args, guess: dict | None = None):
    """``(f(*args), vjp_fn)`` with ``vjp_fn(g)`` a tuple of cotangents, one per argument.

    ``f`` is traced once per argument signature (its guarded cache,
    :func:`~lagrangeprop.transforms.cache.shared`). One forward solve; each ``vjp_fn``
    call solves the multiplier equations ``Aᵀλ = e_o·g`` (reusing the block factorizations).
    Arguments may be parameter trees (each cotangent has its argument's structure); a result
    that is a tuple or dict of arrays is returned as such, and ``g`` then has that structure.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> value, vjp_fn = lp.vjp(lambda x, y: x * y, 2.0, 3.0)
    >>> [float(c) for c in vjp_fn(1.0)]
    [3.0, 2.0]
    >>> value, vjp_fn = lp.vjp(lambda p: (p["a"] * 2.0, p["a"] ** 2), {"a": 3.0})
    >>> [float(v) for v in value], {k: float(v) for k, v in vjp_fn((1.0, 1.0))[0].items()}
    ([6.0, 9.0], {'a': 8.0})
    """
    reject_traced("lp.vjp", args)
    program = program_for(f, what="vjp", per_function=True)
    fast = getattr(program, "fast", None)   # None for a Program (no trace cache)
    hit = None if fast is None else fast(args)
    if hit is not None:   # plain leaves, a cached signature, its guard unchanged (cache.traced)
        prog, names = hit
        sched, vals, states, opts = forward_program(prog, dict(zip(names, args)), guess)

        def cotangents(lam) -> tuple:
            return tuple(like(a, _cotangent(lam[sched.index[n]], sched.index[n], sched))
                         for n, a in zip(names, args))
    else:
        prog, call = program(*args)
        sched, vals, states, opts = forward_program(prog, call.inputs(), guess)

        def cotangents(lam) -> tuple:
            return tuple(call.like_arguments(a.name, lambda p: _cotangent(lam[sched.index[p]],
                                                                          sched.index[p], sched))
                         for a in call.arguments)
    out_shape, tree = sched.shapes[sched.output], output_tree(prog)

    def vjp_fn(g) -> tuple:
        if tree is not None:
            g = tree.join(g, "cotangent")
        else:
            g = real_array(g, "cotangent")
            if g.shape != out_shape:
                raise ShapeError(f"cotangent has shape {g.shape}, the output "
                                 f"{sched.names[sched.output]!r} has shape {out_shape}")
        return cotangents(run_adjoint(sched, vals, g, states, opts))
    out = vals[sched.output]
    return (scalarize(out) if tree is None else tree.split(out)), vjp_fn
