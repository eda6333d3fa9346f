"""Programs shared by several test modules (one definition each)."""

import numpy as np

import lagrangeprop as lp

SELLAR_INPUTS = {"x": 1.0, "z": np.array([5.0, 2.0])}
SELLAR_GUESS = {"y1": 1.0, "y2": 1.0}
# OpenMDAO's published totals d obj / d(x, z0, z1) at x = 1, z = (5, 2)
SELLAR_TOTALS = np.array([2.98061391, 9.61001056, 1.78448534])


def sellar_program() -> lp.Program:
    """The Sellar MDA: the coupled pair y1, y2 forms one cyclic block."""
    prog = lp.Program(name="sellar")
    x = prog.input("x")
    z = prog.input("z", shape=(2,))
    y1, y2 = prog.variable("y1"), prog.variable("y2")
    prog.define(y1, z[0] ** 2 + z[1] + x - 0.2 * y2)
    prog.define(y2, lp.sqrt(y1) + z[0] + z[1])
    prog.output(x ** 2 + z[1] + y1 + lp.exp(-y2), name="obj")
    return prog
