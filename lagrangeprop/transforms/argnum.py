"""``argnum``: which inputs of the traced Program a transform differentiates.

``argnum`` names positions of ``f``'s own signature (SPEC §2), whatever order keywords
are passed in; for a :class:`~lagrangeprop.Program` (no signature) positions are its
inputs' order.

Examples
--------
>>> select = argnum_names(lambda x, y: x * y, 1)
>>> select.check(); select(0, ["x", "y"])     # f(x=..., y=...): y
'y'
>>> argnum_names(lambda x: x, 1)(1, ["x"])
Traceback (most recent call last):
  ...
lagrangeprop.errors.InputError: grad: argnum 1 is out of range for <lambda>(x): use 0..0 (or -1..-1)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from ..errors import InputError, ShapeError
from ..graph.builder import ProgramBuilder

__all__ = ["argnum_names", "check_count", "reject_foreign_options"]


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
    passed: list = []   # non-empty once check() passed

    def bad(i: int, n: int, names: list[str] | None) -> InputError:
        params = f"({', '.join(names)})" if names is not None else f"{n} positional argument(s)"
        return InputError(f"{what}: argnum {i} is out of range for {getattr(f, '__name__', 'f')}"
                          f"{params}: use 0..{n - 1} (or -{n}..-1)" if n else
                          f"{what}: argnum {i}, but the function takes no positional argument")

    def check() -> None:
        """The range check that needs no trace (``f`` without ``*args``); ``f``'s signature
        and ``argnum`` are fixed, so once it passed it is not run again."""
        if passed:
            return
        if sig is not None and not sig[1]:
            n = len(sig[0])
            for i in items:
                if not -n <= i < n:
                    raise bad(i, n, sig[0])
        passed.append(True)

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


def check_count(what: str, names: list[str], got: int) -> None:
    """The call passed one value per input of the Program (else ShapeError)."""
    if got != len(names):
        raise ShapeError(f"{what}: the function takes {len(names)} input(s) {names}, got {got}")


#: what JAX's and autograd's transforms take that lagrangeprop's do not, and the fix for each
_FOREIGN = {
    "argnums": "lagrangeprop's name is argnum= (an int or a tuple, as JAX's argnums)",
    "has_aux": "has_aux is not supported: return only the scalar, and read intermediates from "
               "lp.trace(f, ...).solve(...).values (every node's value) or call f again",
    "holomorphic": "complex functions are not supported (inputs and values are real)",
    "allow_int": "integer inputs are promoted to float64 already; drop allow_int",
    "reduce_axes": "reduce_axes is not supported; sum inside f instead",
}


def reject_foreign_options(what: str, options: dict) -> None:
    """InputError for keywords a transform does not take, naming lagrangeprop's spelling
    (``grad(f, argnums=0)`` from JAX raises a TypeError without this hint)."""
    if not options:
        return
    k = next(iter(options))
    hint = _FOREIGN.get(k, f"{what} takes no option {k!r}")
    raise InputError(f"{what}(f, {k}=...): {hint}")
