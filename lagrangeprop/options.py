"""Solver options shared by the forward, adjoint and tangent passes, checked on entry.

A bad option raises :class:`~lagrangeprop.InputError` naming the option, what it got and
what it takes; nothing is coerced (``maxiter=2.5`` is not rounded, ``tol="1e-8"`` is not
parsed, ``method=""`` is not ``"auto"``). ``None`` means the default.

Examples
--------
>>> from lagrangeprop.options import SolveOptions
>>> SolveOptions.make(tol=1e-12).tol
1e-12
>>> SolveOptions.make(maxiter=2.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lagrangeprop.errors.InputError: maxiter=2.5 must be a positive integer (an int such as 50, not float); ...
"""

from __future__ import annotations

import importlib.util
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["SolveOptions", "METHODS", "LINEAR_SOLVERS", "REFERENCES", "PYAMG_MISSING", "pyamg_installed",
           "PETSC_MISSING", "petsc_installed", "real_option", "int_option", "choice_option", "check_options"]

METHODS = ("auto", "newton", "newton-krylov", "fixed-point", "anderson")
LINEAR_SOLVERS = ("auto", "direct", "gmres", "bicgstab", "amg", "petsc")
REFERENCES = ("autograd", "torch", "fd")
PYAMG_MISSING = ("linear_solver='amg' needs pyamg, an optional dependency: "
                 "pip install 'lagrangeprop[amg]' (or pip install pyamg)")
PETSC_MISSING = ("linear_solver='petsc' needs petsc4py, an optional dependency: apt-get install python3-petsc4py "
                 "(Debian's build, from a venv of /usr/bin/python3 made with --system-site-packages), or "
                 "pip install 'lagrangeprop[petsc]' (PyPI has only source builds: it compiles PETSc)")


def pyamg_installed() -> bool:
    """Whether the optional pyamg is importable (found, not imported: importing it is slow)."""
    return importlib.util.find_spec("pyamg") is not None


def petsc_installed() -> bool:
    """Whether the optional petsc4py is importable (found, not imported: importing starts PETSc)."""
    return importlib.util.find_spec("petsc4py") is not None


def real_option(name: str, value: Any, *, low: float = 0.0, high: float = math.inf,
                what: str = "") -> float:
    """``float(value)`` when it is a real number with ``low < value < high``, else InputError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value_f = float(value)
        ok = math.isfinite(value_f) and low < value_f < high
    if not ok:
        bounds = f"{low:g} < {name} < {high:g}" if math.isfinite(high) else f"{name} > {low:g}"
        raise InputError(f"{name}={value!r} must be a finite real number with {bounds}"
                         + (f"; it is {what}" if what else ""))
    return value_f


def int_option(name: str, value: Any, *, low: int = 1, what: str = "") -> int:
    """``int(value)`` when it is an integer (not a bool, not a float) ``>= low``, else InputError."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or int(value) < low:
        kind = "" if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
            else f" (an int such as 50, not {type(value).__name__})"
        adjective = "positive" if low == 1 else f">= {low}"
        raise InputError(f"{name}={value!r} must be a {adjective} integer{kind}"
                         + (f"; it is {what}" if what else ""))
    return int(value)


def choice_option(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices`` (strings), else InputError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}; "
                         f"pass one of them (or None for {choices[0]!r})")
    return value


@dataclass(frozen=True)
class SolveOptions:
    """``tol``: relative residual tolerance of block solves (0 < tol < 1), per constraint on
    that constraint's own scale (SPEC §1 "Scale", :mod:`lagrangeprop.blocks.scale`); ``maxiter``:
    iteration limit per block (Newton steps or fixed-point sweeps, a positive int; None = the
    method's default); ``method``: forward block solver; ``linear_solver``: block adjoint/tangent
    solver (``"amg"``: Newton steps, adjoint and tangent of large sparse blocks by conjugate
    gradients or gmres with an algebraic-multigrid preconditioner; needs the optional pyamg;
    ``"petsc"``: the same on PETSc's KSP with GAMG or hypre, distributed by rows under ``mpiexec``;
    needs petsc4py. Both apply to sparse blocks of more than 256 unknowns; smaller blocks keep the
    dense LU)."""

    tol: float = 1e-10
    maxiter: int | None = None
    method: str = "auto"
    linear_solver: str = "auto"

    @classmethod
    def make(cls, tol=None, maxiter=None, method=None, linear_solver=None) -> SolveOptions:
        """Validated options; ``None`` means the default. Raises InputError on a bad value.

        The options are immutable, so one instance serves every solve given the same values:
        the defaults, and the last few combinations of plain values (keyed by type and value,
        so ``maxiter=True`` is never taken for ``maxiter=1``), are checked once (a solve in a
        loop pays a dict lookup). ``linear_solver="amg"`` and ``"petsc"`` are checked on every call
        (whether pyamg or petsc4py is installed may change).

        Examples
        --------
        >>> SolveOptions.make() is SolveOptions.make(), SolveOptions.make(tol=1e-8).tol
        (True, 1e-08)
        """
        args = (tol, maxiter, method, linear_solver)
        if tol is None and maxiter is None and method is None and linear_solver is None:
            key = cls
        elif all(a.__class__ in _PLAIN for a in args) and linear_solver not in ("amg", "petsc"):
            key = (cls, *[(a.__class__, a) for a in args])
        else:
            return cls._make(*args)
        opts = _MADE.get(key)
        if opts is None:
            opts = cls._make(*args)
            if len(_MADE) >= _MADE_MAX:
                _MADE.clear()
            _MADE[key] = opts
        return opts

    @classmethod
    def _make(cls, tol, maxiter, method, linear_solver) -> SolveOptions:
        tol = 1e-10 if tol is None else real_option(
            "tol", tol, low=0.0, high=1.0, what="the relative residual tolerance of block solves")
        if maxiter is not None:
            maxiter = int_option("maxiter", maxiter, what="the iteration limit per block")
        method = "auto" if method is None else choice_option("method", method, METHODS)
        linear_solver = "auto" if linear_solver is None else choice_option(
            "linear_solver", linear_solver, LINEAR_SOLVERS)
        if linear_solver == "amg" and not pyamg_installed():
            raise InputError(PYAMG_MISSING)
        if linear_solver == "petsc" and not petsc_installed():
            raise InputError(PETSC_MISSING)
        return cls(tol=tol, maxiter=maxiter, method=method, linear_solver=linear_solver)


# SolveOptions.make's checked instances: by class (all defaults), or class and (type, value) per argument
_PLAIN = frozenset({type(None), float, int, str})
_MADE: dict = {}
_MADE_MAX = 32


def check_options(*, inputs=None, against=REFERENCES, rtol=1e-8, fd_rtol=1e-5, atol=None, rng=0,
                  fd_max_elements=12) -> tuple[str, ...]:
    """Validate :func:`lagrangeprop.check`'s own options; returns ``against`` as a tuple.

    Examples
    --------
    >>> check_options(against="fd")
    ('fd',)
    >>> check_options(rtol=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lagrangeprop.errors.InputError: rtol=-1 must be a finite real number with rtol > 0; ...
    """
    if inputs is not None and not isinstance(inputs, Mapping):
        raise InputError(f"inputs must be a dict {{name: value}}, got {type(inputs).__name__}")
    if isinstance(against, str):
        against = (against,)
    try:
        against = tuple(against)
    except TypeError:
        raise InputError(f"against={against!r} must be a sequence of references from {REFERENCES}") from None
    unknown = [a for a in against if a not in REFERENCES]
    if unknown or not against:
        raise InputError(f"against={against!r} " + (f"names {unknown}, not a reference"
                                                     if unknown else "names no reference")
                         + f"; choose from {', '.join(map(repr, REFERENCES))}")
    real_option("rtol", rtol, what="the relative tolerance against the tapes")
    real_option("fd_rtol", fd_rtol, what="the relative tolerance against finite differences")
    if atol is not None and not (isinstance(atol, numbers.Real) and atol == 0):
        real_option("atol", atol, what="the absolute tolerance (None: 1e-12 x the largest multiplier)")
    int_option("fd_max_elements", fd_max_elements, low=0,
               what="the largest input differenced element by element")
    if isinstance(rng, (bool, float, str)):
        raise InputError(f"rng={rng!r} must be an int seed >= 0 or a numpy.random.Generator")
    try:
        np.random.default_rng(rng)
    except (TypeError, ValueError):
        raise InputError(f"rng={rng!r} must be an int seed >= 0 or a numpy.random.Generator") from None
    return against
