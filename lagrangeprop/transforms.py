"""autograd-style function transformations: ``grad`` and ``value_and_grad``.

Each traces ``f`` once per argument-shape signature (the Program is cached) and
solves it for every call: training loops do not re-trace. A cached program is reused
only while everything ``f`` read from outside its arguments is unchanged
(:mod:`lagrangeprop.guards`); otherwise the call re-traces.

Examples
--------
>>> import lagrangeprop as lp
>>> df = lp.grad(lambda x: lp.sin(x) * x)
>>> round(float(df(0.5)), 6)   # sin(x) + x cos(x)
0.918217
"""

from __future__ import annotations

import inspect
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from .graph.coerce import real_array
from .errors import InputError, ShapeError
from .guards import Guard, RetraceWarning
from .compile.cache import compiled
from .graph.builder import ProgramBuilder
from .graph.trace import record
from .solve.lagrangian import solve_program

__all__ = ["grad", "value_and_grad", "traced", "argnum_names", "CACHE_SIZE"]

#: traced programs kept per wrapped function (least recently used dropped first)
CACHE_SIZE = 32
#: consecutive invalidated calls after which a RetraceWarning says what keeps changing
RETRACE_WARN = 3


def traced(f: Callable, *, cache_size: int = CACHE_SIZE) -> Callable:
    """``program_for(*args, **kwargs) -> (Program, input names)``, cached by shapes.

    The cache is an LRU of at most ``cache_size`` argument-shape signatures. An entry is
    reused only while its :class:`~lagrangeprop.guards.Guard` finds everything ``f`` read
    from outside its arguments unchanged; otherwise ``f`` is traced again. After
    ``RETRACE_WARN`` consecutive invalidated calls a :class:`RetraceWarning` names the
    value that keeps changing (once per wrapped function).
    """
    cache: OrderedDict = OrderedDict()
    streak = [0, False]   # consecutive invalidated calls, warned yet

    def program_for(*args, **kwargs):
        key = (tuple([_shape(a) for a in args]),
               tuple(sorted([(k, _shape(v)) for k, v in kwargs.items()])) if kwargs else ())
        entry = cache.get(key)
        if entry is not None:
            what = entry[2].changed()
            if what is None:
                cache.move_to_end(key)
                streak[0] = 0
                return entry[0], entry[1]
            streak[0] += 1
            if streak[0] >= RETRACE_WARN and not streak[1]:
                streak[1] = True
                warnings.warn(
                    f"{getattr(f, '__qualname__', f)!r} was traced again on each of the last "
                    f"{streak[0]} calls because {what} changed since the previous trace; pass "
                    "values that change between calls (a minibatch, a parameter) as arguments "
                    "of the function instead of reading them from outside it", RetraceWarning,
                    stacklevel=_user_stacklevel())
        before = Guard(f, snapshot=False)
        prog = record(f, args, kwargs)
        drew = before.random_draws()
        if drew:
            # the program holds one draw: every call must trace (and draw) again
            if not streak[1]:
                streak[1] = True
                warnings.warn(
                    f"{getattr(f, '__qualname__', f)!r} draws random numbers from {drew[0]} "
                    "while it is traced, so the traced program holds one draw: every call "
                    "traces again; pass the random values as an argument of the function to "
                    "reuse the trace", RetraceWarning, stacklevel=_user_stacklevel())
            cache.pop(key, None)
            return prog, compiled(prog).input_names
        # after the trace: f's own side effects while tracing (appending to a log list,
        # filling a memo dict) are part of the state the program was traced in
        guard = Guard(f, prog._sources)
        cache[key] = (prog, compiled(prog).input_names, guard)
        cache.move_to_end(key)
        while len(cache) > cache_size:
            cache.popitem(last=False)
        return cache[key][0], cache[key][1]
    program_for.cache = cache
    return program_for


def _shape(a) -> tuple:
    cls = a.__class__
    if cls is float:
        return ()
    if cls is np.ndarray:
        return a.shape
    try:
        return np.shape(a)
    except ValueError:      # ragged: the conversion rule names the problem (InputError)
        return real_array(a, "an argument").shape


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside lagrangeprop (the user's call)."""
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level


# ------------------------------------------------------------------ argnum
def _positional(f: Callable) -> tuple[list[str], bool] | None:
    """``(names of f's positional parameters, has *args)``, or None without a signature."""
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names, any(p.kind is p.VAR_POSITIONAL for p in params)


def _check_argnum(argnum, what: str) -> tuple[int, ...]:
    items = argnum if isinstance(argnum, (tuple, list)) else (argnum,)
    if not items or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in items):
        raise InputError(f"{what}: argnum={argnum!r} must be an int or a non-empty tuple of ints "
                         "naming positional parameters of the function (0 is the first)")
    return tuple(int(i) for i in items)


def argnum_names(f: Callable, argnum, what: str = "grad") -> Callable:
    """``names(n_positional_args, input_names)`` -> the input name(s) ``argnum`` selects.

    ``argnum`` names positions of ``f``'s own signature (SPEC §2), whatever order keywords
    are passed in: for ``def f(x, y)``, ``argnum=0`` is ``x`` in ``f(y=2.0, x=1.0)`` too.
    A :class:`~lagrangeprop.Program` has no signature: positions are its inputs' order.
    Checked at each call, before ``f`` is traced (type; range when ``f`` has no
    ``*args``), and after (range, and that the argument was passed); errors are
    InputError, raised by the call (as autograd and JAX do), not by making the wrapper.
    """
    try:
        items = _check_argnum(argnum, what)
    except InputError as exc:
        error = exc   # (``exc`` itself is unbound when the except block ends)

        def invalid(*_):
            raise error
        invalid.check = invalid
        return invalid
    single = not isinstance(argnum, (tuple, list))
    sig = None if isinstance(f, ProgramBuilder) else _positional(f)

    def bad(i: int, n: int, names: list[str] | None) -> InputError:
        params = f"({', '.join(names)})" if names is not None else f"{n} positional argument(s)"
        return InputError(f"{what}: argnum {i} is out of range for {getattr(f, '__name__', 'f')}"
                          f"{params}: use 0..{n - 1} (or -{n}..-1)" if n else
                          f"{what}: argnum {i}, but the function takes no positional argument")

    def check() -> None:
        """The range check that needs no trace (``f`` without ``*args``)."""
        if sig is not None and not sig[1]:
            n = len(sig[0])
            for i in items:
                if not -n <= i < n:
                    raise bad(i, n, sig[0])

    def names(n_args: int, input_names: list[str]):
        if sig is None:
            params, n = list(input_names), len(input_names)
        else:
            params = sig[0] + [f"arg{k}" for k in range(len(sig[0]), n_args)] if sig[1] else sig[0]
            n = len(params)
        out = []
        for i in items:
            if not -n <= i < n:
                raise bad(i, n, params if sig is not None else None)
            name = params[i]
            if name not in input_names:
                raise InputError(f"{what}: argnum {i} names parameter {name!r}, which this call "
                                 f"does not pass (it was given {list(input_names)}); pass {name} "
                                 "explicitly to differentiate with respect to it")
            out.append(name)
        return out[0] if single else out
    names.check = check
    return names


def _inputs(names: list[str], args, kwargs) -> dict:
    return {**dict(zip(names, args)), **kwargs}


def value_and_grad(f: Callable, argnum: int | tuple[int, ...] = 0) -> Callable:
    """``(f(*args), ∇_{args[argnum]} f)`` for scalar-output ``f`` by Lagrange multipliers.

    ``f`` is traced once per argument-shape signature; at most 32 traced programs
    (:data:`CACHE_SIZE`) are kept per wrapped function, the least recently used dropped
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
    programs are cached per argument shapes (at most 32, :data:`CACHE_SIZE`, LRU) and
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
