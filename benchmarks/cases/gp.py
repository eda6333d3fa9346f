"""gp: a Gaussian-process negative log marginal likelihood (n = 300, d = 3), gradient for the
three log-hyperparameters: ``½ yᵀK⁻¹y + ½ log|K| + n/2 log 2π`` with
``K = σ² exp(-|xᵢ - xⱼ|² / 2ℓ²) + s² I``. The data-fit term goes through ``cholesky`` and two
``solve`` calls (``L⁻ᵀ L⁻¹ y``), the complexity term through ``slogdet``, all written as plain
``np.linalg`` calls on traced values."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, lp_impl, torch_module


def gp_data():
    rng = np.random.default_rng(3)
    n, d = 300, 3
    X = rng.uniform(-2.0, 2.0, (n, d))
    y = np.sin(X @ np.array([1.0, -0.5, 0.25])) + 0.1 * rng.standard_normal(n)
    sq = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    theta = np.array([np.log(0.8), np.log(1.2), np.log(0.3)])   # log ℓ, log σ, log s
    return sq, y, theta


def gp_f(m, linalg, sq, y):
    n = y.shape[0]

    def gp(theta):
        ell, sig, noise = m.exp(theta[0]), m.exp(theta[1]), m.exp(theta[2])
        K = sig**2 * m.exp(-0.5 * sq / ell**2) + noise**2 * m.eye(n)
        L = linalg.cholesky(K)
        alpha = linalg.solve(L.T, linalg.solve(L, y))
        logdet = linalg.slogdet(K)[1]
        return 0.5 * m.sum(y * alpha) + 0.5 * logdet + 0.5 * n * np.log(2 * np.pi)
    return gp


@case("gp", quick=False, peers=("jax",))
def gp(system: str):
    sq, y, theta = gp_data()
    n = y.shape[0]
    if system == "lagrangeprop":
        import lagrangeprop as lp
        f = gp_f(np, np.linalg, sq, y)
        return lp_impl(lambda: lp.trace(f, theta=theta), {"theta": theta})
    if system == "jax":
        from .peers import jax_impl, jax_module
        jax_module()
        import jax.numpy as jnp
        return jax_impl(gp_f(jnp, jnp.linalg, jnp.asarray(sq), jnp.asarray(y)), [theta])
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        f = gp_f(anp, anp.linalg, sq, y)
        return Impl(lambda: autograd.grad(f)(theta), lambda: f(theta))
    if system == "torch":
        torch = torch_module()
        f = gp_f(torch, torch.linalg, torch.tensor(sq), torch.tensor(y))
        t = torch.tensor(theta, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return f(t)
        return Impl(lambda: torch.autograd.grad(f(t), [t])[0], fwd)

    # by hand: d nll / dθ = ½ tr((K⁻¹ - ααᵀ) ∂K/∂θ), with one Cholesky factorization
    import scipy.linalg

    def parts():
        ell, sig, noise = np.exp(theta)
        E = np.exp(-0.5 * sq / ell**2)
        K = sig**2 * E + noise**2 * np.eye(n)
        cho = scipy.linalg.cho_factor(K, lower=True)
        alpha = scipy.linalg.cho_solve(cho, y)
        logdet = 2.0 * np.sum(np.log(np.diag(cho[0])))
        nll = 0.5 * y @ alpha + 0.5 * logdet + 0.5 * n * np.log(2 * np.pi)
        return ell, sig, noise, E, cho, alpha, nll

    def fwd():
        return parts()[-1]

    def grad():
        ell, sig, noise, E, cho, alpha, _ = parts()
        W = scipy.linalg.cho_solve(cho, np.eye(n)) - np.outer(alpha, alpha)
        dK = (sig**2 * E * sq / ell**2, 2.0 * sig**2 * E, 2.0 * noise**2 * np.eye(n))
        return np.array([0.5 * np.sum(W * d) for d in dK])
    return Impl(grad, fwd)
