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


def _chain(system: str, n: int):
    x0 = 0.3
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


for _n, _mem, _quick in ((1000, False, True), (10_000, False, True), (100_000, True, False)):
    case(f"chain-{_n}", memory=_mem, quick=_quick)(lambda system, n=_n: _chain(system, n))
