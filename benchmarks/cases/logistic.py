"""logistic: N = 10⁴, d = 100, ``mean(logaddexp(0, z) - y z)``."""

from __future__ import annotations

import numpy as np
import scipy.special

from .common import Impl, case, lp_impl, torch_module


@case("logistic", peers=("jax",))
def logistic(system: str):
    rng = np.random.default_rng(1)
    N, d = 10_000, 100
    X = rng.standard_normal((N, d))
    y = (rng.random(N) < scipy.special.expit(X @ rng.standard_normal(d) * 0.3)).astype(float)
    w0 = 0.01 * rng.standard_normal(d)

    def f_of(m, X, y, logaddexp):
        def logistic(w):
            z = X @ w
            return m.mean(logaddexp(z) - y * z)
        return logistic
    if system == "lagrangeprop":
        import lagrangeprop as lp
        f = f_of(lp, X, y, lambda z: lp.logaddexp(0.0, z))
        return lp_impl(lambda: lp.trace(f, w=w0), {"w": w0})
    if system == "jax":
        import jax.numpy as jnp

        from .peers import jax_impl, jax_module
        jax_module()
        f = f_of(jnp, jnp.asarray(X), jnp.asarray(y), lambda z: jnp.logaddexp(0.0, z))
        return jax_impl(f, [w0])
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = f_of(anp, X, y, lambda z: anp.logaddexp(0.0, z))
        return Impl(lambda: autograd.grad(f)(w0), lambda: f(w0))
    if system == "torch":
        torch = torch_module()
        zero = torch.tensor(0.0)
        f = f_of(torch, torch.tensor(X), torch.tensor(y), lambda z: torch.logaddexp(zero, z))
        w = torch.tensor(w0, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return f(w)
        return Impl(lambda: torch.autograd.grad(f(w), [w])[0], fwd)

    def fwd():
        z = X @ w0
        return np.mean(np.logaddexp(0.0, z) - y * z)

    def grad():
        z = X @ w0
        _ = np.mean(np.logaddexp(0.0, z) - y * z)
        return X.T @ (scipy.special.expit(z) - y) / N
    return Impl(grad, fwd)
