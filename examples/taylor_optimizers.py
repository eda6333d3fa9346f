"""Fit a degree-8 Taylor-form polynomial of sin, center included, with four optimizers.

Model: p(t) = Σ_{k=0}^{8} c_k (t - a)^k (Horner's scheme), trainable c_0..c_8 *and* the
center a; loss = mean((p(t) - sin t)²) on t in [-1.5, 1.5]. The Program is traced
once; every optimizer solves it many times:

* gradient descent (Armijo backtracking) on the multiplier gradient,
* L-BFGS-B (scipy) with the multiplier gradient,
* Newton-CG (scipy) with exact Hessian-vector products (forward-over-reverse),
* full space: trust-constr over (c, a, every intermediate) with the program's
  constraints as equalities, their sparse Jacobian and the Lagrangian Hessian.

The polynomial family is the same for every center, so the minimizers form a curve; at
any point of it the low-order coefficients are close to sin's Taylor coefficients
sin^(k)(a)/k! (exactly Taylor only as the interval shrinks). Prints a comparison table;
saves taylor_convergence.png when matplotlib is importable. LAGRANGEPROP_QUICK=1 runs
a shortened version in a few seconds.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

import lagrangeprop as lp

QUICK = os.environ.get("LAGRANGEPROP_QUICK") == "1"
DEGREE = 8
T = np.linspace(-1.5, 1.5, 31 if QUICK else 61)
Y = np.sin(T)


def loss(c, a):
    u = T - a
    p = c[DEGREE]
    for k in range(DEGREE - 1, -1, -1):   # Horner: p = (...(c8 u + c7) u + ...) + c0
        p = p * u + c[k]
    r = p - Y
    return lp.mean(r * r)


PROG = lp.trace(loss, c=np.zeros(DEGREE + 1), a=0.0)
X0 = {"c": np.zeros(DEGREE + 1), "a": 0.4}


def flat(d):
    return np.concatenate([np.ravel(d["c"]), [float(d["a"])]])


def gradient_descent(iters: int):
    """Steepest descent with Armijo backtracking; one solve per trial point."""
    x, history, solves = dict(X0), [], 0
    step = 1.0
    sol = PROG.solve(**x); solves += 1
    for _ in range(iters):
        history.append(float(sol.output))
        g = sol.grad
        gg = float(np.sum(g["c"] ** 2) + g["a"] ** 2)
        while True:
            trial = {"c": x["c"] - step * g["c"], "a": x["a"] - step * g["a"]}
            new = PROG.solve(**trial); solves += 1
            if new.output <= sol.output - 1e-4 * step * gg or step < 1e-12:
                break
            step *= 0.5
        x, sol = trial, new
        step *= 2.0
    history.append(float(sol.output))
    return x, sol, len(history) - 1, solves, history


def main() -> int:
    rows, curves = [], {}
    gd_iters = 150 if QUICK else 3000
    t0 = time.perf_counter()
    x, sol, nit, nsolves, hist = gradient_descent(gd_iters)
    rows.append(("gradient descent", nit, nsolves, 0, sol.output, flat(sol.grad), time.perf_counter() - t0, x))
    curves["gradient descent"] = hist

    for method, label in (("L-BFGS-B", "L-BFGS-B"), ("Newton-CG", "Newton-CG (exact hvp)")):
        opts = {"maxiter": 100 if QUICK else 2000}
        if method == "L-BFGS-B":
            opts.update(ftol=1e-16, gtol=1e-12, maxcor=30)
        else:
            opts.update(xtol=1e-12)
        t0 = time.perf_counter()
        res = lp.minimize(PROG, X0, method=method, options=opts)
        rows.append((label, res.nit, res.nsolves, res.nhessp, res.fun, flat(res.solution.grad),
                     time.perf_counter() - t0, res.x_dict))
        curves[label] = res.history

    t0 = time.perf_counter()
    violation = [0.0]     # the start is a nested solve: feasible; then trust-constr's violation per iterate
    res = lp.minimize_full_space(PROG, X0, options={"maxiter": 150 if QUICK else 1000,
                                                    "gtol": 1e-12, "xtol": 1e-14},
                                 callback=lambda yk, state: violation.append(state.constr_violation))
    rows.append(("full space (trust-constr)", res.nit, res.nfev, 0, res.solution.output,
                 flat(res.solution.grad), time.perf_counter() - t0, res.x_dict))
    curves["full space (trust-constr)"] = res.history

    print(f"degree-{DEGREE} Taylor-form fit of sin on [{T[0]}, {T[-1]}], {T.size} points"
          f"{' (quick mode)' if QUICK else ''}")
    print(f"{'method':28s} {'iters':>6s} {'solves':>7s} {'hvps':>5s} {'final loss':>12s} "
          f"{'|grad|':>10s} {'time s':>7s} {'center a':>9s}")
    for label, nit, ns, nh, f, g, dt, x in rows:
        print(f"{label:28s} {nit:6d} {ns:7d} {nh:5d} {f:12.3e} {np.linalg.norm(g):10.2e} {dt:7.2f} "
              f"{float(x['a']):9.4f}")
    dlam = max(float(np.max(np.abs(res.multipliers[k] - res.solution.multipliers[k]))) for k in res.multipliers)
    print(f"full space: constraint violation {res.constr_violation:.1e}; its multipliers (-v from "
          f"trust-constr) vs the nested solve's at its optimum: max |Δλ| = {dlam:.1e}")

    best = min(rows, key=lambda r: r[4])
    a = float(best[7]["a"])
    taylor = [math.sin(a + k * math.pi / 2) / math.factorial(k) for k in range(DEGREE + 1)]
    print(f"\ncoefficients of the best fit ({best[0]}) vs sin's Taylor coefficients at a = {a:.4f}:")
    for k, (ck, tk) in enumerate(zip(best[7]["c"], taylor)):
        print(f"  c{k} = {ck: .8f}   sin^({k})(a)/{k}! = {tk: .8f}")

    # independent reference: at the best center the fit is linear least squares in c (numpy's lstsq)
    V = np.vander(T - a, DEGREE + 1, increasing=True)
    c_ls = np.linalg.lstsq(V, Y, rcond=None)[0]
    loss_ls = float(np.mean((V @ c_ls - Y) ** 2))
    gap = float(best[4]) - loss_ls
    print(f"numpy lstsq at a = {a:.4f}: loss {loss_ls:.3e}; best fit's loss - lstsq's = {gap:.1e}")
    ok = gap < 1e-10 and dlam < 1e-6 and res.constr_violation < 1e-10
    verdict = (f"loss {float(best[4]):.1e} within {max(gap, 0.0):.0e} of numpy lstsq at its center, "
               f"full-space multipliers = nested ones to {dlam:.0e}")
    verdict = ("OK: " if ok else "FAILED: ") + verdict
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        print(verdict)
        return 0 if ok else 1
    floor = 1e-16     # below this the loss is round-off: draw it on the floor, not at 1e-300
    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = ["-", "--", "-.", ":"]
    for i, (label, h) in enumerate(curves.items()):
        it = np.arange(1, len(h) + 1)   # log-log: the fast optimizers' few steps stay visible
        h = np.clip(np.asarray(h, dtype=float), floor, None)
        if not label.startswith("full space"):
            ax.loglog(it, h, styles[i % 4], lw=2, label=label)
            continue
        # the full-space iterates satisfy the program's constraints only at the end: its objective is
        # not the loss until then (it may even be negative); hollow markers show those iterates
        cv = np.asarray(violation[:len(h)], dtype=float)
        feasible = cv <= 1e-10
        line, = ax.loglog(it, h, ":", lw=2, label=label + ": objective")
        ax.loglog(it[~feasible], h[~feasible], "o", mfc="none", color=line.get_color(), ms=5,
                  label="   (hollow: constraints violated there)")
        ax.loglog(it[feasible], h[feasible], "o", color=line.get_color(), ms=4)
        ax.loglog(it, np.clip(cv, floor, None), "-", lw=0.8, color=line.get_color(), alpha=0.6,
                  label="   its constraint violation")
    # trial points above the start are off-scale
    ax.set_ylim(floor / 3, 10 * max(float(h[0]) for h in curves.values()))
    ax.axhline(floor, color="0.6", lw=0.8)
    ax.text(1.2, floor * 2, "round-off floor (values below drawn here)",
            fontsize=8, color="0.4")
    ax.set_xlabel("iteration (log scale)"); ax.set_ylabel("loss (mean squared error)\nor constraint violation")
    ax.set_title(f"degree-{DEGREE} Taylor-form fit of sin: coefficients and center, four optimizers")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.06), fontsize=9)   # the empty corner
    fig.tight_layout(); fig.savefig("taylor_convergence.png", dpi=120)
    print("saved taylor_convergence.png")
    print(verdict)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
