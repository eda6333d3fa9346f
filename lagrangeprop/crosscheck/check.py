"""Cross-check the Lagrange multipliers against tape autodiff and finite differences.

:func:`check` solves a program, then recomputes ``∇_x <seed, z_o>`` three independent ways:

* **autograd (tape)** — the graph re-evaluated with HIPS autograd's own derivative rules
  (:mod:`lagrangeprop.crosscheck.tape`); cyclic blocks are unrolled Newton iterations on the tape;
* **torch (tape)** — the same with PyTorch, when it is installed;
* **finite differences** — central differences of the forward pass, per element for small
  inputs and along random directions otherwise (cost independent of the input size).

The tapes also give every defined node's multiplier ``λ_d = ∂z_o/∂ε_d`` (the sensitivity
to relaxing ``c_d = ε_d``), so the whole multiplier vector is compared, not only ``λ_x``.

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

from typing import Any

import numpy as np

from ..compile.cache import compiled
from ..graph.builder import ProgramBuilder
from ..graph.coerce import merge_inputs
from ..graph.trace import record
from ..solve.lagrangian import evaluate_program, solve_program
from ..errors import ConvergenceError, LagrangePropError
from .tape import NoTapeEquivalent, gc_paused, tape_gradients

__all__ = ["check", "CheckReport"]

TAPE_NAMES = {"autograd": "autograd (tape)", "torch": "torch (tape)"}
FD_NAME = "finite differences"
EPS = np.finfo(np.float64).eps
SMALL_ENTRY = 0.01                 # entries this small are also differenced on their own scale
H_REL = float(np.cbrt(EPS))        # central-difference step relative to max(1, |x|)
FLOOR = 64 * EPS                   # rounding floor of a multiplier: FLOOR · ν_d (see _magnitudes)
FD_DIFFERENCES = 24                # central differences (2 forward passes each) per check, at most


# ------------------------------------------------------------------ comparisons
def _compare(a: Any, b: Any, rtol: float, atol: float) -> dict:
    """Norm-wise (max-norm) comparison of one input's derivatives, as check_totals does."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    err = float(np.max(np.abs(a - b), initial=0.0)) if a.size else 0.0
    if not np.isfinite(err):
        err = np.inf
    rel = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
    return {"abs": err, "rel": rel, "ok": bool(err <= atol + rtol * scale)}


def _fmt(v: Any, width: int = 10) -> str:
    if v is None:
        return "-"
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 0:
        return f"{float(v):.{width}g}"
    if v.size <= 3:
        return "[" + ", ".join(f"{float(t):.6g}" for t in v.ravel()) + "]"
    return f"|{v.shape}|={float(np.linalg.norm(v)):.6g}"


# ------------------------------------------------------------ the rounding scale
# The partial of tanh is 1 - t² here and 1/cosh²x on autograd's tape: 0 against 1e-20 where
# t rounds to 1, both right to round-off of terms of size 1 + t². Such a partial injects the
# error eps·(its formula's terms)·μ_d, not eps·|partial|·μ_d.
_TERMS = {"tanh": lambda ans: 1.0 + np.square(ans), "sigmoid": lambda ans: np.abs(ans) * (1.0 + np.abs(ans))}


# Two back-substitutions with every term taken positive (w_d = 1 and N(0, 1) weights, so
# that a sum of terms that cancels for w = 1, like the rows of softmax's VJP, shows):
#   μ_u = [u = o]·|seed| + Σ_d |(∂f_d/∂z_u)ᵀ (w_d ⊙ μ_d)|           the size of λ_u's terms
#   ν_u = [u = o]·|seed| + Σ_d |(∂f_d/∂z_u)ᵀ (w_d ⊙ ν_d)| + T_du(μ_d)  their round-off / eps
# T_du = the rounding a product with the partial injects (|.| of the same VJP of μ_d, or
# _TERMS). For a chain μ_u = |λ_u| and ν_u ≈ depth·|λ_u|; a cancelling λ_u (sum(softmax)) keeps
# the size of its terms. Node d passes the tape comparison within FLOOR·ν_d of its own scale.
@gc_paused
def _magnitudes(sched, values: dict, lam: dict, seed: np.ndarray,
                rng: np.random.Generator) -> tuple[dict, dict]:
    """``(μ, ν)`` for every input and defined node (name -> array of its shape), one pass.

    A cyclic block is solved as one linear system, so its members get the block's own scale
    ``max_S |λ|`` on top of what reaches them from outside."""
    from ..compile.schedule import Step

    vals: list = [None] * len(sched.names)
    for i, v in sched.constants:
        vals[i] = v
    for i, name in enumerate(sched.names):
        if vals[i] is None and name in values:
            vals[i] = np.asarray(values[name], dtype=np.float64)
    mu: list = [None] * len(sched.names)
    nu: list = [None] * len(sched.names)
    mu[sched.output] = np.broadcast_to(np.abs(seed), sched.shapes[sched.output]).astype(np.float64)
    nu[sched.output] = mu[sched.output]

    def add(acc: list, u: int, ct) -> None:
        acc[u] = ct if acc[u] is None else acc[u] + ct

    def size(step, pos, g, ans, args):
        """max(|VJP(g)|, |VJP(w ⊙ g)|), or None for a zero partial."""
        ct = step.prim.vjp(pos, g, ans, args, step.params)
        if ct is None or g.size <= 1:
            return None if ct is None else np.abs(ct)
        return np.maximum(np.abs(ct), np.abs(step.prim.vjp(pos, g * rng.standard_normal(g.shape), ans, args,
                                                             step.params)))

    def push(step, skip=()) -> None:
        m, n = mu[step.node], nu[step.node]
        args = [vals[a] for a in step.args]
        ans = step.prim.value(args, step.params) if step.residual else vals[step.node]
        terms = _TERMS.get(step.prim.name)
        for pos, u in step.diff:
            if u in skip:
                continue
            if m.size == 1:       # VJPs are linear in g: one call with g = 1 serves μ and ν
                unit = size(step, pos, np.ones(m.shape), ans, args)
                if unit is None:
                    continue
                cm, cn = unit * m.reshape(()), unit * n.reshape(())
            else:
                cm = size(step, pos, m, ans, args)
                if cm is None:
                    continue
                cn = size(step, pos, n, ans, args) if n is not m else cm
            inject = m * terms(ans) if terms is not None and np.shape(args[pos]) == np.shape(ans) else cm
            add(mu, u, cm)
            add(nu, u, cn + inject)

    for item in reversed(sched.steps):
        if type(item) is Step:
            if mu[item.node] is not None and item.prim.differentiable:
                push(item)
            continue
        scale = max(float(np.max(np.abs(lam[sched.names[n]]), initial=0.0)) for n in item.nodes)
        for st in item.steps:
            k = st.node
            mu[k] = scale + (0.0 if mu[k] is None else mu[k]) + np.zeros(sched.shapes[k])
            nu[k] = mu[k] + (0.0 if nu[k] is None else nu[k])
        members = set(item.nodes)
        for st in item.steps:
            if st.prim.differentiable:
                push(st, members)

    def named(acc: list) -> dict:
        out = {}
        for i in [*sched.inputs, *sched.defined]:
            a, shape = acc[i], sched.shapes[i]
            out[sched.names[i]] = (np.zeros(shape) if a is None else np.asarray(a, dtype=np.float64)
                                   if np.shape(a) == shape else np.broadcast_to(a, shape).astype(np.float64))
        return out
    return named(mu), named(nu)


# ---------------------------------------------------------------- finite differences
class _Objective:
    """``F(x) = <seed, z_o(x)>`` through lagrangeprop's forward pass only."""

    def __init__(self, prog, sched, seed, guess: dict, options: dict):
        self.prog, self.seed, self.options = prog, seed, options
        self.guess = dict(guess)
        self.tol = None
        if sched.blocks:
            # warm start at the solution; solve tighter than the check's step resolves
            self.tol = min(1e-13, options.get("tol") or 1e-13)
        self.evaluations = 0
        self.roundoff = 0.0      # eps·Σ_d |λ_d|·|z_d| at the checked point (set by check)

    def __call__(self, inputs: dict) -> float:
        self.evaluations += 1
        opts = {k: v for k, v in self.options.items() if v is not None and k != "tol"}
        try:
            out = evaluate_program(self.prog, inputs, guess=self.guess or None,
                                   tol=self.tol or self.options.get("tol"), **opts)
        except ConvergenceError:
            if self.tol is None:
                raise
            out = evaluate_program(self.prog, inputs, guess=self.guess or None, tol=self.options.get("tol"), **opts)
        return float(np.sum(self.seed * np.asarray(out, dtype=np.float64)))

    def noise(self, values: list[float], h: float) -> float:
        """Rounding (and block-solve) error of a central difference with step ``h``.

        The rounding error of ``F`` itself is bounded through the multipliers: an error
        ``δ_d ≈ eps·|z_d|`` made at node ``d`` reaches the output as ``λ_d·δ_d`` (the relaxed
        constraint ``c_d = ε_d``, SPEC §1), so ``|δF| ≲ eps·Σ_d |λ_d|·|z_d|`` (``roundoff``) —
        which is what cancellation leaves when the output itself is tiny (``a - a``)."""
        mag = max(1e-300, *map(abs, values))
        floor = 16 * (EPS * mag + self.roundoff)
        if self.tol is not None:
            floor += self.tol * max(1.0, mag)
        return floor / h


def _difference(F: _Objective, inputs: dict, direction: dict, h: float) -> tuple[float, float]:
    """``(F(x + h v) - F(x - h v)) / 2h`` and its noise estimate."""
    vals = []
    for sgn in (1.0, -1.0):
        moved = dict(inputs)
        for k, v in direction.items():
            moved[k] = np.asarray(inputs[k], dtype=np.float64) + sgn * h * v
        vals.append(F(moved))
    return (vals[0] - vals[1]) / (2 * h), F.noise(vals, h)


def _central(F: _Objective, inputs: dict, direction: dict) -> tuple[float, float, dict]:
    """A central difference of ``F`` along ``direction``: ``(value, noise estimate, direction used)``.

    The step is ``h = cbrt(eps)·max(1, |x|)``. An input with entries of magnitude below ``SMALL_ENTRY`` = 0.01 (a
    saturation current ``Is = 1e-15``, a rate ``1e-6``) is also differenced on its own scale: along
    ``u = |x| ∘ v`` with ``h = cbrt(eps)`` (each entry moved relative to itself; an absolute step
    of 6e-6 would leave the domain of ``log(Is)``). When both candidates exist, each is taken at
    ``h`` and ``h/2`` and the one whose two values agree best (Richardson's error estimate ``|D_h -
    D_h/2|`` plus the rounding noise) is returned, extrapolated ``(4 D_h/2 - D_h)/3``; the caller
    compares it with the Lagrangian along the direction used.
    """
    scale = max([1.0] + [float(np.max(np.abs(inputs[k]), initial=0.0)) for k in direction])
    cands = [(direction, H_REL * scale)]
    small = any(np.any((np.abs(inputs[k]) < SMALL_ENTRY) & (np.abs(inputs[k]) > 0) & (np.asarray(v) != 0))
                for k, v in direction.items())
    if not small:
        d, noise = _difference(F, inputs, direction, H_REL * scale)
        return d, noise, direction
    rel = {k: v * np.where(np.asarray(inputs[k]) != 0, np.abs(inputs[k]), 1.0) for k, v in direction.items()}
    cands.append((rel, H_REL))
    best, error = None, None
    for u, h in cands:
        try:
            d1, _ = _difference(F, inputs, u, h)
            d2, n2 = _difference(F, inputs, u, h / 2)
        except LagrangePropError as exc:
            error = exc
            continue
        est = abs(d1 - d2) + n2
        if np.isfinite(est) and (best is None or est < best[0]):
            best = (est, (4 * d2 - d1) / 3, 5 * n2 / 3, u)
    if best is None:
        raise error if error is not None else FloatingPointError("no finite central difference")
    return best[1], best[2], best[3]


def _fd_elements(F: _Objective, inputs: dict, name: str) -> tuple[np.ndarray, float]:
    """Per-element central differences of one input."""
    x = np.asarray(inputs[name], dtype=np.float64)
    out, noise = np.zeros(x.shape), 0.0
    for k in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[k] = 1.0
        d, n, u = _central(F, {**inputs, name: x}, {name: e})
        out[k], noise = d / float(u[name][k]), max(noise, n / abs(float(u[name][k])))
    return out, noise


def _unit(rng: np.random.Generator, shapes: dict) -> dict:
    v = {k: rng.standard_normal(s) for k, s in shapes.items()}
    norm = np.sqrt(sum(float(np.sum(t * t)) for t in v.values())) or 1.0
    return {k: t / norm for k, t in v.items()}


def _dot(g: dict, v: dict) -> float:
    return float(sum(np.sum(np.asarray(g[k]) * v[k]) for k in v))


# ------------------------------------------------------------------------ the report
class CheckReport:
    """The result of :func:`check`: per-input rows, the direction check, the multipliers.

    Attributes
    ----------
    ok : bool
        True iff every reference that ran agrees: tapes to ``rtol`` (inputs and every
        multiplier), finite differences to ``fd_rtol`` (plus their rounding noise).
    rows : list of dict
        One per input: ``input, shape, lagrangian, autograd, torch, fd, fd_mode,
        abs_error, rel_error, ok`` (errors keyed by reference).
    references : dict
        Reference name -> what was used, or why it was skipped.
    """

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    # -- verdicts
    @property
    def failures(self) -> list[str]:
        """One line per failed comparison, naming the input or node."""
        out = []
        for r in self.rows:
            for ref, cmp in r["compare"].items():
                if not cmp["ok"]:
                    out.append(f"input {r['input']!r}: {ref} differs (abs error {cmp['abs']:.2e}, "
                               f"rel error {cmp['rel']:.2e})")
        if self.direction:
            for ref, cmp in self.direction["compare"].items():
                if not cmp["ok"]:
                    out.append(f"random direction over all inputs: {ref} differs "
                               f"(rel error {cmp['rel']:.2e})")
        for ref, m in self.multiplier_summary.items():
            for node in m["failed"]:
                c = self.multipliers[node][ref]
                out.append(f"multiplier of node {node!r}: {ref} differs (rel error {c['rel']:.2e})")
        if self.value and not self.value["ok"]:
            out.append(f"output value differs from the tape (rel error {self.value['rel']:.2e})")
        return out

    def to_dict(self) -> dict:
        """A JSON-friendly dict of everything in the report."""
        def clean(o: Any) -> Any:
            if isinstance(o, dict):
                return {str(k): clean(v) for k, v in o.items()}
            if isinstance(o, (list, tuple)):
                return [clean(v) for v in o]
            if isinstance(o, np.ndarray):
                return o.tolist()
            if isinstance(o, (np.floating, np.bool_, np.integer)):
                return o.item()
            return o
        keys = ("ok", "program", "output", "seed_note", "references", "rtol", "fd_rtol", "atol",
                "rows", "direction", "multipliers", "multiplier_summary", "convergence", "value", "notes")
        return clean({k: getattr(self, k) for k in keys} | {"failures": self.failures})

    def __repr__(self) -> str:
        return f"CheckReport(program={self.program!r}, ok={self.ok}, references={list(self.references)})"

    def __str__(self) -> str:
        return _format(self)


# ------------------------------------------------------------------------ the table
def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _format(r: CheckReport) -> str:
    """check_totals-style table: input, reference, lagrangian, reference value, errors, ok."""
    shape = "scalar" if r.output_shape == () else f"shape {r.output_shape}"
    inputs = ", ".join(f"{k}={_fmt(v, 6)}" for k, v in r.inputs.items())
    lines = [f"lp.check: program {r.program!r}, output {r.output!r} ({shape}), at {inputs}"]
    if r.seed_note:
        lines.append(r.seed_note)
    lines.append("references:")
    width = max(len(k) for k in r.references) if r.references else 0
    lines += [f"  {k.ljust(width)}  {v}" for k, v in r.references.items()]
    lines += [f"  note: {n}" for n in r.notes]
    table = [("input", "reference", "lagrangian", "reference value", "abs error", "rel error", "ok")]
    for row in r.rows:
        for ref, c in row["compare"].items():
            key = {"autograd (tape)": "autograd", "torch (tape)": "torch"}.get(ref, "fd")
            label, lag = ref, row["lagrangian"]
            if key == "fd" and row["fd_mode"] == "direction":
                label, lag = ref + " <.,v>", c["lagrangian"]
            elif key == "fd" and row["fd_mode"] not in ("elementwise",):
                label = f"{ref} ({row['fd_mode']})"
            table.append((row["input"], label, _fmt(lag), _fmt(row[key]), f"{c['abs']:.1e}",
                          f"{c['rel']:.1e}", "ok" if c["ok"] else "FAIL"))
    if len(table) > 1:
        lines += [""] + _table(table)
    if r.direction:
        d = r.direction
        parts = [f"lagrangian: {d['lagrangian']:.12g}"]
        parts += [f"{b} tape: {d[b]:.12g}" for b in ("autograd", "torch") if b in d]
        if "fd" in d:
            parts.append(f"finite difference: {d['fd']:.12g}")
        bad = [k for k, c in d["compare"].items() if not c["ok"]]
        lines += ["", "random direction v over all inputs (|v| = 1), <gradient, v>:",
                  "  " + "  ".join(parts) + ("  FAIL: " + ", ".join(bad) if bad else "  ok")]
    if r.multiplier_summary or r.value:
        lines.append("")
    for ref, m in r.multiplier_summary.items():
        status = "ok" if not m["failed"] else f"FAIL at {m['failed'][:6]}"
        worst = (f" (closest to its tolerance: node {m['worst']!r}, rel error {m['worst_rel']:.1e})"
                 if m["worst"] is not None else "")
        lines.append(f"multipliers of {m['nodes']} defined nodes vs {ref}, each on its own scale: "
                     f"max rel error {m['max_rel']:.1e}{worst}  {status}")
    if r.value:
        lines.append(f"output <seed, z_o>: lagrangian {r.value['lagrangian']:.12g}, {r.value['reference']} "
                     f"{r.value['tape']:.12g}  {'ok' if r.value['ok'] else 'FAIL'}")
    if r.convergence:
        lines += ["", f"unrolled block iteration on the {r.convergence[0]['backend']} vs the multipliers:"]
        lines += ["  " + s for s in _table([("Newton iterations", "max rel error of the gradient")]
                                           + [(str(c["iterations"]), f"{c['rel_error']:.1e}")
                                              for c in r.convergence])]
    lines.append("")
    used = [k for k, v in r.references.items() if not v.startswith(("not installed", "skipped", "failed"))]
    if r.ok:
        lines.append(f"OK: the multipliers agree with {', '.join(used) or 'nothing (no reference ran)'} "
                     f"(tapes rtol {r.rtol:g}, finite differences rtol {r.fd_rtol:g})")
    else:
        lines.append("FAILED:")
        lines += [f"  {f}" for f in r.failures]
    return "\n".join(lines)


# ------------------------------------------------------------------------- check
def check(prog, inputs: dict | None = None, *, against=("autograd", "torch", "fd"), rtol: float = 1e-8,
          fd_rtol: float = 1e-5, atol: float | None = None, seed=None, guess=None, tol=None,
          maxiter=None, method=None, linear_solver=None, rng=0, fd_max_elements: int = 12,
          fd_budget: int = FD_DIFFERENCES, **kw_inputs) -> CheckReport:
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
        ``λ_d`` from the magnitude of the terms whose sum it is (:func:`_magnitudes`).
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
    from ..options import check_options

    check_options(inputs=inputs, against=against, rtol=rtol, fd_rtol=fd_rtol, atol=atol, rng=rng,
                  fd_max_elements=fd_max_elements)
    inputs = merge_inputs(inputs, kw_inputs)
    if not isinstance(prog, ProgramBuilder):
        if not callable(prog):
            raise LagrangePropError(f"check() needs a Program or a function, got {type(prog).__name__}")
        prog = record(prog, (), inputs)
    against = (against,) if isinstance(against, str) else tuple(against)
    unknown = [a for a in against if a not in ("autograd", "torch", "fd")]
    if unknown:
        raise LagrangePropError(f"against={unknown} is not a reference; choose from 'autograd', 'torch', 'fd'")
    rng = np.random.default_rng(rng)
    sched = compiled(prog)
    out_name = sched.names[sched.output]
    out_shape = sched.shapes[sched.output]
    seed_note = None
    if seed is None and out_shape != ():
        seed = rng.standard_normal(out_shape)
        seed_note = (f"output {out_name!r} has shape {out_shape}: checking <seed, {out_name}> with a random "
                     "N(0, 1) seed (cotangent); pass seed= to choose it")
    elif seed is not None and out_shape != ():
        seed_note = f"output {out_name!r} has shape {out_shape}: checking <seed, {out_name}> with the given seed"
    opts = dict(tol=tol, maxiter=maxiter, method=method, linear_solver=linear_solver)
    sol = solve_program(prog, inputs, guess=guess, seed=seed, **opts)
    seed_arr = np.asarray(sol.seed, dtype=np.float64)
    xin = {k: np.asarray(sol.values[k], dtype=np.float64) for k in sched.input_names}
    lam = {k: np.asarray(v, dtype=np.float64) for k, v in sol.multipliers.items()}
    # per node: its own rounding floor (and the caller's atol), never the program's largest λ
    mu, nu = _magnitudes(sched, sol.values, lam, seed_arr, np.random.default_rng(0))
    extra = 0.0 if atol is None else float(atol)
    floor = {k: FLOOR * float(np.max(m, initial=0.0)) + extra for k, m in nu.items()}
    # rounding of <seed, z_o> itself: δz_d ≈ eps·|z_d| reaches it as λ_d·δz_d, |.| ≤ μ_d·δz_d
    roundoff = EPS * sum(float(np.sum(mu[sched.names[n]] * np.abs(np.asarray(sol.values[sched.names[n]],
                                                                              dtype=np.float64))))
                         for n in sched.defined if sched.names[n] in mu)
    value = float(np.sum(seed_arr * np.asarray(sol.output)))

    references: dict[str, str] = {}
    tapes: dict[str, Any] = {}
    notes: list[str] = []
    for backend in ("autograd", "torch"):
        if backend not in against:
            continue
        name = TAPE_NAMES[backend]
        try:
            if backend == "torch":
                import torch  # noqa: F401 - optional
            res = tape_gradients(sched, backend, xin, seed_arr, guess)
        except ImportError:
            references[name] = "not installed (skipped)"
            continue
        except NoTapeEquivalent as exc:
            references[name] = f"skipped: {exc}"
            continue
        except Exception as exc:  # the tape itself failed: say so, do not guess
            references[name] = f"failed to run: {type(exc).__name__}: {exc}"
            continue
        tapes[backend] = res
        version = _version(backend)
        how = f"{version}, its own derivative rules"
        if res.iterations is not None:
            how += f"; cyclic blocks unrolled: {res.iterations} Newton iterations on the tape"
        references[name] = how
        notes.extend(n for n in res.notes if n not in notes)

    F = _Objective(prog, sched, seed_arr, {n: sol.values[n] for b in sched.blocks
                                            for n in b.names}, opts) if "fd" in against else None
    plan = _fd_plan(xin, fd_max_elements, fd_budget)
    if F is not None:
        F.roundoff = roundoff
        references[FD_NAME] = (f"central, h = {H_REL:.1e}·max(1, |x|) (entries of magnitude below {SMALL_ENTRY:g} also "
                               f"h = {H_REL:.1e}·|x|, the better by Richardson's estimate); per element for inputs of "
                               f"<= {fd_max_elements} entries, else along a random direction")
        joint = [k for k, m in plan.items() if m is None]
        if joint:
            notes.append(f"finite differences: at most {fd_budget} central differences; input(s) "
                         f"{joint[:8]}{' ...' if len(joint) > 8 else ''} ({len(joint)} of {len(xin)}) are "
                         "differenced jointly only, along the random direction over all inputs")

    rows = []
    for k in sched.input_names:
        row = {"input": k, "shape": tuple(xin[k].shape), "lagrangian": lam[k], "autograd": None,
               "torch": None, "fd": None, "fd_mode": None, "compare": {}}
        for backend, res in tapes.items():
            row[backend] = res.grad[k]
            row["compare"][TAPE_NAMES[backend]] = _compare(lam[k], res.grad[k], rtol, floor[k])
        if F is not None and plan[k] is not None:
            row.update(_fd_row(F, xin, k, lam[k], rng, fd_rtol, floor[k], plan[k]))
            row["compare"][FD_NAME] = row.pop("_cmp")
        elif F is not None:
            row["fd_mode"] = "joint"
        row["abs_error"] = {r: c["abs"] for r, c in row["compare"].items()}
        row["rel_error"] = {r: c["rel"] for r, c in row["compare"].items()}
        row["ok"] = all(c["ok"] for c in row["compare"].values())
        rows.append(row)

    dir_floor = extra + FLOOR * float(np.sqrt(sum(float(np.sum(nu[k] ** 2)) for k in xin)))
    direction = _direction(F, xin, lam, tapes, rng, rtol, fd_rtol, dir_floor) if (F or tapes) else None
    multipliers, summary = _node_multipliers(sched, lam, tapes, rtol, floor)
    value_cmp = None
    if tapes:
        # the output is judged on the scale of the terms that produced it (16·eps·Σ μ_d|z_d|,
        # the FD noise bound), not on its own size: a - a is 1e-16 on one side, -4e-16 on the other
        res = next(iter(tapes.values()))
        value_cmp = _compare(value, res.value, max(rtol, 1e-8), 16 * roundoff + extra)
        value_cmp.update(lagrangian=value, tape=res.value, reference=TAPE_NAMES[res.backend],
                         floor=16 * roundoff + extra)
    convergence = _convergence(sched, tapes, xin, seed_arr, guess, lam) if sched.blocks else []
    if F is not None and not tapes:
        user = [s.prim.name for s in sched.step_of.values() if s.prim.user]
        if user:
            notes.append(f"user primitive(s) {sorted(set(user))} have no tape equivalent: finite "
                         "differences alone check this program")

    report = CheckReport(program=prog.name, output=out_name, output_shape=out_shape, seed_note=seed_note,
                         inputs=xin, references=references, rtol=rtol, fd_rtol=fd_rtol, atol=atol,
                         rows=rows, direction=direction, multipliers=multipliers,
                         multiplier_summary=summary, convergence=convergence, value=value_cmp,
                         notes=notes, evaluations=0 if F is None else F.evaluations, ok=False)
    compared = any(r["compare"] for r in rows) or bool(direction and direction["compare"])
    if not compared:
        notes.append("no reference could run, so nothing was checked: ok is False")
    report.ok = compared and not report.failures
    return report


def _version(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    label = "HIPS autograd" if backend == "autograd" else "PyTorch"
    try:
        return f"{label} {version(backend)}"
    except PackageNotFoundError:
        return label


def _fd_plan(xin: dict, max_elements: int, budget: int) -> dict:
    """Input -> "elementwise" | "direction" | None (joint only): at most ``budget`` central
    differences in all, one of them the random direction over all inputs (:func:`_direction`)."""
    left = max(0, int(budget) - 1)
    plan: dict = {}
    for k in xin:                       # a direction for each input while the budget lasts ...
        plan[k] = "direction" if left > 0 else None
        left -= plan[k] is not None
    for k, x in xin.items():            # ... per element for the small ones it still covers
        if plan[k] is not None and x.size <= max_elements and x.size - 1 <= left:
            plan[k] = "elementwise"
            left -= max(0, x.size - 1)
    return plan


def _fd_row(F, xin, k, lam_k, rng, fd_rtol, atol, mode) -> dict:
    try:
        if mode == "elementwise":
            fd, noise = _fd_elements(F, xin, k)
            mode, ref = "elementwise", lam_k
        else:
            fd, noise, v = _central(F, xin, _unit(rng, {k: xin[k].shape}))
            mode, ref = "direction", _dot({k: lam_k}, v)
    except LagrangePropError as exc:
        return {"fd": None, "fd_mode": f"failed: {exc}",
                "_cmp": {"abs": np.inf, "rel": np.inf, "ok": False}}
    cmp = _compare(ref, fd, fd_rtol, atol + noise)
    cmp["lagrangian"] = ref
    return {"fd": fd, "fd_mode": mode, "_cmp": cmp}


def _direction(F, xin, lam, tapes, rng, rtol, fd_rtol, atol) -> dict:
    """autograd's check_grads view: <∇, v> from each source along one random v."""
    v = _unit(rng, {k: x.shape for k, x in xin.items()})
    fd = None
    if F is not None:
        try:
            fd, noise, v = _central(F, xin, v)    # v may come back scaled entrywise by |x|
        except LagrangePropError:
            fd, noise = np.nan, 0.0
    out = {"lagrangian": _dot(lam, v), "compare": {}}
    for backend, res in tapes.items():
        out[backend] = _dot(res.grad, v)
        out["compare"][TAPE_NAMES[backend]] = _compare(out["lagrangian"], out[backend], rtol, atol)
    if F is not None:
        out["fd"] = fd
        out["compare"][FD_NAME] = _compare(out["lagrangian"], fd, fd_rtol, atol + noise)
    return out


def _segment_max(v: np.ndarray, starts: np.ndarray, nonempty: np.ndarray) -> np.ndarray:
    """Max of each segment ``v[starts[k]:starts[k + 1]]`` (0 for an empty one)."""
    out = np.zeros(len(starts))
    if v.size:
        out[nonempty] = np.maximum.reduceat(v, starts[nonempty])
    return out


def _node_multipliers(sched, lam, tapes, rtol, floor: dict) -> tuple[dict, dict]:
    """Every defined node's λ_d against the tapes' ∂<seed, z_o>/∂ε_d, each on its own scale.

    Node ``d`` passes iff ``max|λ_d - t_d| <= rtol·max(max|λ_d|, max|t_d|) + floor[d]``
    (:func:`_compare` per node, batched: one pass of array operations over all nodes)."""
    rows: dict = {}
    summary: dict = {}
    for backend, res in tapes.items():
        ref = TAPE_NAMES[backend]
        names = list(res.multipliers)
        if not names:
            summary[ref] = {"nodes": 0, "worst": None, "max_rel": 0.0, "failed": []}
            continue
        a = [np.ravel(lam[n]) for n in names]
        b = [np.ravel(np.asarray(res.multipliers[n], dtype=np.float64)) for n in names]
        sizes = np.array([len(t) for t in a])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        A, B = np.concatenate(a), np.concatenate(b)
        nz = sizes > 0

        def seg_max(v: np.ndarray, starts=starts, nz=nz) -> np.ndarray:
            return _segment_max(v, starts, nz)
        with np.errstate(invalid="ignore"):
            err = seg_max(np.abs(A - B))
        err[~np.isfinite(err)] = np.inf          # nan or inf on either side fails
        scale = np.maximum(seg_max(np.abs(A)), seg_max(np.abs(B)))
        fl = np.array([floor.get(n, 0.0) for n in names])
        ok = err <= fl + rtol * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), np.where(err == 0, 0.0, np.inf))
            ratio = err / (fl + rtol * scale)     # > 1: failed; the worst node is the largest ratio
        ratio[err == 0] = 0.0
        ratio[~np.isfinite(ratio)] = np.inf
        for k, n in enumerate(names):
            row = rows.setdefault(n, {"lagrangian": lam[n]})
            row[backend] = res.multipliers[n]
            row[ref] = {"abs": float(err[k]), "rel": float(rel[k]), "ok": bool(ok[k]), "floor": float(fl[k])}
        w = int(np.argmax(ratio))
        summary[ref] = {"nodes": len(names), "worst": names[w], "max_rel": float(np.max(rel)),
                        "worst_rel": float(rel[w]), "failed": [names[k] for k in np.flatnonzero(~ok)]}
    return rows, summary


def _convergence(sched, tapes, xin, seed, guess, lam) -> list:
    """Unrolled tape gradient vs the multipliers as the Newton iterations grow."""
    if not tapes:
        return []
    backend = "autograd" if "autograd" in tapes else next(iter(tapes))
    total = max(1, tapes[backend].iterations or 1)
    steps = sorted({k for k in (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32) if k < total} | {total})
    scale = max([float(np.max(np.abs(lam[k]), initial=0.0)) for k in xin] + [1e-300])
    table = []
    for k in steps:
        try:
            res = tape_gradients(sched, backend, xin, seed, guess, iterations=k)
            err = max(float(np.max(np.abs(res.grad[n] - lam[n]), initial=0.0)) for n in xin) / scale
        except Exception:  # an early iterate may leave the domain (nan on the tape)
            err = np.nan
        table.append((k, err if np.isfinite(err) else np.nan))
    return [{"backend": TAPE_NAMES[backend], "iterations": k, "rel_error": e} for k, e in table]
