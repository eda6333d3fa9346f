"""The Sellar coupled system (OpenMDAO's classic MDA): totals by Lagrange multipliers.

y1 = z0² + z1 + x - 0.2 y2 and y2 = √y1 + z0 + z1 form a cyclic block; the objective
x² + z1 + y1 + e^(-y2) has totals d obj/d(x, z0, z1) = 2.98061391, 9.61001056, 1.78448534
(OpenMDAO's published values at x = 1, z = (5, 2)). Every block solver gives them.
"""
import sys

import numpy as np

import lagrangeprop as lp

PUBLISHED = np.array([2.98061391, 9.61001056, 1.78448534])

prog = lp.Program(name="sellar")
x = prog.input("x"); z = prog.input("z", shape=(2,))
y1 = prog.variable("y1"); y2 = prog.variable("y2")
prog.define(y1, z[0] ** 2 + z[1] + x - 0.2 * y2)
prog.define(y2, lp.sqrt(y1) + z[0] + z[1])
prog.output(x ** 2 + z[1] + y1 + lp.exp(-y2), name="obj")

ok = True
print(f"blocks: {prog.blocks}")
for method, linear_solver in [("auto", "auto"), ("newton", "direct"), ("newton-krylov", "gmres"),
                              ("fixed-point", "bicgstab"), ("anderson", "direct")]:
    sol = prog.solve(x=1.0, z=np.array([5.0, 2.0]), guess={"y1": 1.0, "y2": 1.0},
                     method=method, linear_solver=linear_solver)
    g = np.r_[sol.grad["x"], sol.grad["z"]]
    err = float(np.max(np.abs(g - PUBLISHED)))
    ok &= err < 1e-8
    print(f"{method:>13} / {linear_solver:<8} obj = {float(sol.output):.8f}  d obj/d(x, z) = "
          f"{np.array2string(g, precision=8)}  |err| = {err:.1e}  kkt = {sol.kkt()['primal']:.1e}")
print(sol.report())
print("OK: totals match OpenMDAO's published values to 1e-8" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
