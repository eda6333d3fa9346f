"""The worked example: backpropagation is the method of Lagrange multipliers.

    f(x) = exp(exp(x) + exp(x)²) + sin(exp(x) + exp(x)²)

Written as constraints  a = exp(x), b = a², c = a + b, d = exp(c), e = sin(c), out = d + e,
the Lagrangian is  L = out - Σ_d λ_d (z_d - f_d(parents)).  Its stationarity conditions are the
forward pass (∂L/∂λ = 0), the multiplier equations solved by back-substitution (∂L/∂z = 0), and
the gradient λ_x = ∂L/∂x = f'(x).

This script prints the multiplier table, checks λ_x against the hand-derived derivative, checks
L == output at the solution and the KKT residuals, checks prog.lagrangian_grad at a point that
is NOT a solution against finite differences of prog.lagrangian, and draws the graph. With
--source it also prints prog.source(): the forward pass and the multiplier back-substitution as
the straight-line Python that prog.solve runs, each line commented with its equation.
Exit status 1 if any check fails.

    python examples/blog_example.py [--source]
"""

import sys

import numpy as np

import lagrangeprop as lp


def f(x):
    a = lp.exp(x)
    b = a**2
    c = a + b
    d = lp.exp(c)
    e = lp.sin(c)
    return d + e


def f_prime(x):
    """By hand: f'(x) = (exp(c) + cos(c)) · (a + 2a²), a = eˣ, c = a + a²."""
    a = np.exp(x)
    c = a + a * a
    return (np.exp(c) + np.cos(c)) * (a + 2 * a * a)


def main(argv: list[str] | None = None) -> int:
    show_source = "--source" in (sys.argv[1:] if argv is None else argv)
    x0 = 0.5
    prog = lp.trace(f, x=x0)
    sol = prog.solve(x=x0)
    failures = []

    print(__doc__.split("\n\n")[1].strip(), "\n")
    print("1. Forward values and multipliers (λ_v = ∂f/∂z_v; λ_x is the gradient)\n")
    print(sol.report())

    exact = f_prime(x0)
    rel = abs(sol.grad["x"] - exact) / abs(exact)
    print(f"\n   λ_x = {float(sol.grad['x']):.15g}   hand-derived f'(x) = {exact:.15g}   "
          f"rel. error {rel:.1e}")
    if rel > 1e-13:
        failures.append(f"gradient (rel. error {rel:.1e})")

    # The multipliers obey back-substitution λ_u = Σ_children (∂f_d/∂z_u) λ_d: spell it out.
    m, v = sol.multipliers, sol.values
    by_hand = {"e": 1.0, "d": 1.0}
    by_hand["c"] = np.exp(v["c"]) * by_hand["d"] + np.cos(v["c"]) * by_hand["e"]
    by_hand["b"] = by_hand["c"]
    by_hand["a"] = by_hand["c"] + 2 * v["a"] * by_hand["b"]
    by_hand["x"] = np.exp(x0) * by_hand["a"]
    print("\n2. Back-substitution by hand, node by node\n")
    print(f"   {'node':4}  {'rule':34}  {'by hand':>14}  {'multiplier':>14}")
    rules = {"e": "λ_e = λ_out", "d": "λ_d = λ_out", "c": "λ_c = exp(c) λ_d + cos(c) λ_e",
             "b": "λ_b = λ_c", "a": "λ_a = λ_c + 2a λ_b", "x": "λ_x = exp(x) λ_a"}
    for k in ["e", "d", "c", "b", "a", "x"]:
        print(f"   {k:4}  {rules[k]:34}  {by_hand[k]:14.8g}  {float(m[k]):14.8g}")
        if abs(by_hand[k] - m[k]) > 1e-12 * max(1.0, abs(by_hand[k])):
            failures.append(f"multiplier {k} (error {abs(by_hand[k] - m[k]):.1e})")

    print("\n3. The Lagrangian at the solution and the KKT certificate\n")
    L = prog.lagrangian(sol)
    kkt = sol.kkt()
    print(f"   L(x, z, λ) = {L:.15g}   output = {float(sol.output):.15g}   (constraints hold: L = z_o)")
    print(f"   KKT residuals: primal (∂L/∂λ = -c) {kkt['primal']:.1e}, adjoint (∂L/∂z) {kkt['adjoint']:.1e}")
    if abs(L - sol.output) > 1e-12 * abs(sol.output) or max(kkt.values()) > 1e-10:
        failures.append(f"lagrangian / kkt (|L - z_o| {abs(L - sol.output):.1e}, kkt {max(kkt.values()):.1e})")

    print("\n4. ∇L at a point that is NOT a solution vs central differences of prog.lagrangian\n")
    rng = np.random.default_rng(0)
    xs = {"x": x0 + 0.1}
    zs = {k: float(val) * (1 + 0.05 * rng.standard_normal()) for k, val in sol.values.items() if k != "x"}
    ls = {k: float(val) + 0.3 * rng.standard_normal() for k, val in sol.multipliers.items() if k != "x"}
    gx, gz, glam = prog.lagrangian_grad(xs, zs, ls)
    h = 1e-6
    print(f"   {'variable':10} {'lagrangian_grad':>18}  {'finite diff.':>18}  {'abs err':>8}")
    worst = 0.0
    def L_at(kind, point):
        return prog.lagrangian(*{"x": (point, zs, ls), "z": (xs, point, ls), "λ": (xs, zs, point)}[kind])

    for kind, point, analytic in (("x", xs, gx), ("z", zs, gz), ("λ", ls, glam)):
        for k in point:
            up, dn = dict(point), dict(point)
            up[k] += h
            dn[k] -= h
            fd = (L_at(kind, up) - L_at(kind, dn)) / (2 * h)
            err = abs(fd - analytic[k])
            worst = max(worst, err / max(1.0, abs(fd)))
            print(f"   ∂L/∂{kind}[{k}]".ljust(14) + f"{float(analytic[k]):18.10g}  {fd:18.10g}  {err:8.1e}")
    print(f"\n   worst relative error {worst:.1e}  (∂L/∂λ = -c ≠ 0 here: not a solution)")
    if worst > 1e-6:
        failures.append(f"lagrangian_grad (rel. error {worst:.1e})")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("\n(matplotlib not installed: no graph picture; pip install lagrangeprop[plot])")
    else:
        print(f"\nGraph with values and multipliers: {lp.draw(prog, sol, path='blog_graph.png')}")

    src = prog.source()
    if show_source:
        print("\n5. The same solve as code: prog.source() (forward: ∂L/∂λ = 0, adjoint: ∂L/∂z = 0)\n")
        print(src)
    else:
        print("\n(--source prints prog.source(): this solve as straight-line Python, one line per equation)")
    if "def adjoint" not in src or "lam_x" not in src:
        failures.append("source")

    print("\nFAILED: " + ", ".join(failures) if failures else "\nOK: every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
