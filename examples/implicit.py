"""Scalar implicit equations as residual constraints, against closed-form derivatives.

w³ + w = x gives dw/dx = 1/(3w² + 1); w·e^w = x (Lambert W) gives dw/dx = w / (x (1 + w));
Kepler's E - e sin E = M gives dE/dM = 1/(1 - e cos E) and dE/de = sin E / (1 - e cos E).
"""
import sys

import numpy as np
from scipy.special import lambertw

import lagrangeprop as lp

ok, worst = True, 0.0


def report(name, got, want):
    global ok, worst
    err = abs(got - want) / max(1.0, abs(want))
    ok &= err < 1e-10
    worst = max(worst, err)
    print(f"{name:<28} lagrangeprop {got: .15f}   closed form {want: .15f}   rel err {err:.1e}")


cubic = lp.Program(name="cubic"); x = cubic.input("x"); w = cubic.variable("w")
cubic.residual(w, w ** 3 + w - x); cubic.output(w * 1.0, name="w_out")
for xv in (-2.0, 0.5, 2.0, 30.0):
    sol = cubic.solve(x=xv)
    wv = float(sol.values["w"])
    report(f"w³+w=x, x={xv:g}: dw/dx", float(sol.grad["x"]), 1 / (3 * wv ** 2 + 1))

lam = lp.Program(name="lambert"); x = lam.input("x"); w = lam.variable("w")
lam.residual(w, w * lp.exp(w) - x); lam.output(w * 1.0, name="w_out")
for xv in (0.5, 2.0, 10.0):
    sol = lam.solve(x=xv, guess={"w": 1.0})
    W = float(lambertw(xv).real)
    report(f"w e^w = x, x={xv:g}: w", float(sol.values["w"]), W)
    report(f"w e^w = x, x={xv:g}: dw/dx", float(sol.grad["x"]), W / (xv * (1 + W)))

kep = lp.Program(name="kepler"); M = kep.input("M"); e = kep.input("e"); E = kep.variable("E")
kep.residual(E, E - e * lp.sin(E) - M); kep.output(E * 1.0, name="E_out")
sol = kep.solve(M=1.2, e=0.6)
Ev = float(sol.values["E"])
report("Kepler: dE/dM", float(sol.grad["M"]), 1 / (1 - 0.6 * np.cos(Ev)))
report("Kepler: dE/de", float(sol.grad["e"]), np.sin(Ev) / (1 - 0.6 * np.cos(Ev)))
# the picture: w(x) and dw/dx along x for the cubic, multipliers against the closed form
xs = np.linspace(-4.0, 4.0, 33)
sols = [cubic.solve(x=xv) for xv in xs]
ws = np.array([float(s.values["w"]) for s in sols])
dws = np.array([float(s.grad["x"]) for s in sols])
curve_err = float(np.max(np.abs(dws - 1 / (3 * ws ** 2 + 1))))
ok &= curve_err < 1e-10
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no picture (pip install lagrangeprop[plot])")
else:
    fine = np.linspace(-4.0, 4.0, 400)
    wf = np.real([np.roots([1, 0, 1, -xv])[np.argmin(np.abs(np.roots([1, 0, 1, -xv]).imag))] for xv in fine])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(fine, wf, "k-", lw=1, label="real root of w³ + w = x (numpy.roots)")
    ax1.plot(xs, ws, "o", ms=5, mfc="none", label="lagrangeprop: residual block solved")
    ax1.set_xlabel("x"); ax1.set_ylabel("w"); ax1.set_title("the implicit function w(x)")
    ax1.legend(fontsize=8, loc="upper left"); ax1.grid(alpha=0.3)
    ax2.plot(fine, 1 / (3 * wf ** 2 + 1), "k-", lw=1, label="closed form 1/(3w² + 1)")
    ax2.plot(xs, dws, "o", ms=5, mfc="none", label="lagrangeprop: multiplier λ_x")
    ax2.set_xlabel("x"); ax2.set_ylabel("dw/dx"); ax2.set_ylim(0, 1.1)
    ax2.set_title(f"its derivative (max error {curve_err:.0e})")
    ax2.legend(fontsize=8, loc="upper right"); ax2.grid(alpha=0.3)
    fig.tight_layout(); fig.savefig("implicit.png", dpi=120)
    print("saved implicit.png")
print(f"OK: all derivatives match the closed forms (max error {max(worst, curve_err):.0e})" if ok
      else f"FAILED: a derivative differs from its closed form (max error {max(worst, curve_err):.1e})")
sys.exit(0 if ok else 1)
