"""``Solution``: a solved program's values, multipliers (= gradients) and certificate.

A Solution owns its numbers (SPEC §2): it keeps the forward pass's value slots, the
multipliers and the block solver states by node id, as the passes left them, and builds
the dicts keyed by name only when one is read (each on its first read, then kept; the
arrays in them are read-only views). A gradient call that reads ``sol.grad["x"]`` and
``sol.output`` pays for the inputs' multipliers and one value, not for a dict entry per
node. :meth:`Solution.kkt` and :meth:`Solution.jacobian_z` evaluate the certificate
(:mod:`lagrangeprop.solve.lagrangian`) and the implicit-function Jacobian
(:mod:`lagrangeprop.solve.matrix`) at the solution.

Examples
--------
>>> import lagrangeprop as lp
>>> sol = lp.trace(lambda x: x * x, x=3.0).solve(x=3.0)
>>> sol
Solution('program': output=9, grad={x: 6})
>>> sorted(k for k in ("values", "multipliers", "grad") if k in vars(sol))   # built when read
['grad']
>>> float(sol.values["x"]), float(sol.multipliers["out"])
(3.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..blocks import summary
from ..compile.schedule import Schedule
from ..options import SolveOptions
from .inputs import input_spec, scalarize
from .lagrangian import kkt_residuals, point
from .matrix import jacobian_z

__all__ = ["Solution"]

_ND, _F64, _F64DT = np.ndarray, np.float64, np.dtype(np.float64)


class _built_on_read:
    """A dict attribute built by ``fn(self)`` on its first read and kept in the instance's
    ``__dict__``, where later reads find it without calling this descriptor (as
    ``functools.cached_property``, without the lock it takes on every first read in 3.11)."""

    def __init__(self, fn: Callable):
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        out = obj.__dict__[self.name] = self.fn(obj)
        return out


class Solution:
    """A solved program: values, multipliers (= gradients) and the KKT certificate."""

    def __init__(self, program, schedule: Schedule, vals: list, lam: list, states: dict,
                 seed, options: SolveOptions):
        self.program = program
        self.schedule = schedule
        self._vals = vals
        self._lam = lam
        self._states = states
        self.seed = seed
        self.options = options

    def _multiplier(self, i: int):
        """``λ_i`` as the caller reads it: float64, the node's shape (zeros where the passes
        left ``None``), an array as a read-only view."""
        lam, shape = self._lam[i], self.schedule.shapes[i]
        cls = lam.__class__
        if cls is _F64 and shape == ():
            return lam
        if cls is _ND and lam.dtype is _F64DT and lam.shape == shape and shape != ():
            view = lam.view()   # read-only, as the broadcast_to view below
            view.flags.writeable = False
            return view
        return scalarize(np.zeros(shape) if lam is None else np.broadcast_to(lam, shape))

    @_built_on_read
    def values(self) -> dict[str, Any]:
        """``z_v`` for every input and defined node, keyed by name (read-only)."""
        sched = self.schedule
        return {sched.names[i]: _readonly(self._vals[i]) for i in [*sched.inputs, *sched.defined]}

    @_built_on_read
    def multipliers(self) -> dict[str, Any]:
        """``λ_v`` for every input and defined node, keyed by name (read-only)."""
        sched = self.schedule
        return {sched.names[i]: self._multiplier(i) for i in [*sched.inputs, *sched.defined]}

    @_built_on_read
    def grad(self) -> dict[str, Any]:
        """``λ_x = ∂L/∂x = ∇_x z_o`` for every input, keyed by name: the inputs' entries of
        :attr:`multipliers` (the same objects when those were built first)."""
        spec = input_spec(self.schedule)
        if "multipliers" in self.__dict__:
            lam = self.multipliers
            return {k: lam[k] for k in spec}
        return {k: self._multiplier(i) for k, (i, _) in spec.items()}

    @property
    def output(self):
        """``z_o``, the output value."""
        v = self._vals[self.schedule.output]
        return v if v.__class__ is _F64 else _readonly(v)

    @property
    def inputs(self) -> dict:
        """``z_x`` for every input, keyed by name (the inputs' entries of :attr:`values`)."""
        if "values" in self.__dict__:
            return {k: self.values[k] for k in self.schedule.input_names}
        return {k: _readonly(self._vals[i]) for k, (i, _) in input_spec(self.schedule).items()}

    def kkt(self) -> dict[str, float]:
        """Stationarity residuals, each constraint and each multiplier equation on its own scale
        (SPEC §1 "Scale"; :func:`~lagrangeprop.solve.lagrangian.kkt_residuals`):
        ``primal = max_d |c_d| / s_d`` and ``adjoint = max_u |∂L/∂z_u| / t_u``."""
        # the Solution's own schedule: after an edit of prog.graph it still describes the
        # program that was solved, not the edited one
        return kkt_residuals(point(self.schedule, self.inputs, self.values, self.multipliers,
                                   self.seed))

    def jacobian_z(self) -> dict:
        """``dz/dx = -A⁻¹ ∂c/∂x`` for every node (the implicit-function view):
        ``{node: {input: array of shape node.shape + input.shape}}``."""
        return jacobian_z(self)

    def report(self) -> str:
        """A table of every node: name, op, value and multiplier; then how each cyclic block was solved."""
        sched = self.schedule
        rows = [("node", "op", "value", "multiplier")]
        for i in [*sched.inputs, *sched.defined]:
            name = sched.names[i]
            op = "input" if sched.roles[i] == "input" else sched.step_of[i].prim.name
            if i in sched.residual:
                op += " (residual)"
            rows.append((name, op, _fmt(self.values[name]), _fmt(self.multipliers[name])))
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if sched.blocks:
            lines.append("cyclic blocks (solved together; SPEC §1):")
            lines.extend(f"  {summary(b, self._states[id(b)])}" for b in sched.blocks if id(b) in self._states)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Solution({self.program.name!r}: output={_fmt(self.output)}, "
                f"grad={{{', '.join(f'{k}: {_fmt(v)}' for k, v in self.grad.items())}}})")


def _readonly(v):
    """A read-only view of a value (it may be a view of a program constant, which a write
    would corrupt for every later solve); 0-d values as numpy scalars."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 0:
        return v[()]
    view = v.view()
    view.flags.writeable = False
    return view


def _fmt(v) -> str:
    v = np.asarray(v)
    if v.ndim == 0:
        return f"{float(v):.10g}"
    if v.size <= 4:
        return np.array2string(v, precision=6, separator=", ")
    return f"array{v.shape} |.|_2={float(np.linalg.norm(v)):.6g}"
