"""mlp: 784-256-256-10 tanh, batch 256, softmax cross-entropy (gradient for all 6 parameter arrays)."""

from __future__ import annotations

import numpy as np
import scipy.special

from .common import Impl, case, lp_impl, torch_module


def mlp_data():
    rng = np.random.default_rng(0)
    B, sizes = 256, (784, 256, 256, 10)
    X = rng.standard_normal((B, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    params = {}
    for k in range(3):
        params[f"W{k + 1}"] = rng.standard_normal((sizes[k], sizes[k + 1])) / np.sqrt(sizes[k])
        params[f"b{k + 1}"] = 0.1 * rng.standard_normal(sizes[k + 1])
    return X, Y, params


def mlp_f(m, X, Y, lse):
    def mlp(W1, b1, W2, b2, W3, b3):
        h1 = m.tanh(X @ W1 + b1)
        h2 = m.tanh(h1 @ W2 + b2)
        logits = h2 @ W3 + b3
        logp = logits - lse(logits)
        return -m.sum(Y * logp) / X.shape[0]
    return mlp


@case("mlp", memory=True, peers=("jax",))
def mlp(system: str):
    X, Y, params = mlp_data()
    names = sorted(params)
    if system == "lagrangeprop":
        import lagrangeprop as lp
        f = mlp_f(lp, X, Y, lambda z: lp.logsumexp(z, axis=1, keepdims=True))
        return lp_impl(lambda: lp.trace(f, **params), params)
    if system == "jax":
        from .peers import jax_impl, jax_module
        jax_module()
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp
        f = mlp_f(jnp, jnp.asarray(X), jnp.asarray(Y), lambda z: logsumexp(z, axis=1, keepdims=True))
        order = ["W1", "b1", "W2", "b2", "W3", "b3"]
        return jax_impl(f, [params[k] for k in order], names=order)
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.scipy.special import logsumexp
        f = mlp_f(anp, X, Y, lambda z: logsumexp(z, axis=1, keepdims=True))
        order = ["W1", "b1", "W2", "b2", "W3", "b3"]
        g = autograd.grad(lambda p: f(*p), 0)
        args = [params[k] for k in order]
        return Impl(lambda: dict(zip(order, g(args))), lambda: f(*args))
    if system == "torch":
        torch = torch_module()
        Xt, Yt = torch.tensor(X), torch.tensor(Y)
        f = mlp_f(torch, Xt, Yt, lambda z: torch.logsumexp(z, dim=1, keepdim=True))
        order = ["W1", "b1", "W2", "b2", "W3", "b3"]
        ps = [torch.tensor(params[k], requires_grad=True) for k in order]

        def grad():
            return dict(zip(order, torch.autograd.grad(f(*ps), ps)))

        def fwd():
            with torch.no_grad():
                return f(*ps)
        return Impl(grad, fwd)

    p = params
    B = X.shape[0]

    def fwd():
        h1 = np.tanh(X @ p["W1"] + p["b1"])
        h2 = np.tanh(h1 @ p["W2"] + p["b2"])
        lo = h2 @ p["W3"] + p["b3"]
        return -np.sum(Y * (lo - scipy.special.logsumexp(lo, axis=1, keepdims=True))) / B

    def grad():
        h1 = np.tanh(X @ p["W1"] + p["b1"])
        h2 = np.tanh(h1 @ p["W2"] + p["b2"])
        lo = h2 @ p["W3"] + p["b3"]
        lse = scipy.special.logsumexp(lo, axis=1, keepdims=True)
        _ = -np.sum(Y * (lo - lse)) / B
        dlo = (np.exp(lo - lse) * Y.sum(axis=1, keepdims=True) - Y) / B
        da2 = (dlo @ p["W3"].T) * (1.0 - h2**2)
        da1 = (da2 @ p["W2"].T) * (1.0 - h1**2)
        return {"W3": h2.T @ dlo, "b3": dlo.sum(0), "W2": h1.T @ da2, "b2": da2.sum(0),
                "W1": X.T @ da1, "b1": da1.sum(0)}
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g[k]) for k in names]))
