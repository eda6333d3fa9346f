"""A Program's numeric methods as functions: solve, evaluate, and the Lagrangian at a point.

Data flows one way (SPEC §3): the Program compiles to a schedule, the caller's arguments
are checked against it (:mod:`lagrangeprop.solve.inputs`), the forward pass satisfies
``∂L/∂λ = 0``, the adjoint ``∂L/∂z = 0``, and the result is a
:class:`~lagrangeprop.solve.solution.Solution`. The Lagrangian's functions take a
Solution or the dicts of any point and work on a :class:`~lagrangeprop.solve.lagrangian.Point`.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) ** 2, x=0.1)
>>> sol = solve_program(prog, {"x": 0.1})
>>> bool(abs(lagrangian_value(prog, sol) - sol.output) < 1e-15), sol.kkt()["adjoint"] < 1e-12
(True, True)
"""

from __future__ import annotations

import numpy as np

from ..compile.cache import compiled
from ..compile.schedule import Schedule
from ..errors import InputError
from ..options import SolveOptions
from . import lagrangian
from .adjoint import run_adjoint
from .forward import initial_values, run_forward
from .inputs import SCALAR_SEED, default_seed, input_spec, parse_guess, parse_inputs, parse_seed, scalarize
from .solution import Solution

__all__ = ["solve_program", "gradient_program", "evaluate_program", "forward_program", "lagrangian_value",
           "lagrangian_gradient", "constraint_jacobian", "kkt_residuals"]

_ND = np.ndarray
_DEFAULTS = SolveOptions.make()   # the options of a call that sets none (immutable: shared)


def _options(tol, maxiter, method, linear_solver) -> SolveOptions:
    """The call's :class:`SolveOptions`: the shared defaults when it sets none."""
    if tol is None and maxiter is None and method is None and linear_solver is None:
        return _DEFAULTS
    return SolveOptions.make(tol, maxiter, method, linear_solver)


# build -> compile -> forward (∂L/∂λ = 0) -> adjoint (Aᵀλ = e_o·seed) -> Solution
def solve_program(prog, inputs: dict, *, guess=None, seed=None, tol=None, maxiter=None,
                  method=None, linear_solver=None) -> Solution:
    """``prog.solve(**inputs)``: values and multipliers at the inputs.

    What depends only on the schedule or the option values is checked once and kept (the
    schedule, the input table, the option object); per call remain the checks of the
    caller's arrays, the two passes and the Solution, whose dicts are built when read.
    A Solution owns its numbers (SPEC §2): the inputs, seed and guesses are copies, so the
    caller's ``x -= lr * g`` after the solve changes nothing in it."""
    sched = compiled(prog)
    opts = _options(tol, maxiter, method, linear_solver)
    vals = initial_values(sched, parse_inputs(sched, inputs, own=True))
    if seed is None and sched.shapes[sched.output] == ():
        seed = SCALAR_SEED      # parse_seed's seed of a scalar output (immutable: shared)
    else:
        seed = parse_seed(sched, seed)
        if seed.__class__ is _ND:
            seed = seed.copy()
    guess = {} if guess is None else parse_guess(sched, guess, own=True)
    states = run_forward(sched, vals, opts, guess)
    lam = run_adjoint(sched, vals, seed, states, opts)
    return Solution(prog, sched, vals, lam, states, seed, opts)


def gradient_program(prog, inputs: dict, wrt: list[str]) -> tuple:
    """``(z_o, [λ_x for x in wrt])``: :func:`solve_program` with the default options, seed and
    guesses, returning just what ``lp.grad`` / ``lp.value_and_grad`` hand back (the same
    numbers, as the Solution would give them: ``sol.output``, ``sol.grad[x]``), without
    building the Solution's dicts.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.trace(lambda x, y: x * y, x=2.0, y=3.0)
    >>> value, (gx, gy) = gradient_program(prog, {"x": 2.0, "y": 3.0}, ["x", "y"])
    >>> float(value), float(gx), float(gy)
    (6.0, 3.0, 2.0)
    """
    sched = compiled(prog)
    opts = _DEFAULTS
    vals = initial_values(sched, parse_inputs(sched, inputs, own=True))
    seed = parse_seed(sched, None)
    states = run_forward(sched, vals, opts, {})
    sol = Solution(prog, sched, vals, run_adjoint(sched, vals, seed, states, opts), states, seed, opts)
    spec = input_spec(sched)
    return sol.output, [sol._multiplier(spec[x][0]) for x in wrt]


def evaluate_program(prog, inputs: dict, *, guess=None, tol=None, maxiter=None, method=None,
                     linear_solver=None):
    """``prog.evaluate(**inputs)``: the forward pass only, the output value ``z_o``."""
    sched = compiled(prog)
    opts = _options(tol, maxiter, method, linear_solver)
    vals = initial_values(sched, parse_inputs(sched, inputs))
    run_forward(sched, vals, opts, {} if guess is None else parse_guess(sched, guess))
    out = vals[sched.output]
    if out.__class__ is _ND and out.base is not None:
        out = out.copy()   # a view (reshape, slice) of an input or constant: the caller owns a copy
    return scalarize(out)


def forward_program(prog, inputs: dict, guess=None) -> tuple[Schedule, list, dict, SolveOptions]:
    """The forward pass with default options, for the transforms' own passes:
    ``(schedule, values, block states, options)``."""
    sched = compiled(prog)
    opts = SolveOptions.make()
    vals = initial_values(sched, parse_inputs(sched, inputs))
    states = run_forward(sched, vals, opts, parse_guess(sched, guess))
    return sched, vals, states, opts


# ----------------------------------------------------- L at arbitrary points
def _unpack(prog, inputs, values, multipliers, seed) -> lagrangian.Point:
    """The point a Program's ``lagrangian*`` methods were given: a Solution, or the dicts
    ``inputs, values, multipliers`` (and an optional seed, which wins over a Solution's)."""
    if isinstance(inputs, Solution):
        sol = inputs
        if sol.program is not prog:
            raise InputError(f"this Solution belongs to program {sol.program.name!r}, not to "
                             f"{prog.name!r}; call that program's lagrangian")
        if values is not None or multipliers is not None:
            raise InputError("pass either a Solution or inputs, values and multipliers, not both: "
                             "the Solution's own values and multipliers would be used")
        # the Solution's own schedule: after an edit of prog.graph it still describes the
        # program that was solved, not the edited one
        sched = sol.schedule
        seed = sol.seed if seed is None and sol.seed is not None else default_seed(sched, seed)
        return lagrangian.point(sched, {k: sol.values[k] for k in sched.input_names},
                                sol.values, sol.multipliers, seed)
    if values is None:
        raise InputError("pass a Solution, or inputs, values and multipliers (dicts keyed by "
                         "node name, as sol.inputs, sol.values and sol.multipliers)")
    sched = compiled(prog)
    return lagrangian.point(sched, inputs, values, multipliers, default_seed(sched, seed))


def lagrangian_value(prog, inputs, values=None, multipliers=None, seed=None) -> float:
    """``L(x, z, λ) = <seed, z_o> - Σ_d <λ_d, c_d(z, x)>`` at a Solution or any point."""
    return lagrangian.lagrangian_value(_unpack(prog, inputs, values, multipliers, seed))


def lagrangian_gradient(prog, inputs, values, multipliers, seed=None):
    """``(∂L/∂x, ∂L/∂z, ∂L/∂λ)`` as dicts keyed by node name (∂L/∂λ_d = -c_d)."""
    return lagrangian.lagrangian_gradient(_unpack(prog, inputs, values, multipliers, seed))


def constraint_jacobian(prog, values: dict, inputs: dict):
    """``A = ∂c/∂z`` (scipy.sparse CSR) over the defined variables, and node -> slice."""
    sched = compiled(prog)
    return lagrangian.constraint_jacobian(sched, lagrangian.point_values(sched, inputs, values))


def kkt_residuals(prog, inputs, values: dict | None = None, multipliers: dict | None = None,
                  seed=None) -> dict[str, float]:
    """The KKT certificate at a Solution or any point
    (:func:`lagrangeprop.solve.lagrangian.kkt_residuals`)."""
    return lagrangian.kkt_residuals(_unpack(prog, inputs, values, multipliers, seed))
