"""fixedpoint-n: ``z = tanh(W z + U x)``, W sparse (‖W‖∞ = 0.5), loss ½‖z‖²; and the dense implicit peer."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .common import Impl, case, lp_impl, torch_module


def fp_data(n: int, m: int = 50):
    rng = np.random.default_rng(3)
    W = sp.random(n, n, density=5.0 / n, random_state=rng, format="csr")
    W.data = rng.standard_normal(W.nnz)
    W = (W * (0.5 / np.max(np.abs(W).sum(axis=1)))).tocsr()   # |W|_inf = 0.5: a contraction
    U = rng.standard_normal((n, m)) / np.sqrt(m)
    x0 = rng.standard_normal(m)
    return W, U, x0


FP_TOL = 1e-10


def _torch_fixed_point(torch, W, ux, n: int):
    """``z = tanh(W z + ux)`` by forward iteration from 0 to ``FP_TOL`` (no graph)."""
    with torch.no_grad():
        z = torch.zeros(n)
        while True:
            z_new = torch.tanh(W @ z + ux)
            if torch.max(torch.abs(z_new - z)) <= FP_TOL:
                return z_new
            z = z_new


def _fixed_point(system: str, n: int):
    W, U, x0 = fp_data(n)
    WT = W.T.tocsr()
    if system == "lagrangeprop":
        import lagrangeprop as lp

        def build():
            prog = lp.Program(name=f"fixed_point_{n}")
            x = prog.input("x", shape=x0.shape)
            z = prog.variable("z", shape=(n,))
            prog.define(z, lp.tanh(lp.matmul(W, z) + U @ x))
            prog.output(0.5 * lp.sum(z * z), name="loss")
            return prog
        return lp_impl(build, {"x": x0}, tol=FP_TOL)
    if system == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.extend import defvjp, primitive
        from autograd.misc.fixed_points import fixed_point

        @primitive
        def spmv(z):
            return W @ z
        defvjp(spmv, lambda ans, z: lambda g: WT @ g)

        def step(x):
            ux = anp.dot(U, x)
            return lambda z: anp.tanh(spmv(z) + ux)

        def dist(a, b):
            return anp.max(anp.abs(a - b))

        def loss(x):
            z = fixed_point(step, x, np.zeros(n), dist, FP_TOL)
            return 0.5 * anp.sum(z * z)
        return Impl(lambda: autograd.grad(loss)(x0), lambda: loss(x0), note="autograd.misc.fixed_point")
    if system == "torch":
        torch = torch_module()
        Wt = torch.sparse_csr_tensor(torch.tensor(W.indptr), torch.tensor(W.indices),
                                     torch.tensor(W.data), size=W.shape)
        Ut, xt = torch.tensor(U), torch.tensor(x0)

        def forward(x):
            return _torch_fixed_point(torch, Wt, Ut @ x, n)

        def grad():   # implicit: adjoint fixed point w = g + J_zᵀ w by vjp iteration
            z = forward(xt).requires_grad_()
            x = xt.clone().requires_grad_()
            fz = torch.tanh(Wt @ z + Ut @ x)
            g = z.detach()
            w = g.clone()
            while True:
                (v,) = torch.autograd.grad(fz, z, w, retain_graph=True)
                w_new = g + v
                if torch.max(torch.abs(w_new - w)) <= FP_TOL:
                    break
                w = w_new
            return torch.autograd.grad(fz, x, w_new)[0]
        return Impl(grad, lambda: 0.5 * torch.sum(forward(xt) ** 2), note="vjp-iteration adjoint")

    def forward():
        ux = U @ x0
        z = np.zeros(n)
        while True:
            z_new = np.tanh(W @ z + ux)
            if np.max(np.abs(z_new - z)) <= FP_TOL:
                return z_new
            z = z_new

    def grad():   # transposed iteration w = g + Wᵀ(a ⊙ w), a = 1 - z²
        z = forward()
        a = 1.0 - z * z
        g = z
        w = g.copy()
        while True:
            w_new = g + WT @ (a * w)
            if np.max(np.abs(w_new - w)) <= FP_TOL:
                break
            w = w_new
        return U.T @ (a * w_new)
    return Impl(grad, lambda: 0.5 * np.sum(forward() ** 2), note="transposed iteration")


for _n, _quick in ((2000, True), (20_000, False)):
    case(f"fixedpoint-{_n}", memory=True, quick=_quick)(lambda system, n=_n: _fixed_point(system, n))


@case("fixedpoint-2000-dense", memory=True, quick=False)
def _fixed_point_dense(system: str, n: int = 2000):
    """The issue's implicit-differentiation peer: PyTorch forward iteration, then the adjoint
    by one dense solve ``(I - J)ᵀ w = g`` with ``J = diag(1 - z²) W`` (``torch.linalg.solve``)."""
    if system == "lagrangeprop":
        return _fixed_point(system, n)
    if system != "torch":
        return None
    W, U, x0 = fp_data(n)
    torch = torch_module()
    Wd, Ut, xt = torch.tensor(W.toarray()), torch.tensor(U), torch.tensor(x0)

    def forward():
        return _torch_fixed_point(torch, Wd, Ut @ xt, n)

    def grad():
        z = forward()
        a = 1.0 - z * z
        J = a[:, None] * Wd
        w = torch.linalg.solve((torch.eye(n) - J).T, z)
        return Ut.T @ (a * w)
    return Impl(grad, lambda: 0.5 * torch.sum(forward() ** 2), note="dense implicit solve")
