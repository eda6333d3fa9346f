"""The optimized inputs as one flat vector, and the arguments both minimizers share.

scipy.optimize works on a vector ``x``; :class:`Layout` maps the inputs named in ``x0``
(in that order) to slices of it and back, holds the ``fixed`` inputs, and turns bounds
given per input into scipy's per-entry ``Bounds``.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda a, b: lp.sum(a * b), a=np.zeros(2), b=0.0)
>>> layout = Layout(prog, {"a": np.array([1.0, 2.0])}, {"b": 3.0})
>>> layout.x0.tolist(), layout.unflatten(np.array([4.0, 5.0]))["a"].tolist()
([1.0, 2.0], [4.0, 5.0])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.optimize as so

from ..errors import InputError, ShapeError
from ..graph.builder import ProgramBuilder
from ..graph.coerce import real_array
from ..graph.pytree import expand_tree_inputs, flatten
from ..options import SolveOptions, real_option

__all__ = ["Layout", "check_arguments", "input_value", "SOLVE_OPTION_NAMES"]

SOLVE_OPTION_NAMES = ("tol", "maxiter", "method", "linear_solver")


def input_value(v: Any, what: str, shape: tuple, *, scalar_ok: bool = True, finite: bool = True) -> np.ndarray:
    """A caller's value as float64 of ``shape`` (or a scalar when ``scalar_ok``), else InputError."""
    arr = real_array(v, what, finite=finite)
    if arr.shape != shape and not (scalar_ok and arr.shape == ()):
        raise InputError(f"{what} has shape {arr.shape}, the input has shape {shape}"
                         + ("; pass a scalar (filling it) or an array of that shape" if scalar_ok else ""))
    return arr


def check_arguments(guess: Any, solve_options: Any, options: Any, callback: Any,
                    tol: float | None = None) -> dict:
    """The arguments both minimizers share; returns ``solve_options`` as a dict."""
    for what, d in (("guess", guess), ("solve_options", solve_options), ("options", options)):
        if d is not None and not isinstance(d, Mapping):
            raise InputError(f"{what} must be a dict or None, got {type(d).__name__}")
    if callback is not None and not callable(callback):
        raise InputError(f"callback must be a function callback(xk), got {type(callback).__name__}")
    if tol is not None:
        real_option("tol", tol, what="scipy.optimize.minimize's tolerance")
    solve_options = dict(solve_options or {})
    unknown = [k for k in solve_options if k not in SOLVE_OPTION_NAMES]
    if unknown:
        raise InputError(f"solve_options has {unknown}, which are not solve options; its keys are "
                         f"{list(SOLVE_OPTION_NAMES)} (give fixed inputs in fixed=)")
    SolveOptions.make(**solve_options)
    return solve_options


class Layout:
    """Flattening of the optimized inputs (dict, in ``x0`` order) into one vector."""

    def __init__(self, prog: Any, x0: dict, fixed: dict | None):
        if not isinstance(prog, ProgramBuilder):
            raise InputError(f"minimize takes an lp.Program (got {type(prog).__name__}); build one "
                             "with lp.trace(f, **inputs)")
        sched = prog.compile()
        self.sched = sched
        for what, d in (("x0", x0), ("fixed", fixed)):
            if d is not None and not isinstance(d, Mapping):
                raise InputError(f"{what} must be a dict {{input name: value}}, got {type(d).__name__}; "
                                 f"e.g. {what}={{{sched.input_names[0] if sched.input_names else 'x'!r}: 0.0}}")
        fixed = dict(fixed or {})
        if not x0:
            raise InputError("x0 is empty: give the inputs to optimize, e.g. x0={'x': 0.0}")
        inputs = sched.input_names
        # a parameter tree for a tree-named input (x0={"p": {"a": 1.0}} for the input "p.a")
        # stands for its leaves; x_dict gives it back in that structure (:meth:`trees`)
        self.tree_of: dict = {}
        self.given = list(x0)   # x0's keys, in its order (x_dict keeps it)
        for k, v in x0.items():
            if k not in inputs and any(n.startswith(f"{k}.") for n in inputs):
                _, tree = flatten(v, what=k)
                self.tree_of[k] = (tree, tree.paths(k))
        x0, fixed = expand_tree_inputs(dict(x0), inputs), expand_tree_inputs(fixed, inputs)
        unknown = [k for k in [*x0, *fixed] if k not in inputs]
        if unknown:
            raise InputError(f"{unknown} are not inputs of program {prog.name!r}; its inputs are {inputs}")
        both = [k for k in x0 if k in fixed]
        if both:
            raise InputError(f"inputs {both} are both optimized (x0) and fixed; pick one")
        missing = [k for k in inputs if k not in x0 and k not in fixed]
        if missing:
            raise InputError(f"inputs {missing} are neither optimized nor fixed: add them to x0= "
                             "(to optimize) or to fixed= (to hold them)")
        out = sched.shapes[sched.output]
        if out != ():
            raise ShapeError(f"the objective {sched.names[sched.output]!r} has shape {out}; "
                             "minimize needs a scalar output (reduce it, e.g. with lp.sum)")
        self.names = list(x0)
        self.shapes = [sched.shapes[sched.index[k]] for k in self.names]
        self.sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.offsets = list(np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int))
        self.size = int(sum(self.sizes))
        self.fixed = {k: input_value(v, f"fixed[{k!r}]", sched.shapes[sched.index[k]], scalar_ok=False)
                      for k, v in fixed.items()}
        # a scalar x0 fills its input; any other value has the input's shape
        self.x0 = self.flatten({k: np.broadcast_to(input_value(v, f"x0[{k!r}]", self.shapes[j]), self.shapes[j])
                                for j, (k, v) in enumerate(x0.items())})

    def trees(self, d: dict) -> dict:
        """``d`` (by input name) with the leaves of each tree given in ``x0`` put back in its
        structure (``{"p.a": 1.0, "p.b": 2.0}`` -> ``{"p": {"a": 1.0, "b": 2.0}}``)."""
        return {k: self.tree_of[k][0].unflatten([d[p] for p in self.tree_of[k][1]])
                if k in self.tree_of else d[k] for k in self.given}

    def flatten(self, d: dict) -> np.ndarray:
        """The optimized inputs ``d`` (by name) as one float64 vector."""
        return np.concatenate([np.ravel(np.asarray(d[k], dtype=np.float64)) for k in self.names]) \
            if self.names else np.zeros(0)

    def unflatten(self, x: np.ndarray) -> dict:
        """The vector ``x`` as the optimized inputs by name (0-d ones as scalars)."""
        out = {}
        for k, off, size, shape in zip(self.names, self.offsets, self.sizes, self.shapes):
            v = np.array(x[off:off + size]).reshape(shape)
            out[k] = v[()] if v.ndim == 0 else v
        return out

    def bounds(self, bounds: Any) -> Any:
        """``bounds`` as scipy accepts it, or a dict name -> (lo, hi) expanded per entry."""
        if isinstance(bounds, so.Bounds):
            return bounds
        if not isinstance(bounds, Mapping):
            pairs = bounds if isinstance(bounds, (list, tuple)) else None
            if pairs is None or len(pairs) != self.size or not all(
                    isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise InputError(f"bounds must be a dict {{input: (lo, hi)}}, a scipy.optimize.Bounds or "
                                 f"{self.size} (lo, hi) pairs (one per optimized entry), got {bounds!r:.60}")
            return bounds
        lo, hi = np.full(self.size, -np.inf), np.full(self.size, np.inf)
        for k, pair in bounds.items():
            if k not in self.names:
                raise InputError(f"bounds names {k!r}, which is not optimized (x0 has {self.names})")
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InputError(f"bounds[{k!r}] must be a pair (lo, hi) (None = unbounded), got {pair!r}")
            a, b = (None if t is None else input_value(t, f"bounds[{k!r}]", self.shapes[self.names.index(k)],
                                                 finite=False) for t in pair)
            j = self.names.index(k)
            sl = slice(self.offsets[j], self.offsets[j] + self.sizes[j])
            lo[sl] = np.ravel(np.broadcast_to(-np.inf if a is None else a, self.shapes[j]))
            hi[sl] = np.ravel(np.broadcast_to(np.inf if b is None else b, self.shapes[j]))
            if np.any(lo[sl] > hi[sl]) or np.isnan(lo[sl]).any() or np.isnan(hi[sl]).any():
                raise InputError(f"bounds[{k!r}] has a lower bound above its upper bound (or NaN)")
        return so.Bounds(lo, hi)
