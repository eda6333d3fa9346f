"""Re-evaluate a program's graph on a tape (HIPS autograd or PyTorch) with *their* rules.

The tape is the independent reference of :func:`lagrangeprop.check`: each op's registry
entry names its autograd.numpy (or torch) expression (``prim.tape``), so the derivatives
come from the tape library's own rules, never from our VJP/JVP rules. Cyclic blocks are
unrolled: a fixed number of Newton iterations ``z ← z - J⁻¹ c_S(z)`` written in the tape
library, with ``J`` a dense Jacobian from the tape itself; differentiating through the
iteration converges to the implicit-function derivative as the iterations grow.

Every defined node gets a perturbation ``ε_d`` (zero): ``c_d = ε_d`` relaxes its
constraint, so the tape's ``∂<seed, z_o>/∂ε_d`` is the multiplier ``λ_d`` (SPEC §1) and the
tape checks every multiplier, not only the gradient. All of them come from ONE backward
pass, in time linear in the program: on the autograd tape each perturbation is a source
primitive of a single scalar leaf whose VJP records the cotangent that reaches it (a list
of 10⁴ leaves would cost autograd's list-container VJP O(n) per entry, O(n²) in all); an
explicit node's ``z_d = f_d + ε_d`` is a tap on ``f_d`` (the cotangent of ``z_d`` is
``∂/∂ε_d``). PyTorch takes one leaf per node (its engine is linear in the leaves).

Examples
--------
>>> import lagrangeprop as lp
>>> from lagrangeprop.crosscheck.tape import tape_gradients
>>> prog = lp.trace(lambda x: lp.exp(x) * x, x=1.0)
>>> res = tape_gradients(prog.compile(), "autograd", {"x": 1.0}, seed=1.0)
>>> round(float(res.grad["x"]), 6)   # (1 + x) e^x
5.436564
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..compile.schedule import Block, Schedule, Step
from ..solve.walk import walk
from . import backends
from .backends import BACKENDS, Backend, LazyLeaves, missing_ops
from .unroll import unroll

__all__ = ["TapeResult", "NoTapeEquivalent", "tape_gradients", "missing_ops", "BACKENDS"]



def gc_paused(fn: Callable) -> Callable:
    """Run ``fn`` with the cyclic garbage collector paused (restored after). A tape of n nodes
    holds O(n) live objects and allocates O(n) more; each full collection walks all of them,
    which made a linear pass superlinear (chain-16000 check: 1.9 s with, 1.2 s without)."""
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()
    return paused


class NoTapeEquivalent(Exception):
    """The program uses an op the tape cannot express with its own rules."""


@dataclass
class TapeResult:
    """Gradients of ``<seed, z_o>`` from one tape."""

    backend: str
    value: float                                   # <seed, z_o>
    grad: dict[str, np.ndarray]                    # input name -> ∂<seed, z_o>/∂x
    multipliers: dict[str, np.ndarray]             # defined node -> ∂<seed, z_o>/∂ε_d
    iterations: int | None = None                  # Newton iterations per block (None: no blocks)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ interpreter
def _run(sched: Schedule, be: Backend, xs: dict[int, Any], eps: dict[int, Any],
         guess: dict[int, np.ndarray], iterations: int | None) -> tuple[Any, int]:
    """Evaluate the program on the tape; returns z_o and the Newton iterations used."""
    vals: list = [None] * len(sched.names)
    for i, v in sched.constants:
        vals[i] = be.constant(v)
    for i, v in xs.items():
        vals[i] = v
    replay = _Replay(be, vals, eps, guess, iterations)
    walk(sched, replay)
    return vals[sched.output], replay.used


class _Replay:
    """The :func:`~lagrangeprop.solve.walk.walk` pass of the tape: each step in the tape
    library (perturbed by ``ε_d``), each block unrolled; ``used``: the most Newton iterations."""

    __slots__ = ("be", "vals", "eps", "guess", "iterations", "used")

    def __init__(self, be: Backend, vals: list, eps: dict, guess: dict, iterations: int | None):
        self.be, self.vals, self.eps, self.guess, self.iterations = be, vals, eps, guess, iterations
        self.used = 0

    def step(self, step: Step) -> None:
        be, vals, eps = self.be, self.vals, self.eps
        out = be.apply(step, [vals[a] for a in step.args])
        vals[step.node] = be.perturb(out, step.node, eps) if step.node in eps else out

    def block(self, block: Block) -> None:
        self.used = max(self.used, unroll(block, self.be, self.vals, self.eps, self.guess,
                                           self.iterations))


# --------------------------------------------------------------------- gradients
def _differentiable_nodes(sched: Schedule) -> list[int]:
    """Defined nodes whose multiplier the tape checks (not boolean comparisons)."""
    return [n for n in sched.defined if sched.step_of[n].prim.differentiable]


# Gradients of <seed, z_o> with respect to the inputs x (λ_x) and the constraint
# perturbations ε_d at 0 (λ_d, SPEC §1: the sensitivity of z_o to relaxing c_d = ε_d).
@gc_paused
def tape_gradients(sched: Schedule, backend: str, inputs: dict[str, Any], seed: Any,
                   guess: dict[str, Any] | None = None, iterations: int | None = None) -> TapeResult:
    """Run the program on the ``backend`` tape and differentiate ``<seed, z_o>``.

    Parameters
    ----------
    sched : Schedule
        ``prog.compile()``.
    backend : {"autograd", "torch"}
    inputs : dict
        Input name -> value.
    seed : array_like
        Cotangent of the output (1.0 for a scalar output).
    guess : dict, optional
        Starting values of block members (as for ``prog.solve``).
    iterations : int, optional
        Newton iterations per cyclic block; by default iterate to round-off.

    Raises
    ------
    NoTapeEquivalent
        When the program uses a user primitive or an op the tape does not know.
    """
    missing = missing_ops(sched, backend)
    if missing:
        raise NoTapeEquivalent(f"op(s) {missing} have no {backend} equivalent "
                               "(user primitives are checked by finite differences alone)")
    be = Backend(backend)
    seed = np.asarray(seed, dtype=np.float64)
    guess_ids = {sched.index[k]: np.asarray(v, dtype=np.float64) for k, v in (guess or {}).items()}
    nodes = _differentiable_nodes(sched)
    used = [None]
    if backend == "autograd":
        # one scalar leaf s; inputs and perturbations are sources of it (module docstring)
        import autograd
        taps = be.taps
        zeros = {n: np.zeros(sched.shapes[n]) for n in nodes}

        def F(s):
            taps.start(s)
            xs = {i: taps.source(("x", i), inputs[sched.names[i]]) for i in sched.inputs}
            out, used[0] = _run(sched, be, xs, zeros, guess_ids, iterations)
            return be.inner(seed, out)

        value = autograd.value_and_grad(F)(0.0)[0]
        gx = [taps.cotangent(("x", i), sched.shapes[i]) for i in sched.inputs]
        ge = [taps.cotangent(n, sched.shapes[n]) for n in nodes]
    else:
        # ∂s/∂z_d w.r.t. the node's own tensor where it has one on the graph (torch.autograd.grad
        # takes intermediate tensors), else through an ε_d leaf: one backward pass either way
        torch = be.torch
        xs = [be.leaf(inputs[sched.names[i]]) for i in sched.inputs]
        be.seen.update(id(x) for x in xs)
        leaf_of = LazyLeaves(nodes, lambda n: be.leaf(np.zeros(sched.shapes[n])))
        out, used[0] = _run(sched, be, dict(zip(sched.inputs, xs)), leaf_of, guess_ids, iterations)
        s = be.inner(seed, out)
        wrt = [*xs, *[be.marks.get(n, leaf_of.made.get(n)) for n in nodes]]
        live = [k for k, t in enumerate(wrt) if t is not None]
        grads = torch.autograd.grad(s, [wrt[k] for k in live], allow_unused=True) \
            if live and s.requires_grad else [None] * len(live)
        got = dict(zip(live, grads))
        shapes = [sched.shapes[i] for i in sched.inputs] + [sched.shapes[n] for n in nodes]
        flat = [np.zeros(shape) if got.get(k) is None else got[k].detach().numpy() for k, shape in enumerate(shapes)]
        value, gx, ge = float(s.detach()), flat[:len(xs)], flat[len(xs):]
    grad = {sched.names[i]: np.asarray(g, dtype=np.float64).reshape(sched.shapes[i])
            for i, g in zip(sched.inputs, gx)}
    mult = {sched.names[n]: np.asarray(g, dtype=np.float64).reshape(sched.shapes[n])
            for n, g in zip(nodes, ge)}
    notes = []
    if any(sp.issparse(v) for _, v in sched.constants):
        big = any(sp.issparse(v) and np.prod(v.shape) > backends.DENSE_SPARSE_LIMIT for _, v in sched.constants)
        notes.append("scipy.sparse constants: " + (
            "a sparse product whose VJP is Wᵀg (the tape has no sparse rules)" if big
            else "multiplied as dense copies"))
    return TapeResult(backend, float(value), grad, mult,
                      used[0] if sched.blocks else None, notes)

