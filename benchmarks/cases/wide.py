"""wide-N: N chains of 10 scalar ops from one input, summed by a pairwise tree."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, scalar_impl


# N independent scalar chains of length 10 from one input, summed by a pairwise tree.
WIDE_OPS = ("mul_c", "sin", "add", "tanh", "mul", "sin", "add", "tanh", "mul", "sin")


def _wide_f(m, n):
    scales = [1.0 + k / n for k in range(n)]

    def f(x):
        ys = [x * s for s in scales]
        for op in WIDE_OPS[1:]:
            if op == "sin":
                ys = [m.sin(y) for y in ys]
            elif op == "tanh":
                ys = [m.tanh(y) for y in ys]
            elif op == "add":
                ys = [y + 0.1 for y in ys]
            else:
                ys = [y * 1.01 for y in ys]
        while len(ys) > 1:
            ys = [ys[k] + ys[k + 1] for k in range(0, len(ys) - 1, 2)] + ys[len(ys) - len(ys) % 2:]
        return ys[0]
    return f


def _wide(system: str, n: int):
    x0 = 0.3
    impl = scalar_impl(system, lambda m: _wide_f(m, n), x0)
    if impl is not None:
        return impl

    s = 1.0 + np.arange(n) / n

    def fwd():
        v = np.tanh(np.sin(x0 * s) + 0.1)
        v = np.tanh(np.sin(v * 1.01) + 0.1)
        return np.sum(np.sin(v * 1.01))

    def grad():   # vectorized over the chains: the numpy-speed floor
        a1 = x0 * s
        a2 = np.sin(a1) + 0.1
        a3 = np.tanh(a2)
        a4 = a3 * 1.01
        a5 = np.sin(a4) + 0.1
        a6 = np.tanh(a5)
        a7 = a6 * 1.01
        d = np.cos(a7) * 1.01 * (1 - a6**2) * np.cos(a4) * 1.01 * (1 - a3**2) * np.cos(a1) * s
        return np.sum(d)
    return Impl(grad, fwd)


for _n, _mem, _quick in ((1000, False, True), (10_000, True, False)):
    case(f"wide-{_n}", memory=_mem, quick=_quick)(lambda system, n=_n: _wide(system, n))
