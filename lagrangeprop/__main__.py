"""``python -m lagrangeprop``: the worked example, and ``check MODULE:FUNCTION``.

Without arguments it solves the blog example
``f(x) = exp(exp(x) + exp(x)²) + sin(exp(x) + exp(x)²)`` at x = 0.5, prints every
intermediate's value and multiplier, and checks the gradient against the analytic
derivative (exit status 1 if they disagree).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def blog(x):
    """The worked example (SPEC §2)."""
    import lagrangeprop as lp
    a = lp.exp(x)
    b = a**2
    c = a + b
    d = lp.exp(c)
    e = lp.sin(c)
    return d + e


def blog_derivative(x: float) -> float:
    """Hand-derived: f'(x) = (exp(c) + cos(c))·(a + 2a²) with a = eˣ, c = a + a²."""
    a = np.exp(x)
    c = a + a * a
    return float((np.exp(c) + np.cos(c)) * (a + 2 * a * a))


def demo(x: float = 0.5) -> int:
    import lagrangeprop as lp
    prog = lp.trace(blog, x=x)
    sol = prog.solve(x=x)
    print("lagrangeprop demo: f(x) = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2)"
          f" at x = {x}\n")
    print("Constraints z_d = f_d(parents); multiplier λ_d = ∂f/∂z_d (λ_x is the gradient):\n")
    print(sol.report())
    kkt = sol.kkt()
    exact = blog_derivative(x)
    got = float(sol.grad["x"])
    rel = abs(got - exact) / abs(exact)
    print(f"\nf(x)                     = {float(sol.output):.15g}")
    print(f"gradient (multiplier λ_x) = {got:.15g}")
    print(f"analytic derivative       = {exact:.15g}")
    print(f"relative error            = {rel:.2e}")
    print(f"KKT residuals             = primal {kkt['primal']:.1e}, adjoint {kkt['adjoint']:.1e}")
    ok = rel < 1e-12 and kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-10
    print("OK: the multiplier equals the analytic derivative" if ok else "MISMATCH")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check":
        from .check import main_check
        return main_check(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m lagrangeprop",
                                     description="lagrangeprop demo (or: check MODULE:FUNCTION --x 0.5)")
    parser.add_argument("--x", type=float, default=0.5, help="where to evaluate the demo")
    args = parser.parse_args(argv)
    return demo(args.x)


if __name__ == "__main__":
    sys.exit(main())
