"""sellar: the two-discipline MDA (a 2-node cyclic block)."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, lp_impl, torch_module


@case("sellar")
def sellar(system: str):
    x0, z0 = 1.0, np.array([5.0, 2.0])
    if system == "lagrangeprop":
        import lagrangeprop as lp

        def build():
            prog = lp.Program(name="sellar")
            x = prog.input("x")
            z = prog.input("z", shape=(2,))
            y1 = prog.variable("y1")
            y2 = prog.variable("y2")
            prog.define(y1, z[0] ** 2 + z[1] + x - 0.2 * y2)
            prog.define(y2, lp.sqrt(y1) + z[0] + z[1])
            prog.output(x**2 + z[1] + y1 + lp.exp(-y2), name="obj")
            return prog
        return lp_impl(build, {"x": x0, "z": z0}, guess={"y1": 1.0, "y2": 1.0})
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.misc.fixed_points import fixed_point

        def step(p):   # Gauss-Seidel sweep of the two disciplines
            def f(y):
                y1 = p[1] ** 2 + p[2] + p[0] - 0.2 * y[1]
                return anp.array([y1, anp.sqrt(y1) + p[1] + p[2]])
            return f

        def obj(p):
            y = fixed_point(step, p, np.ones(2), lambda a, b: anp.max(anp.abs(a - b)), 1e-12)
            return p[0] ** 2 + p[2] + y[0] + anp.exp(-y[1])
        p0 = np.array([x0, *z0])
        return Impl(lambda: autograd.grad(obj)(p0), lambda: obj(p0), note="autograd.misc.fixed_point")
    if system == "torch":
        torch = torch_module()
        p0 = torch.tensor([x0, *z0])

        def obj(p):   # unrolled Gauss-Seidel to convergence, backprop through the loop
            y2 = torch.tensor(1.0)
            while True:
                y1 = p[1] ** 2 + p[2] + p[0] - 0.2 * y2
                y2_new = torch.sqrt(y1) + p[1] + p[2]
                if abs(float(y2_new - y2)) <= 1e-12:
                    break
                y2 = y2_new
            return p[0] ** 2 + p[2] + y1 + torch.exp(-y2_new)

        def grad():
            p = p0.clone().requires_grad_()
            return torch.autograd.grad(obj(p), [p])[0]

        def fwd():
            with torch.no_grad():
                return obj(p0)
        return Impl(grad, fwd, note="unrolled loop")

    def newton():
        x, (a, b) = x0, z0
        y1, y2 = 1.0, 1.0
        for _ in range(50):
            c = np.array([y1 - (a * a + b + x - 0.2 * y2), y2 - (np.sqrt(y1) + a + b)])
            A = np.array([[1.0, 0.2], [-0.5 / np.sqrt(y1), 1.0]])
            if np.max(np.abs(c)) <= 1e-12 * max(1.0, abs(y1), abs(y2)):
                return y1, y2, A
            dy = np.linalg.solve(A, -c)
            y1, y2 = y1 + dy[0], y2 + dy[1]
        raise RuntimeError("sellar newton did not converge")

    def grad():   # Aᵀλ = ∂obj/∂y ; ∇ = ∂obj/∂p + λ·∂f/∂p
        y1, y2, A = newton()
        lam = np.linalg.solve(A.T, np.array([1.0, -np.exp(-y2)]))
        a = z0[0]
        return {"x": 2.0 * x0 + lam[0], "z": np.array([2.0 * a * lam[0] + lam[1], 1.0 + lam[0] + lam[1]])}

    def fwd():
        y1, y2, _ = newton()
        return x0**2 + z0[1] + y1 + np.exp(-y2)
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g["x"]), g["z"]]), note="Newton + 2x2 adjoint")
