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

ok, worst = True, 0.0
print(f"blocks: {prog.blocks}")
for method, linear_solver in [("auto", "auto"), ("newton", "direct"), ("newton-krylov", "gmres"),
                              ("fixed-point", "bicgstab"), ("anderson", "direct")]:
    sol = prog.solve(x=1.0, z=np.array([5.0, 2.0]), guess={"y1": 1.0, "y2": 1.0},
                     method=method, linear_solver=linear_solver)
    g = np.r_[sol.grad["x"], sol.grad["z"]]
    err = float(np.max(np.abs(g - PUBLISHED)))
    ok &= err < 1e-8
    worst = max(worst, err)
    print(f"{method:>13} / {linear_solver:<8} obj = {float(sol.output):.8f}  d obj/d(x, z) = "
          f"{np.array2string(g, precision=8)}  |err| = {err:.1e}  kkt = {sol.kkt()['primal']:.1e}")
print(sol.report())
try:
    import matplotlib  # noqa: F401
except ImportError:
    print("matplotlib not installed: no picture (pip install lagrangeprop[plot])")
else:
    path = lp.draw(prog, sol, path="sellar_graph.png", constants=False, dpi=90,
                   title="Sellar MDA: y1 and y2 depend on each other (tinted block, solved together); "
                         f"obj = {float(sol.output):.6f}, λ of every node")
    print(f"saved {path}")
print(f"OK: totals match OpenMDAO's published values to 1e-8 with every method (max error {worst:.1e})" if ok
      else f"FAILED: totals differ from OpenMDAO's published values by {worst:.1e} (> 1e-8)")
sys.exit(0 if ok else 1)
