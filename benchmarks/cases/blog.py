"""blog: ``exp(c) + sin(c)``, ``c = a + a²``, ``a = exp(x)`` (the worked example; scalar)."""

from __future__ import annotations

import numpy as np

from .common import Impl, case, scalar_impl


def blog_f(m):
    def f(x):
        a = m.exp(x)
        b = a**2
        c = a + b
        return m.exp(c) + m.sin(c)
    return f


@case("blog", peers=("jax", "casadi"))
def blog(system: str):
    x0 = 0.5
    if system == "jax":
        import jax.numpy as jnp

        from .peers import jax_impl, jax_module
        jax_module()
        return jax_impl(blog_f(jnp), [x0])
    if system == "casadi":
        from .peers import casadi_scalar
        return casadi_scalar(blog_f, x0)
    impl = scalar_impl(system, blog_f, x0)
    if impl is not None:
        return impl

    def grad():
        a = np.exp(x0)
        c = a + a * a
        return (np.exp(c) + np.cos(c)) * (1.0 + 2.0 * a) * a
    return Impl(grad, lambda: blog_f(np)(x0))
