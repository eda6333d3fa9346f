"""Forward mode, Jacobians and exact Hessian-vector products on the compiled schedule.

Tangents (SPEC §1): linearizing ``c(z(x), x) = 0`` gives ``A ż = -(∂c/∂x) ẋ``, solved on
the same structure as the multipliers but in forward order: on the DAG
``ż_d = Σ_u (∂f_d/∂z_u) ż_u``, on a block ``A_SS ż_S = b_S`` with the forward solve's
factorization. Second order differentiates the multiplier solve along ``ẋ``
(forward-over-reverse): ``Aᵀλ̇ = -(Ȧ)ᵀλ``, i.e. back-substitution of
``λ̇_u += sign·(vjp(λ̇_d) + S(λ_d, ż))`` with the curvature terms ``S`` of
:mod:`lagrangeprop.rules.curvature`, and ``Hv = λ̇_x``.

Examples
--------
>>> import lagrangeprop as lp
>>> value, tangent = lp.jvp(lambda x: x ** 3, (2.0,), (1.0,))
>>> float(value), float(tangent)
(8.0, 12.0)
>>> float(lp.hvp(lambda x: x ** 3, 2.0, 1.0))   # 6x
12.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from .. import blocks
from .adjoint import check_finite_pass, run_adjoint
from ..transforms import argnum_names, traced
from ..compile.cache import compiled
from ..graph.builder import ProgramBuilder
from ..graph.coerce import real_array
from ..graph.trace import record
from ..errors import InputError, ShapeError
from .forward import initial_values, run_forward
from .lagrangian import parse_inputs, solve_program
from ..options import SolveOptions
from ..compile.schedule import Schedule, Step
from ..rules.curvature import curvature

__all__ = ["jvp", "vjp", "jacobian", "hvp", "hessian", "jacobian_z", "solution_jvp",
           "solution_hvp", "tangent_pass", "hvp_pass", "input_jacobian"]


def _add(acc: list, i: int, v) -> None:
    if v is not None:
        acc[i] = v if acc[i] is None else acc[i] + v


def _sign(step: Step) -> float:
    # c_d = z_d - f_d (explicit) or r_d (residual): -∂c_d/∂z_u = sign · ∂op_d/∂z_u
    return -1.0 if step.residual else 1.0


# ------------------------------------------------------------- tangent pass
def _step_tangent(step: Step, ans, vals: list, zdot: list, skip=None):
    """``Σ_u (∂op_d/∂z_u) ż_u`` over the differentiable arguments not in ``skip``."""
    args = [vals[a] for a in step.args]
    total = None
    for pos, u in step.diff:
        if zdot[u] is None or (skip is not None and u in skip):
            continue
        t = step.prim.jvp(pos, zdot[u], ans, args, step.params)
        if t is not None:
            total = t if total is None else total + t
    return total


# A ż = -(∂c/∂x) ẋ: forward substitution on the DAG, A_SS ż_S = b_S on a block.
def tangent_pass(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                 xdot: dict[int, np.ndarray]) -> list:
    """Tangents ``ż`` of every node (``None`` = zero) for input tangents ``xdot`` (id -> array)."""
    zdot: list = [None] * len(sched.names)
    for i, t in xdot.items():
        zdot[i] = np.asarray(t, dtype=np.float64)
    for step in sched.steps:
        if type(step) is Step:
            zdot[step.node] = _step_tangent(step, vals[step.node], vals, zdot)
            continue
        state = states[id(step)]
        rhs = []
        for s in step.steps:
            t = _step_tangent(s, state.ans[s.node], vals, zdot, step.position)
            rhs.append(None if t is None else _sign(s) * t)
        if all(r is None for r in rhs):
            continue
        for n, zs in zip(step.nodes, blocks.solve_tangent(step, vals, rhs, state, opts)):
            zdot[n] = zs
    check_finite_pass(sched, vals, zdot, "tangent")
    return zdot


# ----------------------------------------------------- second-order adjoint
def _second_accumulate(step: Step, g, gdot, ans, vals: list, zdot: list, ldot: list,
                       members=None, inside: bool = False) -> None:
    """``λ̇_u += sign·(vjp_u(λ̇_d) + S_u(λ_d, ż))``; with ``members``, only arguments
    inside (curvature only) or outside the block."""
    args = [vals[a] for a in step.args]
    tans = [zdot[a] for a in step.args]
    sign = _sign(step)
    for pos, u in step.diff:
        if members is not None and (u in members) != inside:
            continue
        ct = None
        if gdot is not None and not inside:
            ct = step.prim.vjp(pos, gdot, ans, args, step.params)
        if g is not None:
            s2 = curvature(step.prim, pos, g, ans, args, step.params, tans)
            if s2 is not None:
                ct = s2 if ct is None else ct + s2
        if ct is not None:
            _add(ldot, u, sign * ct)


# d/dε of Aᵀλ = e_o·seed: A_SSᵀ λ̇_S = ḃ_S - (Ȧ_SS)ᵀ λ_S, and (Ȧ)ᵀλ = -Σ_d sign_d S_d(λ_d).
def hvp_pass(sched: Schedule, vals: list, lam: list, states: dict, opts: SolveOptions,
             zdot: list) -> list:
    """``λ̇`` for every node: the directional derivative of the multipliers along ``ż``.

    For inputs ``λ̇_x = ∇²<seed, z_o>(x) · ẋ``, the Hessian-vector product.
    """
    ldot: list = [None] * len(sched.names)
    for step in reversed(sched.steps):
        if type(step) is Step:
            d = step.node
            if lam[d] is not None or ldot[d] is not None:
                _second_accumulate(step, lam[d], ldot[d], vals[d], vals, zdot, ldot)
            continue
        state = states[id(step)]
        for s in step.steps:
            if lam[s.node] is not None:
                _second_accumulate(s, lam[s.node], None, state.ans[s.node], vals, zdot, ldot,
                                   step.position, inside=True)
        rhs = [ldot[n] for n in step.nodes]
        if not all(r is None for r in rhs):
            for n, ls in zip(step.nodes, blocks.solve_adjoint(step, vals, rhs, state, opts)):
                ldot[n] = ls
        for s in step.steps:
            _second_accumulate(s, lam[s.node], ldot[s.node], state.ans[s.node], vals, zdot, ldot,
                               step.position, inside=False)
    check_finite_pass(sched, vals, ldot, "second-order multiplier")
    return ldot


# --------------------------------------------------- matrix (Jacobian) passes
def _block_solve(block, vals, B: np.ndarray, state, opts, transpose: bool) -> np.ndarray:
    """All right-hand sides (columns of ``B``) against the block's one factorization."""
    lu = getattr(state, "lu", None)
    if lu is not None and opts.linear_solver in ("auto", "direct"):
        return lu.solve(np.asarray(B, dtype=np.float64), trans="T" if transpose else "N")
    solve = blocks.solve_adjoint if transpose else blocks.solve_tangent
    cols = []
    for k in range(B.shape[1]):
        parts = solve(block, vals, [B[off:off + size, k].reshape(shape) for off, size, shape
                                     in zip(block.offsets, block.sizes, block.shapes)], state, opts)
        cols.append(np.concatenate([np.ravel(p) for p in parts]))
    return np.stack(cols, axis=1)


def _local_jac(step: Step, pos: int, ans, vals: list):
    return step.prim.jac(pos, ans, [vals[a] for a in step.args], step.params)


def _forward_matrix(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                    seeds: dict[int, np.ndarray]) -> list:
    """``Ż_v = dz_v/dx · E`` (rows: v's entries, columns: seed directions) for every node."""
    Z: list = [None] * len(sched.names)
    for i, E in seeds.items():
        Z[i] = E

    def pushed(s: Step, ans, skip=None):
        total = None
        for pos, u in s.diff:
            if Z[u] is None or (skip is not None and u in skip):
                continue
            J = _local_jac(s, pos, ans, vals)
            if J is not None:
                t = np.asarray(J @ Z[u])
                total = t if total is None else total + t
        return total

    for step in sched.steps:
        if type(step) is Step:
            Z[step.node] = pushed(step, vals[step.node])
            continue
        state = states[id(step)]
        parts = [pushed(s, state.ans[s.node], step.position) for s in step.steps]
        if all(p is None for p in parts):
            continue
        ncol = next(p.shape[1] for p in parts if p is not None)
        B = np.concatenate([np.zeros((size, ncol)) if p is None else _sign(s) * p
                            for s, size, p in zip(step.steps, step.sizes, parts)])
        X = _block_solve(step, vals, B, state, opts, transpose=False)
        for n, off, size in zip(step.nodes, step.offsets, step.sizes):
            Z[n] = X[off:off + size]
    check_finite_pass(sched, vals, Z, "tangent")
    return Z


def _reverse_matrix(sched: Schedule, vals: list, states: dict, opts: SolveOptions,
                    seed: np.ndarray) -> list:
    """``Λ_v = (dz_o/dz_v)ᵀ``-style multipliers with one column per output entry."""
    Lam: list = [None] * len(sched.names)
    Lam[sched.output] = seed

    def pull(s: Step, G, ans, skip=None):
        for pos, u in s.diff:
            if skip is not None and u in skip:
                continue
            J = _local_jac(s, pos, ans, vals)
            if J is not None:
                _add(Lam, u, _sign(s) * np.asarray(J.T @ G))

    for step in reversed(sched.steps):
        if type(step) is Step:
            if Lam[step.node] is not None:
                pull(step, Lam[step.node], vals[step.node])
            continue
        parts = [Lam[n] for n in step.nodes]
        if all(p is None for p in parts):
            continue
        ncol = next(p.shape[1] for p in parts if p is not None)
        B = np.concatenate([np.zeros((size, ncol)) if p is None else p
                            for size, p in zip(step.sizes, parts)])
        state = states[id(step)]
        X = _block_solve(step, vals, B, state, opts, transpose=True)
        for s, off, size in zip(step.steps, step.offsets, step.sizes):
            Lam[s.node] = X[off:off + size]
            pull(s, Lam[s.node], state.ans[s.node], step.position)
    check_finite_pass(sched, vals, Lam, "multiplier")
    return Lam


def input_jacobian(sched: Schedule, vals: list, inputs: list[int]) -> sp.csr_matrix:
    """``∂c/∂x`` (rows: the constraints in ``sched.defined`` order; columns: the given
    inputs, stacked) from the ops' sparse ``jac`` rules."""
    col0, off = {}, 0
    for i in inputs:
        col0[i] = off
        off += int(np.prod(sched.shapes[i], dtype=int))
    rows, cols, data, r0 = [], [], [], 0
    for n in sched.defined:
        step = sched.step_of[n]
        ans = None
        for pos, u in step.diff:
            if u not in col0:
                continue
            if ans is None:
                ans = step.prim.value([vals[a] for a in step.args], step.params)
            J = _local_jac(step, pos, ans, vals)
            if J is None:
                continue
            J = sp.coo_matrix(J)
            rows.append(J.row + r0); cols.append(J.col + col0[u]); data.append(-_sign(step) * J.data)
        r0 += int(np.prod(sched.shapes[n], dtype=int))
    if not data:
        return sp.csr_matrix((r0, off))
    return sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(r0, off))


# ------------------------------------------------------------ forward solve
def _program_for(f, cached: bool = True):
    """``program_for(*args, **kw) -> (Program, input names)``: a Program as it is, else
    traced, through a guarded cache (:func:`~lagrangeprop.transforms.traced`) when ``cached``."""
    if isinstance(f, ProgramBuilder):
        return lambda *args, **kw: (f, compiled(f).input_names)
    if not cached:   # one call (jvp, vjp, hvp): trace afresh, nothing to guard
        def once(*args, **kw):
            prog = record(f, args, kw)
            return prog, compiled(prog).input_names
        return once
    return traced(f)


def _solve_forward(prog, inputs: dict, guess=None):
    from .lagrangian import _parse_guess
    sched = compiled(prog)
    opts = SolveOptions.make()
    vals = initial_values(sched, parse_inputs(sched, inputs))
    states = run_forward(sched, vals, opts, _parse_guess(sched, guess))
    return sched, vals, states, opts


def _value(sched: Schedule, vals: list):
    v = np.asarray(vals[sched.output], dtype=np.float64)
    return v[()] if v.ndim == 0 else v


def _check_count(what: str, names: list[str], got: int) -> None:
    if got != len(names):
        raise ShapeError(f"{what}: the function takes {len(names)} input(s) {names}, got {got}")


def _shaped(sched: Schedule, i: int, t, what: str) -> np.ndarray:
    arr = real_array(t, f"{what} for input {sched.names[i]!r}")
    if arr.shape != sched.shapes[i]:
        raise ShapeError(f"{what} for input {sched.names[i]!r} has shape {arr.shape}, "
                         f"the input has shape {sched.shapes[i]}")
    return arr


def _scalar(v: np.ndarray):
    return v[()] if v.ndim == 0 else v


# ------------------------------------------------------------- public API
def jvp(f: Callable, primals: tuple, tangents: tuple, *, guess: dict | None = None):
    """``(f(*primals), J·tangents)`` by forward mode, like ``jax.jvp``.

    ``f`` is a numpy-style function (traced once per argument shapes) or a
    :class:`~lagrangeprop.Program` (primals in the order of its inputs); ``guess``
    starts the program's cyclic blocks.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> v, t = lp.jvp(lambda x, y: x * y, (2.0, 3.0), (1.0, 0.0))
    >>> float(v), float(t)
    (6.0, 3.0)
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise InputError("jvp takes the primals and the tangents as tuples, one entry per argument: "
                         "lp.jvp(f, (x,), (v,))")
    primals, tangents = tuple(primals), tuple(tangents)
    prog, names = _program_for(f, cached=False)(*primals)
    _check_count("jvp primals", names, len(primals))
    _check_count("jvp tangents", names, len(tangents))
    sched, vals, states, opts = _solve_forward(prog, dict(zip(names, primals)), guess)
    xdot = {sched.index[n]: _shaped(sched, sched.index[n], t, "tangent") for n, t in zip(names, tangents)}
    zdot = tangent_pass(sched, vals, states, opts, xdot)
    out = zdot[sched.output]
    out = np.zeros(sched.shapes[sched.output]) if out is None else np.asarray(out)
    return _value(sched, vals), _scalar(out)


def vjp(f: Callable, *args, guess: dict | None = None):
    """``(f(*args), vjp_fn)`` with ``vjp_fn(g)`` a tuple of cotangents, one per argument.

    One forward solve; each ``vjp_fn`` call solves the multiplier equations
    ``Aᵀλ = e_o·g`` (reusing the block factorizations).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> value, vjp_fn = lp.vjp(lambda x, y: x * y, 2.0, 3.0)
    >>> [float(c) for c in vjp_fn(1.0)]
    [3.0, 2.0]
    """
    prog, names = _program_for(f, cached=False)(*args)
    _check_count("vjp", names, len(args))
    sched, vals, states, opts = _solve_forward(prog, dict(zip(names, args)), guess)
    out_shape = sched.shapes[sched.output]

    def vjp_fn(g) -> tuple:
        g = real_array(g, "cotangent")
        if g.shape != out_shape:
            raise ShapeError(f"cotangent has shape {g.shape}, the output "
                             f"{sched.names[sched.output]!r} has shape {out_shape}")
        lam = run_adjoint(sched, vals, g, states, opts)
        return tuple(_scalar(np.zeros(sched.shapes[i]) if lam[i] is None
                             else np.array(np.broadcast_to(lam[i], sched.shapes[i])))
                     for i in (sched.index[n] for n in names))
    return _value(sched, vals), vjp_fn


def _matrix_jacobian(sched, vals, states, opts, x: int, mode: str) -> np.ndarray:
    """``dz_o/dx`` of shape ``out.shape + x.shape``; forward when ``x`` is smaller."""
    n_in = int(np.prod(sched.shapes[x], dtype=int))
    n_out = int(np.prod(sched.shapes[sched.output], dtype=int))
    if mode == "auto":
        mode = "forward" if n_in <= n_out else "reverse"
    if mode == "forward":
        J = _forward_matrix(sched, vals, states, opts, {x: np.eye(n_in)})[sched.output]
        J = np.zeros((n_out, n_in)) if J is None else J
    elif mode == "reverse":
        L = _reverse_matrix(sched, vals, states, opts, np.eye(n_out))[x]
        J = np.zeros((n_out, n_in)) if L is None else L.T
    else:
        raise InputError(f"mode={mode!r}: choose 'auto', 'forward' or 'reverse'")
    return np.asarray(J).reshape(sched.shapes[sched.output] + sched.shapes[x])


def jacobian(f: Callable, argnum: int = 0, *, mode: str = "auto", guess: dict | None = None) -> Callable:
    """The Jacobian of ``f`` for positional argument ``argnum``: shape ``out.shape + in.shape``.

    ``mode="auto"`` pushes identity columns forward (``A Ż = -∂c/∂x``) when the input is
    no larger than the output, else pulls identity rows back (``AᵀΛ = E_o``); a cyclic
    block solves all columns against its one factorization. ``argnum`` is a position of
    ``f``'s signature (keywords allowed). Traced programs are cached as :func:`lp.grad
    <lagrangeprop.transforms.grad>` caches them: at most 32 per wrapper, re-traced when anything
    ``f`` read from outside its arguments changed.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.jacobian(lambda x: x ** 2)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    program_for = _program_for(f)
    select = argnum_names(f, argnum, "jacobian")

    def jac(*args, **kwargs):
        if isinstance(argnum, (tuple, list)):
            raise InputError(f"jacobian: argnum={argnum!r}; the Jacobian is for one argument: "
                             "pass an int (call lp.jacobian once per argument)")
        select.check()
        prog, names = program_for(*args, **kwargs)
        _check_count("jacobian", names, len(args) + len(kwargs))
        sched, vals, states, opts = _solve_forward(prog, {**dict(zip(names, args)), **kwargs}, guess)
        return _matrix_jacobian(sched, vals, states, opts,
                                sched.index[select(len(args), names)], mode)
    return jac


def solution_jvp(sol, tangents: dict) -> dict:
    """Tangents of every node of a solved program: ``{node: ż}`` for input tangents
    ``{input: ẋ}`` (missing inputs: zero)."""
    sched = sol.schedule
    xdot = {sched.index[k]: _shaped(sched, sched.index[k], v, "tangent") for k, v in tangents.items()}
    zdot = tangent_pass(sched, sol._vals, sol._states, sol.options, xdot)
    return {sched.names[i]: _scalar(np.zeros(sched.shapes[i]) if zdot[i] is None else np.asarray(zdot[i]))
            for i in [*sched.inputs, *sched.defined]}


def solution_hvp(sol, v: dict) -> dict:
    """``∇²<seed, z_o> · v`` for a solved program, as ``{input: array}``.

    Forward-over-reverse: the tangent pass along ``v`` (missing inputs: zero), then the
    differentiated multiplier solve. Exact up to roundoff for the built-in ops.
    """
    sched = sol.schedule
    xdot = {sched.index[k]: _shaped(sched, sched.index[k], t, "direction") for k, t in v.items()}
    zdot = tangent_pass(sched, sol._vals, sol._states, sol.options, xdot)
    ldot = hvp_pass(sched, sol._vals, sol._lam, sol._states, sol.options, zdot)
    return {sched.names[i]: _scalar(np.zeros(sched.shapes[i]) if ldot[i] is None
                                    else np.array(np.broadcast_to(ldot[i], sched.shapes[i])))
            for i in sched.inputs}


def _solve_scalar(program_for, args, guess, kwargs=None):
    kwargs = kwargs or {}
    prog, names = program_for(*args, **kwargs)
    _check_count("hessian", names, len(args) + len(kwargs))
    sched = compiled(prog)
    out = sched.shapes[sched.output]
    if out != ():
        raise ShapeError(f"hvp/hessian apply to scalar-output functions; {prog.name} returns "
                         f"shape {out}: try lp.jacobian of lp.grad")
    return solve_program(prog, {**dict(zip(names, args)), **kwargs}, guess=guess), names


def hvp(f: Callable, x, v, *, guess: dict | None = None):
    """Hessian-vector product ``∇²f(x) · v`` of scalar ``f``, exact (forward-over-reverse).

    ``f`` takes ``x`` as its single argument (or is a one-input Program).

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.hvp(lambda x: lp.sum(x ** 3), np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    array([ 6., 12.])
    """
    sol, names = _solve_scalar(_program_for(f, cached=False), (x,), guess)
    return solution_hvp(sol, {names[0]: v})[names[0]]


def hessian(f: Callable, argnum: int = 0, *, guess: dict | None = None) -> Callable:
    """The Hessian of scalar ``f`` for argument ``argnum``: shape ``x.shape + x.shape``.

    One solve, then one tangent pass and one differentiated multiplier pass per
    column (block factorizations reused). Cached and guarded as :func:`jacobian`.

    Examples
    --------
    >>> import numpy as np
    >>> import lagrangeprop as lp
    >>> lp.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    """
    program_for = _program_for(f)
    select = argnum_names(f, argnum, "hessian")

    def hess(*args, **kwargs):
        if isinstance(argnum, (tuple, list)):
            raise InputError(f"hessian: argnum={argnum!r}; the Hessian is for one argument: "
                             "pass an int")
        select.check()
        sol, names = _solve_scalar(program_for, args, guess, kwargs)
        name = select(len(args), names)
        shape = sol.schedule.shapes[sol.schedule.index[name]]
        n = int(np.prod(shape, dtype=int))
        cols = []
        for k in range(n):
            e = np.zeros(n)
            e[k] = 1.0
            cols.append(np.ravel(solution_hvp(sol, {name: e.reshape(shape)})[name]))
        H = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
        return H.reshape(shape + shape)
    return hess


def jacobian_z(sol) -> dict:
    """``dz/dx = -A⁻¹ ∂c/∂x`` for every node of a solved program.

    Returns ``{node: {input: array of shape node.shape + input.shape}}`` for every input
    and defined node (inputs: identity for themselves). All input columns are pushed
    through at once; a cyclic block solves them against its one factorization.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program()
    >>> x = prog.input("x"); w = prog.variable("w")
    >>> _ = prog.residual(w, w**3 + w - x); _ = prog.output(2.0 * w, name="o")
    >>> jz = prog.solve(x=2.0).jacobian_z()      # w = 1: dw/dx = 1/(3w² + 1)
    >>> float(jz["w"]["x"]), float(jz["o"]["x"])
    (0.25, 0.5)
    """
    sched = sol.schedule
    sizes = {i: int(np.prod(sched.shapes[i], dtype=int)) for i in sched.inputs}
    total = sum(sizes.values())
    seeds, col0, off = {}, {}, 0
    for i in sched.inputs:
        E = np.zeros((sizes[i], total))
        E[:, off:off + sizes[i]] = np.eye(sizes[i])
        seeds[i], col0[i] = E, off
        off += sizes[i]
    Z = _forward_matrix(sched, sol._vals, sol._states, sol.options, seeds)
    out = {}
    for v in [*sched.inputs, *sched.defined]:
        Zv = np.zeros((int(np.prod(sched.shapes[v], dtype=int)), total)) if Z[v] is None else Z[v]
        out[sched.names[v]] = {
            sched.names[i]: _scalar(np.asarray(Zv[:, col0[i]:col0[i] + sizes[i]]).reshape(
                sched.shapes[v] + sched.shapes[i]))
            for i in sched.inputs}
    return out
