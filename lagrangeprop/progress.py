"""Progress of long block solves: ``solve(..., verbose=, callback=)``, a tqdm bar or lines.

A 10⁶-unknown block runs for seconds per Newton step. While a solve runs inside
:func:`reporting`, every iteration of a block's forward method (Newton, Newton–Krylov, fixed
point, Anderson) reports an :class:`Iteration` — the block, the method, the iteration, the
scaled residual ``max_d |c_d| / s_d`` (SPEC §1 "Scale") and the tolerance it must reach — to
``callback`` (in the style of ``scipy.optimize``'s ``callback(intermediate_result)``) and, with
``verbose``, as a tqdm bar when tqdm is installed (imported only then) or as plain lines on
stderr. Outside :func:`reporting` (the default) :func:`report` is one context-variable read.

Examples
--------
>>> seen = []
>>> with reporting(callback=seen.append):
...     report(["w"], "newton", 0, 1.5, 1e-10)
...     report(["w"], "newton", 1, 3e-12, 1e-10)
>>> [(s.method, s.iteration, s.residual, s.converged) for s in seen]
[('newton', 0, 1.5, False), ('newton', 1, 3e-12, True)]
>>> report(["w"], "newton", 2, 0.0, 1e-10)    # no reporter: nothing happens
"""

from __future__ import annotations

import contextlib
import numbers
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = ["Iteration", "Reporter", "reporting", "report", "check_progress_options", "tqdm_bar"]


@dataclass(frozen=True)
class Iteration:
    """One iteration of a block's forward solve: the ``block`` (its first node names), the
    ``method``, the ``iteration`` (0: the starting point), the scaled ``residual``
    ``max_d |c_d|/s_d``, the ``tol`` it must reach, and seconds since the solve started."""

    block: str
    method: str
    iteration: int
    residual: float
    tol: float
    elapsed: float

    @property
    def converged(self) -> bool:
        """Whether this iterate passes the stopping test."""
        return self.residual <= self.tol

    def line(self) -> str:
        """The report as one plain line."""
        return (f"lp.solve: block [{self.block}] {self.method} iteration {self.iteration}: "
                f"residual {self.residual:.3e} (tol {self.tol:.0e}) {self.elapsed:.1f} s")


def check_progress_options(verbose: Any, callback: Any, where: str = "solve") -> None:
    """InputError unless ``verbose`` is a bool or an int >= 0 and ``callback`` is callable or None."""
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise InputError(f"{where}(verbose={verbose!r}): expected a bool or an int >= 0 (0: silent)")
    if callback is not None and not callable(callback):
        raise InputError(f"{where}(callback={callback!r}): expected a function taking one "
                         "lagrangeprop.progress.Iteration, or None")


def tqdm_bar(desc: str, unit: str, stream, total: int | None = None):
    """A tqdm progress bar on ``stream`` when tqdm is installed (imported here, only when a bar is
    asked for), else ``None`` (the caller prints plain lines)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False)


class Reporter:
    """Where iterations go: ``callback(Iteration)`` and, with ``verbose``, a tqdm bar (when
    installed) or one line per iteration on ``stream``."""

    def __init__(self, verbose: bool | int = 0, callback: Callable[[Iteration], Any] | None = None,
                 stream=None):
        check_progress_options(verbose, callback)
        self.verbose, self.callback = int(verbose), callback
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self.bar = tqdm_bar("lp.solve", "it", self.stream) if self.verbose else None

    def __call__(self, info: Iteration) -> None:
        if self.callback is not None:
            self.callback(info)
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.set_description_str(f"lp.solve [{info.block}] {info.method} residual "
                                         f"{info.residual:.1e}/{info.tol:.0e}", refresh=False)
            self.bar.update(1)
        else:
            print(info.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """The solve ended: the bar goes away."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_ACTIVE: ContextVar[Reporter | None] = ContextVar("lagrangeprop_progress", default=None)


@contextlib.contextmanager
def reporting(verbose: bool | int = 0, callback: Callable[[Iteration], Any] | None = None,
              stream=None) -> Iterator[Reporter | None]:
    """Report the block iterations of the solves run inside (nothing when both are off)."""
    if not verbose and callback is None:
        check_progress_options(verbose, callback)
        yield None
        return
    rep = Reporter(verbose, callback, stream)
    token = _ACTIVE.set(rep)
    try:
        yield rep
    finally:
        _ACTIVE.reset(token)
        rep.close()


def report(names: Sequence[str], method: str, iteration: int, residual: float, tol: float) -> None:
    """One iteration of a block's forward method (a no-op outside :func:`reporting`)."""
    rep = _ACTIVE.get()
    if rep is None:
        return
    block = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    rep(Iteration(block, method, int(iteration), float(residual), float(tol),
                  time.perf_counter() - rep.start))
