"""attention: one einsum-written attention layer, batch 16 × 64 tokens × 32 features, gradient
for the bilinear form ``W``: ``S = einsum('bid,de,bje->bij', X, W, X)/√d``, ``A = softmax(S)``,
``Y = einsum('bij,bjd->bid', A, X)``, loss ``mean((Y - T)²)``."""

from __future__ import annotations

import numpy as np
import scipy.special

from .common import Impl, case, lp_impl, torch_module


def attention_data():
    rng = np.random.default_rng(5)
    b, n, d = 16, 64, 32
    X = rng.standard_normal((b, n, d))
    T = rng.standard_normal((b, n, d))
    W = 0.1 * rng.standard_normal((d, d))
    return X, T, W


def attention_f(einsum, softmax, mean, X, T):
    scale = 1.0 / np.sqrt(X.shape[-1])

    def attention(W):
        S = einsum("bid,de,bje->bij", X, W, X) * scale
        A = softmax(S)
        Y = einsum("bij,bjd->bid", A, X)
        return mean((Y - T) ** 2)
    return attention


@case("attention", quick=False, peers=("jax",))
def attention(system: str):
    X, T, W = attention_data()
    if system == "lagrangeprop":
        import lagrangeprop as lp
        f = attention_f(np.einsum, lambda S: lp.softmax(S, axis=-1), np.mean, X, T)
        return lp_impl(lambda: lp.trace(f, W=W), {"W": W})
    if system == "jax":
        from .peers import jax_impl, jax_module
        jax = jax_module()
        import jax.numpy as jnp
        f = attention_f(jnp.einsum, lambda S: jax.nn.softmax(S, axis=-1), jnp.mean, jnp.asarray(X), jnp.asarray(T))
        return jax_impl(f, [W])
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.scipy.special import logsumexp

        def softmax(S):
            return anp.exp(S - logsumexp(S, axis=-1, keepdims=True))
        f = attention_f(anp.einsum, softmax, anp.mean, X, T)
        return Impl(lambda: autograd.grad(f)(W), lambda: f(W))
    if system == "torch":
        torch = torch_module()
        f = attention_f(torch.einsum, lambda S: torch.softmax(S, dim=-1), torch.mean,
                        torch.tensor(X), torch.tensor(T))
        w = torch.tensor(W, requires_grad=True)

        def fwd():
            with torch.no_grad():
                return f(w)
        return Impl(lambda: torch.autograd.grad(f(w), [w])[0], fwd)

    scale = 1.0 / np.sqrt(X.shape[-1])

    def forward():
        S = np.einsum("bid,de,bje->bij", X, W, X, optimize=True) * scale
        A = scipy.special.softmax(S, axis=-1)
        Y = np.einsum("bij,bjd->bid", A, X, optimize=True)
        return A, Y, np.mean((Y - T) ** 2)

    def fwd():
        return forward()[-1]

    def grad():
        A, Y, _ = forward()
        dY = 2.0 * (Y - T) / Y.size
        dA = np.einsum("bid,bjd->bij", dY, X, optimize=True)
        dS = A * (dA - np.sum(dA * A, axis=-1, keepdims=True)) * scale
        return np.einsum("bij,bid,bje->de", dS, X, X, optimize=True)
    return Impl(grad, fwd)
