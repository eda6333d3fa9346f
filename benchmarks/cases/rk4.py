"""rk4-200 check: ``lp.check`` of Lotka-Volterra integrated by classic RK4 (13 210 scalar nodes)."""

from __future__ import annotations

import time

import numpy as np

from .common import Impl, case, has


# Lotka-Volterra u' = a u - b u v, v' = d u v - c v, classic RK4 (h = 0.05) for `steps`
# steps, loss u² + v at the end; inputs y0 (2,) and theta = (a, b, c, d). 200 steps trace
# to 13 210 scalar nodes.
RK4_Y0, RK4_THETA = np.array([1.0, 0.5]), np.array([1.1, 0.4, 0.4, 0.1])


def rk4_f(m, steps: int = 200):
    """The RK4 integrator written against ``m`` (lagrangeprop, autograd.numpy, torch, numpy)."""
    def f(y0, theta):
        a, b, c, d = theta[0], theta[1], theta[2], theta[3]
        u, v = y0[0], y0[1]
        h = 0.05

        def rhs(u, v):
            uv = u * v
            return a * u - b * uv, d * uv - c * v
        for _ in range(steps):
            k1u, k1v = rhs(u, v)
            k2u, k2v = rhs(u + 0.5 * h * k1u, v + 0.5 * h * k1v)
            k3u, k3v = rhs(u + 0.5 * h * k2u, v + 0.5 * h * k2v)
            k4u, k4v = rhs(u + h * k3u, v + h * k3v)
            u = u + (h / 6) * (k1u + 2 * k2u + 2 * k3u + k4u)
            v = v + (h / 6) * (k1v + 2 * k2v + 2 * k3v + k4v)
        return u * u + v
    return f


@case("rk4-200 check")
def rk4_check(system: str):
    """lagrangeprop: ``lp.check`` of the traced program (every reference, every multiplier),
    the "grad" column; autograd: ``autograd.grad`` of the plain numpy function. ``lp/sys`` on
    the autograd row is the check's cost in autograd gradients (issue 11: at most 20)."""
    inputs = {"y0": RK4_Y0, "theta": RK4_THETA}
    if system == "lagrangeprop":
        import lagrangeprop as lp
        from lagrangeprop.compile.plan import plan_of
        t0 = time.perf_counter()
        prog = lp.trace(rk4_f(lp), **inputs)
        plan_of(prog.compile())
        compile_s = time.perf_counter() - t0
        nodes = prog.graph.number_of_nodes()

        def check():
            report = lp.check(prog, inputs)
            if not report.ok:
                raise AssertionError(f"lp.check of rk4-200 failed:\n{report}")
            return {k: report.rows[i]["lagrangian"] for i, k in enumerate(("y0", "theta"))}
        refs = "autograd + torch tapes + FD" if has("torch") else "autograd tape + FD"
        return Impl(check, lambda: prog.evaluate(**inputs),
                    lambda g: np.concatenate([np.ravel(g["theta"]), np.ravel(g["y0"])]), compile_s,
                    note=f"lp.check: {refs}, all {nodes} nodes' multipliers")
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = rk4_f(anp)
        g = autograd.grad(f, (0, 1))
        return Impl(lambda: dict(zip(("y0", "theta"), g(RK4_Y0, RK4_THETA))), lambda: f(RK4_Y0, RK4_THETA),
                    lambda g: np.concatenate([np.ravel(g["theta"]), np.ravel(g["y0"])]),
                    note="autograd.grad of the numpy function")
    return None
