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


# ------------------------------------------------ badly scaled blocks (SPEC §1 "Scale")
# Coefficients from 1e-15 to 1e15. Each builder returns a ScaledCase: the program, its inputs and
# guess, and a reference computed without lagrangeprop: the root by scipy (brentq in 1-D,
# scipy.optimize.root otherwise, polished by Newton steps), the Jacobians ∂r/∂z, ∂r/∂x and ∂o/∂(z, x)
# by complex-step differentiation of the same equations written in numpy (exact to rounding), and
# the gradient by the implicit function theorem, dz/dx = -A⁻¹ ∂r/∂x.
VT = 0.025875     # thermal voltage (V)


class ScaledCase:
    """``prog``, ``inputs``, ``guess``; ``unknowns`` (names, in ``F``'s order), ``values`` (the reference
    root, by name), ``grad`` (the reference gradient, by input name)."""

    def __init__(self, name, prog, inputs, guess, unknowns, F, out, z0, explicit=False, brent=None):
        self.name, self.prog, self.inputs, self.guess = name, prog, inputs, guess
        self.unknowns, self.explicit = unknowns, explicit
        xnames = list(inputs)
        x = np.array([float(inputs[k]) for k in xnames])
        z = _root(F, x, np.asarray(z0, dtype=float), brent)
        A = _cs_jac(lambda zz: F(zz, x), z)
        B = _cs_jac(lambda xx: F(z, xx), x)
        oz = _cs_jac(lambda zz: np.atleast_1d(out(zz, x)), z)[0]
        ox = _cs_jac(lambda xx: np.atleast_1d(out(z, xx)), x)[0]
        dz = -np.linalg.solve(A, B)                  # the implicit function theorem
        g = ox + oz @ dz
        self.values = dict(zip(unknowns, z))
        self.grad = dict(zip(xnames, g))
        self.output = float(out(z, x))
        self.F, self.x = F, x

    def __repr__(self) -> str:
        return f"ScaledCase({self.name})"


def sin_chain(n: int) -> lp.Program:
    """``out = sin(sin(...sin(x)...)) · 1``, ``n`` sines: the long-program size tests' chain."""
    prog = lp.Program(name="chain")
    z = prog.input("x")
    for _ in range(n):
        z = lp.sin(z)
    prog.output(z * 1.0, name="out")
    return prog


def _cs_jac(f, z: np.ndarray, h: float = 1e-200) -> np.ndarray:
    """``∂f/∂z`` by complex steps: ``Im f(z + i h e_j) / h`` (no subtraction, exact to rounding)."""
    cols = []
    for j in range(z.size):
        zz = z.astype(complex)
        zz[j] += 1j * h
        cols.append(np.imag(f(zz)) / h)
    return np.stack(cols, axis=1)


def _root(F, x, z0, brent):
    from scipy.optimize import brentq, root
    if brent is not None:
        z = np.array([brentq(lambda w: float(F(np.array([w]), x)[0]), *brent, xtol=1e-300, rtol=8.9e-16,
                             maxiter=500)])
    else:
        res = root(lambda zz: F(zz, x), z0, jac=lambda zz: _cs_jac(lambda q: F(q, x), zz), method="hybr",
                   tol=1e-13)
        z = res.x
    for _ in range(4):                               # Newton polish in numpy
        step = np.linalg.solve(_cs_jac(lambda q: F(q, x), z), F(z, x))
        z = z - step
    assert np.all(np.abs(step) <= 1e-13 * np.abs(z)), (z, step)     # converged to rounding
    return z


def diode_case() -> ScaledCase:
    """A diode written as OpenMDAO writes it: ``Is·exp(w/Vt) - x = 0`` (Is = 1e-15 A, x = 1 mA);
    the guess 0.9 V is far from the root 0.71495 V but has |r| ≈ 1.27 next to an exp of 1e15."""
    prog = lp.Program(name="diode")
    x, Is = prog.input("x"), prog.input("Is")
    w = prog.variable("w")
    prog.residual(w, Is * lp.exp(w / VT) - x)
    prog.output(w * 1.0, name="out")

    def F(z, xv):
        return np.array([xv[1] * np.exp(z[0] / VT) - xv[0]])
    return ScaledCase("diode", prog, {"x": 1e-3, "Is": 1e-15}, {"w": 0.9}, ["w"], F,
                      lambda z, xv: z[0], [0.9], brent=(0.3, 1.2))


def diode_pair_case() -> ScaledCase:
    """A source V through a resistor R into two diodes in series (Is 1e-14 A and 1e-15 A): KCL at the
    two nodes, in amperes (terms ~3.5e-3 A next to exp(...) ~ 1e11); output the current in A."""
    Is1, Is2 = 1e-14, 1e-15
    prog = lp.Program(name="diode_pair")
    V, R = prog.input("V"), prog.input("R")
    v1, v2 = prog.variable("v1"), prog.variable("v2")
    i1 = Is1 * (lp.exp((v1 - v2) / VT) - 1.0)
    prog.residual(v1, (V - v1) / R - i1)
    prog.residual(v2, i1 - Is2 * (lp.exp(v2 / VT) - 1.0))
    prog.output((V - v1) / R, name="current")

    def F(z, xv):
        i1 = Is1 * (np.exp((z[0] - z[1]) / VT) - 1.0)
        return np.array([(xv[0] - z[0]) / xv[1] - i1, i1 - Is2 * (np.exp(z[1] / VT) - 1.0)])
    inputs = {"V": 5.0, "R": 1e3}
    return ScaledCase("diode_pair", prog, inputs, {"v1": 1.45, "v2": 0.76}, ["v1", "v2"], F,
                      lambda z, xv: (xv[0] - z[0]) / xv[1], [1.40, 0.73])


def robertson_case() -> ScaledCase:
    """Robertson's stiff kinetics (rates 0.04, 1e4, 3e7) in a stirred tank fed pure species 1 at
    rate k: the steady state has y2 ≈ 4e-5 next to terms 3e7·y2²; output y2."""
    k1, k2, k3 = 0.04, 1e4, 3e7
    prog = lp.Program(name="robertson")
    k, y_in = prog.input("k"), prog.input("y_in")
    y1, y2, y3 = prog.variable("y1"), prog.variable("y2"), prog.variable("y3")
    prog.residual(y1, -k1 * y1 + k2 * y2 * y3 + k * (y_in - y1))
    prog.residual(y2, k1 * y1 - k2 * y2 * y3 - k3 * y2 ** 2 - k * y2)
    prog.residual(y3, k3 * y2 ** 2 - k * y3)
    prog.output(y2 * 1.0, name="y2_out")

    def F(z, xv):
        a, b, c = z
        kk, yi = xv
        return np.array([-k1 * a + k2 * b * c + kk * (yi - a), k1 * a - k2 * b * c - k3 * b ** 2 - kk * b,
                         k3 * b ** 2 - kk * c])
    return ScaledCase("robertson", prog, {"k": 1.0, "y_in": 1.0}, {"y1": 0.9, "y2": 1e-4, "y3": 0.05},
                      ["y1", "y2", "y3"], F, lambda z, xv: z[1], [0.96, 3.6e-5, 0.04])


def units_case() -> ScaledCase:
    """Two coupled residuals in mismatched units, one in 1e9 units and one in 1e-6, and an explicit
    member of size 1e12 in the same block; output a·b."""
    prog = lp.Program(name="units")
    x, y = prog.input("x"), prog.input("y")
    a, b, q = prog.variable("a"), prog.variable("b"), prog.variable("q")
    prog.define(q, 1e12 * lp.exp(-b))
    prog.residual(a, 1e9 * a - 5e8 * lp.tanh(b) - 1e9 * x + 1e-4 * q)
    prog.residual(b, 1e-6 * b - 3e-7 * lp.sin(a) - 1e-6 * y)
    prog.output(a * b, name="ab")

    def F(z, xv):
        aa, bb = z
        return np.array([1e9 * aa - 5e8 * np.tanh(bb) - 1e9 * xv[0] + 1e-4 * 1e12 * np.exp(-bb),
                         1e-6 * bb - 3e-7 * np.sin(aa) - 1e-6 * xv[1]])
    case = ScaledCase("units", prog, {"x": 0.2, "y": 1.5}, {"a": 0.0, "b": 1.0}, ["a", "b"], F,
                      lambda z, xv: z[0] * z[1], [0.5, 1.6])
    case.values["q"] = 1e12 * np.exp(-case.values["b"])
    return case


def explicit_units_case() -> ScaledCase:
    """An explicit (Gauss–Seidel contractive) cycle with one member near 1e10 and one near 1: the
    old block-wide test accepted an O(1) error in v. Output u·1e-10 + v."""
    prog = lp.Program(name="explicit_units")
    x, y = prog.input("x"), prog.input("y")
    u, v = prog.variable("u"), prog.variable("v")
    prog.define(u, 1e10 * (0.3 * lp.tanh(v) + x))
    prog.define(v, 4e-11 * u + y)
    prog.output(1e-10 * u + v, name="o")

    def F(z, xv):
        uu, vv = z
        return np.array([uu - 1e10 * (0.3 * np.tanh(vv) + xv[0]), vv - (4e-11 * uu + xv[1])])
    return ScaledCase("explicit_units", prog, {"x": 0.5, "y": 0.25}, {}, ["u", "v"], F,
                      lambda z, xv: 1e-10 * z[0] + z[1], [5e9, 0.5], explicit=True)


SCALED_CASES = {c.__name__[:-5]: c for c in (diode_case, diode_pair_case, robertson_case, units_case,
                                             explicit_units_case)}
