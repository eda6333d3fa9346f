"""sellar: the two-discipline MDA (a 2-node cyclic block)."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, lp_impl, torch_module


def _sellar_casadi(x0: float, z0: np.ndarray) -> Impl:
    """CasADi: the coupling residual as an SX ``rootfinder`` (Newton); its derivative is CasADi's
    own implicit-function rule, the objective's gradient one ``jacobian`` of the composition."""
    import casadi as ca
    y, p = ca.SX.sym("y", 2), ca.SX.sym("p", 3)          # p = (x, z0, z1)
    res = ca.vertcat(y[0] - (p[1] ** 2 + p[2] + p[0] - 0.2 * y[1]), y[1] - (ca.sqrt(y[0]) + p[1] + p[2]))
    rf = ca.rootfinder("rf", "newton", ca.Function("g", [y, p], [res]), {"abstol": 1e-12})
    P = ca.MX.sym("p", 3)
    Y = rf(ca.DM([1.0, 1.0]), P)
    obj = P[0] ** 2 + P[2] + Y[0] + ca.exp(-Y[1])
    G = ca.Function("G", [P], [obj, ca.jacobian(obj, P)])
    F = ca.Function("F", [P], [obj])
    p0 = np.array([x0, *z0])

    def grad():
        _, g = G(p0)
        return np.asarray(g.full()).ravel()
    return Impl(grad, lambda: float(F(p0)), note="SX rootfinder (newton)")


def _sellar_openmdao(x0: float, z0: np.ndarray) -> Impl:
    """OpenMDAO: two disciplines with analytic partials in a coupled group, Newton + DirectSolver;
    the gradient is ``run_model`` + ``compute_totals``."""
    import openmdao.api as om

    class D1(om.ExplicitComponent):
        def setup(self):
            self.add_input("z", np.zeros(2)); self.add_input("x", 0.0); self.add_input("y2", 1.0)
            self.add_output("y1", 1.0)
            self.declare_partials("*", "*")

        def compute(self, i, o):
            o["y1"] = i["z"][0] ** 2 + i["z"][1] + i["x"] - 0.2 * i["y2"]

        def compute_partials(self, i, J):
            J["y1", "z"] = [[2.0 * i["z"][0], 1.0]]; J["y1", "x"] = 1.0; J["y1", "y2"] = -0.2

    class D2(om.ExplicitComponent):
        def setup(self):
            self.add_input("z", np.zeros(2)); self.add_input("y1", 1.0)
            self.add_output("y2", 1.0)
            self.declare_partials("*", "*")

        def compute(self, i, o):
            o["y2"] = np.sqrt(i["y1"]) + i["z"][0] + i["z"][1]

        def compute_partials(self, i, J):
            J["y2", "y1"] = 0.5 / np.sqrt(i["y1"]); J["y2", "z"] = [[1.0, 1.0]]

    prob = om.Problem(reports=False)
    model = prob.model
    cycle = model.add_subsystem("cycle", om.Group(), promotes=["*"])
    cycle.add_subsystem("d1", D1(), promotes=["*"])
    cycle.add_subsystem("d2", D2(), promotes=["*"])
    cycle.nonlinear_solver = om.NewtonSolver(solve_subsystems=False, atol=1e-12, rtol=1e-12, iprint=-1)
    cycle.linear_solver = om.DirectSolver()
    model.add_subsystem("obj", om.ExecComp("obj = x**2 + z[1] + y1 + exp(-y2)", z=np.zeros(2)),
                        promotes=["*"])
    model.set_input_defaults("x", x0); model.set_input_defaults("z", z0)
    model.add_design_var("x"); model.add_design_var("z"); model.add_objective("obj")
    prob.setup(check=False)
    prob.set_val("x", x0); prob.set_val("z", z0)
    prob.final_setup()

    def fwd():
        prob.set_val("y1", 1.0); prob.set_val("y2", 1.0)     # the same start as the others
        prob.run_model()
        return float(prob.get_val("obj")[0])

    def grad():
        fwd()
        t = prob.compute_totals(of=["obj"], wrt=["x", "z"], return_format="flat_dict")
        return np.concatenate([np.ravel(t["obj", "x"]), np.ravel(t["obj", "z"])])
    return Impl(grad, fwd, note="Newton + DirectSolver, compute_totals")


@case("sellar", peers=("casadi", "openmdao"))
def sellar(system: str):
    x0, z0 = 1.0, np.array([5.0, 2.0])
    if system == "casadi":
        return _sellar_casadi(x0, z0)
    if system == "openmdao":
        return _sellar_openmdao(x0, z0)
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
