"""The compiled peers of issue 14: JAX (``jax.jit`` of ``jax.value_and_grad``) and CasADi (SX).

Each helper imports its package only when called, so a missing package is an ImportError the
harness reports as "not installed" (they are the ``[bench]`` extra: ``pip install jax casadi
openmdao``). OpenMDAO's Sellar group lives with its program in ``sellar.py``.

- :func:`jax_module`: JAX in float64 on one thread (like numpy and PyTorch here);
- :func:`jax_impl`: a function of positional arrays, its value and gradient under one ``jit``,
  inputs placed on the device once, timed after a warm-up call, with ``block_until_ready``;
- :func:`casadi_impl`: an SX expression and its gradient as one ``casadi.Function``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .common import Impl


def jax_module():
    """``jax`` with float64 enabled and XLA's CPU backend on one thread (set before the first import)."""
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import jax
    jax.config.update("jax_enable_x64", True)
    return jax


def jax_impl(f: Callable, args: Sequence[Any], names: Sequence[str] | None = None, note: str = "") -> Impl:
    """``jax.jit(jax.value_and_grad(f, argnums=all))`` and ``jax.jit(f)`` on ``args``.

    The gradient comes back as a dict keyed by ``names`` (one per argument), or the one array."""
    jax = jax_module()
    dev = [jax.device_put(np.asarray(a, dtype=np.float64)) for a in args]
    vg = jax.jit(jax.value_and_grad(f, argnums=tuple(range(len(dev)))))
    fw = jax.jit(f)

    def grad():
        value, g = vg(*dev)
        jax.block_until_ready((value, g))
        return dict(zip(names, g)) if names else g[0]

    def fwd():
        return fw(*dev).block_until_ready()
    return Impl(grad, fwd, note=note, warmup=fwd)   # fwd's own jit compile is not in its timing


def casadi_module():
    """The ``casadi`` package (imported only by the cases that use it)."""
    import casadi
    return casadi


def casadi_impl(build: Callable[[Any], tuple[list, Any]], args: Sequence[Any],
                names: Sequence[str] | None = None, note: str = "SX") -> Impl:
    """``build(casadi) -> (symbols, expression)``: one ``Function`` returning the expression and its
    gradient for every symbol (``casadi.gradient``), one returning the expression alone."""
    ca = casadi_module()
    syms, expr = build(ca)
    G = ca.Function("grad", syms, [expr, *[ca.gradient(expr, s) for s in syms]])
    F = ca.Function("fwd", syms, [expr])
    vals = [np.asarray(a, dtype=np.float64) for a in args]

    def grad():
        _, *g = G(*vals)
        g = [np.asarray(gi.full()).ravel() for gi in g]
        return dict(zip(names, g)) if names else g[0]

    def fwd():
        return float(F(*vals))
    return Impl(grad, fwd, note=note)


def casadi_scalar(make_f: Callable[[Any], Callable], x0: float, note: str = "SX") -> Impl:
    """:func:`casadi_impl` of the scalar function ``make_f(casadi)`` at ``x0``."""
    def build(ca):
        x = ca.SX.sym("x")
        return [x], make_f(ca)(x)
    return casadi_impl(build, [x0], note=note)
