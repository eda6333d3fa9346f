"""taylor: a degree-8 polynomial with a center ``a``, ``Σ c_k (t - a)^k`` at 200 points, written as a loop."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, lp_impl, torch_module


@case("taylor", peers=("jax", "casadi"))
def taylor(system: str):
    M, deg = 200, 8
    t = np.linspace(-1.0, 1.0, M)
    y = np.sin(2.0 * t)
    c0 = np.random.default_rng(2).standard_normal(deg + 1) / np.arange(1, deg + 2)
    a0 = 0.1

    def f_of(m, t, y):
        def taylor(c, a):
            u = t - a
            p = c[0] + c[1] * u
            pw = u
            for k in range(2, deg + 1):
                pw = pw * u
                p = p + c[k] * pw
            r = p - y
            return m.mean(r * r)
        return taylor
    if system == "lagrangeprop":
        import lagrangeprop as lp
        return lp_impl(lambda: lp.trace(f_of(lp, t, y), c=c0, a=a0), {"c": c0, "a": a0})
    if system == "jax":
        import jax.numpy as jnp

        from .peers import jax_impl, jax_module
        jax_module()
        return jax_impl(f_of(jnp, jnp.asarray(t), jnp.asarray(y)), [c0, a0], names="ca")
    if system == "casadi":
        from types import SimpleNamespace

        from .peers import casadi_impl

        def build(ca):
            c, a = ca.SX.sym("c", deg + 1), ca.SX.sym("a")
            m = SimpleNamespace(mean=lambda v: ca.sum1(v) / v.numel())
            return [c, a], f_of(m, ca.DM(t), ca.DM(y))(c, a)
        return casadi_impl(build, [c0, a0], names="ca")
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = f_of(anp, t, y)
        g = autograd.grad(f, (0, 1))
        return Impl(lambda: dict(zip("ac", reversed(g(c0, a0)))), lambda: f(c0, a0))
    if system == "torch":
        torch = torch_module()
        f = f_of(torch, torch.tensor(t), torch.tensor(y))
        c, a = torch.tensor(c0, requires_grad=True), torch.tensor(a0, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return f(c, a)
        return Impl(lambda: dict(zip("ca", torch.autograd.grad(f(c, a), [c, a]))), fwd)
    k = np.arange(deg + 1)

    def fwd():
        r = np.polynomial.polynomial.polyval(t - a0, c0) - y
        return np.mean(r * r)

    def grad():
        u = t - a0
        P = u[None, :] ** k[:, None]                       # (deg+1, M) powers
        r = c0 @ P - y
        dp = 2.0 * r / M
        dc = P @ dp
        dpdu = (k[1:] * c0[1:]) @ P[:-1]
        return {"a": -np.dot(dp, dpdu), "c": dc}
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g["a"]), np.ravel(g["c"])]))
