"""Cross-check the Lagrange multipliers against tape autodiff and finite differences.

:func:`check` solves a program, then recomputes ``∇_x <seed, z_o>`` three independent ways:

* **autograd (tape)** — the graph re-evaluated with HIPS autograd's own derivative rules
  (:mod:`lagrangeprop.crosscheck.tape`); cyclic blocks are unrolled Newton iterations on the tape;
* **torch (tape)** — the same with PyTorch, when it is installed;
* **finite differences** — central differences of the forward pass, per element for small
  inputs and along random directions otherwise (cost independent of the input size;
  :mod:`lagrangeprop.crosscheck.finite_differences`).

The tapes also give every defined node's multiplier ``λ_d = ∂z_o/∂ε_d`` (the sensitivity
to relaxing ``c_d = ε_d``), so the whole multiplier vector is compared, not only ``λ_x``;
each node on its own rounding scale (:mod:`lagrangeprop.crosscheck.rounding`). The verdict
and its table are a :class:`~lagrangeprop.crosscheck.report.CheckReport`.

Examples
--------
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x) * lp.sin(x), x=0.5)
>>> report = lp.check(prog, x=0.5)
>>> report.ok
True
>>> [r["input"] for r in report.rows]
['x']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..compile.cache import compiled
from ..errors import LagrangePropError
from ..graph.builder import ProgramBuilder
from ..graph.coerce import merge_inputs
from ..graph.trace import record
from ..options import check_options
from ..solve.program import solve_program
from .compare import compare, node_multipliers
from .finite_differences import (FD_DIFFERENCES, H_REL, SMALL_ENTRY, Objective, central, dot,
                                 fd_plan, fd_row, unit)
from .progress import Progress
from .references import FD_NAME, TAPE_NAMES, convergence, run_tapes
from .report import CheckReport
from .rounding import EPS, FLOOR, magnitudes

if TYPE_CHECKING:
    from ..compile.schedule import Schedule

__all__ = ["check", "CheckReport"]


# SPEC §1: λ_x = ∂L/∂x = ∇_x <seed, z_o>, and λ_d = ∂<seed, z_o>/∂ε_d for c_d = ε_d; each is
# recomputed by the tapes (their own rules) and λ_x by central differences of the forward pass.
def check(prog, inputs: dict | None = None, *, against=("autograd", "torch", "fd"), rtol: float = 1e-8,
          fd_rtol: float = 1e-5, atol: float | None = None, seed=None, guess=None, tol=None,
          maxiter=None, method=None, linear_solver=None, rng=0, fd_max_elements: int = 12,
          fd_budget: int = FD_DIFFERENCES, verbose: bool | int = 0, callback=None,
          **kw_inputs) -> CheckReport:
    """Check the multipliers of ``prog`` against tape autodiff and finite differences.

    Parameters
    ----------
    prog : Program or callable
        A program, or a function to trace with the given inputs.
    inputs : dict, optional
        Inputs by name (use this for inputs whose names clash with the options below);
        keyword inputs are merged in.
    against : sequence of {"autograd", "torch", "fd"}
        References to use. A missing PyTorch is reported as "not installed" and skipped.
    rtol : float
        Relative tolerance against the tapes (max-norm per input and per node, relative to
        that input's or node's own values, never to the program's largest).
    fd_rtol : float
        Relative tolerance against central differences (their rounding noise is added).
    atol : float, optional
        Absolute tolerance added to every comparison. By default there is none beyond each
        node's own rounding floor ``64·eps·ν_d``, ``ν_d·eps`` a bound on the round-off of
        ``λ_d`` from the magnitude of the terms whose sum it is (:func:`~lagrangeprop.crosscheck.rounding.magnitudes`).
    seed : array_like, optional
        Output cotangent; a non-scalar output without one gets a random N(0, 1) seed.
    guess, tol, maxiter, method, linear_solver
        Passed to ``prog.solve``.
    rng : int or numpy.random.Generator
        Randomness of the seed and of the finite-difference directions (default 0).
    fd_max_elements : int
        Inputs with at most this many entries get per-element central differences.
    fd_budget : int
        At most this many central differences (two forward passes each), whatever the
        number of inputs and nodes: one along a random direction over all inputs, then one
        per input (a random direction, or per element for small inputs while the budget
        lasts); inputs beyond it are checked by finite differences jointly only, and the
        report says so.
    verbose : bool or int
        Show progress: a tqdm bar when tqdm is installed, else a line on stderr per stage
        and per chunk of central differences (``2``: per difference). Default silent.
    callback : callable, optional
        Called with a :class:`~lagrangeprop.crosscheck.progress.Stage` (``stage``,
        ``detail``, ``done``, ``total``, ``elapsed``) after each stage: compiling, the
        solve, each tape replay, each central difference, and ``"done"`` at the end.

    Returns
    -------
    CheckReport

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    >>> _ = prog.residual(w, w**3 + w - x); _ = prog.output(w * w, name="o")
    >>> report = lp.check(prog, x=2.0, against=("autograd", "fd"))
    >>> report.ok, report.rows[0]["input"]
    (True, 'x')
    """
    against = check_options(inputs=inputs, against=against, rtol=rtol, fd_rtol=fd_rtol, atol=atol,
                            rng=rng, fd_max_elements=fd_max_elements)
    progress = Progress(verbose, callback)
    try:
        report = _check(progress, prog, merge_inputs(inputs, kw_inputs), against, rtol, fd_rtol, atol, seed,
                        guess, dict(tol=tol, maxiter=maxiter, method=method, linear_solver=linear_solver),
                        rng, fd_max_elements, fd_budget)
    except BaseException:
        progress.close(finished=False)
        raise
    progress.close()
    return report


def _check(progress: Progress, prog: Any, inputs: dict, against: tuple, rtol: float, fd_rtol: float,
           atol: float | None, seed: Any, guess: Any, opts: dict, rng: Any, fd_max_elements: int,
           fd_budget: int) -> CheckReport:
    """The work of :func:`check`, each stage reported to ``progress``."""
    progress.expect(2 + sum(b in against for b in TAPE_NAMES))
    prog = _program(prog, inputs)
    rng = np.random.default_rng(rng)
    sched = compiled(prog)
    if "fd" in against:     # the differences counted up front (shapes only), so the total holds
        shaped = {k: np.broadcast_to(0.0, sched.shapes[sched.index[k]]) for k in sched.input_names}
        plan = fd_plan(shaped, fd_max_elements, fd_budget)
        progress.expect(1 + sum(shaped[k].size if m == "elementwise" else m is not None for k, m in plan.items()))
    progress.step("compile", f"{prog.name}: {len(sched.names)} nodes, {len(sched.blocks)} cyclic blocks")
    seed, seed_note = _seed(sched, seed, rng)
    sol = solve_program(prog, inputs, guess=guess, seed=seed, **opts)
    progress.step("solve", "forward pass and multipliers")
    seed = np.asarray(sol.seed, dtype=np.float64)
    xin = {k: np.asarray(sol.values[k], dtype=np.float64) for k in sched.input_names}
    lam = {k: np.asarray(v, dtype=np.float64) for k, v in sol.multipliers.items()}
    extra = 0.0 if atol is None else float(atol)
    with np.errstate(over="ignore", invalid="ignore"):
        floor, dir_floor, roundoff = _floors(sched, sol.values, lam, seed, extra)
    if not (np.isfinite(roundoff) and np.isfinite(dir_floor)):
        notes_overflow = ["the rounding bounds at this point overflow float64 (values times multipliers "
                          "beyond 1e308): every comparison is made without a rounding floor, and finite "
                          "differences cannot resolve the derivative here; check at a point of smaller "
                          "magnitude"]
    else:
        notes_overflow = []

    # the references: the tapes, then central differences of the forward pass
    plan = fd_plan(xin, fd_max_elements, fd_budget)
    tapes, references, notes = run_tapes(sched, against, xin, seed, guess, progress.step)
    notes.extend(notes_overflow)
    F = None
    if "fd" in against:
        F = Objective(prog, sched, seed, {n: sol.values[n] for b in sched.blocks for n in b.names}, opts)
        F.roundoff = roundoff
        F.on_difference = lambda v: progress.step("finite differences", _along(v, len(xin)))
        _describe_fd(references, notes, plan, fd_max_elements, fd_budget)

    # the comparisons: per input, along one direction, per node, the output value
    rows = [_input_row(k, xin, lam[k], tapes, F, plan[k], rng, rtol, fd_rtol, floor[k])
            for k in sched.input_names]
    direction = _direction(F, xin, lam, tapes, rng, rtol, fd_rtol, dir_floor) if (F or tapes) else None
    multipliers, summary = node_multipliers(lam, tapes, rtol, floor)
    value = _value(tapes, float(np.sum(seed * np.asarray(sol.output))), rtol, 16 * roundoff + extra)
    blocks = convergence(sched, tapes, xin, seed, guess, lam, progress) if sched.blocks else []
    if F is not None and not tapes:
        user = [s.prim.name for s in sched.step_of.values() if s.prim.user]
        if user:
            notes.append(f"user primitive(s) {sorted(set(user))} have no tape equivalent: finite "
                         "differences alone check this program")

    report = CheckReport(program=prog.name, output=sched.names[sched.output],
                         output_shape=sched.shapes[sched.output], seed_note=seed_note,
                         inputs=xin, references=references, rtol=rtol, fd_rtol=fd_rtol, atol=atol,
                         rows=rows, direction=direction, multipliers=multipliers,
                         multiplier_summary=summary, convergence=blocks, value=value,
                         notes=notes, evaluations=0 if F is None else F.evaluations, ok=False)
    compared = any(r["compare"] for r in rows) or bool(direction and direction["compare"])
    if not compared:
        notes.append("no reference could run, so nothing was checked: ok is False")
    report.ok = compared and not report.failures
    return report


# ------------------------------------------------------------------ the steps of check
def _along(direction: dict, n_inputs: int) -> str:
    """What a central difference moved: an input (and the entry, per element), or all of them."""
    if len(direction) == n_inputs > 1:
        return "along a random direction over all inputs"
    (k, v), = direction.items()
    nz = np.flatnonzero(np.asarray(v))
    return f"{k}[{', '.join(map(str, np.unravel_index(nz[0], np.shape(v))))}]" if nz.size == 1 and np.ndim(v) else k


def _program(prog: Any, inputs: dict) -> Any:
    """``prog`` itself, or the program traced from a function at ``inputs``."""
    if isinstance(prog, ProgramBuilder):
        return prog
    if not callable(prog):
        raise LagrangePropError(f"check() needs a Program or a function, got {type(prog).__name__}")
    return record(prog, (), inputs)


def _seed(sched: Schedule, seed: Any, rng: np.random.Generator) -> tuple[Any, str | None]:
    """The output cotangent (random N(0, 1) for a non-scalar output without one) and a note."""
    name, shape = sched.names[sched.output], sched.shapes[sched.output]
    if shape == ():
        return seed, None
    if seed is None:
        return rng.standard_normal(shape), (
            f"output {name!r} has shape {shape}: checking <seed, {name}> with a random "
            "N(0, 1) seed (cotangent); pass seed= to choose it")
    return seed, f"output {name!r} has shape {shape}: checking <seed, {name}> with the given seed"


def _floors(sched: Schedule, values: dict, lam: dict, seed: np.ndarray,
            extra: float) -> tuple[dict, float, float]:
    """``(floor per node, floor of the direction check, roundoff of <seed, z_o>)``.

    Per node its own rounding floor ``FLOOR·ν_d`` (plus the caller's atol), never the
    program's largest λ. The output's rounding: ``δz_d ≈ eps·|z_d|`` reaches it as
    ``λ_d·δz_d``, ``|.| ≤ μ_d·δz_d``, so ``roundoff = eps·Σ_d μ_d·|z_d|``."""
    mu, nu = magnitudes(sched, values, lam, seed, np.random.default_rng(0))
    floor = {k: FLOOR * float(np.max(m, initial=0.0)) + extra for k, m in nu.items()}
    direction = extra + FLOOR * float(np.sqrt(sum(float(np.sum(nu[k] ** 2)) for k in sched.input_names)))
    roundoff = EPS * sum(float(np.sum(mu[sched.names[n]] * np.abs(np.asarray(values[sched.names[n]],
                                                                             dtype=np.float64))))
                         for n in sched.defined if sched.names[n] in mu)
    return floor, direction, roundoff


def _describe_fd(references: dict, notes: list, plan: dict, max_elements: int, budget: int) -> None:
    """The finite-difference reference's line, and a note on inputs differenced jointly only."""
    references[FD_NAME] = (f"central, h = {H_REL:.1e}·max(1, |x|) (entries of magnitude below {SMALL_ENTRY:g} also "
                           f"h = {H_REL:.1e}·|x|, the better by Richardson's estimate); per element for inputs of "
                           f"<= {max_elements} entries, else along a random direction")
    joint = [k for k, m in plan.items() if m is None]
    if joint:
        notes.append(f"finite differences: at most {budget} central differences; input(s) "
                     f"{joint[:8]}{' ...' if len(joint) > 8 else ''} ({len(joint)} of {len(plan)}) are "
                     "differenced jointly only, along the random direction over all inputs")


def _input_row(k: str, xin: dict, lam_k: np.ndarray, tapes: dict, F: Objective | None, mode: str | None,
               rng: np.random.Generator, rtol: float, fd_rtol: float, floor: float) -> dict:
    """One input's row: ``λ_x`` against each tape and, as planned, finite differences."""
    row = {"input": k, "shape": tuple(xin[k].shape), "lagrangian": lam_k, "autograd": None,
           "torch": None, "fd": None, "fd_mode": None, "compare": {}}
    for backend, res in tapes.items():
        row[backend] = res.grad[k]
        row["compare"][TAPE_NAMES[backend]] = compare(lam_k, res.grad[k], rtol, floor)
    if F is not None and mode is not None:
        row.update(fd_row(F, xin, k, lam_k, rng, fd_rtol, floor, mode))
        row["compare"][FD_NAME] = row.pop("_cmp")
    elif F is not None:
        row["fd_mode"] = "joint"
    row["abs_error"] = {r: c["abs"] for r, c in row["compare"].items()}
    row["rel_error"] = {r: c["rel"] for r, c in row["compare"].items()}
    row["ok"] = all(c["ok"] for c in row["compare"].values())
    return row


def _direction(F: Objective | None, xin: dict, lam: dict, tapes: dict, rng: np.random.Generator,
               rtol: float, fd_rtol: float, atol: float) -> dict:
    """autograd's check_grads view: <∇, v> from each source along one random v."""
    v = unit(rng, {k: x.shape for k, x in xin.items()})
    fd = None
    if F is not None:
        try:
            fd, noise, v = central(F, xin, v)    # v may come back scaled entrywise by |x|
        except LagrangePropError:
            fd, noise = np.nan, 0.0
    out = {"lagrangian": dot(lam, v), "compare": {}}
    for backend, res in tapes.items():
        out[backend] = dot(res.grad, v)
        out["compare"][TAPE_NAMES[backend]] = compare(out["lagrangian"], out[backend], rtol, atol)
    if F is not None:
        out["fd"] = fd
        out["compare"][FD_NAME] = compare(out["lagrangian"], fd, fd_rtol, atol + noise)
    return out


def _value(tapes: dict, value: float, rtol: float, floor: float) -> dict | None:
    """The output ``<seed, z_o>`` against the first tape's.

    Judged on the scale of the terms that produced it (``16·roundoff``, the FD noise bound),
    not on its own size: ``a - a`` is 1e-16 on one side, -4e-16 on the other."""
    if not tapes:
        return None
    res = next(iter(tapes.values()))
    cmp = compare(value, res.value, max(rtol, 1e-8), floor)
    cmp.update(lagrangian=value, tape=res.value, reference=TAPE_NAMES[res.backend], floor=floor)
    return cmp
