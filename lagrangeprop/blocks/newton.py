"""Newton's method for a block: ``A_SS δ = -c_S`` on the states, the intermediates eliminated (SPEC §1).

- :func:`newton`: the step with a factorization (through the Schur complement on the states,
  :mod:`lagrangeprop.blocks.eliminate`), backtracking on the scaled ``||c / s||₂``; large blocks
  reuse a factorization (chord steps) while it contracts fast, and linear blocks factor once; with
  AMG every step is an inexact Newton step (Eisenstat–Walker forcing) by cg/gmres on the Schur
  complement formed by the chain rule from the local partials (``A_SS`` is not assembled),
  preconditioned by the block's kept hierarchy.
- :func:`newton_krylov`: the same step solved inexactly by ``gmres`` on JVP products
  (matrix-free), preconditioned by a Gauss–Seidel sweep (explicit blocks), the block's
  factorization (small blocks) or ILU.

Both stop when every constraint holds on its own scale, ``max_d |c_d| / s_d <= tol``
(:mod:`lagrangeprop.blocks.scale`), checked on the true residual; otherwise
:class:`ConvergenceError` with the history of the scaled residual. The linear solver is the one
``reduced_factor`` gives for the block (the policy set ``BlockCache.use_amg`` beforehand).

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.options import SolveOptions
>>> sol = cubic()   # the residual w³ + w - x = 0 (o = w) solved at x = 2: conftest.py
>>> blk = sol.schedule.blocks[0]; vals = list(sol._vals)
>>> state = newton(blk, vals, SolveOptions(), {})
>>> state.method, round(float(vals[blk.nodes[0]]), 12)
('newton', 1.0)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..compile.schedule import Block
from ..linalg.amg import AMGInverse
from ..linalg.direct import DENSE_MAX_UNKNOWNS
from ..linalg.krylov import ilu
from ..options import SolveOptions
from ..progress import report
from .assembly import assemble, block_jacobian, dense_jacobian
from .eliminate import chain_schur, inner_solver, reduced_factor, split_members
from .iteration import MAXITER, fail, finite_or_fail, initial, settled, step_size
from .partition import _indices
from .layout import gather, residual_norm, scatter
from .linearization import Linearization, linearize, remember
from .residual import block_residual, evaluate_step, evaluators, has_jac
from .scale import constraint_noise, constraint_scale, scaled_max
from .state import BlockState, cache_of
from .sweeps import matvec, sweep

__all__ = ["CHORD_MIN", "newton", "newton_krylov"]


CHORD_MIN = 256   # smaller blocks always refactor (quadratic convergence, smooth outputs)
ETA_MAX, ETA_MIN = 0.5, 1e-6   # the range of the inexact (AMG) Newton step's forcing term
_ZERO_TERMS = 1e-290   # a scale at the TINY floor: every term of the equation is zero
ALPHA_FULL = 2.0 ** -3   # a Newton–Krylov step this much shortened also tries the states' merit alone
NOISE_NEAR = 1e3     # the rounding allowance is looked at from max|c/s| <= NOISE_NEAR·tol on (or on a stall)


def _within_rounding(block: Block, vals: list, c: np.ndarray, scale: np.ndarray, tol: float,
                     state: BlockState) -> bool:
    """``max_d max(|c_d| - noise_d, 0) / s_d <= tol``: the violations left are the rounding of
    evaluating the residuals (:func:`~lagrangeprop.blocks.scale.constraint_noise`), which no step can
    reduce; the history's last entry becomes that measure."""
    noise = constraint_noise(block, vals)
    if noise is None:
        return False
    r = scaled_max(c, scale, noise)
    if r <= tol:
        state.history[-1] = r
        return True
    return False


def _elim_plan(block: Block) -> tuple:
    """Per state and per intermediate (evaluation order): ``(node, operand ids, evaluator, step, start,
    stop, shape, flat)``; ``flat``: the value goes into its slice of a block vector as it is. Cached."""
    c = cache_of(block)
    if c.elim_plan is None:
        states, inter = split_members(block)
        fns = evaluators(block)

        def row(k):
            s, a, shape = block.steps[k], block.offsets[k], block.shapes[k]
            b = a + block.sizes[k]
            return (s.node, tuple(s.args), fns[k], s, a, b, shape, shape in ((), (b - a,)))
        c.elim_plan = ([row(k) for k in states], [row(k) for k in inter])
    return c.elim_plan


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
        v = vals[node] = ans[node] = evaluate_step(args, fn, s, vals)
        z[a:b] = v if flat else v.ravel()
    c = np.zeros(block.size)
    for node, args, fn, s, a, b, _, flat in states:
        v = ans[node] = evaluate_step(args, fn, s, vals)
        r = v if s.residual else vals[node] - v
        c[a:b] = r if flat else r.ravel()
    return z, c, ans


def _line_search(block, vals, z, delta, cnorm2, scale, elim: bool = False, floor: float = 1e-3):
    """Backtracking on the scaled ``||c / s||₂`` (``s``: the scale at ``z``, fixed during the search;
    Armijo, halving down to 2⁻¹⁰); returns z, c, ans and the step ``α`` taken (0 when no step down
    to ``floor`` decreased the merit: the last trial is returned). An equation whose terms are all zero at ``z``
    (``c_d = 0`` there, ``s_d`` the ``TINY`` floor: a zero input at the zero start) takes its scale at
    the full step instead, fixed for the search too (at the floor, or on the scale of each trial, every
    shorter step would look as bad as the full one)."""
    alpha = 1.0
    zero = scale <= _ZERO_TERMS
    s = scale
    while True:
        z_new, c_new, ans_new = _move(block, vals, z + alpha * delta, elim)
        if alpha == 1.0 and zero.any():
            s = np.where(zero, np.maximum(constraint_scale(block, vals, z_new), scale), scale)
        new = float(np.linalg.norm(c_new / s))
        if np.isfinite(new) and new <= (1 - 1e-4 * alpha) * cnorm2:
            return z_new, c_new, ans_new, alpha
        if alpha < floor:
            return z_new, c_new, ans_new, 0.0
        alpha *= 0.5


def _krylov_search(block, vals, z, delta, cnorm2, scale):
    """Newton–Krylov's line search: on every member's equation (the intermediates' explicit rows weigh
    how far their linearization is trusted: a saturating tanh), and where that needs a step shorter
    than ``ALPHA_FULL``, also on the states' equations with the intermediates evaluated from the states (a residual on a
    huge scale, ``(exp(w) + 1e10) - (x + 1e10)``, is invisible next to exp's own row: every full step
    looked like an increase and the iteration crept); the longer accepted step wins."""
    out = _line_search(block, vals, z, delta, cnorm2, scale)
    if out[3] >= ALPHA_FULL:
        return out[:3]
    _, c0, _ = _move(block, vals, z, True)
    norm_el = float(np.linalg.norm(c0 / scale))
    if np.isfinite(norm_el):
        el = _line_search(block, vals, z, delta, norm_el, scale, elim=True)
        if el[3] > out[3]:
            return el[:3]
    _move(block, vals, out[0], False)       # back to the first search's point
    return out[:3]


# ------------------------------------------------------------------ Newton
def _same(A, B) -> bool:
    if B is None:
        return False
    if isinstance(A, np.ndarray):
        return np.array_equal(A, B)
    return (A.nnz == B.nnz and np.array_equal(A.indptr, B.indptr)
            and np.array_equal(A.indices, B.indices) and np.array_equal(A.data, B.data))


def _jacobian(block: Block, vals: list, ans: dict, memo: dict, prev=None):
    """``A_SS`` at the current point (dense for small blocks) and its linearization (``None`` when a
    small block's dense ``A_SS`` came straight from its elementwise partials); ``memo`` keeps the
    local Jacobians that stay constant during this solve (``W @ z``); ``prev``: the last ``A_SS``."""
    if block.size <= DENSE_MAX_UNKNOWNS:
        A = dense_jacobian(block, vals, ans)
        if A is not None:
            return None, A
    lin = Linearization(block, vals, ans, memo)
    A = assemble(block, lin, dense=block.size <= DENSE_MAX_UNKNOWNS, prev=prev)
    remember(block, lin)     # the adjoint's matrix-free products reuse it
    return lin, A


class _Forcing:
    """The forcing term ``η`` of an inexact step ``||A δ + c|| <= η ||c||`` (AMG-preconditioned Krylov):
    true Newton with the Eisenstat–Walker choice 2 (γ = 0.9, α = 2, with its safeguard), loose far
    from the root and tighter as it converges, never tighter than the stopping test
    ``max|c/s| <= tol`` needs. A new Jacobian costs one ``S`` by the chain rule (:func:`_schur_step`),
    else one assembly and the matrix-free Schur operator (:mod:`lagrangeprop.blocks.partition`)."""

    __slots__ = ("prev", "last")

    def __init__(self):
        self.prev, self.last = None, ETA_MAX

    def _floor(self, eta: float, cn: float, tol: float) -> float:
        return min(ETA_MAX, max(eta, ETA_MIN, 0.05 * tol / max(cn, 1e-300)))

    def newton(self, norm2: float, cn: float, tol: float) -> float:
        """η of a Newton step at scaled residual ``norm2 = ||c/s||₂`` (``cn``: its max-norm)."""
        if self.prev is not None:
            ew = 0.9 * (norm2 / max(self.prev, 1e-300)) ** 2
            safe = 0.9 * self.last**2
            self.last = max(ew, safe) if safe > 0.1 else ew
        self.prev = norm2
        self.last = self._floor(self.last, cn, tol)
        return self.last


# S δ_T = -c_T (c_I = 0: the intermediates are evaluated from the states), S = dg_T/dz_T formed
def _schur_step(block: Block, vals: list, ans: dict, memo: dict, c: np.ndarray, eta: float):
    """The inexact Newton step of an AMG block on its states, ``||S δ_T + c_T|| <= η ||c_T||``, with
    ``S`` formed by the chain rule (:func:`~lagrangeprop.blocks.eliminate.chain_schur`): one ``S``
    per Jacobian serves the hierarchy (built at the first, kept) and every cg product, and ``A_SS``
    is not assembled; ``None`` (the caller assembles ``A_SS``) when ``S`` cannot be formed that way."""
    t, i = _indices(block)
    if np.any(c[i]):
        return None
    lin = Linearization(block, vals, ans, memo)
    lin.jacobians()        # the constant ones go to memo
    S = chain_schur(block, lin)
    if S is None:
        return None
    del lin
    # a loose step takes the symmetry judged at the hierarchy's matrix (a wrong guess only costs
    # the step's check: the hierarchy is then rebuilt and judged again); the adjoint takes it too
    cache = cache_of(block)
    h = cache.amg
    symmetric = h.symmetric if h is not None and h.shape == S.shape and h.key == S.nnz else None
    inv = AMGInverse(S, cache, names=block.names, loose=True, symmetric=symmetric)
    inv.rtol = eta
    delta = np.zeros(block.size)
    delta[t] = inv.solve(-c[t])
    return delta


# A_SS δ = -c_S(z) on the states (the intermediates by forward substitution), z ← z + α δ with α
# halved until ||c/s||₂ decreases (Armijo); stop when max_d |c_d| / s_d <= tol (SPEC §1 "Scale").
def newton(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Newton's method with the sparse ``A_SS`` and backtracking; fills ``vals`` (:func:`_newton`)."""
    with np.errstate(all="ignore"):
        return _newton(block, vals, opts, guess)


def _newton(block: Block, vals: list, opts: SolveOptions, guess: dict) -> BlockState:
    """Newton's method with the sparse ``A_SS`` and backtracking; fills ``vals``.

    On blocks above ``CHORD_MIN`` unknowns a factorization is reused (chord step) while it
    still reduces ``||c||₂`` at least fourfold; at the solution ``state.lu`` is kept only when
    ``A_SS`` did not change since (linear blocks), else the stale LU stays in
    ``state.stale_lu`` (a preconditioner).
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
    rate, polished, moved = 1.0, False, np.inf
    inexact, chain = None, False
    if cache_of(block).use_amg and block.size > DENSE_MAX_UNKNOWNS:
        inexact = _Forcing()
    for it in range(maxiter + 1):
        state.iterations = it
        # SPEC §1 "Scale": every constraint on its own scale (lagrangeprop.blocks.scale)
        scale = constraint_scale(block, vals, z)
        cs = c / scale
        cn = residual_norm(cs)                           # NaN or inf anywhere shows in these maxima
        state.history.append(cn)
        report(block.names, "newton", it, cn, opts.tol)   # lagrangeprop.progress (solve(verbose=))
        if not np.isfinite(cn):    # a non-finite z shows here too: through c_d = z_d - f_d or the scale
            finite_or_fail(block, "newton", state, opts.tol, maxiter, c, z)
        done = cn <= opts.tol                            # max_d |c_d| / s_d <= tol
        if not done and np.isfinite(cn) and (cn <= NOISE_NEAR * opts.tol or it and rate > 0.5):
            # near tol, or stalled: what is left may be the rounding of evaluating c (scale.py)
            done = _within_rounding(block, vals, c, scale, opts.tol, state)
        # small blocks take one more (cheap, quadratically convergent) step once within tol:
        # the multipliers then do not carry the forward tolerance
        # and any block takes another while its last step was large (iteration.settled: a loose scale)
        if done and it < maxiter and cn > 1e-14 and (not polished and block.size <= CHORD_MIN
                                                     or not settled(moved, opts.tol)):
            polished = True
        elif done and chain:      # no A_SS: the adjoint works from the partials (eliminate.ChainPartition)
            state.lin = Linearization(block, vals, ans, memo)
            remember(block, state.lin)
            state.ans = ans
            return state
        elif done:
            state.lin, A = _jacobian(block, vals, ans, memo, lu_A)
            state.ans, state.A = ans, A
            if _same(A, lu_A):
                state.lu = lu
            elif lu is not None and inexact is None:    # an AMG block's adjoint never uses a stale one
                state.stale_lu = lu
            return state
        if it == maxiter:
            break
        norm2 = float(np.linalg.norm(cs))
        # chord step with the old LU: large blocks while it contracts fast, and the polishing step
        # of small ones (already within tol, so the old Jacobian is accurate enough)
        if (lu is not None and inexact is None
                and (rate <= 0.25 and block.size > CHORD_MIN or polished and done)):
            z_try, c_try, ans_try = _move(block, vals, z + lu.solve(-c), True)
            new = float(np.linalg.norm(c_try / scale))
            if np.isfinite(new) and new <= 0.25 * norm2:
                moved = step_size(z_try, z)
                rate, z, c, ans = new / norm2, z_try, c_try, ans_try
                continue
            scatter(block, vals, z)
        lu = None            # free the old factors before making new ones (peak memory)
        if inexact is not None and not cache_of(block).use_petsc:
            delta = _schur_step(block, vals, ans, memo, c, inexact.newton(norm2, cn, opts.tol))
            if delta is not None:
                chain, z_old = True, z
                z, c, ans, _ = _line_search(block, vals, z, delta, norm2, scale, elim=True)
                moved = step_size(z, z_old)
                rate = float(np.linalg.norm(c / scale)) / max(norm2, 1e-300)
                continue
        _, lu_A = _jacobian(block, vals, ans, memo, lu_A)
        lu, fill = reduced_factor(block, lu_A, f"at Newton iteration {it}")
        cache = cache_of(block)
        cache.fill = max(fill, cache.fill)
        if inexact is not None and isinstance(inner_solver(lu), AMGInverse):
            inner_solver(lu).rtol = inexact.newton(norm2, cn, opts.tol)
        z_old = z
        z, c, ans, _ = _line_search(block, vals, z, lu.solve(-c), norm2, scale, elim=True)
        moved = step_size(z, z_old)
        rate = float(np.linalg.norm(c / scale)) / max(norm2, 1e-300)
    raise fail(block, "newton", state, opts.tol, maxiter)


# (A_SS / s) δ = -c_S / s by gmres on JVP products, to the forcing tolerance η = min(0.1, max|c/s|).
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
    n, moved = block.size, np.inf
    for it in range(maxiter + 1):
        state.iterations = it
        scale = constraint_scale(block, vals, z)      # SPEC §1 "Scale"
        state.history.append(scaled_max(c, scale))
        report(block.names, "newton-krylov", it, state.history[-1], opts.tol)
        finite_or_fail(block, "newton-krylov", state, opts.tol, maxiter, c, z)
        done = state.history[-1] <= opts.tol or _within_rounding(block, vals, c, scale, opts.tol, state)
        # within tol and the last step small (iteration.settled; an exact zero needs no step)
        if done and (settled(moved, opts.tol) or state.history[-1] <= 1e-14 or it == maxiter):
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
        elif has_jac(block) and n <= DENSE_MAX_UNKNOWNS:
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
            raise fail(block, "newton-krylov", state, opts.tol, maxiter, "gmres broke down")
        z_old = z
        z, c, ans = _krylov_search(block, vals, z, delta, float(np.linalg.norm(c / scale)), scale)
        moved = step_size(z, z_old)
    raise fail(block, "newton-krylov", state, opts.tol, maxiter)
