"""Scalar implicit equations as residual constraints, against closed-form derivatives.

w³ + w = x gives dw/dx = 1/(3w² + 1); w·e^w = x (Lambert W) gives dw/dx = w / (x (1 + w));
Kepler's E - e sin E = M gives dE/dM = 1/(1 - e cos E) and dE/de = sin E / (1 - e cos E).
"""
import sys

import numpy as np
from scipy.special import lambertw

import lagrangeprop as lp

ok = True


def report(name, got, want):
    global ok
    err = abs(got - want) / max(1.0, abs(want))
    ok &= err < 1e-10
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
print("OK: all derivatives match the closed forms" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
