"""L2-regularized logistic regression to convergence, gradients from Lagrange multipliers.

Data: scikit-learn's bundled breast-cancer dataset (569 x 30) when scikit-learn is
importable (it is not a dependency of lagrangeprop); otherwise a synthetic dataset of
the same shape from a seeded RNG, and the script says so. Nothing is downloaded.

loss(w, b) = mean(log(1 + exp(-y (X w + b)))) + α/2 |w|², y in {-1, +1}, standardized X.
Compared (same objective, same start, same tolerances):

* lagrangeprop L-BFGS-B (multiplier gradient) and Newton-CG (exact Hessian-vector products),
* scipy L-BFGS-B with a hand-written closed-form numpy gradient,
* scipy L-BFGS-B with HIPS autograd's gradient (when autograd is importable).

Prints a table and a verdict, and saves logistic_convergence.png when matplotlib is importable.
LAGRANGEPROP_QUICK=1 uses a subsample and runs in a few seconds.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import scipy.optimize as so
from scipy.special import expit

import lagrangeprop as lp

QUICK = os.environ.get("LAGRANGEPROP_QUICK") == "1"
ALPHA = 1e-2


def load():
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError:
        rng = np.random.default_rng(0)
        n, d = 569, 30
        X = rng.standard_normal((n, d)) @ (np.eye(d) + 0.3 * rng.standard_normal((d, d)))
        w_true = rng.standard_normal(d)
        y = np.where(rng.random(n) < expit(X @ w_true / 3.0), 1.0, 0.0)
        return X, y, "synthetic data (scikit-learn is not installed; seeded RNG, 569 x 30)"
    data = load_breast_cancer()
    return data.data, data.target.astype(float), "scikit-learn breast-cancer data (569 x 30)"


X_RAW, Y01, SOURCE = load()
if QUICK:
    X_RAW, Y01 = X_RAW[:200], Y01[:200]
X = (X_RAW - X_RAW.mean(axis=0)) / X_RAW.std(axis=0)
Y = 2.0 * Y01 - 1.0
N, D = X.shape


def loss(w, b):
    margin = Y * (X @ w + b)
    return lp.mean(lp.logaddexp(0.0, -margin)) + 0.5 * ALPHA * lp.sum(w * w)


def numpy_loss_grad(theta):
    """Closed form: ∇_w = -Xᵀ(y σ(-m))/n + α w, ∇_b = -mean(y σ(-m))."""
    w, b = theta[:D], theta[D]
    m = Y * (X @ w + b)
    f = np.mean(np.logaddexp(0.0, -m)) + 0.5 * ALPHA * w @ w
    s = -Y * expit(-m) / N
    return f, np.concatenate([X.T @ s + ALPHA * w, [np.sum(s)]])


def accuracy(theta):
    return float(np.mean(np.sign(X @ theta[:D] + theta[D]) == Y))


def main() -> int:
    prog = lp.trace(loss, w=np.zeros(D), b=0.0)
    x0 = {"w": np.zeros(D), "b": 0.0}
    opts = {"maxiter": 500, "gtol": 1e-10, "ftol": 1e-15}
    rows, curves = [], {}

    t0 = time.perf_counter()
    res = lp.minimize(prog, x0, method="L-BFGS-B", options=opts)
    theta = np.concatenate([res.x_dict["w"], [res.x_dict["b"]]])
    rows.append(("lagrangeprop L-BFGS-B", res.nit, res.nfev, res.fun, theta, time.perf_counter() - t0))
    curves["lagrangeprop L-BFGS-B"] = res.history

    t0 = time.perf_counter()
    res = lp.minimize(prog, x0, method="Newton-CG", options={"xtol": 1e-12, "maxiter": 100})
    theta = np.concatenate([res.x_dict["w"], [res.x_dict["b"]]])
    rows.append(("lagrangeprop Newton-CG (hvp)", res.nit, res.nfev, res.fun, theta, time.perf_counter() - t0))
    curves["lagrangeprop Newton-CG (hvp)"] = res.history

    hist: list = []
    t0 = time.perf_counter()
    r = so.minimize(numpy_loss_grad, np.zeros(D + 1), jac=True, method="L-BFGS-B", options=opts,
                    callback=lambda xk: hist.append(numpy_loss_grad(xk)[0]))
    rows.append(("scipy + closed-form gradient", r.nit, r.nfev, r.fun, r.x, time.perf_counter() - t0))
    curves["scipy + closed-form gradient"] = [numpy_loss_grad(np.zeros(D + 1))[0], *hist]

    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        print("autograd not installed: skipping the autograd row")
    else:
        def ag_loss(theta):
            m = Y * (anp.dot(X, theta[:D]) + theta[D])
            return anp.mean(anp.logaddexp(0.0, -m)) + 0.5 * ALPHA * anp.sum(theta[:D] ** 2)
        t0 = time.perf_counter()
        r = so.minimize(autograd.value_and_grad(ag_loss), np.zeros(D + 1), jac=True, method="L-BFGS-B",
                        options=opts)
        rows.append(("scipy + autograd gradient", r.nit, r.nfev, r.fun, r.x, time.perf_counter() - t0))

    print(f"logistic regression on {SOURCE}{' (quick mode: first 200 rows)' if QUICK else ''}, "
          f"alpha = {ALPHA}")
    ref = rows[2][4]
    print(f"{'method':32s} {'iters':>6s} {'fevals':>7s} {'final loss':>14s} {'|grad|':>9s} "
          f"{'max|θ-θ_np|':>12s} {'accuracy':>9s} {'time s':>7s}")
    for label, nit, nfev, f, theta, dt in rows:
        g = np.linalg.norm(numpy_loss_grad(theta)[1])
        print(f"{label:32s} {nit:6d} {nfev:7d} {f:14.10f} {g:9.1e} {np.max(np.abs(theta - ref)):12.1e} "
              f"{accuracy(theta):9.4f} {dt:7.3f}")

    worst = max(float(np.max(np.abs(theta - ref))) for _, _, _, _, theta, _ in rows)
    dloss = max(abs(f - rows[2][3]) for _, _, _, f, _, _ in rows)
    ok = worst < 1e-5 and dloss < 1e-12
    verdict = (("OK: " if ok else "FAILED: ") + f"every optimizer reaches the closed-form-gradient optimum "
               f"(max|θ-θ_np| = {worst:.1e}, loss difference {dloss:.1e})")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        print(verdict)
        return 0 if ok else 1
    fstar = min(r[3] for r in rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"lagrangeprop L-BFGS-B": dict(lw=5, alpha=0.45, color="C0"),
              "lagrangeprop Newton-CG (hvp)": dict(lw=2, marker="s", ms=4, color="C1"),
              "scipy + closed-form gradient": dict(lw=1.2, ls="--", marker=".", ms=5, color="k")}
    for label, h in curves.items():
        ax1.semilogy(np.maximum(np.asarray(h) - fstar, 1e-16), label=label, **styles.get(label, {}))
    ax1.set_xlabel("iteration"); ax1.set_ylabel("loss − best loss (floor 1e-16)")
    data = "breast-cancer data" if SOURCE.startswith("scikit") else "synthetic data: no scikit-learn"
    ax1.set_title(f"L2 logistic regression, {N} × {D} ({data}):\nloss gap per iteration", fontsize=11)
    ax1.legend(fontsize=8, title="the wide blue line runs under the dashed one", title_fontsize=8)
    a, b = np.asarray(curves["lagrangeprop L-BFGS-B"]), np.asarray(curves["scipy + closed-form gradient"])
    k = min(a.size, b.size)
    ax2.semilogy(np.maximum(np.abs(a[:k] - b[:k]), 1e-18), "o-", ms=3, color="C0")
    ax2.axhline(np.finfo(float).eps * fstar, color="0.5", lw=0.8, ls=":")
    ax2.text(0, np.finfo(float).eps * fstar * 1.5, "eps · loss", fontsize=8, color="0.4")
    ax2.set_ylim(3e-19, 1e-14)
    ax2.set_xlabel("iteration"); ax2.set_ylabel("|loss difference| (0 drawn at 1e-18)")
    ax2.set_title("L-BFGS-B, multiplier vs closed-form gradient:\nthe same iterates to round-off", fontsize=11)
    fig.tight_layout(); fig.savefig("logistic_convergence.png", dpi=120)
    print("saved logistic_convergence.png")
    print(verdict)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
