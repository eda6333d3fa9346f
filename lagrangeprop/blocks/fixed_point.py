"""Fixed-point methods for an explicit block: Gauss–Seidel sweeps ``z_d ← f_d(z)`` in block order.

- :func:`fixed_point`: the sweeps themselves;
- :func:`anderson`: Anderson acceleration (type II, memory 6) of the same sweep.

Both stop when every constraint holds on its own scale ``max(1, |z_d|)`` (SPEC §1 "Scale"),
checked on the true residual, else :class:`ConvergenceError`.

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

from ..compile.schedule import Block
from ..options import SolveOptions
from ..progress import report
from .iteration import MAXITER, fail, finite_or_fail, initial
from .layout import gather, scatter
from .residual import block_residual, evaluate, evaluate_step, evaluators
from .scale import constraint_noise, constraint_scale, explicit_scale, scaled_max
from .state import BlockState, cache_of

__all__ = ["fixed_point", "anderson"]


def _sweep_values(block: Block, vals: list) -> None:
    """One Gauss–Seidel sweep ``z_d ← f_d(z)`` in block order (in place)."""
    c = cache_of(block)
    plan = c.sweep_plan
    if plan is None:
        plan = c.sweep_plan = [(s.node, tuple(s.args), fn, s) for s, fn in zip(block.steps, evaluators(block))]
    for node, args, fn, s in plan:
        vals[node] = evaluate_step(args, fn, s, vals)


def _feedback(block: Block) -> tuple[list[int], list[int]]:
    """``(fed, stale)``: the members whose value from the previous sweep a sweep reads (an operand
    of a member at or before their position), and the members that read one. After a sweep every
    other member equals its op at the current values: its constraint holds exactly. Cached."""
    c = cache_of(block)
    if c.feedback is None:
        pos = block.position
        fed, stale = set(), []
        for k, s in enumerate(block.steps):
            back = [m for m in (pos.get(u) for u in s.args) if m is not None and m >= k]
            fed.update(back)
            if back:
                stale.append(k)
        c.feedback = (sorted(fed), stale)
    return c.feedback


def _finish(block, vals, opts, state) -> bool:
    """Verify the true residual at the current values; on success fill ``state.ans``."""
    with np.errstate(all="ignore"):
        c, ans = block_residual(block, vals)
    r = scaled_max(c, constraint_scale(block, vals), constraint_noise(block, vals))
    if r <= opts.tol:                          # NaN fails
        state.ans = ans
        state.history.append(r)
        return True
    return False


def _finish_swept(block, vals, opts, state) -> bool:
    """:func:`_finish` right after a sweep: only the members that read a value of the previous
    sweep can violate their constraint, so only their ops are evaluated (explicit blocks: each
    constraint on the scale ``max(1, |z_d|)``)."""
    fns, steps = evaluators(block), block.steps
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


# z_d ← f_d(z) for d in block order (Gauss–Seidel); converges when ρ(M⁻¹N) < 1, M = I - J_L.
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
                finite_or_fail(block, "fixed-point", state, opts.tol, maxiter, z, z)
            rel = max(float((d / explicit_scale(vals[n])).max()) if d.size else 0.0 for n, d in zip(watch, steps))
            report(block.names, "fixed-point", it, rel, opts.tol)
            if rel <= opts.tol and _finish_swept(block, vals, opts, state):   # SPEC §1 "Scale"
                return state
    raise fail(block, "fixed-point", state, opts.tol, maxiter)


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
            report(block.names, "anderson", it, step, opts.tol)
            finite_or_fail(block, "anderson", state, opts.tol, maxiter, f, g)
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
    raise fail(block, "anderson", state, opts.tol, maxiter)
