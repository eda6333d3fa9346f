"""chain-N: N scalar ops cycling sin, ·1.01, +0.1, tanh (per-node overhead of a long DAG)."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, scalar_impl


def _chain_f(m, n):
    def f(x):
        v = x
        for k in range(n):
            r = k % 4
            if r == 0:
                v = m.sin(v)
            elif r == 1:
                v = v * 1.01
            elif r == 2:
                v = v + 0.1
            else:
                v = m.tanh(v)
        return v
    return f


def _chain_jax_loop(n: int):
    """The chain as ``jax.lax.fori_loop`` over the 4-op period (a native loop, compiled once)."""
    import jax
    import jax.numpy as jnp

    def period(_, v):
        return jnp.tanh(jnp.sin(v) * 1.01 + 0.1)

    def f(x):
        v = jax.lax.fori_loop(0, n // 4, period, x)
        return _chain_f(jnp, n % 4)(v)
    return f


def _chain(system: str, n: int):
    x0 = 0.3
    if system in ("jax", "jax-unrolled"):
        import jax.numpy as jnp

        from .peers import jax_impl, jax_module
        jax_module()
        if system == "jax":
            return jax_impl(_chain_jax_loop(n), [x0], note="lax.fori_loop")
        return jax_impl(_chain_f(jnp, n), [x0], note="unrolled")
    if system == "casadi":
        from .peers import casadi_scalar
        return casadi_scalar(lambda m: _chain_f(m, n), x0)
    impl = scalar_impl(system, lambda m: _chain_f(m, n), x0)
    if impl is not None:
        return impl

    def grad():   # hand-written: forward keeps the local partials, reverse multiplies them
        v, d = x0, []
        for k in range(n):
            r = k % 4
            if r == 0:
                d.append(np.cos(v))
                v = np.sin(v)
            elif r == 1:
                d.append(1.01)
                v = v * 1.01
            elif r == 2:
                v = v + 0.1
            else:
                v = np.tanh(v)
                d.append(1.0 - v * v)
        g = 1.0
        for p in reversed(d):
            g = g * p
        return g
    return Impl(grad, lambda: _chain_f(np, n)(x0))


# JAX unrolled and CasADi SX build one expression node per op: for the small chains only (XLA
# compiles the unrolled chain-10⁴ in ~40 s)
for _n, _mem, _quick, _peers in ((1000, False, True, ("jax", "jax-unrolled", "casadi")),
                                 (10_000, False, True, ("jax", "casadi")),
                                 (100_000, True, False, ("jax",))):
    case(f"chain-{_n}", memory=_mem, quick=_quick, peers=_peers)(lambda system, n=_n: _chain(system, n))
