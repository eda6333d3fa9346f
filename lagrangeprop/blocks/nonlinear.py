"""Forward solvers for one block: find ``z_S`` with ``c_S(z_S; z_outside) = 0`` (SPEC §1).

- :func:`newton`: ``A_SS δ = -c_S`` with a sparse LU, backtracking on ``||c||₂``; the LU is
  reused when ``A_SS`` did not change (linear blocks factor once).
- :func:`newton_krylov`: the same step solved inexactly by ``gmres`` on JVP products
  (matrix-free), preconditioned by a Gauss–Seidel sweep (explicit blocks) or ILU.
- :func:`fixed_point`: Gauss–Seidel sweeps ``z_d ← f_d(z)`` in block order (explicit blocks).
- :func:`anderson`: Anderson acceleration (type II, memory 6) of the same sweep.

All start from the caller's guess, else 0, and stop when every constraint holds on its own scale,
``max_d |c_d| / s_d <= tol`` (:mod:`lagrangeprop.blocks.scale`: ``s_d = max(1, |z_d|)`` for an explicit
constraint, the magnitude of the residual expression's terms for a residual one; checked on the
true residual). The line searches use the same scaled residual ``||c / s||₂`` (``s`` at the current
iterate), so an equation in large units cannot drown one in small units. Otherwise they raise
:class:`ConvergenceError` with the history of the scaled residual.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.Program()
>>> x = prog.input("x"); y = prog.variable("y")
>>> _ = prog.define(y, 0.5 * lp.cos(y) + x); _ = prog.output(y * 1.0, name="o")
>>> a = prog.solve(x=1.0, method="anderson"); b = prog.solve(x=1.0, method="newton")
>>> bool(abs(a.values["y"] - b.values["y"]) < 1e-9)
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from .blockops import (_F64, BlockState, Linearization, _evaluators, assemble, block_jacobian, block_residual,
                       dense_jacobian, describe, evaluate, gather, has_jac, linearize, matvec, remember,
                       residual_norm, scatter, sweep)
from .eliminate import reduced_factor, split_members
from ..errors import ConvergenceError
from ..linalg.linsolve import DENSE_MAX, ilu
from ..options import SolveOptions
from .scale import constraint_scale, explicit_scale, scaled_max
from ..compile.schedule import Block

__all__ = ["initial", "newton", "newton_krylov", "fixed_point", "anderson", "MAXITER"]

CHORD_MIN = 256   # smaller blocks always refactor (quadratic convergence, smooth outputs)
MAXITER = {"newton": 50, "newton-krylov": 100, "fixed-point": 2000, "anderson": 1000}


def initial(block: Block, vals: list, guess: dict, presweep: bool = True) -> None:
    """Members start from the user's guess, else 0 (SPEC §1); explicit members without a
    guess are then evaluated once in block order (one Gauss–Seidel sweep) when finite."""
    for n, shape in zip(block.nodes, block.shapes):
        if n in guess:
            g = np.asarray(guess[n], dtype=np.float64)
            vals[n] = g.copy() if g.shape == shape else np.array(np.broadcast_to(g, shape))
        else:
            vals[n] = np.zeros(shape)
    if not presweep:
        return
    with np.errstate(all="ignore"):
        for k, (s, fn) in enumerate(zip(block.steps, _evaluators(block))):
            if not s.residual and s.node not in guess:
                v = evaluate(block, k, vals, fn)
                if np.isfinite(v).all():
                    vals[s.node] = v


def _fail(block: Block, method: str, state: BlockState, tol: float, maxiter: int, why: str = ""):
    last = state.history[-1] if state.history else float("nan")
    hint = {"newton": "method='anderson' (explicit blocks) or a guess= closer to the solution",
            "newton-krylov": "method='newton' or a guess= closer to the solution",
            "fixed-point": "method='newton' (the sweep may not contract) or 'anderson'",
            "anderson": "method='newton' (the sweep may not contract)"}[method]
    return ConvergenceError(
        f"block [{describe(block)}] did not converge with {method}"
        + (f" ({why})" if why else f" in {maxiter} iterations")
        + f": last scaled residual max|c_d|/s_d {last:.3e}, tol {tol:g}; raise maxiter=, or try {hint}",
        nodes=block.names, iterations=state.iterations, history=state.history)


def _finite_or_fail(block, method, state, tol, maxiter, c, z):
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(z))):
        state.history.append(float("nan"))
        raise _fail(block, method, state, tol, maxiter, f"non-finite residual at iteration "
                    f"{state.iterations}; give a better starting point with guess=")


def _elim_plan(block: Block) -> tuple:
    """Per state and per intermediate (evaluation order): ``(node, operand ids, evaluator, step, start,
    stop, shape, flat)``; ``flat``: the value goes into its slice of a block vector as it is. Cached."""
    if "elim_plan" not in block.cache:
        states, inter = split_members(block)
        fns = _evaluators(block)

        def row(k):
            s, a, shape = block.steps[k], block.offsets[k], block.shapes[k]
            b = a + block.sizes[k]
            return (s.node, tuple(s.args), fns[k], s, a, b, shape, shape in ((), (b - a,)))
        block.cache["elim_plan"] = ([row(k) for k in states], [row(k) for k in inter])
    return block.cache["elim_plan"]


def _op(args: tuple, fn, s, vals: list) -> np.ndarray:
    """The op output of step ``s`` (float64 ndarray), like :func:`lagrangeprop.blocks.blockops.evaluate`."""
    if fn is not None:
        v = fn(*[vals[u] for u in args])
        return v if type(v) is np.ndarray and v.dtype is _F64 else np.asarray(v, dtype=np.float64)
    return np.asarray(s.prim.value([vals[u] for u in args], s.params), dtype=np.float64)


def _move(block, vals, z, elim: bool):
    """Set the members to ``z`` and evaluate ``c_S``; with ``elim``, only the states are
    taken from ``z``: the intermediates are evaluated from them (:mod:`lagrangeprop.blocks.eliminate`,
    whose ``residual`` this inlines). Returns the members' values, ``c_S`` and the op outputs.
    Callers hold ``np.errstate(all="ignore")``."""
    if not elim:
        scatter(block, vals, z)
        return (z, *block_residual(block, vals))
    states, inter = _elim_plan(block)
    for node, _, _, _, a, b, shape, _ in states:   # the intermediates' slots are overwritten before they are read
        vals[node] = np.array(z[a:b]).reshape(shape)
    z = np.array(z)
    ans = {}
    for node, args, fn, s, a, b, _, flat in inter:
        v = vals[node] = ans[node] = _op(args, fn, s, vals)
        z[a:b] = v if flat else v.ravel()
    c = np.zeros(block.size)
    for node, args, fn, s, a, b, _, flat in states:
        v = ans[node] = _op(args, fn, s, vals)
        r = v if s.residual else vals[node] - v
        c[a:b] = r if flat else r.ravel()
    return z, c, ans


def _line_search(block, vals, z, delta, cnorm2, scale, elim: bool = False):
    """Backtracking on the scaled ``||c / s||₂`` (``s``: the scale at ``z``, fixed during the search;
    Armijo, halving down to 2⁻¹⁰); returns z, c, ans."""
    alpha = 1.0
    while True:
        z_new, c_new, ans_new = _move(block, vals, z + alpha * delta, elim)
        new = float(np.linalg.norm(c_new / scale))
        if (np.isfinite(new) and new <= (1 - 1e-4 * alpha) * cnorm2) or alpha < 1e-3:
            return z_new, c_new, ans_new
        alpha *= 0.5


# ------------------------------------------------------------------ Newton
def _same(A, B) -> bool:
    if B is None:
        return False
    if isinstance(A, np.ndarray):
        return np.array_equal(A, B)
    return (A.nnz == B.nnz and np.array_equal(A.indptr, B.indptr)
            and np.array_equal(A.indices, B.indices) and np.array_equal(A.data, B.data))


def _jacobian(block: Block, vals: list, ans: dict, memo: dict):
    """``A_SS`` at the current point (dense for small blocks) and its linearization (``None`` when a
    small block's dense ``A_SS`` came straight from its elementwise partials); ``memo`` keeps the
    local Jacobians that stay constant during this solve (``W @ z``)."""
    if block.size <= DENSE_MAX:
        A = dense_jacobian(block, vals, ans)
        if A is not None:
            return None, A
    lin = Linearization(block, vals, ans, memo)
    A = assemble(block, lin, dense=block.size <= DENSE_MAX)
    remember(block, lin)     # the adjoint's matrix-free products reuse it
    return lin, A


def newton(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Newton's method with the sparse ``A_SS`` and backtracking; fills ``vals`` (:func:`_newton`)."""
    with np.errstate(all="ignore"):
        return _newton(block, vals, opts, guess)


def _newton(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Newton's method with the sparse ``A_SS`` and backtracking; fills ``vals``.

    On blocks above ``CHORD_MIN`` unknowns a factorization is reused (chord step) while it
    still reduces ``||c||₂`` at least fourfold; at the solution ``state.lu`` is kept only when
    ``A_SS`` did not change since (linear blocks), else the stale LU stays in
    ``state.cache["stale_lu"]`` (a preconditioner).
    """
    initial(block, vals, guess)
    maxiter = opts.maxiter or MAXITER["newton"]
    state = BlockState(method="newton")
    # Newton on the states only: the intermediates follow by forward substitution
    z = gather(block, vals)
    z_sub, c, ans = _move(block, vals, z, True)
    if np.isfinite(z_sub).all():
        z = z_sub
    else:            # keep the start's finite intermediates: the failure names the iteration
        z, c, ans = _move(block, vals, z, False)
    lu = lu_A = None
    memo: dict = {}
    rate, polished = 1.0, False
    for it in range(maxiter + 1):
        state.iterations = it
        # SPEC §1 "Scale": every constraint on its own scale (lagrangeprop.blocks.scale)
        scale = constraint_scale(block, vals, z)
        cs = c / scale
        cn = residual_norm(cs)                           # NaN or inf anywhere shows in these maxima
        state.history.append(cn)
        if not np.isfinite(cn):    # a non-finite z shows here too: through c_d = z_d - f_d or the scale
            _finite_or_fail(block, "newton", state, opts.tol, maxiter, c, z)
        done = cn <= opts.tol                            # max_d |c_d| / s_d <= tol
        # small blocks take one more (cheap, quadratically convergent) step once within tol:
        # the multipliers then do not carry the forward tolerance
        if done and not polished and block.size <= CHORD_MIN and it < maxiter and cn > 1e-14:
            polished = True
        elif done:
            state.cache["lin"], A = _jacobian(block, vals, ans, memo)
            state.ans, state.A = ans, A
            if _same(A, lu_A):
                state.lu = lu
            elif lu is not None:
                state.cache["stale_lu"] = lu
            return state
        if it == maxiter:
            break
        norm2 = float(np.linalg.norm(cs))
        # chord step with the old LU: large blocks while it contracts fast, and the polishing step
        # of small ones (already within tol, so the old Jacobian is accurate enough)
        if lu is not None and (rate <= 0.25 and block.size > CHORD_MIN or polished and done):
            z_try, c_try, ans_try = _move(block, vals, z + lu.solve(-c), True)
            new = float(np.linalg.norm(c_try / scale))
            if np.isfinite(new) and new <= 0.25 * norm2:
                rate, z, c, ans = new / norm2, z_try, c_try, ans_try
                continue
            scatter(block, vals, z)
        lu = None            # free the old factors before making new ones (peak memory)
        _, lu_A = _jacobian(block, vals, ans, memo)
        lu, fill = reduced_factor(block, lu_A, f"at Newton iteration {it}")
        block.cache["fill"] = max(fill, block.cache.get("fill", 0.0))
        z, c, ans = _line_search(block, vals, z, lu.solve(-c), norm2, scale, elim=True)
        rate = float(np.linalg.norm(c / scale)) / max(norm2, 1e-300)
    raise _fail(block, "newton", state, opts.tol, maxiter)


def newton_krylov(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Inexact Newton: ``A_SS δ = -c`` by gmres on JVP products; fills ``vals``."""
    with np.errstate(all="ignore"):
        return _newton_krylov(block, vals, opts, guess)


def _newton_krylov(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    initial(block, vals, guess)
    maxiter = opts.maxiter or MAXITER["newton-krylov"]
    state = BlockState(method="newton-krylov")
    z = gather(block, vals)
    with np.errstate(all="ignore"):
        c, ans = block_residual(block, vals)
    n = block.size
    for it in range(maxiter + 1):
        state.iterations = it
        scale = constraint_scale(block, vals, z)      # SPEC §1 "Scale"
        state.history.append(scaled_max(c, scale))
        _finite_or_fail(block, "newton-krylov", state, opts.tol, maxiter, c, z)
        if state.history[-1] <= opts.tol:
            state.ans = ans
            return state
        if it == maxiter:
            break
        lin = linearize(block, vals, ans)    # noqa: F841  (kept alive for this step's products)
        # gmres on the row-scaled system (A/s) δ = -c/s: its stopping test weighs every equation
        # on its own scale; the preconditioner M ≈ A⁻¹ becomes M·diag(s)
        A = spla.LinearOperator((n, n), matvec=lambda v, a=ans, s=scale: matvec(block, vals, a, v) / s,
                                dtype=float)
        M = None
        if block.explicit:
            M = spla.LinearOperator((n, n), matvec=lambda r, a=ans, s=scale: sweep(block, vals, a, r * s),
                                    dtype=float)
        elif has_jac(block) and n <= DENSE_MAX:
            # small blocks: the factorization of A_SS (through the Schur complement on the states) as
            # the preconditioner; an ILU of a chain of intermediates with large gains (Robertson's 3e7,
            # a diode's exp) leaves gmres with an operator it cannot resolve
            fac = reduced_factor(block, block_jacobian(block, vals, ans), f"at Newton-Krylov iteration {it}")[0]
            M = spla.LinearOperator((n, n), matvec=lambda r, s=scale, f=fac: f.solve(r * s), dtype=float)
        elif has_jac(block):
            fac = ilu(block_jacobian(block, vals, ans))
            M = None if fac is None else spla.LinearOperator((n, n), matvec=lambda r, s=scale, f=fac: f.solve(r * s),
                                                             dtype=float)
        eta = min(0.1, max(1e-3 * opts.tol, state.history[-1]))   # forcing term
        delta, _ = spla.gmres(A, -c / scale, rtol=eta, atol=0.0, restart=min(n, 60), maxiter=20, M=M)
        if not np.all(np.isfinite(delta)):
            raise _fail(block, "newton-krylov", state, opts.tol, maxiter, "gmres broke down")
        z, c, ans = _line_search(block, vals, z, delta, float(np.linalg.norm(c / scale)), scale)
    raise _fail(block, "newton-krylov", state, opts.tol, maxiter)


# ------------------------------------------------- fixed point (explicit)
def _sweep_values(block: Block, vals: list) -> None:
    """One Gauss–Seidel sweep ``z_d ← f_d(z)`` in block order (in place)."""
    plan = block.cache.get("sweep_plan")
    if plan is None:
        plan = block.cache["sweep_plan"] = [(s.node, tuple(s.args), fn, s)
                                            for s, fn in zip(block.steps, _evaluators(block))]
    for node, args, fn, s in plan:
        vals[node] = _op(args, fn, s, vals)


def _feedback(block: Block) -> tuple[list[int], list[int]]:
    """``(fed, stale)``: the members whose value from the previous sweep a sweep reads (an operand
    of a member at or before their position), and the members that read one. After a sweep every
    other member equals its op at the current values: its constraint holds exactly. Cached."""
    if "feedback" not in block.cache:
        pos = block.position
        fed, stale = set(), []
        for k, s in enumerate(block.steps):
            back = [m for m in (pos.get(u) for u in s.args) if m is not None and m >= k]
            fed.update(back)
            if back:
                stale.append(k)
        block.cache["feedback"] = (sorted(fed), stale)
    return block.cache["feedback"]


def _finish(block, vals, opts, state) -> bool:
    """Verify the true residual at the current values; on success fill ``state.ans``."""
    with np.errstate(all="ignore"):
        c, ans = block_residual(block, vals)
    r = scaled_max(c, constraint_scale(block, vals))
    if r <= opts.tol:                          # NaN fails
        state.ans = ans
        state.history.append(r)
        return True
    return False


def _finish_swept(block, vals, opts, state) -> bool:
    """:func:`_finish` right after a sweep: only the members that read a value of the previous
    sweep can violate their constraint, so only their ops are evaluated (explicit blocks: each
    constraint on the scale ``max(1, |z_d|)``)."""
    fns, steps = _evaluators(block), block.steps
    ans = {n: vals[n] for n in block.nodes}    # op output = value for the members swept last
    cmax = 0.0
    with np.errstate(all="ignore"):
        for k in _feedback(block)[1]:
            n = steps[k].node
            a = ans[n] = evaluate(block, k, vals, fns[k])
            d = np.abs(vals[n] - a) / explicit_scale(vals[n])
            cmax = max(cmax, float(d.max()) if d.size else 0.0)
    if cmax <= opts.tol:      # NaN fails
        state.ans = ans
        state.history.append(cmax)
        return True
    return False


def fixed_point(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Gauss–Seidel fixed-point sweeps for an explicit block; fills ``vals``.

    The step is measured on the members that read a value of the previous sweep (the only ones
    whose constraint a sweep leaves unsatisfied; their step bounds the residual one sweep
    earlier); once it is within tol, the true residual decides (:func:`_finish_swept`).
    """
    initial(block, vals, guess, presweep=False)
    maxiter = opts.maxiter or MAXITER["fixed-point"]
    state = BlockState(method="fixed-point")
    watch = [block.nodes[k] for k in _feedback(block)[1]]
    with np.errstate(all="ignore"):
        for it in range(1, maxiter + 1):
            state.iterations = it
            old = [vals[n] for n in watch]   # a sweep replaces the arrays, never writes into them
            _sweep_values(block, vals)
            # the history keeps max|step|; the test takes each entry on its own scale max(1, |z_d|)
            steps = [np.abs(vals[n] - o) for n, o in zip(watch, old)]
            step = max(float(d.max()) if d.size else 0.0 for d in steps)
            state.history.append(step)
            if not np.isfinite(step):      # the start is finite, so this sweep is not
                z = gather(block, vals)
                _finite_or_fail(block, "fixed-point", state, opts.tol, maxiter, z, z)
            rel = max(float((d / explicit_scale(vals[n])).max()) if d.size else 0.0 for n, d in zip(watch, steps))
            if rel <= opts.tol and _finish_swept(block, vals, opts, state):   # SPEC §1 "Scale"
                return state
    raise _fail(block, "fixed-point", state, opts.tol, maxiter)


def anderson(block: Block, vals: list, opts: SolveOptions, guess: dict, memory: int = 6) -> BlockState:
    """Anderson-accelerated Gauss–Seidel sweeps for an explicit block; fills ``vals``."""
    initial(block, vals, guess, presweep=False)
    maxiter = opts.maxiter or MAXITER["anderson"]
    state = BlockState(method="anderson")
    z = gather(block, vals)
    Gs: list = []
    Fs: list = []
    best = np.inf
    with np.errstate(all="ignore"):
        for it in range(1, maxiter + 1):
            state.iterations = it
            scatter(block, vals, z)
            _sweep_values(block, vals)
            g = gather(block, vals)
            f = g - z
            step = scaled_max(f, explicit_scale(g))     # each entry on its own scale max(1, |z_d|)
            state.history.append(step)
            _finite_or_fail(block, "anderson", state, opts.tol, maxiter, f, g)
            if step <= opts.tol and _finish(block, vals, opts, state):
                return state
            if step > 1e4 * best:          # the mixing went astray: restart the memory
                Gs.clear(); Fs.clear()
            best = min(best, step)
            Gs.append(g); Fs.append(f)
            if len(Fs) > memory + 1:
                Gs.pop(0); Fs.pop(0)
            if len(Fs) >= 2:
                dF = np.diff(np.array(Fs), axis=0)
                dG = np.diff(np.array(Gs), axis=0)
                # min ||f - dFᵀγ||₂ through the small Gram matrix (lstsq on n×m is slow)
                G = dF @ dF.T
                G[np.diag_indices_from(G)] += 1e-14 * max(np.trace(G), 1e-300)
                gamma = np.linalg.solve(G, dF @ f)
                z = g - dG.T @ gamma
            else:
                z = g
    raise _fail(block, "anderson", state, opts.tol, maxiter)
