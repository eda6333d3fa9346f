"""Central finite differences of the forward pass, scaled: the third reference of ``check``.

``F(x) = <seed, z_o(x)>`` is evaluated by lagrangeprop's forward pass alone
(:class:`Objective`); :func:`central` differences it along a direction, with a step
relative to ``max(1, |x|)`` and, for inputs with tiny entries, relative to each entry
(Richardson's estimate picks the better); :func:`fd_elements` differences one input per
element. At most ``FD_DIFFERENCES`` central differences run per check (:func:`fd_plan`),
whatever the number of inputs.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: lp.exp(x), x=0.0)
>>> F = Objective(prog, prog.compile(), np.array(1.0), {}, {})
>>> d, noise, v = central(F, {"x": np.array(0.0)}, {"x": np.array(1.0)})
>>> bool(abs(d - 1.0) < 1e-9), bool(noise < 1e-9)
(True, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConvergenceError, LagrangePropError
from ..solve.program import evaluate_program
from .compare import compare
from .rounding import EPS

if TYPE_CHECKING:
    from ..compile.schedule import Schedule

__all__ = ["Objective", "central", "fd_elements", "fd_plan", "fd_row", "unit", "dot",
           "H_REL", "SMALL_ENTRY", "FD_DIFFERENCES"]

SMALL_ENTRY = 0.01                 # entries this small are also differenced on their own scale
H_REL = float(np.cbrt(EPS))        # central-difference step relative to max(1, |x|)
FD_DIFFERENCES = 24                # central differences (2 forward passes each) per check, at most


class Objective:
    """``F(x) = <seed, z_o(x)>`` through lagrangeprop's forward pass only."""

    def __init__(self, prog: Any, sched: Schedule, seed: np.ndarray, guess: dict, options: dict):
        self.prog, self.seed, self.options = prog, seed, options
        self.guess = dict(guess)
        self.tol = None
        if sched.blocks:
            # warm start at the solution; solve tighter than the check's step resolves
            self.tol = min(1e-13, options.get("tol") or 1e-13)
        self.evaluations = 0
        self.roundoff = 0.0      # eps·Σ_d |λ_d|·|z_d| at the checked point (set by check)
        self.on_difference = None   # called with each direction differenced (check's progress)

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


def difference(F: Objective, inputs: dict, direction: dict, h: float) -> tuple[float, float]:
    """``(F(x + h v) - F(x - h v)) / 2h`` and its noise estimate."""
    vals = []
    for sgn in (1.0, -1.0):
        moved = dict(inputs)
        for k, v in direction.items():
            moved[k] = np.asarray(inputs[k], dtype=np.float64) + sgn * h * v
        vals.append(F(moved))
    return (vals[0] - vals[1]) / (2 * h), F.noise(vals, h)


def central(F: Objective, inputs: dict, direction: dict) -> tuple[float, float, dict]:
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
        d, noise = difference(F, inputs, direction, H_REL * scale)
        _done(F, direction)
        return d, noise, direction
    rel = {k: v * np.where(np.asarray(inputs[k]) != 0, np.abs(inputs[k]), 1.0) for k, v in direction.items()}
    cands.append((rel, H_REL))
    best, error = None, None
    for u, h in cands:
        try:
            d1, _ = difference(F, inputs, u, h)
            d2, n2 = difference(F, inputs, u, h / 2)
        except LagrangePropError as exc:
            error = exc
            continue
        est = abs(d1 - d2) + n2
        if np.isfinite(est) and (best is None or est < best[0]):
            best = (est, (4 * d2 - d1) / 3, 5 * n2 / 3, u)
    _done(F, direction)
    if best is None:
        raise error if error is not None else FloatingPointError("no finite central difference")
    return best[1], best[2], best[3]


def _done(F: Objective, direction: dict) -> None:
    if getattr(F, "on_difference", None) is not None:
        F.on_difference(direction)


def fd_elements(F: Objective, inputs: dict, name: str) -> tuple[np.ndarray, float]:
    """Per-element central differences of one input."""
    x = np.asarray(inputs[name], dtype=np.float64)
    out, noise = np.zeros(x.shape), 0.0
    for k in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[k] = 1.0
        d, n, u = central(F, {**inputs, name: x}, {name: e})
        out[k], noise = d / float(u[name][k]), max(noise, n / abs(float(u[name][k])))
    return out, noise


def unit(rng: np.random.Generator, shapes: dict) -> dict:
    """A random direction of norm 1 over the inputs ``shapes`` (name -> shape)."""
    v = {k: rng.standard_normal(s) for k, s in shapes.items()}
    norm = np.sqrt(sum(float(np.sum(t * t)) for t in v.values())) or 1.0
    return {k: t / norm for k, t in v.items()}


def dot(g: dict, v: dict) -> float:
    """``<g, v>`` summed over the inputs of ``v``."""
    return float(sum(np.sum(np.asarray(g[k]) * v[k]) for k in v))



def fd_plan(xin: dict, max_elements: int, budget: int) -> dict:
    """Input -> "elementwise" | "direction" | None (joint only): at most ``budget`` central
    differences in all, one of them the random direction over all inputs (``check``'s direction)."""
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


def fd_row(F: Objective, xin: dict, k: str, lam_k: np.ndarray, rng: np.random.Generator,
           fd_rtol: float, atol: float, mode: str) -> dict:
    """The finite-difference entries of input ``k``'s row: ``fd``, ``fd_mode`` and ``_cmp``
    (the comparison with the Lagrangian, per element or along a random direction)."""
    try:
        if mode == "elementwise":
            fd, noise = fd_elements(F, xin, k)
            mode, ref = "elementwise", lam_k
        else:
            fd, noise, v = central(F, xin, unit(rng, {k: xin[k].shape}))
            mode, ref = "direction", dot({k: lam_k}, v)
    except LagrangePropError as exc:
        return {"fd": None, "fd_mode": f"failed: {exc}",
                "_cmp": {"abs": np.inf, "rel": np.inf, "ok": False}}
    cmp = compare(ref, fd, fd_rtol, atol + noise)
    cmp["lagrangian"] = ref
    return {"fd": fd, "fd_mode": mode, "_cmp": cmp}
