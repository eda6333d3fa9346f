"""What every case shares: :class:`Impl` (what the harness times), the registry, helpers.

A case is a function ``build(system) -> Impl | None`` registered with :func:`case`; it
returns None for a system that has no implementation of it ("n/a" in the table) and raises
ImportError for one that is not installed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Impl:
    """One system's implementation of a program: what the harness times and compares."""

    grad: Callable[[], Any]          # one gradient evaluation (forward + reverse)
    fwd: Callable[[], Any]           # one forward evaluation
    flat: Callable[[Any], np.ndarray] = None  # gradient result -> flat float64 vector
    compile_s: float | None = None   # lagrangeprop: trace + compile time
    note: str = ""
    warmup: Callable[[], Any] | None = None   # run once after the cold call, before timing (a jit's fwd)


def torch_module():
    """PyTorch in float64 on one thread (imported only by the cases that use it)."""
    import torch
    torch.set_default_dtype(torch.float64)
    # one thread, like numpy under OPENBLAS_NUM_THREADS=1: a fair comparison, and no idle OpenMP
    # workers spinning on the second core while the other systems are timed in this process
    torch.set_num_threads(1)
    return torch


def lp_impl(build: Callable[[], Any], inputs: dict, **solve_kw) -> Impl:
    """Compile once (``build`` returns a Program), then time solve / evaluate."""
    from lagrangeprop.compile.plan import plan_of
    from lagrangeprop.solve import compiled
    t0 = time.perf_counter()
    prog = build()
    # what the first solve would build otherwise: the generated code, or the interpreters' plan
    compiled.generated(prog.compile()) if compiled.ENABLED else plan_of(prog.compile())
    compile_s = time.perf_counter() - t0
    names = sorted(inputs)

    def grad():
        return prog.solve(**inputs, **solve_kw).grad

    def fwd():
        return prog.evaluate(**inputs, **solve_kw)
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g[k]) for k in names]), compile_s)


# the registry: program name -> (build(system) -> Impl | None, memory, quick), in definition order
CASES: dict[str, tuple[Callable, bool, bool]] = {}
SINGLE: set[str] = set()   # programs timed by one cold gradient call (no forward column): minutes per call


# the peer systems of issues 14 and 16 that implement only some programs (a case lists its own in ``peers``)
PEERS = ("jax", "jax-unrolled", "casadi", "openmdao", "floor", "chord-splu")


def case(name: str, memory: bool = False, quick: bool = True, single: bool = False,
         peers: tuple[str, ...] = ()) -> Callable:
    """Register ``build(system)`` as the program ``name`` (``memory``: also measure peak memory;
    ``quick``: part of ``--quick``; ``single``: timed by one cold call per system; ``peers``: the
    systems of :data:`PEERS` it implements, the others are "n/a" without calling it)."""
    def deco(fn):
        def build(system: str):
            return None if system in PEERS and system not in peers else fn(system)
        CASES[name] = (build, memory, quick)
        if single:
            SINGLE.add(name)
        return fn
    return deco


def scalar_impl(system: str, make_f: Callable[[Any], Callable], x0: float) -> Impl | None:
    """lagrangeprop / autograd / PyTorch implementations of the scalar function ``make_f(module)``
    (``module`` supplies exp, sin, tanh); None for the hand-written numpy system."""
    if system == "lagrangeprop":
        import lagrangeprop as lp
        return lp_impl(lambda: lp.trace(make_f(lp), x=x0), {"x": x0})
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = make_f(anp)
        return Impl(lambda: autograd.grad(f)(x0), lambda: f(x0))
    if system == "torch":
        torch = torch_module()
        f = make_f(torch)

        def grad():
            x = torch.tensor(x0, requires_grad=True)
            f(x).backward()
            return x.grad

        def fwd():
            with torch.no_grad():
                return f(torch.tensor(x0))
        return Impl(grad, fwd)
    return None


def has(module: str) -> bool:
    """Whether ``module`` is installed (without importing it)."""
    import importlib.util
    return importlib.util.find_spec(module) is not None
