"""Backprop fits more than neural networks: a polynomial AND its center, fitted to sin.

    p(x) = Σ_k c_k (x − a)^k,   loss(c, a) = mean((p(x_i) − sin x_i)²) + ρ Σ_k c_k²

on [0, π]. The gradient with respect to every coefficient c_k and to the center a is the
multiplier of that input, λ = ∂loss/∂input, from one solve of the traced program per step
(lp.value_and_grad traces once and re-solves: no re-tracing in the loop). Without the ridge
term ρ the center would only re-parameterise the same space of polynomials; with it the
center matters, and by the symmetry x -> π − x the optimum comes as a pair a*, π − a*.

Checks (exit status 1 on failure): the multiplier gradient equals HIPS autograd's (or central
differences without autograd) at a random point; the fitted loss is within 1e-3 of the optimum found
independently with numpy/scipy (ridge regression in closed form for each center, then a 1-D
bounded search over the center); the fitted center is within 0.05 of a* or π − a*.
"""

import os
import sys
import time

import numpy as np
from scipy.optimize import minimize_scalar

import lagrangeprop as lp

N_DEG = 3
RHO = 1e-3
XS = np.linspace(0.0, np.pi, 64)
YS = np.sin(XS)
QUICK = os.environ.get("LAGRANGEPROP_QUICK") == "1"
TRACES = [0]


def loss(c, a, xp=np):
    """The fitting loss; ``xp`` is numpy (traced by lagrangeprop) or autograd.numpy."""
    TRACES[0] += xp is np
    t = XS - a
    p = c[N_DEG]
    for k in range(N_DEG - 1, -1, -1):   # Horner: p = (...(c_n t + c_{n-1}) t + ...) + c_0
        p = p * t + c[k]
    r = p - YS
    return xp.mean(r * r) + RHO * xp.sum(c * c)


def reference_optimum():
    """Independent of lagrangeprop: ridge regression in closed form for a given center,
    then a bounded 1-D search over the center."""
    def best_c(a):
        V = np.vander(XS - a, N_DEG + 1, increasing=True)
        return np.linalg.solve(V.T @ V / len(XS) + RHO * np.eye(N_DEG + 1), V.T @ YS / len(XS))

    def objective(a):
        c = best_c(a)
        V = np.vander(XS - a, N_DEG + 1, increasing=True)
        return float(np.mean((V @ c - YS) ** 2) + RHO * c @ c)
    res = minimize_scalar(objective, bounds=(0.0, np.pi), method="bounded", options={"xatol": 1e-10})
    return float(res.x), float(res.fun), best_c(res.x)


def reference_gradient(c, a):
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        h = 1e-6
        theta = np.append(c, a)
        g = np.zeros_like(theta)
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = h
            g[i] = (float(loss((theta + e)[:-1], (theta + e)[-1], xp=np))
                    - float(loss((theta - e)[:-1], (theta - e)[-1], xp=np))) / (2 * h)
        TRACES[0] -= 2 * theta.size
        return "central differences", g[:-1], g[-1]
    gc, ga = autograd.grad(lambda c_, a_: loss(c_, a_, xp=anp), argnum=(0, 1))(c, a)
    return "autograd (tape)", gc, ga


def adam(value_and_grad, theta, steps, lr0=0.2, b1=0.9, b2=0.999):
    """Adam with a cosine learning-rate decay; returns theta and the loss history."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    history = []
    for i in range(1, steps + 1):
        val, g = value_and_grad(theta)
        history.append(val)
        lr = lr0 * 0.5 * (1 + np.cos(np.pi * (i - 1) / steps))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**i)) / (np.sqrt(v / (1 - b2**i)) + 1e-8)
    return theta, np.array(history)


def main() -> int:
    failures = []
    vg = lp.value_and_grad(loss, argnum=(0, 1))   # traced on first call, re-solved after

    def value_and_grad(theta):
        val, (gc, ga) = vg(theta[:-1], theta[-1])
        return float(val), np.append(gc, ga)

    theta0 = np.zeros(N_DEG + 2)                    # c = 0, center a = 0
    print(__doc__.split("\n\n")[0].strip(), "\n")
    print("1. The multiplier gradient at a random point vs an independent reference\n")
    theta_r = np.random.default_rng(0).normal(size=N_DEG + 2)
    _, g0 = value_and_grad(theta_r)
    ref_name, rc, ra = reference_gradient(theta_r[:-1], theta_r[-1])
    ref = np.append(rc, ra)
    names = [f"c{k}" for k in range(N_DEG + 1)] + ["a"]
    print(f"   {'input':6} {'multiplier λ':>16} {ref_name:>20} {'abs err':>9}")
    for name, gl, gr in zip(names, g0, ref):
        print(f"   {name:6} {gl:16.10g} {gr:20.10g} {abs(gl - gr):9.1e}")
    if not np.allclose(g0, ref, rtol=1e-8 if ref_name.startswith("autograd") else 1e-5, atol=1e-10):
        failures.append(f"gradient vs {ref_name} (max error {np.max(np.abs(g0 - ref)):.1e})")

    steps = 800 if QUICK else 2000
    t0 = time.perf_counter()
    theta, history = adam(value_and_grad, theta0, steps)
    elapsed = time.perf_counter() - t0
    final, _ = value_and_grad(theta)
    a_ref, f_ref, c_ref = reference_optimum()
    a_fit = float(theta[-1])
    # the mirror image of the optimum: a -> π − a, c_k -> (−1)^k c_k
    mirror = min(abs(a_fit - a_ref), abs(a_fit - (np.pi - a_ref)))
    if abs(a_fit - a_ref) > abs(a_fit - (np.pi - a_ref)):
        a_ref, c_ref = np.pi - a_ref, c_ref * (-1.0) ** np.arange(N_DEG + 1)

    print(f"\n2. Adam on the multiplier gradient: {steps} steps in {elapsed:.2f} s "
          f"({1e3 * elapsed / steps:.2f} ms per solve); loss() traced {TRACES[0]} time(s)\n")
    print(f"   {'step':>6} {'loss':>14}")
    for i in np.unique(np.geomspace(1, steps, 8).astype(int)):
        print(f"   {i:6d} {history[i - 1]:14.8g}")
    print(f"\n   {'':8} {'fitted':>12} {'reference':>12}")
    for k in range(N_DEG + 1):
        print(f"   c{k:<7} {theta[k]:12.6f} {c_ref[k]:12.6f}")
    print(f"   {'a':8} {a_fit:12.6f} {a_ref:12.6f}")
    print(f"   {'loss':8} {final:12.8f} {f_ref:12.8f}   relative gap {final / f_ref - 1:.1e}")
    err = np.max(np.abs(sum(theta[k] * (XS - a_fit) ** k for k in range(N_DEG + 1)) - YS))
    print(f"   max |p(x) − sin x| on the grid: {err:.4f}")
    if final / f_ref - 1 > 1e-3:
        failures.append(f"loss not at the reference optimum (relative gap {final / f_ref - 1:.1e})")
    if mirror > 0.05:
        failures.append(f"center not at the reference optimum (error {mirror:.1e})")
    if TRACES[0] != 1:
        failures.append(f"loss() was traced {TRACES[0]} times")

    try:
        import matplotlib
    except ImportError:
        print("\n(matplotlib not installed: no plot; pip install lagrangeprop[plot])")
    else:
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        grid = np.linspace(-0.3, np.pi + 0.3, 300)
        fit = sum(theta[k] * (grid - a_fit) ** k for k in range(N_DEG + 1))
        ax1.plot(grid, np.sin(grid), "k-", lw=1, label="sin x")
        ax1.plot(grid, fit, "C1--", lw=2, label=f"fitted p(x), degree {N_DEG}")
        ax1.plot(XS, YS, "k.", ms=3, label="training points")
        ax1.axvline(a_fit, color="C0", lw=1, ls=":", label=f"fitted center a = {a_fit:.3f}")
        ax1.set_xlabel("x")
        ax1.legend(fontsize=8)
        ax1.set_title("Taylor-style polynomial fitted with its center")
        ax2.semilogy(np.arange(1, steps + 1), history, "C0-")
        ax2.axhline(f_ref, color="k", ls=":", lw=1, label="independent optimum")
        ax2.set_xlabel("Adam step (gradient = multipliers)")
        ax2.set_ylabel("loss")
        ax2.legend(fontsize=8)
        ax2.set_title("loss curve")
        fig.tight_layout()
        fig.savefig("taylor_fit.png", dpi=120)
        print("\nPlot: taylor_fit.png")

    print("\nFAILED: " + ", ".join(failures) if failures else "\nOK: every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
