"""Why not finite differences? Cost and accuracy as the number of inputs N grows.

    f(x) = Σ_i tanh(x_i x_{i+1}) + ½ Σ_i x_i²,   x ∈ R^N

Central differences need 2N evaluations of f for the full gradient, each with a truncation
error O(h²) and a rounding error O(ε/h). The multipliers need ONE solve (forward pass +
back-substitution) and are exact to rounding. Both are compared with the hand-derived gradient
∂f/∂x_j = x_j + x_{j-1} sech²(x_{j-1} x_j) + x_{j+1} sech²(x_j x_{j+1}).

Both methods use the same compiled program (central differences call prog.evaluate, the forward
pass alone), so the timing compares methods, not implementations. Exit status 1 unless the
multipliers match the exact gradient to 1e-12, central differences to no better than that,
and the cost ratio grows with N (2N evaluations against one solve).
"""

import os
import sys
import time

import numpy as np

import lagrangeprop as lp

QUICK = os.environ.get("LAGRANGEPROP_QUICK") == "1"


def f(x):
    return lp.sum(lp.tanh(x[:-1] * x[1:])) + 0.5 * lp.sum(x * x)


def exact_grad(x):
    s = 1 / np.cosh(x[:-1] * x[1:]) ** 2
    g = x.copy()
    g[1:] += x[:-1] * s
    g[:-1] += x[1:] * s
    return g


def central_differences(prog, x, h):
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (float(prog.evaluate(x=x + e)) - float(prog.evaluate(x=x - e))) / (2 * h)
    return g


def best_time(fn, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main() -> int:
    failures = []
    rng = np.random.default_rng(1)
    sizes = [4, 16, 64, 256] if QUICK else [4, 16, 64, 256, 1024]
    h = 1e-5
    print(__doc__.split("\n\n")[0].strip(), "\n")
    print(f"1. Cost and accuracy (central differences with h = {h:g})\n")
    print(f"   {'N':>5} {'f evals (FD)':>12} {'FD time':>10} {'solve time':>11} {'FD / solve':>11}"
          f" {'FD rel. err':>12} {'λ rel. err':>11}")
    rows = []
    for n in sizes:
        x = rng.normal(size=n)
        prog = lp.trace(f, x=x)
        prog.solve(x=x)                                   # compile once, outside the timing
        exact = exact_grad(x)
        t_fd, g_fd = best_time(lambda prog=prog, x=x: central_differences(prog, x, h), 1 if n >= 256 else 3)
        t_lp, sol = best_time(lambda prog=prog, x=x: prog.solve(x=x), 5)
        e_fd, e_lp = rel(g_fd, exact), rel(sol.grad["x"], exact)
        rows.append((n, t_fd, t_lp, e_fd, e_lp))
        print(f"   {n:5d} {2 * n:12d} {t_fd:9.4f}s {t_lp:10.5f}s {t_fd / t_lp:10.1f}x {e_fd:12.1e} {e_lp:11.1e}")
        if e_lp > 1e-12:
            failures.append(f"multipliers inexact at N={n} (rel. error {e_lp:.1e})")
        if not (e_lp < e_fd < 1e-6):
            failures.append(f"finite differences at N={n}: error {e_fd:.1e}")
    ns = np.array([r[0] for r in rows], float)
    slope_fd = np.polyfit(np.log(ns), np.log([r[1] for r in rows]), 1)[0]
    slope_lp = np.polyfit(np.log(ns), np.log([r[2] for r in rows]), 1)[0]
    ratio_growth = (rows[-1][1] / rows[-1][2]) / (rows[0][1] / rows[0][2])
    print(f"\n   log-log slopes: finite differences {slope_fd:.2f}, multipliers {slope_lp:.2f}; "
          f"the FD/solve ratio grew {ratio_growth:.0f}x from N={sizes[0]} to N={sizes[-1]}")
    if ratio_growth < 0.25 * sizes[-1] / sizes[0]:
        failures.append(f"cost ratio grew only {ratio_growth:.1f}x")

    print("\n2. The step-size dilemma of finite differences (N = 16): no h gets near the multipliers\n")
    x = rng.normal(size=16)
    prog = lp.trace(f, x=x)
    exact = exact_grad(x)
    e_lp = rel(prog.solve(x=x).grad["x"], exact)
    print(f"   {'h':>8} {'FD rel. err':>12}")
    steps = np.logspace(-1, -12, 12)
    errs = [rel(central_differences(prog, x, s), exact) for s in steps]
    for s, e in zip(steps, errs):
        print(f"   {s:8.0e} {e:12.1e}")
    print(f"   best FD error {min(errs):.1e} at h = {steps[int(np.argmin(errs))]:.0e}; "
          f"multipliers {e_lp:.1e}")
    if not min(errs) > 10 * max(e_lp, 1e-17):
        failures.append(f"finite differences as accurate as multipliers? (best FD {min(errs):.1e}, "
                        f"multipliers {e_lp:.1e})")

    try:
        import matplotlib
    except ImportError:
        print("\n(matplotlib not installed: no plot; pip install lagrangeprop[plot])")
    else:
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        ax1.loglog(ns, [r[1] for r in rows], "o-", label=f"central differences (slope {slope_fd:.2f})")
        ax1.loglog(ns, [r[2] for r in rows], "s-", label=f"one Lagrangian solve (slope {slope_lp:.2f})")
        ax1.set_xlabel("number of inputs N")
        ax1.set_ylabel("time for the full gradient [s]")
        ax1.legend(fontsize=8)
        ax1.set_title("cost")
        ax2.loglog(steps, errs, "o-", label="central differences")
        ax2.axhline(max(e_lp, 1e-17), color="C1", ls="--", label="multipliers")
        ax2.set_xlabel("step h")
        ax2.set_ylabel("max relative error vs exact")
        ax2.invert_xaxis()
        ax2.legend(fontsize=8)
        ax2.set_title("accuracy (N = 16)")
        fig.tight_layout()
        fig.savefig("finite_differences.png", dpi=120)
        print("\nPlot: finite_differences.png")

    print("\nFAILED: " + ", ".join(failures) if failures else "\nOK: every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
