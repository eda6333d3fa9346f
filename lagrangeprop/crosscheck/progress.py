"""Progress of :func:`lagrangeprop.check` on large programs: a callback, a tqdm bar or lines.

``check(..., verbose=, callback=)`` hands a :class:`Progress` to each stage: compiling, the
solve (forward and multipliers), each tape replay (one per backend, then one per unrolled
iteration count of a cyclic program), and the central differences (the slow part on large
programs: one report per difference, that is per direction or per element). Every report
is a :class:`Stage`, given to ``callback`` (in the style of ``scipy.optimize``'s
``callback(intermediate_result)``); with ``verbose`` it is also shown, as a tqdm bar when
tqdm is installed (imported here, only then) and as plain lines on stderr otherwise.
Silent by default.

Examples
--------
>>> seen = []
>>> p = Progress(callback=seen.append)
>>> p.expect(2); p.step("solve"); p.step("tape", "autograd"); p.close()
>>> [(s.stage, s.detail, s.done, s.total) for s in seen]
[('solve', '', 1, 2), ('tape', 'autograd', 2, 2), ('done', '', 2, 2)]
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..progress import tqdm_bar

__all__ = ["Stage", "Progress", "STAGES"]

STAGES = ("compile", "solve", "tape", "convergence", "finite differences", "done")


@dataclass(frozen=True)
class Stage:
    """One report: ``stage`` (one of :data:`STAGES`), what it worked on (``detail``: a
    backend, an input, an iteration count), ``done`` of ``total`` units of the whole check
    so far, and seconds since the check started."""

    stage: str
    detail: str
    done: int
    total: int
    elapsed: float

    def line(self) -> str:
        """The report as one plain line."""
        what = f"{self.stage} {self.detail}".strip()
        return f"lp.check: {what} [{self.done}/{self.total}] {self.elapsed:.1f} s"


class Progress:
    """Where :func:`lagrangeprop.check` reports: ``callback(Stage)`` and, with ``verbose``,
    a tqdm bar (when installed) or lines on ``stream``. ``verbose >= 2`` shows every line;
    ``verbose = 1`` shows each stage and every chunk of about a tenth of the differences."""

    def __init__(self, verbose: bool | int = 0, callback: Callable[[Stage], Any] | None = None,
                 stream=None):
        if not isinstance(verbose, numbers.Integral) or verbose < 0:
            raise InputError(f"check(verbose={verbose!r}): expected a bool or an int >= 0 (0: silent)")
        if callback is not None and not callable(callback):
            raise InputError(f"check(callback={callback!r}): expected a function taking one Stage, or None")
        self.verbose, self.callback = int(verbose), callback
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self.done = self.total = 0
        self._last = ("", -1)
        self.bar = tqdm_bar("lp.check", "step", self.stream, total=0) if self.verbose else None

    def expect(self, units: int) -> None:
        """``units`` more steps are coming (the bar's total grows)."""
        self.total += int(units)
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def step(self, stage: str, detail: str = "") -> None:
        """One unit of ``stage`` finished: report it."""
        self.done += 1
        self.total = max(self.total, self.done)
        self._report(Stage(stage, str(detail), self.done, self.total, time.perf_counter() - self.start))

    def close(self, finished: bool = True) -> None:
        """The check ended: a final ``done`` report when it ``finished``; the bar goes away."""
        if finished:
            self._report(Stage("done", "", self.done, self.total, time.perf_counter() - self.start))
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _report(self, info: Stage) -> None:
        if self.callback is not None:
            self.callback(info)
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.set_description_str(f"lp.check: {info.stage} {info.detail}".strip(), refresh=False)
            self.bar.update(info.done - self.bar.n)
            return
        if self._shows(info):
            print(info.line(), file=self.stream, flush=True)

    def _shows(self, info: Stage) -> bool:
        """A line for each new stage, the last unit, and every chunk (or every unit at -vv)."""
        new = info.stage != self._last[0]
        chunk = max(1, math.ceil(self.total / 10))
        show = (self.verbose >= 2 or new or info.stage == "done" or info.done == self.total
                or info.done - self._last[1] >= chunk)
        if show:
            self._last = (info.stage, info.done)
        return show
