"""The tape references of :func:`~lagrangeprop.check`: which ran, how, and their gradients.

Each tape (HIPS autograd, PyTorch) replays the program with *its own* derivative rules
(:mod:`lagrangeprop.crosscheck.tape`); a backend that is not installed, has no equivalent of
an op, or fails is reported by name and skipped, never guessed. On a cyclic program the
unrolled Newton iteration is also replayed at growing depths (:func:`convergence`).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> sched = lp.trace(lambda x: lp.exp(x), x=0.0).compile()
>>> tapes, refs, notes = run_tapes(sched, ("autograd",), {"x": np.array(0.0)}, np.array(1.0), None)
>>> float(tapes["autograd"].grad["x"]), list(refs)
(1.0, ['autograd (tape)'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .tape import NoTapeEquivalent, TapeResult, tape_gradients

if TYPE_CHECKING:
    from ..compile.schedule import Schedule

__all__ = ["TAPE_NAMES", "FD_NAME", "run_tapes", "convergence"]

TAPE_NAMES = {"autograd": "autograd (tape)", "torch": "torch (tape)"}
FD_NAME = "finite differences"


def run_tapes(sched: Schedule, against: tuple, xin: dict, seed: np.ndarray, guess: Any,
              step: Callable[[str, str], Any] | None = None) -> tuple[dict[str, TapeResult], dict[str, str], list[str]]:
    """``(tapes, references, notes)``: backend -> its result, reference name -> what was used
    (or why it was skipped), and the tapes' notes (each once); ``step("tape", backend)`` after
    each backend's replay (or its skip)."""
    tapes: dict[str, TapeResult] = {}
    references: dict[str, str] = {}
    notes: list[str] = []
    for backend in ("autograd", "torch"):
        if backend in against:
            res = _replay(sched, backend, xin, seed, guess, references)
            if step is not None:
                step("tape", backend)
            if res is not None:
                tapes[backend] = res
                notes.extend(n for n in res.notes if n not in notes)
    return tapes, references, notes


def _replay(sched: Schedule, backend: str, xin: dict, seed: np.ndarray, guess: Any,
            references: dict) -> TapeResult | None:
    """One backend's tape replay, its line in ``references`` (None when skipped or failed)."""
    name = TAPE_NAMES[backend]
    try:
        if backend == "torch":
            import torch  # noqa: F401 - optional
        res = tape_gradients(sched, backend, xin, seed, guess)
    except ImportError:
        references[name] = "not installed (skipped)"
        return None
    except NoTapeEquivalent as exc:
        references[name] = f"skipped: {exc}"
        return None
    except Exception as exc:  # the tape itself failed: say so, do not guess
        references[name] = f"failed to run: {type(exc).__name__}: {exc}"
        return None
    how = f"{_version(backend)}, its own derivative rules"
    if res.iterations is not None:
        how += f"; cyclic blocks unrolled: {res.iterations} Newton iterations on the tape"
    references[name] = how
    return res


def _version(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    label = "HIPS autograd" if backend == "autograd" else "PyTorch"
    try:
        return f"{label} {version(backend)}"
    except PackageNotFoundError:
        return label


def convergence(sched: Schedule, tapes: dict, xin: dict, seed: np.ndarray, guess: Any,
                lam: dict, progress: Any = None) -> list[dict]:
    """Unrolled tape gradient vs the multipliers as the Newton iterations grow (each replay
    reported to ``progress``, a :class:`~lagrangeprop.crosscheck.progress.Progress`)."""
    if not tapes:
        return []
    backend = "autograd" if "autograd" in tapes else next(iter(tapes))
    total = max(1, tapes[backend].iterations or 1)
    steps = sorted({k for k in (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32) if k < total} | {total})
    scale = max([float(np.max(np.abs(lam[k]), initial=0.0)) for k in xin] + [1e-300])
    table = []
    if progress is not None:
        progress.expect(len(steps))
    for k in steps:
        try:
            res = tape_gradients(sched, backend, xin, seed, guess, iterations=k)
            err = max(float(np.max(np.abs(res.grad[n] - lam[n]), initial=0.0)) for n in xin) / scale
        except Exception:  # an early iterate may leave the domain (nan on the tape)
            err = np.nan
        table.append((k, err if np.isfinite(err) else np.nan))
        if progress is not None:
            progress.step("convergence", f"{backend} tape unrolled {k} iterations")
    return [{"backend": TAPE_NAMES[backend], "iterations": k, "rel_error": e} for k, e in table]
