"""The Lagrangian ``L = <seed, z_o> - Σ_d <λ_d, c_d>``, its stationarity residuals, and Solution.

Stationarity (SPEC §1): ``∂L/∂λ = -c = 0`` is the forward pass, ``∂L/∂z = 0`` the
multiplier equations ``Aᵀλ = e_o·seed``, and ``λ_x := ∂L/∂x = ∇_x z_o`` the gradient.
:meth:`Solution.kkt` reports the first two residuals: the certificate of a solution.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) ** 2, x=0.1)
>>> sol = prog.solve(x=0.1)
>>> bool(abs(prog.lagrangian(sol) - sol.output) < 1e-15), sol.kkt()["adjoint"] < 1e-12
(True, True)
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np

from .adjoint import accumulate, run_adjoint
from ..blocks import block_jacobian, block_residual
from ..graph.coerce import real_array
from ..errors import InputError, ShapeError
from .finite import finite_array
from .forward import initial_values, run_forward
from ..options import SolveOptions
from ..blocks import TINY, constraint_scale, explicit_scale, scaled_max
from ..compile.cache import compiled
from ..compile.schedule import Block, Schedule

__all__ = ["Solution", "solve_program", "evaluate_program", "lagrangian_value",
           "lagrangian_gradient", "constraint_jacobian", "parse_inputs", "kkt_residuals"]


def _scalarize(v):
    v = np.asarray(v, dtype=np.float64)
    return v[()] if v.ndim == 0 else v


# ------------------------------------------------------------------ inputs
_ND, _F64DT = np.ndarray, np.dtype(np.float64)


def _input_spec(sched: Schedule) -> dict[str, tuple[int, tuple]]:
    """``{input name: (node id, shape)}``, built once per schedule."""
    spec = sched.__dict__.get("_input_spec")
    if spec is None:
        spec = sched.__dict__["_input_spec"] = {sched.names[i]: (i, sched.shapes[i]) for i in sched.inputs}
    return spec


def parse_inputs(sched: Schedule, inputs: dict, *, what: str = "input") -> dict[int, np.ndarray]:
    """Check names, shapes and finiteness of the caller's inputs.

    The common case (every input given, as a Python float for a scalar input or a float64
    array of the declared shape) is checked against a per-schedule table; anything else, and
    every error, goes through the general path below (same conversions, same messages).
    Arrays are not copied (as ``np.asarray``)."""
    spec = _input_spec(sched)
    if len(inputs) == len(spec):
        out = {}
        for k, v in inputs.items():
            entry = spec.get(k)
            if entry is None:
                break
            i, shape = entry
            cls = v.__class__
            if cls is float or cls is np.float64:
                if shape != () or not math.isfinite(v):
                    break
                out[i] = np.asarray(v, dtype=np.float64)
            elif cls is _ND and v.dtype is _F64DT and v.shape == shape and finite_array(v):
                out[i] = v
            else:
                break
        else:
            return out
    return _parse_inputs(sched, inputs, what)


_OPTION_NAMES = ("guess", "seed", "tol", "maxiter", "method", "linear_solver")


def _suggest(name, candidates) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_inputs(sched: Schedule, inputs: dict, what: str) -> dict[int, np.ndarray]:
    if not isinstance(inputs, Mapping):
        raise InputError(f"{what}s must be a dict {{name: value}}, got {type(inputs).__name__}; "
                         f"the program's inputs are {sched.input_names}")
    expected = sched.input_names
    extra = [k for k in inputs if k not in sched.index or sched.roles[sched.index[k]] != "input"]
    if extra:
        k = extra[0]
        hint = (f" ({k}= is an option of solve() that this call does not take)" if k in _OPTION_NAMES
                else _suggest(k, [*expected, *_OPTION_NAMES]))
        raise InputError(f"unexpected {what}(s) {extra}{hint}; the program's inputs are {expected}")
    missing = [k for k in expected if k not in inputs]
    if missing:
        raise InputError(f"missing {what}(s) {missing}: pass "
                         + ", ".join(f"{k}=<array of shape {sched.shapes[sched.index[k]]}>"
                                     for k in missing))
    out = {}
    for k, v in inputs.items():
        i = sched.index[k]
        # real numbers only, promoted to float64 (ints included); see coerce.real_array
        arr = real_array(v, f"{what} {k!r}", finite=False)
        if arr.shape != sched.shapes[i]:
            raise InputError(f"{what} {k!r} has shape {arr.shape}, the program expects "
                             f"{sched.shapes[i]}; trace or declare it with that shape")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{what} {k!r} contains NaN or inf; inputs must be finite")
        out[i] = arr
    return out


def _block_nodes(sched: Schedule) -> frozenset[int]:
    """Nodes of the cyclic blocks: the only ones a guess starts (SPEC §1)."""
    nodes = sched.__dict__.get("_block_nodes")
    if nodes is None:
        nodes = sched.__dict__["_block_nodes"] = frozenset(n for b in sched.blocks for n in b.nodes)
    return nodes


def _parse_guess(sched: Schedule, guess: dict | None) -> dict[int, np.ndarray]:
    """``{node id: starting value}``: a dict keyed by defined variables, each value a finite
    real scalar (filling the variable) or an array of the variable's shape.

    A guess for a defined variable outside every cyclic block is validated, then unused
    (its value is computed directly, not iterated): a warning says so, since the caller
    evidently expected it to matter."""
    if guess is None:
        return {}
    if not isinstance(guess, Mapping):
        raise InputError(f"guess must be a dict {{variable name: starting value}}, got "
                         f"{type(guess).__name__}; e.g. guess={{{_example_guess(sched)}}}")
    out = {}
    unused = []
    for k, v in guess.items():
        if k not in sched.index or sched.roles[sched.index[k]] != "defined":
            role = sched.roles[sched.index[k]] if k in sched.index else None
            why = (f"the {role} {k!r}, which is not iterated (an input is given by value, as {k}=...)"
                   if role == "input" else f"the constant {k!r}" if role == "constant"
                   else f"{k!r}, which is not a variable of the program"
                   + _suggest(k, [sched.names[n] for n in sched.defined]))
            raise InputError(f"guess names {why}; a guess starts the variables of cyclic blocks: "
                             f"{_block_names(sched)}")
        i = sched.index[k]
        arr = real_array(v, f"guess for {k!r}")
        if arr.shape not in ((), sched.shapes[i]):
            raise InputError(f"guess for {k!r} has shape {arr.shape}, the variable has "
                             f"shape {sched.shapes[i]}; pass a scalar (filling it) or an array of "
                             "that shape")
        out[i] = np.broadcast_to(arr, sched.shapes[i])
        if i not in _block_nodes(sched):
            unused.append(k)
    if unused:
        warnings.warn(f"guess for {unused} is not used: not in a cyclic block, so computed "
                      f"directly; the block variables are {_block_names(sched)}", UserWarning,
                      stacklevel=4)
    return out


def _block_names(sched: Schedule) -> str:
    names = [sched.names[n] for b in sched.blocks for n in b.nodes]
    if not names:
        return "none (this program has no cyclic block, so it needs no guess)"
    return str(names if len(names) <= 8 else [*names[:8], "..."])


def _example_guess(sched: Schedule) -> str:
    names = [sched.names[n] for b in sched.blocks for n in b.nodes][:2] or ["w"]
    return ", ".join(f"{n!r}: 1.0" for n in names)


def _parse_seed(sched: Schedule, seed) -> np.ndarray:
    shape = sched.shapes[sched.output]
    name = sched.names[sched.output]
    if seed is None:
        if shape != ():
            raise ShapeError(
                f"output {name!r} has shape {shape}: pass seed= (a cotangent of that shape) to "
                "solve(), use prog.evaluate() for values only, or lp.jacobian for the Jacobian")
        return np.float64(1.0)
    arr = real_array(seed, f"seed (the cotangent of output {name!r})")
    if arr.shape != shape:
        raise ShapeError(f"seed has shape {arr.shape} but output {name!r} has shape {shape}")
    return arr


# ------------------------------------------------------------------- solve
_DEFAULT_OPTIONS: list = []


def _options(tol, maxiter, method, linear_solver) -> SolveOptions:
    """``SolveOptions.make(...)``; the all-defaults instance (immutable) is made once."""
    if tol is None and maxiter is None and method is None and linear_solver is None:
        if not _DEFAULT_OPTIONS:
            _DEFAULT_OPTIONS.append(SolveOptions.make())
        return _DEFAULT_OPTIONS[0]
    return SolveOptions.make(tol, maxiter, method, linear_solver)


def solve_program(prog, inputs: dict, *, guess=None, seed=None, tol=None, maxiter=None,
                  method=None, linear_solver=None) -> Solution:
    sched = compiled(prog)
    opts = _options(tol, maxiter, method, linear_solver)
    vals = initial_values(sched, parse_inputs(sched, inputs))
    _own_inputs(sched, vals)
    seed = _parse_seed(sched, seed)
    if seed.__class__ is _ND:
        seed = seed.copy()
    guess = {i: np.array(g) for i, g in _parse_guess(sched, guess).items()}
    states = run_forward(sched, vals, opts, guess)
    lam = run_adjoint(sched, vals, seed, states, opts)
    return Solution(prog, sched, vals, lam, states, seed, opts)


def _own_inputs(sched: Schedule, vals: list) -> None:
    """A Solution owns its numbers (SPEC §2): one copy per input array, so the caller's
    ``x -= lr * g`` after the solve changes nothing in it."""
    for i in sched.inputs:
        v = vals[i]
        if v.__class__ is _ND:
            vals[i] = v.copy()


def evaluate_program(prog, inputs: dict, *, guess=None, tol=None, maxiter=None, method=None, linear_solver=None):
    sched = compiled(prog)
    opts = _options(tol, maxiter, method, linear_solver)
    vals = initial_values(sched, parse_inputs(sched, inputs))
    run_forward(sched, vals, opts, _parse_guess(sched, guess))
    out = vals[sched.output]
    if out.__class__ is _ND and out.base is not None:
        out = out.copy()   # a view (reshape, slice) of an input or constant: the caller owns a copy
    return _scalarize(out)


# ----------------------------------------------------- L at arbitrary points
def _all_defined(sched: Schedule) -> Block:
    """Every constraint as one pseudo-block (for A = ∂c/∂z and c at any point)."""
    if "_all" not in sched.__dict__:
        nodes = list(sched.defined)
        sizes = [int(np.prod(sched.shapes[n], dtype=int)) for n in nodes]
        offsets = [int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]])] if nodes else []
        sched.__dict__["_all"] = Block(
            names=[sched.names[n] for n in nodes], nodes=nodes,
            steps=[sched.step_of[n] for n in nodes], offsets=offsets, size=int(sum(sizes)),
            explicit=not sched.residual, shapes=[sched.shapes[n] for n in nodes], sizes=sizes,
            position={n: k for k, n in enumerate(nodes)})
    return sched.__dict__["_all"]


def _check_names(sched: Schedule, d, what: str, allowed: tuple[str, ...]) -> None:
    """``d`` is a dict whose keys are nodes of the program with a role in ``allowed``."""
    if not isinstance(d, Mapping):
        raise InputError(f"{what} must be a dict keyed by node name (as sol.{what} is), got "
                         f"{type(d).__name__}")
    index, roles = sched.index, sched.roles
    bad = [k for k in d if k not in index or roles[index[k]] not in allowed]
    if bad:
        k = bad[0]
        why = (f"the constant {k!r} (constants are fixed by the program)" if k in index
               else f"{k!r}, which is not a node of the program"
               + _suggest(k, [sched.names[n] for n in sched.defined]))
        raise InputError(f"{what} names {why}; its keys are the program's "
                         + ("inputs and defined variables" if "input" in allowed else "inputs"))


def _point_value(sched: Schedule, n: int, v, what: str) -> np.ndarray:
    shape = sched.shapes[n]
    if v.__class__ is np.float64 and shape == () and math.isfinite(v):
        return v
    arr = real_array(v, f"{what}[{sched.names[n]!r}]")
    if arr.shape != shape:
        raise InputError(f"{what}[{sched.names[n]!r}] has shape {arr.shape}, expected {shape}")
    return arr


def _point(sched: Schedule, inputs: dict, values: dict) -> list:
    """``z`` at a caller's point: inputs (finite, as for solve) and every defined variable."""
    _check_names(sched, inputs, "inputs", ("input", "defined"))
    _check_names(sched, values, "values", ("input", "defined"))
    vals = initial_values(sched, parse_inputs(sched, {k: v for k, v in inputs.items()
                                                      if sched.roles[sched.index[k]] == "input"}))
    for n in sched.defined:
        name = sched.names[n]
        if name not in values:
            raise InputError(f"values has no entry for defined variable {name!r}; pass a value "
                             "for every defined variable (sol.values has them all)")
        vals[n] = _point_value(sched, n, values[name], "values")
    return vals


def _multipliers(sched: Schedule, multipliers: dict | None) -> list:
    """``λ`` at a caller's point; a defined variable without an entry has ``λ_d = 0``
    (entries for inputs are ignored: ``λ_x = ∂L/∂x`` is derived, not given)."""
    lam: list = [None] * len(sched.names)
    if multipliers is None:
        return lam
    _check_names(sched, multipliers, "multipliers", ("input", "defined"))
    for n in sched.defined:
        v = multipliers.get(sched.names[n])
        lam[n] = None if v is None else _point_value(sched, n, v, "multipliers")
    return lam


def _seed(sched, seed):
    return np.float64(1.0) if seed is None and sched.shapes[sched.output] == () \
        else _parse_seed(sched, seed)


def _unpack(prog, inputs, values, multipliers):
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
        return ({k: sol.values[k] for k in sol.schedule.input_names}, sol.values,
                sol.multipliers, sol.seed, sol.schedule)
    if values is None:
        raise InputError("pass a Solution, or inputs, values and multipliers (dicts keyed by "
                         "node name, as sol.inputs, sol.values and sol.multipliers)")
    return inputs, values, multipliers, None, compiled(prog)


def lagrangian_value(prog, inputs, values=None, multipliers=None, seed=None) -> float:
    """``L(x, z, λ) = <seed, z_o> - Σ_d <λ_d, c_d(z, x)>`` at any point."""
    inputs, values, multipliers, sol_seed, sched = _unpack(prog, inputs, values, multipliers)
    seed = sol_seed if seed is None and sol_seed is not None else _seed(sched, seed)   # a given seed wins
    vals = _point(sched, inputs, values)
    lam = _multipliers(sched, multipliers)
    blk = _all_defined(sched)
    c, _ = block_residual(blk, vals)
    total = float(np.sum(seed * vals[sched.output]))
    for n, off, size in zip(blk.nodes, blk.offsets, blk.sizes):
        if lam[n] is not None:
            total -= float(np.dot(np.ravel(lam[n]), c[off:off + size]))
    return total


def lagrangian_gradient(prog, inputs, values, multipliers, seed=None):
    """``(∂L/∂x, ∂L/∂z, ∂L/∂λ)`` as dicts keyed by node name (∂L/∂λ_d = -c_d)."""
    inputs, values, multipliers, sol_seed, sched = _unpack(prog, inputs, values, multipliers)
    seed = sol_seed if seed is None and sol_seed is not None else _seed(sched, seed)   # a given seed wins
    vals = _point(sched, inputs, values)
    lam = _multipliers(sched, multipliers)
    blk = _all_defined(sched)
    c, ans = block_residual(blk, vals)
    acc: list = [None] * len(sched.names)
    # ∂L/∂z_u = [u = o]·seed - (∂c/∂z_u)ᵀ λ: -λ_u from an explicit c_u's own z_u term ...
    for n in sched.defined:
        if not sched.step_of[n].residual and lam[n] is not None:
            acc[n] = -lam[n]
    acc[sched.output] = seed if acc[sched.output] is None else acc[sched.output] + seed
    # ... plus ±(∂op_d/∂z_u)ᵀ λ_d through every argument (this also gives ∂L/∂x)
    for n in sched.defined:
        if lam[n] is not None:
            step = sched.step_of[n]
            accumulate(step, lam[n], ans[n], vals, acc, -1.0 if step.residual else 1.0)

    def dense(i):
        return _scalarize(np.zeros(sched.shapes[i]) if acc[i] is None
                          else np.broadcast_to(acc[i], sched.shapes[i]))
    gx = {sched.names[i]: dense(i) for i in sched.inputs}
    gz = {sched.names[n]: dense(n) for n in sched.defined}
    glam = {sched.names[n]: _scalarize(-c[off:off + size].reshape(sched.shapes[n]))
            for n, off, size in zip(blk.nodes, blk.offsets, blk.sizes)}
    return gx, gz, glam


def constraint_jacobian(prog, values: dict, inputs: dict):
    """``A = ∂c/∂z`` (scipy.sparse CSR) over the defined variables, and node -> slice."""
    sched = compiled(prog)
    vals = _point(sched, inputs, values)
    blk = _all_defined(sched)
    _, ans = block_residual(blk, vals)
    A = block_jacobian(blk, vals, ans).tocsr()
    index = {name: slice(off, off + size)
             for name, off, size in zip(blk.names, blk.offsets, blk.sizes)}
    return A, index


def _constraint_scales(sched: Schedule, blk: Block, vals: list) -> np.ndarray:
    """``s_d`` for every entry of ``c`` over all defined nodes (layout of ``blk``): ``max(1, |z_d|)`` for
    explicit constraints, the block's own residual scale (:mod:`lagrangeprop.blocks.scale`) for residual ones,
    so the certificate uses exactly the test the forward block solve used."""
    out = np.empty(blk.size)
    for n, off, size, shape in zip(blk.nodes, blk.offsets, blk.sizes, blk.shapes):
        out[off:off + size] = np.ravel(np.broadcast_to(explicit_scale(vals[n]), shape))
    for b in sched.blocks:
        if b.explicit:
            continue
        sb = constraint_scale(b, vals)
        for k, n in enumerate(b.nodes):
            if b.steps[k].residual:
                off = blk.offsets[blk.position[n]]
                out[off:off + b.sizes[k]] = sb[b.offsets[k]:b.offsets[k] + b.sizes[k]]
    return out


# ∂L/∂z_u = [u = o]·seed - λ_u [u explicit] + Σ_d ±(∂op_d/∂z_u)ᵀ λ_d: its scale t_u is the sum of the
# magnitudes of these terms, |seed|·[u = o] + |λ_u| [u explicit] + Σ_d |(∂op_d/∂z_u)ᵀ λ_d|
def _adjoint_scales(sched: Schedule, vals: list, lam: list, ans: dict, seed) -> list:
    """``t_u`` (node id -> array) for every defined node (``None``: no term at all)."""
    mag: list = [None] * len(sched.names)

    def add(u, t):
        mag[u] = t if mag[u] is None else mag[u] + t
    for n in sched.defined:
        if not sched.step_of[n].residual and lam[n] is not None:
            add(n, np.abs(lam[n]))
    add(sched.output, np.abs(np.asarray(seed, dtype=np.float64)))
    with np.errstate(all="ignore"):
        for n in sched.defined:
            if lam[n] is None:
                continue
            step = sched.step_of[n]
            args = [vals[a] for a in step.args]
            for pos, u in step.diff:
                if sched.roles[u] != "defined":
                    continue
                ct = step.prim.vjp(pos, lam[n], ans[n], args, step.params)
                if ct is not None:
                    add(u, np.abs(ct))
    return mag


def kkt_residuals(prog, inputs, values: dict | None = None, multipliers: dict | None = None,
                  seed=None) -> dict[str, float]:
    """The KKT certificate at any point: ``{"primal": max_d |c_d| / s_d, "adjoint": max_u |∂L/∂z_u| / t_u}``.

    Both are per constraint and per multiplier equation, never against a maximum over the program
    (SPEC §1 "Scale"): ``s_d`` is the scale the forward solve judges ``c_d`` by
    (:mod:`lagrangeprop.blocks.scale`), ``t_u`` the sum of the magnitudes of the terms of the equation
    ``∂L/∂z_u = 0`` (:func:`_adjoint_scales`), so a multiplier that satisfies the equations of large
    terms but not those of small ones is not certified. A ``1e-300`` floor avoids ``0/0`` only.
    """
    _, gz, _ = lagrangian_gradient(prog, inputs, values, multipliers, seed)
    inputs, values, multipliers, sol_seed, sched = _unpack(prog, inputs, values, multipliers)
    seed = sol_seed if seed is None and sol_seed is not None else _seed(sched, seed)
    vals = _point(sched, inputs, values)
    lam = _multipliers(sched, multipliers)
    blk = _all_defined(sched)
    c, ans = block_residual(blk, vals)
    primal = scaled_max(c, _constraint_scales(sched, blk, vals))
    mag = _adjoint_scales(sched, vals, lam, ans, seed)
    adjoint = 0.0
    for n in sched.defined:
        g = np.abs(np.asarray(gz[sched.names[n]], dtype=np.float64))
        if not g.size:
            continue
        t = np.maximum(np.broadcast_to(0.0 if mag[n] is None else mag[n], g.shape), TINY)
        with np.errstate(all="ignore"):
            r = float(np.max(g / t))
        if not r <= adjoint:            # NaN propagates
            adjoint = r
    return {"primal": primal, "adjoint": adjoint}


# ---------------------------------------------------------------- Solution
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

    # values / multipliers / grad are built on first access: a solve in a loop that reads
    # only .grad must not pay a dict entry per node (benchmarks/README.md)
    def _multiplier(self, i: int):
        lam, shape = self._lam[i], self.schedule.shapes[i]
        cls = lam.__class__
        if cls is np.float64 and shape == ():
            return lam
        if cls is _ND and lam.dtype is _F64DT and lam.shape == shape and shape != ():
            view = lam.view()   # read-only, as the broadcast_to view below
            view.flags.writeable = False
            return view
        return _scalarize(np.zeros(shape) if lam is None else np.broadcast_to(lam, shape))

    @cached_property
    def values(self) -> dict[str, Any]:
        sched = self.schedule
        return {sched.names[i]: _readonly(self._vals[i]) for i in [*sched.inputs, *sched.defined]}

    @cached_property
    def multipliers(self) -> dict[str, Any]:
        sched = self.schedule
        return {sched.names[i]: self._multiplier(i) for i in [*sched.inputs, *sched.defined]}

    @cached_property
    def grad(self) -> dict[str, Any]:
        sched = self.schedule
        if "multipliers" in self.__dict__:
            return {sched.names[i]: self.multipliers[sched.names[i]] for i in sched.inputs}
        return {sched.names[i]: self._multiplier(i) for i in sched.inputs}

    @property
    def output(self):
        """``z_o``, the output value."""
        return _readonly(self._vals[self.schedule.output])

    @property
    def inputs(self) -> dict:
        return {k: self.values[k] for k in self.schedule.input_names}

    def kkt(self) -> dict[str, float]:
        """Stationarity residuals, each constraint and each multiplier equation on its own scale
        (SPEC §1 "Scale"; :func:`kkt_residuals`): ``primal = max_d |c_d| / s_d`` and
        ``adjoint = max_u |∂L/∂z_u| / t_u``."""
        return kkt_residuals(self.program, self)

    def jacobian_z(self) -> dict:
        """``dz/dx = -A⁻¹ ∂c/∂x`` for every node (the implicit-function view):
        ``{node: {input: array of shape node.shape + input.shape}}``."""
        from .tangent import jacobian_z
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
            from ..blocks import summary
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

